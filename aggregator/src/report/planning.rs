//! The monthly review's parts of the report (flattened into its top level, so each is a
//! report field of its own): `chart_updates` ([`crate::updates`]), `recommendations` and
//! `capacity` ([`crate::capacity`]), and their sections of the Markdown record.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::capacity::{Capacity, Recommendations, RoundSamples};
use crate::updates::ChartUpdatesReport;

/// Results of the monthly review, each absent until its task ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Planning {
    /// Newer chart versions of the Helm releases (absent without `charts.repositories`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chart_updates: Option<ChartUpdatesReport>,
    /// Request recommendations per container from the usage history ([`crate::capacity`]).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub recommendations: Option<Recommendations>,
    /// Allocatable vs requests per node and cluster with the trend and the day it runs out.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub capacity: Option<Capacity>,
    /// This round's raw samples, on their way to the store (never in the report).
    #[serde(skip)]
    pub samples: Option<RoundSamples>,
}

impl Planning {
    /// This planning updated by a later round's: each part it has replaces this one's.
    #[must_use]
    pub fn updated_with(mut self, later: Planning) -> Planning {
        if later.chart_updates.is_some() {
            self.chart_updates = later.chart_updates;
        }
        if later.recommendations.is_some() {
            self.recommendations = later.recommendations;
        }
        if later.capacity.is_some() {
            self.capacity = later.capacity;
        }
        self.samples = later.samples;
        self
    }
}

/// A Markdown cell: pipes escaped, newlines flattened.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A pipe table (Markdown; also readable in a terminal).
fn pipe_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = format!(
        "| {} |\n|{}\n",
        headers.join(" | "),
        "---|".repeat(headers.len())
    );
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| cell(c)).collect();
        let _ = writeln!(t, "| {} |", cells.join(" | "));
    }
    t
}

/// The sections of the record for `p` (empty when nothing ran); `md` for Markdown headings.
pub(crate) fn text(p: &Planning, md: bool) -> String {
    let h = |title: &str| {
        if md {
            format!("## {title}\n\n")
        } else {
            format!("{title}\n")
        }
    };
    let mut out = String::new();
    if let Some(c) = &p.chart_updates {
        out.push_str(&h("Chart updates"));
        let behind: Vec<_> = c
            .releases
            .iter()
            .filter(|r| !r.updates.is_empty())
            .collect();
        let _ = writeln!(
            out,
            "Checked {} releases against {} chart repositories at {}: {} with newer chart versions.\n",
            c.releases.len(),
            c.repositories.len(),
            c.checked_at.strftime("%Y-%m-%d %H:%M UTC"),
            behind.len()
        );
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let rows: Vec<Vec<String>> = c
            .releases
            .iter()
            .map(|r| {
                vec![
                    format!("{}/{}", r.namespace, r.release),
                    r.chart.clone(),
                    r.version.clone(),
                    dash(&r.updates.patch),
                    dash(&r.updates.minor),
                    dash(&r.updates.major),
                    r.repository
                        .clone()
                        .or_else(|| r.note.clone())
                        .unwrap_or_default(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&pipe_table(
                &[
                    "Release",
                    "Chart",
                    "Deployed",
                    "Patch",
                    "Minor",
                    "Major",
                    "Repository",
                ],
                &rows,
            ));
            out.push('\n');
        }
        for r in c.repositories.iter().filter(|r| r.error.is_some()) {
            let _ = writeln!(
                out,
                "- Repository {} ({}) could not be read: {}",
                r.name,
                r.url,
                r.error.as_deref().unwrap_or("")
            );
        }
        if c.repositories.iter().any(|r| r.error.is_some()) {
            out.push('\n');
        }
    }
    if let Some(r) = &p.recommendations {
        out.push_str(&h("Resource recommendations"));
        let _ = writeln!(
            out,
            "Requests as the VPA recommender sets them: CPU p{:.0} of usage, memory p{:.0} of daily peaks, plus {:.0} %, over {:.0} days of metrics API samples ({} needed; {} containers still waiting).\n",
            r.rule.cpu_percentile * 100.0,
            r.rule.memory_percentile * 100.0,
            r.rule.margin_fraction * 100.0,
            r.window_days,
            r.min_samples,
            r.waiting_for_samples
        );
        let mi = |b: u64| format!("{:.0}Mi", b as f64 / f64::from(1u32 << 20));
        let opt = |v: Option<u64>, f: &dyn Fn(u64) -> String| v.map_or_else(|| "-".into(), f);
        let rows: Vec<Vec<String>> = r
            .containers
            .iter()
            .map(|c| {
                let m = |v: u64| format!("{v}m");
                vec![
                    format!("{}/{}", c.namespace, c.workload),
                    c.container.clone(),
                    c.samples.to_string(),
                    format!("{:.0}m", c.cpu_millicores.usage_percentile),
                    opt(c.cpu_millicores.request, &m),
                    m(c.cpu_millicores.recommended_request),
                    mi(c.memory_bytes.usage_percentile as u64),
                    opt(c.memory_bytes.request, &mi),
                    mi(c.memory_bytes.recommended_request),
                    c.verdict.clone().unwrap_or_default(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&pipe_table(
                &[
                    "Workload",
                    "Container",
                    "Samples",
                    "CPU use",
                    "CPU request",
                    "CPU recommended",
                    "Memory use",
                    "Memory request",
                    "Memory recommended",
                    "Verdict",
                ],
                &rows,
            ));
            out.push('\n');
        }
    }
    if let Some(c) = &p.capacity {
        out.push_str(&h("Capacity"));
        let _ = writeln!(
            out,
            "Requests against allocatable, with the trend over up to {} days of daily points; runs out within {} days is a finding.\n",
            c.trend_days, c.horizon_days
        );
        let res = |r: &crate::capacity::ResourceCapacity, unit: &dyn Fn(u64) -> String| {
            let pct = if r.allocatable > 0 {
                format!(
                    " ({:.0} %)",
                    r.requested as f64 * 100.0 / r.allocatable as f64
                )
            } else {
                String::new()
            };
            let when = match (r.days_until_full, r.full_on) {
                (Some(d), Some(on)) if d <= f64::from(c.horizon_days) => {
                    format!("full {on}")
                }
                _ => format!("not within {} days", c.horizon_days),
            };
            format!(
                "{} of {}{pct}, {when}",
                unit(r.requested),
                unit(r.allocatable)
            )
        };
        let m = |v: u64| format!("{v}m");
        let mi = |b: u64| format!("{:.1}Gi", b as f64 / f64::from(1u32 << 30));
        let n = |v: u64| v.to_string();
        let rows: Vec<Vec<String>> = std::iter::once(&c.cluster)
            .chain(&c.nodes)
            .map(|x| {
                vec![
                    x.node.clone(),
                    res(&x.cpu_millicores, &m),
                    res(&x.memory_bytes, &mi),
                    res(&x.pods, &n),
                    x.points.to_string(),
                ]
            })
            .collect();
        out.push_str(&pipe_table(
            &[
                "Node",
                "CPU requests",
                "Memory requests",
                "Pods",
                "Days of points",
            ],
            &rows,
        ));
        out.push('\n');
    }
    out
}
