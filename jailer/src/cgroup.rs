//! One cgroup per VM, `<parent>/<id>`, for cgroup v1 and v2.
//!
//! Everything the jailer writes is first computed as a [`CgroupPlan`] (directories
//! and file writes), which is unit-tested for both versions; [`CgroupPlan::apply`]
//! then performs it, [`join_self`] and [`open_v2_leaf`] put the VM's process in and
//! [`remove`] deletes the leaves.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The usual mount point of the cgroup hierarchies.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// A cgroup step that failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "invalid --parent-cgroup {value:?}: must be a relative path of [A-Za-z0-9._-] components"
    )]
    Parent { value: String },
    #[error("invalid --cgroup {value:?}: expected <controller>.<file>=<value>")]
    Setting { value: String },
    #[error("invalid --cgroup-version {value:?}: expected 1 or 2")]
    Version { value: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("cgroup {path} still has processes after killing them")]
    Busy { path: PathBuf },
}

/// cgroup v1 or v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    /// Parses Firecracker's `--cgroup-version`.
    pub fn parse(value: &str) -> Result<Self, CgroupError> {
        match value {
            "1" => Ok(Self::V1),
            "2" => Ok(Self::V2),
            _ => Err(CgroupError::Version {
                value: value.to_string(),
            }),
        }
    }

    /// v2 when `/sys/fs/cgroup` is a cgroup2 mount (a unified host), else v1.
    pub fn detect() -> Self {
        if is_cgroup2(Path::new(CGROUP_ROOT)) {
            Self::V2
        } else {
            Self::V1
        }
    }
}

/// True when `path` is a cgroup2 mount.
pub fn is_cgroup2(path: &Path) -> bool {
    matches!(nix::sys::statfs::statfs(path), Ok(s) if s.filesystem_type().0 == CGROUP2_SUPER_MAGIC)
}

/// The cgroup2 mount: `/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified`
/// on hybrid ones.
pub fn v2_root() -> PathBuf {
    if CgroupVersion::detect() == CgroupVersion::V2 {
        PathBuf::from(CGROUP_ROOT)
    } else {
        Path::new(CGROUP_ROOT).join("unified")
    }
}

/// A parent cgroup path such as `caisson` or `machine/caisson`: relative, of
/// `[A-Za-z0-9._-]` components, none `.` or `..` (so `<parent>/<id>` stays under
/// the hierarchy's root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupParent(String);

impl CgroupParent {
    /// Checks `parent` (`--parent-cgroup`, the profile's `cgroup.parent`).
    pub fn parse(parent: &str) -> Result<Self, CgroupError> {
        let ok = !parent.is_empty()
            && !parent.starts_with('/')
            && parent.split('/').all(|c| {
                !c.is_empty()
                    && c != "."
                    && c != ".."
                    && c.chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
            });
        if ok {
            Ok(Self(parent.to_string()))
        } else {
            Err(CgroupError::Parent {
                value: parent.to_string(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CgroupParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses Firecracker's `--cgroup <file>=<value>`, e.g. `cpuset.cpus=0`.
pub fn parse_setting(arg: &str) -> Result<(String, String), CgroupError> {
    let err = || CgroupError::Setting {
        value: arg.to_string(),
    };
    let (file, value) = arg.split_once('=').ok_or_else(err)?;
    let (controller, rest) = file.split_once('.').ok_or_else(err)?;
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    };
    if !name_ok(controller)
        || !name_ok(rest)
        || controller == "cgroup"
        || value.is_empty()
        || value.contains('\n')
    {
        return Err(err());
    }
    Ok((file.to_string(), value.to_string()))
}

/// The limits of one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpu_quota_us: u64,
    pub cpu_period_us: u64,
    pub pids_max: u64,
    /// `--cgroup file=value` settings, written last.
    pub extra: Vec<(String, String)>,
}

/// One file write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileWrite {
    pub path: PathBuf,
    pub value: String,
    /// Skipped when the file does not exist (e.g. swap accounting off).
    pub optional: bool,
}

/// What the jailer does to the cgroup filesystem for one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPlan {
    pub version: CgroupVersion,
    /// Directories to create, parents first.
    pub create: Vec<PathBuf>,
    /// The VM's own directories (one per v1 controller, one for v2): removed at the end.
    pub leaves: Vec<PathBuf>,
    pub writes: Vec<FileWrite>,
    /// v1: each leaf's controller hierarchy (`<root>/<controller>`), in the
    /// leaves' order: where the child opens its way in before the root change.
    #[serde(default)]
    pub hierarchies: Vec<PathBuf>,
}

fn controller_of(file: &str) -> &str {
    file.split('.').next().unwrap_or(file)
}

fn w(path: PathBuf, value: impl Into<String>, optional: bool) -> FileWrite {
    FileWrite {
        path,
        value: value.into(),
        optional,
    }
}

/// The v1 plan: `<root>/<controller>/<parent>/<id>` for memory, cpu, pids and any
/// controller named by an extra setting.
pub fn plan_v1(root: &Path, parent: &str, id: &str, limits: &Limits) -> CgroupPlan {
    let mut controllers = vec!["memory", "cpu", "pids"];
    for (file, _) in &limits.extra {
        let c = controller_of(file);
        if !controllers.contains(&c) {
            controllers.push(c);
        }
    }
    let mut create = Vec::new();
    let mut leaves = Vec::new();
    let mut hierarchies = Vec::new();
    for c in &controllers {
        hierarchies.push(root.join(c));
        let mut dir = root.join(c);
        for comp in parent.split('/') {
            dir.push(comp);
            create.push(dir.clone());
        }
        dir.push(id);
        create.push(dir.clone());
        leaves.push(dir);
    }
    let leaf = |c: &str| root.join(c).join(parent).join(id);
    let mut writes = vec![
        w(
            leaf("memory").join("memory.limit_in_bytes"),
            limits.memory_bytes.to_string(),
            false,
        ),
        w(
            leaf("memory").join("memory.memsw.limit_in_bytes"),
            limits.memory_bytes.to_string(),
            true,
        ),
        w(
            leaf("cpu").join("cpu.cfs_period_us"),
            limits.cpu_period_us.to_string(),
            false,
        ),
        w(
            leaf("cpu").join("cpu.cfs_quota_us"),
            limits.cpu_quota_us.to_string(),
            false,
        ),
        w(
            leaf("pids").join("pids.max"),
            limits.pids_max.to_string(),
            false,
        ),
    ];
    for (file, value) in &limits.extra {
        writes.push(w(
            leaf(controller_of(file)).join(file),
            value.clone(),
            false,
        ));
    }
    CgroupPlan {
        version: CgroupVersion::V1,
        create,
        leaves,
        writes,
        hierarchies,
    }
}

/// The v2 plan: `<root>/<parent>/<id>`, controllers enabled in every ancestor's
/// `cgroup.subtree_control`, then `memory.max`, `memory.swap.max`, `cpu.max`, `pids.max`.
pub fn plan_v2(root: &Path, parent: &str, id: &str, limits: &Limits) -> CgroupPlan {
    let mut controllers = vec!["memory", "cpu", "pids"];
    for (file, _) in &limits.extra {
        let c = controller_of(file);
        if !controllers.contains(&c) {
            controllers.push(c);
        }
    }
    let enable = controllers
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut create = Vec::new();
    let mut writes = vec![w(
        root.join("cgroup.subtree_control"),
        enable.clone(),
        false,
    )];
    let mut dir = root.to_path_buf();
    for comp in parent.split('/') {
        dir.push(comp);
        create.push(dir.clone());
        writes.push(w(dir.join("cgroup.subtree_control"), enable.clone(), false));
    }
    let leaf = dir.join(id);
    create.push(leaf.clone());
    writes.extend([
        w(
            leaf.join("memory.max"),
            limits.memory_bytes.to_string(),
            false,
        ),
        w(leaf.join("memory.swap.max"), "0", true),
        w(
            leaf.join("cpu.max"),
            format!("{} {}", limits.cpu_quota_us, limits.cpu_period_us),
            false,
        ),
        w(leaf.join("pids.max"), limits.pids_max.to_string(), false),
    ]);
    for (file, value) in &limits.extra {
        writes.push(w(leaf.join(file), value.clone(), false));
    }
    CgroupPlan {
        version: CgroupVersion::V2,
        create,
        leaves: vec![leaf],
        writes,
        hierarchies: Vec::new(),
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Writes a file that exists: a missing one is `NotFound`, which an optional
/// write takes as "not on this kernel" (no `stat` first: one syscall less).
fn write_existing(path: &Path, value: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    std::io::Write::write_all(&mut f, value.as_bytes())
}

impl CgroupPlan {
    /// Creates the directories and writes the limits. On failure the leaves created
    /// so far are removed.
    pub fn apply(&self) -> Result<(), CgroupError> {
        let mut created = Vec::new();
        let result = self.apply_inner(&mut created);
        if result.is_err() {
            let _ = remove(&created);
        }
        result
    }

    fn apply_inner(&self, created: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
        let mut not_cpuset: Vec<&PathBuf> = Vec::new();
        for dir in &self.create {
            match std::fs::create_dir(dir) {
                Ok(()) => {
                    if self.leaves.contains(dir) {
                        created.push(dir.clone());
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::AlreadyExists
                        && !self.leaves.contains(dir) => {}
                Err(source) => {
                    return Err(CgroupError::Io {
                        action: "create",
                        path: dir.clone(),
                        source,
                    })
                }
            }
            // One probe per hierarchy: a hierarchy without cpuset.cpus in its
            // first new directory has none in the others.
            if self.version == CgroupVersion::V1 {
                let hierarchy = self.hierarchies.iter().find(|h| dir.starts_with(h));
                if !hierarchy.is_some_and(|h| not_cpuset.contains(&h)) && !inherit_cpuset(dir)? {
                    not_cpuset.extend(hierarchy);
                }
            }
        }
        for fw in &self.writes {
            if !fw.optional {
                write_file(&fw.path, &fw.value)?;
                continue;
            }
            match write_existing(&fw.path, &fw.value) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                r => r.map_err(|source| CgroupError::Write {
                    path: fw.path.clone(),
                    value: fw.value.clone(),
                    source,
                })?,
            }
        }
        Ok(())
    }
}

/// A new v1 cpuset has empty `cpuset.cpus`/`cpuset.mems`; copy the parent's (as
/// Firecracker's jailer does), otherwise no task can join it. False when `dir`
/// is not in a cpuset hierarchy.
fn inherit_cpuset(dir: &Path) -> Result<bool, CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let path = dir.join(file);
        let Ok(current) = std::fs::read_to_string(&path) else {
            // Not a cpuset hierarchy (no cpuset.cpus): no cpuset.mems either.
            return Ok(false);
        };
        if !current.trim().is_empty() {
            continue;
        }
        let Some(parent) = dir.parent() else { continue };
        let value =
            std::fs::read_to_string(parent.join(file)).map_err(|source| CgroupError::Io {
                action: "read",
                path: parent.join(file),
                source,
            })?;
        write_file(&path, value.trim())?;
    }
    Ok(true)
}

/// How a VM's process gets into its cgroup without migrating a whole process:
/// `cgroup.procs` writes take the kernel's global threadgroup lock, whose RCU
/// grace period cost 5-12 ms per start here.
///
/// v2: the child is born in its leaf (`CLONE_INTO_CGROUP` with this directory fd).
/// Returns `None` for v1 and for a plan without leaves (rootless without delegation).
pub fn open_v2_leaf(plan: &CgroupPlan) -> Result<Option<std::os::fd::OwnedFd>, CgroupError> {
    use nix::fcntl::{open, OFlag};
    let (CgroupVersion::V2, Some(leaf)) = (plan.version, plan.leaves.first()) else {
        return Ok(None);
    };
    let fd = open(
        leaf,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|errno| CgroupError::Io {
        action: "open",
        path: leaf.clone(),
        source: errno.into(),
    })?;
    Ok(Some(fd))
}

/// v1: the child's way into its leaves, opened before its root change (the
/// cgroup filesystem is out of reach after it) while the parent may still be
/// making them: an `O_PATH` descriptor on each leaf's hierarchy, and the leaf's
/// `tasks` file relative to it. The descriptors are close-on-exec, and
/// [`join_self`] consumes them.
pub struct JoinPoints {
    points: Vec<(std::os::fd::OwnedFd, PathBuf)>,
}

/// Opens the [`JoinPoints`] of `plan` (none for v2, or without leaves).
pub fn open_join_points(plan: &CgroupPlan) -> Result<JoinPoints, CgroupError> {
    use nix::fcntl::{open, OFlag};
    let mut points = Vec::new();
    if plan.version == CgroupVersion::V1 {
        for (leaf, hierarchy) in plan.leaves.iter().zip(&plan.hierarchies) {
            let rel = leaf
                .strip_prefix(hierarchy)
                .map_err(|_| CgroupError::Io {
                    action: "find the hierarchy of",
                    path: leaf.clone(),
                    source: std::io::ErrorKind::InvalidInput.into(),
                })?
                .join("tasks");
            let fd = open(
                hierarchy,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|errno| CgroupError::Io {
                action: "open",
                path: hierarchy.clone(),
                source: errno.into(),
            })?;
            points.push((fd, rel));
        }
    }
    Ok(JoinPoints { points })
}

/// v1: the child moves itself into every leaf by writing `0` to `tasks`. Moving
/// the calling thread skips the global lock; the caller must be single-threaded
/// (the jailed child is, until it execs), so the thread is the whole process.
/// Does nothing for v2 (see [`open_v2_leaf`]).
pub fn join_self(points: JoinPoints) -> Result<(), CgroupError> {
    use nix::fcntl::{openat, OFlag};
    for (dir, rel) in points.points {
        let err = |source: std::io::Error| CgroupError::Write {
            path: rel.clone(),
            value: "0".into(),
            source,
        };
        // Within the hierarchy's own filesystem: no mount is crossed.
        let fd = openat(
            &dir,
            &rel,
            OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|errno| err(errno.into()))?;
        let mut f = std::fs::File::from(fd);
        std::io::Write::write_all(&mut f, b"0").map_err(err)?;
    }
    Ok(())
}

/// Kills what is left in the leaves and removes them. Missing leaves are fine.
pub fn remove(leaves: &[PathBuf]) -> Result<(), CgroupError> {
    let mut first_err = None;
    for leaf in leaves {
        if !leaf.exists() {
            continue;
        }
        let mut removed = false;
        for attempt in 0..200 {
            match std::fs::remove_dir(leaf) {
                Ok(()) => {
                    removed = true;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    removed = true;
                    break;
                }
                Err(_) => {
                    if attempt % 20 == 0 {
                        kill_members(leaf);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
        if !removed && first_err.is_none() {
            first_err = Some(CgroupError::Busy { path: leaf.clone() });
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Removes the `depth` directories above each (already removed) leaf, nearest
/// first, while they are empty: a parent still holding another VM stays. Call it
/// under the runtime lock ([`crate::state::RuntimeLock`]) that starts take.
pub fn remove_empty_parents(leaves: &[PathBuf], depth: usize) {
    for leaf in leaves {
        let mut dir = leaf.parent();
        for _ in 0..depth {
            let Some(d) = dir else { break };
            // Not empty (another VM, or an admin's settings in use): leave it and
            // everything above it.
            if std::fs::remove_dir(d).is_err() && d.exists() {
                break;
            }
            dir = d.parent();
        }
    }
}

fn kill_members(leaf: &Path) {
    if std::fs::write(leaf.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    if let Ok(procs) = std::fs::read_to_string(leaf.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            memory_bytes: 256 << 20,
            cpu_quota_us: 200_000,
            cpu_period_us: 100_000,
            pids_max: 64,
            extra: vec![("cpuset.cpus".into(), "0".into())],
        }
    }

    fn has(plan: &CgroupPlan, path: &str, value: &str) -> bool {
        plan.writes
            .iter()
            .any(|w| w.path == Path::new(path) && w.value == value)
    }

    #[test]
    fn v1_plan() {
        let p = plan_v1(Path::new("/cg"), "caisson", "vm1", &limits());
        assert_eq!(p.version, CgroupVersion::V1);
        assert_eq!(
            p.leaves,
            vec![
                PathBuf::from("/cg/memory/caisson/vm1"),
                PathBuf::from("/cg/cpu/caisson/vm1"),
                PathBuf::from("/cg/pids/caisson/vm1"),
                PathBuf::from("/cg/cpuset/caisson/vm1"),
            ]
        );
        assert_eq!(p.create[0], PathBuf::from("/cg/memory/caisson"));
        assert_eq!(p.create[1], PathBuf::from("/cg/memory/caisson/vm1"));
        assert!(has(
            &p,
            "/cg/memory/caisson/vm1/memory.limit_in_bytes",
            "268435456"
        ));
        assert!(has(
            &p,
            "/cg/memory/caisson/vm1/memory.memsw.limit_in_bytes",
            "268435456"
        ));
        assert!(has(&p, "/cg/cpu/caisson/vm1/cpu.cfs_quota_us", "200000"));
        assert!(has(&p, "/cg/cpu/caisson/vm1/cpu.cfs_period_us", "100000"));
        assert!(has(&p, "/cg/pids/caisson/vm1/pids.max", "64"));
        assert!(has(&p, "/cg/cpuset/caisson/vm1/cpuset.cpus", "0"));
        // The period is written before the quota.
        let pos = |f: &str| p.writes.iter().position(|w| w.path.ends_with(f)).unwrap();
        assert!(pos("cpu.cfs_period_us") < pos("cpu.cfs_quota_us"));
    }

    #[test]
    fn v2_plan() {
        let p = plan_v2(Path::new("/cg"), "machine/caisson", "vm1", &limits());
        assert_eq!(p.leaves, vec![PathBuf::from("/cg/machine/caisson/vm1")]);
        assert_eq!(
            p.create,
            vec![
                PathBuf::from("/cg/machine"),
                PathBuf::from("/cg/machine/caisson"),
                PathBuf::from("/cg/machine/caisson/vm1"),
            ]
        );
        let enable = "+memory +cpu +pids +cpuset";
        assert!(has(&p, "/cg/cgroup.subtree_control", enable));
        assert!(has(&p, "/cg/machine/cgroup.subtree_control", enable));
        assert!(has(
            &p,
            "/cg/machine/caisson/cgroup.subtree_control",
            enable
        ));
        assert!(has(&p, "/cg/machine/caisson/vm1/memory.max", "268435456"));
        assert!(has(&p, "/cg/machine/caisson/vm1/memory.swap.max", "0"));
        assert!(has(&p, "/cg/machine/caisson/vm1/cpu.max", "200000 100000"));
        assert!(has(&p, "/cg/machine/caisson/vm1/pids.max", "64"));
        assert!(has(&p, "/cg/machine/caisson/vm1/cpuset.cpus", "0"));
        assert!(!p
            .writes
            .iter()
            .any(|w| w.path.ends_with("vm1/cgroup.subtree_control")));
    }

    #[test]
    fn settings_and_parents_are_checked() {
        assert_eq!(
            parse_setting("cpuset.cpus=0-1").unwrap(),
            ("cpuset.cpus".into(), "0-1".into())
        );
        for bad in [
            "cpuset.cpus",
            "=1",
            "cpus=1",
            "../x.y=1",
            "cgroup.procs=1",
            "memory.max=",
        ] {
            let err = parse_setting(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        assert_eq!(CgroupParent::parse("caisson").unwrap().as_str(), "caisson");
        assert!(CgroupParent::parse("a/b-c.d").is_ok());
        for bad in ["", "/abs", "a/../b", "a//b", "a b", "a/./b"] {
            assert!(CgroupParent::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(CgroupVersion::parse("2").unwrap(), CgroupVersion::V2);
        assert!(CgroupVersion::parse("3")
            .unwrap_err()
            .to_string()
            .contains("\"3\""));
    }

    #[test]
    fn apply_and_remove_on_a_fake_tree() {
        // Plain directories stand in for cgroupfs: the plan's files are created by the write.
        let root = crate::mcs::tests::tempdir("cg-fake");
        let mut l = limits();
        l.extra.clear();
        let p = plan_v2(&root, "caisson", "vm1", &l);
        p.apply().unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("caisson/vm1/cpu.max")).unwrap(),
            "200000 100000"
        );
        // The optional swap file did not exist, so it was skipped.
        assert!(!root.join("caisson/vm1/memory.swap.max").exists());
        // A second VM with the same id is refused (the leaf exists) and the first
        // VM's leaf is left alone.
        let err = p.apply().unwrap_err().to_string();
        assert!(err.contains("caisson/vm1"), "{err}");
        assert!(root.join("caisson/vm1/cpu.max").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
