//! Real Linux guests (issue 8, part 3): the kernel built by
//! tests/linux/build-kernel.sh and the initramfs of tests/linux/build-initramfs.sh
//! boot through the real `caisson` binary; the guest's init runs the checks named
//! on its command line and prints one `CAISSON-CHECK` line each, which these tests
//! assert, together with what the host saw (files, sockets) and the exit code.
//!
//! A boot takes minutes on hosts without VMX/SVM, so each boot carries several
//! checks: `linux_boots_smp_and_drives_blk_rng_vsock_serial` (items 1-5 and 7),
//! `linux_tcp_over_virtio_net_in_a_netns` (item 6),
//! `linux_finds_virtio_devices_through_acpi_alone` (item 9). The jailed boot
//! (item 8) is jailer/tests/linux.rs. Wall times are printed, never asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::BufReader;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::linux::*;
use common::net::{tap_host, NetNs};
use common::{require_kvm, tempdir, CAISSON};

const MIB: u64 = 1 << 20;

/// The writable disk: the host's pattern at `HOST_RANGE`, the guest's at `GUEST_RANGE`.
const RW_ID: &str = "caisson-rw";
const RW_SIZE: u64 = 4 * MIB;
const HOST_RANGE: (u64, u64, u64) = (0, MIB, 0xb10c_0001);
const GUEST_RANGE: (u64, u64, u64) = (2 * MIB, 256 * 1024, 0xb10c_0002);
/// The read-only disk, all of it pattern `RO_SEED`; the guest reads `RO_READ` bytes.
const RO_ID: &str = "caisson-ro";
const RO_SIZE: u64 = MIB;
const RO_SEED: u64 = 0xb10c_0003;
const RO_READ: u64 = 64 * 1024;

/// vsock: the guest's CID, the port it listens on and the one it connects to.
const CID: u32 = 3;
const LISTEN_PORT: u32 = 5000;
const CONNECT_PORT: u32 = 5001;
/// Host-initiated: the host sends 4 MiB, the guest answers with 256 KiB.
const HOST_TO_GUEST: (u64, u64) = (4 * MIB, 256 * 1024);
/// Guest-initiated: the guest sends 1 MiB, the host answers with 1 MiB.
const GUEST_TO_HOST: (u64, u64) = (MIB, MIB);

/// Sets a flag on drop, so host peer threads stop waiting when a test fails.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Accepts one connection unless `stop` is set first (or `BOOT_LIMIT` passes).
fn accept_or_stop<T>(
    stop: &AtomicBool,
    mut accept: impl FnMut() -> std::io::Result<T>,
) -> Result<T, String> {
    accept_within(BOOT_LIMIT, || {
        if stop.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("stopped"));
        }
        accept()
    })
}

/// Writes the VM config: the test kernel and initramfs, `vcpus`, `args` after
/// [`boot_args`], and the device sections in `devices`.
fn config(dir: &Path, vcpus: u32, args: &str, devices: serde_json::Value) -> PathBuf {
    let mut cfg = serde_json::json!({
        "boot-source": {
            "kernel_image_path": kernel(),
            "initrd_path": initramfs(),
            "boot_args": format!("{} {args}", boot_args()),
        },
        "machine-config": {"vcpu_count": vcpus, "mem_size_mib": 128},
    });
    for (k, v) in devices.as_object().expect("device sections") {
        cfg[k] = v.clone();
    }
    let path = dir.join("vm.json");
    std::fs::write(&path, cfg.to_string()).expect("write the VM config");
    path
}

fn caisson(cfg: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(CAISSON);
    c.arg("--no-api")
        .arg("--config-file")
        .arg(cfg)
        .args(["--serial", "stdout"]);
    c
}

/// The two disks, with their patterns.
fn make_disks(dir: &Path) -> (PathBuf, PathBuf) {
    let rw = dir.join("rw.img");
    let mut img = vec![0u8; RW_SIZE as usize];
    let (off, len, seed) = HOST_RANGE;
    pattern(seed, off, &mut img[off as usize..(off + len) as usize]);
    std::fs::write(&rw, &img).expect("write rw.img");
    let ro = dir.join("ro.img");
    std::fs::write(&ro, pattern_vec(RO_SEED, 0, RO_SIZE as usize)).expect("write ro.img");
    (rw, ro)
}

fn drives(rw: &Path, ro: &Path) -> serde_json::Value {
    serde_json::json!([
        {"drive_id": RW_ID, "path_on_host": rw, "is_root_device": false, "is_read_only": false},
        {"drive_id": RO_ID, "path_on_host": ro, "is_root_device": false, "is_read_only": true},
    ])
}

fn blk_args() -> String {
    let (ho, hl, hs) = HOST_RANGE;
    let (go, gl, gs) = GUEST_RANGE;
    format!(
        "caisson.blk_read={ho}:{hl}:{hs} caisson.blk_write={go}:{gl}:{gs} \
         caisson.blk_ro=0:{RO_READ}:{RO_SEED}"
    )
}

/// Item 3: the guest read the host's patterns, wrote its own, the read-only disk
/// refused writes, the serials are the drive ids; then the files say the same.
fn assert_blk(g: &Guest, rw: &Path, ro: &Path) {
    let c = g.check("blk");
    c.expect("vda_serial", RW_ID);
    c.expect("vdb_serial", RO_ID);
    c.expect("vda_sectors", &(RW_SIZE / 512).to_string());
    c.expect("vda_ro", "0");
    c.expect("vdb_ro", "1");
    let (ho, hl, hs) = HOST_RANGE;
    assert_eq!(
        c.hash("read_fnv"),
        fnv1a(FNV_INIT, &pattern_vec(hs, ho, hl as usize)),
        "{}",
        c.line
    );
    let (go, gl, gs) = GUEST_RANGE;
    let guest_data = pattern_vec(gs, go, gl as usize);
    assert_eq!(
        c.hash("write_fnv"),
        fnv1a(FNV_INIT, &guest_data),
        "{}",
        c.line
    );
    c.expect("direct_readback", "ok");
    assert_eq!(
        c.hash("vdb_fnv"),
        fnv1a(FNV_INIT, &pattern_vec(RO_SEED, 0, RO_READ as usize)),
        "{}",
        c.line
    );
    // Refused at open (EROFS) or, if the open passed, at the write.
    let refused = match c.field("ro_open") {
        "ok" => c.field("ro_write"),
        e => e,
    };
    assert!(
        ["EROFS", "EACCES", "EPERM"].contains(&refused),
        "the read-only disk: {}",
        c.line
    );

    let img = std::fs::read(rw).expect("read rw.img");
    assert_eq!(img.len() as u64, RW_SIZE, "rw.img changed size");
    let mut want = vec![0u8; RW_SIZE as usize];
    pattern(hs, ho, &mut want[ho as usize..(ho + hl) as usize]);
    want[go as usize..(go + gl) as usize].copy_from_slice(&guest_data);
    if let Some(i) = (0..img.len()).find(|&i| img[i] != want[i]) {
        panic!("rw.img byte {i} is {:#04x}, want {:#04x}", img[i], want[i]);
    }
    assert!(
        std::fs::read(ro).expect("read ro.img") == pattern_vec(RO_SEED, 0, RO_SIZE as usize),
        "ro.img changed"
    );
}

/// Items 1-5 and 7 in one boot: init (wall time), 2 vCPUs, virtio-blk, virtio-rng,
/// virtio-vsock both ways with a 4 MiB transfer, and the serial console's input.
#[test]
fn linux_boots_smp_and_drives_blk_rng_vsock_serial() {
    require_kvm();
    let dir = tempdir();
    let (rw, ro) = make_disks(dir.path());
    let uds = dir.path().join("v.sock");
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));

    // Guest-initiated connections to port CONNECT_PORT reach this listener.
    let listener = UnixListener::bind(format!("{}_{CONNECT_PORT}", uds.display()))
        .expect("bind the host's vsock listener");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let flag = stop.0.clone();
    let host_responder = std::thread::spawn(move || {
        let (s, _) = accept_or_stop(&flag, || listener.accept())?;
        s.set_nonblocking(false).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut w = s.try_clone().map_err(|e| e.to_string())?;
        respond(&mut BufReader::new(s), &mut w)
    });

    let (gn, gm) = GUEST_TO_HOST;
    // acpi=off: this boot takes the other discovery path from the ACPI test's,
    // the MP table and the `virtio_mmio.device=` words with legacy IRQs.
    let args = format!(
        "acpi=off caisson.checks=smp,blk,rng,vsock-listen,vsock-connect,serial caisson.cpus=2 {} \
         caisson.vsock_listen={LISTEN_PORT} caisson.vsock_connect={CONNECT_PORT} \
         caisson.vsock_bytes={gn},{gm}",
        blk_args()
    );
    let cfg = config(
        dir.path(),
        2,
        &args,
        serde_json::json!({
            "drives": drives(&rw, &ro),
            "entropy": {},
            "vsock": {"vsock_id": "vsock0", "guest_cid": CID, "uds_path": uds},
        }),
    );
    let mut g = Guest::spawn("linux-devices", caisson(&cfg));

    let (hn, hm) = HOST_TO_GUEST;
    let mut host_initiator = None;
    let mut shell_prompted: Option<Instant> = None;
    let mut reboot_sent = false;
    loop {
        match g.next(Duration::from_secs(5)) {
            Event::Line(l) => {
                if l.contains(&format!("CAISSON-READY vsock-listen {LISTEN_PORT}"))
                    && host_initiator.is_none()
                {
                    let uds = uds.clone();
                    host_initiator = Some(std::thread::spawn(move || {
                        let (mut r, mut w, host_port) = vsock_connect(&uds, LISTEN_PORT)?;
                        let x = initiate(&mut r, &mut w, hn, 0x1057_0001, hm, 0x1057_0002)?;
                        Ok::<_, String>((x, host_port))
                    }));
                }
                if l.contains("CAISSON-SHELL") {
                    shell_prompted = Some(Instant::now());
                    g.send("echo SERIAL-$((6*7))\n");
                }
                if l.trim() == "SERIAL-42" && !reboot_sent {
                    g.send("reboot -f\n");
                    reboot_sent = true;
                }
            }
            // The shell may not have been reading yet: type the line again.
            Event::Quiet => match shell_prompted {
                Some(t) if !reboot_sent && t.elapsed() > Duration::from_secs(60) => {
                    shell_prompted = Some(Instant::now());
                    g.send("echo SERIAL-$((6*7))\n");
                }
                _ => {}
            },
            Event::Closed => break,
        }
    }
    let status = g.finish();
    g.assert_init_and_checks(&["smp", "blk", "rng", "vsock-listen", "vsock-connect"]);

    // Item 2.
    let smp = g.check("smp");
    smp.expect("cpus", "2");
    smp.expect("online", "0-1");
    assert_blk(&g, &rw, &ro);
    assert_rng(&g);

    // Item 5: host-initiated (a), guest-initiated (b), a 4 MiB transfer (c), each
    // checked by hash on both ends.
    let (hx, host_port) = host_initiator
        .expect("the guest never listened on vsock")
        .join()
        .expect("the host initiator thread")
        .unwrap_or_else(|e| g.fail(&format!("host-initiated vsock exchange: {e}")));
    let c = g.check("vsock-listen");
    c.expect("cid", &CID.to_string());
    c.expect("peer", &format!("2:{host_port}"));
    assert_eq!((hx.sent, hx.got), (hn, hm));
    c.expect("got", &hn.to_string());
    assert_eq!(c.hash("got_fnv"), hx.sent_hash, "{}", c.line);
    c.expect("sent", &hm.to_string());
    assert_eq!(c.hash("sent_fnv"), hx.got_hash, "{}", c.line);
    let gx = host_responder
        .join()
        .expect("the host responder thread")
        .unwrap_or_else(|e| g.fail(&format!("guest-initiated vsock exchange: {e}")));
    let c = g.check("vsock-connect");
    c.expect("cid", &CID.to_string());
    c.expect("port", &CONNECT_PORT.to_string());
    assert_eq!((gx.got, gx.sent), (gn, gm));
    assert_eq!(c.hash("sent_fnv"), gx.got_hash, "{}", c.line);
    assert_eq!(c.hash("got_fnv"), gx.sent_hash, "{}", c.line);

    // Item 7: what the host typed ran in the guest's shell, whose `reboot -f`
    // reset the machine (item 1: exit 0).
    if !g.printed("SERIAL-42") {
        g.fail("the shell never printed SERIAL-42");
    }
    if status.code() != Some(0) {
        g.fail(&format!("exit status {status} after reboot -f, want 0"));
    }
    drop(stop);
}

const GUEST_MAC: &str = "06:00:ac:10:00:02";
const HOST_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
const GUEST_NET: &str = "172.16.0.2/24";
const TCP_PORT: u16 = 7000;
const NET_BYTES: (u64, u64) = (2 * MIB, 2 * MIB);

/// Item 6: in a network namespace of the test's own, the guest configures its
/// virtio-net interface and runs a TCP exchange with a host listener on the tap,
/// both ways, checked by hash on both ends.
#[test]
fn linux_tcp_over_virtio_net_in_a_netns() {
    require_kvm();
    let ns = NetNs::new();
    let dir = tempdir();
    let tap = format!("clx{}", std::process::id() % 1_000_000);
    let t = tap.clone();
    let listener = ns.run(move || {
        drop(tap_host::create(&t, true));
        tap_host::set_ipv4(&t, HOST_IP, 24);
        let l = TcpListener::bind((HOST_IP, TCP_PORT)).expect("bind the TCP listener");
        l.set_nonblocking(true).expect("non-blocking listener");
        l
    });
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let flag = stop.0.clone();
    let host_responder = std::thread::spawn(move || {
        let (s, peer) = accept_or_stop(&flag, || listener.accept())?;
        s.set_nonblocking(false).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut w = s.try_clone().map_err(|e| e.to_string())?;
        respond(&mut BufReader::new(s), &mut w).map(|x| (x, peer))
    });

    let (n, m) = NET_BYTES;
    let args = format!(
        "caisson.checks=net caisson.net_addr={GUEST_NET} caisson.net_peer={HOST_IP}:{TCP_PORT} \
         caisson.net_bytes={n},{m} caisson.net_mac={GUEST_MAC}"
    );
    let cfg = config(
        dir.path(),
        1,
        &args,
        serde_json::json!({"network-interfaces": [
            {"iface_id": "eth0", "host_dev_name": tap, "guest_mac": GUEST_MAC}
        ]}),
    );
    let mut cmd = caisson(&cfg);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let start = Instant::now();
    // Spawned from the namespace's thread, so the VMM and its tap live there.
    let child = ns.run(move || cmd.spawn()).expect("spawn caisson");
    let mut g = Guest::watch("linux-net", child, start);
    let status = g.finish();
    g.assert_init_and_checks(&["net"]);
    let c = g.check("net");
    c.expect("mac", GUEST_MAC);
    c.expect("addr", GUEST_NET);
    let (x, peer) = host_responder
        .join()
        .expect("the host responder thread")
        .unwrap_or_else(|e| g.fail(&format!("TCP exchange: {e}")));
    assert_eq!(peer.ip().to_string(), GUEST_NET.split('/').next().unwrap());
    assert_eq!((x.got, x.sent), (n, m));
    c.expect("sent", &n.to_string());
    assert_eq!(c.hash("sent_fnv"), x.got_hash, "{}", c.line);
    c.expect("got", &m.to_string());
    assert_eq!(c.hash("got_fnv"), x.sent_hash, "{}", c.line);
    if status.code() != Some(0) {
        g.fail(&format!("exit status {status}, want 0"));
    }
    drop(stop);
    drop(ns);
}

/// Item 9: with caisson's `virtio_mmio.device=` words turned off, the same kernel
/// finds every virtio device (and both vCPUs) through the ACPI tables alone.
#[test]
fn linux_finds_virtio_devices_through_acpi_alone() {
    require_kvm();
    let dir = tempdir();
    let (rw, ro) = make_disks(dir.path());
    let args = format!(
        "caisson.checks=acpi,smp,blk,rng caisson.cpus=2 {}",
        blk_args()
    );
    let cfg = config(
        dir.path(),
        2,
        &args,
        serde_json::json!({
            "drives": drives(&rw, &ro),
            "entropy": {},
            "caisson": {"virtio_cmdline": false},
        }),
    );
    let mut g = Guest::spawn("linux-acpi", caisson(&cfg));
    let status = g.finish();
    g.assert_init_and_checks(&["acpi", "smp", "blk", "rng"]);
    let c = g.check("acpi");
    c.expect("cmdline_words", "0");
    c.expect("cmdline_devices", "0");
    c.expect("lnro0005", "3");
    c.expect("virtio_devices", "3");
    g.check("smp").expect("cpus", "2");
    assert_blk(&g, &rw, &ro);
    assert_rng(&g);
    if status.code() != Some(0) {
        g.fail(&format!("exit status {status}, want 0"));
    }
}

/// `PUT /actions {"action_type": "SendCtrlAltDel"}` on a running Linux: the
/// keys reach the kernel through the i8042, atkbd and the VT keyboard handler
/// (CONFIG_VT, `Boot` on ctrl-alt-del in the default keymap), whose
/// `ctrl_alt_del()` restarts the machine at once (the init never turns C_A_D
/// off with `reboot(RB_DISABLE_CAD)`); with `reboot=k` that is the i8042's
/// reset line, and `caisson` exits 0. The init sits in the `serial` check's
/// shell meanwhile, so nothing but the keys can end the VM.
#[test]
fn linux_shuts_down_on_send_ctrl_alt_del() {
    require_kvm();
    let dir = tempdir();
    let sock = dir.path().join("api.sock");
    let cfg = config(
        dir.path(),
        1,
        "caisson.checks=serial",
        serde_json::json!({}),
    );
    // The config file boots the VM; the API then serves post-boot requests.
    let mut cmd = std::process::Command::new(CAISSON);
    cmd.arg("--api-sock")
        .arg(&sock)
        .args(["--id", "linux-cad", "--config-file"])
        .arg(&cfg)
        .args(["--serial", "stdout"]);
    let mut g = Guest::spawn("linux-cad", cmd);
    loop {
        match g.next(Duration::from_secs(5)) {
            Event::Line(l) if l.contains("CAISSON-SHELL") => break,
            Event::Line(_) | Event::Quiet => {}
            Event::Closed => g.fail("the VMM exited before the init's shell"),
        }
    }
    if !g
        .transcript
        .iter()
        .any(|l| l.contains("serio: i8042 KBD port"))
    {
        g.fail("Linux did not find the i8042's keyboard port");
    }
    let r = common::http::once(
        &sock,
        "PUT",
        "/actions",
        Some(r#"{"action_type": "SendCtrlAltDel"}"#),
    );
    if r.status != 204 {
        g.fail(&format!("SendCtrlAltDel: {r:?}"));
    }
    let sent = Instant::now();
    // Generous: a reset takes a few emulated kernel steps, not a boot.
    let limit = Duration::from_secs(300);
    while !matches!(g.next(Duration::from_secs(5)), Event::Closed) {
        if sent.elapsed() > limit {
            g.fail(&format!("still running {limit:?} after SendCtrlAltDel"));
        }
    }
    let status = g.finish();
    eprintln!(
        "linux-cad: exit {:.1} s after SendCtrlAltDel",
        sent.elapsed().as_secs_f64()
    );
    for l in g
        .transcript
        .iter()
        .skip_while(|l| !l.contains("CAISSON-SHELL"))
    {
        eprintln!("linux-cad: after the shell prompt | {l}");
    }
    // The reset came from the kernel's restart, not from the init ending its checks.
    if g.transcript.iter().any(|l| l.contains("CAISSON-DONE")) {
        g.fail("the init finished its checks: the shell ended before the keys");
    }
    if !g
        .transcript
        .iter()
        .any(|l| l.contains("reboot: Restarting system"))
    {
        g.fail("Linux did not restart the system");
    }
    if status.code() != Some(0) {
        g.fail(&format!(
            "exit status {status} after SendCtrlAltDel, want 0"
        ));
    }
}
