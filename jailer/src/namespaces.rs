//! Namespaces of the jailed process: new mount, ipc, uts and cgroup namespaces, the
//! network namespace joined from `--netns` or a new empty one. The pid namespace
//! is created by the `clone` in [`crate::supervise`] (only children enter a new pid
//! namespace), the user namespace too in rootless mode.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;

use crate::profile::Namespaces;

/// A namespace step that failed.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("cannot open network namespace {path}: {errno}")]
    OpenNetns { path: String, errno: nix::Error },
    #[error("cannot unshare namespaces {flags}: {errno}")]
    Unshare { flags: String, errno: nix::Error },
    #[error("cannot join network namespace {path}: {errno}")]
    Setns { path: String, errno: nix::Error },
    #[error("cannot set hostname {name:?}: {errno}")]
    Hostname { name: String, errno: nix::Error },
    #[error("cannot write {value} to {path}: {source}")]
    Sysctl {
        path: &'static str,
        value: &'static str,
        source: std::io::Error,
    },
    #[error("cannot make a network namespace ahead of the clone: {0}")]
    Thread(String),
    #[error("cannot write {path}: {source}")]
    IdMap {
        path: String,
        source: std::io::Error,
    },
}

/// An opened `--netns` file, to join in the child.
#[derive(Debug)]
pub struct Netns {
    pub path: String,
    pub fd: OwnedFd,
}

/// Opens `--netns` before anything else changes.
pub fn open_netns(path: &Path) -> Result<Netns, NamespaceError> {
    let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|errno| {
        NamespaceError::OpenNetns {
            path: path.display().to_string(),
            errno,
        }
    })?;
    Ok(Netns {
        path: path.display().to_string(),
        fd,
    })
}

/// A new, empty network namespace made before the clone on a thread of its own,
/// so that its cost (~0.9 ms here, the dearest namespace by far) overlaps the
/// jailer's own steps instead of lengthening the child's; the child joins it
/// with `setns`, as it joins `--netns`. Only the held fd keeps it alive.
#[derive(Debug)]
pub struct MadeNetns {
    pub(crate) fd: OwnedFd,
}

/// The thread making a [`MadeNetns`]; [`NetnsAhead::finish`] joins it, which
/// must happen before any fork or clone (the process is single-threaded again).
pub struct NetnsAhead(std::thread::JoinHandle<Result<MadeNetns, NamespaceError>>);

impl NetnsAhead {
    /// Starts the thread (root only: making a network namespace needs
    /// CAP_SYS_ADMIN in the jailer's user namespace).
    pub fn start() -> Result<Self, NamespaceError> {
        std::thread::Builder::new()
            .name("netns".into())
            .spawn(|| {
                // Only this thread moves to the new namespace; it ends here.
                unshare(CloneFlags::CLONE_NEWNET).map_err(|errno| NamespaceError::Unshare {
                    flags: "CLONE_NEWNET (ahead, on a thread)".into(),
                    errno,
                })?;
                let fd = open(
                    "/proc/thread-self/ns/net",
                    OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|errno| NamespaceError::OpenNetns {
                    path: "/proc/thread-self/ns/net".into(),
                    errno,
                })?;
                Ok(MadeNetns { fd })
            })
            .map(NetnsAhead)
            .map_err(|e| NamespaceError::Thread(e.to_string()))
    }

    /// Waits for the thread and returns its namespace.
    pub fn finish(self) -> Result<MadeNetns, NamespaceError> {
        self.0
            .join()
            .map_err(|_| NamespaceError::Thread("the netns thread panicked".into()))?
    }
}

/// The flags for the `clone` that starts the jailed child.
pub fn clone_flags(ns: &Namespaces, rootless: bool) -> CloneFlags {
    let mut f = CloneFlags::empty();
    if ns.pid {
        f |= CloneFlags::CLONE_NEWPID;
    }
    if rootless {
        f |= CloneFlags::CLONE_NEWUSER;
    }
    f
}

/// The flags `enter` unshares (the mount namespace always).
pub fn unshare_flags(ns: &Namespaces, join_netns: bool) -> CloneFlags {
    let mut f = CloneFlags::CLONE_NEWNS;
    if ns.ipc {
        f |= CloneFlags::CLONE_NEWIPC;
    }
    if ns.uts {
        f |= CloneFlags::CLONE_NEWUTS;
    }
    if ns.cgroup {
        f |= CloneFlags::CLONE_NEWCGROUP;
    }
    if ns.net && !join_netns {
        f |= CloneFlags::CLONE_NEWNET;
    }
    f
}

/// The names (as in `/proc/<pid>/ns/`) of the namespaces the VM gets of its own.
pub fn new_namespace_names(ns: &Namespaces, join_netns: bool, rootless: bool) -> Vec<String> {
    let mut v = vec!["mnt".to_string()];
    let mut add = |on: bool, name: &str| {
        if on {
            v.push(name.to_string());
        }
    };
    add(ns.pid, "pid");
    add(ns.ipc, "ipc");
    add(ns.uts, "uts");
    add(ns.cgroup, "cgroup");
    add(ns.net && !join_netns, "net");
    add(rootless, "user");
    v
}

/// In the child, after it entered its cgroup: unshares the namespaces, joins the
/// network namespace and names the host after the VM.
pub fn enter(
    ns: &Namespaces,
    netns: Option<&Netns>,
    made: Option<&MadeNetns>,
    hostname: &str,
) -> Result<(), NamespaceError> {
    let flags = unshare_flags(ns, netns.is_some() || made.is_some());
    unshare(flags).map_err(|errno| NamespaceError::Unshare {
        flags: format!("{flags:?}"),
        errno,
    })?;
    let join = netns
        .map(|n| (n.fd.as_fd(), n.path.as_str()))
        .or(made.map(|m| (m.fd.as_fd(), "(new, made ahead)")));
    if let Some((fd, path)) = join {
        setns(fd, CloneFlags::CLONE_NEWNET).map_err(|errno| NamespaceError::Setns {
            path: path.to_string(),
            errno,
        })?;
    }
    if ns.uts {
        nix::unistd::sethostname(hostname).map_err(|errno| NamespaceError::Hostname {
            name: hostname.to_string(),
            errno,
        })?;
    }
    Ok(())
}

/// The limit on user namespaces, which each user namespace keeps its own copy of.
pub const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";

/// Rootless, in the child, inside its own user namespace and before the root
/// change hides /proc: `user.max_user_namespaces = 0` there, so that no user
/// namespace can be created under it (ENOSPC), a second layer under the seccomp
/// baseline's EPERM. (With root there is no user namespace of the VM's own, and
/// the host's limit is not the jailer's to change.)
pub fn forbid_nested_user_namespaces() -> Result<(), NamespaceError> {
    std::fs::write(MAX_USER_NAMESPACES, "0\n").map_err(|source| NamespaceError::Sysctl {
        path: MAX_USER_NAMESPACES,
        value: "0",
        source,
    })
}

/// Rootless: maps the VM's uid/gid to the caller's ids in the child's user namespace
/// (one id each; `setgroups` denied, as an unprivileged writer must).
pub fn write_id_maps(
    child: i32,
    uid: u32,
    gid: u32,
    outside_uid: u32,
    outside_gid: u32,
) -> Result<(), NamespaceError> {
    let w = |file: &str, text: String| {
        let path = format!("/proc/{child}/{file}");
        std::fs::write(&path, text).map_err(|source| NamespaceError::IdMap { path, source })
    };
    w("setgroups", "deny".into())?;
    w("uid_map", format!("{uid} {outside_uid} 1\n"))?;
    w("gid_map", format!("{gid} {outside_gid} 1\n"))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn flags_follow_the_profile() {
        let strict = Profile::load("strict").unwrap().namespaces;
        let f = unshare_flags(&strict, false);
        assert!(f.contains(
            CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWCGROUP
                | CloneFlags::CLONE_NEWNET
        ));
        // Joining --netns: no new network namespace.
        assert!(!unshare_flags(&strict, true).contains(CloneFlags::CLONE_NEWNET));
        assert_eq!(clone_flags(&strict, false), CloneFlags::CLONE_NEWPID);
        assert!(clone_flags(&strict, true).contains(CloneFlags::CLONE_NEWUSER));
        let dev = Profile::load("dev").unwrap().namespaces;
        assert_eq!(clone_flags(&dev, false), CloneFlags::empty());
        assert_eq!(
            new_namespace_names(&strict, false, false),
            ["mnt", "pid", "ipc", "uts", "cgroup", "net"]
        );
        assert!(!new_namespace_names(&dev, false, false).contains(&"pid".to_string()));
    }

    #[test]
    fn missing_netns_is_named() {
        let err = open_netns(Path::new("/run/netns/does-not-exist"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/run/netns/does-not-exist"), "{err}");
    }
}
