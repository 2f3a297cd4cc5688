//! What the jail sequence decides before any step runs: every flag, typed and
//! checked, with the mode (Caisson's own or Firecracker's), the profile with
//! single flags overriding single values, and the paths and ids derived from
//! them. After [`Settings::resolve`] nothing reads the command line again.

use std::path::{Path, PathBuf};

use crate::cgroup::{self, CgroupParent, CgroupVersion};
use crate::cli::RunArgs;
use crate::fcmode;
use crate::jailfs::{self, JailPaths};
use crate::mcs::CategoryRange;
use crate::profile::{CgroupVersionChoice, Profile, SelinuxMode};

/// Flags that cannot be used, alone or together.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("missing required flag {flag}")]
    Missing { flag: &'static str },
    #[error("--rootless cannot use {what}")]
    Rootless { what: &'static str },
    #[error("--node {node}: cannot read {path}: {source}")]
    Node {
        node: u32,
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] caisson::config::ConfigError),
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
    #[error(transparent)]
    Mcs(#[from] crate::mcs::McsError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Rlimit(#[from] crate::rlimits::RlimitError),
    #[error(transparent)]
    Fs(#[from] jailfs::JailFsError),
    #[error(transparent)]
    FcMode(#[from] fcmode::FcModeError),
}

/// Whose jail it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `--config-file` given to the jailer: it copies the config and the files it
    /// names into a jail of its own, and runs the VMM with `--no-api`.
    Caisson { config_file: PathBuf },
    /// No `--config-file` for the jailer: Firecracker's jailer ([`fcmode`]). The
    /// orchestrator filled the jail root; `config` is the `--config-file` among
    /// the VMM's arguments (as the VMM will read it in the jail), if any.
    Firecracker { config: Option<String> },
}

/// Everything decided from the flags and the profile before any step runs.
#[derive(Debug)]
pub struct Settings {
    pub id: String,
    pub exec_file: PathBuf,
    /// The arguments after `--`, passed to the VMM unchanged.
    pub exec_args: Vec<String>,
    pub mode: Mode,
    /// The profile, with `--new-pid-ns`, `--selinux`, `--landlock`, `--seccomp`,
    /// `--resource-root`, `--mcs-range`, `--parent-cgroup` and `--resource-limit`
    /// in place of its values.
    pub profile: Profile,
    /// `--cgroup-version`, else the profile's (`auto` detected on this host).
    pub cgroup_version: CgroupVersion,
    /// `--node`'s cpuset, then each `--cgroup`, in that order.
    pub extra_cgroups: Vec<(String, String)>,
    /// The jail's directories under `--chroot-base-dir`.
    pub paths: JailPaths,
    /// `--uid` and `--gid` as given (see [`Settings::vm_ids`]).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `--netns`: the network namespace to join instead of a new one.
    pub netns: Option<PathBuf>,
    pub daemonize: bool,
    pub runtime_dir: PathBuf,
    /// Run in a user namespace without root.
    pub rootless: bool,
    /// Caisson's mode with `--api` ([`crate::api_jail`]).
    pub api: bool,
}

impl Settings {
    /// Every flag, checked, and the profile with single flags overriding single
    /// values.
    pub fn resolve(args: &RunArgs) -> Result<Self, SettingsError> {
        let id = args
            .id
            .clone()
            .ok_or(SettingsError::Missing { flag: "--id" })?;
        caisson::config::validate_id(&id)?;
        let exec_file = args.exec_file.clone().ok_or(SettingsError::Missing {
            flag: "--exec-file",
        })?;
        let mode = mode(args)?;
        let profile = profile(args)?;
        if args.rootless {
            if args.netns.is_some() {
                return Err(SettingsError::Rootless {
                    what: "--netns (joining needs CAP_SYS_ADMIN over it)",
                });
            }
            if profile.selinux.mode == SelinuxMode::Require {
                return Err(SettingsError::Rootless {
                    what: "--selinux=require (relabelling needs root)",
                });
            }
        }
        let cgroup_version = match &args.cgroup_version {
            Some(v) => CgroupVersion::parse(v)?,
            None => match profile.cgroup.version {
                CgroupVersionChoice::V1 => CgroupVersion::V1,
                CgroupVersionChoice::V2 => CgroupVersion::V2,
                CgroupVersionChoice::Auto => CgroupVersion::detect(),
            },
        };
        let mut extra_cgroups = match args.node {
            Some(node) => numa_cpuset(node)?,
            None => Vec::new(),
        };
        for c in &args.cgroups {
            extra_cgroups.push(cgroup::parse_setting(c)?);
        }
        let paths = jailfs::jail_paths(&args.chroot_base_dir, &exec_file, &id)?;
        let api = args.api && matches!(mode, Mode::Caisson { .. });
        Ok(Self {
            id,
            exec_file,
            exec_args: args.exec_args.clone(),
            mode,
            profile,
            cgroup_version,
            extra_cgroups,
            paths,
            uid: args.uid,
            gid: args.gid,
            netns: args.netns.clone(),
            daemonize: args.daemonize,
            runtime_dir: if args.rootless
                && args.runtime_dir == Path::new(crate::state::RUNTIME_DIR)
            {
                rootless_runtime_dir()
            } else {
                args.runtime_dir.clone()
            },
            rootless: args.rootless,
            api,
        })
    }

    /// The VM's uid and gid, given the ones `derived` from its categories:
    /// Caisson's mode takes `--uid`/`--gid` when given; Firecracker's also
    /// replaces 0 (as Kata passes it) with the derived id.
    pub fn vm_ids(&self, derived: u32) -> (u32, u32) {
        match self.mode {
            Mode::Firecracker { .. } => (
                fcmode::vm_id(self.uid, derived),
                fcmode::vm_id(self.gid, derived),
            ),
            Mode::Caisson { .. } => (self.uid.unwrap_or(derived), self.gid.unwrap_or(derived)),
        }
    }
}

/// The mode, and the warnings about flags it ignores.
fn mode(args: &RunArgs) -> Result<Mode, SettingsError> {
    if let Some(config_file) = &args.config_file {
        return Ok(Mode::Caisson {
            config_file: config_file.clone(),
        });
    }
    // Said now: after --daemonize stderr is gone.
    if let Some(w) = fcmode::root_id_warning(args.uid, args.gid) {
        log::warn!("{w}");
    }
    if !args.resource_roots.is_empty() {
        log::warn!("--resource-root has no effect without --config-file: the VM's files are those in its jail root");
    }
    if args.api {
        log::warn!("--api has no effect without --config-file: Firecracker's mode always serves the API, on {} in the jail", fcmode::API_SOCKET);
    }
    Ok(Mode::Firecracker {
        config: fcmode::config_arg(&args.exec_args)?,
    })
}

/// `--profile`, then each flag that replaces one of its values (the flags are
/// the profile's own types once parsed).
fn profile(args: &RunArgs) -> Result<Profile, SettingsError> {
    let mut profile = Profile::load(&args.profile)?;
    if args.new_pid_ns {
        profile.namespaces.pid = true;
    }
    if let Some(m) = args.selinux {
        profile.selinux.mode = m;
    }
    if let Some(m) = args.landlock {
        profile.landlock.mode = m;
    }
    if let Some(m) = args.seccomp {
        profile.seccomp.mode = m;
    }
    if !args.resource_roots.is_empty() {
        profile.resources.roots = args.resource_roots.clone();
    }
    if let Some(r) = &args.mcs_range {
        profile.selinux.range = CategoryRange::parse(r)?;
    }
    if let Some(p) = &args.parent_cgroup {
        profile.cgroup.parent = CgroupParent::parse(p)?;
    }
    for flag in &args.resource_limits {
        crate::rlimits::apply_flag(&mut profile.rlimits, flag)?;
    }
    Ok(profile)
}

/// `--node`, as Firecracker's jailer had it (cgroups_from_numa_node): cpuset.cpus
/// is the node's CPU list, cpuset.mems the node.
fn numa_cpuset(node: u32) -> Result<Vec<(String, String)>, SettingsError> {
    let path = format!("/sys/devices/system/node/node{node}/cpulist");
    let cpus = std::fs::read_to_string(&path).map_err(|source| SettingsError::Node {
        node,
        path: path.clone(),
        source,
    })?;
    Ok(vec![
        ("cpuset.cpus".into(), cpus.trim().to_string()),
        ("cpuset.mems".into(), node.to_string()),
    ])
}

/// Rootless runtime dir: `/run/user/<uid>/caisson` when that exists, else
/// `/tmp/caisson-<uid>`.
pub fn rootless_runtime_dir() -> PathBuf {
    let uid = nix::unistd::geteuid().as_raw();
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    if run_user.is_dir() {
        run_user.join("caisson")
    } else {
        PathBuf::from(format!("/tmp/caisson-{uid}"))
    }
}
