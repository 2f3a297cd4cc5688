//! Resource limits of the jailed process.
//!
//! Defaults (strict profile): `NOFILE` 2048 (Firecracker's default), `FSIZE` the size
//! of the largest writable disk + 64 MiB, `NPROC` 64 (counted per uid; each VM has its
//! own uid), `CORE` 0 always. Soft and hard limits are set to the same value so the
//! VMM cannot raise them. `--resource-limit` uses Firecracker's syntax.

use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
use serde::{Deserialize, Serialize};

use crate::profile::{FsizeChoice, Profile, RlimitSettings};

/// Room on top of the largest writable disk for logs and serial output.
pub const FSIZE_AUTO_SLACK: u64 = 64 << 20;

/// A bad `--resource-limit` or a failed `setrlimit`.
#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    #[error("invalid --resource-limit {value:?}: expected <fsize|no-file|nproc>=<number>")]
    Syntax { value: String },
    #[error("invalid --resource-limit {value:?}: unknown resource {resource:?} (expected fsize, no-file or nproc)")]
    Resource { value: String, resource: String },
    #[error("cannot set {resource} to {limit}: {errno}")]
    Set {
        resource: &'static str,
        limit: u64,
        errno: nix::Error,
    },
}

/// The limits to set; `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimits {
    pub nofile: u64,
    pub fsize: Option<u64>,
    pub nproc: u64,
    pub core: u64,
}

impl Rlimits {
    /// From the profile; `largest_writable_disk` resolves `fsize = "auto"`.
    pub fn from_profile(p: &Profile, largest_writable_disk: u64) -> Self {
        let fsize = match p.rlimits.fsize {
            FsizeChoice::Bytes(n) => Some(n),
            FsizeChoice::Auto => Some(largest_writable_disk.saturating_add(FSIZE_AUTO_SLACK)),
            FsizeChoice::Unlimited => None,
        };
        Self {
            nofile: p.rlimits.nofile,
            fsize,
            nproc: p.rlimits.nproc,
            core: 0,
        }
    }

    /// `setrlimit` for each (soft = hard).
    pub fn apply(&self) -> Result<(), RlimitError> {
        let set = |res: Resource, name: &'static str, v: Option<u64>| {
            let lim = v.unwrap_or(RLIM_INFINITY);
            setrlimit(res, lim, lim).map_err(|errno| RlimitError::Set {
                resource: name,
                limit: lim,
                errno,
            })
        };
        set(Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE", Some(self.nofile))?;
        set(Resource::RLIMIT_FSIZE, "RLIMIT_FSIZE", self.fsize)?;
        set(Resource::RLIMIT_NPROC, "RLIMIT_NPROC", Some(self.nproc))?;
        set(Resource::RLIMIT_CORE, "RLIMIT_CORE", Some(self.core))?;
        Ok(())
    }
}

/// Applies one `--resource-limit` to the profile's values, as a single flag
/// overrides a single value (Firecracker: `fsize=<bytes>`, `no-file=<n>`; Caisson
/// adds `nproc=<n>`). Flags are not held to the profile's minimums: Firecracker's
/// jailer takes any number.
pub fn apply_flag(limits: &mut RlimitSettings, arg: &str) -> Result<(), RlimitError> {
    let syntax = || RlimitError::Syntax {
        value: arg.to_string(),
    };
    let (resource, value) = arg.split_once('=').ok_or_else(syntax)?;
    let value: u64 = value.trim().parse().map_err(|_| syntax())?;
    match resource.trim() {
        "fsize" => limits.fsize = FsizeChoice::Bytes(value),
        "no-file" => limits.nofile = value,
        "nproc" => limits.nproc = value,
        other => {
            return Err(RlimitError::Resource {
                value: arg.to_string(),
                resource: other.to_string(),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn profile_defaults() {
        let strict = Profile::load("strict").unwrap();
        let r = Rlimits::from_profile(&strict, 1 << 30);
        assert_eq!(
            r,
            Rlimits {
                nofile: 2048,
                fsize: Some((1 << 30) + FSIZE_AUTO_SLACK),
                nproc: 64,
                core: 0
            }
        );
        let dev = Profile::load("dev").unwrap();
        assert_eq!(Rlimits::from_profile(&dev, 5).fsize, None);
    }

    #[test]
    fn firecracker_resource_limit_syntax() {
        let mut p = Profile::load("strict").unwrap();
        apply_flag(&mut p.rlimits, "fsize=1048576").unwrap();
        apply_flag(&mut p.rlimits, "no-file=512").unwrap();
        apply_flag(&mut p.rlimits, "nproc=10").unwrap();
        let r = Rlimits::from_profile(&p, 1 << 30);
        assert_eq!(r.fsize, Some(1_048_576));
        assert_eq!(r.nofile, 512);
        assert_eq!(r.nproc, 10);
        for (bad, want) in [
            ("fsize", "fsize"),
            ("fsize=-1", "fsize=-1"),
            ("no-file=lots", "no-file=lots"),
            ("stack=10", "unknown resource \"stack\""),
        ] {
            let err = apply_flag(&mut p.rlimits, bad).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn apply_in_a_child_sets_soft_and_hard() {
        // Run in a forked child so the test process keeps its limits.
        let r = Rlimits {
            nofile: 100,
            fsize: Some(4096),
            nproc: 5000,
            core: 0,
        };
        // SAFETY: the child only calls setrlimit/getrlimit and _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let ok = r.apply().is_ok()
                    && nix::sys::resource::getrlimit(Resource::RLIMIT_NOFILE).ok()
                        == Some((100, 100))
                    && nix::sys::resource::getrlimit(Resource::RLIMIT_FSIZE).ok()
                        == Some((4096, 4096))
                    && nix::sys::resource::getrlimit(Resource::RLIMIT_CORE).ok() == Some((0, 0));
                // SAFETY: _exit is async-signal-safe and ends the forked child at once.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
