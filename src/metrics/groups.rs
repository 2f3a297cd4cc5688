//! The metric groups, with Firecracker's group and counter names
//! (src/vmm/src/logger/metrics.rs, devices/legacy/*, devices/virtio/vsock/metrics.rs).
//! Only counters that something in Caisson moves are here: a group keeps
//! Firecracker's name even when it has few of them.

use std::time::Instant;

use serde::Serialize;

use super::counter::{SharedIncMetric, SharedStoreMetric};

/// A group struct with `Default`, `Serialize` and a `const fn new`, so that
/// the global [`super::METRICS`] can be a plain static.
macro_rules! group {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default, Serialize)]
        pub struct $name {
            $($(#[$fm])* pub $field: $ty,)*
        }
        impl $name {
            pub const fn new() -> Self {
                Self { $($field: $ty::new(),)* }
            }
        }
    };
}

group!(
    /// `api_server`: set from the jailer's `--start-time-us` / `--start-time-cpu-us`.
    ApiServerMetrics {
        /// Wall-clock microseconds from the jailer's start to the VMM being ready.
        process_startup_time_us: SharedStoreMetric,
        /// CPU microseconds (this process plus `--parent-cpu-time-us`) until then.
        process_startup_time_cpu_us: SharedStoreMetric,
    }
);

group!(
    /// `deprecated_api`: requests that used a deprecated field (Firecracker's
    /// `mem_file_path` of `PUT /snapshot/load`, `vsock_id` of `PUT /vsock`).
    DeprecatedApiMetrics {
        deprecated_http_api_calls: SharedIncMetric,
    }
);

group!(
    /// `get_api_requests`: counted by the API layer.
    GetRequestsMetrics {
        instance_info_count: SharedIncMetric,
        machine_cfg_count: SharedIncMetric,
        vmm_version_count: SharedIncMetric,
    }
);

group!(
    /// `put_api_requests`: counted by the API layer (`*_fails` for rejected requests).
    PutRequestsMetrics {
        actions_count: SharedIncMetric,
        actions_fails: SharedIncMetric,
        boot_source_count: SharedIncMetric,
        boot_source_fails: SharedIncMetric,
        drive_count: SharedIncMetric,
        drive_fails: SharedIncMetric,
        logger_count: SharedIncMetric,
        logger_fails: SharedIncMetric,
        machine_cfg_count: SharedIncMetric,
        machine_cfg_fails: SharedIncMetric,
        metrics_count: SharedIncMetric,
        metrics_fails: SharedIncMetric,
        network_count: SharedIncMetric,
        network_fails: SharedIncMetric,
        vsock_count: SharedIncMetric,
        vsock_fails: SharedIncMetric,
    }
);

group!(
    /// `patch_api_requests`: counted by the API layer.
    PatchRequestsMetrics {
        drive_count: SharedIncMetric,
        drive_fails: SharedIncMetric,
        network_count: SharedIncMetric,
        network_fails: SharedIncMetric,
        machine_cfg_count: SharedIncMetric,
        machine_cfg_fails: SharedIncMetric,
    }
);

group!(
    /// `uart`: the 8250 at 0x3f8.
    SerialDeviceMetrics {
        /// Writes to the host output that failed.
        error_count: SharedIncMetric,
        /// Accesses wider than one byte, ignored.
        missed_read_count: SharedIncMetric,
        missed_write_count: SharedIncMetric,
        /// Bytes the guest read from the receive buffer.
        read_count: SharedIncMetric,
        /// Bytes the guest sent to the host output.
        write_count: SharedIncMetric,
        /// Bytes dropped by the serial output's rate limiter (PUT /serial).
        rate_limiter_dropped_bytes: SharedIncMetric,
    }
);

group!(
    /// `i8042`: the keyboard controller (reset line).
    I8042DeviceMetrics {
        /// Accesses of the wrong width or at no register.
        missed_read_count: SharedIncMetric,
        missed_write_count: SharedIncMetric,
        read_count: SharedIncMetric,
        /// Resets the guest requested through the controller.
        reset_count: SharedIncMetric,
        write_count: SharedIncMetric,
    }
);

group!(
    /// `latencies_us`: pause, resume and snapshot durations, stored by the
    /// controller (API level and VMM level, as Firecracker splits them).
    PerformanceMetrics {
        full_create_snapshot: SharedStoreMetric,
        diff_create_snapshot: SharedStoreMetric,
        load_snapshot: SharedStoreMetric,
        pause_vm: SharedStoreMetric,
        resume_vm: SharedStoreMetric,
        vmm_full_create_snapshot: SharedStoreMetric,
        vmm_diff_create_snapshot: SharedStoreMetric,
        vmm_load_snapshot: SharedStoreMetric,
        vmm_pause_vm: SharedStoreMetric,
        vmm_resume_vm: SharedStoreMetric,
    }
);

group!(
    /// `logger`: the metrics sink's own trouble.
    LoggerSystemMetrics {
        /// Lines not written because the sink (a FIFO nobody reads) was full;
        /// their counts stay in the next line that is written.
        missed_metrics_count: SharedIncMetric,
        /// Writes that failed for another reason (the line is dropped).
        metrics_fails: SharedIncMetric,
    }
);

group!(
    /// `seccomp`: set to 1 by the SIGSYS handler, which writes a last line
    /// before the process dies.
    SeccompMetrics {
        num_faults: SharedStoreMetric,
    }
);

group!(
    /// `signals`: the signals Caisson handles that Firecracker has a name for
    /// (SIGTERM and SIGINT stop the VM too but have no Firecracker counter).
    SignalMetrics {
        sighup: SharedStoreMetric,
    }
);

group!(
    /// Min / max / sum of one kind of vCPU exit's handling time.
    LatencyAggregateMetrics {
        min_us: SharedStoreMetric,
        max_us: SharedStoreMetric,
        sum_us: SharedIncMetric,
    }
);

impl LatencyAggregateMetrics {
    /// Times the caller's scope: the handling time is recorded when the value drops.
    pub fn record(&self) -> LatencyRecorder<'_> {
        LatencyRecorder {
            start: Instant::now(),
            metric: self,
        }
    }

    fn add_sample(&self, us: u64) {
        self.sum_us.add(us);
        let min = self.min_us.fetch();
        if min == 0 || us < min {
            self.min_us.store(us);
        }
        if us > self.max_us.fetch() {
            self.max_us.store(us);
        }
    }
}

/// See [`LatencyAggregateMetrics::record`].
#[derive(Debug)]
pub struct LatencyRecorder<'a> {
    start: Instant,
    metric: &'a LatencyAggregateMetrics,
}

impl Drop for LatencyRecorder<'_> {
    fn drop(&mut self) {
        let us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.metric.add_sample(us);
    }
}

group!(
    /// `vcpu`: KVM exits handled by the vCPU threads.
    VcpuMetrics {
        exit_io_in: SharedIncMetric,
        exit_io_out: SharedIncMetric,
        exit_mmio_read: SharedIncMetric,
        exit_mmio_write: SharedIncMetric,
        /// Exits that stopped the VM with an error (KVM_RUN failure, entry
        /// failure, an internal error not assisted, an unexpected exit).
        failures: SharedIncMetric,
        exit_io_in_agg: LatencyAggregateMetrics,
        exit_io_out_agg: LatencyAggregateMetrics,
        exit_mmio_read_agg: LatencyAggregateMetrics,
        exit_mmio_write_agg: LatencyAggregateMetrics,
    }
);

/// Counts one exit of a kind and times its handling until the value drops.
macro_rules! exit_timers {
    ($($fn:ident: $count:ident, $agg:ident;)*) => {
        impl VcpuMetrics {
            $(
                pub fn $fn(&self) -> LatencyRecorder<'_> {
                    self.$count.inc();
                    self.$agg.record()
                }
            )*
        }
    };
}

exit_timers! {
    io_in: exit_io_in, exit_io_in_agg;
    io_out: exit_io_out, exit_io_out_agg;
    mmio_read: exit_mmio_read, exit_mmio_read_agg;
    mmio_write: exit_mmio_write, exit_mmio_write_agg;
}

group!(
    /// `vmm`: the main thread.
    VmmMetrics {
        /// Events the main-thread event loop dispatched (devices, and the few
        /// VMM events: signals, exit, serial input, the metrics timer).
        device_events: SharedIncMetric,
    }
);

group!(
    /// `vsock`: the (single) virtio-vsock device and its connections.
    VsockDeviceMetrics {
        /// Queue notifications that failed (the device then stops, see mmio).
        rx_queue_event_fails: SharedIncMetric,
        tx_queue_event_fails: SharedIncMetric,
        /// epoll_wait on the host sockets failed.
        muxer_event_fails: SharedIncMetric,
        rx_queue_event_count: SharedIncMetric,
        tx_queue_event_count: SharedIncMetric,
        /// Payload bytes and packets (control packets included) given to the guest.
        rx_bytes_count: SharedIncMetric,
        rx_packets_count: SharedIncMetric,
        /// Payload bytes and packets taken from the guest.
        tx_bytes_count: SharedIncMetric,
        tx_packets_count: SharedIncMetric,
        conns_added: SharedIncMetric,
        /// Connections reset by the device (error, overrun, protocol violation).
        conns_killed: SharedIncMetric,
        conns_removed: SharedIncMetric,
        /// Writes to a host socket that failed (the connection is reset).
        tx_write_fails: SharedIncMetric,
        /// Reads from a host socket that failed (the connection is reset).
        rx_read_fails: SharedIncMetric,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_aggregates_keep_min_max_and_sum() {
        let m = LatencyAggregateMetrics::new();
        m.add_sample(5);
        m.add_sample(2);
        m.add_sample(9);
        assert_eq!((m.min_us.fetch(), m.max_us.fetch()), (2, 9));
        assert_eq!(m.sum_us.take_interval(), 16);
        drop(m.record());
        assert_eq!(m.sum_us.total(), 16 + m.sum_us.take_interval());
    }

    #[test]
    fn groups_serialise_with_firecracker_names() {
        let v = serde_json::to_value(VcpuMetrics::new()).expect("serialise");
        assert_eq!(v["exit_io_out"], 0);
        assert_eq!(v["exit_mmio_write_agg"]["min_us"], 0);
        let v = serde_json::to_value(I8042DeviceMetrics::new()).expect("serialise");
        let keys: Vec<_> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "missed_read_count",
                "missed_write_count",
                "read_count",
                "reset_count",
                "write_count"
            ]
        );
    }
}
