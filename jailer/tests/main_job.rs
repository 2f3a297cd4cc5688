//! The README's main-job command (tests/demo.sh): the embedded demo guest boots in
//! a jailed, statically linked caisson, and the audit printed while it runs finds
//! no deviation from the strict profile.

use std::process::Command;

#[test]
fn jailed_demo_boots_and_its_audit_is_clean() {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "this test boots a jailed guest through KVM and needs /dev/kvm"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/demo.sh");
    let out = Command::new("bash").arg(script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("Caisson demo guest: hello from inside a microVM"),
        "{stdout}"
    );
    assert!(stdout.contains("== isolation audit"), "{stdout}");
    let audit_start = stdout.find("== isolation audit").unwrap();
    let audit = &stdout[audit_start..];
    for item in [
        "\"Seccomp\"",
        "\"NoNewPrivs\"",
        "\"CapEff\"",
        "\"CapBnd\"",
        "\"pids.max\"",
    ] {
        assert!(audit.contains(item), "audit lacks {item}: {audit}");
    }
    assert!(
        !audit.contains("\"ok\": false"),
        "audit found a deviation: {audit}"
    );
    assert!(stdout.contains("demo: bye"), "{stdout}");
    assert!(
        stdout.contains("== VM exit code 0, audit exit code 0"),
        "{stdout}"
    );
    // The jailer that ran is linked statically: no program interpreter
    // (PT_INTERP, program header type 3) to load shared libraries first.
    let jailer = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/static/release/caisson-jailer"
    );
    let elf = std::fs::read(jailer).unwrap();
    assert!(
        elf.starts_with(b"\x7fELF\x02"),
        "{jailer} is not a 64-bit ELF"
    );
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    let interp = (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3
    });
    assert!(
        !interp,
        "{jailer} has a program interpreter (dynamically linked)"
    );
}
