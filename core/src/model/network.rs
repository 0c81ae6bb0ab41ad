//! Network interfaces: counters and rates.

use caretaker_proto::pb;
use serde::{Deserialize, Serialize};

use super::wire::*;

/// Counters of one network interface, from `/proc/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub device: String,
    pub receive_bytes_total: u64,
    pub receive_packets_total: u64,
    pub receive_errs_total: u64,
    pub receive_drop_total: u64,
    pub transmit_bytes_total: u64,
    pub transmit_packets_total: u64,
    pub transmit_errs_total: u64,
    pub transmit_drop_total: u64,
    /// Per-second rates since the previous sample; absent on the first sample and when a
    /// counter was reset.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rates: Option<NetworkRates>,
    /// A counter went backwards since the previous sample (reset, wrap, re-created
    /// interface): no rate for this interval.
    pub counter_reset: bool,
    /// Operational state from `<sysfs>/class/net/<device>/operstate` (`up`, `down`,
    /// `unknown` …); absent when sysfs does not list the interface.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub operstate: Option<String>,
}

/// Per-second rates of one interface between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkRates {
    pub receive_bytes_per_second: f64,
    pub transmit_bytes_per_second: f64,
    pub receive_packets_per_second: f64,
    pub transmit_packets_per_second: f64,
}

impl From<NetworkInterface> for pb::NetworkInterface {
    fn from(n: NetworkInterface) -> Self {
        Self {
            device: n.device,
            receive_bytes_total: n.receive_bytes_total,
            receive_packets_total: n.receive_packets_total,
            receive_errs_total: n.receive_errs_total,
            receive_drop_total: n.receive_drop_total,
            transmit_bytes_total: n.transmit_bytes_total,
            transmit_packets_total: n.transmit_packets_total,
            transmit_errs_total: n.transmit_errs_total,
            transmit_drop_total: n.transmit_drop_total,
            receive_bytes_per_second: n.rates.map(|r| r.receive_bytes_per_second),
            transmit_bytes_per_second: n.rates.map(|r| r.transmit_bytes_per_second),
            receive_packets_per_second: n.rates.map(|r| r.receive_packets_per_second),
            transmit_packets_per_second: n.rates.map(|r| r.transmit_packets_per_second),
            counter_reset: n.counter_reset,
            operstate: n.operstate.unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::NetworkInterface> for NetworkInterface {
    type Error = InvalidMessage;

    fn try_from(n: pb::NetworkInterface) -> Result<Self, Self::Error> {
        if n.device.is_empty() {
            return Err(InvalidMessage::new("device", "empty"));
        }
        let rates = match (
            n.receive_bytes_per_second,
            n.transmit_bytes_per_second,
            n.receive_packets_per_second,
            n.transmit_packets_per_second,
        ) {
            (None, None, None, None) => None,
            (Some(rb), Some(tb), Some(rp), Some(tp)) => Some(NetworkRates {
                receive_bytes_per_second: non_negative(rb, "receive_bytes_per_second")?,
                transmit_bytes_per_second: non_negative(tb, "transmit_bytes_per_second")?,
                receive_packets_per_second: non_negative(rp, "receive_packets_per_second")?,
                transmit_packets_per_second: non_negative(tp, "transmit_packets_per_second")?,
            }),
            _ => {
                return Err(InvalidMessage::new(
                    "receive_bytes_per_second",
                    "rates must be all present or all absent",
                ));
            }
        };
        Ok(Self {
            device: n.device,
            receive_bytes_total: n.receive_bytes_total,
            receive_packets_total: n.receive_packets_total,
            receive_errs_total: n.receive_errs_total,
            receive_drop_total: n.receive_drop_total,
            transmit_bytes_total: n.transmit_bytes_total,
            transmit_packets_total: n.transmit_packets_total,
            transmit_errs_total: n.transmit_errs_total,
            transmit_drop_total: n.transmit_drop_total,
            rates,
            counter_reset: n.counter_reset,
            operstate: (!n.operstate.is_empty()).then_some(n.operstate),
        })
    }
}
