//! The demo guest embedded in the binary (`caisson demo`), and where the build put
//! the in-tree test guests.

use crate::config::{KernelFormat, KernelSource, SerialSink, ValidConfig};

/// Directory holding the guests built from tests/guests (`<name>.elf`).
pub const GUEST_BUILD_DIR: &str = env!("CAISSON_GUEST_DIR");

/// The demo guest: prints a banner over serial, then resets the VM.
pub static DEMO_GUEST: &[u8] = include_bytes!(concat!(env!("CAISSON_GUEST_DIR"), "/demo.elf"));

/// The demo VM: 1 vCPU, 128 MiB, serial on stdout.
pub fn demo_config(
    id: &str,
    cmdline: &str,
    vcpus: u8,
    seccomp: Option<crate::seccomp::Filters>,
) -> ValidConfig {
    ValidConfig {
        id: id.to_string(),
        kernel: KernelSource::Embedded(DEMO_GUEST),
        kernel_format: KernelFormat::Elf,
        initrd: None,
        cmdline: cmdline.to_string(),
        vcpu_count: vcpus,
        mem_size_mib: 128,
        serial: SerialSink::Stdout,
        serial_limit: None,
        virtio: Default::default(),
        seccomp,
        metrics_path: None,
    }
}
