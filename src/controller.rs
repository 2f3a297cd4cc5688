//! The lifecycle state machine that both the config file and the API drive.
//!
//! Each request is a typed [`VmmAction`]; the config file is turned into the
//! same actions ([`actions_from_config`]), so the two paths cannot drift apart.
//! Before `InstanceStart` the actions build up a [`VmConfig`], checked as they
//! arrive; `InstanceStart` validates it and runs the one ordered build. After
//! that only the runtime actions are accepted, each on Firecracker's rules.

use std::path::PathBuf;

use serde::Serialize;

use crate::config::{
    BootSourceConfig, CaissonConfig, DriveConfig, EntropyConfig, LoggerConfig, MachineConfig,
    NetConfig, VmConfig, VsockConfig,
};
use crate::devices::virtio::{block::Disk, device_type, DeviceUpdate};
use crate::rate_limiter::{RateLimiterConfig, RateLimiterPatch};
use crate::snapshot::params::{CreateSnapshotParams, LoadSnapshotParams};
use crate::vm::{RunState, Vm};

/// Firecracker's message for a pre-boot action sent after boot.
pub const NOT_AFTER_BOOT: &str =
    "The requested operation is not supported after starting the microVM.";
/// Firecracker's message for a runtime action sent before boot.
pub const NOT_BEFORE_BOOT: &str =
    "The requested operation is not supported before starting the microVM.";

/// `PATCH /machine-config`: only the given fields change.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfigUpdate {
    pub vcpu_count: Option<u64>,
    pub mem_size_mib: Option<u64>,
    pub smt: Option<bool>,
    pub track_dirty_pages: Option<bool>,
    pub huge_pages: Option<crate::config::HugePages>,
    pub cpu_template: Option<serde_json::Value>,
}

/// `PATCH /drives/{id}` (Firecracker's `PartialDrive`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriveUpdate {
    pub drive_id: String,
    pub path_on_host: Option<PathBuf>,
    pub rate_limiter: Option<RateLimiterConfig>,
}

/// `PATCH /network-interfaces/{id}` (Firecracker's `PartialNetworkInterface`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetUpdate {
    pub iface_id: String,
    pub rx_rate_limiter: Option<RateLimiterConfig>,
    pub tx_rate_limiter: Option<RateLimiterConfig>,
}

/// Everything the VMM can be asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum VmmAction {
    ConfigureBootSource(BootSourceConfig),
    ConfigureLogger(LoggerConfig),
    ConfigureMetrics(PathBuf),
    /// `PUT /serial`: where the guest's serial output goes, and its byte budget.
    ConfigureSerial {
        path: PathBuf,
        rate_limiter: Option<crate::rate_limiter::TokenBucketConfig>,
    },
    /// Caisson's own config-file section (serial, inherited taps, ...).
    ConfigureCaisson(CaissonConfig),
    SetMachineConfig(MachineConfig),
    UpdateMachineConfig(MachineConfigUpdate),
    InsertBlockDevice(DriveConfig),
    InsertNetworkDevice(NetConfig),
    SetVsockDevice(VsockConfig),
    SetEntropyDevice(EntropyConfig),
    StartMicroVm,
    SendCtrlAltDel,
    FlushMetrics,
    Pause,
    Resume,
    UpdateBlockDevice(DriveUpdate),
    UpdateNetworkInterface(NetUpdate),
    GetInstanceInfo,
    GetVersion,
    GetMachineConfig,
    GetFullVmConfig,
    /// `PUT /snapshot/create`, on a paused VM.
    CreateSnapshot(CreateSnapshotParams),
    /// `PUT /snapshot/load` (or the config file's `snapshot-load`), on a
    /// fresh process.
    LoadSnapshot(LoadSnapshotParams),
    /// A Firecracker endpoint Caisson does not have yet (MMDS, balloon, ...).
    NotSupported(&'static str),
    /// A config-file entry that cannot become an action (the message says why).
    Invalid(String),
}

impl VmmAction {
    /// Whether the action is one of those only accepted after boot.
    fn runtime_only(&self) -> bool {
        matches!(
            self,
            Self::SendCtrlAltDel
                | Self::FlushMetrics
                | Self::Pause
                | Self::Resume
                | Self::UpdateBlockDevice(_)
                | Self::UpdateNetworkInterface(_)
                | Self::CreateSnapshot(_)
        )
    }
}

/// `GET /` (Firecracker's `InstanceInfo`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceInfo {
    pub app_name: String,
    pub id: String,
    pub state: String,
    pub vmm_version: String,
}

/// What a successful action answers.
#[derive(Debug, Clone, PartialEq)]
pub enum VmmData {
    Empty,
    InstanceInfo(InstanceInfo),
    Version(String),
    MachineConfig(serde_json::Value),
    FullVmConfig(serde_json::Value),
}

/// A refused action; the message is the API's `fault_message`.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{NOT_AFTER_BOOT}")]
    NotAfterBoot,
    #[error("{NOT_BEFORE_BOOT}")]
    NotBeforeBoot,
    #[error("{0} is not supported by Caisson yet.")]
    NotSupported(&'static str),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Logger(#[from] crate::logger::LoggerError),
    #[error("machine-config: {0} is required in a PUT (use PATCH to change single fields)")]
    MachineConfigMissing(&'static str),
    #[error("{0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("cannot start the microVM: {0}")]
    Start(#[from] crate::builder::BuildError),
    #[error("{0}")]
    Vm(#[from] crate::vm::VmError),
    #[error("{what}: {reason}")]
    Update { what: String, reason: String },
    #[error("Loading a microVM snapshot not allowed after configuring boot-specific resources.")]
    LoadNotAllowed,
    #[error("Create snapshot error: Cannot save the microVM state: Operation not allowed: save/restore unavailable while running")]
    SnapshotNotPaused,
    #[error("Create snapshot error: {0}")]
    CreateSnapshot(crate::snapshot::SnapshotError),
    #[error("Failed to restore from snapshot: {0}")]
    LoadSnapshot(String),
    #[error("{0}")]
    Invalid(String),
}

pub type ActionResult = Result<VmmData, ActionError>;

/// The actions a config file stands for, in the order Firecracker applies them.
pub fn actions_from_config(cfg: VmConfig) -> Vec<VmmAction> {
    let mut out = Vec::new();
    if let Some(l) = cfg.logger.clone() {
        out.push(VmmAction::ConfigureLogger(l));
    }
    // A restore: the logger and metrics, then the load with the rest of the
    // file as this process's devices.
    if let Some(load) = cfg.snapshot_load.clone() {
        if let Some(m) = cfg.metrics.clone() {
            out.push(VmmAction::ConfigureMetrics(m.metrics_path));
        }
        match load.into_params() {
            Ok((mut params, _)) => {
                let mut rest = cfg;
                rest.logger = None;
                rest.snapshot_load = None;
                params.config = Some(Box::new(rest));
                out.push(VmmAction::LoadSnapshot(params));
            }
            Err(e) => out.push(VmmAction::Invalid(format!("snapshot-load: {e}"))),
        }
        return out;
    }
    // The file (and the flags over it) may give single fields, as before the API.
    if cfg.machine_config != MachineConfig::default() {
        let m = cfg.machine_config;
        out.push(VmmAction::UpdateMachineConfig(MachineConfigUpdate {
            vcpu_count: m.vcpu_count,
            mem_size_mib: m.mem_size_mib,
            smt: Some(m.smt),
            track_dirty_pages: Some(m.track_dirty_pages),
            huge_pages: Some(m.huge_pages),
            cpu_template: m.cpu_template,
        }));
    }
    out.push(VmmAction::ConfigureBootSource(cfg.boot_source));
    out.extend(cfg.drives.into_iter().map(VmmAction::InsertBlockDevice));
    out.extend(
        cfg.network_interfaces
            .into_iter()
            .map(VmmAction::InsertNetworkDevice),
    );
    if let Some(v) = cfg.vsock {
        out.push(VmmAction::SetVsockDevice(v));
    }
    if let Some(e) = cfg.entropy {
        out.push(VmmAction::SetEntropyDevice(e));
    }
    if let Some(m) = cfg.metrics {
        out.push(VmmAction::ConfigureMetrics(m.metrics_path));
    }
    // After the interfaces: `net_fds` must name configured ones.
    out.push(VmmAction::ConfigureCaisson(cfg.caisson));
    // Keys Caisson does not implement are refused by name.
    for (key, v) in [
        ("cpu-config", cfg.cpu_config),
        ("balloon", cfg.balloon),
        ("mmds-config", cfg.mmds_config),
    ] {
        if v.is_some_and(|v| !v.is_null()) {
            out.push(VmmAction::NotSupported(key));
        }
    }
    out
}

/// The controller: the resources configured so far and, once started, the rules
/// for a running VM.
pub struct Controller {
    id: String,
    max_vcpus: u64,
    resources: VmConfig,
    seccomp: Option<crate::seccomp::Filters>,
    started: bool,
}

impl Controller {
    pub fn new(id: &str, max_vcpus: u64, seccomp: Option<crate::seccomp::Filters>) -> Self {
        Self {
            id: id.to_string(),
            max_vcpus,
            resources: VmConfig::default(),
            seccomp,
            started: false,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The configuration as built so far (`GET /vm/config`).
    pub fn resources(&self) -> &VmConfig {
        &self.resources
    }

    fn instance_info(&self, state: &str) -> InstanceInfo {
        InstanceInfo {
            app_name: "Caisson".into(),
            id: self.id.clone(),
            state: state.into(),
            vmm_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn machine_config(&self) -> serde_json::Value {
        let m = &self.resources.machine_config;
        serde_json::json!({
            "vcpu_count": m.vcpu_count.unwrap_or(1),
            "mem_size_mib": m.mem_size_mib.unwrap_or(128),
            "smt": m.smt,
            "track_dirty_pages": m.track_dirty_pages,
            "huge_pages": m.huge_pages,
        })
    }

    /// `GET /vm/config`: the resources in the config-file schema, with the
    /// machine's defaults filled in as Firecracker reports them.
    fn full_config(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.resources).unwrap_or(serde_json::Value::Null);
        if let Some(o) = v.as_object_mut() {
            o.insert("machine-config".into(), self.machine_config());
            if self.resources.caisson == CaissonConfig::default() {
                o.remove("caisson");
            }
        }
        v
    }

    /// Applies `change` to a copy of the resources and keeps it only if what is
    /// configured so far still passes every check.
    fn configure(&mut self, change: impl FnOnce(&mut VmConfig)) -> ActionResult {
        let mut next = self.resources.clone();
        change(&mut next);
        next.check(&self.id, self.max_vcpus)?;
        self.resources = next;
        Ok(VmmData::Empty)
    }

    /// Handles an action before boot. `InstanceStart` returns the running VM.
    pub fn handle_preboot(&mut self, action: VmmAction) -> (ActionResult, Option<Vm>) {
        use VmmAction as A;
        if self.started {
            return (Err(ActionError::NotAfterBoot), None);
        }
        if action.runtime_only() {
            return (Err(ActionError::NotBeforeBoot), None);
        }
        let result =
            match action {
                A::StartMicroVm => {
                    return match self.start() {
                        Ok(vm) => (Ok(VmmData::Empty), Some(vm)),
                        Err(e) => (Err(e), None),
                    }
                }
                A::GetInstanceInfo => Ok(VmmData::InstanceInfo(self.instance_info("Not started"))),
                A::ConfigureLogger(l) => self.configure_logger(&l),
                A::ConfigureMetrics(path) => self.configure_metrics(path),
                A::ConfigureSerial { path, rate_limiter } => self.configure(|c| {
                    c.caisson.serial = Some(path.to_string_lossy().into_owned());
                    c.caisson.serial_rate_limiter = rate_limiter;
                }),
                A::ConfigureCaisson(caisson) => self.configure(|c| c.caisson = caisson),
                A::ConfigureBootSource(b) => self.configure(|c| c.boot_source = b),
                A::SetMachineConfig(m) => {
                    if m.vcpu_count.is_none() {
                        return (Err(ActionError::MachineConfigMissing("vcpu_count")), None);
                    }
                    if m.mem_size_mib.is_none() {
                        return (Err(ActionError::MachineConfigMissing("mem_size_mib")), None);
                    }
                    self.configure(|c| c.machine_config = m)
                }
                A::UpdateMachineConfig(u) => self.configure(|c| apply_machine_update(c, u)),
                A::InsertBlockDevice(d) => self.configure(|c| {
                    match c.drives.iter_mut().find(|x| x.drive_id == d.drive_id) {
                        Some(x) => *x = d,
                        None => c.drives.push(d),
                    }
                }),
                A::InsertNetworkDevice(n) => self.configure(|c| {
                    match c
                        .network_interfaces
                        .iter_mut()
                        .find(|x| x.iface_id == n.iface_id)
                    {
                        Some(x) => *x = n,
                        None => c.network_interfaces.push(n),
                    }
                }),
                A::SetVsockDevice(v) => self.configure(|c| c.vsock = Some(v)),
                A::SetEntropyDevice(e) => self.configure(|c| c.entropy = Some(e)),
                A::LoadSnapshot(params) => {
                    return match self.load_snapshot(params) {
                        Ok(vm) => (Ok(VmmData::Empty), Some(vm)),
                        Err(e) => (Err(e), None),
                    }
                }
                other => self.handle_any_time(other),
            };
        (result, None)
    }

    /// Whether anything but the logger and metrics is configured (Firecracker
    /// loads a snapshot only into a fresh process).
    fn boot_resources_configured(&self) -> bool {
        let mut r = self.resources.clone();
        r.logger = None;
        r.metrics = None;
        r != VmConfig::default()
    }

    /// `PUT /snapshot/load`: the snapshot's VM, paused unless `resume_vm`.
    fn load_snapshot(&mut self, params: LoadSnapshotParams) -> Result<Vm, ActionError> {
        if self.boot_resources_configured() {
            return Err(ActionError::LoadNotAllowed);
        }
        let start = std::time::Instant::now();
        let fail = |e: &dyn std::fmt::Display| ActionError::LoadSnapshot(e.to_string());
        let state = crate::snapshot::read_state(&params.snapshot_path).map_err(|e| fail(&e))?;
        let given = params.config.clone().map(|c| *c);
        let mut cfg =
            crate::snapshot::restore_config(&state, &params, given).map_err(|e| fail(&e))?;
        cfg.logger = self.resources.logger.clone();
        cfg.metrics = self.resources.metrics.clone();
        let valid = cfg
            .validate_restore(&self.id, self.max_vcpus)
            .map_err(|e| fail(&e))?;
        let mut vm = crate::builder::restore_vm(
            &state,
            &valid,
            &params.mem_file_path,
            self.seccomp.as_ref(),
        )
        .map_err(|e| fail(&e))?;
        if params.resume_vm {
            vm.start();
        } else {
            vm.set_restored_paused();
        }
        let us = micros(start);
        crate::metrics::METRICS
            .latencies_us
            .vmm_load_snapshot
            .store(us);
        log::info!(
            "restored VM {} from {} ({} vCPUs, {} MiB) in {us} us, {}",
            self.id,
            params.snapshot_path.display(),
            valid.vcpu_count,
            valid.mem_size_mib,
            if params.resume_vm {
                "running"
            } else {
                "paused"
            }
        );
        self.resources = cfg;
        self.started = true;
        Ok(vm)
    }

    /// `PUT /snapshot/create` on a paused VM.
    fn create_snapshot(&mut self, params: &CreateSnapshotParams, vm: &Vm) -> ActionResult {
        if vm.state() != RunState::Paused {
            return Err(ActionError::SnapshotNotPaused);
        }
        let report = crate::snapshot::create(vm, &self.resources, params)
            .map_err(ActionError::CreateSnapshot)?;
        let full = params.snapshot_type == crate::snapshot::params::SnapshotType::Full;
        let m = &crate::metrics::METRICS.latencies_us;
        if full {
            m.vmm_full_create_snapshot.store(report.micros);
        } else {
            m.vmm_diff_create_snapshot.store(report.micros);
        }
        log::info!(
            "'create {} snapshot' took {} us: {} bytes of state, {} pages of memory",
            if full { "full" } else { "diff" },
            report.micros,
            report.state_bytes,
            report.memory.pages
        );
        Ok(VmmData::Empty)
    }

    /// Handles an action on a running (or paused) VM.
    pub fn handle_runtime(&mut self, action: VmmAction, vm: &mut Vm) -> ActionResult {
        use VmmAction as A;
        match action {
            A::GetInstanceInfo => Ok(VmmData::InstanceInfo(self.instance_info(
                match vm.state() {
                    RunState::Running => "Running",
                    RunState::Paused => "Paused",
                },
            ))),
            A::Pause => {
                let start = std::time::Instant::now();
                vm.pause()?;
                let us = micros(start);
                crate::metrics::METRICS.latencies_us.vmm_pause_vm.store(us);
                log::info!("'pause vm' took {us} us");
                Ok(VmmData::Empty)
            }
            A::Resume => {
                let start = std::time::Instant::now();
                vm.resume()?;
                let us = micros(start);
                crate::metrics::METRICS.latencies_us.vmm_resume_vm.store(us);
                log::info!("'resume vm' took {us} us");
                Ok(VmmData::Empty)
            }
            A::SendCtrlAltDel => vm
                .send_ctrl_alt_del()
                .map(|()| VmmData::Empty)
                .map_err(Into::into),
            A::FlushMetrics => self.flush_metrics(),
            A::UpdateBlockDevice(u) => self.update_drive(u, vm),
            A::UpdateNetworkInterface(u) => self.update_net(u, vm),
            A::CreateSnapshot(p) => self.create_snapshot(&p, vm),
            A::LoadSnapshot(_)
            | A::ConfigureBootSource(_)
            | A::ConfigureLogger(_)
            | A::ConfigureMetrics(_)
            | A::ConfigureSerial { .. }
            | A::ConfigureCaisson(_)
            | A::SetMachineConfig(_)
            | A::UpdateMachineConfig(_)
            | A::InsertBlockDevice(_)
            | A::InsertNetworkDevice(_)
            | A::SetVsockDevice(_)
            | A::SetEntropyDevice(_)
            | A::StartMicroVm => Err(ActionError::NotAfterBoot),
            other => self.handle_any_time(other),
        }
    }

    /// Actions with the same answer before and after boot.
    fn handle_any_time(&mut self, action: VmmAction) -> ActionResult {
        match action {
            VmmAction::GetVersion => Ok(VmmData::Version(env!("CARGO_PKG_VERSION").into())),
            VmmAction::GetMachineConfig => Ok(VmmData::MachineConfig(self.machine_config())),
            VmmAction::GetFullVmConfig => Ok(VmmData::FullVmConfig(self.full_config())),
            VmmAction::NotSupported(what) => Err(ActionError::NotSupported(what)),
            VmmAction::Invalid(why) => Err(ActionError::Invalid(why)),
            _ => Err(ActionError::NotAfterBoot),
        }
    }

    fn configure_logger(&mut self, l: &LoggerConfig) -> ActionResult {
        let level = crate::logger::parse_level(l.level.as_deref().unwrap_or("Info"))?;
        crate::logger::init(
            &self.id,
            level,
            l.log_path.as_deref(),
            l.show_level.unwrap_or(false),
            l.show_log_origin.unwrap_or(false),
        )?;
        self.resources.logger = Some(l.clone());
        Ok(VmmData::Empty)
    }

    fn configure_metrics(&mut self, path: PathBuf) -> ActionResult {
        let mut next = self.resources.clone();
        next.metrics = Some(crate::config::MetricsConfig {
            metrics_path: path.clone(),
        });
        next.check(&self.id, self.max_vcpus)?;
        crate::metrics::init(&path)?;
        self.resources = next;
        Ok(VmmData::Empty)
    }

    fn flush_metrics(&mut self) -> ActionResult {
        // Without a metrics_path there is nowhere to write: as Firecracker, not an error.
        crate::metrics::flush(crate::builder::device_metric_groups)?;
        Ok(VmmData::Empty)
    }

    /// `PATCH /drives/{id}`: a new backing file (the capacity is updated and the
    /// guest gets a config-change interrupt) and/or a new rate limiter.
    fn update_drive(&mut self, u: DriveUpdate, vm: &mut Vm) -> ActionResult {
        let what = || format!("drive {}", u.drive_id);
        let err = |reason: String| ActionError::Update {
            what: what(),
            reason,
        };
        let index = self
            .resources
            .drives
            .iter()
            .position(|d| d.drive_id == u.drive_id)
            .ok_or_else(|| err("no such drive".into()))?;
        let read_only = self.resources.drives[index].is_read_only;
        let disk = match &u.path_on_host {
            Some(p) => Some(Disk::open(p, read_only, &u.drive_id).map_err(|e| err(e.to_string()))?),
            None => None,
        };
        let rate_limiter = match &u.rate_limiter {
            Some(r) => Some(
                RateLimiterPatch::from_config(r, "rate_limiter").map_err(|e| err(e.to_string()))?,
            ),
            None => None,
        };
        vm.update_device(
            device_type::BLOCK,
            &u.drive_id,
            DeviceUpdate::Drive { disk, rate_limiter },
        )?;
        let d = &mut self.resources.drives[index];
        if let Some(p) = u.path_on_host {
            d.path_on_host = p;
        }
        if let Some(r) = u.rate_limiter {
            merge_limiter(&mut d.rate_limiter, r);
        }
        Ok(VmmData::Empty)
    }

    /// `PATCH /network-interfaces/{id}`: new rate limiters.
    fn update_net(&mut self, u: NetUpdate, vm: &mut Vm) -> ActionResult {
        let err = |reason: String| ActionError::Update {
            what: format!("network interface {}", u.iface_id),
            reason,
        };
        let index = self
            .resources
            .network_interfaces
            .iter()
            .position(|n| n.iface_id == u.iface_id)
            .ok_or_else(|| err("no such interface".into()))?;
        let patch = |r: &Option<RateLimiterConfig>, field: &str| match r {
            Some(r) => RateLimiterPatch::from_config(r, field)
                .map(Some)
                .map_err(|e| err(e.to_string())),
            None => Ok(None),
        };
        let rx = patch(&u.rx_rate_limiter, "rx_rate_limiter")?;
        let tx = patch(&u.tx_rate_limiter, "tx_rate_limiter")?;
        vm.update_device(device_type::NET, &u.iface_id, DeviceUpdate::Net { rx, tx })?;
        let n = &mut self.resources.network_interfaces[index];
        if let Some(r) = u.rx_rate_limiter {
            merge_limiter(&mut n.rx_rate_limiter, r);
        }
        if let Some(r) = u.tx_rate_limiter {
            merge_limiter(&mut n.tx_rate_limiter, r);
        }
        Ok(VmmData::Empty)
    }

    /// `InstanceStart`: validates everything and runs the one ordered build.
    fn start(&mut self) -> Result<Vm, ActionError> {
        let cfg = self.resources.validate(&self.id, self.max_vcpus)?;
        log::info!(
            "starting VM {}: {} vCPUs, {} MiB",
            cfg.id,
            cfg.vcpu_count,
            cfg.mem_size_mib
        );
        let vm = crate::builder::build_vm(&cfg, self.seccomp.as_ref())?;
        self.started = true;
        Ok(vm)
    }
}

/// Firecracker's PATCH rule on the recorded config: a given bucket replaces
/// the old one, an omitted one stays.
fn merge_limiter(old: &mut Option<RateLimiterConfig>, new: RateLimiterConfig) {
    let cur = old.get_or_insert_with(RateLimiterConfig::default);
    if new.bandwidth.is_some() {
        cur.bandwidth = new.bandwidth;
    }
    if new.ops.is_some() {
        cur.ops = new.ops;
    }
}

fn micros(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn apply_machine_update(c: &mut VmConfig, u: MachineConfigUpdate) {
    let m = &mut c.machine_config;
    if let Some(v) = u.vcpu_count {
        m.vcpu_count = Some(v);
    }
    if let Some(v) = u.mem_size_mib {
        m.mem_size_mib = Some(v);
    }
    if let Some(v) = u.smt {
        m.smt = v;
    }
    if let Some(v) = u.track_dirty_pages {
        m.track_dirty_pages = v;
    }
    if let Some(v) = u.huge_pages {
        m.huge_pages = v;
    }
    if u.cpu_template.is_some() {
        m.cpu_template = u.cpu_template;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limiter::TokenBucketConfig;

    fn controller() -> Controller {
        Controller::new("t", 8, None)
    }

    fn refused(c: &mut Controller, a: VmmAction) -> String {
        match c.handle_preboot(a) {
            (Err(e), None) => e.to_string(),
            (r, vm) => panic!("accepted: {r:?}, started: {}", vm.is_some()),
        }
    }

    #[test]
    fn runtime_actions_are_refused_before_boot() {
        let mut c = controller();
        for a in [
            VmmAction::Pause,
            VmmAction::Resume,
            VmmAction::FlushMetrics,
            VmmAction::SendCtrlAltDel,
            VmmAction::UpdateBlockDevice(DriveUpdate {
                drive_id: "d".into(),
                path_on_host: None,
                rate_limiter: None,
            }),
        ] {
            assert_eq!(refused(&mut c, a), NOT_BEFORE_BOOT);
        }
    }

    #[test]
    fn a_refused_change_keeps_what_was_configured() {
        let mut c = controller();
        let ok = VmmAction::SetMachineConfig(MachineConfig {
            vcpu_count: Some(2),
            mem_size_mib: Some(64),
            ..MachineConfig::default()
        });
        assert!(matches!(c.handle_preboot(ok), (Ok(VmmData::Empty), None)));
        let too_many = VmmAction::UpdateMachineConfig(MachineConfigUpdate {
            vcpu_count: Some(100),
            ..MachineConfigUpdate::default()
        });
        assert!(refused(&mut c, too_many).contains("vcpu_count: 100"));
        let missing = VmmAction::SetMachineConfig(MachineConfig {
            vcpu_count: Some(1),
            ..MachineConfig::default()
        });
        assert!(refused(&mut c, missing).contains("mem_size_mib is required"));
        assert_eq!(c.resources().machine_config.vcpu_count, Some(2));
        assert_eq!(c.resources().machine_config.mem_size_mib, Some(64));
        let bad_drive = VmmAction::InsertBlockDevice(DriveConfig {
            drive_id: "d".into(),
            path_on_host: "/nonexistent/disk".into(),
            is_root_device: false,
            is_read_only: true,
            partuuid: None,
            cache_type: None,
            io_engine: None,
            rate_limiter: None,
            socket: None,
        });
        assert!(refused(&mut c, bad_drive).contains("/nonexistent/disk"));
        assert!(c.resources().drives.is_empty());
        // Starting without a kernel names what is missing, and nothing starts.
        assert!(refused(&mut c, VmmAction::StartMicroVm).contains("kernel_image_path"));
        assert!(matches!(
            c.handle_preboot(VmmAction::GetInstanceInfo),
            (Ok(VmmData::InstanceInfo(i)), None) if i.state == "Not started"
        ));
    }

    #[test]
    fn a_config_file_becomes_the_same_actions() {
        let cfg = VmConfig::from_json(
            r#"{"boot-source": {"kernel_image_path": "/k"},
                "machine-config": {"vcpu_count": 2},
                "drives": [{"drive_id": "a", "path_on_host": "/a", "is_root_device": true}],
                "entropy": {}, "balloon": {"amount_mib": 1, "deflate_on_oom": false}}"#,
        )
        .expect("parses");
        let actions = actions_from_config(cfg);
        assert!(
            matches!(actions[0], VmmAction::UpdateMachineConfig(ref m) if m.vcpu_count == Some(2) && m.mem_size_mib.is_none())
        );
        assert!(matches!(actions[1], VmmAction::ConfigureBootSource(_)));
        assert!(matches!(actions[2], VmmAction::InsertBlockDevice(ref d) if d.drive_id == "a"));
        assert!(matches!(actions[3], VmmAction::SetEntropyDevice(_)));
        assert!(matches!(actions[4], VmmAction::ConfigureCaisson(_)));
        assert_eq!(actions.last(), Some(&VmmAction::NotSupported("balloon")));
    }

    #[test]
    fn patched_limiters_keep_omitted_buckets() {
        let b = |size| TokenBucketConfig {
            size,
            one_time_burst: None,
            refill_time: 100,
        };
        let mut old = Some(RateLimiterConfig {
            bandwidth: Some(b(1)),
            ops: Some(b(2)),
        });
        merge_limiter(
            &mut old,
            RateLimiterConfig {
                bandwidth: None,
                ops: Some(b(3)),
            },
        );
        assert_eq!(
            old,
            Some(RateLimiterConfig {
                bandwidth: Some(b(1)),
                ops: Some(b(3)),
            })
        );
    }
}
