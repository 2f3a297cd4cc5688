//! The demo guest embedded in the binary (`caisson demo`), and where the build put
//! the in-tree test guests.

use crate::config::{ConfigError, ValidConfig, VmConfig};

/// Directory holding the guests built from tests/guests (`<name>.elf`).
pub const GUEST_BUILD_DIR: &str = env!("CAISSON_GUEST_DIR");

/// The demo guest: prints a banner over serial, then resets the VM.
pub static DEMO_GUEST: &[u8] = include_bytes!(concat!(env!("CAISSON_GUEST_DIR"), "/demo.elf"));

/// The demo VM: `vcpus` vCPUs, 128 MiB, serial on stdout, checked like every
/// other config.
pub fn demo_config(
    id: &str,
    cmdline: &str,
    vcpus: u8,
    max_vcpus: u64,
) -> Result<ValidConfig, ConfigError> {
    let mut cfg = VmConfig::default();
    cfg.boot_source.boot_args = Some(cmdline.to_string());
    cfg.machine_config.vcpu_count = Some(u64::from(vcpus));
    cfg.machine_config.mem_size_mib = Some(128);
    cfg.caisson.serial = Some("stdout".to_string());
    cfg.validate_embedded(id, max_vcpus, DEMO_GUEST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KernelFormat, KernelSource, SerialSink};

    #[test]
    fn demo_config_goes_through_validation() {
        let cfg = demo_config("demo", "console=ttyS0", 2, 8).unwrap();
        assert!(matches!(cfg.kernel, KernelSource::Embedded(_)));
        assert_eq!(cfg.kernel_format, KernelFormat::Elf);
        assert_eq!((cfg.vcpu_count, cfg.mem_size_mib), (2, 128));
        assert!(matches!(cfg.serial, SerialSink::Stdout));
        assert_eq!(cfg.cmdline, "console=ttyS0");
        // Validation's checks apply: too many vCPUs, a NUL in the command line.
        assert!(demo_config("demo", "console=ttyS0", 9, 8).is_err());
        assert!(demo_config("demo", "a\0b", 1, 8).is_err());
        assert!(demo_config("bad id!", "", 1, 8).is_err());
    }
}
