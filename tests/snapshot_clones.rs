//! Clones of one snapshot with identities of their own: the snapident guest
//! (tests/guests/snapident.c) is booted with a vsock (CID 3) and a tap-backed
//! net interface, snapshotted, and restored twice at the same time with
//! `vsock_override` (another `uds_path` and, a Caisson extension, `guest_cid`)
//! and `network_overrides` (another tap and, a Caisson extension, `guest_mac`).
//! Each clone must get the transport reset, read its own CID and MAC from
//! config space, reach the host on its own vsock socket and its own tap, and
//! tick on beside the other.
//!
//! A second test restores a snapshot taken while the driver had no event
//! buffer posted: the reset must wait for the driver to post one.
//!
//! The taps live in a network namespace of the test's own (tests/common/net.rs),
//! which goes away with everything in it when the test ends, failed or not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{ErrorKind, Read};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::http::{once, Vmm};
use common::net::{tap_host, NetNs};
use common::snapshot::*;
use common::*;

const ORIG_MAC: &str = "06:00:ac:10:00:03";
const HOST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const ETH_TEST: [u8; 2] = [0x88, 0xb5];

/// One clone's identities and the host ends that belong to it.
struct Clone {
    name: &'static str,
    cid: u32,
    mac: &'static str,
    tap: String,
    uds: PathBuf,
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    let v: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// What each test sets up: a network namespace with a tap for the snapshotted
/// VM and one per clone (persistent: the fds are dropped so that the VMMs can
/// attach), a packet socket on each clone's tap, and a work directory. Names
/// are unique to the test (`tag`) and the test process.
struct Rig {
    socks: Vec<OwnedFd>,
    clones: [Clone; 2],
    tap0: String,
    tag: &'static str,
    ns: NetNs,
    work: tempfile::TempDir,
}

impl Rig {
    fn new(tag: &'static str) -> Self {
        let work = tempdir();
        let ns = NetNs::new();
        let name = |end: &str| format!("csid{}{tag}{end}", std::process::id() % 100_000);
        let clones = [
            Clone {
                name: "clone 1",
                cid: 7,
                mac: "06:00:ac:10:00:07",
                tap: name("a"),
                uds: work.path().join("b1.sock"),
            },
            Clone {
                name: "clone 2",
                cid: 8,
                mac: "06:00:ac:10:00:08",
                tap: name("b"),
                uds: work.path().join("b2.sock"),
            },
        ];
        let tap0 = name("o");
        let taps = vec![tap0.clone(), clones[0].tap.clone(), clones[1].tap.clone()];
        let socks = ns.run(move || {
            for t in &taps {
                drop(tap_host::create(t, true));
            }
            taps[1..]
                .iter()
                .map(|t| tap_host::packet_socket(t))
                .collect()
        });
        Self {
            socks,
            clones,
            tap0,
            tag,
            ns,
            work,
        }
    }

    /// A fresh API VMM in the namespace.
    fn spawn(&self, name: &str) -> Vmm {
        let id = format!("ident-{}-{name}", self.tag);
        self.ns.run(move || Vmm::spawn(&id, &[]))
    }

    /// Boots snapident (`args` on its command line) with interface eth0 on
    /// the first tap and [`ORIG_MAC`], a vsock with CID 3; takes a Full
    /// snapshot at tick `at` and kills the VM. Returns the snapshot and what
    /// the VM printed.
    fn snapshot(&self, args: &str, at: u64) -> (Snapshot, String) {
        require_kvm();
        let start = Instant::now();
        let mut v = self.spawn("orig");
        let mut c = v.client();
        let mc = serde_json::json!({"vcpu_count": 1, "mem_size_mib": RAM_MIB});
        c.put("/machine-config", &mc.to_string())
            .assert_no_content();
        let boot = serde_json::json!({"kernel_image_path": guest("snapident"),
            "boot_args": format!("console=ttyS0 {args}")});
        c.put("/boot-source", &boot.to_string()).assert_no_content();
        let net = serde_json::json!({"iface_id": "eth0", "host_dev_name": self.tap0,
            "guest_mac": ORIG_MAC});
        c.put("/network-interfaces/eth0", &net.to_string())
            .assert_no_content();
        let uds = self.work.path().join("a.sock");
        let vsock = serde_json::json!({"vsock_id": "vsock0", "guest_cid": 3, "uds_path": uds});
        c.put("/vsock", &vsock.to_string()).assert_no_content();
        c.put("/actions", r#"{"action_type": "InstanceStart"}"#)
            .assert_no_content();
        assert_eq!(
            wait_line(&mut v, "snapident: cid "),
            format!("snapident: cid 3 mac {ORIG_MAC}")
        );
        wait_text(&mut v, &format!("snapident: tick {at}\n"));
        let ran = start.elapsed();
        pause(&v);
        let snap = Snapshot::at(self.work.path(), "ident");
        // create_ok's 5 s read timeout is short for writing and syncing 64 MiB
        // while other work loads this 2-core machine: a minute, and the time
        // is shown.
        let t_create = Instant::now();
        let mut c = v.client();
        c.stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let r = c.put("/snapshot/create", &create_body("Full", &snap));
        let created = t_create.elapsed();
        assert_eq!(r.status, 204, "{r:?}; stderr: {}", v.stderr());
        assert_eq!(v.state(), "Paused");
        assert!(snap.state.is_file() && snap.mem.is_file());
        let old = kill(v);
        let cut = last_tick(&old);
        assert!(cut >= at, "{old}");
        assert!(!old.contains("reset"), "{old}");
        eprintln!(
            "{}: booted and ran to tick {cut} in {ran:?}, snapshot created in {created:?}",
            self.tag
        );
        (snap, old)
    }

    /// The host end of clone `i`'s vsock connections to port 5000: one
    /// connection, read to EOF.
    fn listen(&self, i: usize) -> JoinHandle<Result<Vec<u8>, String>> {
        let path = format!("{}_5000", self.clones[i].uds.display());
        let l = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || accept_and_read(l, LINE_LIMIT))
    }

    /// Checks what clone `i` (VMM `v`) did after its reset: its hello from
    /// its new CID reached `reader` (its own vsock socket), its hello from its
    /// new MAC reached its own tap, and it echoes a frame sent to that MAC.
    /// No frame from the other clone's or the snapshotted VM's MAC shows up.
    fn check_hosts(&self, i: usize, v: &mut Vmm, reader: JoinHandle<Result<Vec<u8>, String>>) {
        let c = &self.clones[i];
        // Printed after the vsock exchange, whatever became of it.
        let out = wait_text(v, "snapident: net hello sent\n");
        assert!(
            out.contains("snapident: vsock hello sent\n"),
            "{}:\n{out}",
            c.name
        );
        let got = reader
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!("hello from cid {}", c.cid),
            "{}",
            c.name
        );

        let sock = &self.socks[i];
        let mac = mac_bytes(c.mac);
        let foreign = [mac_bytes(self.clones[1 - i].mac), mac_bytes(ORIG_MAC)];
        let hello = frame(sock, mac, [0xff; 6], &foreign, 30);
        let want = format!("snapident cid {}", c.cid);
        assert_eq!(&hello[14..14 + want.len()], want.as_bytes(), "{}", c.name);
        let payload = format!("ping {} from the host", c.name);
        let mut ping = mac.to_vec();
        ping.extend_from_slice(&HOST_MAC);
        ping.extend_from_slice(&ETH_TEST);
        ping.extend_from_slice(payload.as_bytes());
        ping.resize(60, 0);
        tap_host::send(sock, &ping);
        let echo = frame(sock, mac, HOST_MAC, &foreign, 30);
        assert_eq!(&echo[14..60], &ping[14..60], "{}: payload echoed", c.name);
        wait_text(v, "snapident: net echoed 46 bytes\n");
    }
}

/// Waits for a complete line of `v`'s serial output that starts with
/// `prefix`, and returns it.
fn wait_line(v: &mut Vmm, prefix: &str) -> String {
    let start = Instant::now();
    loop {
        let out = v.stdout();
        let line = out
            .split_inclusive('\n')
            .find(|l| l.starts_with(prefix) && l.ends_with('\n'));
        if let Some(l) = line {
            return l.trim_end().to_string();
        }
        assert!(v.alive(), "caisson died: {out}\nstderr: {}", v.stderr());
        assert!(
            start.elapsed() < LINE_LIMIT,
            "no {prefix:?} line after {LINE_LIMIT:?}: {out}\nstderr: {}",
            v.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The load body of clone `c`: the snapshot, resumed, with its overrides.
fn clone_load_body(snap: &Snapshot, c: &Clone) -> String {
    let mut body: serde_json::Value = serde_json::from_str(&load_body(snap, true)).unwrap();
    body["network_overrides"] = serde_json::json!([{"iface_id": "eth0",
        "host_dev_name": c.tap, "guest_mac": c.mac}]);
    body["vsock_override"] = serde_json::json!({"uds_path": c.uds, "guest_cid": c.cid});
    body.to_string()
}

/// Accepts one connection on `l` within `limit` and reads it to EOF.
fn accept_and_read(l: UnixListener, limit: Duration) -> Result<Vec<u8>, String> {
    l.set_nonblocking(true).unwrap();
    let end = Instant::now() + limit;
    let mut s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("no connection within {limit:?}: {e}")),
        }
    };
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).map_err(|e| e.to_string())?;
    Ok(got)
}

/// The next 0x88b5 frame on `sock` (a packet socket on a tap) from `src` to
/// `dst` within `secs`. Any 0x88b5 frame from a MAC in `foreign` fails.
fn frame(sock: &OwnedFd, src: [u8; 6], dst: [u8; 6], foreign: &[[u8; 6]], secs: u64) -> Vec<u8> {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let Some(f) = tap_host::recv(sock) else {
            continue;
        };
        if f.len() < 14 || f[12..14] != ETH_TEST {
            continue;
        }
        let from: [u8; 6] = f[6..12].try_into().unwrap();
        assert!(
            !foreign.contains(&from),
            "a frame from {from:02x?} on another VM's tap: {f:02x?}"
        );
        if from == src && f[..6] == dst {
            return f;
        }
    }
    panic!("no frame from {src:02x?} to {dst:02x?} within {secs} s");
}

/// snapident's ticks in `text` (complete lines): n = 1, 2, ... without a gap,
/// a repeat or a restart. Returns the last.
fn last_tick(text: &str) -> u64 {
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let mut last = 0;
    for l in complete.lines() {
        if let Some(n) = l.strip_prefix("snapident: tick ") {
            let n: u64 = n
                .parse()
                .unwrap_or_else(|_| panic!("bad tick {l:?}\n{text}"));
            assert_eq!(n, last + 1, "{l:?} after tick {last}\n{text}");
            last = n;
        }
    }
    last
}

/// Checks a clone's output `new` against the snapshotted run's `old`: joined
/// they are one run (the first line from the boot, ticks without a gap or a
/// restart), the clone printed exactly one reset, with its own identities,
/// and then reached the host over vsock and net; nothing failed. Returns the
/// clone's last tick.
fn check_clone_output(old: &str, new: &str, c: &Clone) -> u64 {
    let joined = format!("{old}{new}");
    let first = format!("snapident: cid 3 mac {ORIG_MAC}");
    assert_eq!(joined.lines().next(), Some(first.as_str()), "{joined}");
    assert!(
        !new.contains("snapident: cid "),
        "{} restarted:\n{new}",
        c.name
    );
    let reset = format!("snapident: reset cid {} mac {}", c.cid, c.mac);
    let resets: Vec<&str> = joined.lines().filter(|l| l.contains("reset")).collect();
    assert_eq!(resets, [reset.as_str()], "{}:\n{new}", c.name);
    for l in [
        "snapident: vsock hello sent",
        "snapident: net hello sent",
        "snapident: net echoed 46 bytes",
    ] {
        assert!(
            new.lines().any(|x| x == l),
            "{} lacks {l:?}:\n{new}",
            c.name
        );
    }
    let bad = |l: &&str| {
        l.contains("failed")
            || (l.starts_with("snapident: event ") && *l != "snapident: event buffers posted")
    };
    let bad: Vec<&str> = new.lines().filter(bad).collect();
    assert!(bad.is_empty(), "{}: {bad:?}\n{new}", c.name);
    last_tick(&joined)
}

/// Two clones of one Full snapshot, loaded at the same time with other
/// taps, MACs, vsock sockets and CIDs: each guest sees its own CID and MAC
/// after the transport reset, its vsock connection lands on its own socket,
/// its frames on its own tap, and both tick on side by side. A load whose
/// `network_overrides` names an interface the snapshot lacks is refused first,
/// building nothing; a third load that would take a live clone's tap or vsock
/// socket is refused too, and the clones keep them.
#[test]
fn two_clones_of_one_snapshot_run_side_by_side_with_their_own_cid_and_mac() {
    let t0 = Instant::now();
    let rig = Rig::new("c");
    let clones = &rig.clones;
    let (snap, old) = rig.snapshot("", 50);
    let cut = last_tick(&old);

    // An override for an interface the snapshot lacks: 400 naming it, and
    // nothing built (the vsock socket it would have bound is not there).
    let bad = rig.spawn("bad");
    let mut body: serde_json::Value =
        serde_json::from_str(&clone_load_body(&snap, &clones[0])).unwrap();
    body["network_overrides"][0]["iface_id"] = "eth9".into();
    let r = load(&bad, &body.to_string());
    r.assert_fault_contains("\"eth9\"");
    r.assert_fault_contains("network_overrides");
    assert_eq!(bad.state(), "Not started");
    assert!(
        !clones[0].uds.exists(),
        "a refused load bound its vsock socket"
    );
    drop(bad);

    let readers: Vec<_> = (0..2).map(|i| rig.listen(i)).collect();
    let mut vmms = [rig.spawn("1"), rig.spawn("2")];
    let t_load = Instant::now();
    std::thread::scope(|s| {
        let loads: Vec<_> = vmms
            .iter()
            .zip(clones)
            .map(|(v, c)| {
                let body = clone_load_body(&snap, c);
                let sock = v.sock.clone();
                s.spawn(move || once(&sock, "PUT", "/snapshot/load", Some(&body)))
            })
            .collect();
        for ((l, v), c) in loads.into_iter().zip(&vmms).zip(clones) {
            let r = l.join().unwrap();
            assert_eq!(r.status, 204, "{}: {r:?}; stderr: {}", c.name, v.stderr());
        }
    });
    let loaded = t_load.elapsed();
    for v in &vmms {
        assert_eq!(v.state(), "Running");
    }
    for (v, c) in vmms.iter_mut().zip(clones) {
        assert_eq!(
            wait_line(v, "snapident: reset "),
            format!("snapident: reset cid {} mac {}", c.cid, c.mac)
        );
    }
    let reset = t_load.elapsed();
    for ((i, v), reader) in vmms.iter_mut().enumerate().zip(readers) {
        rig.check_hosts(i, v, reader);
    }

    // A third load cannot take a live clone's tap or vsock socket: refused,
    // naming it, leaving nothing behind (and the clones run on, below).
    let steal = |tap: &str, uds: &Path| {
        let c = Clone {
            name: "thief",
            cid: 9,
            mac: "06:00:ac:10:00:09",
            tap: tap.to_string(),
            uds: uds.to_path_buf(),
        };
        let thief = rig.spawn("thief");
        let r = load(&thief, &clone_load_body(&snap, &c));
        assert_eq!(thief.state(), "Not started");
        r
    };
    let b3 = rig.work.path().join("b3.sock");
    let r = steal(&clones[0].tap, &b3);
    r.assert_fault_contains(&format!("tap {}", clones[0].tap));
    r.assert_fault_contains("busy");
    assert!(!b3.exists(), "a refused load left {}", b3.display());
    let r = steal(&rig.tap0, &clones[1].uds);
    r.assert_fault_contains(clones[1].uds.to_str().unwrap());
    assert!(
        clones[1].uds.exists(),
        "a refused load removed clone 2's socket"
    );

    // Both tick on, at the same time: 100 more ticks each from one moment.
    let at: Vec<u64> = vmms
        .iter()
        .map(|v| last_tick(&format!("{old}{}", v.stdout())))
        .collect();
    let t_tick = Instant::now();
    for (v, n) in vmms.iter_mut().zip(&at) {
        wait_text(v, &format!("snapident: tick {}\n", n + 100));
    }
    let ticking = t_tick.elapsed();
    for v in vmms.iter_mut() {
        v.assert_serving("Running");
    }

    // Each reports its own overrides.
    for (v, c) in vmms.iter().zip(clones) {
        let cfg = once(&v.sock, "GET", "/vm/config", None).json();
        assert_eq!(cfg["vsock"]["guest_cid"], c.cid, "{}: {cfg}", c.name);
        assert_eq!(cfg["vsock"]["uds_path"], c.uds.to_str().unwrap(), "{cfg}");
        let ifs = cfg["network-interfaces"].as_array().unwrap();
        assert_eq!(ifs.len(), 1, "{cfg}");
        assert_eq!(ifs[0]["iface_id"], "eth0", "{cfg}");
        assert_eq!(ifs[0]["host_dev_name"], c.tap.as_str(), "{cfg}");
        assert_eq!(ifs[0]["guest_mac"], c.mac, "{cfg}");
    }

    let outs: Vec<String> = vmms.into_iter().map(kill).collect();
    for (new, c) in outs.iter().zip(clones) {
        let last = check_clone_output(&old, new, c);
        assert!(last >= cut + 100, "{}: last tick {last}, cut {cut}", c.name);
    }
    eprintln!(
        "loads answered in {loaded:?}, both reset {reset:?} after the loads began; \
         100 ticks each side by side in {ticking:?}; whole test {:?}",
        t0.elapsed()
    );
}

/// A snapshot taken while the driver had no event buffer posted: the restore
/// owes the guest a transport reset, which waits until the driver posts its
/// buffers (at tick 150) and notifies the event queue; then the guest reads
/// its new identities and uses them.
#[test]
fn a_transport_reset_waits_for_the_driver_to_post_an_event_buffer() {
    let t0 = Instant::now();
    let rig = Rig::new("e");
    let (snap, old) = rig.snapshot("snapident.ev_at_tick=150", 50);
    assert!(last_tick(&old) < 150, "{old}");
    let reader = rig.listen(0);
    let c = &rig.clones[0];
    let mut v = rig.spawn("1");
    load(&v, &clone_load_body(&snap, c)).assert_no_content();
    assert_eq!(
        wait_line(&mut v, "snapident: reset "),
        format!("snapident: reset cid {} mac {}", c.cid, c.mac)
    );
    rig.check_hosts(0, &mut v, reader);
    let new = kill(v);
    check_clone_output(&old, &new, c);
    let joined = format!("{old}{new}");
    let lines: Vec<&str> = joined.lines().collect();
    let pos = |l: &str| lines.iter().position(|x| *x == l);
    let posted = pos("snapident: event buffers posted").expect("buffers never posted");
    let reset = pos(&format!("snapident: reset cid {} mac {}", c.cid, c.mac)).unwrap();
    assert_eq!(pos("snapident: tick 150"), Some(posted - 1), "{joined}");
    assert!(
        reset > posted,
        "the reset came before the buffers:\n{joined}"
    );
    // Served on the notify, not on a later timer: within a few ticks.
    let ticks_between = lines[posted..reset]
        .iter()
        .filter(|l| l.starts_with("snapident: tick "))
        .count();
    assert!(ticks_between <= 5, "{ticks_between} ticks late:\n{joined}");
    eprintln!("whole test {:?}", t0.elapsed());
}
