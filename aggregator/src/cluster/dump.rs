//! Reading a [`ClusterState`] from `kubectl get … -o json|yaml` files.
//!
//! A path is a file or a directory (walked recursively in name order, taking `*.json`,
//! `*.yaml` and `*.yml`). A file holds one or more documents: concatenated JSON values
//! (`kubectl get a -o json; kubectl get b -o json`) or `---`-separated YAML documents. A
//! document is a single object or a List (`kind: List` as kubectl prints it, or a typed
//! `PodList` as the API returns it) whose `items` are objects.
//!
//! Objects of kinds no check reads are counted in `LoadSummary::unknown_kinds` and
//! dropped. A document or item that cannot be read is recorded as a [`LoadProblem`] with
//! its file and index and skipped; the rest of the file is still read (for JSON, a syntax
//! error ends the file, since no later value can be found reliably).
//!
//! To keep a large dump small in memory, objects are parsed straight from the file's bytes
//! into their typed form (JSON) and the `kubectl.kubernetes.io/last-applied-configuration`
//! annotation and `managedFields`, which no check reads, are dropped.

use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::events::v1 as events;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::{ClusterState, Coverage, LoadProblem, Resource, Typed, TypedOp, trim_dynamic};

/// A dump path that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("cannot read dump {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A directory given on the command line holds no `*.json`, `*.yaml` or `*.yml` file.
    #[error("no dump files (*.json, *.yaml, *.yml) under {path}")]
    NoFiles { path: PathBuf },
    /// A dump file with nothing in it (kubectl always prints at least an empty List).
    #[error("dump file {path} is empty")]
    Empty { path: PathBuf },
    /// A file whose reading stopped part way (truncated or not JSON past some point): what
    /// it would have said about the cluster is unknown, so no verdict is given.
    #[error("cannot read dump {0}")]
    Truncated(LoadProblem),
}

/// Why a streamed JSON document stopped being readable.
#[derive(Debug, thiserror::Error)]
enum ObjectError {
    #[error(transparent)]
    Scan(#[from] super::stream::ScanError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("expected a key")]
    ExpectedKey,
    #[error("expected ':' after {0:?}")]
    ExpectedColon(String),
    #[error("unexpected end of file in items")]
    EndInItems,
}

/// Annotation holding a full copy of the object as last applied; never read by a check.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// YAML limits: far above any real dump (a 150,000-pod List is ~30 M nodes), still bounded
/// so a hostile file cannot exhaust memory through aliases.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: None,
            max_events: usize::MAX,
            max_nodes: usize::MAX,
            max_documents: usize::MAX,
            max_total_scalar_bytes: usize::MAX,
            max_depth: 128,
        },
        // YAML 1.2 booleans: a namespace called `n` or `off` stays a string.
        strict_booleans: true,
        with_snippet: false,
    }
}

/// Reads every file under `paths` into one state.
///
/// # Errors
/// [`DumpError::Read`] when a path does not exist or a file or directory cannot be read;
/// [`DumpError::NoFiles`] for a directory without dump files, [`DumpError::Empty`] for an
/// empty file and [`DumpError::Truncated`] for a file whose reading stopped part way (a
/// truncated JSON file): a source that could not be read is never a clean bill of health.
/// A single object or List item that cannot be read is not an error: it is listed in
/// `state.load.problems` and the rest of the file is read.
pub fn load(paths: &[PathBuf]) -> Result<ClusterState, DumpError> {
    let mut files = Vec::new();
    for p in paths {
        let before = files.len();
        collect_files(p, true, &mut files)?;
        if files.len() == before {
            return Err(DumpError::NoFiles { path: p.clone() });
        }
    }
    let mut state = ClusterState {
        from_dump: true,
        ..Default::default()
    };
    for f in files {
        let err = |source| DumpError::Read {
            path: f.clone(),
            source,
        };
        let mut file = std::fs::File::open(&f).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        let problems_before = state.load.problems.len();
        if len > STREAM_THRESHOLD_BYTES && starts_with_object(&mut file).map_err(err)? {
            Loader {
                state: &mut state,
                file: &f,
            }
            .json_stream(std::io::BufReader::new(file));
        } else {
            let mut bytes = Vec::with_capacity(len as usize);
            file.read_to_end(&mut bytes).map_err(err)?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Err(DumpError::Empty { path: f });
            }
            load_bytes(&mut state, &f, &bytes);
        }
        if let Some(p) = state.load.problems[problems_before..]
            .iter()
            .find(|p| p.ends_file)
        {
            return Err(DumpError::Truncated(p.clone()));
        }
    }
    Ok(state)
}

/// JSON files larger than this are read in chunks (see [`super::stream`]): the peak
/// memory is then the largest object, not the file.
const STREAM_THRESHOLD_BYTES: u64 = 32 << 20;

/// Whether the file's first non-whitespace byte opens a JSON object (rewinds the file).
fn starts_with_object(f: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::Seek;
    let mut head = [0u8; 4096];
    let n = f.read(&mut head)?;
    f.rewind()?;
    Ok(head[..n].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
}

fn collect_files(path: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> Result<(), DumpError> {
    let err = |source| DumpError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(err)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        entries.sort();
        for e in entries {
            collect_files(&e, false, out)?;
        }
    } else if explicit
        || matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("json" | "yaml" | "yml")
        )
    {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Adds the documents of one file (JSON or YAML, told apart by the first character) to
/// `state`. `file` is only used in problems.
pub fn load_bytes(state: &mut ClusterState, file: &Path, bytes: &[u8]) {
    let mut loader = Loader { state, file };
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {}
        Some(b'{' | b'[') => loader.json(bytes),
        Some(_) => loader.yaml(bytes),
    }
}

/// The fields every document is first read for.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "apiVersion", default, borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    items: Option<Vec<&'a RawValue>>,
}

/// An object not yet parsed into its type.
enum Doc<'a> {
    Raw(&'a RawValue),
    Text(&'a str),
    Value(serde_json::Value),
}

impl Doc<'_> {
    fn parse<T: DeserializeOwned>(self) -> Result<T, serde_json::Error> {
        match self {
            Doc::Raw(r) => serde_json::from_str(r.get()),
            Doc::Text(t) => serde_json::from_str(t),
            Doc::Value(v) => serde_json::from_value(v),
        }
    }
}

struct Loader<'s> {
    state: &'s mut ClusterState,
    file: &'s Path,
}

impl Loader<'_> {
    fn problem(&mut self, document: usize, item: Option<usize>, message: impl Into<String>) {
        self.state.load.problems.push(LoadProblem {
            file: self.file.to_path_buf(),
            document,
            item,
            message: message.into(),
            ends_file: false,
        });
    }

    /// A problem after which nothing more of the file can be read.
    fn fatal(&mut self, document: usize, message: impl Into<String>) {
        self.problem(document, None, message);
        if let Some(p) = self.state.load.problems.last_mut() {
            p.ends_file = true;
        }
    }

    fn json(&mut self, bytes: &[u8]) {
        let stream = serde_json::Deserializer::from_slice(bytes).into_iter::<&RawValue>();
        for (i, value) in stream.enumerate() {
            let document = i + 1;
            match value {
                Ok(raw) if raw.get().starts_with('[') => {
                    match serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
                        Ok(items) => {
                            self.items(document, &(None, None), items.into_iter().map(Doc::Raw))
                        }
                        Err(e) => self.problem(
                            document,
                            None,
                            format!("not a JSON array of objects: {e}"),
                        ),
                    }
                }
                Ok(raw) => match serde_json::from_str::<Head>(raw.get()) {
                    Ok(head) if is_list(&head.kind, head.items.is_some()) => {
                        let (kind, api_version) = (
                            head.kind.as_deref().unwrap_or(""),
                            head.api_version.as_deref(),
                        );
                        self.list_kind(kind, api_version);
                        let default = item_default(kind, api_version);
                        self.items(
                            document,
                            &default,
                            head.items.unwrap_or_default().into_iter().map(Doc::Raw),
                        );
                    }
                    Ok(head) => self.object(
                        document,
                        None,
                        head.api_version.as_deref(),
                        head.kind.as_deref(),
                        Doc::Raw(raw),
                    ),
                    Err(e) => self.problem(document, None, format!("not a Kubernetes object: {e}")),
                },
                Err(e) => {
                    self.fatal(
                        document,
                        format!("invalid JSON: {e}; the rest of the file is skipped"),
                    );
                    break;
                }
            }
        }
    }

    /// Concatenated JSON objects read in chunks. A List's items are cut out here and parsed
    /// in batches on worker threads (one per core, see [`Pool`]); the results are added in
    /// the items' order, so the state is the same as reading them one by one.
    fn json_stream(&mut self, r: impl Read) {
        self.json_stream_with(r, parse_workers(), BATCH_BYTES);
    }

    /// [`Loader::json_stream`] with `workers` threads and batches of `batch_bytes`.
    fn json_stream_with(&mut self, r: impl Read, workers: usize, batch_bytes: usize) {
        let file = self.file;
        std::thread::scope(|scope| {
            let mut pool = Pool::new(scope, file, workers, batch_bytes);
            let mut sc = super::stream::Scanner::new(r);
            let mut document = 0;
            loop {
                match sc.skip_ws() {
                    Ok(None) => break,
                    Ok(Some(b'{')) => {}
                    Ok(Some(_)) => {
                        self.fatal(
                            document + 1,
                            "not a JSON object; the rest of the file is skipped",
                        );
                        break;
                    }
                    Err(e) => {
                        self.fatal(document + 1, e.to_string());
                        break;
                    }
                }
                document += 1;
                let result = self.stream_object(&mut sc, document, &mut pool);
                if let Err(e) = result {
                    // The items read before the fault come first, as they would one by
                    // one; kindless items still waiting for the List's kind are dropped
                    // with the rest of the List.
                    pool.finish(self);
                    self.fatal(
                        document,
                        format!("invalid JSON: {e}; the rest of the file is skipped"),
                    );
                    break;
                }
            }
            pool.finish(self);
        });
    }

    fn stream_object<R: Read>(
        &mut self,
        sc: &mut super::stream::Scanner<R>,
        document: usize,
        pool: &mut Pool,
    ) -> Result<(), ObjectError> {
        sc.bump(); // '{'
        let mut fields: Vec<(String, String)> = Vec::new();
        let mut items_seen = false;
        // Items without a kind met before the List's kind: handled at the end.
        let mut pending: Vec<(usize, String)> = Vec::new();
        let mut item_no = 0usize;
        loop {
            match sc.skip_ws()? {
                Some(b'}') => {
                    sc.bump();
                    break;
                }
                Some(b',') => {
                    sc.bump();
                    continue;
                }
                Some(b'"') => {}
                _ => return Err(ObjectError::ExpectedKey),
            }
            let key: String = serde_json::from_slice(sc.value()?)?;
            if sc.skip_ws()? != Some(b':') {
                return Err(ObjectError::ExpectedColon(key));
            }
            sc.bump();
            if key == "items" && sc.skip_ws()? == Some(b'[') {
                items_seen = true;
                sc.bump();
                let kind = field_of(&fields, "kind");
                let default = item_default(
                    kind.as_deref().unwrap_or(""),
                    field_of(&fields, "apiVersion").as_deref(),
                );
                // Items lacking a kind wait for the List's kind when it is not known yet.
                let defer_kindless = kind.is_none();
                loop {
                    match sc.skip_ws()? {
                        Some(b']') => {
                            sc.bump();
                            break;
                        }
                        Some(b',') => {
                            sc.bump();
                            continue;
                        }
                        None => return Err(ObjectError::EndInItems),
                        _ => {}
                    }
                    item_no += 1;
                    let bytes = sc.value()?;
                    pool.push(self, document, &default, defer_kindless, item_no, bytes);
                }
                pending.extend(pool.finish(self));
            } else {
                let raw = String::from_utf8_lossy(sc.value()?).into_owned();
                fields.push((key, raw));
            }
        }
        let kind = field_of(&fields, "kind");
        let api_version = field_of(&fields, "apiVersion");
        if items_seen || is_list(&kind.as_deref().map(Cow::Borrowed), false) {
            self.list_kind(kind.as_deref().unwrap_or(""), api_version.as_deref());
            let default = item_default(kind.as_deref().unwrap_or(""), api_version.as_deref());
            for (j, text) in &pending {
                self.items_at(document, *j, &default, Doc::Text(text));
            }
        } else {
            // A single object: put it back together and read it like any other.
            let mut text = String::from("{");
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&serde_json::to_string(k)?);
                text.push(':');
                text.push_str(v);
            }
            text.push('}');
            self.object(
                document,
                None,
                api_version.as_deref(),
                kind.as_deref(),
                Doc::Text(&text),
            );
        }
        Ok(())
    }

    /// One item of a List, numbered `item` (1-based).
    fn items_at(
        &mut self,
        document: usize,
        item: usize,
        default: &(Option<String>, Option<String>),
        doc: Doc,
    ) {
        // `items` numbers from 1; shift so the numbering matches the List's.
        let before = self.state.load.problems.len();
        self.items(document, default, std::iter::once(doc));
        for p in &mut self.state.load.problems[before..] {
            p.item = Some(item);
        }
    }

    fn yaml(&mut self, bytes: &[u8]) {
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => return self.fatal(1, format!("not UTF-8 text: {e}")),
        };
        for (i, doc) in split_yaml_documents(text).into_iter().enumerate() {
            let document = i + 1;
            if doc
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
            {
                continue;
            }
            let value: serde_json::Value =
                match serde_saphyr::from_str_with_options(doc, yaml_options()) {
                    Ok(v) => v,
                    Err(e) => {
                        self.problem(document, None, format!("invalid YAML: {e}"));
                        continue;
                    }
                };
            self.value(document, value);
        }
    }

    fn value(&mut self, document: usize, mut value: serde_json::Value) {
        let Some(obj) = value.as_object_mut() else {
            return self.problem(document, None, "not a Kubernetes object (not a mapping)");
        };
        let kind = obj.get("kind").and_then(|k| k.as_str()).map(str::to_string);
        let api_version = obj
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .map(str::to_string);
        let items = obj.get("items").is_some();
        if is_list(&kind.as_deref().map(Cow::Borrowed), items) {
            self.list_kind(kind.as_deref().unwrap_or(""), api_version.as_deref());
            let items = match obj.remove("items") {
                Some(serde_json::Value::Array(a)) => a,
                Some(serde_json::Value::Null) | None => Vec::new(),
                Some(_) => return self.problem(document, None, "items is not a list"),
            };
            let default = item_default(kind.as_deref().unwrap_or(""), api_version.as_deref());
            self.items(document, &default, items.into_iter().map(Doc::Value));
        } else {
            self.object(
                document,
                None,
                api_version.as_deref(),
                kind.as_deref(),
                Doc::Value(value),
            );
        }
    }

    /// `default` is the (apiVersion, kind) of a typed List's items, which the API omits.
    fn items<'a>(
        &mut self,
        document: usize,
        default: &(Option<String>, Option<String>),
        items: impl Iterator<Item = Doc<'a>>,
    ) {
        for (j, item) in items.enumerate() {
            let (api_version, kind) = match &item {
                Doc::Raw(r) => sniff_kind(r.get()),
                Doc::Text(t) => sniff_kind(t),
                Doc::Value(v) => (
                    v.get("apiVersion")
                        .and_then(|k| k.as_str())
                        .map(str::to_string),
                    v.get("kind").and_then(|k| k.as_str()).map(str::to_string),
                ),
            };
            let (api_version, kind) = match kind {
                Some(k) => (api_version, Some(k)),
                None => (api_version.or_else(|| default.0.clone()), default.1.clone()),
            };
            self.object(
                document,
                Some(j + 1),
                api_version.as_deref(),
                kind.as_deref(),
                item,
            );
        }
    }

    /// A typed List (`PodList`) says which resource it lists completely, even when empty.
    fn list_kind(&mut self, kind: &str, api_version: Option<&str>) {
        if let Some(k) = kind.strip_suffix("List")
            && let Some(r) = Resource::from_kind(group_of(api_version), k)
        {
            self.state.coverage.insert(r, Coverage::Listed);
        }
    }

    fn object(
        &mut self,
        document: usize,
        item: Option<usize>,
        api_version: Option<&str>,
        kind: Option<&str>,
        doc: Doc,
    ) {
        let Some(kind) = kind else {
            return self.problem(document, item, "object has no kind");
        };
        let group = group_of(api_version);
        let result = match (group, kind) {
            ("events.k8s.io", "Event") => doc.parse::<events::Event>().map(|e| {
                let mut e = event_from_events_v1(e);
                e.trim();
                self.state.events.push(e);
            }),
            _ => match Resource::from_kind(group, kind) {
                Some(r) => self.typed(r, doc),
                None => {
                    let key = if group.is_empty() {
                        kind.to_string()
                    } else {
                        format!("{kind}.{group}")
                    };
                    *self.state.load.unknown_kinds.entry(key).or_default() += 1;
                    return;
                }
            },
        };
        match result {
            Ok(()) => self.state.load.objects += 1,
            Err(e) => self.problem(document, item, format!("invalid {kind}: {e}")),
        }
    }

    fn typed(&mut self, r: Resource, doc: Doc) -> Result<(), serde_json::Error> {
        /// Parses one object of a typed resource onto its list.
        struct Push<'d>(Doc<'d>);
        impl TypedOp<'_> for Push<'_> {
            type Output = Result<(), serde_json::Error>;
            fn call<T: Typed>(self, _: Resource, objects: &mut Vec<T>) -> Self::Output {
                let mut o: T = self.0.parse()?;
                o.trim();
                objects.push(o);
                Ok(())
            }
        }
        if let Some(objects) = self.state.dynamic_mut(r) {
            let mut o: DynamicObject = doc.parse()?;
            trim_dynamic(r, &mut o);
            objects.push(o);
            return Ok(());
        }
        // Every resource is held either as DynamicObjects or typed.
        self.state.typed_mut(r, Push(doc)).unwrap_or(Ok(()))
    }
}

/// Items cut out of a streamed List, parsed together on one worker.
struct Batch {
    document: usize,
    /// The (apiVersion, kind) of a typed List's items.
    default: (Option<String>, Option<String>),
    /// Whether items without a kind are handed back instead of parsed (the List's kind
    /// comes after its items).
    defer_kindless: bool,
    /// (1-based item number, the item's JSON).
    items: Vec<(usize, Vec<u8>)>,
    bytes: usize,
    /// Objects this worker parsed before, already copied into the state: the worker drops
    /// them, so their memory goes back to its own arena without contending for its lock.
    done: Option<ClusterState>,
}

/// What a worker made of a [`Batch`]: the objects and problems, and the items handed back.
struct Parsed {
    state: ClusterState,
    pending: Vec<(usize, String)>,
}

/// A batch is sent once it holds this many bytes of JSON (~330 pods): large enough that
/// the hand-over costs nothing next to the parsing, small enough that the batches in
/// flight (at most [`QUEUE_DEPTH`] per worker plus one being parsed) and the garbage a
/// worker's arena holds stay a few MiB.
const BATCH_BYTES: usize = 1 << 20;
/// Batches queued per worker.
const QUEUE_DEPTH: usize = 2;
/// Most workers used, whatever the core count.
const MAX_WORKERS: usize = 8;

/// Parsing threads for a large JSON file: one per core.
fn parse_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, MAX_WORKERS)
}

/// Worker threads that parse batches of List items. Batches go round-robin to the
/// workers, each with its own bounded queue and its own result channel, so results are
/// taken back in the order the batches were sent: batch `n` comes from worker
/// `n % workers` and each channel is first in, first out.
struct Pool {
    jobs: Vec<std::sync::mpsc::SyncSender<Batch>>,
    results: Vec<std::sync::mpsc::Receiver<Parsed>>,
    /// The batch being filled.
    current: Option<Batch>,
    sent: usize,
    merged: usize,
    /// Kindless items handed back by the workers, in item order.
    pending: Vec<(usize, String)>,
    /// A batch is sent once it holds this many bytes.
    batch_bytes: usize,
    /// Per worker, the objects it parsed last, copied, to be dropped on it (see
    /// [`Batch::done`]).
    done: Vec<Option<ClusterState>>,
}

impl Pool {
    fn new<'scope, 'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        file: &'env Path,
        workers: usize,
        batch_bytes: usize,
    ) -> Pool {
        let mut jobs = Vec::with_capacity(workers);
        let mut results = Vec::with_capacity(workers);
        for _ in 0..workers.max(1) {
            let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<Batch>(QUEUE_DEPTH);
            let (res_tx, res_rx) = std::sync::mpsc::channel::<Parsed>();
            scope.spawn(move || {
                for mut batch in job_rx {
                    drop(batch.done.take());
                    if res_tx.send(parse_batch(file, batch)).is_err() {
                        break;
                    }
                }
            });
            jobs.push(job_tx);
            results.push(res_rx);
        }
        Pool {
            jobs,
            results,
            current: None,
            sent: 0,
            merged: 0,
            pending: Vec::new(),
            batch_bytes,
            done: (0..workers.max(1)).map(|_| None).collect(),
        }
    }

    /// Adds one item; sends the batch when full and takes in the results already done.
    fn push(
        &mut self,
        loader: &mut Loader,
        document: usize,
        default: &(Option<String>, Option<String>),
        defer_kindless: bool,
        item: usize,
        bytes: &[u8],
    ) {
        let batch = self.current.get_or_insert_with(|| Batch {
            document,
            default: default.clone(),
            defer_kindless,
            items: Vec::new(),
            bytes: 0,
            done: None,
        });
        batch.items.push((item, bytes.to_vec()));
        batch.bytes += bytes.len();
        if batch.bytes >= self.batch_bytes {
            self.send(loader);
        }
    }

    fn send(&mut self, loader: &mut Loader) {
        let Some(mut batch) = self.current.take() else {
            return;
        };
        let worker = self.sent % self.jobs.len();
        batch.done = self.done[worker].take();
        if let Err(std::sync::mpsc::SendError(batch)) = self.jobs[worker].send(batch) {
            // The worker is gone (it panicked, which the scope reports when it ends):
            // parse here, after what was sent before, so the order holds.
            self.wait_all(loader);
            let parsed = parse_batch(loader.file, batch);
            self.merge(loader, parsed, None);
            return;
        }
        self.sent += 1;
        // Take in what is done, in order, without waiting.
        while self.merged < self.sent {
            match self.results[self.merged % self.results.len()].try_recv() {
                Ok(parsed) => {
                    let worker = self.merged % self.results.len();
                    self.merged += 1;
                    self.merge(loader, parsed, Some(worker));
                }
                Err(_) => break,
            }
        }
    }

    /// Waits for every batch sent and takes its results in.
    fn wait_all(&mut self, loader: &mut Loader) {
        while self.merged < self.sent {
            let Ok(parsed) = self.results[self.merged % self.results.len()].recv() else {
                // A worker panicked; the scope re-raises its panic when it ends.
                self.merged = self.sent;
                break;
            };
            let worker = self.merged % self.results.len();
            self.merged += 1;
            self.merge(loader, parsed, Some(worker));
        }
    }

    /// Takes a batch's objects in as copies made on this thread; the originals go back to
    /// `worker` (when they came from one) with its next batch, to be dropped there.
    ///
    /// Moving the worker's objects in would keep them in the worker's malloc arena,
    /// interleaved with what parsing left behind there (grown then trimmed vectors,
    /// dropped fields): glibc cannot hand those holes back, and on the 150,000-pod
    /// benchmark they came to ~170 MiB of an 800 MiB peak. Copies are allocated one after
    /// the other with exact capacities, and a worker's arena only ever holds the batches in
    /// hand.
    fn merge(&mut self, loader: &mut Loader, parsed: Parsed, worker: Option<usize>) {
        loader.state.append(parsed.state.clone());
        match worker.and_then(|w| self.done.get_mut(w)) {
            Some(slot) => *slot = Some(parsed.state),
            None => drop(parsed.state),
        }
        self.pending.extend(parsed.pending);
    }

    /// Sends the last batch, waits for all, and returns the kindless items handed back
    /// (in item order).
    fn finish(&mut self, loader: &mut Loader) -> Vec<(usize, String)> {
        self.send(loader);
        self.wait_all(loader);
        std::mem::take(&mut self.pending)
    }
}

/// Parses a batch into a state of its own (run on a worker).
fn parse_batch(file: &Path, batch: Batch) -> Parsed {
    let mut state = ClusterState::default();
    let mut pending = Vec::new();
    let mut loader = Loader {
        state: &mut state,
        file,
    };
    for (item, bytes) in batch.items {
        let Ok(text) = String::from_utf8(bytes) else {
            loader.problem(batch.document, Some(item), "not UTF-8 text");
            continue;
        };
        if batch.defer_kindless && sniff_kind(&text).1.is_none() {
            pending.push((item, text));
            continue;
        }
        loader.items_at(batch.document, item, &batch.default, Doc::Text(&text));
    }
    Parsed { state, pending }
}

/// The `apiVersion` and `kind` of an object's JSON, reading only as far as both (they
/// open every object kubectl and the API server print, so the rest is not parsed twice).
/// A malformed object gives what was found before the fault; parsing it later reports it.
fn sniff_kind(text: &str) -> (Option<String>, Option<String>) {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

    #[derive(Deserialize)]
    enum Key {
        #[serde(rename = "apiVersion")]
        ApiVersion,
        #[serde(rename = "kind")]
        Kind,
        #[serde(other)]
        Other,
    }
    struct Sniff<'a>(&'a mut (Option<String>, Option<String>));
    impl<'de> DeserializeSeed<'de> for Sniff<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Sniff<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a Kubernetes object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
            while let Some(k) = m.next_key::<Key>()? {
                match k {
                    Key::ApiVersion => self.0.0 = m.next_value()?,
                    Key::Kind => self.0.1 = m.next_value()?,
                    Key::Other => {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                if self.0.0.is_some() && self.0.1.is_some() {
                    // Stop here; the unread rest makes the deserializer complain, ignored.
                    return Ok(());
                }
            }
            Ok(())
        }
    }
    let mut out = (None, None);
    let mut de = serde_json::Deserializer::from_str(text);
    let _ = Sniff(&mut out).deserialize(&mut de);
    out
}

/// A top-level string field (`kind`, `apiVersion`) from raw JSON values.
fn field_of(fields: &[(String, String)], key: &str) -> Option<String> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| serde_json::from_str::<String>(v).ok())
}

/// The (apiVersion, kind) of the items of a typed List (`PodList` → `Pod`), if typed.
fn item_default(list_kind: &str, api_version: Option<&str>) -> (Option<String>, Option<String>) {
    match list_kind.strip_suffix("List").filter(|k| !k.is_empty()) {
        Some(k) => (api_version.map(str::to_string), Some(k.to_string())),
        None => (None, None),
    }
}

fn is_list(kind: &Option<Cow<str>>, has_items: bool) -> bool {
    match kind.as_deref() {
        Some(k) => k == "List" || (k.ends_with("List") && has_items),
        None => has_items,
    }
}

/// The API group of an `apiVersion` (`apps/v1` → `apps`, `v1` → core `""`).
pub(crate) fn group_of(api_version: Option<&str>) -> &str {
    match api_version.and_then(|v| v.split_once('/')) {
        Some((g, _)) => g,
        None => "",
    }
}

/// Drops what no check reads and can be as large as the object itself.
pub(crate) fn slim(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// An events.k8s.io/v1 Event in the core/v1 form the events check reads.
pub(crate) fn event_from_events_v1(e: events::Event) -> core::Event {
    core::Event {
        metadata: e.metadata,
        involved_object: e.regarding.unwrap_or_default(),
        related: e.related,
        reason: e.reason,
        message: e.note,
        type_: e.type_,
        action: e.action,
        event_time: e.event_time,
        count: e.deprecated_count,
        first_timestamp: e.deprecated_first_timestamp,
        last_timestamp: e.deprecated_last_timestamp,
        reporting_component: e.reporting_controller,
        reporting_instance: e.reporting_instance,
        series: e.series.map(|s| core::EventSeries {
            count: Some(s.count),
            last_observed_time: Some(s.last_observed_time),
        }),
        source: e.deprecated_source,
    }
}

/// Splits YAML text at document markers (`---` at the start of a line, optionally followed
/// by a space and content; `...` ends a document). Block scalars are indented, so a marker
/// at column 0 always separates documents.
fn split_yaml_documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let l = line.trim_end_matches(['\n', '\r']);
        let is_start = l == "---" || l.starts_with("--- ") || l.starts_with("---\t");
        let is_end = l == "...";
        if is_start || is_end {
            docs.push(&text[start..pos]);
            // Content after "--- " on the marker line belongs to the new document.
            start = if is_start && l.len() > 3 {
                pos + 4
            } else {
                pos + line.len()
            };
        }
        pos += line.len();
    }
    docs.push(&text[start..]);
    // The text before a leading "---" is an empty document; drop it so indexes match the
    // documents a reader counts.
    if docs.len() > 1
        && docs[0]
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.starts_with('%'))
    {
        docs.remove(0);
    }
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_path_prints_its_cause_once() {
        let err = load(&[PathBuf::from("/nonexistent/dump.json")]).unwrap_err();
        let text = caretaker_core::error::Chain(&err).to_string();
        assert_eq!(
            text,
            "cannot read dump /nonexistent/dump.json: No such file or directory (os error 2)"
        );
    }

    fn load_str(text: &str) -> ClusterState {
        let mut s = ClusterState::default();
        load_bytes(&mut s, Path::new("dump.txt"), text.as_bytes());
        s
    }

    #[test]
    fn large_json_is_streamed_with_the_same_result_as_in_memory() {
        let mut text = String::from("{\"apiVersion\":\"v1\",\"items\":[");
        for i in 0..3 {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!("{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"p{i}\",\"namespace\":\"n\"}}}}"));
        }
        text.push_str(",{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":7}},{\"kind\":\"NetworkPolicy\"}],\"kind\":\"List\",\"metadata\":{}}\n");
        text.push_str("{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"items\":[{\"metadata\":{\"name\":\"c\"}}]}");
        text.push_str(
            "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"n1\"}} {\"kind\":",
        );
        let mut streamed = ClusterState::default();
        Loader {
            state: &mut streamed,
            file: Path::new("big.json"),
        }
        .json_stream(text.as_bytes());
        let in_memory = load_str(&text);
        for s in [&streamed, &in_memory] {
            assert_eq!(
                s.pods
                    .iter()
                    .map(|p| p.metadata.name.clone().unwrap())
                    .collect::<Vec<_>>(),
                vec!["p0", "p1", "p2"]
            );
            assert_eq!(s.config_maps.len(), 1);
            assert_eq!(s.nodes.len(), 1);
            assert_eq!(s.load.unknown_kinds.get("NetworkPolicy"), Some(&1));
            assert_eq!(s.coverage(Resource::ConfigMap), Coverage::Listed);
            let got: Vec<(usize, Option<usize>)> = s
                .load
                .problems
                .iter()
                .map(|p| (p.document, p.item))
                .collect();
            assert_eq!(got, vec![(1, Some(4)), (4, None)]);
        }
    }

    #[test]
    fn items_parsed_on_workers_keep_their_order_problems_and_list_kind() {
        // Items without a kind before the List's kind, a bad item among good ones, a
        // second List, and a truncated last document: every batch size and worker count
        // must give what reading one by one gives.
        let mut text = String::from("{\"apiVersion\":\"v1\",\"items\":[");
        for i in 0..40 {
            if i > 0 {
                text.push(',');
            }
            match i {
                7 => text.push_str("{\"metadata\":{\"name\":\"c7\",\"namespace\":\"n\"}}"),
                13 => text.push_str("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":13}}"),
                _ => text.push_str(&format!("{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"p{i}\",\"namespace\":\"n\"}}}}")),
            }
        }
        text.push_str("],\"kind\":\"ConfigMapList\",\"metadata\":{}}\n");
        text.push_str("{\"kind\":\"NodeList\",\"apiVersion\":\"v1\",\"items\":[{\"metadata\":{\"name\":\"n1\"}},{\"metadata\":{\"name\":\"n2\"}}]}");
        let summary = |s: &ClusterState| {
            (
                s.pods
                    .iter()
                    .map(|p| p.metadata.name.clone().unwrap_or_default())
                    .collect::<Vec<_>>(),
                s.config_maps
                    .iter()
                    .map(|c| c.metadata.name.clone().unwrap_or_default())
                    .collect::<Vec<_>>(),
                s.nodes
                    .iter()
                    .map(|n| n.metadata.name.clone().unwrap_or_default())
                    .collect::<Vec<_>>(),
                s.load
                    .problems
                    .iter()
                    .map(|p| (p.document, p.item, p.ends_file))
                    .collect::<Vec<_>>(),
                s.load.objects,
                s.coverage.clone(),
            )
        };
        let mut want = summary(&load_str(&text));
        let want_pods: Vec<String> = (0..40)
            .filter(|i| ![7, 13].contains(i))
            .map(|i| format!("p{i}"))
            .collect();
        assert_eq!(want.0, want_pods);
        assert_eq!(want.1, vec!["c7"]);
        assert_eq!(want.2, vec!["n1", "n2"]);
        assert_eq!(want.3, vec![(1, Some(14), false)], "the bad pod");
        // A truncated List: the items before the fault are read, then reading stops.
        text.push_str("{\"apiVersion\":\"v1\",\"kind\":\"PodList\",\"items\":[{\"metadata\":{\"name\":\"late\"}},{\"met");
        want.0.push("late".into());
        want.3.push((3, None, true));
        want.4 += 1;
        for workers in [1, 2, 3] {
            for batch_bytes in [1, 100, 1 << 20] {
                let mut s = ClusterState::default();
                Loader {
                    state: &mut s,
                    file: Path::new("big.json"),
                }
                .json_stream_with(text.as_bytes(), workers, batch_bytes);
                let got = summary(&s);
                assert_eq!(got.0, want.0, "{workers} workers, {batch_bytes} B");
                assert_eq!(got.1, want.1, "{workers} workers, {batch_bytes} B");
                assert_eq!(got.2, want.2, "{workers} workers, {batch_bytes} B");
                assert_eq!(got.3, want.3, "{workers} workers, {batch_bytes} B");
                assert_eq!(got.4, want.4, "{workers} workers, {batch_bytes} B");
                assert_eq!(got.5, want.5, "{workers} workers, {batch_bytes} B");
            }
        }
    }

    #[test]
    fn yaml_documents_split_at_markers_only_at_column_zero() {
        let docs = split_yaml_documents("---\na: 1\n---\nb: |\n  ---\n  x\n--- c: 2\n...\n");
        assert_eq!(docs, vec!["a: 1\n", "b: |\n  ---\n  x\n", "c: 2\n", ""]);
    }

    #[test]
    fn json_list_single_object_and_concatenated_values_are_read() {
        let s = load_str(
            r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}},{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"s"}}]}
               {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}","keep":"1"}}}"#,
        );
        assert_eq!(s.pods.len(), 1);
        assert_eq!(s.config_maps.len(), 1);
        let ann = s.config_maps[0].metadata.annotations.as_ref().unwrap();
        assert_eq!(ann.keys().collect::<Vec<_>>(), vec!["keep"]);
        assert_eq!(
            s.load.unknown_kinds.get("NetworkPolicy.networking.k8s.io"),
            Some(&1)
        );
        assert_eq!(s.load.objects, 2);
        assert!(s.load.problems.is_empty());
    }

    #[test]
    fn malformed_items_and_documents_are_reported_with_index_and_skipped() {
        let s = load_str(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: [oops\n---\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: b}}\n- {apiVersion: v1, kind: Pod, metadata: {name: 3}, spec: {containers: 7}}\n- {metadata: {name: nokind}}\n",
        );
        assert_eq!(
            s.pods
                .iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        let got: Vec<(usize, Option<usize>)> = s
            .load
            .problems
            .iter()
            .map(|p| (p.document, p.item))
            .collect();
        assert_eq!(got, vec![(2, None), (3, Some(2)), (3, Some(3))]);
        assert!(
            s.load.problems[0].message.starts_with("invalid YAML"),
            "{}",
            s.load.problems[0]
        );
        assert!(
            s.load.problems[0].message.contains("line 2"),
            "{}",
            s.load.problems[0]
        );
        assert!(
            s.load.problems[1].message.starts_with("invalid Pod"),
            "{}",
            s.load.problems[1]
        );
        assert_eq!(
            s.load.problems[2].to_string(),
            "dump.txt: document 3, item 3: object has no kind"
        );
    }

    #[test]
    fn truncated_json_is_reported_and_ends_the_file() {
        let s = load_str(
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}} {"apiVersion":"v1","#,
        );
        assert_eq!(s.pods.len(), 1);
        assert_eq!(s.load.problems.len(), 1);
        assert_eq!(s.load.problems[0].document, 2);
    }

    #[test]
    fn typed_empty_list_marks_resource_listed_and_crds_are_dynamic() {
        let s = load_str(
            r#"{"apiVersion":"v1","kind":"PodList","items":[]}
               {"apiVersion":"cert-manager.io/v1","kind":"Certificate","metadata":{"name":"c","namespace":"n"},"status":{"notAfter":"2030-01-01T00:00:00Z"}}"#,
        );
        assert_eq!(s.coverage(Resource::Pod), Coverage::Listed);
        assert_eq!(s.coverage(Resource::Certificate), Coverage::Listed);
        assert!(matches!(
            s.coverage(Resource::Backup),
            Coverage::NotApplicable { .. }
        ));
        assert_eq!(
            s.certificates[0].data["status"]["notAfter"],
            "2030-01-01T00:00:00Z"
        );
    }

    #[test]
    fn items_of_a_typed_list_without_kind_take_the_list_kind() {
        let s = load_str(
            r#"{"kind":"PodMetricsList","apiVersion":"metrics.k8s.io/v1beta1","metadata":{},"items":[{"metadata":{"name":"p","namespace":"n"},"timestamp":"2025-01-01T00:00:00Z","window":"15s","containers":[]}]}"#,
        );
        assert_eq!(s.pod_metrics.len(), 1, "{:?}", s.load.problems);
        assert_eq!(s.coverage(Resource::PodMetrics), Coverage::Listed);
    }

    #[test]
    fn events_v1_are_converted_to_core_events() {
        let s = load_str(
            "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: e, namespace: n}\neventTime: '2025-01-01T00:00:00.000000Z'\nreason: BackOff\nnote: restarting\ntype: Warning\nregarding: {kind: Pod, name: p, namespace: n}\nreportingController: kubelet\nreportingInstance: node-1\naction: Restart\n",
        );
        assert_eq!(s.events.len(), 1, "{:?}", s.load.problems);
        assert_eq!(s.events[0].message.as_deref(), Some("restarting"));
        assert_eq!(s.events[0].involved_object.name.as_deref(), Some("p"));
    }
}
