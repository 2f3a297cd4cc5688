//! Builds the in-tree guest programs (tests/guests, with the machine's gcc, as and
//! ld) into OUT_DIR/guests. The demo guest is embedded in the binary; the others are
//! found by tests through `caisson::guests::BUILD_DIR`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("guests");
    println!("cargo:rerun-if-changed=tests/guests");
    println!("cargo:rustc-env=CAISSON_GUEST_DIR={}", out.display());
    if let Err(e) = std::fs::create_dir_all(&out) {
        println!("cargo::error=cannot create {}: {e}", out.display());
        return;
    }
    let result = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg("tests/guests")
        .arg(format!("OUT={}", out.display()))
        .output();
    match result {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            println!(
                "cargo::error=building the guests in tests/guests failed ({})",
                o.status
            );
            for line in String::from_utf8_lossy(&o.stderr).lines() {
                println!("cargo::error={line}");
            }
        }
        Err(e) => {
            println!("cargo::error=cannot run make for tests/guests (is make installed?): {e}")
        }
    }
}
