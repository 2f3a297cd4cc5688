//! The compact baseline program (seccomp/baseline_compiler.rs) answers as
//! seccompiler's own programs for the same JSON do, run side by side in a small
//! classic-BPF interpreter on every x86_64 syscall number and a set of arguments.
//! The one intended difference: x32 numbers get ENOSYS (seccompiler's programs
//! let them through to the default).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use caisson_jailer::seccomp_baseline::{Baseline, BASELINE_JSON};
use seccompiler::{sock_filter, TargetArch};
use serde_json::Value;

include!("../../seccomp/baseline_compiler.rs");

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const ALLOW: u32 = 0x7fff_0000;
const KILL_PROCESS: u32 = 0x8000_0000;
const EPERM: u32 = 0x0005_0001;
const ENOSYS: u32 = 0x0005_0026;

/// `struct seccomp_data` as the kernel lays it out.
fn data(nr: u32, arch: u32, args: [u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&nr.to_le_bytes());
    d[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    d
}

/// Runs a classic BPF seccomp program (the subset both compilers emit).
fn run(prog: &[sock_filter], d: &[u8; 64]) -> u32 {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    loop {
        let i = prog.get(pc).expect("ran off the end of the program");
        pc += 1;
        let jump = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
        match i.code {
            0x20 => {
                let k = i.k as usize;
                a = u32::from_le_bytes(d[k..k + 4].try_into().unwrap());
            }
            0x54 => a &= i.k,
            0x05 => pc += i.k as usize,
            0x15 => pc += jump(a == i.k),
            0x25 => pc += jump(a > i.k),
            0x35 => pc += jump(a >= i.k),
            0x45 => pc += jump(a & i.k != 0),
            0x06 => return i.k,
            code => panic!("instruction {code:#x} at {} not interpreted", pc - 1),
        }
    }
}

/// Stacked filters as the kernel runs them: the action of highest precedence
/// (lowest as a signed action) wins.
fn run_stack(progs: &[&[sock_filter]], d: &[u8; 64]) -> u32 {
    let action = |r: u32| (r & 0xffff_0000) as i32;
    progs
        .iter()
        .map(|p| run(p, d))
        .min_by_key(|r| action(*r))
        .unwrap()
}

fn arg_values() -> Vec<u64> {
    let mut v = vec![
        0,
        1,
        2,
        10,
        16,
        17,
        0x11,
        0x3d0f00,
        0xffff_ffff,
        1 << 32,
        (1 << 32) | 1,
        0x8000_0000_0000_0000,
    ];
    // Every single bit, and pairs of the namespace bits.
    v.extend((0..32).map(|b| 1u64 << b));
    let ns = [
        0x80u64,
        0x20000,
        0x200_0000,
        0x400_0000,
        0x800_0000,
        0x1000_0000,
    ];
    for x in ns {
        v.extend(ns.iter().map(|y| x | y | 0x11));
    }
    v
}

/// Compares `compact` with the stack of seccompiler's `reference` programs.
fn same_answers(compact: &[sock_filter], reference: &[&[sock_filter]]) -> usize {
    let args = arg_values();
    let mut checked = 0;
    for nr in 0..512u32 {
        for &a0 in &args {
            for slot in 0..3 {
                let mut argv = [0u64; 6];
                argv[slot] = a0;
                let d = data(nr, AUDIT_ARCH_X86_64, argv);
                let (got, want) = (run(compact, &d), run_stack(reference, &d));
                assert_eq!(
                    got, want,
                    "nr {nr}, args {argv:x?}: {got:#x} against {want:#x}"
                );
                checked += 1;
            }
        }
        // x32 numbers: ENOSYS, whatever the arguments.
        let d = data(
            nr | 0x4000_0000,
            AUDIT_ARCH_X86_64,
            [0x1000_0000, 0, 0, 0, 0, 0],
        );
        assert_eq!(run(compact, &d), ENOSYS, "x32 nr {nr}");
        // Another architecture: killed, as seccompiler's programs do.
        let d = data(nr, AUDIT_ARCH_I386, [0; 6]);
        assert_eq!(run(compact, &d), KILL_PROCESS, "i386 nr {nr}");
        assert_eq!(run_stack(reference, &d), KILL_PROCESS);
    }
    checked
}

fn seccompiler_map(json: &str) -> HashMap<String, Vec<sock_filter>> {
    seccompiler::compile_from_json(json.as_bytes(), TargetArch::x86_64).unwrap()
}

#[test]
fn the_embedded_programs_answer_as_seccompilers_do() {
    let map = seccompiler_map(BASELINE_JSON);
    for (inet, sockets) in [(false, "sockets"), (true, "sockets_inet")] {
        let embedded = Baseline::embedded(inet).unwrap();
        let [(_, compact)] = embedded.programs() else {
            panic!("the baseline is one program");
        };
        let reference = [&map["baseline"][..], &map[sockets][..], &map["clone3"][..]];
        let n = same_answers(compact, &reference);
        let total: usize = reference.iter().map(|p| p.len()).sum();
        println!(
            "{sockets}: {n} vectors agree; {} instructions against seccompiler's {total}",
            compact.len()
        );
    }
    // Spot checks, so that a wrong interpreter cannot hide a wrong program.
    let plain = Baseline::embedded(false).unwrap();
    let p = &plain.programs()[0].1;
    let nr = |name: &str| compact::number(name).unwrap();
    let call =
        |name: &str, a0: u64| run(p, &data(nr(name), AUDIT_ARCH_X86_64, [a0, 0, 0, 0, 0, 0]));
    assert_eq!(call("unshare", 0x1000_0000), EPERM, "CLONE_NEWUSER");
    assert_eq!(call("unshare", 0x200), ALLOW, "CLONE_FILES");
    assert_eq!(call("clone", 0x3d0f00), ALLOW, "a thread");
    assert_eq!(call("clone3", 0), ENOSYS);
    assert_eq!(call("keyctl", 0), EPERM);
    assert_eq!(call("socket", 1), ALLOW, "AF_UNIX");
    assert_eq!(call("socket", 16), EPERM, "AF_NETLINK");
    assert_eq!(call("socket", 2), EPERM, "AF_INET without inet");
    assert_eq!(call("read", 0), ALLOW);
    let with_inet = Baseline::embedded(true).unwrap();
    let inet = &with_inet.programs()[0].1;
    let d = data(nr("socket"), AUDIT_ARCH_X86_64, [10, 0, 0, 0, 0, 0]);
    assert_eq!(run(inet, &d), ALLOW, "AF_INET6 with inet");
}

/// The general paths the baseline does not use today: several conditions ANDed,
/// eq, multi-bit masks, rules ORed, three errnos.
const GENERAL: &str = r#"{
  "a": { "default_action": "allow", "filter_action": { "errno": 1 }, "filter": [
    { "syscall": "ioctl", "args": [
      { "index": 1, "type": "dword", "op": "eq", "val": 21505 },
      { "index": 0, "type": "dword", "op": "ne", "val": 3 } ] },
    { "syscall": "ioctl", "args": [
      { "index": 2, "type": "dword", "op": { "masked_eq": 240 }, "val": 48 } ] },
    { "syscall": "mmap", "args": [
      { "index": 2, "type": "dword", "op": { "masked_eq": 6 }, "val": 6 } ] },
    { "syscall": "mmap", "args": [
      { "index": 1, "type": "dword", "op": "eq", "val": 0 } ] },
    { "syscall": "kill" }
  ] },
  "b": { "default_action": "allow", "filter_action": { "errno": 13 }, "filter": [
    { "syscall": "openat", "args": [
      { "index": 2, "type": "dword", "op": { "masked_eq": 3 }, "val": 1 },
      { "index": 2, "type": "dword", "op": { "masked_eq": 64 }, "val": 64 } ] }
  ] },
  "c": { "default_action": "allow", "filter_action": { "errno": 38 }, "filter": [
    { "syscall": "clone3" }, { "syscall": "getppid" } ] }
}"#;

#[test]
fn the_compiler_answers_as_seccompiler_on_the_general_paths() {
    let doc: Value = serde_json::from_str(GENERAL).unwrap();
    let filters: Vec<(&str, &Value)> = ["a", "b", "c"].map(|n| (n, &doc[n])).to_vec();
    let compact = compact::compile(&filters, &compact::number).unwrap();
    let map = seccompiler_map(GENERAL);
    let reference = [&map["a"][..], &map["b"][..], &map["c"][..]];
    assert!(same_answers(&compact, &reference) > 0);
    // Arguments in the slots the rules read, beyond the single-slot vectors.
    let ioctl = compact::number("ioctl").unwrap();
    for (a0, a1, a2) in [(3, 21505, 0), (4, 21505, 0), (3, 0, 0x35), (3, 0, 0x45)] {
        let d = data(ioctl, AUDIT_ARCH_X86_64, [a0, a1, a2, 0, 0, 0]);
        assert_eq!(
            run(&compact, &d),
            run_stack(&reference, &d),
            "{a0} {a1} {a2:#x}"
        );
    }
    let d = data(ioctl, AUDIT_ARCH_X86_64, [4, 21505, 0, 0, 0, 0]);
    assert_eq!(run(&compact, &d), EPERM);
    let d = data(
        compact::number("openat").unwrap(),
        AUDIT_ARCH_X86_64,
        [0, 0, 0x41, 0, 0, 0],
    );
    assert_eq!(run(&compact, &d), 0x0005_000d);
}

#[test]
fn what_the_compiler_cannot_express_is_an_error_naming_it() {
    let cases = [
        (
            r#"{"default_action":"trap","filter_action":{"errno":1},"filter":[]}"#,
            "default_action",
        ),
        (
            r#"{"default_action":"allow","filter_action":"trap","filter":[]}"#,
            "filter_action",
        ),
        (
            r#"{"default_action":"allow","filter_action":{"errno":1},"filter":[
              {"syscall":"read","args":[{"index":0,"type":"qword","op":"eq","val":1}]}]}"#,
            "dword",
        ),
        (
            r#"{"default_action":"allow","filter_action":{"errno":1},"filter":[
              {"syscall":"read","args":[{"index":0,"type":"dword","op":"gt","val":1}]}]}"#,
            "op \"gt\"",
        ),
        (
            r#"{"default_action":"allow","filter_action":{"errno":1},"filter":[
              {"syscall":"read","args":[{"index":6,"type":"dword","op":"eq","val":1}]}]}"#,
            "index",
        ),
        (
            r#"{"default_action":"allow","filter_action":{"errno":1},"filter":[
              {"syscall":"no_such_call"}]}"#,
            "no_such_call",
        ),
        (
            r#"{"default_action":"allow","filter_action":{"errno":1},"filter":[{"syscall":"kill"},
              {"syscall":"kill","args":[{"index":1,"type":"dword","op":"eq","val":9}]}]}"#,
            "f: kill: a rule without arguments beside rules with arguments",
        ),
    ];
    for (json, expected) in cases {
        let f: Value = serde_json::from_str(json).unwrap();
        let err = compact::compile(&[("f", &f)], &compact::number).unwrap_err();
        assert!(err.contains(expected), "{err:?} should name {expected}");
    }
    // One syscall in two filters with different errnos cannot be one program.
    let a: Value = serde_json::from_str(
        r#"{"default_action":"allow","filter_action":{"errno":1},"filter":[{"syscall":"read"}]}"#,
    )
    .unwrap();
    let b: Value = serde_json::from_str(
        r#"{"default_action":"allow","filter_action":{"errno":2},"filter":[{"syscall":"read"}]}"#,
    )
    .unwrap();
    let err = compact::compile(&[("a", &a), ("b", &b)], &compact::number).unwrap_err();
    assert!(err.contains("b: read"), "{err}");
}
