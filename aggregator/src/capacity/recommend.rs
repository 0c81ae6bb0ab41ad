//! Request recommendations per container, the way the Vertical Pod Autoscaler's
//! recommender computes its `target` (kubernetes/autoscaler, `vertical-pod-autoscaler/pkg/
//! recommender`, flags and defaults in its FAQ):
//!
//! - CPU: the `cpu_percentile` (VPA `--target-cpu-percentile`, default 0.9) of the usage
//!   samples in the window (VPA `--history-length`, default 8 days);
//! - memory: the `memory_percentile` (VPA `--target-memory-percentile`, default 0.9) of the
//!   daily peaks (VPA keeps one peak per `--memory-aggregation-interval`, default 24 h);
//! - plus the margin (VPA `--recommendation-margin-fraction`, default 0.15), and at least
//!   VPA's minimums (`--pod-recommendation-min-cpu-millicores` 25,
//!   `--pod-recommendation-min-memory-mb` 250);
//! - a limit keeps the container's current limit-to-request ratio (VPA's default
//!   `controlledValues: RequestsAndLimits`).
//!
//! Differences, on purpose: samples are the metrics API's per round (not VPA's
//! per-minute feed) and are not decayed (VPA halves a CPU sample's weight every 24 h); a
//! sample of a workload's container is the largest over its pods in that round.

use serde::{Deserialize, Serialize};

/// The `q` quantile (0–1) of `v` by the nearest-rank method; `None` for no values.
pub(crate) fn percentile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.saturating_sub(1).min(s.len() - 1)])
}

/// The percentiles, margin and minimums of a recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub(crate) cpu_percentile: f64,
    pub(crate) memory_percentile: f64,
    pub margin_fraction: f64,
    pub(crate) min_cpu_millicores: u64,
    pub(crate) min_memory_bytes: u64,
}

impl Default for Rule {
    /// VPA's defaults.
    fn default() -> Self {
        Self {
            cpu_percentile: 0.9,
            memory_percentile: 0.9,
            margin_fraction: 0.15,
            min_cpu_millicores: 25,
            min_memory_bytes: 250 << 20,
        }
    }
}

/// One resource's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// The percentile of usage the recommendation starts from (CPU millicores or bytes).
    pub usage_percentile: f64,
    /// The recommended request (with margin and minimum), millicores or bytes.
    pub recommended_request: u64,
    /// The current request, when set.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request: Option<u64>,
    /// The current limit, when set.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub limit: Option<u64>,
    /// The recommended limit: the current limit-to-request ratio kept.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub recommended_limit: Option<u64>,
}

/// The recommendation from `usage` (one value a sample) with `current` request and limit.
pub(crate) fn recommend(
    usage: &[f64],
    q: f64,
    rule: &Rule,
    minimum: u64,
    request: Option<u64>,
    limit: Option<u64>,
) -> Option<Figures> {
    let p = percentile(usage, q)?;
    let rec = ((p * (1.0 + rule.margin_fraction)).ceil() as u64).max(minimum);
    let recommended_limit = match (request, limit) {
        (Some(r), Some(l)) if r > 0 => Some((rec as f64 * l as f64 / r as f64).ceil() as u64),
        _ => None,
    };
    Some(Figures {
        usage_percentile: p,
        recommended_request: rec,
        request,
        limit,
        recommended_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.9), Some(9.0));
        assert_eq!(percentile(&v, 0.5), Some(5.0));
        assert_eq!(percentile(&v, 1.0), Some(10.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 0.9), None);
    }

    #[test]
    fn margin_minimum_and_the_limit_ratio() {
        let rule = Rule::default();
        let usage: Vec<f64> = (1..=10).map(|i| f64::from(i) * 100.0).collect();
        // p90 = 900m, + 15 % = 1035m; limit ratio 2 (500m → 1000m).
        let f = recommend(&usage, 0.9, &rule, 25, Some(500), Some(1000)).unwrap();
        assert_eq!(
            (
                f.usage_percentile,
                f.recommended_request,
                f.recommended_limit
            ),
            (900.0, 1035, Some(2070))
        );
        // Tiny usage: VPA's minimum.
        let f = recommend(&[1.0, 2.0], 0.9, &rule, 25, None, None).unwrap();
        assert_eq!((f.recommended_request, f.recommended_limit), (25, None));
    }
}
