//! The VM configuration: Firecracker's config-file schema, parsed with serde and
//! validated into a [`ValidConfig`] before anything touches KVM.
//!
//! Nothing in this module knows about KVM: it only turns user input into a checked,
//! self-consistent description of the VM, or a one-line error naming the field and value.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rate_limiter::RateLimiterConfig;

pub mod devices;

use devices::VirtioConfig;

/// Firecracker's default kernel command line, used when `boot_args` is absent.
pub const DEFAULT_BOOT_ARGS: &str =
    "reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux i8042.nomux i8042.dumbkbd swiotlb=noforce";
/// Smallest guest memory accepted, in MiB.
pub const MIN_MEM_MIB: u64 = 16;
/// Largest guest memory accepted, in MiB (256 GiB).
pub const MAX_MEM_MIB: u64 = 256 * 1024;
/// The MP table carries 8-bit APIC ids and the IOAPIC takes the id after the last vCPU.
pub const MAX_VCPUS_MPTABLE: u64 = 254;
/// Linux's x86 `COMMAND_LINE_SIZE`, including the terminating NUL.
pub const MAX_CMDLINE_LEN: usize = 2048;
/// Firecracker's limit on `--id`.
pub const MAX_ID_LEN: usize = 64;
/// Firecracker's default instance id.
pub const DEFAULT_ID: &str = "anonymous-instance";

/// A rejected input: one line naming the field and the value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("boot-source.kernel_image_path: missing (set it in the config file or with --kernel)")]
    MissingKernel,
    #[error("{field}: {path}: {reason}")]
    File {
        field: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "boot-source.kernel_image_path: {path} is not an ELF64 x86-64 image or a bzImage: {reason}"
    )]
    KernelFormat { path: PathBuf, reason: String },
    #[error("machine-config.vcpu_count: {value} is out of range 1..={max}")]
    VcpuCount { value: u64, max: u64 },
    #[error("machine-config.mem_size_mib: {value} is out of range {MIN_MEM_MIB}..={MAX_MEM_MIB}")]
    MemSize { value: u64 },
    #[error("machine-config.{field}: {value} is not supported by Caisson")]
    MachineUnsupported { field: &'static str, value: String },
    #[error("boot-source.boot_args: {reason}")]
    Cmdline { reason: String },
    #[error("{key}: not supported by Caisson yet (the value must be null or absent)")]
    Unsupported { key: &'static str },
    #[error("{field}: {value:?} is invalid: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{field}: {value:?} is invalid: {reason}")]
    Device {
        field: String,
        value: String,
        reason: String,
    },
    #[error("cannot query KVM for the vCPU limit: {0}")]
    KvmQuery(String),
}

/// `boot-source`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BootSourceConfig {
    pub kernel_image_path: Option<PathBuf>,
    #[serde(default)]
    pub initrd_path: Option<PathBuf>,
    #[serde(default)]
    pub boot_args: Option<String>,
}

/// Firecracker's `huge_pages` values.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum HugePages {
    #[default]
    None,
    #[serde(rename = "2M")]
    Hugetlbfs2M,
}

/// `machine-config`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    pub vcpu_count: Option<u64>,
    pub mem_size_mib: Option<u64>,
    #[serde(default)]
    pub smt: bool,
    #[serde(default)]
    pub track_dirty_pages: bool,
    #[serde(default)]
    pub huge_pages: HugePages,
    #[serde(default)]
    pub cpu_template: Option<serde_json::Value>,
}

/// `drives[]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DriveConfig {
    pub drive_id: String,
    pub path_on_host: PathBuf,
    pub is_root_device: bool,
    #[serde(default)]
    pub is_read_only: bool,
    #[serde(default)]
    pub partuuid: Option<String>,
    #[serde(default)]
    pub cache_type: Option<String>,
    #[serde(default)]
    pub io_engine: Option<String>,
    #[serde(default)]
    pub rate_limiter: Option<RateLimiterConfig>,
    #[serde(default)]
    pub socket: Option<PathBuf>,
}

/// `network-interfaces[]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    pub iface_id: String,
    pub host_dev_name: String,
    #[serde(default)]
    pub guest_mac: Option<String>,
    #[serde(default)]
    pub rx_rate_limiter: Option<RateLimiterConfig>,
    #[serde(default)]
    pub tx_rate_limiter: Option<RateLimiterConfig>,
}

/// `vsock`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VsockConfig {
    #[serde(default)]
    pub vsock_id: Option<String>,
    pub guest_cid: u32,
    pub uds_path: PathBuf,
}

/// `entropy`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EntropyConfig {
    #[serde(default)]
    pub rate_limiter: Option<RateLimiterConfig>,
}

/// `logger`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoggerConfig {
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub show_level: Option<bool>,
    #[serde(default)]
    pub show_log_origin: Option<bool>,
    #[serde(default)]
    pub module: Option<String>,
}

/// `metrics` (Firecracker's `PUT /metrics` body): a file or named pipe.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub metrics_path: PathBuf,
}

/// Caisson's own settings, under the top-level key `caisson`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CaissonConfig {
    /// `"stdout"`, `"none"`, or a file path the serial output is appended to.
    #[serde(default)]
    pub serial: Option<String>,
    /// Bytes per `refill_time` the guest may write to the serial output; more
    /// are dropped (Firecracker's `PUT /serial` `rate_limiter`).
    #[serde(default)]
    pub serial_rate_limiter: Option<crate::rate_limiter::TokenBucketConfig>,
    /// Tap fds inherited from the jailer, by `iface_id` (see [`devices`]).
    #[serde(default)]
    pub net_fds: Option<std::collections::BTreeMap<String, i32>>,
    /// Whether the command line gets `virtio_mmio.device=` words (default true).
    /// With `false` the kernel must find the devices through ACPI alone.
    #[serde(default, deserialize_with = "virtio_cmdline_setting")]
    pub virtio_cmdline: Option<bool>,
}

/// `caisson.virtio_cmdline`: `true`, `false` or null (the default). serde's own
/// type error would not name the field, so the message does.
fn virtio_cmdline_setting<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<bool>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Ok(Some(b)),
        serde_json::Value::Null => Ok(None),
        other => Err(serde::de::Error::custom(format!(
            "caisson.virtio_cmdline: {other} is invalid: expected true or false"
        ))),
    }
}

/// The whole config file, in Firecracker's schema.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    #[serde(rename = "boot-source", default)]
    pub boot_source: BootSourceConfig,
    #[serde(rename = "machine-config", default)]
    pub machine_config: MachineConfig,
    #[serde(default)]
    pub drives: Vec<DriveConfig>,
    #[serde(rename = "network-interfaces", default)]
    pub network_interfaces: Vec<NetConfig>,
    #[serde(default)]
    pub vsock: Option<VsockConfig>,
    #[serde(default)]
    pub entropy: Option<EntropyConfig>,
    #[serde(default)]
    pub logger: Option<LoggerConfig>,
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    #[serde(rename = "cpu-config", default)]
    pub cpu_config: Option<serde_json::Value>,
    #[serde(default)]
    pub balloon: Option<serde_json::Value>,
    #[serde(rename = "mmds-config", default)]
    pub mmds_config: Option<serde_json::Value>,
    #[serde(default)]
    pub caisson: CaissonConfig,
    /// Caisson: restore this snapshot instead of booting (the body of
    /// `PUT /snapshot/load`); the rest of the file describes this process's
    /// devices, which must be the snapshot's.
    #[serde(
        rename = "snapshot-load",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_load: Option<crate::snapshot::params::LoadSnapshotConfig>,
}

impl VmConfig {
    /// Parses a config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses config text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Where the guest's serial output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialSink {
    Stdout,
    File(PathBuf),
    None,
}

impl SerialSink {
    /// Parses `stdout`, `none` or a path.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        match value {
            "stdout" => Ok(Self::Stdout),
            "none" => Ok(Self::None),
            "" => Err(ConfigError::Invalid {
                field: "serial",
                value: value.to_string(),
                reason: "expected stdout, none or a file path",
            }),
            path => Ok(Self::File(PathBuf::from(path))),
        }
    }
}

/// The kernel's image format, found by reading its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    Elf,
    BzImage,
}

/// Where the kernel bytes come from.
#[derive(Debug, Clone)]
pub enum KernelSource {
    File(PathBuf),
    /// An image built into the binary (`caisson demo`).
    Embedded(&'static [u8]),
    /// None: the VM is restored from a snapshot, its kernel in guest memory.
    Restored,
}

/// A config that passed every check; the builder takes only this.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub id: String,
    pub kernel: KernelSource,
    pub kernel_format: KernelFormat,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub vcpu_count: u8,
    pub mem_size_mib: u64,
    pub serial: SerialSink,
    /// The serial output's rate limit, when limited.
    pub serial_limit: Option<crate::rate_limiter::TokenBucketConfig>,
    /// The virtio devices; the builder adds their command-line words
    /// (`builder::kernel_cmdline`).
    pub virtio: VirtioConfig,
    /// `caisson.virtio_cmdline`: whether the builder adds a
    /// `virtio_mmio.device=` word per device.
    pub virtio_cmdline: bool,
    /// `metrics.metrics_path`: a file or FIFO in an existing directory.
    pub metrics_path: Option<PathBuf>,
    /// `machine-config.track_dirty_pages`: KVM logs the guest's writes, for
    /// diff snapshots.
    pub track_dirty_pages: bool,
}

/// What [`VmConfig::validate_rest`] checked.
struct Checked {
    initrd: Option<PathBuf>,
    cmdline: String,
    vcpu_count: u8,
    mem_size_mib: u64,
    serial: SerialSink,
    serial_limit: Option<crate::rate_limiter::TokenBucketConfig>,
    virtio: VirtioConfig,
    virtio_cmdline: bool,
    metrics_path: Option<PathBuf>,
    track_dirty_pages: bool,
}

impl Checked {
    /// The valid config these checks and a checked kernel make.
    fn with_kernel(
        self,
        id: &str,
        kernel: KernelSource,
        kernel_format: KernelFormat,
    ) -> ValidConfig {
        ValidConfig {
            id: id.to_string(),
            kernel,
            kernel_format,
            initrd: self.initrd,
            cmdline: self.cmdline,
            vcpu_count: self.vcpu_count,
            mem_size_mib: self.mem_size_mib,
            serial: self.serial,
            serial_limit: self.serial_limit,
            virtio: self.virtio,
            virtio_cmdline: self.virtio_cmdline,
            metrics_path: self.metrics_path,
            track_dirty_pages: self.track_dirty_pages,
        }
    }
}

/// Values from the command line that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
    pub vcpus: Option<u64>,
    pub mem_mib: Option<u64>,
    pub serial: Option<String>,
}

impl VmConfig {
    /// Applies command-line overrides: flags win over the file.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(k) = &o.kernel {
            self.boot_source.kernel_image_path = Some(k.clone());
        }
        if let Some(i) = &o.initrd {
            self.boot_source.initrd_path = Some(i.clone());
        }
        if let Some(c) = &o.cmdline {
            self.boot_source.boot_args = Some(c.clone());
        }
        if let Some(v) = o.vcpus {
            self.machine_config.vcpu_count = Some(v);
        }
        if let Some(m) = o.mem_mib {
            self.machine_config.mem_size_mib = Some(m);
        }
        if let Some(s) = &o.serial {
            self.caisson.serial = Some(s.clone());
        }
    }

    /// Checks everything, given the vCPU limit (from KVM) and the instance id.
    pub fn validate(&self, id: &str, max_vcpus: u64) -> Result<ValidConfig, ConfigError> {
        let kernel_path = self
            .boot_source
            .kernel_image_path
            .as_ref()
            .ok_or(ConfigError::MissingKernel)?;
        let rest = self.validate_rest(id, max_vcpus)?;
        let kernel_format = check_kernel_file(kernel_path)?;
        Ok(rest.with_kernel(id, KernelSource::File(kernel_path.clone()), kernel_format))
    }

    /// As [`VmConfig::validate`], for a kernel image built into the binary
    /// (`caisson demo`), which takes the place of `boot-source.kernel_image_path`.
    pub fn validate_embedded(
        &self,
        id: &str,
        max_vcpus: u64,
        image: &'static [u8],
    ) -> Result<ValidConfig, ConfigError> {
        let rest = self.validate_rest(id, max_vcpus)?;
        let head = image.get(..1024).unwrap_or(image);
        let kernel_format = kernel_format(head).map_err(|reason| ConfigError::KernelFormat {
            path: PathBuf::from("<embedded kernel>"),
            reason,
        })?;
        Ok(rest.with_kernel(id, KernelSource::Embedded(image), kernel_format))
    }

    /// As [`VmConfig::validate`], for a VM restored from a snapshot: no kernel
    /// is read (it is in the snapshot's memory).
    pub fn validate_restore(&self, id: &str, max_vcpus: u64) -> Result<ValidConfig, ConfigError> {
        let rest = self.validate_rest(id, max_vcpus)?;
        Ok(rest.with_kernel(id, KernelSource::Restored, KernelFormat::Elf))
    }

    /// Checks what is there so far (the API builds a config piece by piece): as
    /// [`VmConfig::validate`], except that the kernel may still be missing.
    pub fn check(&self, id: &str, max_vcpus: u64) -> Result<(), ConfigError> {
        if let Some(k) = &self.boot_source.kernel_image_path {
            check_kernel_file(k)?;
        }
        self.validate_rest(id, max_vcpus).map(drop)
    }

    /// Every check but the kernel's.
    fn validate_rest(&self, id: &str, max_vcpus: u64) -> Result<Checked, ConfigError> {
        validate_id(id)?;
        self.reject_unsupported()?;
        let initrd = match &self.boot_source.initrd_path {
            Some(p) => {
                check_readable_file("boot-source.initrd_path", p)?;
                Some(p.clone())
            }
            None => None,
        };
        let cmdline = self
            .boot_source
            .boot_args
            .clone()
            .unwrap_or_else(|| DEFAULT_BOOT_ARGS.to_string());
        check_cmdline(&cmdline)?;
        let virtio = devices::validate_devices(self)?;

        let max = max_vcpus.min(MAX_VCPUS_MPTABLE);
        let vcpus = self.machine_config.vcpu_count.unwrap_or(1);
        if vcpus == 0 || vcpus > max {
            return Err(ConfigError::VcpuCount { value: vcpus, max });
        }
        let mem = self.machine_config.mem_size_mib.unwrap_or(128);
        if !(MIN_MEM_MIB..=MAX_MEM_MIB).contains(&mem) {
            return Err(ConfigError::MemSize { value: mem });
        }
        let serial = SerialSink::parse(self.caisson.serial.as_deref().unwrap_or("stdout"))?;
        if let SerialSink::File(p) = &serial {
            check_output_file("caisson.serial", p)?;
        }
        let serial_limit = match &self.caisson.serial_rate_limiter {
            Some(b) => {
                b.validate("caisson.serial_rate_limiter")
                    .map_err(|e| ConfigError::Device {
                        field: "caisson.serial_rate_limiter".into(),
                        value: format!("{b:?}"),
                        reason: e.to_string(),
                    })?;
                b.is_limited().then_some(*b)
            }
            None => None,
        };
        let metrics_path = self.metrics.as_ref().map(|m| m.metrics_path.clone());
        if let Some(p) = &metrics_path {
            check_metrics_path(p)?;
        }
        Ok(Checked {
            initrd,
            cmdline,
            vcpu_count: u8::try_from(vcpus)
                .map_err(|_| ConfigError::VcpuCount { value: vcpus, max })?,
            mem_size_mib: mem,
            serial,
            serial_limit,
            virtio,
            virtio_cmdline: self.caisson.virtio_cmdline.unwrap_or(true),
            metrics_path,
            track_dirty_pages: self.machine_config.track_dirty_pages,
        })
    }

    /// Keys of Firecracker's schema that Caisson does not implement yet must be absent.
    fn reject_unsupported(&self) -> Result<(), ConfigError> {
        let m = &self.machine_config;
        if m.smt {
            return Err(ConfigError::MachineUnsupported {
                field: "smt",
                value: "true".into(),
            });
        }
        if m.huge_pages != HugePages::None {
            return Err(ConfigError::MachineUnsupported {
                field: "huge_pages",
                value: "2M".into(),
            });
        }
        if let Some(t) = &m.cpu_template {
            if !(t.is_null() || t.as_str() == Some("None")) {
                return Err(ConfigError::MachineUnsupported {
                    field: "cpu_template",
                    value: t.to_string(),
                });
            }
        }
        let unsupported: [(&'static str, bool); 3] = [
            (
                "cpu-config",
                self.cpu_config.as_ref().is_some_and(|v| !v.is_null()),
            ),
            (
                "balloon",
                self.balloon.as_ref().is_some_and(|v| !v.is_null()),
            ),
            (
                "mmds-config",
                self.mmds_config.as_ref().is_some_and(|v| !v.is_null()),
            ),
        ];
        match unsupported.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(ConfigError::Unsupported { key }),
            None => Ok(()),
        }
    }
}

/// Firecracker's rule for instance ids: alphanumerics and `-`, 1 to 64 characters.
pub fn validate_id(id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            field: "--id",
            value: id.to_string(),
            reason: "must be 1 to 64 characters of [A-Za-z0-9-]",
        })
    }
}

fn check_cmdline(cmdline: &str) -> Result<(), ConfigError> {
    // The NUL terminator must fit too.
    if cmdline.len() >= MAX_CMDLINE_LEN {
        return Err(ConfigError::Cmdline {
            reason: format!(
                "{} bytes is too long (at most {} bytes)",
                cmdline.len(),
                MAX_CMDLINE_LEN - 1
            ),
        });
    }
    if let Some(c) = cmdline
        .chars()
        .find(|c| !c.is_ascii() || c.is_ascii_control())
    {
        return Err(ConfigError::Cmdline {
            reason: format!("contains the character {c:?}; only printable ASCII is allowed"),
        });
    }
    Ok(())
}

/// Opens `path` for reading and checks that it is a regular file.
pub fn check_readable_file(field: &'static str, path: &Path) -> Result<File, ConfigError> {
    let err = |reason: String| ConfigError::File {
        field,
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| err(e.to_string()))?;
    let meta = file.metadata().map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    Ok(file)
}

fn check_output_file(field: &'static str, path: &Path) -> Result<(), ConfigError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(|_| ())
        .map_err(|e| ConfigError::File {
            field,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// `metrics.metrics_path` names a file or FIFO, existing or not, in an existing
/// directory. It is not opened here: opening and closing a FIFO would hand its
/// reader an end of file. The sink opens it, once.
fn check_metrics_path(path: &Path) -> Result<(), ConfigError> {
    let err = |reason: String| ConfigError::File {
        field: "metrics.metrics_path",
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(err("is a directory".into())),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            match std::fs::metadata(parent) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => Err(err(format!("{} is not a directory", parent.display()))),
                Err(e) => Err(err(format!("directory {}: {e}", parent.display()))),
            }
        }
        Err(e) => Err(err(e.to_string())),
    }
}

fn check_kernel_file(path: &Path) -> Result<KernelFormat, ConfigError> {
    let mut file = check_readable_file("boot-source.kernel_image_path", path)?;
    let mut head = Vec::with_capacity(1024);
    file.by_ref()
        .take(1024)
        .read_to_end(&mut head)
        .map_err(|e| ConfigError::File {
            field: "boot-source.kernel_image_path",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    kernel_format(&head).map_err(|reason| ConfigError::KernelFormat {
        path: path.to_path_buf(),
        reason,
    })
}

/// Recognises an ELF64 x86-64 image or a bzImage from its first bytes.
pub fn kernel_format(head: &[u8]) -> Result<KernelFormat, String> {
    const EM_X86_64: u16 = 62;
    if head.starts_with(b"\x7fELF") {
        let class = head.get(4).copied().unwrap_or(0);
        if class != 2 {
            return Err(format!("ELF class {class} is not ELF64"));
        }
        let data = head.get(5).copied().unwrap_or(0);
        if data != 1 {
            return Err(format!("ELF data encoding {data} is not little-endian"));
        }
        let machine = head
            .get(18..20)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .unwrap_or(0);
        if machine != EM_X86_64 {
            return Err(format!("ELF machine {machine} is not x86-64 ({EM_X86_64})"));
        }
        return Ok(KernelFormat::Elf);
    }
    // bzImage: the boot sector signature and the "HdrS" setup header magic.
    let boot_flag = head.get(0x1fe..0x200);
    let magic = head.get(0x202..0x206);
    if boot_flag == Some(&[0x55, 0xaa][..]) && magic == Some(&b"HdrS"[..]) {
        return Ok(KernelFormat::BzImage);
    }
    Err("no ELF magic and no bzImage setup header".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firecracker_example_config_parses() {
        let text = r#"{
          "boot-source": {"kernel_image_path": "vmlinux", "boot_args": "console=ttyS0", "initrd_path": null},
          "drives": [],
          "machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "smt": false, "track_dirty_pages": false, "huge_pages": "None"},
          "cpu-config": null, "balloon": null, "network-interfaces": [], "vsock": null,
          "logger": null, "metrics": null, "mmds-config": null, "entropy": null
        }"#;
        let cfg = VmConfig::from_json(text).expect("parses");
        assert_eq!(cfg.machine_config.vcpu_count, Some(2));
        assert_eq!(cfg.boot_source.boot_args.as_deref(), Some("console=ttyS0"));
    }

    #[test]
    fn unknown_field_is_named() {
        let err =
            VmConfig::from_json(r#"{"machine-config": {"vcpus": 2}}"#).expect_err("unknown field");
        assert!(err.to_string().contains("vcpus"), "{err}");
    }

    #[test]
    fn kernel_format_detection() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18] = 62;
        assert_eq!(kernel_format(&elf), Ok(KernelFormat::Elf));
        elf[4] = 1;
        assert!(kernel_format(&elf).expect_err("elf32").contains("ELF64"));
        elf[4] = 2;
        elf[18] = 40;
        assert!(kernel_format(&elf).expect_err("arm").contains("machine 40"));
        let mut bz = vec![0u8; 1024];
        bz[0x1fe] = 0x55;
        bz[0x1ff] = 0xaa;
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(kernel_format(&bz), Ok(KernelFormat::BzImage));
        assert!(kernel_format(b"hello").is_err());
        assert!(kernel_format(&[]).is_err());
    }

    #[test]
    fn ids_follow_firecracker_rules() {
        assert!(validate_id("vm-1").is_ok());
        assert!(validate_id("").is_err());
        assert!(validate_id("a/b").is_err());
        assert!(validate_id(&"a".repeat(65)).is_err());
    }

    #[test]
    fn virtio_cmdline_setting_drops_the_mmio_words() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kernel = dir.path().join("vmlinux");
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[18] = 62;
        std::fs::write(&kernel, &elf).expect("kernel");
        let cmdline = |caisson: &str| {
            let text = format!(
                r#"{{"boot-source": {{"kernel_image_path": {:?}, "boot_args": "console=ttyS0"}},
                    "entropy": {{}}, "caisson": {caisson}}}"#,
                kernel.display().to_string()
            );
            let cfg = VmConfig::from_json(&text).expect("parses");
            crate::builder::kernel_cmdline(&cfg.validate("vm", 1).expect("valid"))
        };
        let with = "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5";
        assert_eq!(cmdline("{}"), with);
        assert_eq!(cmdline(r#"{"virtio_cmdline": null}"#), with);
        assert_eq!(cmdline(r#"{"virtio_cmdline": true}"#), with);
        assert_eq!(cmdline(r#"{"virtio_cmdline": false}"#), "console=ttyS0");
        for bad in ["\"no\"", "0", "[]"] {
            let err =
                VmConfig::from_json(&format!(r#"{{"caisson": {{"virtio_cmdline": {bad}}}}}"#))
                    .expect_err("not a boolean")
                    .to_string();
            assert!(
                err.contains("caisson.virtio_cmdline") && err.contains(bad),
                "{err}"
            );
        }
    }

    #[test]
    fn metrics_follow_firecracker_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kernel = dir.path().join("vmlinux");
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[18] = 62;
        std::fs::write(&kernel, &elf).expect("kernel");
        let validate = |metrics: &str| {
            let text = format!(
                r#"{{"boot-source": {{"kernel_image_path": {:?}}}, "metrics": {metrics}}}"#,
                kernel.display().to_string()
            );
            VmConfig::from_json(&text)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate("vm", 1).map_err(|e| e.to_string()))
        };
        let path = dir.path().join("metrics.json");
        let ok = validate(&format!(
            r#"{{"metrics_path": {:?}}}"#,
            path.display().to_string()
        ))
        .expect("valid");
        assert_eq!(ok.metrics_path.as_deref(), Some(path.as_path()));
        assert!(validate("null").expect("valid").metrics_path.is_none());
        for (bad, named) in [
            (
                r#"{"metrics_path": "/nonexistent-dir/m.json"}"#.to_string(),
                "/nonexistent-dir/m.json",
            ),
            (
                format!(
                    r#"{{"metrics_path": {:?}}}"#,
                    dir.path().display().to_string()
                ),
                "metrics.metrics_path",
            ),
            (r#"{}"#.to_string(), "metrics_path"),
            (r#"{"metrics_path": "m", "level": 1}"#.to_string(), "level"),
        ] {
            let err = validate(&bad).expect_err(&bad);
            assert!(err.contains(named), "{bad}: {err}");
        }
    }

    #[test]
    fn cmdline_checks() {
        assert!(check_cmdline("console=ttyS0").is_ok());
        assert!(check_cmdline(&"a".repeat(MAX_CMDLINE_LEN)).is_err());
        assert!(check_cmdline("a\nb").is_err());
    }
}
