//! Pure planning: given the images, their users, the policy, the clock and the disk, one
//! [`Decision`] with a [`Reason`] for every image. No I/O, so it is unit- and
//! property-tested and benchmarked on a fake image set.
//!
//! Rules, in order (the first that applies decides):
//! 1. used by any container (any state) or pod sandbox, by ID, tag or digest → `kept:in-use`;
//! 2. pinned by the runtime → `kept:pinned`;
//! 3. a tag or digest matches a `keep` glob, or the image is among the newest
//!    `keep_newest_per_repository` of one of its repositories → `kept:keep-list`;
//! 4. [`Mode::Prune`]: created at least `min_age` ago → `removed` (the age rule, exactly what
//!    `docker image prune -a --filter until=<min_age>` removes). Younger images are
//!    `kept:young`, unless the image filesystem is at or above the high threshold: then the
//!    younger ones (at least `pressure_min_age` old) are removed least recently used first
//!    until the projected usage is at or below the low threshold, the rest being
//!    `kept:below-threshold`;
//! 5. [`Mode::Emergency`]: no age rule; least recently used first until the target is met,
//!    the rest `kept:below-threshold`.
//!
//! "Least recently used" is the last time the agent saw a container use the image (the
//! daemon keeps that, like the kubelet's image records), else the image's creation time.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use jiff::Timestamp;
use serde::{Serialize, Serializer};

use super::runtime::{
    DiskUsage, Image, ImageUser, InUseIndex, UserKind, normalize_reference, short_id,
};

/// Why an image was or was not removed. Displayed exactly as `removed`, `kept:in-use`,
/// `kept:pinned`, `kept:young`, `kept:keep-list`, `kept:below-threshold`, `failed:<error>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Removed,
    KeptInUse,
    KeptPinned,
    KeptYoung,
    KeptKeepList,
    KeptBelowThreshold,
    Failed(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Removed => f.write_str("removed"),
            Reason::KeptInUse => f.write_str("kept:in-use"),
            Reason::KeptPinned => f.write_str("kept:pinned"),
            Reason::KeptYoung => f.write_str("kept:young"),
            Reason::KeptKeepList => f.write_str("kept:keep-list"),
            Reason::KeptBelowThreshold => f.write_str("kept:below-threshold"),
            Reason::Failed(e) => write!(f, "failed:{e}"),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The rules a plan applies (see the module docs); built from the `images:` config.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Age rule: images created at least this long ago are removed. Default 168 h.
    pub min_age: Duration,
    /// Images with a tag or digest matching one of these are never removed.
    pub keep: KeepList,
    /// Keep the newest N images of each repository; 0 turns the rule off.
    pub keep_newest_per_repository: usize,
    /// At or above this used percent of the image filesystem, the threshold rule starts.
    pub high_threshold_percent: f64,
    /// The threshold rule removes until usage is at or below this percent.
    pub low_threshold_percent: f64,
    /// Under disk pressure, images younger than this are still kept (kubelet's
    /// `imageMinimumGCAge`, default 2 min).
    pub pressure_min_age: Duration,
}

/// Why a keep list does not compile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{pattern:?} is not a valid glob")]
    Glob {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("the keep globs do not compile together")]
    GlobSet(#[source] globset::Error),
}

/// Globs over image references (`registry.k8s.io/pause*`), matched against every tag and
/// digest in both the runtime's spelling and the normalised one
/// (`docker.io/library/busybox:1.36`). `*` crosses `/`.
#[derive(Debug, Clone)]
pub struct KeepList {
    patterns: Vec<String>,
    set: GlobSet,
}

impl KeepList {
    /// Compiles the globs.
    ///
    /// # Errors
    /// The first pattern that is not a valid glob, with globset's reason.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, Error> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            let g = Glob::new(p.as_ref()).map_err(|source| Error::Glob {
                pattern: p.as_ref().to_string(),
                source,
            })?;
            b.add(g);
        }
        let set = b.build().map_err(Error::GlobSet)?;
        Ok(Self {
            patterns: patterns.iter().map(|p| p.as_ref().to_string()).collect(),
            set,
        })
    }

    /// The pattern that keeps `image`, if any.
    pub fn matching(&self, image: &Image) -> Option<&str> {
        if self.patterns.is_empty() {
            return None;
        }
        for r in image.repo_tags.iter().chain(&image.repo_digests) {
            for candidate in [r.clone(), normalize_reference(r)] {
                if let Some(&i) = self.set.matches(&candidate).first() {
                    return Some(&self.patterns[i]);
                }
            }
        }
        None
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// What kind of run the plan is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// The scheduled prune and `prune-images`: the age rule, plus the threshold rule when
    /// `disk` is known and at or above the high threshold.
    Prune { disk: Option<DiskUsage> },
    /// `cleanup --emergency`: ignore `min_age`, remove least recently used first until the
    /// used percent is at or below `target_used_percent`. With `dangling_only`, only
    /// untagged images are considered (the others are left out of the plan).
    Emergency {
        disk: DiskUsage,
        target_used_percent: f64,
        dangling_only: bool,
    },
}

/// The decision for one image.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub image: String,
    pub id: String,
    pub created: Option<Timestamp>,
    pub size_bytes: u64,
    /// Bytes this removal is expected to free. For a removal, with the runtime's layers
    /// known: the bytes of its layers that no kept image uses and no later removal still
    /// holds, so the plan's sum counts every shared layer once. Otherwise (and for kept
    /// images): its size minus the layers it shares.
    pub reclaimable_bytes: u64,
    pub reason: Reason,
    /// A sentence that says which rule decided, e.g. "created 9d 2h ago, min_age 7days".
    pub detail: String,
    /// Removed by the threshold rule: the executor stops such removals as soon as the
    /// measured usage reaches [`Plan::stop_at_percent`].
    #[serde(skip)]
    pub(crate) by_threshold: bool,
    #[serde(skip)]
    pub source: Image,
}

/// Every image's decision; removals first, in the order they are to be carried out.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub decisions: Vec<Decision>,
    /// The image filesystem when planning, if known.
    pub disk: Option<DiskUsage>,
    /// Threshold removals stop once the used percent is at or below this.
    pub(crate) stop_at_percent: Option<f64>,
}

impl Plan {
    /// Decisions to remove, in order.
    pub fn removals(&self) -> impl Iterator<Item = &Decision> {
        self.decisions
            .iter()
            .filter(|d| d.reason == Reason::Removed)
    }

    /// Sum of the reclaimable bytes of the planned removals.
    pub fn reclaimable_bytes(&self) -> u64 {
        self.removals().map(|d| d.reclaimable_bytes).sum()
    }

    /// How many decisions have each reason, in [`Reason`] order.
    pub fn counts(&self) -> Vec<(String, usize)> {
        let mut m: std::collections::BTreeMap<Reason, usize> = std::collections::BTreeMap::new();
        for d in &self.decisions {
            let key = match &d.reason {
                Reason::Failed(_) => Reason::Failed(String::new()),
                r => r.clone(),
            };
            *m.entry(key).or_default() += 1;
        }
        m.into_iter()
            .map(|(r, n)| {
                (
                    if let Reason::Failed(_) = r {
                        "failed".into()
                    } else {
                        r.to_string()
                    },
                    n,
                )
            })
            .collect()
    }
}

fn fmt_age(d: Duration) -> String {
    // Whole minutes are precise enough for ages and keep the text short.
    humantime::format_duration(Duration::from_secs(d.as_secs() / 60 * 60)).to_string()
}

/// The repository part of a normalised reference: `docker.io/library/busybox:1.36` →
/// `docker.io/library/busybox`.
fn repository(reference: &str) -> String {
    let n = normalize_reference(reference);
    if let Some((repo, _)) = n.split_once('@') {
        return repo.to_string();
    }
    let last_slash = n.rfind('/').map_or(0, |i| i + 1);
    match n[last_slash..].rfind(':') {
        Some(i) => n[..last_slash + i].to_string(),
        None => n,
    }
}

/// IDs of the images that are among the newest `n` (by creation time) of any of their
/// repositories.
fn newest_per_repository(images: &[Image], n: usize) -> HashMap<String, String> {
    let mut by_repo: HashMap<String, Vec<&Image>> = HashMap::new();
    for i in images {
        let repos: HashSet<String> = i
            .repo_tags
            .iter()
            .chain(&i.repo_digests)
            .map(|r| repository(r))
            .collect();
        for r in repos {
            by_repo.entry(r).or_default().push(i);
        }
    }
    let mut kept = HashMap::new();
    for (repo, mut imgs) in by_repo {
        imgs.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        imgs.dedup_by(|a, b| a.id == b.id);
        for i in imgs.into_iter().take(n) {
            kept.entry(i.id.clone())
                .or_insert_with(|| format!("one of the newest {n} of {repo}"));
        }
    }
    kept
}

/// Plans one run. `last_used` maps image IDs to the last time the agent saw them in use
/// (empty for a one-shot CLI run).
pub fn plan(
    images: &[Image],
    users: &[ImageUser],
    policy: &Policy,
    mode: Mode,
    now: Timestamp,
    last_used: &HashMap<String, Timestamp>,
) -> Plan {
    let in_use = InUseIndex::new(users);
    let newest = if policy.keep_newest_per_repository > 0 {
        newest_per_repository(images, policy.keep_newest_per_repository)
    } else {
        HashMap::new()
    };
    let decide = |i: &Image, reason: Reason, detail: String| Decision {
        image: i.display_name(),
        id: i.id.clone(),
        created: i.created,
        size_bytes: i.size_bytes,
        reclaimable_bytes: i.exclusive_bytes(),
        reason,
        detail,
        by_threshold: false,
        source: i.clone(),
    };
    let mut kept = Vec::new();
    let mut candidates = Vec::new();
    for i in images {
        if let Mode::Emergency {
            dangling_only: true,
            ..
        } = mode
            && !i.is_dangling()
        {
            continue;
        }
        if let Some(u) = in_use.user_of(i) {
            kept.push(decide(i, Reason::KeptInUse, in_use_detail(users.get(u))));
        } else if i.pinned {
            kept.push(decide(
                i,
                Reason::KeptPinned,
                "pinned by the runtime".into(),
            ));
        } else if let Some(p) = policy.keep.matching(i) {
            kept.push(decide(
                i,
                Reason::KeptKeepList,
                format!("matches keep pattern {p:?}"),
            ));
        } else if let Some(why) = newest.get(&i.id) {
            kept.push(decide(i, Reason::KeptKeepList, why.clone()));
        } else {
            candidates.push(i);
        }
    }
    // Least recently used first; ties by ID so that plans are reproducible.
    let lru_key = |i: &Image| {
        last_used
            .get(&i.id)
            .copied()
            .max(i.created)
            .unwrap_or(Timestamp::UNIX_EPOCH)
    };
    candidates.sort_by(|a, b| lru_key(a).cmp(&lru_key(b)).then_with(|| a.id.cmp(&b.id)));
    let age_of = |i: &Image| {
        i.created
            .map(|c| Duration::try_from(now.duration_since(c)).unwrap_or(Duration::ZERO))
    };

    let mut removals = Vec::new();
    let (disk, stop_at) = match mode {
        Mode::Prune { disk } => {
            let mut young = Vec::new();
            for i in candidates {
                match age_of(i) {
                    Some(age) if age >= policy.min_age => removals.push(decide(
                        i,
                        Reason::Removed,
                        format!(
                            "created {} ago, min_age {}",
                            fmt_age(age),
                            fmt_age(policy.min_age)
                        ),
                    )),
                    _ => young.push(i),
                }
            }
            let pressure = disk.filter(|d| d.used_percent() >= policy.high_threshold_percent);
            match pressure {
                None => {
                    for i in young {
                        kept.push(decide(
                            i,
                            Reason::KeptYoung,
                            young_detail(age_of(i), policy.min_age),
                        ));
                    }
                    (disk, None)
                }
                Some(d) => {
                    let already: u64 = removals.iter().map(|r| r.reclaimable_bytes).sum();
                    let mut need = d
                        .bytes_to_reach(policy.low_threshold_percent)
                        .saturating_sub(already);
                    let why = format!(
                        "image filesystem {:.1}% used, at or above high_threshold_percent {}",
                        d.used_percent(),
                        policy.high_threshold_percent
                    );
                    for i in young {
                        match age_of(i) {
                            Some(age) if age >= policy.pressure_min_age => {
                                if need > 0 {
                                    need = need.saturating_sub(i.exclusive_bytes());
                                    let mut dec = decide(i, Reason::Removed, why.clone());
                                    dec.by_threshold = true;
                                    removals.push(dec);
                                } else {
                                    kept.push(decide(
                                        i,
                                        Reason::KeptBelowThreshold,
                                        format!("earlier removals bring usage to low_threshold_percent {}", policy.low_threshold_percent),
                                    ));
                                }
                            }
                            age => kept.push(decide(
                                i,
                                Reason::KeptYoung,
                                young_detail(age, policy.pressure_min_age),
                            )),
                        }
                    }
                    (disk, Some(policy.low_threshold_percent))
                }
            }
        }
        Mode::Emergency {
            disk,
            target_used_percent,
            ..
        } => {
            let mut need = disk.bytes_to_reach(target_used_percent);
            for i in candidates {
                if need > 0 {
                    need = need.saturating_sub(i.exclusive_bytes());
                    let mut dec = decide(
                        i,
                        Reason::Removed,
                        format!("emergency: freeing until {target_used_percent}% used"),
                    );
                    dec.by_threshold = true;
                    removals.push(dec);
                } else {
                    kept.push(decide(
                        i,
                        Reason::KeptBelowThreshold,
                        format!("earlier removals reach the target of {target_used_percent}% used"),
                    ));
                }
            }
            (Some(disk), Some(target_used_percent))
        }
    };
    count_layers_once(&mut removals, images);
    kept.sort_by(|a, b| a.image.cmp(&b.image).then_with(|| a.id.cmp(&b.id)));
    removals.extend(kept);
    Plan {
        decisions: removals,
        disk,
        stop_at_percent: stop_at,
    }
}

/// Sets each removal's `reclaimable_bytes` to what the runtime frees when it is carried
/// out in plan order: a layer counts once, at the last removal that uses it, and not at
/// all when an image that stays uses it, which is how `docker image prune` adds up its
/// "reclaimed space" (and what `docker system df` shows freed). Needs every image's layers
/// ([`Image::layers`]): with any unknown, the removals keep [`Image::exclusive_bytes`].
fn count_layers_once(removals: &mut [Decision], images: &[Image]) {
    if images.iter().any(|i| i.layers.is_empty()) {
        return;
    }
    // One pass each way (a plan can hold thousands of images): the layers the images that
    // stay hold, and for each layer the last removal that uses it.
    let removed: HashSet<&str> = removals.iter().map(|d| d.id.as_str()).collect();
    let held: HashSet<&str> = images
        .iter()
        .filter(|i| !removed.contains(i.id.as_str()))
        .flat_map(|i| i.layers.iter().map(|l| l.id.as_str()))
        .collect();
    let mut last: HashMap<String, usize> = HashMap::new();
    for (k, d) in removals.iter().enumerate() {
        for l in &d.source.layers {
            last.insert(l.id.clone(), k);
        }
    }
    for (k, d) in removals.iter_mut().enumerate() {
        d.reclaimable_bytes = d
            .source
            .layers
            .iter()
            .filter(|l| !held.contains(l.id.as_str()) && last.get(&l.id) == Some(&k))
            .map(|l| l.bytes)
            .sum();
    }
}

fn young_detail(age: Option<Duration>, min: Duration) -> String {
    match age {
        Some(a) => format!("created {} ago, younger than {}", fmt_age(a), fmt_age(min)),
        None => "creation time unknown, so never old enough".into(),
    }
}

fn in_use_detail(user: Option<&ImageUser>) -> String {
    match user {
        Some(u) => {
            let kind = match u.kind {
                UserKind::Container => "container",
                UserKind::Sandbox => "pod sandbox",
            };
            format!("used by {kind} {} ({})", short_id(&u.id), u.state)
        }
        None => "in use".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::runtime::Layer;

    pub(crate) fn policy() -> Policy {
        Policy {
            min_age: Duration::from_secs(168 * 3600),
            keep: KeepList::new(&["registry.k8s.io/pause*"]).unwrap(),
            keep_newest_per_repository: 0,
            high_threshold_percent: 85.0,
            low_threshold_percent: 80.0,
            pressure_min_age: Duration::from_secs(120),
        }
    }

    fn now() -> Timestamp {
        "2025-06-01T00:00:00Z".parse().unwrap()
    }

    fn img(n: u32, tag: &str, age_hours: i64, size: u64) -> Image {
        Image {
            id: format!("sha256:{n:04x}{}", "e".repeat(60)),
            repo_tags: if tag.is_empty() {
                vec![]
            } else {
                vec![tag.into()]
            },
            repo_digests: vec![],
            created: Some(now() - jiff::SignedDuration::from_hours(age_hours)),
            size_bytes: size,
            shared_bytes: Some(0),
            layers: Vec::new(),
            pinned: false,
        }
    }

    /// `img` with these layers (name, bytes), bottom first.
    fn layered(n: u32, tag: &str, layers: &[(&str, u64)]) -> Image {
        let mut i = img(n, tag, 500, layers.iter().map(|l| l.1).sum());
        i.layers = layers
            .iter()
            .map(|(id, bytes)| Layer {
                id: (*id).into(),
                bytes: *bytes,
            })
            .collect();
        i
    }

    #[test]
    fn shared_layers_count_once_and_not_at_all_when_a_kept_image_uses_them() {
        // base (100) is shared by all three; mid (30) by the two removed ones; kept:1 is
        // used by a container, so `base` stays.
        let images = vec![
            layered(1, "a:1", &[("base", 100), ("mid", 30), ("a", 5)]),
            layered(2, "b:1", &[("base", 100), ("mid", 30), ("b", 7)]),
            layered(3, "kept:1", &[("base", 100), ("k", 11)]),
        ];
        let p = plan(
            &images,
            &[user("kept:1")],
            &policy(),
            Mode::Prune { disk: None },
            now(),
            &HashMap::new(),
        );
        let removed: Vec<(String, u64)> = p
            .removals()
            .map(|d| (d.image.clone(), d.reclaimable_bytes))
            .collect();
        // `mid` is freed by whichever of a and b goes last.
        assert_eq!(removed, vec![("a:1".into(), 5), ("b:1".into(), 37)]);
        assert_eq!(p.reclaimable_bytes(), 42);
        // The old estimate (size minus SharedSize, with SharedSize unknown) said 135 + 137.
        assert_eq!(
            images[0].exclusive_bytes() + images[1].exclusive_bytes(),
            272
        );
    }

    #[test]
    fn an_image_with_unknown_layers_keeps_the_per_image_estimate() {
        let mut images = vec![
            layered(1, "a:1", &[("base", 100), ("a", 5)]),
            layered(2, "b:1", &[("base", 100), ("b", 7)]),
        ];
        images[1].layers.clear();
        let p = plan(
            &images,
            &[],
            &policy(),
            Mode::Prune { disk: None },
            now(),
            &HashMap::new(),
        );
        assert_eq!(p.reclaimable_bytes(), 105 + 107);
    }

    fn user(r: &str) -> ImageUser {
        ImageUser {
            kind: UserKind::Container,
            id: "c1".into(),
            image_ref: r.into(),
            image_id: String::new(),
            state: "exited".into(),
        }
    }

    fn reasons(p: &Plan) -> Vec<(String, String)> {
        p.decisions
            .iter()
            .map(|d| (d.image.clone(), d.reason.to_string()))
            .collect()
    }

    #[test]
    fn every_rule_gives_its_reason() {
        let mut pinned = img(3, "pinned:1", 500, 10);
        pinned.pinned = true;
        let images = vec![
            img(1, "old:1", 200, 10),
            img(2, "used:1", 500, 10),
            pinned,
            img(4, "registry.k8s.io/pause:3.9", 900, 10),
            img(5, "young:1", 5, 10),
            img(6, "", 300, 10),
        ];
        let p = plan(
            &images,
            &[user("used:1")],
            &policy(),
            Mode::Prune { disk: None },
            now(),
            &HashMap::new(),
        );
        assert_eq!(
            reasons(&p),
            vec![
                ("0006eeeeeeee".into(), "removed".into()),
                ("old:1".into(), "removed".into()),
                ("pinned:1".into(), "kept:pinned".into()),
                ("registry.k8s.io/pause:3.9".into(), "kept:keep-list".into()),
                ("used:1".into(), "kept:in-use".into()),
                ("young:1".into(), "kept:young".into()),
            ]
        );
        assert_eq!(p.decisions[1].detail, "created 8days 8h ago, min_age 7days");
        assert_eq!(p.decisions[4].detail, "used by container c1 (exited)");
        assert_eq!(
            p.decisions[3].detail,
            "matches keep pattern \"registry.k8s.io/pause*\""
        );
        assert_eq!(p.decisions[5].detail, "created 5h ago, younger than 7days");
        assert_eq!(p.reclaimable_bytes(), 20);
    }

    #[test]
    fn below_the_high_threshold_young_images_stay() {
        let images = vec![img(1, "a:1", 1, 100), img(2, "b:1", 2, 100)];
        let disk = DiskUsage {
            capacity_bytes: 1000,
            available_bytes: 151,
        }; // 84.9 %
        let p = plan(
            &images,
            &[],
            &policy(),
            Mode::Prune { disk: Some(disk) },
            now(),
            &HashMap::new(),
        );
        assert_eq!(
            reasons(&p),
            vec![
                ("a:1".into(), "kept:young".into()),
                ("b:1".into(), "kept:young".into())
            ]
        );
        assert_eq!(p.stop_at_percent, None);
    }

    #[test]
    fn at_the_high_threshold_least_recently_used_go_first_until_the_low_threshold() {
        // 85 % used: 50 bytes must go to reach 80 %. Oldest first: c (3h), b (2h) is enough? c frees 30, b 30.
        let images = vec![
            img(1, "a:1", 1, 30),
            img(2, "b:1", 2, 30),
            img(3, "c:1", 3, 30),
            img(4, "d:1", 0, 30),
        ];
        let disk = DiskUsage {
            capacity_bytes: 1000,
            available_bytes: 150,
        };
        let p = plan(
            &images,
            &[],
            &policy(),
            Mode::Prune { disk: Some(disk) },
            now(),
            &HashMap::new(),
        );
        assert_eq!(
            reasons(&p),
            vec![
                ("c:1".into(), "removed".into()),
                ("b:1".into(), "removed".into()),
                ("a:1".into(), "kept:below-threshold".into()),
                ("d:1".into(), "kept:young".into()),
            ]
        );
        assert!(p.decisions[0].by_threshold);
        assert_eq!(p.stop_at_percent, Some(80.0));
    }

    #[test]
    fn last_use_seen_by_the_agent_overrides_creation_time_for_lru() {
        let images = vec![img(1, "a:1", 10, 60), img(2, "b:1", 20, 60)];
        let disk = DiskUsage {
            capacity_bytes: 1000,
            available_bytes: 150,
        };
        let mut last = HashMap::new();
        last.insert(
            images[1].id.clone(),
            now() - jiff::SignedDuration::from_hours(1),
        );
        let p = plan(
            &images,
            &[],
            &policy(),
            Mode::Prune { disk: Some(disk) },
            now(),
            &last,
        );
        assert_eq!(
            reasons(&p),
            vec![
                ("a:1".into(), "removed".into()),
                ("b:1".into(), "kept:below-threshold".into())
            ]
        );
    }

    #[test]
    fn emergency_ignores_age_and_dangling_only_leaves_tagged_images_out() {
        let images = vec![
            img(1, "a:1", 0, 60),
            img(2, "", 0, 60),
            img(3, "c:1", 1, 60),
        ];
        let disk = DiskUsage {
            capacity_bytes: 1000,
            available_bytes: 100,
        };
        let p = plan(
            &images,
            &[],
            &policy(),
            Mode::Emergency {
                disk,
                target_used_percent: 80.0,
                dangling_only: false,
            },
            now(),
            &HashMap::new(),
        );
        assert_eq!(
            reasons(&p),
            // 100 bytes must go: the oldest (c) and then, at equal age, the lower ID (a).
            vec![
                ("c:1".into(), "removed".into()),
                ("a:1".into(), "removed".into()),
                ("0002eeeeeeee".into(), "kept:below-threshold".into())
            ]
        );
        let p = plan(
            &images,
            &[],
            &policy(),
            Mode::Emergency {
                disk,
                target_used_percent: 80.0,
                dangling_only: true,
            },
            now(),
            &HashMap::new(),
        );
        assert_eq!(reasons(&p), vec![("0002eeeeeeee".into(), "removed".into())]);
        let calm = DiskUsage {
            capacity_bytes: 1000,
            available_bytes: 500,
        };
        let p = plan(
            &images,
            &[],
            &policy(),
            Mode::Emergency {
                disk: calm,
                target_used_percent: 80.0,
                dangling_only: false,
            },
            now(),
            &HashMap::new(),
        );
        assert!(
            p.decisions
                .iter()
                .all(|d| d.reason == Reason::KeptBelowThreshold)
        );
    }

    #[test]
    fn keep_newest_per_repository_counts_by_creation_time() {
        let images = vec![
            img(1, "app:1", 500, 1),
            img(2, "app:2", 400, 1),
            img(3, "app:3", 300, 1),
            img(4, "other:1", 300, 1),
        ];
        let mut pol = policy();
        pol.keep_newest_per_repository = 2;
        let p = plan(
            &images,
            &[],
            &pol,
            Mode::Prune { disk: None },
            now(),
            &HashMap::new(),
        );
        assert_eq!(
            reasons(&p),
            vec![
                ("app:1".into(), "removed".into()),
                ("app:2".into(), "kept:keep-list".into()),
                ("app:3".into(), "kept:keep-list".into()),
                ("other:1".into(), "kept:keep-list".into()),
            ]
        );
        assert_eq!(
            p.decisions[1].detail,
            "one of the newest 2 of docker.io/library/app"
        );
    }

    #[test]
    fn unknown_creation_time_is_never_old_enough() {
        let mut i = img(1, "a:1", 0, 1);
        i.created = None;
        let p = plan(
            &[i],
            &[],
            &policy(),
            Mode::Prune { disk: None },
            now(),
            &HashMap::new(),
        );
        assert_eq!(p.decisions[0].reason, Reason::KeptYoung);
        assert_eq!(
            p.decisions[0].detail,
            "creation time unknown, so never old enough"
        );
    }

    #[test]
    fn reasons_print_exactly_as_documented() {
        let all = [
            Reason::Removed,
            Reason::KeptInUse,
            Reason::KeptPinned,
            Reason::KeptYoung,
            Reason::KeptKeepList,
            Reason::KeptBelowThreshold,
            Reason::Failed("boom".into()),
        ];
        let s: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(
            s,
            [
                "removed",
                "kept:in-use",
                "kept:pinned",
                "kept:young",
                "kept:keep-list",
                "kept:below-threshold",
                "failed:boom"
            ]
        );
        assert_eq!(
            serde_json::to_string(&Reason::KeptInUse).unwrap(),
            "\"kept:in-use\""
        );
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        fn arb() -> impl Strategy<Value = (Vec<Image>, Vec<ImageUser>, u64, u8)> {
            (
                proptest::collection::vec(
                    (
                        0u32..40,
                        0usize..4,
                        0i64..400,
                        1u64..200,
                        any::<bool>(),
                        any::<bool>(),
                    ),
                    0..30,
                ),
                proptest::collection::vec((0u32..40, 0usize..3), 0..10),
                0u64..1000,
                50u8..100,
            )
                .prop_map(|(imgs, users, avail, target)| {
                    let tags = ["", "a:1", "registry.k8s.io/pause:3.9", "b:2"];
                    let mut seen = HashSet::new();
                    let images: Vec<Image> = imgs
                        .into_iter()
                        .filter(|(n, ..)| seen.insert(*n))
                        .map(|(n, t, age, size, pinned, dup)| {
                            let mut i = img(n, tags[t], age, size);
                            i.pinned = pinned;
                            if dup && !tags[t].is_empty() {
                                i.repo_tags = vec![format!("{}-{n}", tags[t])];
                            }
                            i
                        })
                        .collect();
                    let users = users
                        .into_iter()
                        .map(|(n, how)| match how {
                            0 => user(&format!("sha256:{n:04x}{}", "e".repeat(60))),
                            1 => user(&format!("{n:04x}eeeeeeee")),
                            _ => user("a:1"),
                        })
                        .collect();
                    (images, users, avail, target)
                })
        }

        proptest! {
            /// Whatever the inputs: one decision per image, and nothing in use, pinned or
            /// keep-listed is ever planned for removal.
            #[test]
            fn never_plans_to_remove_a_protected_image((images, users, avail, target) in arb()) {
                let idx = InUseIndex::new(&users);
                let disk = DiskUsage { capacity_bytes: 1000, available_bytes: avail };
                for mode in [
                    Mode::Prune { disk: None },
                    Mode::Prune { disk: Some(disk) },
                    Mode::Emergency { disk, target_used_percent: f64::from(target), dangling_only: false },
                ] {
                    let p = plan(&images, &users, &policy(), mode, now(), &HashMap::new());
                    prop_assert_eq!(p.decisions.len(), images.len());
                    let ids: HashSet<&str> = p.decisions.iter().map(|d| d.id.as_str()).collect();
                    prop_assert_eq!(ids.len(), images.len());
                    for d in p.removals() {
                        prop_assert!(!idx.uses(&d.source));
                        prop_assert!(!d.source.pinned);
                        prop_assert!(policy().keep.matching(&d.source).is_none());
                    }
                    if let Mode::Prune { disk: None } = mode {
                        for d in &p.decisions {
                            if d.reason == Reason::KeptYoung {
                                let age = now().duration_since(d.created.unwrap());
                                prop_assert!(age < jiff::SignedDuration::from_hours(168));
                            }
                        }
                    }
                }
            }
        }
    }
}
