//! Tap devices: checked to exist in the VM's network namespace and handed to the
//! VM's uid (`TUNSETOWNER`/`TUNSETGROUP`) while the jailer still holds CAP_NET_ADMIN,
//! so the unprivileged VMM can attach to them.

use std::os::fd::AsRawFd;

/// A tap step that failed.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("tap device {name} does not exist in the VM's network namespace (create it there and pass --netns)")]
    Missing { name: String },
    #[error("cannot open /dev/net/tun: {0}")]
    Open(std::io::Error),
    #[error("cannot {call} on tap {name}: {source}")]
    Ioctl {
        call: &'static str,
        name: String,
        source: std::io::Error,
    },
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Hands each existing tap to `uid`/`gid`.
pub fn hand_over(names: &[String], uid: u32, gid: u32) -> Result<(), TapError> {
    for name in names {
        let cname = std::ffi::CString::new(name.as_str())
            .map_err(|_| TapError::Missing { name: name.clone() })?;
        // SAFETY: cname is a valid NUL-terminated string for the duration of the call.
        if unsafe { libc::if_nametoindex(cname.as_ptr()) } == 0 {
            return Err(TapError::Missing { name: name.clone() });
        }
        let tun = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(TapError::Open)?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        let n = name.len().min(libc::IFNAMSIZ - 1);
        req.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        let call = |req_no: libc::c_ulong, arg: libc::c_ulong, what: &'static str| {
            // SAFETY: tun is an open /dev/net/tun fd; the argument is an integer id.
            let r = unsafe { libc::ioctl(tun.as_raw_fd(), req_no, arg) };
            if r < 0 {
                return Err(TapError::Ioctl {
                    call: what,
                    name: name.clone(),
                    source: std::io::Error::last_os_error(),
                });
            }
            Ok(())
        };
        // SAFETY: req is a valid, initialised ifreq-sized struct that outlives the call.
        let r = unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
        if r < 0 {
            return Err(TapError::Ioctl {
                call: "TUNSETIFF",
                name: name.clone(),
                source: std::io::Error::last_os_error(),
            });
        }
        call(TUNSETOWNER, libc::c_ulong::from(uid), "TUNSETOWNER")?;
        call(TUNSETGROUP, libc::c_ulong::from(gid), "TUNSETGROUP")?;
    }
    Ok(())
}
