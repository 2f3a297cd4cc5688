//! Virtio devices end to end: the real `caisson` binary boots the virtio test
//! guests (tests/guests/virtio_*.c) from Firecracker config files, and the host
//! side checks what the guest did (file contents, bytes on a tap or a socket).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::net::{tap_host, NetNs};
use common::*;

/// Writes a config file booting guest `name` with the device sections in `devices`.
fn config(dir: &Path, name: &str, cmdline: &str, devices: serde_json::Value) -> String {
    let mut cfg = serde_json::json!({
        "boot-source": {"kernel_image_path": guest(name), "boot_args": cmdline},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
    });
    for (k, v) in devices.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, cfg.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

fn run(cfg: &str) -> Output {
    require_kvm();
    caisson(&["--no-api", "--config-file", cfg, "--serial", "stdout"])
}

fn line_with<'a>(out: &'a Output, prefix: &str) -> &'a str {
    out.lines()
        .into_iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}: {out:?}"))
}

/// A disk whose sector i is filled with byte i.
fn disk(dir: &Path, sectors: usize) -> std::path::PathBuf {
    let p = dir.join("disk.img");
    let bytes: Vec<u8> = (0..sectors * 512).map(|i| (i / 512) as u8).collect();
    std::fs::write(&p, bytes).unwrap();
    p
}

const PAT_SECTOR: usize = 8;
const PAT_BYTES: usize = 64 * 512;

#[test]
fn block_guest_writes_flushes_and_reads_back() {
    let dir = tempdir();
    let img = disk(dir.path(), 128);
    let cfg = config(
        dir.path(),
        "virtio_blk",
        "console=ttyS0",
        serde_json::json!({"drives": [{"drive_id": "rootfs", "path_on_host": img,
            "is_root_device": true, "is_read_only": false}]}),
    );
    let out = run(&cfg);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.lines().contains(&"blk: capacity 128 sectors"),
        "{out:?}"
    );
    assert!(
        out.lines().contains(&"blk: id rootfs status 0 used 21"),
        "{out:?}"
    );
    // The guest read the host's first 8 sectors.
    let file = std::fs::read(&img).unwrap();
    let head = format!(
        "blk: head {:016x} status 0 used 4097",
        fnv1a64(&file[..8 * 512])
    );
    assert!(out.lines().contains(&head.as_str()), "{head}: {out:?}");
    assert!(
        out.lines().contains(&"blk: pattern ok (32768 bytes)"),
        "{out:?}"
    );
    assert!(
        out.lines()
            .contains(&"blk: bad requests: out-of-range 1, odd length 1, type 42 2"),
        "{out:?}"
    );
    // The writes landed in the file, and nothing else changed.
    assert_eq!(file.len(), 128 * 512);
    for (i, b) in file.iter().enumerate() {
        let o = i;
        let want = if (PAT_SECTOR * 512..PAT_SECTOR * 512 + PAT_BYTES).contains(&o) {
            ((o % 251) as u8) ^ 0x5a
        } else {
            (o / 512) as u8
        };
        assert_eq!(*b, want, "byte {o} of the disk");
    }
}

#[test]
fn root_drive_words_reach_the_guest_command_line() {
    let dir = tempdir();
    let img = disk(dir.path(), 8);
    let cfg = config(
        dir.path(),
        "args",
        "console=ttyS0",
        serde_json::json!({
            "drives": [{"drive_id": "rootfs", "path_on_host": img, "is_root_device": true, "is_read_only": true}],
            "entropy": {}
        }),
    );
    let out = run(&cfg);
    assert_eq!(out.code, Some(0), "{out:?}");
    let want = "console=ttyS0 root=/dev/vda ro virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6";
    let line = format!(
        "args: cmdline {:016x} len {}",
        fnv1a64(want.as_bytes()),
        want.len()
    );
    assert!(out.lines().contains(&line.as_str()), "{line}: {out:?}");
}

#[test]
fn read_only_drive_refuses_guest_writes() {
    let dir = tempdir();
    let img = disk(dir.path(), 128);
    let before = std::fs::read(&img).unwrap();
    let cfg = config(
        dir.path(),
        "virtio_blk",
        "console=ttyS0",
        serde_json::json!({"drives": [{"drive_id": "ro", "path_on_host": img,
            "is_root_device": false, "is_read_only": true}]}),
    );
    let out = run(&cfg);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.lines().contains(&"blk: capacity 128 sectors ro"),
        "{out:?}"
    );
    assert!(out.lines().contains(&"blk: ro write status 1"), "{out:?}");
    assert_eq!(
        std::fs::read(&img).unwrap(),
        before,
        "the file is unchanged"
    );
}

fn rng_run(dir: &Path) -> (u32, u32, String) {
    let cfg = config(
        dir,
        "virtio_rng",
        "console=ttyS0",
        serde_json::json!({"entropy": {"rate_limiter": null}}),
    );
    let out = run(&cfg);
    assert_eq!(out.code, Some(0), "{out:?}");
    // The only device: IRQ 5, whose irqfd raised IOAPIC pin 5 (vector 0x45).
    assert!(
        out.lines()
            .contains(&"rng: irq 5 vector 45 pending before 0 after 1, isr 1"),
        "{out:?}"
    );
    let l = line_with(&out, "rng: 4096");
    // "rng: <len> bytes, <distinct> distinct, hash <hex>"
    let w: Vec<&str> = l.split_whitespace().collect();
    (
        w[1].parse().unwrap(),
        w[3].parse().unwrap(),
        w[6].to_string(),
    )
}

#[test]
fn rng_guest_gets_4k_of_random_bytes() {
    let dir = tempdir();
    let (len, distinct, hash1) = rng_run(dir.path());
    assert_eq!(len, 4096);
    // 4096 uniform bytes cover nearly all 256 values; a constant buffer has 1.
    assert!(distinct >= 200, "{distinct} distinct byte values");
    let (_, _, hash2) = rng_run(dir.path());
    assert_ne!(hash1, hash2, "two boots got the same bytes");
}

#[test]
fn missing_drive_file_is_rejected_before_boot() {
    let dir = tempdir();
    let cfg = config(
        dir.path(),
        "virtio_blk",
        "console=ttyS0",
        serde_json::json!({"drives": [{"drive_id": "rootfs", "path_on_host": "/nonexistent/rootfs.ext4",
            "is_root_device": true}]}),
    );
    let out = run(&cfg);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("drives[0].path_on_host")
            && out.stderr.contains("/nonexistent/rootfs.ext4"),
        "{out:?}"
    );
    assert!(
        !out.stdout.contains("blk:"),
        "the guest must not run: {out:?}"
    );
}

/// Spawns caisson on `cfg` with piped output.
fn spawn(cfg: &str) -> std::process::Child {
    require_kvm();
    std::process::Command::new(CAISSON)
        .args(["--no-api", "--config-file", cfg, "--serial", "stdout"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for_path(p: &Path) {
    let start = std::time::Instant::now();
    while !p.exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{} never appeared",
            p.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn vsock_guest_and_host_initiated_echo_with_credit() {
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::time::Duration;

    let dir = tempdir();
    let uds = dir.path().join("v.sock");
    // Guest-initiated connections to port 5000 land here.
    let l5000 = UnixListener::bind(dir.path().join("v.sock_5000")).unwrap();
    let cfg = config(
        dir.path(),
        "virtio_vsock",
        "console=ttyS0",
        serde_json::json!({"vsock": {"vsock_id": "vsock0", "guest_cid": 7, "uds_path": uds}}),
    );
    let child = spawn(&cfg);
    let (tx, rx) = std::sync::mpsc::channel();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = l5000.accept().unwrap();
        let second = std::thread::spawn(move || {
            // The guest's last connection, dropped by a device reset: EOF.
            let (mut s, _) = l5000.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut b = [0u8; 16];
            s.read(&mut b).unwrap()
        });
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            s.write_all(&buf[..n]).unwrap();
        }
        tx.send(got).unwrap();
        second
    });
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("guest-initiated connection");
    let second = echo.join().unwrap();
    assert_eq!(got, b"hello from the guest over vsock");

    // Host-initiated: CONNECT 6000, OK <port>, then 256 KiB echoed back.
    wait_for_path(&uds);
    let mut s = UnixStream::connect(&uds).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"CONNECT 6000\n").unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while b[0] != b'\n' {
        s.read_exact(&mut b).unwrap();
        line.push(b[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let port: u32 = line
        .strip_prefix("OK ")
        .and_then(|p| p.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("bad reply {line:?}"));
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 13 % 256) as u8).collect();
    let mut w = s.try_clone().unwrap();
    let d2 = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&d2).unwrap());
    let mut echoed = vec![0u8; data.len()];
    s.read_exact(&mut echoed).unwrap();
    writer.join().unwrap();
    assert!(echoed == data, "the echo differs from what was sent");
    drop(s);

    let out = wait_output(child, Duration::from_secs(60));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.lines().contains(&"vsock: guest cid 7"), "{out:?}");
    assert!(
        out.lines().contains(&"vsock: guest-initiated echo ok"),
        "{out:?}"
    );
    let accepted = format!("vsock: accepted host port {port}");
    assert!(out.lines().contains(&accepted.as_str()), "{out:?}");
    let ok = line_with(&out, "vsock: host-initiated echo ok ");
    let w: Vec<&str> = ok.split_whitespace().collect();
    assert_eq!(w[4], "262144", "{ok}");
    let max: u32 = w[9].parse().unwrap();
    assert!(max <= 65536, "device exceeded the guest's credit: {ok}");
    // The reset (on a vCPU thread, under its seccomp filter) closed the last
    // connection and the VMM went on to a clean exit.
    assert!(
        out.lines()
            .contains(&"vsock: reset with an open connection"),
        "{out:?}"
    );
    assert_eq!(second.join().unwrap(), 0, "EOF on the reset connection");
}

const GUEST_MAC: [u8; 6] = [0x06, 0x00, 0xac, 0x10, 0x00, 0x02];
const HOST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// The first 0x88b5 frame from the guest's MAC within `secs`.
fn frame_from_guest(s: &std::os::fd::OwnedFd, secs: u64) -> Vec<u8> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if let Some(f) = tap_host::recv(s) {
            if f.len() >= 14 && f[6..12] == GUEST_MAC && f[12..14] == [0x88, 0xb5] {
                return f;
            }
        }
    }
    panic!("no frame from the guest within {secs} s");
}

fn net_echo(by_fd: bool) {
    require_kvm();
    let ns = NetNs::new();
    let dir = tempdir();
    let tap = format!("cstap{}", std::process::id() % 100_000);
    let tap2 = tap.clone();
    let (fd, sock) = ns.run(move || {
        let fd = tap_host::create(&tap2, !by_fd);
        let sock = tap_host::packet_socket(&tap2);
        (by_fd.then_some(fd), sock)
    });
    let mut devices = serde_json::json!({"network-interfaces": [{"iface_id": "eth0",
        "host_dev_name": tap, "guest_mac": "06:00:ac:10:00:02"}]});
    if let Some(fd) = &fd {
        use std::os::fd::AsRawFd;
        tap_host::inheritable(fd.as_raw_fd());
        devices["caisson"] = serde_json::json!({"net_fds": {"eth0": fd.as_raw_fd()}});
    }
    let cfg = config(dir.path(), "virtio_net", "console=ttyS0", devices);
    // Spawned from the namespace's thread, so the VMM runs in that namespace.
    let child = ns.run(move || spawn(&cfg));
    drop(fd);

    let hello = frame_from_guest(&sock, 30);
    assert_eq!(&hello[..6], &[0xff; 6], "broadcast");
    assert_eq!(&hello[14..14 + 24], b"hello from the guest net");

    let payload = format!("ping from the host {}", std::process::id());
    let mut frame = GUEST_MAC.to_vec();
    frame.extend_from_slice(&HOST_MAC);
    frame.extend_from_slice(&[0x88, 0xb5]);
    frame.extend_from_slice(payload.as_bytes());
    frame.resize(60, 0);
    tap_host::send(&sock, &frame);
    let echo = frame_from_guest(&sock, 30);
    assert_eq!(&echo[..6], &HOST_MAC, "echo addressed to the host");
    assert_eq!(&echo[14..60], &frame[14..60], "payload echoed");

    let out = wait_output(child, std::time::Duration::from_secs(60));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.lines().contains(&"net: mac 06:00:ac:10:00:02"),
        "{out:?}"
    );
    assert!(
        out.lines()
            .contains(&"net: got 46 bytes, num_buffers 1, flags 0"),
        "{out:?}"
    );
}

#[test]
fn net_guest_echoes_through_a_named_tap() {
    net_echo(false);
}

#[test]
fn net_guest_echoes_through_an_inherited_tap_fd() {
    net_echo(true);
}

#[test]
fn hostile_guest_cannot_break_the_vmm() {
    let dir = tempdir();
    let img = disk(dir.path(), 64);
    let cfg = config(
        dir.path(),
        "virtio_hostile",
        "console=ttyS0",
        serde_json::json!({"drives": [{"drive_id": "rootfs", "path_on_host": img,
            "is_root_device": true, "is_read_only": false}]}),
    );
    let out = run(&cfg);
    assert_eq!(out.code, Some(0), "{out:?}");
    for case in [
        "baseline",
        "loop",
        "out-of-range address",
        "oversize length",
        "write into device-readable buffer",
        "queue size 100",
        "notify before DRIVER_OK",
        "config access outside config space",
        "notify flood",
    ] {
        let line = format!("hostile: {case} ok");
        assert!(out.lines().contains(&line.as_str()), "{line}: {out:?}");
    }
    assert!(out.lines().contains(&"hostile: still serving"), "{out:?}");
    // Each fault was reported, by name.
    for what in [
        "does not end within 16 descriptors",
        "is outside guest memory",
        "more than 16777216",
        "wrong direction",
        "size 100 is not a power of two",
        "notified before DRIVER_OK",
        "outside the 16-byte config space",
    ] {
        assert!(
            out.stderr.contains(what),
            "no warning with {what:?}: {out:?}"
        );
    }
    // 2000 bad notifies, but the warnings are rate limited.
    let flood = out
        .stderr
        .lines()
        .filter(|l| l.contains("notify for queue 7"))
        .count();
    // The flood may fall in a window the earlier cases already filled; then
    // all of it is suppressed, and said so (at the latest when the VM ends).
    assert!(flood <= 10, "{flood} flood warnings");
    assert!(
        flood >= 1 || out.stderr.contains("similar warnings were suppressed"),
        "the flood was neither warned about nor counted as suppressed: {out:?}"
    );
    // The valid writes of the guest landed in the file.
    let file = std::fs::read(&img).unwrap();
    let want: Vec<u8> = (0..512).map(|i| (i * 3 + 9) as u8).collect();
    assert_eq!(&file[1024..1536], &want[..]);
}

/// The block benchmark (virtio_bench guest). Runs short here; for real numbers
/// set CAISSON_BENCH_N (requests per workload) and use --nocapture, e.g.
/// `CAISSON_BENCH_N=20000 cargo test --release --test virtio bench -- --nocapture`.
#[test]
fn block_bench_reports_every_workload() {
    let n: u64 = std::env::var("CAISSON_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempdir();
    let img = dir.path().join("bench.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let cfg = config(
        dir.path(),
        "virtio_bench",
        &format!("console=ttyS0 bench.n={n}"),
        serde_json::json!({"drives": [{"drive_id": "bench", "path_on_host": img,
            "is_root_device": false, "is_read_only": false}]}),
    );
    let out = run(&cfg);
    assert_eq!(out.code, Some(0), "{out:?}");
    for (name, qd) in [
        ("randread-4k", 1),
        ("randread-4k", 32),
        ("randwrite-4k", 1),
        ("randwrite-4k", 32),
        ("seqread-64k", 1),
        ("seqwrite-64k", 1),
    ] {
        let l = line_with(&out, &format!("bench: {name} qd {qd} "));
        println!("{l}");
        let w: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(w[5], n.to_string(), "{l}");
        let iops: u64 = w[9].parse().unwrap();
        let kicks: u64 = w[13].parse().unwrap();
        assert!(iops > 0, "{l}");
        assert!(
            (1..=100).contains(&kicks),
            "at most one notify per request: {l}"
        );
    }
}

#[test]
fn block_guest_failure_is_exit_65() {
    // 16 sectors cannot hold the guest's pattern at sectors 8..72: the device
    // answers IOERR, the guest exits with status 2, caisson with 65.
    let dir = tempdir();
    let img = disk(dir.path(), 16);
    let before = std::fs::read(&img).unwrap();
    let cfg = config(
        dir.path(),
        "virtio_blk",
        "console=ttyS0",
        serde_json::json!({"drives": [{"drive_id": "small", "path_on_host": img,
            "is_root_device": false}]}),
    );
    let out = run(&cfg);
    assert_eq!(out.code, Some(65), "{out:?}");
    assert!(out.lines().contains(&"blk: write failed 1"), "{out:?}");
    assert_eq!(
        std::fs::read(&img).unwrap(),
        before,
        "nothing written past the end"
    );
}
