//! caisson-probe: run as the jailed exec file in place of `caisson`, it tries to
//! break out of each confinement layer and reports, per attempt, the errno it got,
//! one JSON object per line.
//!
//! It refuses to start with uid 0 or any effective capability, so that run
//! unconfined it can never damage the host; its targets are harmless (a file it
//! only reads, a listener and a `sleep` the test started, garbage module images).
//!
//! Flags (unknown ones, such as the VMM flags the jailer passes, are ignored):
//! `--host-file P --proc-file P --read-ok P --ro-file P --rw-file P --other-disk P
//!  --tcp-port N --kill-pid N --mem-mib N --pids --hold-ms N --exit-code N --timestamp
//!  --tap NAME --unix-bind PATH --abstract NAME --try OP:PATH`. `--try` (repeatable)
//! reports attempt `try-OP PATH` for OP one of read, write, create (O_CREAT|O_EXCL),
//! truncate, unlink, mkdir, mknod (a character device, /dev/null's numbers), mkfifo,
//! symlink, map (a read-only open mapped private and writable, as a restore maps its
//! memory file) and rename (to PATH.renamed).

use std::ffi::CString;
use std::io::Write;

/// Exit code when the probe refuses to run (root or capabilities).
const REFUSED: i32 = 100;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn errno_name(e: i32) -> &'static str {
    match e {
        0 => "OK",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EACCES => "EACCES",
        libc::EROFS => "EROFS",
        libc::EAGAIN => "EAGAIN",
        libc::EINVAL => "EINVAL",
        libc::ENOEXEC => "ENOEXEC",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EBADF => "EBADF",
        libc::ENOSYS => "ENOSYS",
        libc::EFAULT => "EFAULT",
        libc::ENOMEM => "ENOMEM",
        _ => "other",
    }
}

fn report(attempt: &str, denied: bool, err: i32, detail: &str) {
    let detail = detail.replace('\\', "\\\\").replace('"', "\\\"");
    println!(
        "{{\"attempt\":\"{attempt}\",\"denied\":{denied},\"errno\":{err},\"err\":\"{}\",\"detail\":\"{detail}\"}}",
        errno_name(err)
    );
    let _ = std::io::stdout().flush();
}

/// Reports a libc call: negative return means denied with errno.
fn outcome(attempt: &str, ret: i64, detail: &str) {
    if ret < 0 {
        report(attempt, true, errno(), detail);
    } else {
        report(attempt, false, 0, detail);
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

fn open(path: &str, flags: i32) -> i64 {
    let c = cstr(path);
    // SAFETY: c is a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd >= 0 {
        // SAFETY: fd was just opened by this process.
        unsafe { libc::close(fd) };
    }
    i64::from(fd)
}

fn effective_caps() -> u64 {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut d = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget with a v3 header and two data structs, as the ABI requires.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) };
    if r != 0 {
        return u64::MAX;
    }
    u64::from(d[0].effective) | (u64::from(d[1].effective) << 32)
}

struct Args {
    host_file: Option<String>,
    proc_file: Option<String>,
    read_ok: Option<String>,
    ro_file: Option<String>,
    rw_file: Option<String>,
    other_disk: Option<String>,
    tcp_port: Option<u16>,
    kill_pid: Option<i32>,
    mem_mib: Option<usize>,
    pids: bool,
    hold_ms: u64,
    timestamp: bool,
    exit_code: i32,
    tap: Option<String>,
    unix_bind: Option<String>,
    abstract_name: Option<String>,
    tries: Vec<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        host_file: None,
        proc_file: None,
        read_ok: None,
        ro_file: None,
        rw_file: None,
        other_disk: None,
        tcp_port: None,
        kill_pid: None,
        mem_mib: None,
        pids: false,
        hold_ms: 0,
        timestamp: false,
        exit_code: 0,
        tap: None,
        unix_bind: None,
        abstract_name: None,
        tries: Vec::new(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let next = args.get(i + 1).cloned();
        let mut used = true;
        match args[i].as_str() {
            "--host-file" => a.host_file = next,
            "--proc-file" => a.proc_file = next,
            "--read-ok" => a.read_ok = next,
            "--ro-file" => a.ro_file = next,
            "--rw-file" => a.rw_file = next,
            "--other-disk" => a.other_disk = next,
            "--tcp-port" => a.tcp_port = next.and_then(|v| v.parse().ok()),
            "--kill-pid" => a.kill_pid = next.and_then(|v| v.parse().ok()),
            "--mem-mib" => a.mem_mib = next.and_then(|v| v.parse().ok()),
            "--tap" => a.tap = next,
            "--abstract" => a.abstract_name = next,
            "--unix-bind" => a.unix_bind = next,
            "--try" => a.tries.extend(next),
            "--exit-code" => a.exit_code = next.and_then(|v| v.parse().ok()).unwrap_or(0),
            "--hold-ms" => a.hold_ms = next.and_then(|v| v.parse().ok()).unwrap_or(0),
            "--pids" => {
                a.pids = true;
                used = false;
            }
            "--timestamp" => {
                a.timestamp = true;
                used = false;
            }
            _ => used = false,
        }
        i += if used { 2 } else { 1 };
    }
    a
}

fn main() {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    let a = parse_args();
    if a.timestamp {
        println!(
            "{{\"attempt\":\"timestamp\",\"realtime_ns\":{}}}",
            ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
        );
        return;
    }
    // SAFETY: getuid/geteuid/getgid have no preconditions.
    let (uid, euid, gid) = unsafe { (libc::getuid(), libc::geteuid(), libc::getgid()) };
    let caps = effective_caps();
    if uid == 0 || euid == 0 || caps != 0 {
        eprintln!("caisson-probe: refusing to run with uid {uid}, euid {euid}, effective capabilities {caps:#x}: run it only as a jailed, unprivileged process");
        std::process::exit(REFUSED);
    }
    // SAFETY: prctl queries with no pointers.
    let (nnp, seccomp) = unsafe {
        (
            libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
            libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0),
        )
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let mut name = [0u8; 65];
    // SAFETY: name is a writable 65-byte buffer.
    unsafe { libc::gethostname(name.as_mut_ptr().cast(), 64) };
    let hostname = String::from_utf8_lossy(&name)
        .trim_end_matches('\0')
        .to_string();
    let argv = std::env::args()
        .map(|a| format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",");
    println!(
        "{{\"attempt\":\"identity\",\"argv\":[{argv}],\"uid\":{uid},\"gid\":{gid},\"capeff\":{caps},\"no_new_privs\":{nnp},\"seccomp\":{seccomp},\"pid\":{},\"hostname\":\"{hostname}\",\"proc_visible\":{}}}",
        std::process::id(),
        host.is_some()
    );

    // Positive controls: what the VMM needs must work.
    if let Some(p) = &a.read_ok {
        outcome("read-allowed", open(p, libc::O_RDONLY), p);
    }
    if let Some(p) = &a.rw_file {
        outcome("write-allowed", open(p, libc::O_WRONLY), p);
    }
    outcome("open-kvm", open("/dev/kvm", libc::O_RDWR), "/dev/kvm");

    if let Some(p) = &a.unix_bind {
        match std::os::unix::net::UnixListener::bind(p) {
            Ok(l) => {
                report("unix-bind-allowed", false, 0, p);
                std::mem::forget(l);
            }
            Err(e) => report("unix-bind-allowed", true, e.raw_os_error().unwrap_or(0), p),
        }
    }
    if let Some(name) = &a.tap {
        attach_tap(name);
    }
    for t in &a.tries {
        try_op(t);
    }

    // Filesystem escapes.
    if let Some(p) = &a.host_file {
        outcome("read-host-file", open(p, libc::O_RDONLY), p);
    }
    if let Some(p) = &a.proc_file {
        outcome("read-via-proc1-root", open(p, libc::O_RDONLY), p);
    }
    if let Some(p) = &a.ro_file {
        outcome("write-readonly-resource", open(p, libc::O_WRONLY), p);
    }
    if let Some(p) = &a.other_disk {
        outcome("read-other-vm-disk", open(p, libc::O_RDONLY), p);
    }
    outcome(
        "create-file-in-root",
        open("/probe-new-file", libc::O_WRONLY | libc::O_CREAT),
        "/probe-new-file",
    );
    // (/dev: the one directory every jail has.)
    let (src, tgt, fs) = (cstr("tmpfs"), cstr("/dev"), cstr("tmpfs"));
    // SAFETY: valid C strings; data is NULL.
    let r = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    outcome("mount-tmpfs", i64::from(r), "/dev");
    let node = cstr("/vsock/probe-null");
    // SAFETY: valid C string path.
    let r = unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) };
    outcome("mknod", i64::from(r), "/vsock/probe-null c 1 3");
    let exec = cstr("/bin/sh");
    let argv = [exec.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: valid argv/envp arrays; execve only returns on failure, and /bin/sh is not in the jail.
    let r = unsafe { libc::execve(exec.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    outcome("exec-host-shell", i64::from(r), "/bin/sh");

    // Network.
    if let Some(port) = a.tcp_port {
        let r = std::net::TcpStream::connect(("127.0.0.1", port));
        match r {
            Ok(_) => report("tcp-connect", false, 0, &format!("127.0.0.1:{port}")),
            Err(e) => report(
                "tcp-connect",
                true,
                e.raw_os_error().unwrap_or(0),
                &format!("127.0.0.1:{port}"),
            ),
        }
    }
    if let Some(name) = &a.abstract_name {
        use std::os::linux::net::SocketAddrExt;
        let r = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| std::os::unix::net::UnixStream::connect_addr(&addr));
        match r {
            Ok(_) => report("abstract-unix-connect", false, 0, name),
            Err(e) => report(
                "abstract-unix-connect",
                true,
                e.raw_os_error().unwrap_or(0),
                name,
            ),
        }
    }
    match std::net::TcpListener::bind("127.0.0.1:40123") {
        Ok(_) => report("tcp-bind", false, 0, "127.0.0.1:40123"),
        Err(e) => report(
            "tcp-bind",
            true,
            e.raw_os_error().unwrap_or(0),
            "127.0.0.1:40123",
        ),
    }
    // SAFETY: plain socket() call.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    outcome("raw-socket", i64::from(s), "AF_INET SOCK_RAW");
    if s >= 0 {
        // SAFETY: s is our socket.
        unsafe { libc::close(s) };
    }

    // Other processes.
    if let Some(pid) = a.kill_pid {
        // SAFETY: ptrace attach with null addr/data.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_ATTACH,
                pid,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )
        };
        outcome("ptrace-outside", r, &pid.to_string());
        if r == 0 {
            // Attached after all: let the target go on as it was.
            // SAFETY: waiting for the attach stop of our tracee, then detaching with no signal.
            unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL);
                libc::ptrace(
                    libc::PTRACE_DETACH,
                    pid,
                    std::ptr::null_mut::<libc::c_void>(),
                    std::ptr::null_mut::<libc::c_void>(),
                );
            }
        }
        // SAFETY: kill with a real signal on the test's own sleep process.
        let r = unsafe { libc::kill(pid, libc::SIGTERM) };
        outcome("kill-outside", i64::from(r), &pid.to_string());
    }

    // Kernel attack surface that no VMM needs (the jailer's seccomp baseline).
    kernel_surface();

    // Privilege.
    // SAFETY: setuid has no memory preconditions.
    let r = unsafe { libc::setuid(0) };
    outcome("setuid-0", i64::from(r), "0");
    let garbage = [0x7fu8, b'E', b'L', b'F', 0, 0, 0, 0];
    let params = cstr("");
    // SAFETY: garbage is a valid buffer of the given length; params is a C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            garbage.as_ptr(),
            garbage.len(),
            params.as_ptr(),
        )
    };
    outcome("init-module", r, "8 bytes of garbage");
    let cfg = cstr("/config.json");
    // SAFETY: valid path.
    let fd = unsafe { libc::open(cfg.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    // SAFETY: fd is ours (or -1, which the kernel rejects); params is a C string.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, fd, params.as_ptr(), 0) };
    outcome("finit-module", r, "/config.json");
    if fd >= 0 {
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max + 1,
        rlim_max: lim.rlim_max + 1,
    };
    // SAFETY: raised is a valid rlimit.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    outcome(
        "raise-rlimit",
        i64::from(r),
        &format!("NOFILE {} -> {}", lim.rlim_max, lim.rlim_max + 1),
    );

    // cgroup limits.
    if let Some(mib) = a.mem_mib {
        memory_bomb(mib);
    }
    if a.pids {
        fork_bomb();
    }
    if a.hold_ms > 0 {
        println!("{{\"attempt\":\"holding\",\"ms\":{}}}", a.hold_ms);
        let _ = std::io::stdout().flush();
        std::thread::sleep(std::time::Duration::from_millis(a.hold_ms));
    }
    std::process::exit(a.exit_code);
}

/// Runs `f` in a forked child, so that what it changes (a new user namespace, a
/// new session keyring) ends with the child; the child exits with the errno (0 on
/// success). Reports the attempt.
fn in_child(attempt: &str, detail: &str, f: fn() -> libc::c_long) {
    // SAFETY: the child makes one system call and _exits; nothing else runs there.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let r = f();
        let code = if r < 0 { errno() } else { 0 };
        // SAFETY: _exit in the forked child.
        unsafe { libc::_exit(code) };
    }
    if pid < 0 {
        report(attempt, true, errno(), &format!("fork failed: {detail}"));
        return;
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        report(attempt, code != 0, code, detail);
    } else {
        report(
            attempt,
            true,
            0,
            &format!("{detail}: child ended with status {status}"),
        );
    }
}

/// Netlink, a new user namespace, the keyring and clone3 (all denied by the
/// jailer's seccomp baseline), and a thread (allowed: std falls back from clone3
/// to clone).
fn kernel_surface() {
    // SAFETY: plain socket() call.
    let s = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    outcome("netlink-socket", i64::from(s), "AF_NETLINK NETLINK_ROUTE");
    if s >= 0 {
        // SAFETY: s is our socket.
        unsafe { libc::close(s) };
    }
    in_child("unshare-user", "unshare(CLONE_NEWUSER)", || {
        // SAFETY: unshare has no memory preconditions; this is a forked child.
        libc::c_long::from(unsafe { libc::unshare(libc::CLONE_NEWUSER) })
    });
    in_child(
        "keyctl",
        "keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)",
        || {
            // SAFETY: KEYCTL_JOIN_SESSION_KEYRING with a NULL name joins a new
            // anonymous session keyring, which ends with this forked child.
            unsafe {
                libc::syscall(
                    libc::SYS_keyctl,
                    libc::c_long::from(libc::KEYCTL_JOIN_SESSION_KEYRING),
                    std::ptr::null::<libc::c_char>(),
                )
            }
        },
    );
    // SAFETY: clone3 with a NULL argument of size 0 creates nothing (EINVAL when
    // it reaches the kernel).
    let r = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
    outcome("clone3", r, "clone3(NULL, 0)");
    match std::thread::Builder::new().spawn(|| 7).map(|t| t.join()) {
        Ok(Ok(7)) => report("thread-spawn", false, 0, "std::thread::spawn"),
        Ok(_) => report("thread-spawn", true, 0, "the thread failed"),
        Err(e) => report(
            "thread-spawn",
            true,
            e.raw_os_error().unwrap_or(0),
            "std::thread::spawn",
        ),
    }
}

/// Allocates and touches `mib` MiB in a child; the cgroup's OOM killer must kill it.
fn memory_bomb(mib: usize) {
    // SAFETY: the child only allocates, writes and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut v: Vec<Vec<u8>> = Vec::new();
        for _ in 0..mib {
            v.push(vec![1u8; 1 << 20]);
        }
        // SAFETY: _exit in the forked child.
        unsafe { libc::_exit(0) };
    }
    if pid < 0 {
        report("memory-limit", true, errno(), "fork failed");
        return;
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL {
        report(
            "memory-limit",
            true,
            0,
            &format!("child touching {mib} MiB was SIGKILLed (OOM)"),
        );
    } else {
        report(
            "memory-limit",
            false,
            0,
            &format!("child touching {mib} MiB ended with status {status}"),
        );
    }
}

/// Forks until fork fails; reports how many children it got and the errno.
fn fork_bomb() {
    let mut children = Vec::new();
    let mut err = 0;
    for _ in 0..4096 {
        // SAFETY: the child only pauses until killed.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            }
        }
        if pid < 0 {
            err = errno();
            break;
        }
        children.push(pid);
    }
    for pid in &children {
        // SAFETY: our own children.
        unsafe {
            libc::kill(*pid, libc::SIGKILL);
            libc::waitpid(*pid, std::ptr::null_mut(), 0);
        }
    }
    report(
        "pids-limit",
        err != 0,
        err,
        &format!("{} children before fork failed", children.len()),
    );
}

/// Attaches to a tap as the VMM does (TUNSETIFF on /dev/net/tun).
fn attach_tap(name: &str) {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        pad: [u8; 22],
    }
    let tun = cstr("/dev/net/tun");
    // SAFETY: valid path.
    let fd = unsafe { libc::open(tun.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        report("attach-tap", true, errno(), name);
        return;
    }
    let mut req = IfReq {
        name: [0; 16],
        flags: 0x0002 | 0x1000 | 0x4000,
        pad: [0; 22],
    };
    let n = name.len().min(15);
    req.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: TUNSETIFF with a valid ifreq-sized buffer on our tun fd.
    let r = unsafe { libc::ioctl(fd, 0x4004_54ca, &mut req as *mut IfReq) };
    outcome("attach-tap", i64::from(r), name);
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
}

/// One `--try OP:PATH` attempt.
fn try_op(spec: &str) {
    let (op, path) = spec.split_once(':').unwrap_or((spec, ""));
    let c = cstr(path);
    let ret: i64 = match op {
        "read" => open(path, libc::O_RDONLY),
        "write" => open(path, libc::O_WRONLY),
        "create" => {
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
            // SAFETY: c is a valid C string path; the mode is passed for O_CREAT.
            let fd = unsafe { libc::open(c.as_ptr(), flags, 0o600 as libc::c_uint) };
            if fd >= 0 {
                // SAFETY: fd was just opened by this process.
                unsafe { libc::close(fd) };
            }
            i64::from(fd)
        }
        "truncate" => open(path, libc::O_WRONLY | libc::O_TRUNC),
        // SAFETY: c is a valid C string path.
        "unlink" => i64::from(unsafe { libc::unlink(c.as_ptr()) }),
        // SAFETY: c is a valid C string path.
        "mkdir" => i64::from(unsafe { libc::mkdir(c.as_ptr(), 0o700) }),
        // A device node (/dev/null's numbers) and a FIFO.
        // SAFETY: c is a valid C string path.
        "mknod" => i64::from(unsafe {
            libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3))
        }),
        // SAFETY: c is a valid C string path.
        "mkfifo" => i64::from(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }),
        "symlink" => {
            let target = cstr("/config.json");
            // SAFETY: both are valid C strings.
            i64::from(unsafe { libc::symlink(target.as_ptr(), c.as_ptr()) })
        }
        "rename" => {
            let to = cstr(&format!("{path}.renamed"));
            // SAFETY: both are valid C strings.
            i64::from(unsafe { libc::rename(c.as_ptr(), to.as_ptr()) })
        }
        "map" => map_private(&c),
        _ => {
            report(
                &format!("try-{op}"),
                true,
                libc::EINVAL,
                "unknown --try operation",
            );
            return;
        }
    };
    outcome(&format!("try-{op} {path}"), ret, path);
}

/// Opens `path` read-only and maps its first page private, readable and
/// writable, then writes to the copy (a restore's memory mapping).
fn map_private(path: &std::ffi::CStr) -> i64 {
    // SAFETY: path is a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return -1;
    }
    // SAFETY: a new private mapping of one page of an open fd; checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
            fd,
            0,
        )
    };
    let err = errno();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if p == libc::MAP_FAILED {
        // SAFETY: restores errno for the report.
        unsafe { *libc::__errno_location() = err };
        return -1;
    }
    // SAFETY: p is a writable private mapping of 4096 bytes.
    unsafe {
        p.cast::<u8>().write_volatile(0x5a);
        libc::munmap(p, 4096);
    }
    0
}
