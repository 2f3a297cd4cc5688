//! Landlock: the jailed process may touch only the jail's files, with the access
//! each needs; TCP bind/connect are denied (ABI >= 4); abstract unix sockets and
//! signals are scoped to the jail (ABI >= 6).

use std::path::PathBuf;

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde::{Deserialize, Serialize};

use crate::profile::LandlockMode;

/// The ABI the ruleset is written for.
pub const TARGET_ABI: ABI = ABI::V6;

/// A Landlock failure.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("cannot build the Landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    #[error("cannot open {path} for a Landlock rule: {message}")]
    Path { path: PathBuf, message: String },
    #[error("--landlock=require but the kernel (ABI {abi}) enforced the ruleset only {status}")]
    NotEnforced { abi: i32, status: &'static str },
}

/// What access a jail path gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grant {
    /// Read a file.
    Read,
    /// Read and execute a file.
    Exec,
    /// Read and write a file (writable disks, log files, devices).
    ReadWrite,
    /// Write (append to) a file it never reads (the serial output).
    Write,
    /// A directory where the VMM creates and removes unix sockets.
    SocketDir,
    /// Caisson's mode with `--api`: the directory where the VMM writes snapshot
    /// files: create regular files, read, write and truncate them, list the
    /// directory; nothing removed, renamed, linked or executed.
    SnapshotDir,
    /// Firecracker's mode: the jail root the orchestrator filled. Its files (the
    /// known ones and those linked or mounted in later, e.g. Kata's hot-plugged
    /// drives) may be read, written and truncated, regular files created (snapshot
    /// files, as Firecracker's jailer allows: `PUT /snapshot/create` names paths
    /// in the chroot), and unix sockets created and removed anywhere under it (the
    /// API socket in /run, a vsock socket in /); nothing may be executed, and no
    /// directory, device node, FIFO or symlink created.
    JailRoot,
}

/// One rule: a path inside the jail (after pivot_root) and its grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub path: PathBuf,
    pub grant: Grant,
}

/// The kernel's Landlock ABI version, or 0 (or a negative errno) when unavailable.
pub fn kernel_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_long = 1;
    // SAFETY: landlock_create_ruleset with a NULL attr, size 0 and the VERSION flag
    // only returns the ABI number; it reads and writes no memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(r).unwrap_or(0).max(0)
}

/// The Landlock access a grant gives.
pub(crate) fn access_for(grant: Grant) -> BitFlags<AccessFs> {
    let abi = TARGET_ABI;
    match grant {
        Grant::Read => AccessFs::ReadFile.into(),
        Grant::Exec => AccessFs::ReadFile | AccessFs::Execute,
        Grant::ReadWrite => {
            AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev
        }
        Grant::Write => AccessFs::WriteFile.into(),
        Grant::SocketDir => {
            AccessFs::MakeSock | AccessFs::RemoveFile | AccessFs::ReadDir | AccessFs::from_file(abi)
        }
        Grant::SnapshotDir => {
            AccessFs::MakeReg
                | AccessFs::ReadDir
                | AccessFs::ReadFile
                | AccessFs::WriteFile
                | AccessFs::Truncate
        }
        Grant::JailRoot => {
            AccessFs::ReadFile
                | AccessFs::WriteFile
                | AccessFs::Truncate
                | AccessFs::MakeReg
                | AccessFs::MakeSock
                | AccessFs::RemoveFile
        }
    }
}

/// Outcome of [`restrict`], for the state file and the audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockStatus {
    pub kernel_abi: i32,
    pub status: String,
}

/// Restricts the calling thread (and what it execs) to `rules`.
pub fn restrict(
    rules: &[Rule],
    mode: LandlockMode,
    deny_tcp: bool,
    scope: bool,
) -> Result<LandlockStatus, LandlockError> {
    let abi = kernel_abi();
    if mode == LandlockMode::Off {
        return Ok(LandlockStatus {
            kernel_abi: abi,
            status: "off".into(),
        });
    }
    let level = if mode == LandlockMode::Require {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    let mut ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(TARGET_ABI))?;
    if deny_tcp {
        ruleset = ruleset.handle_access(AccessNet::from_all(TARGET_ABI))?;
    }
    if scope {
        ruleset = ruleset.scope(Scope::from_all(TARGET_ABI))?;
    }
    let mut created = ruleset.create()?;
    for rule in rules {
        let fd = PathFd::new(&rule.path).map_err(|e| LandlockError::Path {
            path: rule.path.clone(),
            message: e.to_string(),
        })?;
        let mut access = access_for(rule.grant);
        // A grant with directory rights is cut to the file rights on a file (the
        // kernel refuses directory rights on one). File grants need no look: the
        // `stat` costs a syscall per rule.
        let file_rights = AccessFs::from_file(TARGET_ABI);
        if !file_rights.contains(access)
            && !std::fs::metadata(&rule.path)
                .map(|m| m.is_dir())
                .unwrap_or(false)
        {
            access &= file_rights;
        }
        created = created.add_rule(PathBeneath::new(fd, access))?;
    }
    let status = created.restrict_self()?;
    let text = match status.ruleset {
        RulesetStatus::FullyEnforced => "fully-enforced",
        RulesetStatus::PartiallyEnforced => "partially-enforced",
        RulesetStatus::NotEnforced => "not-enforced",
    };
    if mode == LandlockMode::Require && status.ruleset != RulesetStatus::FullyEnforced {
        return Err(LandlockError::NotEnforced { abi, status: text });
    }
    Ok(LandlockStatus {
        kernel_abi: abi,
        status: text.into(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_has_landlock() {
        // The machine this is developed on has ABI 7; any Landlock kernel has >= 1.
        assert!(kernel_abi() >= 1, "abi {}", kernel_abi());
    }

    #[test]
    fn grants_are_minimal() {
        assert!(!access_for(Grant::Read).contains(AccessFs::WriteFile));
        assert!(!access_for(Grant::Read).contains(AccessFs::Execute));
        assert!(access_for(Grant::Exec).contains(AccessFs::Execute));
        assert!(!access_for(Grant::ReadWrite).contains(AccessFs::Execute));
        assert_eq!(access_for(Grant::Write), AccessFs::WriteFile);
        assert!(access_for(Grant::SocketDir).contains(AccessFs::MakeSock));
        assert!(!access_for(Grant::SocketDir).contains(AccessFs::MakeReg));
        let snap = access_for(Grant::SnapshotDir);
        assert!(snap.contains(AccessFs::MakeReg | AccessFs::WriteFile | AccessFs::Truncate));
        for denied in [
            AccessFs::Execute,
            AccessFs::RemoveFile,
            AccessFs::MakeDir,
            AccessFs::MakeSym,
            AccessFs::MakeSock,
            AccessFs::Refer,
            AccessFs::IoctlDev,
        ] {
            assert!(!snap.contains(denied), "{denied:?}");
        }
        let root = access_for(Grant::JailRoot);
        assert!(root.contains(
            AccessFs::WriteFile | AccessFs::Truncate | AccessFs::MakeReg | AccessFs::MakeSock
        ));
        for denied in [
            AccessFs::Execute,
            AccessFs::MakeDir,
            AccessFs::MakeChar,
            AccessFs::MakeBlock,
            AccessFs::MakeSym,
            AccessFs::MakeFifo,
            AccessFs::RemoveDir,
            AccessFs::ReadDir,
            AccessFs::Refer,
            AccessFs::IoctlDev,
        ] {
            assert!(!root.contains(denied), "{denied:?}");
        }
    }

    #[test]
    fn restrict_denies_outside_paths_in_a_child() {
        let dir = crate::mcs::tests::tempdir("landlock");
        std::fs::write(dir.join("ok"), "ok").unwrap();
        std::fs::write(dir.join("no"), "no").unwrap();
        let rules = vec![Rule {
            path: dir.join("ok"),
            grant: Grant::Read,
        }];
        // SAFETY: the child only runs the ruleset calls, reads two files and _exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = match restrict(&rules, LandlockMode::Require, true, true) {
                    Ok(_) => {
                        let ok = std::fs::read(dir.join("ok")).is_ok();
                        let denied = std::fs::read(dir.join("no"))
                            .err()
                            .and_then(|e| e.raw_os_error())
                            == Some(libc::EACCES);
                        let tcp_denied = std::net::TcpListener::bind("127.0.0.1:0").is_err();
                        if ok && denied && tcp_denied {
                            0
                        } else {
                            2
                        }
                    }
                    Err(_) => 3,
                };
                // SAFETY: _exit ends the forked child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
