//! Counts per container, kept per hour (so a 24 h window can slide), and the latest
//! matching line per pattern as a sample.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::scan::Sink;

/// Samples keep at most this many bytes of a line (never a whole log).
pub(crate) const SAMPLE_BYTES: usize = 200;

/// One container's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerCounts {
    /// Hour (Unix seconds / 3600) → count per pattern (indexes of the pattern list).
    pub hours: BTreeMap<i64, Vec<u64>>,
    /// The latest matching line per pattern, cut to [`SAMPLE_BYTES`] (lossy UTF-8).
    pub samples: Vec<Option<String>>,
    /// Unix seconds of each sample (a later line replaces an earlier one).
    #[serde(default)]
    pub(crate) sample_times: Vec<i64>,
}

impl ContainerCounts {
    /// Sum per pattern over the hours `from..=to`.
    pub fn sum(&self, from_hour: i64, to_hour: i64, patterns: usize) -> Vec<u64> {
        let mut out = vec![0u64; patterns];
        for (_, c) in self.hours.range(from_hour..=to_hour) {
            for (o, v) in out.iter_mut().zip(c) {
                *o = o.saturating_add(*v);
            }
        }
        out
    }

    /// Drops the hours before `from_hour`.
    pub fn prune(&mut self, from_hour: i64) {
        self.hours = self.hours.split_off(&from_hour);
    }

    /// A sink adding to these counts.
    pub fn sink(&mut self, patterns: usize) -> CountSink<'_> {
        self.samples.resize(patterns, None);
        self.sample_times.resize(patterns, i64::MIN);
        CountSink {
            counts: self,
            patterns,
        }
    }
}

/// Cuts `line` to [`SAMPLE_BYTES`] at a character boundary where it is UTF-8.
pub(crate) fn sample(line: &[u8]) -> String {
    let cut = &line[..line.len().min(SAMPLE_BYTES)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    // A multi-byte character cut in two shows as U+FFFD; that is fine for a sample.
    if line.len() > SAMPLE_BYTES {
        s.push('…');
    }
    s
}

/// See [`ContainerCounts::sink`].
pub struct CountSink<'a> {
    counts: &'a mut ContainerCounts,
    patterns: usize,
}

impl Sink for CountSink<'_> {
    fn hit(&mut self, unix_seconds: i64, pattern: usize, line: &[u8]) {
        let hour = unix_seconds.div_euclid(3600);
        let n = self.patterns;
        let row = self.counts.hours.entry(hour).or_insert_with(|| vec![0; n]);
        if let Some(c) = row.get_mut(pattern) {
            *c = c.saturating_add(1);
        }
        if let Some(t) = self.counts.sample_times.get_mut(pattern)
            && unix_seconds >= *t
        {
            *t = unix_seconds;
            self.counts.samples[pattern] = Some(sample(line));
        }
    }
}
