//! The jail sequence: [`run`] takes one guest from an untrusted config to a
//! uniquely confined VMM process, one step per call, in order. What it decides
//! first is in `settings.rs`, the jailer's own process (sanitize, daemonize,
//! clocks) in `process.rs`; steps 5-11 (and the child's entry into its cgroup)
//! run in the cloned child ([`confine`], `child.rs`); the parent supervises and
//! cleans up (step 12).

use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::Path;

use crate::api_jail::{self, ApiRecord};
use crate::cgroup::{self, CgroupPlan, CgroupVersion, Limits};
use crate::child::{confine, ChildCtx};
use crate::cli::RunArgs;
use crate::exec_copy::{ExecCopy, Placed};
use crate::fcmode;
use crate::identity;
use crate::jailfs;
use crate::labels::{self, Image};
use crate::landlock_rules::{self, LandlockStatus};
use crate::mcs::{McsStore, OsRandom};
use crate::namespaces::{self, Netns};
use crate::process::{self, StartTimes};
use crate::profile::{FsizeChoice, LandlockMode, Profile, SeccompMode, SelinuxMode};
use crate::resources::{self, Resources, JAIL_CONFIG, JAIL_VSOCK_DIR};
use crate::rlimits::Rlimits;
use crate::selinux_backend::{HostSelinux, SelinuxBackend};
use crate::shared_labels;
use crate::state::{JailState, RuntimeLock};
use crate::supervise;
use crate::timing as mark;

/// How long the jailer waits for its child's exec before it prepares the next
/// start (then it prepares none: the child is slow, the machine busy).
const NEXT_START_AFTER_EXEC: std::time::Duration = std::time::Duration::from_secs(1);
/// How long after the exec the next start is prepared (sooner if the VM ends):
/// past the VMM's own KVM set-up, which waits on RCU and SRCU grace periods
/// that a CPU busy in the kernel holds up.
const NEXT_START_SETTLE: std::time::Duration = std::time::Duration::from_millis(20);

/// Any failed step, named by the step.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    #[error("missing required flag {flag}")]
    Missing { flag: &'static str },
    #[error(transparent)]
    Resource(#[from] resources::ResourceError),
    #[error(transparent)]
    Mcs(#[from] crate::mcs::McsError),
    #[error("--selinux=require but SELinux is not enabled on this host")]
    SelinuxRequired,
    #[error(transparent)]
    Label(#[from] labels::LabelError),
    #[error(transparent)]
    Selinux(#[from] crate::selinux_backend::SelinuxError),
    #[error(transparent)]
    SharedLabel(#[from] shared_labels::SharedLabelError),
    #[error(transparent)]
    ApiJail(#[from] api_jail::ApiJailError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Namespace(#[from] namespaces::NamespaceError),
    #[error(transparent)]
    Tap(#[from] crate::tap::TapError),
    #[error(transparent)]
    Fs(#[from] jailfs::JailFsError),
    #[error(transparent)]
    ExecCopy(#[from] crate::exec_copy::ExecCopyError),
    #[error(transparent)]
    Rlimit(#[from] crate::rlimits::RlimitError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    Landlock(#[from] landlock_rules::LandlockError),
    #[error(transparent)]
    Baseline(#[from] crate::seccomp_baseline::BaselineError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Supervise(#[from] supervise::SuperviseError),
    #[error(transparent)]
    Placement(#[from] crate::placement::PlacementError),
    #[error("cannot set the parent-death signal: {0}")]
    DeathSignal(nix::Error),
    #[error("cannot exec {path}: {errno}")]
    Exec { path: String, errno: nix::Error },
    #[error("argument {value:?} contains a NUL byte")]
    Nul { value: String },
    #[error(transparent)]
    FcMode(#[from] fcmode::FcModeError),
}

pub use crate::settings::{rootless_runtime_dir, Mode, Settings};

/// The whole jail sequence. Returns the exit code to exit with: the VMM's, or
/// 128+signal when it was killed, or [`supervise::SETUP_FAILED`] when the child
/// failed before exec.
pub fn run(args: &RunArgs) -> Result<i32, JailError> {
    let started = StartTimes::now();
    mark::init();
    // 1. Sanitize.
    process::sanitize()?;
    process::require_root(args.rootless)?;
    mark::mark("1 sanitized");
    // 2. Validate and open.
    let s = Settings::resolve(args)?;
    mark::mark("2 settings resolved (profile read)");
    // 5 (ahead). A new network namespace: the one an earlier start made ahead
    // (taken in the sweep), or else one made on a thread beside the steps up
    // to the clone (rootless, the child makes it in its user namespace).
    let wants_netns = s.profile.namespaces.net && s.netns.is_none() && !s.rootless;
    let backend = HostSelinux;
    let mut made_netns = sweep(
        &s.runtime_dir,
        &backend,
        wants_netns && s.profile.ahead.netns,
    )?;
    let mut ahead = (wants_netns && made_netns.is_none())
        .then(namespaces::NetnsAhead::start)
        .transpose()?;
    mark::mark(if made_netns.is_some() {
        "2 stale records swept, network namespace made ahead taken"
    } else {
        "2 stale records swept"
    });
    let mut opened = open(&s)?;
    mark::mark("2 config and files opened");
    if s.daemonize {
        // (A fork takes only this thread along.)
        if let Some(a) = ahead.take() {
            made_netns = Some(a.finish()?);
        }
        process::daemonize()?;
    }
    supervise::install_forwarding()?;
    // 6 (ahead). The exec file's copy, on a thread until the clone.
    let mut exec_copy = ExecCopy::start(
        &s.exec_file,
        exec_copy_dir(&s.paths),
        s.profile.ahead.exec_copy,
    )?;
    // 3. sVirt: the MCS pair and the ids derived from it.
    let selinux_on = selinux_mode(&backend, &s)?;
    // From here on, leaving `run` by any path undoes what was done.
    let (allocated, plan) = allocate(&s, &mut opened, &backend, selinux_on)?;
    let mut state = Undo {
        state: allocated,
        runtime_dir: &s.runtime_dir,
        backend: &backend,
    };
    mark::mark("3 MCS pair allocated, cgroup planned, state written");
    // 4 (v2 cgroup), 6 (host side: the jail directory).
    let plan = set_up_for_child(&s, &opened, &backend, &mut state, &mut exec_copy, plan)?;
    if supervise::signalled() != 0 {
        return Ok(128 + supervise::signalled());
    }
    // 5-11 in the child, which is born in its cgroup (v2) or joins it first (v1).
    let cgroup_fd = cgroup::open_v2_leaf(&plan)?;
    // The VMM's argv (with the jailer's CPU time so far) and the exec label.
    let (argv, exec_label) = exec_strings(&s, &started, &state)?;
    if let Some(a) = ahead.take() {
        made_netns = Some(a.finish()?);
    }
    let placed = exec_copy.finish()?;
    mark::mark(if placed == Placed::RenamedAhead {
        "argv built, network namespace made, copy made ahead renamed in, cloning"
    } else {
        "argv built, network namespace made, exec file copied, cloning"
    });
    let affinity = crate::placement::Affinity::of_jailer()?;
    let ctx = ChildCtx {
        affinity,
        cgroup: &plan,
        settings: &s,
        res: &opened.res,
        netns: opened.netns.as_ref(),
        cgroup_made_beside: cgroup_made_beside(&s),
        made_netns: made_netns.as_ref(),
        paths: &s.paths,
        rlimits: &opened.rlimits,
        uid: state.uid,
        gid: state.gid,
        exec_label,
        argv,
    };
    // (The child never runs the guard's Drop: it ends in `_exit`.)
    let mut child = supervise::spawn(
        namespaces::clone_flags(&s.profile.namespaces, s.rootless),
        cgroup_fd.as_ref().map(|fd| fd.as_fd()),
        // Rootless: nothing works in the user namespace before its id maps. As
        // root, the child builds its jail while this side records it, and waits
        // for the record before it becomes the VM (see `confine`).
        if s.rootless {
            supervise::Release::AtStart
        } else {
            supervise::Release::InBody
        },
        || match confine(&ctx, &backend) {
            Ok(never) => match never {},
            Err(e) => {
                eprintln!("caisson-jailer: {e}");
                supervise::SETUP_FAILED
            }
        },
    )?;
    mark::mark("5 cloned");
    // Both sides' work overlaps only if the child runs on another CPU.
    affinity.place_apart(nix::unistd::Pid::from_raw(child.pid));
    // 3 and 4 (host side) beside the child, which waits for its id maps
    // (rootless) and its state record.
    let beside = set_up_beside_child(&s, &opened, &backend, selinux_on, &mut state, &plan)
        .and_then(|()| {
            if cgroup_made_beside(&s) {
                child.cgroup_made()?;
            }
            Ok(())
        });
    if let Err(e) = beside.and_then(|()| admit(&s, &mut child, &mut state)) {
        child.abort();
        return Err(e);
    }
    mark::mark("child released");
    // The next start's copy and namespace, now that no fork or clone follows, and
    // once the child has exec'd: that work is kernel work, and a CPU busy in the
    // kernel holds up the RCU grace period the child's old-root detach waits for
    // (0.15 -> 0.5-2.5 ms measured here).
    let next = crate::next_start::Next {
        exec_copy: (s.profile.ahead.exec_copy && placed != Placed::CopiedAcrossMount)
            .then(|| (s.exec_file.clone(), exec_copy_dir(&s.paths).to_path_buf())),
        netns: (wants_netns && s.profile.ahead.netns).then(|| s.runtime_dir.clone()),
    };
    let preparing = if !next.is_empty() && child.await_exec(NEXT_START_AFTER_EXEC) {
        crate::next_start::prepare(next, NEXT_START_SETTLE)
    } else {
        None
    };
    // 12. Supervise, then clean up (the guard, once the VM has ended).
    let code = child.wait();
    if let Some(p) = preparing {
        p.finish();
    }
    // The namespace taken from the pool, if the preparation did not unbind it.
    crate::netns_pool::release_taken(&s.runtime_dir);
    drop(state);
    Ok(code?)
}

/// Where the exec file's copy is made before it has a name: beside the jail
/// directory, on its filesystem (`<base>/<exec name>`).
fn exec_copy_dir(paths: &jailfs::JailPaths) -> &Path {
    paths.jail_dir.parent().unwrap_or(&paths.jail_dir)
}

/// A jail's state that is undone when dropped: every way out of [`run`] after
/// the allocation cleans up, the VM's end included.
struct Undo<'a> {
    state: JailState,
    runtime_dir: &'a Path,
    backend: &'a dyn SelinuxBackend,
}

impl std::ops::Deref for Undo<'_> {
    type Target = JailState;
    fn deref(&self) -> &JailState {
        &self.state
    }
}

impl std::ops::DerefMut for Undo<'_> {
    fn deref_mut(&mut self) -> &mut JailState {
        &mut self.state
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        for p in crate::cleanup::undo(&self.state, self.runtime_dir, self.backend) {
            log::error!("cleanup: {p}");
        }
    }
}

/// Undoes the records of jailers killed with their VMs (under the lock starts
/// take), and takes the network namespace made ahead when `take_netns`.
fn sweep(
    runtime_dir: &Path,
    backend: &dyn SelinuxBackend,
    take_netns: bool,
) -> Result<Option<namespaces::MadeNetns>, JailError> {
    let lock = RuntimeLock::take(runtime_dir)?;
    let netns = take_netns
        .then(|| crate::netns_pool::take(runtime_dir, &lock))
        .flatten();
    let (swept, problems) = crate::cleanup::sweep_stale(runtime_dir, backend, &lock);
    if !swept.is_empty() {
        log::info!("swept the stale VM(s) {}", swept.join(", "));
    }
    for p in problems {
        log::warn!("stale sweep: {p}");
    }
    Ok(netns)
}

/// What step 2 opened and computed.
struct Opened {
    res: Resources,
    netns: Option<Netns>,
    rlimits: Rlimits,
    limits: Limits,
}

/// Step 2: the config's files, the network namespace and the limits.
fn open(s: &Settings) -> Result<Opened, JailError> {
    let res = match &s.mode {
        Mode::Caisson { config_file } => {
            resources::open_all(config_file, &s.profile.resources.roots)?
        }
        Mode::Firecracker { config: Some(c) } => fcmode::open_config(&s.paths.root, c)?,
        Mode::Firecracker { config: None } => {
            fcmode::scan_root(&s.paths.root, &["dev", fcmode::RUN_DIR])?
        }
    };
    let netns = s.netns.as_deref().map(namespaces::open_netns).transpose()?;
    let rlimits = rlimits_for(s, &res);
    let limits = cgroup_limits(s, &res);
    Ok(Opened {
        res,
        netns,
        rlimits,
        limits,
    })
}

/// Step 7's limits, from the profile (flags included) and the VM's files.
fn rlimits_for(s: &Settings, res: &Resources) -> Rlimits {
    let mut rlimits = Rlimits::from_profile(&s.profile, api_jail::fsize_basis(s.api, res));
    // Firecracker's mode: drives come after the start (Kata's hot-plug onto empty
    // placeholders, the API), so no size is known to derive fsize from; it is
    // unlimited, as in Firecracker's jailer, unless the profile or a flag sets it.
    if matches!(s.mode, Mode::Firecracker { .. }) && s.profile.rlimits.fsize == FsizeChoice::Auto {
        rlimits.fsize = None;
    }
    rlimits
}

/// Step 4's limits, from the profile and the guest's size.
fn cgroup_limits(s: &Settings, res: &Resources) -> Limits {
    let c = &s.profile.cgroup;
    // Without a config (Firecracker's mode, API-driven) the guest's size is not
    // known before the API sets it: the derived limits are the host's size, i.e.
    // none, unless the profile sets them.
    let (guest_mib, vcpus) = if s.mode == (Mode::Firecracker { config: None }) {
        if c.memory_max_mib.is_none() || c.cpu_quota_us.is_none() {
            log::warn!(
                "VM {}: no config, so no memory or CPU limit derived from the guest's size (set cgroup.memory_max_mib and cpu_quota_us in the profile)",
                s.id
            );
        }
        process::host_size()
    } else {
        (res.mem_size_mib, res.vcpu_count)
    };
    let memory_mib = c
        .memory_max_mib
        .unwrap_or(guest_mib.saturating_add(c.memory_overhead_mib));
    Limits {
        memory_bytes: memory_mib.saturating_mul(1 << 20),
        cpu_quota_us: c
            .cpu_quota_us
            .unwrap_or(vcpus.max(1).saturating_mul(c.cpu_period_us)),
        cpu_period_us: c.cpu_period_us,
        pids_max: c.pids_max,
        extra: s.extra_cgroups.clone(),
    }
}

/// Whether labels are applied, per mode and host (rootless never: relabelling
/// needs root, and `--selinux=require` is refused with `--rootless`).
fn selinux_mode(backend: &dyn SelinuxBackend, s: &Settings) -> Result<bool, JailError> {
    if !s.rootless {
        return selinux_enabled(backend, s.profile.selinux.mode);
    }
    log::info!("rootless: SELinux labels skipped");
    Ok(false)
}

/// Whether the mode labels on this host (`require` fails without SELinux).
fn selinux_enabled(backend: &dyn SelinuxBackend, mode: SelinuxMode) -> Result<bool, JailError> {
    match mode {
        SelinuxMode::Off => Ok(false),
        _ if backend.enabled() => Ok(true),
        SelinuxMode::Require => Err(JailError::SelinuxRequired),
        SelinuxMode::Auto => {
            log::info!(
                "SELinux is not enabled on this host: skipping the sVirt labels (--selinux=auto)"
            );
            Ok(false)
        }
    }
}

/// Step 3: allocates the MCS pair, derives the ids, checks the read-only files are
/// readable by them, refuses an existing jail, and writes the first state file.
fn allocate(
    s: &Settings,
    o: &mut Opened,
    backend: &dyn SelinuxBackend,
    selinux_on: bool,
) -> Result<(JailState, CgroupPlan), JailError> {
    let fc = matches!(s.mode, Mode::Firecracker { .. });
    let store = McsStore::new(&s.runtime_dir.join("mcs"));
    let categories = store.allocate(
        &s.id,
        s.profile.selinux.range,
        &backend.process_labels(),
        std::process::id() as i32,
        &mut OsRandom,
    )?;
    let (uid, gid) = s.vm_ids(identity::derive_id(s.profile.identity.uid_base, categories));
    let refuse = |e: JailError| -> Result<(JailState, CgroupPlan), JailError> {
        store.release(&s.id)?;
        Err(e)
    };
    if s.mode == (Mode::Firecracker { config: None }) {
        fcmode::classify(&mut o.res.files, uid, gid);
        o.rlimits = rlimits_for(s, &o.res);
    }
    // Read-only files stay as they are: the VM's uid must be able to read them.
    if let Some(r) = o
        .res
        .files
        .iter()
        // (Firecracker's mode hands the config to the VM, see fcmode::hand_over.)
        .find(|r| {
            !r.writable && r.kind != resources::Kind::Config && !resources::readable_by(r, uid, gid)
        })
    {
        return refuse(
            resources::ResourceError::Path {
                field: r.field.clone(),
                path: r.host_path.clone(),
                message: format!(
                    "not readable by the VM's uid {uid}/gid {gid} (owner {}:{}, mode {:o}); make it world-readable",
                    r.uid, r.gid, r.mode
                ),
            }
            .into(),
        );
    }
    // Firecracker's mode: the jail root is the orchestrator's, but nothing of an
    // earlier run may be in it.
    if fc {
        if let Err(e) = fcmode::check_leftovers(&s.paths) {
            return refuse(e.into());
        }
    }
    // An existing jail directory is another VM's, or left over: never reused.
    if !fc && s.paths.jail_dir.exists() {
        return refuse(
            jailfs::JailFsError::Exists {
                path: s.paths.jail_dir.clone(),
                id: s.id.clone(),
            }
            .into(),
        );
    }
    let (host_uid, host_gid, groups) = if s.rootless {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
            nix::unistd::getgroups()
                .unwrap_or_default()
                .iter()
                .map(|g| g.as_raw())
                .collect(),
        )
    } else {
        (uid, gid, Vec::new())
    };
    let mut state = JailState {
        id: s.id.clone(),
        profile: s.profile.name.clone(),
        jailer_pid: std::process::id() as i32,
        vm_pid: 0,
        exec_file_name: s.paths.exec_name.clone(),
        jail_dir: s.paths.jail_dir.clone(),
        root: s.paths.root.clone(),
        uid,
        gid,
        host_uid,
        host_gid,
        groups,
        categories,
        selinux_label: selinux_on.then(|| labels::process_label(&s.profile.selinux, categories)),
        cgroup_version: s.cgroup_version,
        cgroup_leaves: Vec::new(),
        cgroup_parent: s.profile.cgroup.parent.to_string(),
        cgroup_limits: o.limits.clone(),
        rlimits: o.rlimits.clone(),
        new_namespaces: namespaces::new_namespace_names(
            &s.profile.namespaces,
            o.netns.is_some(),
            s.rootless,
        ),
        netns: s.netns.clone(),
        taps: Vec::new(),
        seccomp: s.profile.seccomp.mode,
        seccomp_baseline: s.profile.seccomp.baseline,
        landlock: Some(expected_landlock(&s.profile)),
        image_labels: Vec::new(),
        owners: Vec::new(),
        vsock_host_path: o.res.vsock_name.as_ref().map(|n| {
            if fc {
                s.paths.root.join(n)
            } else {
                s.paths
                    .root
                    .join(JAIL_VSOCK_DIR.trim_start_matches('/'))
                    .join(n)
            }
        }),
        firecracker_mode: fc,
        created_in_jail: Vec::new(),
        computed_label: Some(labels::process_label(&s.profile.selinux, categories)),
        vm_files: labels::file_records(&s.profile.selinux, categories, &o.res.files, selinux_on),
        api: s.api.then(|| {
            let label = labels::jail_dir_label(&s.profile.selinux, categories);
            ApiRecord::new(&s.paths.root, label, selinux_on)
        }),
    };
    // 4. The cgroup, planned here: its leaves (and the taps) ride on the first
    // state write (undo skips leaves not made yet).
    let plan = cgroup_plan(s, &o.limits);
    state.cgroup_leaves = plan.leaves.clone();
    if !s.rootless {
        match crate::tap::record(&o.res.taps, o.netns.as_ref(), s.profile.namespaces.net) {
            Ok(taps) => state.taps = taps,
            Err(e) => return refuse(e.into()),
        }
    }
    if let Err(e) = state.save(&s.runtime_dir) {
        return refuse(e.into());
    }
    Ok((state, plan))
}

/// Step 4's plan: the VM's cgroup leaves and what is written in them.
fn cgroup_plan(s: &Settings, limits: &Limits) -> CgroupPlan {
    match s.cgroup_version {
        CgroupVersion::V1 => cgroup::plan_v1(
            Path::new(cgroup::CGROUP_ROOT),
            s.profile.cgroup.parent.as_str(),
            &s.id,
            limits,
        ),
        CgroupVersion::V2 => cgroup::plan_v2(
            &cgroup::v2_root(),
            s.profile.cgroup.parent.as_str(),
            &s.id,
            limits,
        ),
    }
}

/// The Landlock status the state file records for the audit to compare.
fn expected_landlock(p: &Profile) -> LandlockStatus {
    let abi = landlock_rules::kernel_abi();
    let status = match p.landlock.mode {
        LandlockMode::Off => "off",
        _ if abi >= 6 => "fully-enforced",
        _ if abi >= 1 => "partially-enforced",
        _ => "not-enforced",
    };
    LandlockStatus {
        kernel_abi: abi,
        status: status.into(),
    }
}

/// Before the clone, what the child's own steps need: the taps' owners recorded
/// (the child hands them over), the cgroup planned (and made, when the child
/// must be born in it, v2, or must know it was skipped, rootless), and the jail
/// directory with its placeholders (the child binds onto them). The rest is
/// [`set_up_beside_child`].
fn set_up_for_child(
    s: &Settings,
    o: &Opened,
    backend: &dyn SelinuxBackend,
    state: &mut JailState,
    exec_copy: &mut ExecCopy,
    mut plan: CgroupPlan,
) -> Result<CgroupPlan, JailError> {
    let (res, paths) = (&o.res, &s.paths);
    if s.cgroup_version == CgroupVersion::V2 || s.rootless {
        plan = make_cgroup(s, state, plan)?;
    }
    // 6 (host side). The jail directory, with the exec file's copy in it.
    let exec_target = paths.root.join(&paths.exec_name);
    let vm_owner = (!s.rootless).then_some((state.uid, state.gid));
    if state.firecracker_mode {
        let done = fcmode::prepare(paths, &s.exec_file, res, vm_owner)?;
        exec_copy.place(&exec_target)?;
        state.created_in_jail = done.created;
        state.created_in_jail.push(exec_target);
        state.owners.extend(done.owners);
        state.save(&s.runtime_dir)?;
    } else {
        jailfs::prepare(
            paths,
            &s.id,
            &s.exec_file,
            &res.files,
            &res.jail_config,
            jailfs::Optional {
                net: !res.taps.is_empty(),
                vsock: res.vsock_name.is_some(),
            },
            vm_owner,
        )?;
        exec_copy.place(&exec_target)?;
    }
    if let Some(api) = state.api.clone() {
        api_jail::prepare(&paths.root, vm_owner)?;
        if api.label_applied {
            let dir = labels::LabelChange {
                path: api.snapshot_dir_host_path.clone(),
                label: api.snapshot_dir_label.clone(),
            };
            shared_labels::apply(backend, &s.runtime_dir, state, &[dir])?;
        }
        api_jail::announce(&s.id, &api);
    }
    mark::mark("6 jail directory prepared");
    Ok(plan)
}

/// Step 4: makes the cgroup, under the runtime lock (an ending VM removes
/// empty parents under it). Rootless, a cgroup that cannot be made is skipped.
fn make_cgroup(
    s: &Settings,
    state: &mut JailState,
    plan: CgroupPlan,
) -> Result<CgroupPlan, JailError> {
    let applied = RuntimeLock::take(&s.runtime_dir)
        .map_err(JailError::from)
        .and_then(|_lock| plan.apply().map_err(JailError::from));
    mark::mark("4 cgroup directories made and written");
    match applied {
        Ok(()) => Ok(plan),
        Err(e) if s.rootless => {
            state.cgroup_leaves = Vec::new();
            state.save(&s.runtime_dir)?;
            log::warn!(
                "rootless: cgroup limits skipped ({e}); delegate a cgroup to this user to get them"
            );
            Ok(CgroupPlan {
                leaves: Vec::new(),
                create: Vec::new(),
                writes: Vec::new(),
                ..plan
            })
        }
        Err(e) => Err(e),
    }
}

/// While the child builds its namespaces and mounts (it waits for the release
/// before it joins its cgroup and becomes the VM), what only the VM needs:
/// steps 3 (image labels, writable files given to the VM) and 4 (the v1
/// cgroup).
fn set_up_beside_child(
    s: &Settings,
    o: &Opened,
    backend: &dyn SelinuxBackend,
    selinux_on: bool,
    state: &mut JailState,
    plan: &CgroupPlan,
) -> Result<(), JailError> {
    let res = &o.res;
    if selinux_on {
        let images: Vec<Image> = res
            .files
            .iter()
            .map(|f| Image {
                path: f.host_path.clone(),
                writable: f.writable,
            })
            .collect();
        let labels = labels::plan(&s.profile.selinux, state.categories, &images);
        shared_labels::apply(backend, &s.runtime_dir, state, &labels)?;
        mark::mark("3 images labelled");
    }
    if s.cgroup_version == CgroupVersion::V1 && !s.rootless {
        make_cgroup(s, state, plan.clone())?;
    }
    if !s.rootless {
        // (Rootless: the VM's uid maps to the caller, who owns the files already.)
        // The old owners ride on the next state write, right after (`admit`).
        let mut owners = resources::give_writable_to(&res.files, state.uid, state.gid)?;
        state.owners.append(&mut owners);
        if state.firecracker_mode {
            let given = fcmode::hand_over(&res.files, state.uid, state.gid)?;
            state.owners.extend(given);
        }
        mark::mark("3 writable files given to the VM");
    }
    Ok(())
}

/// Whether the jailer makes the VM's cgroup beside the child (v1, as root),
/// which waits for it before it joins; otherwise the child is born in it (v2) or
/// it was made before the clone (rootless).
fn cgroup_made_beside(s: &Settings) -> bool {
    s.cgroup_version == CgroupVersion::V1 && !s.rootless
}

/// The VMM's argv and the sVirt exec label (when labels are on).
fn exec_strings(
    s: &Settings,
    started: &StartTimes,
    state: &JailState,
) -> Result<(Vec<CString>, Option<CString>), JailError> {
    let argv = vmm_argv(s, started)?;
    let label = state
        .selinux_label
        .clone()
        .map(|l| CString::new(l.clone()).map_err(|_| JailError::Nul { value: l }))
        .transpose()?;
    Ok((argv, label))
}

/// The argv of the VMM: Firecracker's jailer passes --id and the start times, then
/// the arguments after `--` unchanged. Caisson's mode adds `--no-api` (with `--api`,
/// `--api-sock /run/caisson.socket`) and its own config; Firecracker's leaves the
/// API on (`/run/firecracker.socket`).
fn vmm_argv(s: &Settings, started: &StartTimes) -> Result<Vec<CString>, JailError> {
    let mut v: Vec<String> = vec![format!("/{}", s.paths.exec_name)];
    if let Mode::Caisson { .. } = s.mode {
        v.extend(api_jail::vmm_flags(s.api));
        v.extend(["--config-file".into(), JAIL_CONFIG.into()]);
    }
    v.extend([
        "--id".into(),
        s.id.clone(),
        "--start-time-us".into(),
        started.wall_us.to_string(),
        "--start-time-cpu-us".into(),
        started.cpu_us.to_string(),
        "--parent-cpu-time-us".into(),
        process::cpu_time_us().to_string(),
    ]);
    if s.profile.seccomp.mode == SeccompMode::Off {
        log::warn!(
            "seccomp is off for VM {}: passing --no-seccomp to the VMM",
            s.id
        );
        v.push("--no-seccomp".into());
    }
    v.extend(s.exec_args.iter().cloned());
    v.into_iter()
        .map(|a| CString::new(a.clone()).map_err(|_| JailError::Nul { value: a }))
        .collect()
}

/// Rootless id maps, the state with the VM's pid (and the files' old owners),
/// and the go signal.
fn admit(
    s: &Settings,
    child: &mut supervise::Child,
    state: &mut JailState,
) -> Result<(), JailError> {
    if s.rootless {
        namespaces::write_id_maps(
            child.pid,
            state.uid,
            state.gid,
            state.host_uid,
            state.host_gid,
        )?;
    }
    state.vm_pid = child.pid;
    state.save(&s.runtime_dir)?;
    if state.firecracker_mode {
        fcmode::write_pid_file(&s.paths, child.pid)?;
    }
    child.release()?;
    Ok(())
}

#[cfg(test)]
#[path = "jail_tests.rs"]
mod tests;
