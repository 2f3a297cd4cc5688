//! Tap devices: checked to exist in the VM's network namespace and handed to the
//! VM's uid (`TUNSETOWNER`/`TUNSETGROUP`) while the jailer still holds CAP_NET_ADMIN,
//! so the unprivileged VMM can attach to them; and given back when the VM ends.
//! Their owner and group are recorded before the hand-over, read over rtnetlink
//! from inside the tap's namespace (the host's sysfs shows only its own), and put
//! back by the jailer's undo, the stale sweep and `cleanup --id`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use serde::{Deserialize, Serialize};

use crate::namespaces::{self, NamespaceError, Netns};
use crate::rtnetlink::{self, RtnetlinkError};

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
    #[error("cannot {action} network namespace {netns}: {errno}")]
    Netns {
        action: &'static str,
        netns: String,
        errno: nix::Error,
    },
    #[error("cannot read the owner of tap {name} in network namespace {netns}: {source}")]
    Query {
        name: String,
        netns: String,
        source: RtnetlinkError,
    },
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error("the thread working in network namespace {netns} panicked")]
    Thread { netns: String },
}

/// A tap's owner and group before the hand-over, to give it back with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapRecord {
    pub name: String,
    /// The network namespace it is in (`--netns`, made absolute; None: the jailer's).
    pub netns: Option<PathBuf>,
    /// That namespace's nsfs device and inode: another namespace mounted later at
    /// the same path (and its tap of the same name) is not touched.
    pub netns_id: (u64, u64),
    /// None: it had none.
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

impl TapRecord {
    /// The owner and group to give back. The kernel cannot be told "none"
    /// (`TUNSETOWNER(-1)`: make_kuid gives INVALID_UID, EINVAL; the same for the
    /// group), and the VM's ids must not stay, a later VM may get them: no owner
    /// becomes root (0), so that only root or CAP_NET_ADMIN may attach. An owner
    /// without a group gets the owner's primary group (/etc/passwd, else gid =
    /// uid): with an owner set, the group can only narrow who may attach (both
    /// must match), and this one keeps the owner able to.
    pub fn restore_ids(&self) -> (u32, u32) {
        let owner = self.owner.unwrap_or(0);
        let group = self.group.unwrap_or_else(|| match self.owner {
            Some(uid) => read_passwd()
                .and_then(|p| primary_gid(&p, uid))
                .unwrap_or(uid),
            None => 0,
        });
        (owner, group)
    }

    fn netns_name(&self) -> String {
        self.netns
            .as_ref()
            .map_or_else(|| "of the jailer".into(), |p| p.display().to_string())
    }
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const OWN_NETNS: &str = "/proc/thread-self/ns/net";

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Hands each existing tap to `uid`/`gid`.
pub fn hand_over(names: &[String], uid: u32, gid: u32) -> Result<(), TapError> {
    for name in names {
        if ifindex(name).is_none() {
            return Err(TapError::Missing { name: name.clone() });
        }
        set_ids(name, uid, gid)?;
    }
    Ok(())
}

/// Before the hand-over, in the parent: the owner and group of each tap in the
/// namespace the VM will be in (`netns`, else the jailer's own unless
/// `new_netns`, where no tap can be). A tap that is missing or no tap is left
/// out: the child's hand-over names it.
pub fn record(
    names: &[String],
    netns: Option<&Netns>,
    new_netns: bool,
) -> Result<Vec<TapRecord>, TapError> {
    if names.is_empty() || (netns.is_none() && new_netns) {
        return Ok(Vec::new());
    }
    let own;
    let (fd, label, path) = match netns {
        Some(n) => {
            let abs = std::path::absolute(&n.path).unwrap_or_else(|_| PathBuf::from(&n.path));
            (n.fd.as_fd(), n.path.clone(), Some(abs))
        }
        None => {
            own = namespaces::open_netns(Path::new(OWN_NETNS))?;
            (own.fd.as_fd(), "of the jailer".to_string(), None)
        }
    };
    let netns_id = ns_id(fd, &label)?;
    in_netns(netns.map(|_| fd), &label, || {
        let mut out = Vec::new();
        for name in names {
            let Some(index) = ifindex(name) else { continue };
            let query = |source| TapError::Query {
                name: name.clone(),
                netns: label.clone(),
                source,
            };
            if let Some(ids) = rtnetlink::tun_ids(index).map_err(query)? {
                out.push(TapRecord {
                    name: name.clone(),
                    netns: path.clone(),
                    netns_id,
                    owner: ids.owner,
                    group: ids.group,
                });
            }
        }
        Ok(out)
    })
}

/// When the VM has ended (its processes killed): gives each tap that is still
/// the VM's (`vm_uid` owner or `vm_gid` group) back to its recorded owner and
/// group. A tap or namespace that is gone, or another's now, is left as it is.
/// Returns the problems met; each tap is tried.
pub fn give_back(records: &[TapRecord], vm_uid: u32, vm_gid: u32) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| {
            let (uid, gid) = r.restore_ids();
            give_back_one(r, vm_uid, vm_gid, (uid, gid)).err().map(|e| {
                format!(
                    "cannot give tap {} in network namespace {} back to {uid}:{gid}: {e}",
                    r.name,
                    r.netns_name()
                )
            })
        })
        .collect()
}

fn give_back_one(
    r: &TapRecord,
    vm_uid: u32,
    vm_gid: u32,
    (uid, gid): (u32, u32),
) -> Result<(), TapError> {
    let label = r.netns_name();
    let path = r.netns.clone().unwrap_or_else(|| OWN_NETNS.into());
    let fd = match namespaces::open_netns(&path) {
        Ok(n) => n.fd,
        // Its taps went with it.
        Err(NamespaceError::OpenNetns {
            errno: nix::Error::ENOENT,
            ..
        }) => {
            log::info!("tap {}: network namespace {label} is gone", r.name);
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if ns_id(fd.as_fd(), &label)? != r.netns_id {
        log::warn!(
            "tap {}: {label} is another network namespace now; its tap is left as it is",
            r.name
        );
        return Ok(());
    }
    in_netns(r.netns.as_ref().map(|_| fd.as_fd()), &label, || {
        let Some(index) = ifindex(&r.name) else {
            log::info!("tap {} is gone from network namespace {label}", r.name);
            return Ok(());
        };
        let now = rtnetlink::tun_ids(index).map_err(|source| TapError::Query {
            name: r.name.clone(),
            netns: label.clone(),
            source,
        })?;
        // Never handed over (the child failed first), or given to another since.
        if !now.is_some_and(|ids| ids.owner == Some(vm_uid) || ids.group == Some(vm_gid)) {
            log::info!(
                "tap {} in network namespace {label} is not the VM's ({now:?}); left as it is",
                r.name
            );
            return Ok(());
        }
        set_ids(&r.name, uid, gid)
    })
}

/// Runs `f` in the network namespace `fd` (a thread of its own, which alone
/// changes namespace and ends with `f`), or here when None.
fn in_netns<R: Send>(
    fd: Option<BorrowedFd<'_>>,
    label: &str,
    f: impl FnOnce() -> Result<R, TapError> + Send,
) -> Result<R, TapError> {
    let Some(fd) = fd else { return f() };
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(fd, CloneFlags::CLONE_NEWNET).map_err(|errno| TapError::Netns {
                action: "join",
                netns: label.to_string(),
                errno,
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(TapError::Thread {
                netns: label.to_string(),
            })
        })
    })
}

/// The namespace's identity (nsfs device and inode).
fn ns_id(fd: BorrowedFd<'_>, label: &str) -> Result<(u64, u64), TapError> {
    let st = nix::sys::stat::fstat(fd).map_err(|errno| TapError::Netns {
        action: "stat",
        netns: label.to_string(),
        errno,
    })?;
    Ok((st.st_dev, st.st_ino))
}

/// The interface index of `name` in the calling thread's namespace.
fn ifindex(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: cname is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    (index != 0).then_some(index)
}

/// Attaches to the tap `name` (the same flags as the VMM's) and sets its owner
/// and group.
fn set_ids(name: &str, uid: u32, gid: u32) -> Result<(), TapError> {
    let tun = attach(name)?;
    set_int(&tun, name, TUNSETOWNER, uid, "TUNSETOWNER")?;
    set_int(&tun, name, TUNSETGROUP, gid, "TUNSETGROUP")
}

/// /dev/net/tun attached to the tap `name` with the VMM's flags.
fn attach(name: &str) -> Result<std::fs::File, TapError> {
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
    // SAFETY: req is a valid, initialised ifreq-sized struct that outlives the call.
    let r = unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
    ioctl_result(r, name, "TUNSETIFF")?;
    Ok(tun)
}

/// An ioctl on an attached tun fd whose argument is an integer (an id, a flag).
fn set_int(
    tun: &std::fs::File,
    name: &str,
    request: libc::c_ulong,
    value: u32,
    call: &'static str,
) -> Result<(), TapError> {
    // SAFETY: tun is an open /dev/net/tun fd; the argument is an integer, no pointer.
    let r = unsafe { libc::ioctl(tun.as_raw_fd(), request, libc::c_ulong::from(value)) };
    ioctl_result(r, name, call)
}

fn ioctl_result(r: libc::c_int, name: &str, call: &'static str) -> Result<(), TapError> {
    if r < 0 {
        return Err(TapError::Ioctl {
            call,
            name: name.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// /etc/passwd, bounded (it is read only for an owner without a group).
fn read_passwd() -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open("/etc/passwd")
        .ok()?
        .take(4 << 20)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The primary gid of `uid` in a passwd file's text.
fn primary_gid(passwd: &str, uid: u32) -> Option<u32> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':').skip(2);
        let u: u32 = f.next()?.parse().ok()?;
        (u == uid).then(|| f.next()?.parse().ok()).flatten()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rec(owner: Option<u32>, group: Option<u32>) -> TapRecord {
        TapRecord {
            name: "tap0".into(),
            netns: None,
            netns_id: (0, 0),
            owner,
            group,
        }
    }

    #[test]
    fn none_is_given_back_as_root_and_an_owner_keeps_its_group() {
        assert_eq!(rec(Some(4321), Some(99)).restore_ids(), (4321, 99));
        assert_eq!(rec(None, None).restore_ids(), (0, 0));
        assert_eq!(rec(None, Some(7)).restore_ids(), (0, 7));
        // root's primary group is 0 in every passwd; an unknown uid gets gid = uid.
        assert_eq!(rec(Some(0), None).restore_ids(), (0, 0));
        assert_eq!(rec(Some(3_999_999), None).restore_ids().1, 3_999_999);
    }

    #[test]
    fn the_primary_gid_is_read_from_passwd() {
        let p = "root:x:0:0:root:/root:/bin/bash\nbad line\nalice:x:1000:100::/home/a:/bin/sh\n";
        assert_eq!(primary_gid(p, 1000), Some(100));
        assert_eq!(primary_gid(p, 0), Some(0));
        assert_eq!(primary_gid(p, 5), None);
    }

    /// In a network namespace of this thread's own (gone with the thread): a
    /// tap the VM (uid 598000) holds is not given back while attached, the
    /// failure names it, its netns and the errno, and the next one is still
    /// tried; once released it gets its recorded owner and group back.
    #[test]
    fn a_busy_tap_is_reported_and_a_free_one_given_back() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).unwrap();
            const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
            let (vm_uid, vm_gid) = (598_000, 598_001);
            let held = attach("cjt0").unwrap();
            set_int(&held, "cjt0", TUNSETPERSIST, 1, "TUNSETPERSIST").unwrap();
            set_int(&held, "cjt0", TUNSETOWNER, vm_uid, "TUNSETOWNER").unwrap();
            set_int(&held, "cjt0", TUNSETGROUP, vm_gid, "TUNSETGROUP").unwrap();
            let own = namespaces::open_netns(Path::new(OWN_NETNS)).unwrap();
            let mut r = rec(Some(4321), Some(4322));
            r.name = "cjt0".into();
            r.netns_id = ns_id(own.fd.as_fd(), "own").unwrap();
            let gone = TapRecord {
                name: "cjt9".into(),
                ..r.clone()
            };
            let problems = give_back(&[r.clone(), gone.clone()], vm_uid, vm_gid);
            assert_eq!(problems.len(), 1, "{problems:?}");
            let p = &problems[0];
            assert!(
                p.contains("tap cjt0") && p.contains("of the jailer") && p.contains("os error 16"),
                "{p}"
            );
            drop(held);
            // A test beside this one that forks copies every fd of this
            // process, `held`'s too, until its child exits: retry briefly
            // while the tap is still busy for that reason.
            let mut left = give_back(&[gone.clone(), r.clone()], vm_uid, vm_gid);
            for _ in 0..100 {
                if left.is_empty() || !left.iter().all(|p| p.contains("os error 16")) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
                left = give_back(&[gone.clone(), r.clone()], vm_uid, vm_gid);
            }
            assert!(left.is_empty(), "{left:?}");
            let index = ifindex("cjt0").unwrap();
            let ids = rtnetlink::tun_ids(index).unwrap().unwrap();
            assert_eq!((ids.owner, ids.group), (Some(4321), Some(4322)));
            // Not the VM's any more: left as it is (not made root's).
            let none = TapRecord {
                owner: None,
                group: None,
                ..r
            };
            assert!(give_back(&[none], vm_uid, vm_gid).is_empty());
            let ids = rtnetlink::tun_ids(index).unwrap().unwrap();
            assert_eq!(ids.owner, Some(4321));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_tap_in_a_new_namespace_is_not_recorded() {
        let names = ["tap0".to_string()];
        assert!(record(&names, None, true).unwrap().is_empty());
        // In the jailer's own namespace a missing tap is left to the child.
        assert!(record(&["nosuchtap9".into()], None, false)
            .unwrap()
            .is_empty());
    }
}
