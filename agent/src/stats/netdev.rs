//! `/proc/net/dev` parsing and per-second rates between two samples.
//!
//! ```text
//! Inter-|   Receive                                                |  Transmit
//!  face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
//!     lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0
//! ```
//! The kernel prints the name right-aligned in 6 columns followed by `:`; a long name runs
//! straight into its first counter (`veth1234567:123 …`), and alias names may contain a
//! colon themselves, so the name ends at the *last* colon of the line.

use std::collections::HashMap;
use std::time::Duration;

use caretaker_core::model::{NetworkInterface, NetworkRates};

/// The 16 counters of one interface, in the kernel's order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) receive_bytes: u64,
    pub(crate) receive_packets: u64,
    pub(crate) receive_errs: u64,
    pub(crate) receive_drop: u64,
    pub(crate) receive_fifo: u64,
    pub(crate) receive_frame: u64,
    pub(crate) receive_compressed: u64,
    pub(crate) receive_multicast: u64,
    pub(crate) transmit_bytes: u64,
    pub(crate) transmit_packets: u64,
    pub(crate) transmit_errs: u64,
    pub(crate) transmit_drop: u64,
    pub(crate) transmit_fifo: u64,
    pub(crate) transmit_colls: u64,
    pub(crate) transmit_carrier: u64,
    pub(crate) transmit_compressed: u64,
}

impl Counters {
    fn as_array(&self) -> [u64; 16] {
        [
            self.receive_bytes,
            self.receive_packets,
            self.receive_errs,
            self.receive_drop,
            self.receive_fifo,
            self.receive_frame,
            self.receive_compressed,
            self.receive_multicast,
            self.transmit_bytes,
            self.transmit_packets,
            self.transmit_errs,
            self.transmit_drop,
            self.transmit_fifo,
            self.transmit_colls,
            self.transmit_carrier,
            self.transmit_compressed,
        ]
    }

    fn from_array(a: [u64; 16]) -> Self {
        Self {
            receive_bytes: a[0],
            receive_packets: a[1],
            receive_errs: a[2],
            receive_drop: a[3],
            receive_fifo: a[4],
            receive_frame: a[5],
            receive_compressed: a[6],
            receive_multicast: a[7],
            transmit_bytes: a[8],
            transmit_packets: a[9],
            transmit_errs: a[10],
            transmit_drop: a[11],
            transmit_fifo: a[12],
            transmit_colls: a[13],
            transmit_carrier: a[14],
            transmit_compressed: a[15],
        }
    }
}

/// A line that is not a valid interface line; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub(crate) struct ParseError {
    pub line: usize,
    pub reason: LineError,
}

/// What is wrong with one interface line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LineError {
    #[error("no ':' after the interface name")]
    NoColon,
    #[error("empty interface name")]
    EmptyName,
    #[error("more than 16 counters")]
    TooManyCounters,
    /// `index` is 1-based; `field` as written.
    #[error("counter {index} ({field:?}) is not a non-negative integer")]
    NotACounter { index: usize, field: String },
    /// How many counters the line has.
    #[error("{0} counters, expected 16")]
    CounterCount(usize),
}

/// Parses one interface line.
///
/// # Errors
/// Says what is wrong: no colon, empty name, not 16 counters, a counter that is not a
/// non-negative integer.
pub(crate) fn parse_line(line: &str) -> Result<(String, Counters), LineError> {
    let (name, rest) = line.rsplit_once(':').ok_or(LineError::NoColon)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(LineError::EmptyName);
    }
    let mut values = [0u64; 16];
    let mut n = 0;
    for field in rest.split_ascii_whitespace() {
        if n == 16 {
            return Err(LineError::TooManyCounters);
        }
        values[n] = field.parse().map_err(|_| LineError::NotACounter {
            index: n + 1,
            field: field.to_string(),
        })?;
        n += 1;
    }
    if n != 16 {
        return Err(LineError::CounterCount(n));
    }
    Ok((name.to_string(), Counters::from_array(values)))
}

/// Parses a whole `/proc/net/dev`: the two header lines are skipped, bad lines reported
/// beside the good ones. Interfaces keep the file's order.
pub(crate) fn parse(text: &str) -> (Vec<(String, Counters)>, Vec<ParseError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // Header lines hold '|'; no interface line does.
        if line.trim().is_empty() || line.contains('|') {
            continue;
        }
        match parse_line(line) {
            Ok(v) => out.push(v),
            Err(reason) => errors.push(ParseError {
                line: i + 1,
                reason,
            }),
        }
    }
    (out, errors)
}

/// Reads `<sysfs>/class/net/<device>/operstate` for each interface (the same file
/// `ip link` shows as `state`). Names that could escape the directory are skipped.
pub(crate) fn fill_operstate(sysfs: &std::path::Path, ifs: &mut [NetworkInterface]) {
    let class = sysfs.join("class/net");
    for i in ifs {
        if i.device.contains('/') || i.device == "." || i.device == ".." {
            continue;
        }
        i.operstate = std::fs::read_to_string(class.join(&i.device).join("operstate"))
            .ok()
            .map(|s| s.trim().to_string());
    }
}

/// Remembers the previous sample to turn counters into rates.
#[derive(Debug, Default)]
pub(crate) struct RateTracker {
    previous: HashMap<String, Counters>,
}

impl RateTracker {
    /// Turns one sample into report entries. `elapsed` is the time since the previous
    /// sample (monotonic clock); `None` on the first sample.
    ///
    /// A counter lower than in the previous sample (driver reset, 32-bit wrap, interface
    /// deleted and re-created) marks the interface `counter_reset` and gives it no rate for
    /// this interval, rather than a negative or a huge one. Interfaces that disappeared are
    /// forgotten.
    pub(crate) fn update(
        &mut self,
        sample: Vec<(String, Counters)>,
        elapsed: Option<Duration>,
    ) -> Vec<NetworkInterface> {
        let mut next = HashMap::with_capacity(sample.len());
        let out = sample
            .into_iter()
            .map(|(device, c)| {
                let prev = self.previous.get(&device);
                let counter_reset = prev.is_some_and(|p| {
                    p.as_array()
                        .iter()
                        .zip(c.as_array())
                        .any(|(before, now)| now < *before)
                });
                let rates = match (prev, elapsed) {
                    (Some(p), Some(dt)) if !counter_reset && !dt.is_zero() => {
                        let secs = dt.as_secs_f64();
                        let per_s = |now: u64, before: u64| (now - before) as f64 / secs;
                        Some(NetworkRates {
                            receive_bytes_per_second: per_s(c.receive_bytes, p.receive_bytes),
                            transmit_bytes_per_second: per_s(c.transmit_bytes, p.transmit_bytes),
                            receive_packets_per_second: per_s(c.receive_packets, p.receive_packets),
                            transmit_packets_per_second: per_s(
                                c.transmit_packets,
                                p.transmit_packets,
                            ),
                        })
                    }
                    _ => None,
                };
                let entry = NetworkInterface {
                    device: device.clone(),
                    receive_bytes_total: c.receive_bytes,
                    receive_packets_total: c.receive_packets,
                    receive_errs_total: c.receive_errs,
                    receive_drop_total: c.receive_drop,
                    transmit_bytes_total: c.transmit_bytes,
                    transmit_packets_total: c.transmit_packets,
                    transmit_errs_total: c.transmit_errs,
                    transmit_drop_total: c.transmit_drop,
                    rates,
                    counter_reset,
                    operstate: None,
                };
                next.insert(device, c);
                entry
            })
            .collect();
        self.previous = next;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0
  eth0:9047621     380    1    2    3     4          5         6    23427     303    7    8    9    10      11         12
veth0123456:10 20 0 0 0 0 0 0 30 40 0 0 0 0 0 0
 eth0:1: 5 6 0 0 0 0 0 0 7 8 0 0 0 0 0 0
";

    #[test]
    fn parses_both_spacings_long_names_and_alias_names_with_colon() {
        let (ifs, errors) = parse(SAMPLE);
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<_> = ifs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["lo", "eth0", "veth0123456", "eth0:1"]);
        assert_eq!(ifs[0].1.receive_bytes, 3193);
        assert_eq!(
            ifs[1].1,
            Counters {
                receive_bytes: 9_047_621,
                receive_packets: 380,
                receive_errs: 1,
                receive_drop: 2,
                receive_fifo: 3,
                receive_frame: 4,
                receive_compressed: 5,
                receive_multicast: 6,
                transmit_bytes: 23_427,
                transmit_packets: 303,
                transmit_errs: 7,
                transmit_drop: 8,
                transmit_fifo: 9,
                transmit_colls: 10,
                transmit_carrier: 11,
                transmit_compressed: 12,
            }
        );
        assert_eq!(
            (ifs[2].1.receive_bytes, ifs[2].1.transmit_packets),
            (10, 40)
        );
        assert_eq!((ifs[3].1.receive_bytes, ifs[3].1.transmit_bytes), (5, 7));
    }

    #[test]
    fn malformed_lines_are_reported_by_number() {
        let text = "h|\nh|\n  ok: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n  short: 1 2 3\nnocolon 1 2\n  neg: -1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n  : 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n";
        let (ifs, errors) = parse(text);
        assert_eq!(ifs.len(), 1);
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                "line 4: 3 counters, expected 16",
                "line 5: no ':' after the interface name",
                "line 6: counter 1 (\"-1\") is not a non-negative integer",
                "line 7: empty interface name",
            ]
        );
        assert_eq!(
            errors[2].reason,
            LineError::NotACounter {
                index: 1,
                field: "-1".into()
            }
        );
    }

    #[test]
    fn operstate_comes_from_the_configured_sysfs() {
        let sysfs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(sysfs.path().join("class/net/eth0")).unwrap();
        std::fs::write(sysfs.path().join("class/net/eth0/operstate"), "up\n").unwrap();
        let mut ifs = vec![
            NetworkInterface {
                device: "eth0".into(),
                ..NetworkInterface::default()
            },
            NetworkInterface {
                device: "gone0".into(),
                ..NetworkInterface::default()
            },
            NetworkInterface {
                device: "..".into(),
                ..NetworkInterface::default()
            },
        ];
        fill_operstate(sysfs.path(), &mut ifs);
        assert_eq!(
            ifs.iter()
                .map(|i| i.operstate.as_deref())
                .collect::<Vec<_>>(),
            vec![Some("up"), None, None]
        );
    }

    fn counters(rx: u64, tx: u64) -> Counters {
        Counters {
            receive_bytes: rx,
            transmit_bytes: tx,
            receive_packets: rx / 100,
            transmit_packets: tx / 100,
            ..Counters::default()
        }
    }

    #[test]
    fn rates_are_per_second_between_samples() {
        let mut t = RateTracker::default();
        let first = t.update(vec![("eth0".into(), counters(1_000, 500))], None);
        assert_eq!(first[0].rates, None);
        assert!(!first[0].counter_reset);
        let second = t.update(
            vec![("eth0".into(), counters(21_000, 4_500))],
            Some(Duration::from_secs(10)),
        );
        assert_eq!(
            second[0].rates,
            Some(NetworkRates {
                receive_bytes_per_second: 2_000.0,
                transmit_bytes_per_second: 400.0,
                receive_packets_per_second: 20.0,
                transmit_packets_per_second: 4.0,
            })
        );
    }

    #[test]
    fn a_counter_going_backwards_is_a_reset_without_rate() {
        let mut t = RateTracker::default();
        t.update(
            vec![("eth0".into(), counters(u64::from(u32::MAX) - 10, 100))],
            None,
        );
        // 32-bit wrap of the receive counter.
        let wrapped = t.update(
            vec![("eth0".into(), counters(5, 200))],
            Some(Duration::from_secs(1)),
        );
        assert!(wrapped[0].counter_reset);
        assert_eq!(wrapped[0].rates, None);
        assert_eq!(wrapped[0].receive_bytes_total, 5);
        // The interval after the reset has a normal rate again.
        let after = t.update(
            vec![("eth0".into(), counters(105, 300))],
            Some(Duration::from_secs(1)),
        );
        assert!(!after[0].counter_reset);
        assert_eq!(
            after[0].rates.map(|r| r.receive_bytes_per_second),
            Some(100.0)
        );
    }

    #[test]
    fn a_reset_of_an_error_counter_also_counts_and_new_interfaces_have_no_rate() {
        let mut t = RateTracker::default();
        let mut c = counters(10, 10);
        c.receive_errs = 4;
        t.update(vec![("eth0".into(), c)], None);
        c.receive_errs = 0;
        c.receive_bytes = 20;
        let out = t.update(
            vec![("eth0".into(), c), ("eth1".into(), counters(1, 1))],
            Some(Duration::from_secs(1)),
        );
        assert!(out[0].counter_reset);
        assert_eq!(out[1].rates, None);
        assert!(!out[1].counter_reset);
    }
}
