//! The next start's network namespace, made ahead. A new network namespace
//! costs ~0.7 ms here (its loopback, sysctls and netfilter tables), and on
//! these 2 vCPUs a thread beside the jail sequence mostly waits for the same
//! core. So once a VM runs, its jailer makes one more, empty, namespace at
//! idle priority and binds it on `<runtime dir>/netns/next/ns` (as `ip netns
//! add` does); the next start takes it instead of making one.
//!
//! Taking it is a rename of its directory to `netns/taken.<jailer pid>`, not an
//! unmount: an unmount waits for an RCU grace period (40-90 µs here) on the
//! start's serial path. The taker unbinds it once its VM runs (before making
//! the next one, or when the VM ends); the sweep of each start unbinds those of
//! jailers that are gone.
//!
//! Each namespace serves exactly one VM: it is taken and made only under the
//! runtime lock, and once taken it is no longer in the slot, so no second start
//! can open it. Nobody but root enters it before (the directories are 0700;
//! joining needs CAP_SYS_ADMIN). What is bound there is checked to be a network
//! namespace other than the jailer's own before it is used; anything else is
//! ignored.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;

use crate::namespaces::MadeNetns;
use crate::state::RuntimeLock;

/// A step of making the next namespace that failed (logged, never fatal: the
/// next start then makes its own).
#[derive(Debug, thiserror::Error)]
pub enum NetnsPoolError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a network namespace for the next start: {0}")]
    Unshare(nix::Error),
    #[error("cannot bind the next start's network namespace on {path}: {errno}")]
    Bind { path: PathBuf, errno: nix::Error },
    #[error(transparent)]
    Lock(#[from] crate::state::StateError),
}

/// `nsfs`'s magic (linux/magic.h).
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// `NS_GET_NSTYPE` (linux/nsfs.h: _IO(0xb7, 0x3)).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Where the next start's namespace is bound.
pub fn slot(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("netns").join("next").join("ns")
}

/// Where jailer `pid` put the namespace it took.
fn taken_dir(runtime_dir: &Path, pid: u32) -> PathBuf {
    runtime_dir.join("netns").join(format!("{TAKEN}{pid}"))
}

const TAKEN: &str = "taken.";

/// The network namespace `fd` refers to, if it is one, other than the caller's.
fn fresh_netns(fd: &OwnedFd) -> bool {
    let Ok(fs) = nix::sys::statfs::fstatfs(fd) else {
        return false;
    };
    if fs.filesystem_type() != nix::sys::statfs::FsType(NSFS_MAGIC) {
        return false;
    }
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the open fd.
    let kind = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE) };
    if kind != libc::CLONE_NEWNET {
        return false;
    }
    let ino = |m: std::fs::Metadata| m.ino();
    let own = std::fs::metadata("/proc/self/ns/net").map(ino).ok();
    let this = nix::sys::stat::fstat(fd).map(|s| s.st_ino).ok();
    this.is_some() && this != own
}

/// Takes the namespace made ahead, if there is a usable one. The caller holds
/// the runtime lock (`_held`), so no other start takes it too.
pub fn take(runtime_dir: &Path, _held: &RuntimeLock) -> Option<MadeNetns> {
    let path = slot(runtime_dir);
    let fd = open(
        &path,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .ok()?;
    if !fresh_netns(&fd) {
        return None;
    }
    // Out of the slot, it is this start's alone (the fd keeps it alive); it is
    // unbound later (`release_taken`), off the start's path.
    let moved = path.parent().is_some_and(|dir| {
        std::fs::rename(dir, taken_dir(runtime_dir, std::process::id())).is_ok()
    });
    if !moved {
        umount2(&path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).ok()?;
    }
    Some(MadeNetns { fd })
}

/// Unbinds the namespace this jailer took, if any (its VM is running or over:
/// the VM holds it by itself).
pub fn release_taken(runtime_dir: &Path) {
    unbind_dir(&taken_dir(runtime_dir, std::process::id()));
}

/// Under the runtime lock: unbinds the namespaces taken by jailers that are gone
/// (killed before they unbound them).
pub fn sweep_taken(runtime_dir: &Path, _held: &RuntimeLock) {
    let Ok(entries) = std::fs::read_dir(runtime_dir.join("netns")) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(TAKEN))
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|pid| !crate::mcs::pid_alive(pid)) {
            unbind_dir(&e.path());
        }
    }
}

/// Unbinds and removes `dir/ns` and `dir`.
fn unbind_dir(dir: &Path) {
    let ns = dir.join("ns");
    while umount2(&ns, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).is_ok() {}
    let _ = std::fs::remove_file(&ns);
    let _ = std::fs::remove_dir(dir);
}

/// An older jailer bound the namespace on the file `netns/next` itself: unbind
/// and remove it, so that the directory can be made there.
fn drop_old_slot(next: &Path) {
    if std::fs::symlink_metadata(next).is_ok_and(|m| !m.is_dir()) {
        while umount2(next, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).is_ok() {}
        let _ = std::fs::remove_file(next);
    }
}

/// Makes the next start's namespace and binds it on the slot, unless one is
/// there. Call on a thread of its own, which ends in the new namespace.
pub fn make_next(runtime_dir: &Path) -> Result<(), NetnsPoolError> {
    // The one this start took is its VM's alone by now.
    release_taken(runtime_dir);
    let path = slot(runtime_dir);
    let next = path.parent().unwrap_or(runtime_dir);
    let dir = next.parent().unwrap_or(runtime_dir);
    let io = |action, p: &Path| {
        let p = p.to_path_buf();
        move |source| NetnsPoolError::Io {
            action,
            path: p,
            source,
        }
    };
    let taken = |p: &Path| {
        open(
            p,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .is_ok_and(|fd| fresh_netns(&fd))
    };
    if taken(&path) {
        return Ok(());
    }
    // Made before the lock is taken: it is the slow part.
    unshare(CloneFlags::CLONE_NEWNET).map_err(NetnsPoolError::Unshare)?;
    let _lock = RuntimeLock::take(runtime_dir)?;
    if taken(&path) {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .map_err(io("create", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io("chmod", dir))?;
    drop_old_slot(next);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(next)
        .map_err(io("create", next))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("create", &path))?;
    let none: Option<&str> = None;
    mount(
        Some("/proc/thread-self/ns/net"),
        &path,
        none,
        MsFlags::MS_BIND,
        none,
    )
    .map_err(|errno| NetnsPoolError::Bind {
        path: path.clone(),
        errno,
    })
}

/// Unbinds every namespace of the pool, made ahead or taken (as `umount` of
/// each would), so that the runtime directory can be removed.
pub fn release(runtime_dir: &Path) {
    let pool = runtime_dir.join("netns");
    drop_old_slot(&pool.join("next"));
    unbind_dir(&pool.join("next"));
    if let Ok(entries) = std::fs::read_dir(&pool) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(TAKEN) {
                unbind_dir(&e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().unwrap()
    }

    fn ns_ino(fd: &OwnedFd) -> u64 {
        nix::sys::stat::fstat(fd).unwrap().st_ino
    }

    #[test]
    fn a_namespace_made_ahead_serves_one_start() {
        let dir = crate::mcs::tests::tempdir("netns-pool");
        assert!(take(&dir, &RuntimeLock::take(&dir).unwrap()).is_none());
        let d = dir.clone();
        on_thread(move || make_next(&d)).unwrap();
        let mode = std::fs::metadata(dir.join("netns")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
        // Made once: a second call leaves the first in place.
        let first = open(&slot(&dir), OFlag::O_RDONLY, Mode::empty()).unwrap();
        let d = dir.clone();
        on_thread(move || make_next(&d)).unwrap();
        let lock = RuntimeLock::take(&dir).unwrap();
        let got = take(&dir, &lock).unwrap();
        assert_eq!(ns_ino(&got.fd), ns_ino(&first));
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_ne!(ns_ino(&got.fd), own);
        // Taken: nothing is left for a second start; it was moved aside, still
        // bound, until this jailer releases it.
        assert!(take(&dir, &lock).is_none());
        let aside = taken_dir(&dir, std::process::id()).join("ns");
        let bound = open(&aside, OFlag::O_RDONLY, Mode::empty()).unwrap();
        assert_eq!(ns_ino(&bound), ns_ino(&got.fd));
        // A live jailer's taken namespace survives the sweep.
        sweep_taken(&dir, &lock);
        assert!(aside.exists());
        drop(lock);
        // The next one is a new namespace; making it released the taken one.
        let d = dir.clone();
        on_thread(move || make_next(&d)).unwrap();
        assert!(!aside.exists() && !aside.parent().unwrap().exists());
        let next = take(&dir, &RuntimeLock::take(&dir).unwrap()).unwrap();
        assert_ne!(ns_ino(&next.fd), ns_ino(&got.fd));
        release_taken(&dir);
        assert!(!aside.exists());
        release(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_gone_jailers_taken_namespace_is_swept() {
        let dir = crate::mcs::tests::tempdir("netns-pool-swept");
        // Jailer pids are at most 2^22; this one cannot exist.
        let gone = dir.join("netns/taken.99999999");
        std::fs::create_dir_all(&gone).unwrap();
        std::fs::write(gone.join("ns"), b"").unwrap();
        let none: Option<&str> = None;
        let ns = "/proc/thread-self/ns/net";
        mount(Some(ns), &gone.join("ns"), none, MsFlags::MS_BIND, none).unwrap();
        let not_a_pid = dir.join("netns/taken.x");
        std::fs::create_dir_all(&not_a_pid).unwrap();
        sweep_taken(&dir, &RuntimeLock::take(&dir).unwrap());
        assert!(!gone.exists());
        assert!(not_a_pid.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_older_jailers_slot_file_is_replaced() {
        let dir = crate::mcs::tests::tempdir("netns-pool-old");
        let old = dir.join("netns/next");
        std::fs::create_dir_all(dir.join("netns")).unwrap();
        std::fs::write(&old, b"").unwrap();
        let d = dir.clone();
        // Made in a thread's own namespace, bound where an older jailer bound it.
        on_thread(move || {
            unshare(CloneFlags::CLONE_NEWNET).unwrap();
            let none: Option<&str> = None;
            let ns = "/proc/thread-self/ns/net";
            mount(
                Some(ns),
                &d.join("netns/next"),
                none,
                MsFlags::MS_BIND,
                none,
            )
            .unwrap();
        });
        // Not taken in the old place, and replaced by the new layout.
        assert!(take(&dir, &RuntimeLock::take(&dir).unwrap()).is_none());
        let d = dir.clone();
        on_thread(move || make_next(&d)).unwrap();
        assert!(old.is_dir());
        assert!(take(&dir, &RuntimeLock::take(&dir).unwrap()).is_some());
        release(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_is_not_a_new_network_namespace_is_not_taken() {
        let dir = crate::mcs::tests::tempdir("netns-pool-odd");
        std::fs::create_dir_all(dir.join("netns/next")).unwrap();
        // A plain file (a slot left from an earlier boot).
        std::fs::write(slot(&dir), b"").unwrap();
        assert!(take(&dir, &RuntimeLock::take(&dir).unwrap()).is_none());
        // The host's own network namespace, and another kind of namespace.
        for ns in ["/proc/self/ns/net", "/proc/self/ns/uts"] {
            std::fs::create_dir_all(dir.join("netns/next")).unwrap();
            std::fs::write(slot(&dir), b"").unwrap();
            let none: Option<&str> = None;
            mount(Some(ns), &slot(&dir), none, MsFlags::MS_BIND, none).unwrap();
            assert!(
                take(&dir, &RuntimeLock::take(&dir).unwrap()).is_none(),
                "{ns}"
            );
            release(&dir);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
