//! A network partition between a real agent and the aggregator, with a real network
//! namespace: the agent process runs in its own namespace joined to the host by a veth
//! pair; the link goes down for longer than the agent's backoff ceiling (30 s), then comes
//! back. Every report the agent collected meanwhile (within its buffer) is stored exactly
//! once. Needs root (`ip netns`) and `cargo build -p caretaker-agent --bins`; with CI=true
//! a machine without them fails the test instead of skipping it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use caretaker_tests::{RunningAggregator, binary, wait_until};

const PARTITION: Duration = Duration::from_secs(35);
const WAIT: Duration = Duration::from_secs(120);

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The namespace and its veth pair; removed when dropped (deleting the namespace deletes
/// the pair).
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
}

impl Netns {
    fn create() -> Option<Self> {
        let id = std::process::id();
        let name = format!("ctp{id}");
        let (host_if, ns_if) = (format!("ctp{id}h"), format!("ctp{id}a"));
        let net = format!("10.213.{}", id % 250);
        let ns = Self {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip: format!("{net}.1"),
        };
        let ok = ip(&["netns", "add", &name])
            && ip(&[
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ])
            && ip(&["link", "set", &ns_if, "netns", &name])
            && ip(&["addr", "add", &format!("{net}.1/30"), "dev", &host_if])
            && ip(&["link", "set", &host_if, "up"])
            && ip(&[
                "netns",
                "exec",
                &name,
                "ip",
                "addr",
                "add",
                &format!("{net}.2/30"),
                "dev",
                &ns_if,
            ])
            && ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"])
            && ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        ok.then_some(ns)
    }

    fn link(&self, up: bool) {
        assert!(ip(&[
            "link",
            "set",
            &self.host_if,
            if up { "up" } else { "down" }
        ]));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.name]);
        ip(&["link", "del", &self.host_if]);
    }
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_longer_than_the_backoff_ceiling_loses_no_report_and_stores_none_twice()
-> anyhow::Result<()> {
    let Some(ns) = Netns::create() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "network namespaces are needed (root, iproute2)"
        );
        eprintln!("skipped: cannot create a network namespace here");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let agg = RunningAggregator::start(dir.path(), format!("{}:0", ns.host_ip).parse()?, 3).await?;
    let cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "node_name: part-a\nlisten_http: null\nreport_interval: 200ms\naggregator:\n  endpoint: http://{}\n  insecure_plaintext: true\n  buffer_reports: 2000\n",
            agg.grpc
        ),
    )?;
    let mut agent = Agent(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(binary("caretaker-agent"))
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let stored = |agg: &RunningAggregator| {
        agg.state
            .stored("part-a")
            .map_or((0, 0), |s| (s.report.seq, s.reports_stored_total))
    };
    wait_until("the agent reports", WAIT, || stored(&agg).0 >= 5).await?;

    ns.link(false);
    let (before, _) = stored(&agg);
    tokio::time::sleep(PARTITION).await;
    let (during, _) = stored(&agg);
    ns.link(true);
    // 35 s at 5 reports a second were collected behind the partition: they all arrive.
    let expected = during + 150;
    wait_until("the buffered reports arrive", WAIT, || {
        stored(&agg).0 >= expected
    })
    .await?;

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(agent.0.id())?),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    agent.0.wait()?;
    let (seq, count) = stored(&agg);
    // The stream saw the partition: at most the few reports in flight when the link went
    // down were stored during it.
    assert!(
        during <= before + 10,
        "stored {before} → {during} during the partition"
    );
    // Sequence numbers start at 1 without gaps (the buffer never overflowed): each stored
    // exactly once means the count equals the latest seq.
    assert_eq!(count, seq, "stored {count} reports up to seq {seq}");
    assert!(seq >= expected);
    agg.stop().await
}
