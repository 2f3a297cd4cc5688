//! Build-time work:
//! - compiles the seccomp filters (seccomp/*.json, seccompiler's JSON format) to BPF
//!   and writes them to OUT_DIR/seccomp/<thread kind>.bpf for embedding;
//! - writes the x86_64 syscall name table, so a seccomp kill can name the syscall;
//! - builds the in-tree guest programs (tests/guests, with the machine's gcc, as and
//!   ld) into OUT_DIR/guests. The demo guest is embedded in the binary; tests find the
//!   others through `caisson::demo::GUEST_BUILD_DIR`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn error(msg: &str) {
    for line in msg.lines() {
        println!("cargo::error={line}");
    }
}

fn compile_seccomp(out: &Path) {
    println!("cargo:rerun-if-changed=seccomp");
    let dir = out.join("seccomp");
    if let Err(e) = fs::create_dir_all(&dir) {
        return error(&format!("cannot create {}: {e}", dir.display()));
    }
    for kind in ["vmm", "vcpu", "api"] {
        let src = PathBuf::from("seccomp").join(format!("{kind}.json"));
        let file = match fs::File::open(&src) {
            Ok(f) => f,
            Err(e) => return error(&format!("cannot open {}: {e}", src.display())),
        };
        let map = match seccompiler::compile_from_json(file, seccompiler::TargetArch::x86_64) {
            Ok(m) => m,
            Err(e) => return error(&format!("{}: {e}", src.display())),
        };
        let Some(prog) = map.get(kind) else {
            return error(&format!("{} has no filter named {kind:?}", src.display()));
        };
        if let Err(e) = fs::write(dir.join(format!("{kind}.bpf")), bpf_bytes(prog)) {
            return error(&format!("cannot write the {kind} filter: {e}"));
        }
    }
}

/// `SYSCALL_NAMES[nr]` from the kernel headers; empty if they are not installed.
fn syscall_table(out: &Path) {
    let header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
    println!("cargo:rerun-if-changed={header}");
    let mut names: Vec<(usize, String)> = fs::read_to_string(header)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("#define __NR_")?;
            let mut it = rest.split_whitespace();
            let name = it.next()?.to_string();
            Some((it.next()?.parse().ok()?, name))
        })
        .collect();
    names.sort();
    let len = names.last().map(|(n, _)| n + 1).unwrap_or(0);
    let mut table = vec![String::new(); len];
    for (n, name) in names {
        table[n] = name;
    }
    let body: Vec<String> = table.iter().map(|n| format!("{n:?}")).collect();
    let src = format!(
        "pub static SYSCALL_NAMES: [&str; {len}] = [{}];\n",
        body.join(", ")
    );
    if let Err(e) = fs::write(out.join("syscall_names.rs"), src) {
        error(&format!("cannot write the syscall table: {e}"));
    }
}

fn build_guests(out: &Path) {
    let guests = out.join("guests");
    println!("cargo:rerun-if-changed=tests/guests");
    println!("cargo:rustc-env=CAISSON_GUEST_DIR={}", guests.display());
    if let Err(e) = fs::create_dir_all(&guests) {
        return error(&format!("cannot create {}: {e}", guests.display()));
    }
    let result = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg("tests/guests")
        .arg(format!("OUT={}", guests.display()))
        .output();
    match result {
        Ok(o) if o.status.success() => {}
        Ok(o) => error(&format!(
            "building the guests in tests/guests failed ({})\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => error(&format!(
            "cannot run make for tests/guests (is make installed?): {e}"
        )),
    }
}

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    compile_seccomp(&out);
    syscall_table(&out);
    build_guests(&out);
}

include!("seccomp/bpf_bytes.rs");
