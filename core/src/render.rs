//! Human-readable tables of node reports (terminal tables or Markdown pipe tables).
//!
//! JSON output does not come through here: it is the serde form of [`crate::model`].

use bytesize::ByteSize;
use comfy_table::{Table, presets};

use crate::model::{
    AgentCost, Filesystem, ImagesSummary, NetworkInterface, NodeReport, PruneTrigger, VolumeMount,
};

/// How a table is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Box-drawn table for a terminal.
    Terminal,
    /// GitHub-flavoured Markdown pipe table.
    Markdown,
}

fn table(style: Style, header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(match style {
        Style::Terminal => presets::UTF8_FULL_CONDENSED,
        Style::Markdown => presets::ASCII_MARKDOWN,
    });
    t.set_header(header.to_vec());
    t
}

/// Where a table is printed: its width limit and whether it may be coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tty {
    /// Columns to fit the table into (wrapping long cells); `None`: no limit, nothing is
    /// wrapped or cut (kubectl's behaviour off a terminal).
    pub width: Option<u16>,
    /// Whether ANSI colour may be used.
    pub colour: bool,
}

impl Tty {
    /// A pipe or a file: no width limit, no colour.
    pub const PLAIN: Tty = Tty {
        width: None,
        colour: false,
    };

    /// Standard output as it is: on a terminal its width (or `$COLUMNS` when the size
    /// cannot be read) and colour unless `NO_COLOR` is set; otherwise [`Tty::PLAIN`].
    #[must_use]
    pub fn stdout() -> Tty {
        use std::io::IsTerminal;
        let out = std::io::stdout();
        if !out.is_terminal() {
            return Tty::PLAIN;
        }
        let width = rustix::termios::tcgetwinsize(&out)
            .ok()
            .map(|w| w.ws_col)
            .filter(|&c| c > 0)
            .or_else(|| std::env::var("COLUMNS").ok()?.trim().parse().ok());
        Tty {
            width,
            colour: colour_allowed(true, std::env::var_os("NO_COLOR").as_deref()),
        }
    }
}

/// ANSI colour only on a terminal, and never with `NO_COLOR` set to a non-empty value
/// (no-color.org).
#[must_use]
pub fn colour_allowed(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// A table as kubectl prints one: no borders, an upper-case header, and, when `tty` has
/// a width, fitted into it (long cells wrap); without one nothing is wrapped or cut.
#[must_use]
pub fn kubectl_table(header: &[&str], tty: Tty) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    match tty.width {
        Some(w) => {
            t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
            t.set_width(w);
        }
        None => {
            t.set_content_arrangement(comfy_table::ContentArrangement::Disabled);
        }
    }
    t.set_header(header.iter().map(|h| h.to_uppercase()).collect::<Vec<_>>());
    for c in t.column_iter_mut() {
        c.set_padding((0, 3));
    }
    t
}

/// A rendered [`kubectl_table`] with its trailing spaces removed.
#[must_use]
pub fn table_text(t: &Table) -> String {
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Colours the cells of the column headed `header` in the rendered `table` (one line per
/// row; continuation lines of wrapped cells are left alone): `paint` gives the ANSI SGR
/// code (e.g. `"31"` for red) for a cell's text, or `None`.
#[must_use]
pub fn paint_column(
    table: &str,
    header: &str,
    paint: impl Fn(&str) -> Option<&'static str>,
) -> String {
    let mut lines = table.lines();
    let Some(head) = lines.next() else {
        return table.to_string();
    };
    let Some(byte_at) = head.find(header) else {
        return table.to_string();
    };
    let start = head[..byte_at].chars().count();
    let mut out = String::with_capacity(table.len() + 64);
    out.push_str(head);
    out.push('\n');
    for line in lines {
        let chars: Vec<char> = line.chars().collect();
        let cell_end = chars[start.min(chars.len())..]
            .iter()
            .position(|c| *c == ' ')
            .map_or(chars.len(), |p| start + p);
        let cell: String = chars[start.min(chars.len())..cell_end].iter().collect();
        match (cell.is_empty(), paint(&cell)) {
            (false, Some(code)) => {
                let before: String = chars[..start].iter().collect();
                let after: String = chars[cell_end..].iter().collect();
                out.push_str(&format!("{before}\x1b[{code}m{cell}\x1b[0m{after}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Bytes with binary units (`1.5 GiB`).
pub fn bytes(n: u64) -> String {
    ByteSize::b(n).display().iec().to_string()
}

fn rate(v: Option<f64>) -> String {
    match v {
        // Rates are shown per second with binary units; fractions of a byte are noise.
        Some(r) => format!("{}/s", bytes(r.round() as u64)),
        None => "-".into(),
    }
}

/// The note of a filesystem whose figures are from before a statvfs that timed out.
const STALE: &str = "stale: statvfs timed out";

/// The columns of [`usage_cells`].
const USAGE_COLUMNS: [&str; 5] = ["size", "used", "avail", "use%", "inodes use%"];

/// The size, used, avail, use% and inodes use% cells of a filesystem's row, as `df`
/// shows them (`-` for inodes when the filesystem reports none).
fn usage_cells(f: &Filesystem) -> [String; 5] {
    [
        bytes(f.size_bytes),
        bytes(f.size_bytes.saturating_sub(f.free_bytes)),
        bytes(f.avail_bytes),
        format!("{:.1}", f.used_percent),
        f.files_used_percent
            .map_or_else(|| "-".into(), |p| format!("{p:.1}")),
    ]
}

/// One row per filesystem.
pub fn filesystems(style: Style, fs: &[Filesystem]) -> String {
    let mut t = table(
        style,
        &[
            &["mountpoint", "device", "fstype"][..],
            &USAGE_COLUMNS,
            &["note"],
        ]
        .concat(),
    );
    for f in fs {
        let note = match (f.stale, f.mountpoints.len()) {
            (true, _) => STALE.to_string(),
            (false, n) if n > 1 => format!("also at {}", f.mountpoints[1..].join(", ")),
            _ => String::new(),
        };
        let mut row = vec![f.mountpoint.clone(), f.device.clone(), f.fstype.clone()];
        row.extend(usage_cells(f));
        row.push(note);
        t.add_row(row);
    }
    t.to_string()
}

/// One row per interface.
pub fn network(style: Style, ifs: &[NetworkInterface]) -> String {
    let mut t = table(
        style,
        &[
            "device",
            "state",
            "received",
            "transmitted",
            "rx rate",
            "tx rate",
            "errs (rx/tx)",
            "drop (rx/tx)",
            "note",
        ],
    );
    for n in ifs {
        t.add_row(vec![
            n.device.clone(),
            n.operstate.clone().unwrap_or_else(|| "-".into()),
            bytes(n.receive_bytes_total),
            bytes(n.transmit_bytes_total),
            rate(n.rates.map(|r| r.receive_bytes_per_second)),
            rate(n.rates.map(|r| r.transmit_bytes_per_second)),
            format!("{}/{}", n.receive_errs_total, n.transmit_errs_total),
            format!("{}/{}", n.receive_drop_total, n.transmit_drop_total),
            if n.counter_reset {
                "counter reset: no rate this interval".into()
            } else {
                String::new()
            },
        ]);
    }
    t.to_string()
}

/// One row per pod volume mount.
pub fn volumes(style: Style, vs: &[VolumeMount]) -> String {
    let mut t = table(
        style,
        &[&["volume", "plugin", "pod"][..], &USAGE_COLUMNS, &["note"]].concat(),
    );
    for v in vs {
        let f = &v.filesystem;
        let mut row = vec![v.name.clone(), v.plugin.clone(), v.pod_uid.clone()];
        row.extend(usage_cells(f));
        row.push(if f.stale { STALE.into() } else { String::new() });
        t.add_row(row);
    }
    t.to_string()
}

/// One row per container runtime, then the check's errors.
pub fn images(style: Style, s: &ImagesSummary) -> String {
    let mut out = format!(
        "images (checked {}{}):\n",
        s.checked_at,
        if s.dry_run {
            "; dry run: nothing is removed unless images.apply is true"
        } else {
            ""
        }
    );
    let mut t = table(
        style,
        &[
            "runtime",
            "image fs",
            "fs use%",
            "images",
            "unused",
            "reclaimable",
            "last prune",
            "removed since start",
        ],
    );
    for r in &s.runtimes {
        let last = match &r.last_prune {
            None => "-".to_string(),
            Some(p) => {
                let k = &p.kept;
                format!(
                    "{} ({}): {} {} {}, kept {} in use / {} pinned / {} young / {} keep-list / {} below threshold{}",
                    p.started_at,
                    match p.trigger {
                        PruneTrigger::Schedule => "schedule",
                        PruneTrigger::DiskPressure => "disk pressure",
                    },
                    p.removed,
                    if p.dry_run {
                        "would be removed,"
                    } else {
                        "removed,"
                    },
                    bytes(p.removed_bytes),
                    k.in_use,
                    k.pinned,
                    k.young,
                    k.keep_list,
                    k.below_threshold,
                    if p.failed > 0 {
                        format!(", {} failed", p.failed)
                    } else {
                        String::new()
                    },
                )
            }
        };
        t.add_row(vec![
            r.runtime.clone(),
            if r.image_fs_mountpoint.is_empty() {
                "-".into()
            } else {
                r.image_fs_mountpoint.clone()
            },
            r.image_fs_used_percent
                .map_or_else(|| "-".into(), |p| format!("{p:.1}")),
            r.images_total.to_string(),
            r.images_unused.to_string(),
            bytes(r.reclaimable_bytes),
            last,
            format!("{} ({})", r.removed_total, bytes(r.removed_bytes_total)),
        ]);
    }
    out.push_str(&t.to_string());
    out.push('\n');
    for e in &s.errors {
        out.push_str(&format!(
            "image check error ({}) at {}: {}\n",
            e.collector, e.place, e.message
        ));
    }
    out
}

/// One line on the agent's own cost.
pub(crate) fn agent_cost(a: &AgentCost) -> String {
    format!(
        "agent: RSS {}, CPU {:.3} s total, last collection {:.3} ms CPU / {:.3} ms wall, {} report(s) awaiting ack, {} dropped",
        bytes(a.rss_bytes),
        a.cpu_seconds_total,
        a.last_collection_cpu_seconds * 1e3,
        a.last_collection_wall_seconds * 1e3,
        a.reports_buffered,
        a.reports_dropped_total,
    )
}

/// A whole node report: host line, filesystems, network, agent cost, collection errors.
pub fn node_report(style: Style, r: &NodeReport) -> String {
    let h = &r.host;
    let mut out = String::new();
    let head = format!(
        "node {} (report #{} of run {}, collected {})\nhost: {} {} kernel {}, {} CPUs at {:.1} %, load {:.2} {:.2} {:.2}, memory {} available of {}, up {}\n",
        r.node_name,
        r.seq,
        r.epoch,
        r.collected_at,
        h.os_image,
        h.architecture,
        h.kernel_version,
        h.cpu_count,
        h.cpu_usage_percent,
        h.load1,
        h.load5,
        h.load15,
        bytes(h.memory_available_bytes),
        bytes(h.memory_total_bytes),
        humanize_seconds(h.uptime_seconds),
    );
    out.push_str(&head);
    out.push('\n');
    out.push_str(&filesystems(style, &r.filesystems));
    out.push_str("\n\n");
    out.push_str(&network(style, &r.network));
    out.push_str("\n\n");
    if !r.volumes.is_empty() {
        out.push_str(&volumes(style, &r.volumes));
        out.push_str("\n\n");
    }
    if let Some(i) = &r.images {
        out.push_str(&images(style, i));
        out.push('\n');
    }
    out.push_str(&agent_cost(&r.agent));
    out.push('\n');

    if let Some(l) = &r.logs {
        out.push_str(&logs(l));
    }
    for e in &r.errors {
        out.push_str(&format!(
            "collection error ({}) at {}: {}\n",
            e.collector, e.place, e.message
        ));
    }
    out
}

fn log_counts(c: &crate::model::LogCounts) -> String {
    format!(
        "{} checked, {} rotated ({}), {} compressed ({} -> {}), {} deleted ({}), {} errors",
        c.files_checked,
        c.rotated,
        bytes(c.rotated_bytes),
        c.compressed,
        bytes(c.compressed_bytes_before),
        bytes(c.compressed_bytes_after),
        c.deleted,
        bytes(c.deleted_bytes),
        c.errors,
    )
}

/// Log rotation: the last pass, totals since the agent started, what retention could
/// delete now, then the problems with their places.
pub fn logs(s: &crate::model::LogsSummary) -> String {
    let mut out = format!(
        "logs (checked {}):
",
        s.checked_at
    );
    out.push_str(&format!(
        "  last pass: {}
",
        log_counts(&s.last_pass)
    ));
    out.push_str(&format!(
        "  since start: {}
",
        log_counts(&s.totals)
    ));
    match s.reclaimable_at {
        Some(at) => out.push_str(&format!(
            "  reclaimable by retention rules: {} (as of {at})
",
            bytes(s.reclaimable_bytes)
        )),
        None => out.push_str(
            "  reclaimable by retention rules: - (no logs.retention rules)
",
        ),
    }
    if s.owned_elsewhere_total > 0 {
        out.push_str(&format!(
            "  left to other rotators: {} (another rotator owns them; not rotated by the agent)
",
            s.owned_elsewhere_total
        ));
        for o in &s.owned_elsewhere {
            out.push_str(&format!("    {} ({})\n", o.path, o.owner));
        }
        let more = s
            .owned_elsewhere_total
            .saturating_sub(s.owned_elsewhere.len() as u64);
        if more > 0 {
            out.push_str(&format!("    … and {more} more\n"));
        }
    }
    for e in &s.errors {
        out.push_str(&format!(
            "log rotation error at {}: {}
",
            e.place, e.message
        ));
    }
    out
}

fn humanize_seconds(s: u64) -> String {
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else {
        format!("{h}h {m}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::sample_report;

    #[test]
    fn filesystem_table_shows_bind_mounts_and_absent_inode_percent() {
        let r = sample_report();
        let s = filesystems(Style::Markdown, &r.filesystems);
        let row = s.lines().find(|l| l.contains("/dev/vda")).unwrap();
        assert!(row.contains("66.7"), "{row}");
        assert!(row.contains("| -"), "inode percent must show '-': {row}");
        assert!(row.contains("also at /mnt/bind"), "{row}");
    }

    #[test]
    fn network_table_shows_rates_or_dash() {
        let mut r = sample_report();
        r.network.push(NetworkInterface {
            device: "lo".into(),
            counter_reset: true,
            ..Default::default()
        });
        let s = network(Style::Terminal, &r.network);
        assert!(
            s.lines().any(|l| l.contains("eth0") && l.contains("2 B/s")),
            "{s}"
        );
        assert!(
            s.lines()
                .any(|l| l.contains("lo") && l.contains("counter reset")),
            "{s}"
        );
    }

    #[test]
    fn node_report_shows_volumes_and_images() {
        let s = node_report(Style::Markdown, &sample_report());
        let vol = s.lines().find(|l| l.contains("pvc-123")).unwrap();
        assert!(
            vol.contains("kubernetes.io~csi")
                && vol.contains("0b1c-22")
                && vol.contains("60.0")
                && vol.contains("6.0 GiB"),
            "{vol}"
        );
        assert!(
            s.contains("dry run: nothing is removed unless images.apply is true"),
            "{s}"
        );
        let rt = s.lines().find(|l| l.starts_with("| docker")).unwrap();
        assert!(
            rt.contains("/var/lib/docker")
                && rt.contains("87.5")
                && rt.contains("| 12 ")
                && rt.contains("| 5 ")
                && rt.contains("3.0 GiB"),
            "{rt}"
        );
        assert!(rt.contains("(disk pressure): 3 would be removed, 2.0 GiB, kept 7 in use / 0 pinned / 1 young / 1 keep-list / 0 below threshold"), "{rt}");
        assert!(
            s.contains(
                "image check error (images) at /run/containerd/containerd.sock: cannot connect"
            ),
            "{s}"
        );
        // Without either, no section.
        let mut r = sample_report();
        r.images = None;
        r.volumes.clear();
        let s = node_report(Style::Terminal, &r);
        assert!(
            !s.contains("images (checked") && !s.contains("plugin"),
            "{s}"
        );
    }

    #[test]
    fn kubectl_tables_align_without_borders_and_wrap_only_to_a_width() {
        let mut t = kubectl_table(&["namespace", "name", "message"], Tty::PLAIN);
        t.add_row(vec![
            "shop",
            "Pod/api-1",
            "a long message that would not fit in 40 columns",
        ]);
        t.add_row(vec!["", "Node/a", "short"]);
        let expected = [
            "NAMESPACE   NAME        MESSAGE",
            "shop        Pod/api-1   a long message that would not fit in 40 columns",
            "            Node/a      short",
        ];
        assert_eq!(table_text(&t), expected.join("\n") + "\n");
        let narrow = Tty {
            width: Some(40),
            colour: false,
        };
        let mut t = kubectl_table(&["namespace", "name", "message"], narrow);
        t.add_row(vec![
            "shop",
            "Pod/api-1",
            "a long message that would not fit in 40 columns",
        ]);
        let text = table_text(&t);
        assert!(text.lines().count() > 2, "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 40), "{text}");
        assert!(text.contains("columns"), "nothing is cut: {text}");
    }

    #[test]
    fn paint_column_colours_only_that_column_and_not_wrapped_lines() {
        let table = "NAME   SEVERITY   CODE\na      critical   x\n              more\nb      ok         y\n";
        let painted = paint_column(table, "SEVERITY", |s| (s == "critical").then_some("31"));
        assert_eq!(
            painted,
            "NAME   SEVERITY   CODE\na      \x1b[31mcritical\x1b[0m   x\n              more\nb      ok         y\n"
        );
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        use std::ffi::OsStr;
        assert!(colour_allowed(true, None));
        assert!(colour_allowed(true, Some(OsStr::new(""))));
        assert!(!colour_allowed(true, Some(OsStr::new("1"))));
        assert!(!colour_allowed(false, None));
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(0), "0 B");
    }

    #[test]
    fn node_report_shows_the_logs_summary_with_error_places() {
        let s = node_report(Style::Terminal, &sample_report());
        assert!(s.contains("logs (checked 2026-11-29T02:59:50Z):"), "{s}");
        assert!(
            s.contains("  last pass: 40 checked, 2 rotated (300.0 MiB), 2 compressed (300.0 MiB -> 30.0 MiB), 1 deleted (20.0 MiB), 1 errors\n"),
            "{s}"
        );
        assert!(
            s.contains("  since start: 4040 checked, 12 rotated (1.3 GiB),"),
            "{s}"
        );
        assert!(
            s.contains("  reclaimable by retention rules: 700.0 MiB (as of 2026-11-29T02:59:00Z)"),
            "{s}"
        );
        assert!(
            s.contains("log rotation error at /etc/logrotate.d/app:3: unknown directive \"rotat\""),
            "{s}"
        );
        assert!(
            s.contains("  left to other rotators: 3 (another rotator owns them; not rotated by the agent)\n    /var/log/pods/shop_api-1_uid/api/0.log (kubelet)\n    /var/log/syslog (logrotate (/etc/logrotate.d/rsyslog:1))\n    … and 1 more\n"),
            "{s}"
        );
        let mut r = sample_report();
        if let Some(l) = &mut r.logs {
            l.owned_elsewhere.clear();
            l.owned_elsewhere_total = 0;
        }
        assert!(!node_report(Style::Terminal, &r).contains("left to other rotators"));
        r.logs = None;
        assert!(!node_report(Style::Terminal, &r).contains("logs (checked"));
    }
}
