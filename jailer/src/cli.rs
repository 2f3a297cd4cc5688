//! Command-line flags: Firecracker's jailer flags with their meaning, plus Caisson's.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::profile::{LandlockMode, SeccompMode, SelinuxMode};

/// caisson-jailer: confines one Caisson microVM.
#[derive(Debug, Parser)]
#[command(
    name = "caisson-jailer",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Jail and run a VM (the default).
    Run(Box<RunArgs>),
    /// Compare a running VM's confinement (from /proc) with what was applied.
    Audit(AuditArgs),
    /// Undo everything for a VM whose jailer was killed (--id), or for all such VMs (--stale).
    Cleanup(CleanupArgs),
}

#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// VM id: 1 to 64 characters of [A-Za-z0-9-].
    #[arg(long)]
    pub id: Option<String>,
    /// The VMM binary; copied into the jail and run as /<file name>.
    #[arg(long)]
    pub exec_file: Option<PathBuf>,
    /// Run the VM as this uid (default: derived from its MCS categories; 0, as Kata
    /// passes it, is accepted with a warning and replaced by the derived uid).
    #[arg(long)]
    pub uid: Option<u32>,
    /// Run the VM as this gid (default: derived from its MCS categories).
    #[arg(long)]
    pub gid: Option<u32>,
    /// Base of the jail directories.
    #[arg(long, default_value = "/srv/jailer")]
    pub chroot_base_dir: PathBuf,
    /// NUMA node (Firecracker's older jailer, still passed by Kata): the VM's cpuset
    /// gets the node's CPUs and memory.
    #[arg(long)]
    pub node: Option<u32>,
    /// Join this network namespace (e.g. /var/run/netns/vm1) instead of a new empty one.
    #[arg(long)]
    pub netns: Option<PathBuf>,
    /// Detach: new session, stdio to /dev/null.
    #[arg(long)]
    pub daemonize: bool,
    /// Run the VM in a new pid namespace (on in the strict profile anyway).
    #[arg(long)]
    pub new_pid_ns: bool,
    /// A cgroup file to write, <file>=<value> (repeatable), e.g. cpuset.cpus=0.
    #[arg(long = "cgroup")]
    pub cgroups: Vec<String>,
    /// cgroup version, 1 or 2 (default: the profile's, "auto" by default).
    #[arg(long)]
    pub cgroup_version: Option<String>,
    /// The parent cgroup of the VM's cgroup (default: the profile's, "caisson").
    #[arg(long)]
    pub parent_cgroup: Option<String>,
    /// <resource>=<value>, resource one of fsize, no-file, nproc (repeatable).
    #[arg(long = "resource-limit")]
    pub resource_limits: Vec<String>,
    /// Isolation profile: a shipped name (strict, dev) or a path to a TOML file.
    #[arg(long, default_value = "strict")]
    pub profile: String,
    /// SELinux labelling (default: the profile's, auto).
    #[arg(long, value_enum)]
    pub selinux: Option<SelinuxMode>,
    /// Landlock (default: the profile's, best-effort).
    #[arg(long, value_enum)]
    pub landlock: Option<LandlockMode>,
    /// The VMM's seccomp filters; off passes --no-seccomp to the VMM.
    #[arg(long, value_enum)]
    pub seccomp: Option<SeccompMode>,
    /// The VM config (Firecracker's JSON schema) to confine, in a jail of the
    /// jailer's own (the VMM runs it with --no-api). Without it the jailer works as
    /// Firecracker's: the orchestrator fills the jail root, the arguments after --
    /// go to the VMM unchanged (a --config-file among them is read in the jail
    /// root), the VMM serves its API on /run/firecracker.socket in the jail, and
    /// /<exec-file name>.pid holds its pid.
    #[arg(long)]
    pub config_file: Option<PathBuf>,
    /// With --config-file: the VMM serves its API on /run/caisson.socket in the
    /// jail (instead of --no-api), and may write snapshot files in /snapshots
    /// there; both host paths are logged and kept in the state file.
    #[arg(long)]
    pub api: bool,
    /// A directory the VM's files must resolve under (repeatable; replaces the
    /// profile's resources.roots).
    #[arg(long = "resource-root")]
    pub resource_roots: Vec<PathBuf>,
    /// Run without root in a user namespace.
    #[arg(long)]
    pub rootless: bool,
    /// MCS categories to allocate from, cLO.cHI (default: the profile's, c0.c1023).
    #[arg(long)]
    pub mcs_range: Option<String>,
    /// Runtime state directory.
    #[arg(long, default_value = crate::state::RUNTIME_DIR)]
    pub runtime_dir: PathBuf,
    /// Arguments after `--` are passed to the exec file.
    #[arg(last = true)]
    pub exec_args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    #[arg(long)]
    pub id: String,
    /// Whether the exec target installs a seccomp filter of its own: 2 (as the VMM does)
    /// or 0 (default: 2 if the VM's seccomp mode is on, else 0). The jailer's baseline
    /// filters, when the profile has them, are expected on top.
    #[arg(long)]
    pub expect_seccomp: Option<u8>,
    #[arg(long, default_value = crate::state::RUNTIME_DIR)]
    pub runtime_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    /// Undo this VM (through its jailer when it is alive).
    #[arg(long, required_unless_present = "stale", conflicts_with = "stale")]
    pub id: Option<String>,
    /// Undo every VM whose jailer and VM are both gone (each start does this too).
    #[arg(long)]
    pub stale: bool,
    #[arg(long, default_value = crate::state::RUNTIME_DIR)]
    pub runtime_dir: PathBuf,
}
