//! Per-device metrics of the block, net and entropy devices, with Firecracker's
//! group and field names (only the counters Caisson actually counts).
//!
//! Each drive and interface registers a group under its id ([`block`],
//! [`net`]); [`groups`] returns `block_<id>` / `net_<id>` for each, then the
//! aggregates `block` and `net` (the sum of the per-device intervals, as
//! Firecracker's aggregate) and `entropy`. Every call consumes one interval.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use serde_json::Value;

use crate::metrics::SharedIncMetric;

/// `block_<drive_id>` and `block` (Firecracker's `BlockDeviceMetrics`).
#[derive(Debug, Default, Serialize)]
pub struct BlockDeviceMetrics {
    /// A queue or ring fault put the device in DEVICE_NEEDS_RESET.
    pub event_fails: SharedIncMetric,
    /// Host I/O of a valid request failed.
    pub execute_fails: SharedIncMetric,
    /// Requests refused before any I/O (bad header, length, range, type).
    pub invalid_reqs_count: SharedIncMetric,
    pub flush_count: SharedIncMetric,
    /// Queue notifications from the driver.
    pub queue_event_count: SharedIncMetric,
    /// A notification found no request.
    pub no_avail_buffer: SharedIncMetric,
    /// Rate limiter timer wake-ups.
    pub rate_limiter_event_count: SharedIncMetric,
    /// Requests left in the queue because the rate limiter ran dry.
    pub rate_limiter_throttled_events: SharedIncMetric,
    /// PATCH updates applied, and refused.
    pub update_count: SharedIncMetric,
    pub update_fails: SharedIncMetric,
    pub read_bytes: SharedIncMetric,
    pub write_bytes: SharedIncMetric,
    pub read_count: SharedIncMetric,
    pub write_count: SharedIncMetric,
}

/// `net_<iface_id>` and `net` (Firecracker's `NetDeviceMetrics`).
#[derive(Debug, Default, Serialize)]
pub struct NetDeviceMetrics {
    pub event_fails: SharedIncMetric,
    pub no_rx_avail_buffer: SharedIncMetric,
    pub no_tx_avail_buffer: SharedIncMetric,
    pub rx_queue_event_count: SharedIncMetric,
    pub rx_event_rate_limiter_count: SharedIncMetric,
    pub rx_rate_limiter_throttled: SharedIncMetric,
    pub rx_tap_event_count: SharedIncMetric,
    /// Bytes given to the guest, virtio-net header included (likewise TX).
    pub rx_bytes_count: SharedIncMetric,
    pub rx_packets_count: SharedIncMetric,
    pub rx_count: SharedIncMetric,
    pub tap_read_fails: SharedIncMetric,
    pub tap_write_fails: SharedIncMetric,
    pub tx_bytes_count: SharedIncMetric,
    pub tx_malformed_frames: SharedIncMetric,
    pub tx_count: SharedIncMetric,
    pub tx_packets_count: SharedIncMetric,
    pub tx_queue_event_count: SharedIncMetric,
    pub tx_rate_limiter_event_count: SharedIncMetric,
    pub tx_rate_limiter_throttled: SharedIncMetric,
}

/// `entropy` (Firecracker's `EntropyDeviceMetrics`).
#[derive(Debug, Default, Serialize)]
pub struct EntropyDeviceMetrics {
    pub entropy_event_fails: SharedIncMetric,
    pub entropy_event_count: SharedIncMetric,
    pub entropy_bytes: SharedIncMetric,
    pub host_rng_fails: SharedIncMetric,
    pub entropy_rate_limiter_throttled: SharedIncMetric,
    pub rate_limiter_event_count: SharedIncMetric,
}

type Registry<T> = Mutex<BTreeMap<String, Arc<T>>>;

static BLOCK: Registry<BlockDeviceMetrics> = Mutex::new(BTreeMap::new());
static NET: Registry<NetDeviceMetrics> = Mutex::new(BTreeMap::new());
static ENTROPY: OnceLock<Arc<EntropyDeviceMetrics>> = OnceLock::new();

fn get<T: Default>(reg: &Registry<T>, id: &str) -> Arc<T> {
    // A poisoned lock only means another thread panicked mid-insert; the map
    // itself is still whole.
    let mut map = reg.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(id.to_string()).or_default().clone()
}

/// The group of drive `id` (created on first use, shared after).
pub fn block(id: &str) -> Arc<BlockDeviceMetrics> {
    get(&BLOCK, id)
}

/// The group of interface `id`.
pub fn net(id: &str) -> Arc<NetDeviceMetrics> {
    get(&NET, id)
}

/// The entropy device's group (there is at most one device).
pub fn entropy() -> Arc<EntropyDeviceMetrics> {
    ENTROPY.get_or_init(Default::default).clone()
}

fn value<T: Serialize>(m: &T) -> Value {
    serde_json::to_value(m).unwrap_or(Value::Null)
}

/// Adds every counter of `v` into `sum`.
fn add_into(sum: &mut Value, v: &Value) {
    let (Value::Object(sum), Value::Object(v)) = (sum, v) else {
        return;
    };
    for (k, n) in v {
        if let (Some(Value::Number(s)), Some(n)) = (sum.get(k), n.as_u64()) {
            let total = s.as_u64().unwrap_or(0).saturating_add(n);
            sum.insert(k.clone(), Value::from(total));
        }
    }
}

fn per_device<T: Serialize + Default>(
    reg: &Registry<T>,
    prefix: &str,
    out: &mut Vec<(String, Value)>,
) {
    let map = reg.lock().unwrap_or_else(|e| e.into_inner());
    // Starts from a fresh group: every field present, all zero.
    let mut sum = value(&T::default());
    for (id, m) in map.iter() {
        let v = value(m.as_ref());
        add_into(&mut sum, &v);
        out.push((format!("{prefix}_{id}"), v));
    }
    out.push((prefix.to_string(), sum));
}

/// Every device group for one metrics line, consuming one interval.
pub fn groups() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    per_device(&BLOCK, "block", &mut out);
    per_device(&NET, "net", &mut out);
    out.push(("entropy".into(), value(entropy().as_ref())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_report_per_device_intervals_and_their_sum() {
        let a = block("metrics-test-a");
        let b = block("metrics-test-b");
        assert!(
            Arc::ptr_eq(&a, &block("metrics-test-a")),
            "one group per id"
        );
        a.read_bytes.add(100);
        b.read_bytes.add(23);
        b.flush_count.inc();
        net("metrics-test-eth").tx_packets_count.add(3);
        let g: BTreeMap<String, Value> = groups().into_iter().collect();
        assert_eq!(g["block_metrics-test-a"]["read_bytes"], 100);
        assert_eq!(g["block_metrics-test-b"]["flush_count"], 1);
        // Other tests may count into other drives at the same time: at least ours.
        assert!(g["block"]["read_bytes"].as_u64().unwrap() >= 123);
        assert!(g["net"]["tx_packets_count"].as_u64().unwrap() >= 3);
        assert_eq!(g["net_metrics-test-eth"]["tx_packets_count"], 3);
        for name in [
            "rate_limiter_throttled_events",
            "rate_limiter_event_count",
            "write_count",
        ] {
            assert!(g["block"].get(name).is_some(), "{name}");
        }
        assert!(g["entropy"].get("entropy_rate_limiter_throttled").is_some());
        // The next line has the next interval.
        let g: BTreeMap<String, Value> = groups().into_iter().collect();
        assert_eq!(g["block_metrics-test-a"]["read_bytes"], 0);
        assert_eq!(a.read_bytes.total(), 100);
    }
}
