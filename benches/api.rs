//! API benchmark (issue 9's targets): medians of 25 runs of
//! - exec -> the API socket accepting: wall and CPU time (target ≤ 5 ms and
//!   ≤ 2 CPU-ms; Firecracker's own target is 8 CPU-ms);
//! - `InstanceStart` sent -> the hello guest's first serial byte (target < 10 ms);
//!
//! and the VMM's idle resident memory beyond guest RAM with the API on (target
//! < 3 MiB). Prints figures; asserts nothing about speed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod measure;
use measure::{
    cpu_time_alive as cpu_time, median, request, rss_split, static_caisson, stop, wait_accepting,
};

const RUNS: usize = 25;
const CAISSON: &str = env!("CARGO_BIN_EXE_caisson");

fn spawn(vmm: &Path, sock: &Path) -> Child {
    let _ = std::fs::remove_file(sock);
    Command::new(vmm)
        .args(["--api-sock", sock.to_str().unwrap(), "--id", "bench"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn socket_ready(vmm: &Path, dir: &Path) {
    let sock = dir.join("ready.sock");
    let (mut wall, mut cpu) = (vec![], vec![]);
    for _ in 0..RUNS {
        let start = Instant::now();
        let child = spawn(vmm, &sock);
        wait_accepting(&sock);
        wall.push(start.elapsed());
        cpu.push(cpu_time(child.id()));
        stop(child);
    }
    println!(
        "api: {}: exec -> API socket accepting, median of {RUNS} runs",
        vmm.display()
    );
    println!(
        "  wall {:>8.2?} (target <= 5 ms)  cpu {:>8.2?} (target <= 2 ms; Firecracker's 8 ms)",
        median(&mut wall),
        median(&mut cpu)
    );
}

fn configure(sock: &Path, kernel: &Path, boot_args: &str, mem: u32) {
    let machine = format!(r#"{{"vcpu_count": 1, "mem_size_mib": {mem}}}"#);
    assert_eq!(request(sock, "PUT", "/machine-config", &machine).0, 204);
    let boot = serde_json::json!({"kernel_image_path": kernel, "boot_args": boot_args}).to_string();
    assert_eq!(request(sock, "PUT", "/boot-source", &boot).0, 204);
}

fn start_to_first_byte(vmm: &Path, dir: &Path, kernel: &Path) {
    let sock = dir.join("start.sock");
    let mut first = vec![];
    for _ in 0..RUNS {
        let mut child = spawn(vmm, &sock);
        wait_accepting(&sock);
        configure(&sock, kernel, "console=ttyS0", 128);
        let mut out = child.stdout.take().unwrap();
        let start = Instant::now();
        assert_eq!(
            request(
                &sock,
                "PUT",
                "/actions",
                r#"{"action_type": "InstanceStart"}"#
            )
            .0,
            204
        );
        let mut byte = [0u8; 1];
        out.read_exact(&mut byte).unwrap();
        first.push(start.elapsed());
        let mut rest = Vec::new();
        out.read_to_end(&mut rest).unwrap();
        stop(child);
    }
    println!(
        "api: {}: InstanceStart sent -> hello guest's first serial byte, median of {RUNS} runs",
        vmm.display()
    );
    println!("  wall {:>8.2?} (target < 10 ms)", median(&mut first));
}

fn idle_memory(vmm: &Path, dir: &Path, demo: &Path) {
    let sock = dir.join("mem.sock");
    let child = spawn(vmm, &sock);
    wait_accepting(&sock);
    configure(&sock, demo, "console=ttyS0 caisson.demo_wait", 128);
    assert_eq!(
        request(
            &sock,
            "PUT",
            "/actions",
            r#"{"action_type": "InstanceStart"}"#
        )
        .0,
        204
    );
    // The demo guest prints, then waits for serial input: idle.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(request(&sock, "GET", "/", "").0, 200);
    let (total, guest) = rss_split(child.id(), 128 * 1024);
    stop(child);
    println!(
        "memory: {}: demo guest idle, API on, 1 vCPU, 128 MiB",
        vmm.display()
    );
    println!(
        "  VMM resident set {total} KiB, guest RAM touched {guest} KiB, overhead {} KiB ({:.2} MiB; target < 3 MiB)",
        total - guest,
        (total - guest) as f64 / 1024.0
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let guests = PathBuf::from(caisson::demo::GUEST_BUILD_DIR);
    let dir = std::env::temp_dir().join(format!("caisson-api-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The static binary is what the jail runs; the dynamic one is cargo's.
    for vmm in [static_caisson(), PathBuf::from(CAISSON)] {
        socket_ready(&vmm, &dir);
        start_to_first_byte(&vmm, &dir, &guests.join("hello.elf"));
        idle_memory(&vmm, &dir, &guests.join("demo.elf"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
