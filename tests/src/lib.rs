//! Helpers for the cross-program tests in `tests/tests/`: start an aggregator (in process,
//! on loopback port 0 or a given address), start agents with chosen node names, wait for
//! conditions, and find the real binaries.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use caretaker_agent::config::{AgentConfig, AggregatorConfig as AgentSide};
use caretaker_agent::paths::HostPaths;
use caretaker_agent::stream::StreamSummary;
use caretaker_aggregator::api::server::ServeOptions;
use caretaker_aggregator::state::State;
use caretaker_aggregator::store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An aggregator running in this process.
pub struct RunningAggregator {
    pub state: Arc<State>,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    stop: CancellationToken,
    handle: JoinHandle<Result<(), caretaker_aggregator::api::server::ServeError>>,
}

impl RunningAggregator {
    /// Starts an aggregator storing in `data_dir`, gRPC on `grpc` (use port 0 for any).
    pub async fn start(
        data_dir: &Path,
        grpc: SocketAddr,
        stale_after_intervals: u32,
    ) -> anyhow::Result<Self> {
        Self::start_with(
            data_dir,
            grpc,
            stale_after_intervals,
            ServeOptions::insecure(),
        )
        .await
    }

    /// [`RunningAggregator::start`] with TLS, tokens and limits.
    pub async fn start_with(
        data_dir: &Path,
        grpc: SocketAddr,
        stale_after_intervals: u32,
        options: ServeOptions,
    ) -> anyhow::Result<Self> {
        let state = State::new(Store::open(data_dir)?, stale_after_intervals)?;
        let grpc_l = TcpListener::bind(grpc).await?;
        let http_l = TcpListener::bind("127.0.0.1:0").await?;
        let (grpc, http) = (grpc_l.local_addr()?, http_l.local_addr()?);
        let stop = CancellationToken::new();
        let handle = tokio::spawn(caretaker_aggregator::api::server::serve_with(
            Arc::clone(&state),
            grpc_l,
            http_l,
            stop.clone(),
            options,
        ));
        Ok(Self {
            state,
            grpc,
            http,
            stop,
            handle,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Stops the servers and waits for them, then closes the store (as the aggregator
    /// does before `App::run` returns): the file can be opened again at once.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle).await???;
        self.state.store().close().await;
        Ok(())
    }
}

/// An agent running in this process.
pub struct RunningAgent {
    stop: CancellationToken,
    handle: JoinHandle<StreamSummary>,
}

impl RunningAgent {
    /// Starts an agent named `node` reporting every `interval` to `url`, reading this
    /// machine through `paths`.
    pub fn start(
        node: &str,
        url: &str,
        interval: Duration,
        paths: HostPaths,
    ) -> anyhow::Result<Self> {
        Self::start_with(node, AgentSide::plaintext(url), interval, paths)
    }

    /// [`RunningAgent::start`] with the aggregator side given (e.g. TLS files).
    pub fn start_with(
        node: &str,
        mut side: AgentSide,
        interval: Duration,
        paths: HostPaths,
    ) -> anyhow::Result<Self> {
        let cfg = AgentConfig {
            node_name: Some(node.into()),
            report_interval: caretaker_core::config::BoundedDuration::new(interval)?,
            ..AgentConfig::default()
        };
        let settings =
            caretaker_agent::collector_settings(&cfg, paths).map_err(anyhow::Error::msg)?;
        side.connect_timeout = caretaker_core::config::BoundedDuration::secs(1);
        let stop = CancellationToken::new();
        let handle = tokio::spawn(caretaker_agent::run(settings, side, stop.clone()));
        Ok(Self { stop, handle })
    }

    /// Stops the agent (it flushes what it can) and returns what its stream did.
    pub async fn stop(self) -> anyhow::Result<StreamSummary> {
        self.stop.cancel();
        Ok(tokio::time::timeout(Duration::from_secs(10), self.handle).await??)
    }

    /// Kills the agent without a flush (the task is aborted).
    pub fn kill(self) {
        self.handle.abort();
    }
}

/// Polls `cond` every 20 ms until it holds; fails with `what` after `timeout`.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A built binary of this workspace (`caretaker-agent`, `caretaker-aggregator`) of the
/// same profile as the running executable: beside it (a bench binary in `target/release/`)
/// or one directory up (a test in `target/debug/deps/`). `cargo test --workspace` builds
/// them because the agent and aggregator crates have integration tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable directory");
    let candidates = [
        dir.join(name),
        dir.parent().map(|d| d.join(name)).unwrap_or_default(),
    ];
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("{name} is missing beside {}: run `cargo build --bins` (or the whole `cargo test --workspace`) first", exe.display())
    })
}

/// A test PKI in a temp dir: a CA and certificate files made with the same code as
/// `caretaker-aggregator certs`.
pub struct TestPki {
    pub dir: PathBuf,
    pub ca: caretaker_aggregator::cli::certs::Ca,
}

impl TestPki {
    /// A CA valid from an hour ago for a day.
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<Self> {
        let now = time::OffsetDateTime::now_utc();
        let ca = caretaker_aggregator::cli::certs::Ca::new(
            name,
            now - time::Duration::hours(1),
            now + time::Duration::days(1),
        )?;
        let dir = dir.join(name.replace(' ', "-"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("ca.crt"), ca.cert_pem())?;
        Ok(Self { dir, ca })
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Writes `pair` as `<name>.crt` and `<name>.key` (atomically, like a Secret
    /// volume update) and returns the two paths.
    pub fn write(
        &self,
        name: &str,
        pair: &caretaker_aggregator::cli::certs::CertAndKey,
    ) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (crt, key) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        for (path, text) in [(&crt, &pair.cert_pem), (&key, &pair.key_pem)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, path)?;
        }
        Ok((crt, key))
    }

    /// A server certificate for `localhost` valid for a day, written as `server.*`.
    pub fn server(&self) -> anyhow::Result<caretaker_aggregator::config::ServerTlsConfig> {
        let now = time::OffsetDateTime::now_utc();
        let pair = self.ca.issue_server(
            &["localhost".into()],
            now - time::Duration::hours(1),
            now + time::Duration::days(1),
        )?;
        let (cert_file, key_file) = self.write("server", &pair)?;
        Ok(caretaker_aggregator::config::ServerTlsConfig {
            cert_file,
            key_file,
            ca_file: self.ca_file(),
            allow_shared_agent_cert: false,
        })
    }

    /// An agent certificate for `node` (`None`: shared) valid from `from` to `to`
    /// relative to now, written as `<file>.*`.
    pub fn agent(
        &self,
        file: &str,
        node: Option<&str>,
        from: time::Duration,
        to: time::Duration,
    ) -> anyhow::Result<caretaker_agent::config::ClientTlsConfig> {
        let now = time::OffsetDateTime::now_utc();
        let pair = self.ca.issue_agent(node, now + from, now + to)?;
        let (cert_file, key_file) = self.write(file, &pair)?;
        Ok(caretaker_agent::config::ClientTlsConfig {
            ca_file: self.ca_file(),
            cert_file,
            key_file,
        })
    }
}

/// An agent-side config for `https://localhost:<port>` with these TLS files.
pub fn tls_side(port: u16, tls: caretaker_agent::config::ClientTlsConfig) -> AgentSide {
    let mut side = AgentSide::new(format!("https://localhost:{port}"));
    side.tls = Some(tls);
    side
}

/// Everything logged by the tests of this process (a global subscriber at debug level
/// for caretaker crates), so that a test can check what the server side said.
pub fn captured_log() -> String {
    static LOG: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    let buf = LOG.get_or_init(|| {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = Arc::clone(&buf);
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,caretaker_aggregator=info,caretaker_agent=info")
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&writer)))
            .try_init();
        buf
    });
    String::from_utf8_lossy(
        &buf.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned()
}

struct LogWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
