//! Network test helpers: a network namespace of the test's own, and the host
//! end of a tap inside it. Shared by tests/virtio.rs and tests/linux.rs.

/// A network namespace of the test's own: a thread that unshared its network
/// namespace runs closures in it. Interfaces made there vanish with it when the
/// guard drops (and the last process in it exits).
pub struct NetNs {
    jobs: Option<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NetNs {
    pub fn new() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let r = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET);
            ready_tx.send(r).unwrap();
            if r.is_err() {
                return;
            }
            while let Ok(job) = rx.recv() {
                job();
            }
        });
        ready_rx
            .recv()
            .unwrap()
            .expect("unshare(CLONE_NEWNET): the net tests need CAP_SYS_ADMIN");
        Self {
            jobs: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        self.jobs
            .as_ref()
            .unwrap()
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .unwrap();
        rx.recv().unwrap()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub mod tap_host {
    //! The host end of a tap, from inside the test's namespace.
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
    pub const ETH_P_ALL: u16 = 0x0003;

    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: i16,
        pad: [u8; 22],
    }

    fn ifreq(name: &str, flags: i16) -> IfReq {
        let mut r = IfReq {
            name: [0; 16],
            flags,
            pad: [0; 22],
        };
        r.name[..name.len()].copy_from_slice(name.as_bytes());
        r
    }

    /// Creates tap `name` (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR); persistent unless
    /// the returned fd is kept.
    pub fn create(name: &str, persist: bool) -> OwnedFd {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .unwrap();
        let mut req = ifreq(name, 0x0002 | 0x1000 | 0x4000);
        // SAFETY: TUNSETIFF on an open tun fd with a live ifreq.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, &raw mut req) };
        assert_eq!(
            r,
            0,
            "TUNSETIFF {name}: {}",
            std::io::Error::last_os_error()
        );
        if persist {
            // SAFETY: TUNSETPERSIST takes an integer argument.
            assert_eq!(unsafe { libc::ioctl(f.as_raw_fd(), TUNSETPERSIST, 1) }, 0);
        }
        set_up(name);
        OwnedFd::from(f)
    }

    fn set_up(name: &str) {
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
        assert!(s >= 0);
        // SAFETY: `s` is a new fd nobody else owns.
        let s = unsafe { OwnedFd::from_raw_fd(s) };
        let mut req = ifreq(name, 0);
        // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS with a live ifreq on a socket.
        unsafe {
            assert_eq!(
                libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut req),
                0
            );
            req.flags |= libc::IFF_UP as i16;
            assert_eq!(
                libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &raw mut req),
                0
            );
        }
    }

    /// A raw packet socket on interface `name`, with a 1 s receive timeout.
    pub fn packet_socket(name: &str) -> OwnedFd {
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let s = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        assert!(s >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: `s` is a new fd nobody else owns.
        let s = unsafe { OwnedFd::from_raw_fd(s) };
        let cname = std::ffi::CString::new(name).unwrap();
        // SAFETY: a NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        assert_ne!(index, 0);
        // SAFETY: sockaddr_ll is plain old data; zero is a valid value.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = ETH_P_ALL.to_be();
        sa.sll_ifindex = index as i32;
        // SAFETY: bind with a live sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                s.as_raw_fd(),
                (&raw const sa).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: SO_RCVTIMEO with a live timeval of the size given.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        assert_eq!(r, 0);
        s
    }

    pub fn send(s: &OwnedFd, frame: &[u8]) {
        // SAFETY: send(2) from a live buffer of the length given.
        let n = unsafe { libc::send(s.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
    }

    /// The next frame, or None after the receive timeout.
    pub fn recv(s: &OwnedFd) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        // SAFETY: recv(2) into a live buffer of the length given.
        let n = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n > 0).then(|| {
            buf.truncate(n as usize);
            buf
        })
    }

    /// Gives interface `name` the IPv4 address `addr`/`prefix` (SIOCSIFADDR,
    /// SIOCSIFNETMASK); run it in the namespace that holds the interface.
    pub fn set_ipv4(name: &str, addr: std::net::Ipv4Addr, prefix: u32) {
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
        assert!(s >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: `s` is a new fd nobody else owns.
        let s = unsafe { OwnedFd::from_raw_fd(s) };
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        for (req, ip, what) in [
            (libc::SIOCSIFADDR, u32::from(addr), "SIOCSIFADDR"),
            (libc::SIOCSIFNETMASK, mask, "SIOCSIFNETMASK"),
        ] {
            // SAFETY: ifreq and sockaddr_in are plain old data; zero is valid.
            let mut req_buf: libc::ifreq = unsafe { std::mem::zeroed() };
            for (d, s) in req_buf.ifr_name.iter_mut().zip(name.bytes()) {
                *d = s as libc::c_char;
            }
            // SAFETY: as above.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = ip.to_be();
            // SAFETY: sockaddr_in fits in the ifreq's sockaddr union member.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    (&raw const sin).cast::<u8>(),
                    (&raw mut req_buf.ifr_ifru).cast::<u8>(),
                    std::mem::size_of::<libc::sockaddr_in>(),
                );
            }
            // SAFETY: the request takes a live ifreq.
            let r = unsafe { libc::ioctl(s.as_raw_fd(), req, &raw mut req_buf) };
            assert_eq!(
                r,
                0,
                "{what} {name} {ip:#x}: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    /// Lets a child process inherit `fd`.
    pub fn inheritable(fd: RawFd) {
        // SAFETY: F_SETFD on an open fd.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    }
}
