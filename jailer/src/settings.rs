//! What the jail sequence decides before any step runs: the mode (Caisson's own
//! or Firecracker's), the profile with single flags overriding single values,
//! and the paths and ids derived from them.

use std::path::{Path, PathBuf};

use crate::cgroup::{self, CgroupVersion};
use crate::cli::RunArgs;
use crate::fcmode;
use crate::jail::JailError;
use crate::mcs::CategoryRange;
use crate::profile::{CgroupVersionChoice, Profile};

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
    pub mode: Mode,
    pub profile: Profile,
    pub cgroup_version: CgroupVersion,
    pub cgroup_parent: String,
    pub extra_cgroups: Vec<(String, String)>,
    pub mcs_range: CategoryRange,
    pub runtime_dir: PathBuf,
    /// Run in a user namespace without root.
    pub rootless: bool,
    /// Caisson's mode with `--api` ([`crate::api_jail`]).
    pub api: bool,
}

impl Settings {
    /// The profile, with single flags overriding single values.
    pub fn resolve(args: &RunArgs) -> Result<Self, JailError> {
        let id = args.id.clone().ok_or(JailError::Missing { flag: "--id" })?;
        caisson::config::validate_id(&id)?;
        let exec_file = args.exec_file.clone().ok_or(JailError::Missing {
            flag: "--exec-file",
        })?;
        let mode = match &args.config_file {
            Some(config_file) => Mode::Caisson {
                config_file: config_file.clone(),
            },
            None => {
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
                Mode::Firecracker {
                    config: fcmode::config_arg(&args.exec_args)?,
                }
            }
        };
        let mut profile = Profile::load(&args.profile)?;
        if args.new_pid_ns {
            profile.namespaces.pid = true;
        }
        // (The flags are the profile's own mode types.)
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
            profile.selinux.range = r.clone();
        }
        let mcs_range = CategoryRange::parse(&profile.selinux.range)?;
        let cgroup_version = match &args.cgroup_version {
            Some(v) => CgroupVersion::parse(v)?,
            None => match profile.cgroup_version() {
                Ok(CgroupVersionChoice::V1) => CgroupVersion::V1,
                Ok(CgroupVersionChoice::V2) => CgroupVersion::V2,
                Ok(CgroupVersionChoice::Auto) => CgroupVersion::detect(),
                // Profile::parse already refuses this; never fall back silently.
                Err(value) => {
                    return Err(crate::profile::ProfileError::Value {
                        name: profile.name.clone(),
                        key: "cgroup.version",
                        value,
                        reason: "expected \"auto\", 1 or 2",
                    }
                    .into())
                }
            },
        };
        let cgroup_parent = args
            .parent_cgroup
            .clone()
            .unwrap_or_else(|| profile.cgroup.parent.clone());
        cgroup::check_parent(&cgroup_parent)?;
        let mut extra_cgroups = match args.node {
            Some(node) => numa_cpuset(node)?,
            None => Vec::new(),
        };
        for c in &args.cgroups {
            extra_cgroups.push(cgroup::parse_setting(c)?);
        }
        let api = args.api && matches!(mode, Mode::Caisson { .. });
        Ok(Self {
            id,
            exec_file,
            mode,
            profile,
            cgroup_version,
            cgroup_parent,
            extra_cgroups,
            mcs_range,
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
}

/// `--node`, as Firecracker's jailer had it (cgroups_from_numa_node): cpuset.cpus
/// is the node's CPU list, cpuset.mems the node.
fn numa_cpuset(node: u32) -> Result<Vec<(String, String)>, JailError> {
    let path = format!("/sys/devices/system/node/node{node}/cpulist");
    let cpus = std::fs::read_to_string(&path).map_err(|source| JailError::Node {
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
