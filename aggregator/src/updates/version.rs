//! Which newer chart versions count as a patch, minor or major update, as Renovate's
//! `helm` manager with its default `semver` versioning sorts them.
//!
//! - Versions are SemVer 2 (Helm requires it for charts). Like Helm's own parser
//!   (Masterminds/semver) a leading `v` and a missing minor or patch (`1.2` = `1.2.0`) are
//!   accepted; anything else is not a version and is skipped.
//! - OCI tags cannot hold `+`; Helm pushes `1.2.3+build` as the tag `1.2.3_build`
//!   ([`from_oci_tag`] turns it back).
//! - Prereleases (`2.0.0-rc.1`) are skipped unless the deployed version is itself a
//!   prerelease (Renovate's `ignoreUnstable`, on by default).
//! - "Newer" is SemVer precedence: build metadata does not make a version newer.
//! - The update type is Renovate's: another major is `major`, the same major with another
//!   minor is `minor`, the same major and minor is `patch`. Of each type the newest is kept,
//!   so a release far behind shows all three at once (e.g. 1.2.3 → 1.2.9, 1.8.0, 3.1.0).

use std::cmp::Ordering;

use semver::Version;
use serde::{Deserialize, Serialize};

/// A chart version as Helm reads it, or `None` when it is not one.
pub(crate) fn parse(s: &str) -> Option<Version> {
    let t = s.trim();
    let t = t.strip_prefix('v').unwrap_or(t);
    if let Ok(v) = Version::parse(t) {
        return Some(v);
    }
    // `1.2` and `1` with optional pre/build: fill in the missing numbers.
    let end = t.find(['-', '+']).unwrap_or(t.len());
    let (core, rest) = t.split_at(end);
    let parts = core.split('.').count();
    let filled = match parts {
        1 => format!("{core}.0.0{rest}"),
        2 => format!("{core}.0{rest}"),
        _ => return None,
    };
    Version::parse(&filled).ok()
}

/// The chart version an OCI tag stands for (`1.2.3_build` → `1.2.3+build`).
pub(crate) fn from_oci_tag(tag: &str) -> String {
    tag.replace('_', "+")
}

/// SemVer precedence (build metadata ignored).
fn precedence(a: &Version, b: &Version) -> Ordering {
    (a.major, a.minor, a.patch)
        .cmp(&(b.major, b.minor, b.patch))
        .then_with(|| match (a.pre.is_empty(), b.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => a.pre.cmp(&b.pre),
        })
}

/// The newest version of each update type; each is the version string as published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Updates {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub minor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub major: Option<String>,
}

impl Updates {
    /// No newer version.
    pub fn is_empty(&self) -> bool {
        self.patch.is_none() && self.minor.is_none() && self.major.is_none()
    }
}

/// The updates from `current` among `available` (published version strings), or `None`
/// when `current` is not a version.
pub(crate) fn classify<'a>(
    current: &str,
    available: impl IntoIterator<Item = &'a str>,
) -> Option<Updates> {
    let cur = parse(current)?;
    let unstable_ok = !cur.pre.is_empty();
    let mut best: [Option<(Version, &str)>; 3] = [None, None, None];
    for s in available {
        let Some(v) = parse(s) else { continue };
        if !v.pre.is_empty() && !unstable_ok {
            continue;
        }
        if precedence(&v, &cur) != Ordering::Greater {
            continue;
        }
        let slot = if v.major != cur.major {
            2
        } else if v.minor != cur.minor {
            1
        } else {
            0
        };
        if best[slot]
            .as_ref()
            .is_none_or(|(b, _)| precedence(&v, b) == Ordering::Greater)
        {
            best[slot] = Some((v, s));
        }
    }
    let [patch, minor, major] = best.map(|b| b.map(|(_, s)| s.to_string()));
    Some(Updates {
        patch,
        minor,
        major,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(p: Option<&str>, mi: Option<&str>, ma: Option<&str>) -> Updates {
        Updates {
            patch: p.map(Into::into),
            minor: mi.map(Into::into),
            major: ma.map(Into::into),
        }
    }

    #[test]
    fn newest_of_each_type_is_reported_apart() {
        let avail = [
            "1.2.2", "1.2.3", "1.2.4", "1.2.10", "1.3.0", "1.10.1", "2.0.0", "3.1.0", "3.0.5",
        ];
        assert_eq!(
            classify("1.2.3", avail),
            Some(u(Some("1.2.10"), Some("1.10.1"), Some("3.1.0"))),
            "numeric, not lexical, order"
        );
        assert_eq!(classify("3.1.0", avail), Some(Updates::default()));
        assert!(classify("3.1.0", avail).unwrap().is_empty());
    }

    #[test]
    fn prereleases_only_when_the_deployed_version_is_one() {
        let avail = [
            "1.0.0",
            "1.0.1-rc.1",
            "1.1.0-beta.2",
            "2.0.0-alpha.1",
            "1.0.1",
        ];
        assert_eq!(classify("1.0.0", avail), Some(u(Some("1.0.1"), None, None)));
        assert_eq!(
            classify("1.0.1-rc.0", avail),
            Some(u(
                Some("1.0.1"),
                Some("1.1.0-beta.2"),
                Some("2.0.0-alpha.1")
            )),
            "from a prerelease, the release of the same version is a patch update"
        );
    }

    #[test]
    fn build_metadata_is_not_newer_and_oci_tags_carry_it_with_underscores() {
        assert_eq!(from_oci_tag("1.2.3_build.7"), "1.2.3+build.7");
        let avail = ["1.2.3+build.8", "1.2.4+build.1"];
        assert_eq!(
            classify("1.2.3+build.7", avail),
            Some(u(Some("1.2.4+build.1"), None, None))
        );
    }

    #[test]
    fn helm_style_loose_versions_and_garbage() {
        assert_eq!(parse("v1.2.3"), Some(Version::new(1, 2, 3)));
        assert_eq!(parse("1.2"), Some(Version::new(1, 2, 0)));
        assert_eq!(parse("7"), Some(Version::new(7, 0, 0)));
        assert_eq!(
            parse("1.2-rc.1").map(|v| v.pre.to_string()),
            Some("rc.1".into())
        );
        assert_eq!(parse("latest"), None);
        assert_eq!(parse("sha256-abc"), None);
        assert_eq!(classify("latest", ["1.0.0"]), None);
        assert_eq!(
            classify("v1.0.0", ["latest", "v1.0.2", "1.1"]),
            Some(u(Some("v1.0.2"), Some("1.1"), None))
        );
    }
}
