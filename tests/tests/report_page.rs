//! The report page in a real browser: an aggregator serves `/report` on loopback, headless
//! Chromium (Debian's package, set up by `tests/services/chromium.sh`) loads it, dumps the
//! DOM it built and takes a screenshot.
//!
//! Chromium is found through `CARETAKER_TEST_CHROMIUM`, else at `/usr/bin/chromium`. Under
//! `CI=true` a missing Chromium fails the test; elsewhere the test says why it skips.

use std::path::{Path, PathBuf};
use std::time::Duration;

use caretaker_aggregator::checks::{CheckResult, Finding, ObjectRef, Severity};
use caretaker_aggregator::report::CheckRound;
use caretaker_core::model::{
    AgentCost, Filesystem, Host, NetworkInterface, NetworkRates, NodeReport,
};
use caretaker_tests::RunningAggregator;
use jiff::{SignedDuration, Timestamp};

/// What any one Chromium run may take before the test gives up on it (a hang, not a
/// measurement).
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

const HOSTILE: &str = "<script>alert(1)</script>";

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CARETAKER_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.is_file() {
        return Some(path);
    }
    let why = format!(
        "no Chromium at {} (set CARETAKER_TEST_CHROMIUM or run tests/run-all.sh)",
        path.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}");
    }
    eprintln!("skipping the report page browser test: {why}");
    None
}

fn node(
    name: &str,
    root_used: f64,
    rx: f64,
    tx: f64,
    interval_ms: u64,
    at: Timestamp,
) -> NodeReport {
    let size: u64 = 200 << 30;
    let avail = (size as f64 * (1.0 - root_used / 100.0)) as u64;
    NodeReport {
        node_name: name.into(),
        epoch: 1,
        seq: 1,
        collected_at: at,
        report_interval_ms: interval_ms,
        logs: None,
        host: Host {
            os_image: "Debian GNU/Linux 12".into(),
            architecture: "x86_64".into(),
            cpu_count: 8,
            memory_total_bytes: 32 << 30,
            memory_available_bytes: 20 << 30,
            ..Host::default()
        },
        filesystems: vec![Filesystem {
            device: "/dev/vda1".into(),
            fstype: "ext4".into(),
            mountpoint: "/".into(),
            mountpoints: vec!["/".into()],
            device_id: "254:1".into(),
            read_only: false,
            size_bytes: size,
            free_bytes: avail,
            avail_bytes: avail,
            files: 1000,
            files_free: 500,
            used_percent: root_used,
            files_used_percent: Some(50.0),
            stale: false,
        }],
        network: vec![NetworkInterface {
            device: "eth0".into(),
            rates: Some(NetworkRates {
                receive_bytes_per_second: rx,
                transmit_bytes_per_second: tx,
                ..NetworkRates::default()
            }),
            ..NetworkInterface::default()
        }],
        agent: AgentCost {
            rss_bytes: 12 << 20,
            ..AgentCost::default()
        },
        errors: vec![],
        images: None,
        volumes: vec![],
        log_check: None,
    }
}

fn obj(kind: &str, ns: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind: kind.into(),
        namespace: Some(ns.into()),
        name: name.into(),
        uid: None,
    }
}

/// Runs Chromium headless on `url` with `extra` flags; returns its standard output.
async fn run_chromium(
    chromium: &Path,
    profile: &Path,
    url: &str,
    extra: &[String],
) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(CHROMIUM_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            anyhow::anyhow!("chromium {extra:?} did not finish within {CHROMIUM_TIMEOUT:?}")
        })??;
    anyhow::ensure!(
        out.status.success(),
        "chromium {extra:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The text a reader sees: the body without its tags and without SVG `<title>` tooltips,
/// entities decoded (enough of HTML for what this page emits), whitespace collapsed.
fn visible_text(dom: &str) -> String {
    let mut body = dom.find("<body").map_or(dom, |i| &dom[i..]).to_string();
    while let Some(start) = body.find("<title>") {
        let end = body[start..]
            .find("</title>")
            .map_or(body.len(), |e| start + e + "</title>".len());
        body.replace_range(start..end, " ");
    }
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ");
    let text = text.replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_report_page_with_nodes_status_score_and_findings()
-> anyhow::Result<()> {
    let Some(chromium) = chromium() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let agg = RunningAggregator::start(&dir.path().join("data"), "127.0.0.1:0".parse()?, 3).await?;

    // Two fresh nodes (10-minute interval, so they stay fresh for the whole test), one
    // stale (a 10 s interval, last heard an hour ago), and the cluster lists one more
    // whose name is hostile markup.
    let now = Timestamp::now();
    let hour_ago = now - SignedDuration::from_hours(1);
    agg.state.ingest(
        &node("worker-a", 42.0, 3.0 * 1048576.0, 1048576.0, 600_000, now),
        now,
    )?;
    agg.state.ingest(
        &node("worker-b", 91.0, 1048576.0, 2.0 * 1048576.0, 600_000, now),
        now,
    )?;
    agg.state.ingest(
        &node("worker-c", 10.0, 0.0, 0.0, 10_000, hour_ago),
        hour_ago,
    )?;
    agg.state.set_round(CheckRound {
        at: Some(now),
        checks: vec![
            CheckResult::new(
                "pods",
                "40 pods, 1 with problems",
                vec![Finding::new(
                    "crash_loop_back_off",
                    Severity::Critical,
                    obj("Pod", "shop", "api-7d9"),
                    "container api is in CrashLoopBackOff (12 restarts)",
                )],
            )
            .with_objects(40),
            CheckResult::new(
                "certificates",
                "1 cert-manager Certificates, 0 TLS Secrets",
                vec![
                    Finding::new(
                        "certificate_expiring",
                        Severity::Warning,
                        obj("Certificate", "shop", "web-tls"),
                        "certificate expires in 20d 0h",
                    )
                    .with_at(Some(now + SignedDuration::from_hours(20 * 24))),
                ],
            )
            .with_objects(1),
            CheckResult::new(
                "velero",
                "2 backups, 1 schedules",
                vec![
                    Finding::new(
                        "backup_failed",
                        Severity::Critical,
                        obj("Backup", "velero", "nightly-1"),
                        "backup phase Failed, started 1d 0h ago",
                    )
                    .with_at(Some(now - SignedDuration::from_hours(24))),
                ],
            )
            .with_objects(2),
        ],
        cluster_nodes: Some(vec![
            "worker-a".into(),
            "worker-b".into(),
            "worker-c".into(),
            HOSTILE.into(),
        ]),
        ..CheckRound::default()
    });
    // Parts: pods 1 critical of 40 → 97.5, certificates 1 warning of 1 → 50, velero 1
    // critical of 2 → 50, node freshness 1 stale and 1 missing of 4 → 62.5, disk 1 under
    // pressure of 3 reporting → 66.7: ⌊326.67 / 5⌋ = 65.
    let expected = agg.state.cluster_report(Timestamp::now());
    assert_eq!((expected.status, expected.score), (Severity::Critical, 65));

    let url = format!("http://{}/report", agg.http);
    let dom = run_chromium(
        &chromium,
        &dir.path().join("profile-dom"),
        &url,
        &["--dump-dom".into()],
    )
    .await?;
    let png = dir.path().join("report.png");
    run_chromium(
        &chromium,
        &dir.path().join("profile-shot"),
        &url,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,2000".into(),
        ],
    )
    .await?;
    if let Some(keep) = std::env::var_os("CARETAKER_TEST_KEEP_SCREENSHOT") {
        std::fs::copy(&png, keep)?;
    }

    // The browser parsed the page into the document we sent: no script element came out
    // of the hostile node name, which reads as text instead.
    assert!(dom.contains("<title>caretaker report "), "{dom}");
    assert!(
        !dom.contains("<script"),
        "a script element was created: {dom}"
    );
    let text = visible_text(&dom);
    assert!(text.contains("status critical"), "{text}");
    assert!(text.contains("score 65 / 100"), "{text}");
    for name in ["worker-a", "worker-b", "worker-c", HOSTILE] {
        assert!(text.contains(name), "{name} missing from: {text}");
    }
    assert!(
        text.contains("container api is in CrashLoopBackOff (12 restarts)"),
        "{text}"
    );
    assert!(
        text.contains("4 nodes: 2 fresh, 1 stale, 1 missing"),
        "{text}"
    );
    assert!(
        text.contains("all (3) critical (2) warning (1) info (0)"),
        "{text}"
    );
    assert!(text.contains("/ 91.0 % of 200.0 GiB"), "{text}");
    assert!(text.contains("worker-a 3.0 MiB/s 1.0 MiB/s"), "{text}");
    assert!(
        text.contains("worker-b / 91.0 % pressure not reported none"),
        "the disk-pressure cross-link: {text}"
    );
    assert!(
        text.contains("Certificate/shop/web-tls") && text.contains("Backup/velero/nightly-1"),
        "{text}"
    );
    // The disk bar as the browser holds it.
    assert!(
        dom.contains(r#"class="used fill-pressure" width="91%""#),
        "{dom}"
    );

    // A real screenshot of the requested size.
    let bytes = std::fs::read(&png)?;
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into()?);
    let height = u32::from_be_bytes(bytes[20..24].try_into()?);
    assert_eq!((width, height), (1280, 2000));
    assert!(
        bytes.len() > 40 * 1024,
        "a page of tables and charts is more than {} bytes of PNG",
        bytes.len()
    );

    agg.stop().await
}

/// The measurements the test's script writes into the page: where the overview and the
/// first finding start, and how wide the content is, at the window's width.
#[derive(Debug, serde::Deserialize)]
struct Layout {
    viewport: f64,
    overview_top: f64,
    overview_bottom: f64,
    first_group_top: f64,
    main_width: f64,
    findings_table_width: f64,
    score_rows: usize,
    charts_beside_checks: bool,
}

/// The script appended (to a copy of the page without its Content-Security-Policy, which
/// forbids scripts) to measure the laid-out page; `--dump-dom` prints what it writes.
const MEASURE: &str = r#"<script>
const box = (sel) => document.querySelector(sel).getBoundingClientRect();
const cols = document.querySelectorAll('.overview > div');
const m = {
  viewport: window.innerWidth,
  overview_top: box('#overview').top,
  overview_bottom: box('#overview').bottom,
  first_group_top: box('#findings .group').top,
  main_width: box('main').width,
  findings_table_width: box('#findings .group table').width,
  score_rows: document.querySelectorAll('#score-parts tbody tr').length,
  charts_beside_checks: cols.length == 2 && cols[1].getBoundingClientRect().left > cols[0].getBoundingClientRect().right - 1,
};
const out = document.createElement('pre');
out.id = 'layout';
out.textContent = JSON.stringify(m);
document.body.appendChild(out);
</script>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_1920_px_the_overview_opens_the_page_and_content_uses_the_width() -> anyhow::Result<()> {
    let Some(chromium) = chromium() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let agg = RunningAggregator::start(&dir.path().join("data"), "127.0.0.1:0".parse()?, 3).await?;
    let now = Timestamp::now();
    for (i, used) in [42.0, 91.0, 83.0].into_iter().enumerate() {
        agg.state.ingest(
            &node(
                &format!("worker-{i}"),
                used,
                1048576.0,
                524288.0,
                600_000,
                now,
            ),
            now,
        )?;
    }
    // 47 findings with long messages, as the issue's page had: the overview must still
    // come before the first of them.
    let long = "the container was terminated (OOMKilled, exit code 137) and restarted; its memory limit is below what it uses at peak";
    let pods: Vec<Finding> = (0..47)
        .map(|i| {
            Finding::new(
                "crash_loop_back_off",
                if i % 3 == 0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                obj(
                    "Pod",
                    &format!("ns-{}", i % 5),
                    &format!("api-{i}-7d9c8b6f5d-x2b4z"),
                ),
                format!("{long} ({i})"),
            )
        })
        .collect();
    agg.state.set_round(CheckRound {
        at: Some(now),
        checks: vec![
            CheckResult::new("pods", "200 pods, 47 with problems", pods).with_objects(200),
            CheckResult::new(
                "certificates",
                "1 cert-manager Certificates, 0 TLS Secrets",
                vec![
                    Finding::new(
                        "certificate_expiring",
                        Severity::Warning,
                        obj("Certificate", "shop", "web-tls"),
                        "certificate expires on 2027-01-01",
                    )
                    .with_at(Some(now + SignedDuration::from_hours(20 * 24))),
                ],
            )
            .with_objects(1),
        ],
        cluster_nodes: Some(vec![
            "worker-0".into(),
            "worker-1".into(),
            "worker-2".into(),
        ]),
        ..CheckRound::default()
    });
    let report = agg.state.cluster_report(Timestamp::now());
    let page =
        caretaker_aggregator::report::render(&report, caretaker_aggregator::report::Output::Html)?;
    let csp = page
        .find(r#"<meta http-equiv="Content-Security-Policy""#)
        .expect("the page has a CSP");
    let csp_end = csp + page[csp..].find('>').expect("the meta tag ends") + 1;
    let measured = format!(
        "{}{}",
        &page[..csp],
        page[csp_end..].replace("</body>", &format!("{MEASURE}</body>"))
    );
    let file = dir.path().join("report.html");
    std::fs::write(&file, measured)?;
    let dom = run_chromium(
        &chromium,
        &dir.path().join("profile"),
        &format!("file://{}", file.display()),
        &["--window-size=1920,1080".into(), "--dump-dom".into()],
    )
    .await?;
    let json = dom
        .split(r#"<pre id="layout">"#)
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .ok_or_else(|| anyhow::anyhow!("the measuring script wrote nothing: {dom}"))?;
    let m: Layout = serde_json::from_str(&json.replace("&quot;", "\""))?;
    eprintln!("layout at 1920 px: {m:?}");
    assert_eq!(m.viewport, 1920.0, "{m:?}");
    assert!(
        m.overview_top < m.first_group_top && m.overview_bottom <= m.first_group_top,
        "the overview is above the first finding: {m:?}"
    );
    assert!(
        m.overview_top < 400.0,
        "the overview starts near the top: {m:?}"
    );
    assert!(
        m.main_width >= 0.95 * m.viewport,
        "the content uses the width of the screen: {m:?}"
    );
    assert!(
        m.findings_table_width >= 0.9 * m.viewport,
        "finding tables are as wide as the content: {m:?}"
    );
    assert!(
        m.charts_beside_checks,
        "at 1920 px the charts sit beside the checks: {m:?}"
    );
    // pods, certificates, node freshness, disk pressure.
    assert_eq!(m.score_rows, 4, "{m:?}");
    agg.stop().await
}
