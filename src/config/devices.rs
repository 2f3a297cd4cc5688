//! The virtio device sections of the config (`drives`, `network-interfaces`,
//! `vsock`, `entropy`, and `caisson.net_fds`), validated into [`VirtioConfig`],
//! plus the kernel command-line words they imply.
//!
//! `caisson.net_fds` maps an `iface_id` to a tap fd that the process inherited
//! (e.g. from the jailer): `"caisson": {"net_fds": {"eth0": 3}}`. The interface
//! then uses that fd instead of opening `host_dev_name` through /dev/net/tun;
//! `host_dev_name` is still required by the schema and is only used in messages.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{ConfigError, DriveConfig, NetConfig, VmConfig};
use crate::rate_limiter::{RateLimiterConfig, RateLimiterError};

/// Linux's IFNAMSIZ, including the NUL.
pub const IFNAMSIZ: usize = 16;
/// The largest `sun_path`, including the NUL.
pub const SUN_PATH_MAX: usize = 108;
/// Room left in `uds_path` for the `_<port>` suffix of guest-initiated connections.
pub const UDS_PORT_SUFFIX: usize = 11;
/// Firecracker's id length limit for drives and interfaces.
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// A checked drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidDrive {
    pub id: String,
    pub path: PathBuf,
    pub read_only: bool,
    pub root: bool,
    pub partuuid: Option<String>,
    pub rate_limiter: Option<RateLimiterConfig>,
}

/// Where a network interface's tap comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TapSource {
    /// Opened by name through /dev/net/tun.
    Name(String),
    /// An fd this process inherited (`caisson.net_fds`).
    Fd(i32),
}

/// A checked network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidNet {
    pub id: String,
    pub tap: TapSource,
    pub mac: Option<[u8; 6]>,
    pub rx_rate_limiter: Option<RateLimiterConfig>,
    pub tx_rate_limiter: Option<RateLimiterConfig>,
}

/// A checked vsock device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidVsock {
    pub cid: u32,
    pub uds_path: PathBuf,
}

/// A checked entropy device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidEntropy {
    pub rate_limiter: Option<RateLimiterConfig>,
}

/// Every virtio device, in the order they are placed in the MMIO gap: drives
/// (the root drive first, so that it is /dev/vda), interfaces, vsock, entropy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VirtioConfig {
    pub drives: Vec<ValidDrive>,
    pub nets: Vec<ValidNet>,
    pub vsock: Option<ValidVsock>,
    pub entropy: Option<ValidEntropy>,
}

impl VirtioConfig {
    /// How many virtio-mmio devices this is.
    pub fn count(&self) -> usize {
        self.drives.len()
            + self.nets.len()
            + usize::from(self.vsock.is_some())
            + usize::from(self.entropy.is_some())
    }
}

fn invalid(field: String, value: impl std::fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Device {
        field,
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn check_device_id(field: String, id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_DEVICE_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            id,
            "must be 1 to 64 characters of [A-Za-z0-9_-]",
        ))
    }
}

/// Checks a rate limiter; `{}` and zero sizes are kept (they limit nothing).
fn check_rate_limiter(
    field: String,
    v: &Option<RateLimiterConfig>,
) -> Result<Option<RateLimiterConfig>, ConfigError> {
    if let Some(rl) = v {
        rl.validate(&field).map_err(|e| match e {
            RateLimiterError::Invalid {
                field,
                value,
                reason,
            } => invalid(field, value, reason),
            other => invalid(field.clone(), "", other.to_string()),
        })?;
    }
    Ok(*v)
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn check_drive(i: usize, d: &DriveConfig) -> Result<ValidDrive, ConfigError> {
    let f = |name: &str| format!("drives[{i}].{name}");
    check_device_id(f("drive_id"), &d.drive_id)?;
    let rate_limiter = check_rate_limiter(f("rate_limiter"), &d.rate_limiter)?;
    if let Some(s) = &d.socket {
        return Err(invalid(
            f("socket"),
            s.display(),
            "vhost-user drives are not supported by Caisson",
        ));
    }
    match d.io_engine.as_deref() {
        None | Some("Sync") => {}
        Some(other) => return Err(invalid(f("io_engine"), other, "only \"Sync\" is supported")),
    }
    match d.cache_type.as_deref() {
        None | Some("Unsafe") | Some("Writeback") => {}
        Some(other) => {
            return Err(invalid(
                f("cache_type"),
                other,
                "expected \"Unsafe\" or \"Writeback\"",
            ))
        }
    }
    // A regular file or a block device, opened without blocking.
    crate::backing_file::open(&d.path_on_host, !d.is_read_only)
        .map_err(|e| invalid(f("path_on_host"), d.path_on_host.display(), e.to_string()))?;
    if let Some(uuid) = &d.partuuid {
        if !d.is_root_device {
            return Err(invalid(
                f("partuuid"),
                uuid,
                "only meaningful on the root device",
            ));
        }
        let ok = !uuid.is_empty()
            && uuid.len() <= 64
            && uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if !ok {
            return Err(invalid(f("partuuid"), uuid, "expected hex digits and '-'"));
        }
    }
    Ok(ValidDrive {
        id: d.drive_id.clone(),
        path: d.path_on_host.clone(),
        read_only: d.is_read_only,
        root: d.is_root_device,
        partuuid: d.partuuid.clone(),
        rate_limiter,
    })
}

fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries the descriptor flags; any integer is safe to pass.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

fn check_net(i: usize, n: &NetConfig, cfg: &VmConfig) -> Result<ValidNet, ConfigError> {
    let f = |name: &str| format!("network-interfaces[{i}].{name}");
    check_device_id(f("iface_id"), &n.iface_id)?;
    let rx_rate_limiter = check_rate_limiter(f("rx_rate_limiter"), &n.rx_rate_limiter)?;
    let tx_rate_limiter = check_rate_limiter(f("tx_rate_limiter"), &n.tx_rate_limiter)?;
    let mac = match &n.guest_mac {
        Some(s) => Some(parse_mac(s).ok_or_else(|| {
            invalid(
                f("guest_mac"),
                s,
                "expected six hex pairs like 06:00:ac:10:00:02",
            )
        })?),
        None => None,
    };
    if let Some(m) = mac {
        if m[0] & 1 != 0 {
            return Err(invalid(
                f("guest_mac"),
                n.guest_mac.as_deref().unwrap_or(""),
                "is a multicast address",
            ));
        }
    }
    let fd = cfg
        .caisson
        .net_fds
        .as_ref()
        .and_then(|m| m.get(&n.iface_id))
        .copied();
    let tap = match fd {
        Some(fd) => {
            if !fd_is_open(fd) {
                return Err(invalid(
                    format!("caisson.net_fds.{}", n.iface_id),
                    fd,
                    "is not an open file descriptor",
                ));
            }
            TapSource::Fd(fd)
        }
        None => {
            let name = &n.host_dev_name;
            if name.is_empty() || name.len() >= IFNAMSIZ || name.contains(['/', ' ', '\0']) {
                return Err(invalid(
                    f("host_dev_name"),
                    name,
                    "must be 1 to 15 characters, without '/' or spaces",
                ));
            }
            TapSource::Name(name.clone())
        }
    };
    Ok(ValidNet {
        id: n.iface_id.clone(),
        tap,
        mac,
        rx_rate_limiter,
        tx_rate_limiter,
    })
}

fn check_vsock(v: &super::VsockConfig) -> Result<ValidVsock, ConfigError> {
    if v.guest_cid < 3 || v.guest_cid == u32::MAX {
        return Err(invalid(
            "vsock.guest_cid".into(),
            v.guest_cid,
            "must be at least 3 (0-2 are reserved) and not 4294967295",
        ));
    }
    let p = &v.uds_path;
    let len = p.as_os_str().len();
    if len == 0 || len + UDS_PORT_SUFFIX >= SUN_PATH_MAX {
        return Err(invalid(
            "vsock.uds_path".into(),
            p.display(),
            format!(
                "must be 1 to {} bytes long",
                SUN_PATH_MAX - UDS_PORT_SUFFIX - 1
            ),
        ));
    }
    let parent = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(invalid(
            "vsock.uds_path".into(),
            p.display(),
            format!("directory {} does not exist", parent.display()),
        ));
    }
    if p.exists() {
        return Err(invalid(
            "vsock.uds_path".into(),
            p.display(),
            "already exists (remove the stale socket)",
        ));
    }
    Ok(ValidVsock {
        cid: v.guest_cid,
        uds_path: p.clone(),
    })
}

/// Checks every device section.
pub fn validate_devices(cfg: &VmConfig) -> Result<VirtioConfig, ConfigError> {
    let mut out = VirtioConfig::default();
    let mut ids = BTreeSet::new();
    for (i, d) in cfg.drives.iter().enumerate() {
        let drive = check_drive(i, d)?;
        if !ids.insert(drive.id.clone()) {
            return Err(invalid(
                format!("drives[{i}].drive_id"),
                &drive.id,
                "is used by another drive",
            ));
        }
        if drive.root && out.drives.iter().any(|d: &ValidDrive| d.root) {
            return Err(invalid(
                format!("drives[{i}].is_root_device"),
                true,
                "only one drive can be the root device",
            ));
        }
        if drive.root {
            out.drives.insert(0, drive);
        } else {
            out.drives.push(drive);
        }
    }
    let mut ifaces = BTreeSet::new();
    let mut taps = BTreeSet::new();
    for (i, n) in cfg.network_interfaces.iter().enumerate() {
        let net = check_net(i, n, cfg)?;
        if !ifaces.insert(net.id.clone()) {
            return Err(invalid(
                format!("network-interfaces[{i}].iface_id"),
                &net.id,
                "is used by another interface",
            ));
        }
        if !taps.insert(net.tap.clone()) {
            return Err(invalid(
                format!("network-interfaces[{i}].host_dev_name"),
                &n.host_dev_name,
                "is used by another interface",
            ));
        }
        out.nets.push(net);
    }
    if let Some(m) = &cfg.caisson.net_fds {
        if let Some(id) = m.keys().find(|k| !ifaces.contains(*k)) {
            return Err(invalid(
                format!("caisson.net_fds.{id}"),
                id,
                "names no network interface",
            ));
        }
    }
    out.vsock = cfg.vsock.as_ref().map(check_vsock).transpose()?;
    if let Some(e) = &cfg.entropy {
        let rate_limiter = check_rate_limiter("entropy.rate_limiter".into(), &e.rate_limiter)?;
        out.entropy = Some(ValidEntropy { rate_limiter });
    }
    let max = crate::arch::x86_64::layout::MAX_VIRTIO_DEVICES;
    if out.count() > max {
        return Err(invalid(
            "drives/network-interfaces/vsock/entropy".into(),
            out.count(),
            format!("at most {max} virtio devices fit the IRQ lines"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn cfg(json: &str) -> VmConfig {
        VmConfig::from_json(json).unwrap()
    }

    fn disk() -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
        f
    }

    fn err(c: &VmConfig) -> String {
        validate_devices(c).unwrap_err().to_string()
    }

    #[test]
    fn firecracker_drive_config_gives_root_words() {
        let d = disk();
        let p = d.path().display();
        let c = cfg(&format!(
            r#"{{"drives": [
              {{"drive_id": "scratch", "path_on_host": "{p}", "is_root_device": false, "is_read_only": false}},
              {{"drive_id": "rootfs", "path_on_host": "{p}", "is_root_device": true, "is_read_only": true,
                "cache_type": "Unsafe", "io_engine": "Sync", "rate_limiter": null}}
            ], "entropy": {{}}}}"#
        ));
        let v = validate_devices(&c).unwrap();
        assert_eq!(v.drives[0].id, "rootfs", "root drive placed first");
        assert_eq!(
            crate::builder::virtio_devices::cmdline_words(&v, true),
            vec![
                "root=/dev/vda",
                "ro",
                "virtio_mmio.device=4K@0xd0000000:5",
                "virtio_mmio.device=4K@0xd0001000:6",
                "virtio_mmio.device=4K@0xd0002000:7",
            ]
        );
    }

    #[test]
    fn firecracker_config_with_all_four_devices() {
        let d = disk();
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"{{
              "boot-source": {{"kernel_image_path": "vmlinux", "boot_args": "console=ttyS0 reboot=k panic=1"}},
              "drives": [{{"drive_id": "rootfs", "path_on_host": "{}", "is_root_device": true,
                          "is_read_only": false, "partuuid": null, "cache_type": "Unsafe",
                          "io_engine": "Sync", "rate_limiter": null, "socket": null}}],
              "machine-config": {{"vcpu_count": 2, "mem_size_mib": 1024, "smt": false}},
              "network-interfaces": [{{"iface_id": "eth0", "guest_mac": "06:00:AC:10:00:02",
                                      "host_dev_name": "tap0", "rx_rate_limiter": null, "tx_rate_limiter": null}}],
              "vsock": {{"vsock_id": "vsock0", "guest_cid": 3, "uds_path": "{}"}},
              "entropy": {{"rate_limiter": null}},
              "logger": null, "metrics": null, "mmds-config": null, "balloon": null, "cpu-config": null
            }}"#,
            d.path().display(),
            dir.path().join("v.sock").display()
        );
        let v = validate_devices(&cfg(&text)).unwrap();
        assert_eq!(v.count(), 4);
        assert_eq!(v.nets[0].mac, Some([6, 0, 0xac, 0x10, 0, 2]));
        assert_eq!(v.nets[0].tap, TapSource::Name("tap0".into()));
        assert_eq!(v.vsock.as_ref().unwrap().cid, 3);
        let words = crate::builder::virtio_devices::cmdline_words(&v, true);
        assert_eq!(&words[..2], &["root=/dev/vda", "rw"]);
        assert_eq!(words[5], "virtio_mmio.device=4K@0xd0003000:8");
        assert_eq!(words.len(), 6);
        // Without the virtio-mmio words (ACPI only), the root words stay.
        assert_eq!(
            crate::builder::virtio_devices::cmdline_words(&v, false),
            vec!["root=/dev/vda", "rw"]
        );
    }

    #[test]
    fn too_many_devices_are_refused() {
        let d = disk();
        let drives: Vec<String> = (0..20)
            .map(|i| {
                format!(
                    r#"{{"drive_id": "d{i}", "path_on_host": "{}", "is_root_device": false}}"#,
                    d.path().display()
                )
            })
            .collect();
        let c = cfg(&format!(r#"{{"drives": [{}]}}"#, drives.join(",")));
        assert!(err(&c).contains("at most 19 virtio devices"), "{}", err(&c));
    }

    #[test]
    fn partuuid_root_and_rw() {
        let d = disk();
        let c = cfg(&format!(
            r#"{{"drives": [{{"drive_id": "r", "path_on_host": "{}", "is_root_device": true, "partuuid": "0eaa91a0-01"}}]}}"#,
            d.path().display()
        ));
        let w = crate::builder::virtio_devices::cmdline_words(&validate_devices(&c).unwrap(), true);
        assert_eq!(&w[..2], &["root=PARTUUID=0eaa91a0-01", "rw"]);
    }

    #[test]
    fn drive_errors_name_field_and_value() {
        let d = disk();
        let p = d.path().display().to_string();
        let c = cfg(
            r#"{"drives": [{"drive_id": "a", "path_on_host": "/nonexistent/disk", "is_root_device": false}]}"#,
        );
        let e = err(&c);
        assert!(
            e.contains("drives[0].path_on_host") && e.contains("/nonexistent/disk"),
            "{e}"
        );
        let c = cfg(&format!(
            r#"{{"drives": [{{"drive_id": "a", "path_on_host": "{p}", "is_root_device": true}},
                            {{"drive_id": "a", "path_on_host": "{p}", "is_root_device": false}}]}}"#
        ));
        assert!(err(&c).contains("drives[1].drive_id: \"a\""), "{}", err(&c));
        let c = cfg(&format!(
            r#"{{"drives": [{{"drive_id": "a", "path_on_host": "{p}", "is_root_device": true}},
                            {{"drive_id": "b", "path_on_host": "{p}", "is_root_device": true}}]}}"#
        ));
        assert!(err(&c).contains("drives[1].is_root_device"), "{}", err(&c));
        let c = cfg(&format!(
            r#"{{"drives": [{{"drive_id": "a b", "path_on_host": "{p}", "is_root_device": false}}]}}"#
        ));
        assert!(
            err(&c).contains("drives[0].drive_id: \"a b\""),
            "{}",
            err(&c)
        );
        let c = cfg(&format!(
            r#"{{"drives": [{{"drive_id": "a", "path_on_host": "{p}", "is_root_device": false, "io_engine": "Async"}}]}}"#
        ));
        assert!(
            err(&c).contains("drives[0].io_engine: \"Async\""),
            "{}",
            err(&c)
        );
        let c = cfg(
            r#"{"drives": [{"drive_id": "a", "path_on_host": "/tmp", "is_root_device": false, "is_read_only": true}]}"#,
        );
        assert!(err(&c).contains("not a regular file"), "{}", err(&c));
    }

    #[test]
    fn mac_syntax() {
        assert_eq!(
            parse_mac("06:00:AC:10:00:02"),
            Some([6, 0, 0xac, 0x10, 0, 2])
        );
        for bad in [
            "06:00:ac:10:00",
            "06:00:ac:10:00:02:03",
            "6:00:ac:10:00:02",
            "zz:00:ac:10:00:02",
            "",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        let c = cfg(
            r#"{"network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:10:00"}]}"#,
        );
        assert!(
            err(&c).contains("network-interfaces[0].guest_mac: \"06:00:ac:10:00\""),
            "{}",
            err(&c)
        );
        let c = cfg(
            r#"{"network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "01:00:ac:10:00:02"}]}"#,
        );
        assert!(err(&c).contains("multicast"), "{}", err(&c));
    }

    #[test]
    fn net_ids_names_and_fds() {
        let c = cfg(
            r#"{"network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0"}, {"iface_id": "eth0", "host_dev_name": "tap1"}]}"#,
        );
        assert!(
            err(&c).contains("network-interfaces[1].iface_id"),
            "{}",
            err(&c)
        );
        let c = cfg(
            r#"{"network-interfaces": [{"iface_id": "eth0", "host_dev_name": "a-name-that-is-too-long"}]}"#,
        );
        assert!(err(&c).contains("host_dev_name"), "{}", err(&c));
        let c = cfg(
            r#"{"network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0"}], "caisson": {"net_fds": {"eth0": 987654}}}"#,
        );
        assert!(
            err(&c).contains("caisson.net_fds.eth0: \"987654\""),
            "{}",
            err(&c)
        );
        let c = cfg(
            r#"{"network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0"}], "caisson": {"net_fds": {"eth1": 0}}}"#,
        );
        assert!(err(&c).contains("caisson.net_fds.eth1"), "{}", err(&c));
        let c = cfg(
            r#"{"network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0"}], "caisson": {"net_fds": {"eth0": 0}}}"#,
        );
        assert_eq!(validate_devices(&c).unwrap().nets[0].tap, TapSource::Fd(0));
    }

    #[test]
    fn vsock_cid_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.sock");
        let c = cfg(&format!(
            r#"{{"vsock": {{"guest_cid": 2, "uds_path": "{}"}}}}"#,
            p.display()
        ));
        assert!(err(&c).contains("vsock.guest_cid: \"2\""), "{}", err(&c));
        let c = cfg(&format!(
            r#"{{"vsock": {{"guest_cid": 3, "uds_path": "{}"}}}}"#,
            p.display()
        ));
        assert_eq!(validate_devices(&c).unwrap().vsock.unwrap().cid, 3);
        let c = cfg(r#"{"vsock": {"guest_cid": 3, "uds_path": "/nonexistent-dir/v.sock"}}"#);
        assert!(err(&c).contains("vsock.uds_path"), "{}", err(&c));
        let long = format!("/tmp/{}", "x".repeat(100));
        let c = cfg(&format!(
            r#"{{"vsock": {{"guest_cid": 3, "uds_path": "{long}"}}}}"#
        ));
        assert!(err(&c).contains("bytes long"), "{}", err(&c));
    }

    #[test]
    fn rate_limiters_are_validated_and_carried() {
        let d = disk();
        let p = d.path().display();
        let c = cfg(&format!(
            r#"{{"drives": [{{"drive_id": "d", "path_on_host": "{p}", "is_root_device": false,
                "rate_limiter": {{"bandwidth": {{"size": 1048576, "one_time_burst": 10, "refill_time": 1000}},
                                  "ops": {{"size": 0, "refill_time": 0}}}}}}],
               "network-interfaces": [{{"iface_id": "eth0", "host_dev_name": "tap0",
                   "rx_rate_limiter": {{}}, "tx_rate_limiter": {{"ops": {{"size": 5, "refill_time": 100}}}}}}],
               "entropy": {{"rate_limiter": {{"bandwidth": {{"size": 1, "refill_time": 1}}}}}}}}"#
        ));
        let v = validate_devices(&c).unwrap();
        let rl = v.drives[0].rate_limiter.unwrap();
        assert_eq!(rl.bandwidth.unwrap().one_time_burst, Some(10));
        // `{}` and a zero size are accepted and limit nothing.
        assert!(!RateLimiterConfig {
            bandwidth: None,
            ops: rl.ops
        }
        .is_limited());
        assert!(!v.nets[0].rx_rate_limiter.unwrap().is_limited());
        assert_eq!(v.nets[0].tx_rate_limiter.unwrap().ops.unwrap().size, 5);
        assert!(v.entropy.unwrap().rate_limiter.unwrap().is_limited());
    }

    #[test]
    fn bad_buckets_are_errors_naming_the_field() {
        let d = disk();
        let p = d.path().display();
        let c = cfg(&format!(
            r#"{{"drives": [{{"drive_id": "d", "path_on_host": "{p}", "is_root_device": false,
                "rate_limiter": {{"ops": {{"size": 10, "refill_time": 0}}}}}}]}}"#
        ));
        assert!(
            err(&c).contains("drives[0].rate_limiter.ops.refill_time"),
            "{}",
            err(&c)
        );
        let c = cfg(
            r#"{"network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                "tx_rate_limiter": {"bandwidth": {"size": 9007199254740993, "refill_time": 1}}}]}"#,
        );
        assert!(
            err(&c).contains("network-interfaces[0].tx_rate_limiter.bandwidth.size"),
            "{}",
            err(&c)
        );
        let c = cfg(
            r#"{"entropy": {"rate_limiter": {"ops": {"size": 1, "one_time_burst": 18446744073709551615, "refill_time": 1}}}}"#,
        );
        assert!(
            err(&c).contains("entropy.rate_limiter.ops.one_time_burst"),
            "{}",
            err(&c)
        );
        // Unknown fields and missing refill_time are schema errors.
        for bad in [
            r#"{"entropy": {"rate_limiter": {"bandwidth": {"size": 1, "refill_time": 1, "burst": 2}}}}"#,
            r#"{"entropy": {"rate_limiter": {"bandwidth": {"size": 1}}}}"#,
            r#"{"entropy": {"rate_limiter": {"iops": {}}}}"#,
        ] {
            assert!(VmConfig::from_json(bad).is_err(), "{bad}");
        }
    }
}
