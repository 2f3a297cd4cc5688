//! Build-time work: compiles the jailer's seccomp baseline (seccomp/baseline.json,
//! seccompiler's JSON format) to BPF in OUT_DIR/seccomp/, for embedding.
//!
//! The file holds four filters: `baseline` (namespaces, keyring, mounts, modules,
//! ...), two alternative socket rule sets (`sockets`: AF_UNIX only;
//! `sockets_inet`: also AF_INET/AF_INET6) and `clone3` (ENOSYS rather than EPERM).
//! seccompiler compiles the file as it is first, so that any error in any part
//! fails the build; then seccomp/baseline_compiler.rs turns `baseline`, one socket
//! set and `clone3` into one compact program (why: see that file):
//! `baseline.bpf` with `sockets`, `baseline_inet.bpf` with `sockets_inet`.
//!
//! It also turns the shipped profiles (policy/profiles/*.toml) into JSON in
//! OUT_DIR/profiles/, which the jailer embeds and reads with serde_json: the TOML
//! parser's first run costs ~80 µs of every start, and JSON's code is already
//! there for the config.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

const SOURCE: &str = "../seccomp/baseline.json";

fn error(msg: &str) {
    for line in msg.lines() {
        println!("cargo::error={line}");
    }
}

include!("../seccomp/bpf_bytes.rs");

/// Compiles `json` (a filter map) and returns filter `name` as bytes.
fn compile(json: &[u8], name: &str) -> Result<Vec<u8>, String> {
    let map = seccompiler::compile_from_json(json, seccompiler::TargetArch::x86_64)
        .map_err(|e| format!("{SOURCE}: {e}"))?;
    let prog = map
        .get(name)
        .ok_or_else(|| format!("{SOURCE} has no filter named {name:?}"))?;
    Ok(bpf_bytes(prog))
}

include!("../seccomp/baseline_compiler.rs");

/// The compact program for `baseline`, the socket set `sockets` and `clone3`.
fn joined(doc: &Value, sockets: &str) -> Result<Vec<u8>, String> {
    let mut filters = Vec::new();
    for name in ["baseline", sockets, "clone3"] {
        let f = doc
            .get(name)
            .ok_or_else(|| format!("{SOURCE} has no filter named {name:?}"))?;
        filters.push((name, f));
    }
    let prog =
        compact::compile(&filters, &compact::number).map_err(|e| format!("{SOURCE}: {e}"))?;
    Ok(bpf_bytes(&prog))
}

fn build(out: &Path) -> Result<(), String> {
    let text = fs::read(SOURCE).map_err(|e| format!("cannot read {SOURCE}: {e}"))?;
    // Every part compiles as written.
    for name in ["baseline", "sockets", "sockets_inet", "clone3"] {
        compile(&text, name)?;
    }
    let doc: Value =
        serde_json::from_slice(&text).map_err(|e| format!("{SOURCE}: not JSON: {e}"))?;
    let dir = out.join("seccomp");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let outputs = [
        ("baseline.bpf", joined(&doc, "sockets")?),
        ("baseline_inet.bpf", joined(&doc, "sockets_inet")?),
    ];
    for (file, bytes) in outputs {
        let path = dir.join(file);
        fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The shipped profiles, TOML to JSON (values as they are; the jailer types and
/// checks them as it does a TOML file's).
fn profiles(out: &Path) -> Result<(), String> {
    let dir = out.join("profiles");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for name in PROFILES {
        let src = format!("../policy/profiles/{name}.toml");
        let text = fs::read_to_string(&src).map_err(|e| format!("cannot read {src}: {e}"))?;
        let value: toml::Value = toml::from_str(&text).map_err(|e| format!("{src}: {e}"))?;
        let json = serde_json::to_string(&value).map_err(|e| format!("{src}: {e}"))?;
        let path = dir.join(format!("{name}.json"));
        fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

const PROFILES: [&str; 2] = ["strict", "dev"];

fn main() {
    for name in PROFILES {
        println!("cargo:rerun-if-changed=../policy/profiles/{name}.toml");
    }
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../seccomp/bpf_bytes.rs");
    println!("cargo:rerun-if-changed=../seccomp/baseline_compiler.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(e) = build(&out).and_then(|()| profiles(&out)) {
        error(&e);
    }
}
