//! Where the child runs while it builds its jail: on another CPU than the
//! jailer, so that the two sides of the sequence (the child's namespaces and
//! pivot, the jailer's cgroup directories and state record) overlap.
//!
//! Left to itself, the scheduler often queues a just-cloned child on its
//! parent's CPU, even beside an idle one, and the child then starts only when
//! the jailer blocks at the release: measured here, the exec came ~0.4 ms
//! later in those runs. So the jailer moves its child off its own CPU right
//! after the clone ([`Affinity::place_apart`], best-effort), and the child takes
//! the jailer's own affinity back ([`Affinity::restore`]) once it is in its
//! cgroup, before it becomes the VM: the VMM is never left pinned. The move
//! comes before the release and the restore after it, so the restore always
//! wins.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The child's CPU affinity could not be read or given back.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("cannot read the jailer's CPU affinity: {0}")]
    Read(nix::Error),
    #[error("cannot give the VM the jailer's CPU affinity back ({cpus:?}): {source}")]
    Restore {
        cpus: Vec<usize>,
        source: nix::Error,
    },
}

/// The jailer's CPU affinity, read before the clone: what the VM runs with.
#[derive(Debug, Clone, Copy)]
pub struct Affinity(CpuSet);

impl Affinity {
    /// The calling process's affinity.
    pub fn of_jailer() -> Result<Self, PlacementError> {
        sched_getaffinity(Pid::from_raw(0))
            .map(Self)
            .map_err(PlacementError::Read)
    }

    /// The CPUs in the set.
    pub fn cpus(&self) -> Vec<usize> {
        (0..CpuSet::count())
            .filter(|&c| self.0.is_set(c).unwrap_or(false))
            .collect()
    }

    /// The set without `cpu`, or None when nothing would be left.
    fn without(&self, cpu: usize) -> Option<CpuSet> {
        let mut set = self.0;
        set.unset(cpu).ok()?;
        (0..CpuSet::count())
            .any(|c| set.is_set(c).unwrap_or(false))
            .then_some(set)
    }

    /// In the jailer, right after the clone: keeps `child` off the CPU the
    /// jailer runs on. Best-effort (one CPU, or a failure, leaves it where the
    /// scheduler put it); true when it was moved.
    pub fn place_apart(&self, child: Pid) -> bool {
        // SAFETY: sched_getcpu takes no arguments and only reads this thread's CPU.
        let Ok(here) = usize::try_from(unsafe { libc::sched_getcpu() }) else {
            return false;
        };
        let Some(apart) = self.without(here) else {
            return false;
        };
        sched_setaffinity(child, &apart).is_ok()
    }

    /// In the child, after the release: takes this affinity back (as one given
    /// to the calling process; a v1 cpuset the child joined narrows it).
    pub fn restore(&self) -> Result<(), PlacementError> {
        sched_setaffinity(Pid::from_raw(0), &self.0).map_err(|source| PlacementError::Restore {
            cpus: self.cpus(),
            source,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::supervise::{self, Release};
    use nix::sched::CloneFlags;

    fn affinity_of(pid: Pid) -> Vec<usize> {
        Affinity(sched_getaffinity(pid).unwrap()).cpus()
    }

    /// A child placed apart runs off the parent's CPU until it restores the
    /// parent's affinity; afterwards it has exactly the parent's set back.
    #[test]
    fn a_child_placed_apart_gets_the_jailers_affinity_back() {
        let jailer = Affinity::of_jailer().unwrap();
        let all = jailer.cpus();
        assert!(!all.is_empty());
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let (rx, tx) = (
            std::os::fd::IntoRawFd::into_raw_fd(rx),
            std::os::fd::IntoRawFd::into_raw_fd(tx),
        );
        let mut child = supervise::spawn(CloneFlags::empty(), None, Release::AtStart, || {
            // Reports its set after the restore as a bitmask byte.
            if jailer.restore().is_err() {
                return 3;
            }
            let Ok(set) = sched_getaffinity(Pid::from_raw(0)) else {
                return 4;
            };
            let mut mask = 0u8;
            for c in 0..8 {
                if set.is_set(c).unwrap_or(false) {
                    mask |= 1 << c;
                }
            }
            // SAFETY: write one byte from a stack buffer to the inherited pipe.
            unsafe { libc::write(tx, std::ptr::addr_of!(mask).cast(), 1) };
            0
        })
        .unwrap();
        let pid = Pid::from_raw(child.pid);
        let moved = jailer.place_apart(pid);
        if all.len() > 1 {
            assert!(moved, "not moved although {all:?} has another CPU");
            // SAFETY: sched_getcpu only reads this thread's CPU.
            let here = usize::try_from(unsafe { libc::sched_getcpu() }).unwrap();
            let apart = affinity_of(pid);
            assert!(!apart.is_empty(), "the child was left no CPU");
            assert!(
                apart.len() < all.len(),
                "the child's set {apart:?} was not narrowed from {all:?} (parent on {here})"
            );
        } else {
            assert!(!moved, "moved with one CPU only");
        }
        child.release().unwrap();
        assert_eq!(child.wait().unwrap(), 0, "the child could not restore");
        // SAFETY: closing our copy of the write end, then reading our read end.
        unsafe { libc::close(tx) };
        let mut got = 0u8;
        // SAFETY: reading one byte into a stack variable from our pipe end.
        let n = unsafe { libc::read(rx, std::ptr::addr_of_mut!(got).cast(), 1) };
        assert_eq!(n, 1, "the child reported nothing");
        // SAFETY: closing our read end.
        unsafe { libc::close(rx) };
        let want = all
            .iter()
            .filter(|&&c| c < 8)
            .fold(0u8, |m, &c| m | (1 << c));
        assert_eq!(got, want, "the restored set is not the jailer's");
    }
}
