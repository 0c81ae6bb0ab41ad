//! Least-squares trend of requested capacity and the day it would reach allocatable.

use jiff::Timestamp;

/// Least-squares slope of `(time, value)` points in value units per day; `None` with fewer
/// than two distinct times.
pub(crate) fn slope_per_day(points: &[(Timestamp, f64)]) -> Option<f64> {
    let t0 = points.first()?.0;
    let xs: Vec<f64> = points
        .iter()
        .map(|(t, _)| t.duration_since(t0).as_secs_f64() / 86_400.0)
        .collect();
    let n = xs.len() as f64;
    let mx = xs.iter().sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = xs
        .iter()
        .zip(points)
        .map(|(x, p)| (x - mx) * (p.1 - my))
        .sum();
    Some(sxy / sxx)
}

/// Days until `requested` reaches `allocatable` growing by `slope` a day: 0 when it is
/// there already, `None` when requests are flat or falling.
pub(crate) fn days_until_full(requested: f64, allocatable: f64, slope: Option<f64>) -> Option<f64> {
    if allocatable <= 0.0 {
        return None;
    }
    if requested >= allocatable {
        return Some(0.0);
    }
    let s = slope.filter(|s| *s > 1e-9)?;
    Some((allocatable - requested) / s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64) -> Timestamp {
        Timestamp::from_second(1_780_000_000 + day * 86_400).unwrap()
    }

    #[test]
    fn slope_and_run_out() {
        // 100 m CPU more requested every day, with noise that cancels out.
        let pts: Vec<_> = (0..10)
            .map(|d| {
                (
                    at(d),
                    1000.0 + 100.0 * d as f64 + if d % 2 == 0 { 5.0 } else { -5.0 },
                )
            })
            .collect();
        let s = slope_per_day(&pts).unwrap();
        assert!((s - 100.0).abs() < 1.5, "{s}");
        assert_eq!(days_until_full(1900.0, 4000.0, Some(100.0)), Some(21.0));
        assert_eq!(days_until_full(4100.0, 4000.0, Some(-3.0)), Some(0.0));
        assert_eq!(days_until_full(1900.0, 4000.0, Some(-3.0)), None);
        assert_eq!(slope_per_day(&pts[..1]), None);
    }
}
