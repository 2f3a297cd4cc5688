//! A tap device with a 12-byte virtio-net header on every frame: opened by name
//! through /dev/net/tun (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), or an fd the
//! jailer already opened (checked to be such a tap).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub const IFF_TAP: i16 = 0x0002;
pub const IFF_NO_PI: i16 = 0x1000;
pub const IFF_VNET_HDR: i16 = 0x4000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNGETIFF: libc::c_ulong = 0x8004_54d2;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;

/// The header length both sides use (virtio_net_hdr_v1).
pub const VNET_HDR_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("cannot open /dev/net/tun for tap {name}: {source}")]
    OpenTun {
        name: String,
        source: std::io::Error,
    },
    #[error("tap {what}: {op} failed: {source}")]
    Ioctl {
        what: String,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("fd {fd} is not a tap with IFF_NO_PI and IFF_VNET_HDR (flags {flags:#x})")]
    NotATap { fd: RawFd, flags: i16 },
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    pad: [u8; 22],
}

pub struct Tap {
    file: File,
    name: String,
}

fn ioctl(
    file: &File,
    what: &str,
    op: &'static str,
    req: libc::c_ulong,
    arg: *mut libc::c_void,
) -> Result<(), TapError> {
    // SAFETY: `file` is an open tun fd and `arg` points to the live object the
    // request expects (an ifreq or an int), valid for the duration of the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), req, arg) };
    if r < 0 {
        return Err(TapError::Ioctl {
            what: what.to_string(),
            op,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

impl Tap {
    /// Opens (or attaches to) tap `name`.
    pub fn open(name: &str) -> Result<Self, TapError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|source| TapError::OpenTun {
                name: name.to_string(),
                source,
            })?;
        let mut req = IfReq {
            name: [0; 16],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            pad: [0; 22],
        };
        let n = name.len().min(15);
        req.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        ioctl(&file, name, "TUNSETIFF", TUNSETIFF, (&raw mut req).cast())?;
        Self::finish(file, name.to_string())
    }

    /// Takes over an inherited tap fd.
    pub fn from_fd(fd: RawFd) -> Result<Self, TapError> {
        // SAFETY: the config validated that `fd` is open, and `caisson.net_fds`
        // hands its ownership to the VMM: nothing else in the process uses it.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut req = IfReq {
            name: [0; 16],
            flags: 0,
            pad: [0; 22],
        };
        let what = format!("fd {fd}");
        ioctl(&file, &what, "TUNGETIFF", TUNGETIFF, (&raw mut req).cast())?;
        let want = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if req.flags & want != want {
            return Err(TapError::NotATap {
                fd,
                flags: req.flags,
            });
        }
        // SAFETY: F_SETFL/F_GETFL on an fd this function owns.
        let ok = unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            fl >= 0 && libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) >= 0
        };
        if !ok {
            return Err(TapError::Ioctl {
                what,
                op: "F_SETFL O_NONBLOCK",
                source: std::io::Error::last_os_error(),
            });
        }
        let end = req.name.iter().position(|b| *b == 0).unwrap_or(16);
        let name = String::from_utf8_lossy(&req.name[..end]).into_owned();
        Self::finish(file, name)
    }

    fn finish(file: File, name: String) -> Result<Self, TapError> {
        let mut hdr_len = VNET_HDR_LEN as libc::c_int;
        ioctl(
            &file,
            &name,
            "TUNSETVNETHDRSZ",
            TUNSETVNETHDRSZ,
            (&raw mut hdr_len).cast(),
        )?;
        // No offloads: the kernel hands us plain frames only.
        ioctl(
            &file,
            &name,
            "TUNSETOFFLOAD",
            TUNSETOFFLOAD,
            std::ptr::null_mut(),
        )?;
        Ok(Self { file, name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A "tap" over any file (a socket in unit tests).
    #[cfg(test)]
    pub(crate) fn from_file(file: File, name: &str) -> Self {
        Self {
            file,
            name: name.to_string(),
        }
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Reads one frame (with its header); WouldBlock when none is queued.
    pub fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }

    /// Writes one frame (with its header).
    pub fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<usize> {
        self.file.write(frame)
    }
}

use std::os::unix::fs::OpenOptionsExt;
