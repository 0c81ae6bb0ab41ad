//! Random spreads of waits, so that many nodes (or replicas) started together do not act
//! in lockstep: the agent's report, log and image passes, the aggregator's rounds and
//! scheduled runs.

use std::time::Duration;

use rand::Rng;

/// How far [`jittered`] moves a wait either way: 10 %.
pub(crate) const FRACTION: f64 = 0.1;

/// `interval` moved by up to [`FRACTION`] either way, at random.
#[must_use]
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(1.0 + rand::rng().random_range(-FRACTION..=FRACTION))
}

/// A random wait from zero up to `max` (millisecond steps).
#[must_use]
pub fn up_to(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_stays_within_ten_percent_and_varies() {
        let ds: Vec<Duration> = (0..1000)
            .map(|_| jittered(Duration::from_secs(10)))
            .collect();
        for d in &ds {
            assert!(
                *d >= Duration::from_secs(9) && *d <= Duration::from_secs(11),
                "{d:?}"
            );
        }
        assert!(
            ds.iter().any(|d| *d != ds[0]),
            "1000 equal waits: {:?}",
            ds[0]
        );
    }

    #[test]
    fn up_to_stays_within_its_bound() {
        assert_eq!(up_to(Duration::ZERO), Duration::ZERO);
        for _ in 0..1000 {
            let d = up_to(Duration::from_millis(5));
            assert!(d <= Duration::from_millis(5), "{d:?}");
        }
        assert_eq!(up_to(Duration::from_micros(900)), Duration::ZERO);
    }
}
