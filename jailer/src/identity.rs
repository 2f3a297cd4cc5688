//! The VM's identity: a uid/gid derived from its MCS pair, and the drop to it with
//! no capabilities left in any set and `PR_SET_NO_NEW_PRIVS`.

use caps::CapSet;
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use crate::mcs::Categories;

/// A failed privilege drop.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot clear capability set {set}: {message}")]
    Caps { set: &'static str, message: String },
    #[error("cannot {call}({value}): {errno}")]
    Id {
        call: &'static str,
        value: u32,
        errno: nix::Error,
    },
    #[error("cannot set PR_SET_NO_NEW_PRIVS: {0}")]
    NoNewPrivs(nix::Error),
    #[error("refusing to run the VM as uid/gid 0 (uid {uid}, gid {gid})")]
    Root { uid: u32, gid: u32 },
}

/// `base + A * 1024 + B`: unique per pair because B < 1024.
pub fn derive_id(base: u32, c: Categories) -> u32 {
    base + u32::from(c.a) * 1024 + u32::from(c.b)
}

/// Proof that [`drop_bounding`] ran: [`drop_to`] takes it.
#[derive(Debug)]
pub struct BoundingDropped(());

/// Clears the bounding and ambient sets while CAP_SETPCAP is still held. The
/// effective set is untouched, so the child does this before its release, in
/// time it would spend waiting (41 prctl calls, ~46 µs here), and still builds
/// its jail with every capability.
pub fn drop_bounding() -> Result<BoundingDropped, IdentityError> {
    for cap in caps::all() {
        caps::drop(None, CapSet::Bounding, cap).map_err(|e| IdentityError::Caps {
            set: "bounding",
            message: format!("{cap}: {e}"),
        })?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| IdentityError::Caps {
        set: "ambient",
        message: e.to_string(),
    })?;
    Ok(BoundingDropped(()))
}

/// Drops to `uid`/`gid` for good, once the bounding and ambient sets are clear
/// ([`drop_bounding`]): groups, gid and uid change, then the remaining sets are
/// cleared and no-new-privs is set.
///
/// `clear_groups` is false in rootless mode, where `setgroups` is denied in the
/// user namespace (the caller's supplementary groups stay, as they must).
pub fn drop_to(
    uid: u32,
    gid: u32,
    clear_groups: bool,
    _bounding: BoundingDropped,
) -> Result<(), IdentityError> {
    if uid == 0 || gid == 0 {
        return Err(IdentityError::Root { uid, gid });
    }
    if clear_groups {
        setgroups(&[]).map_err(|errno| IdentityError::Id {
            call: "setgroups",
            value: 0,
            errno,
        })?;
    }
    let g = Gid::from_raw(gid);
    setresgid(g, g, g).map_err(|errno| IdentityError::Id {
        call: "setresgid",
        value: gid,
        errno,
    })?;
    let u = Uid::from_raw(uid);
    setresuid(u, u, u).map_err(|errno| IdentityError::Id {
        call: "setresuid",
        value: uid,
        errno,
    })?;
    clear_effective_permitted_inheritable()?;
    nix::sys::prctl::set_no_new_privs().map_err(IdentityError::NoNewPrivs)?;
    Ok(())
}

/// `capset(2)`'s header, version 3 (two 32-bit words per set).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// One 32-bit word of each set.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Empties the effective, permitted and inheritable sets in one `capset` (the
/// `caps` crate reads and writes each set on its own: six syscalls). Lowering
/// every set is always allowed.
fn clear_effective_permitted_inheritable() -> Result<(), IdentityError> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data are valid for the call, laid out as capset(2)'s
    // version-3 structs (a header, then two data words), and the kernel only
    // reads data (it may write the preferred version into header).
    let r = unsafe {
        libc::syscall(
            libc::SYS_capset,
            std::ptr::addr_of_mut!(header),
            data.as_ptr(),
        )
    };
    if r != 0 {
        return Err(IdentityError::Caps {
            set: "effective, permitted and inheritable",
            message: std::io::Error::last_os_error().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn one_capset_empties_the_three_sets() {
        // Capability sets are per thread: only this thread loses them.
        std::thread::spawn(|| {
            let all = caps::all();
            caps::set(None, CapSet::Inheritable, &all).ok();
            clear_effective_permitted_inheritable().unwrap();
            for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
                assert!(caps::read(None, set).unwrap().is_empty(), "{set:?}");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn derived_ids_are_unique_and_never_root() {
        let mut seen = BTreeSet::new();
        for a in (0..1023u16).step_by(7) {
            for b in ((a + 1)..=1023).step_by(13) {
                let id = derive_id(100_000, Categories { a, b });
                assert!(id >= 100_000);
                assert!(seen.insert(id), "duplicate uid {id} for c{a},c{b}");
            }
        }
        assert_eq!(derive_id(100_000, Categories { a: 0, b: 1 }), 100_001);
        assert_eq!(
            derive_id(100_000, Categories { a: 1022, b: 1023 }),
            100_000 + 1022 * 1024 + 1023
        );
    }

    #[test]
    fn root_target_is_refused() {
        assert!(matches!(
            drop_to(0, 5, true, BoundingDropped(())),
            Err(IdentityError::Root { .. })
        ));
        assert!(matches!(
            drop_to(5, 0, true, BoundingDropped(())),
            Err(IdentityError::Root { .. })
        ));
    }
}
