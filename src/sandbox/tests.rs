use super::*;
use crate::devices::{Access, FdKind, FdOrigin, PathSource};
use crate::seccomp::{ThreadKind, API_JSON, VCPU_JSON, VMM_JSON};

const KINDS: [(ThreadKind, &str); 3] = [
    (ThreadKind::Vmm, VMM_JSON),
    (ThreadKind::Vcpu, VCPU_JSON),
    (ThreadKind::Api, API_JSON),
];

/// One filter rule: its syscall, the ioctl request its argument comment names
/// (for ioctl), its comment, and its first argument's value.
struct Rule {
    syscall: String,
    ioctl: Option<String>,
    comment: String,
    val: Option<u64>,
}

fn rules(kind: ThreadKind, json: &str) -> Vec<Rule> {
    let v: serde_json::Value = serde_json::from_str(json).expect("filter json");
    v[kind.name()]["filter"]
        .as_array()
        .expect("filter list")
        .iter()
        .map(|r| {
            let syscall = r["syscall"].as_str().expect("syscall").to_string();
            let arg = &r["args"][0];
            let ioctl = (syscall == "ioctl").then(|| {
                arg["comment"]
                    .as_str()
                    .expect("ioctl request name")
                    .to_string()
            });
            Rule {
                syscall,
                ioctl,
                comment: r["comment"].as_str().unwrap_or("").to_string(),
                val: arg["val"].as_u64(),
            }
        })
        .collect()
}

fn declares(s: &Syscall, kind: ThreadKind, name: &str, ioctl: Option<&str>) -> bool {
    s.name == name && s.ioctl == ioctl && s.threads.contains(&kind)
}

/// The owners, in declaration order, that declare `name` (`ioctl`) in `kind`.
fn owners(kind: ThreadKind, name: &str, ioctl: Option<&str>) -> Vec<&'static str> {
    all()
        .iter()
        .filter(|n| n.syscalls.iter().any(|s| declares(s, kind, name, ioctl)))
        .map(|n| n.owner)
        .collect()
}

/// A comment for a rule: its owners, then each one's reason.
fn suggested(kind: ThreadKind, name: &str, ioctl: Option<&str>) -> String {
    let whys: Vec<&str> = all()
        .iter()
        .flat_map(|n| n.syscalls.iter())
        .filter(|s| declares(s, kind, name, ioctl))
        .map(|s| s.why)
        .collect();
    format!(
        "{}: {}",
        owners(kind, name, ioctl).join(", "),
        whys.join("; ")
    )
}

#[test]
fn every_declared_syscall_is_allowed_in_its_threads() {
    let mut missing = Vec::new();
    for (kind, json) in KINDS {
        let rules = rules(kind, json);
        for needs in all() {
            for s in needs.syscalls.iter().filter(|s| s.threads.contains(&kind)) {
                let found = rules
                    .iter()
                    .any(|r| r.syscall == s.name && r.ioctl.as_deref() == s.ioctl);
                if !found {
                    missing.push(format!(
                        "{}: {} {:?} ({})",
                        kind.name(),
                        s.name,
                        s.ioctl,
                        needs.owner
                    ));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "declared but not allowed:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_rule_is_declared_and_its_comment_names_the_owners() {
    let mut wrong = Vec::new();
    for (kind, json) in KINDS {
        for r in rules(kind, json) {
            let owners = owners(kind, &r.syscall, r.ioctl.as_deref());
            let key = match &r.ioctl {
                Some(req) => format!("ioctl:{req}"),
                None => r.syscall.clone(),
            };
            if owners.is_empty() {
                wrong.push(format!(
                    "{} {key}: allowed but declared by nobody",
                    kind.name()
                ));
                continue;
            }
            let want = owners.join(", ");
            let got = r.comment.split_once(": ").map(|(o, _)| o).unwrap_or("");
            if got != want {
                wrong.push(format!(
                    "{} {key}: comment should start {want:?}, e.g. {:?}, not {:?}",
                    kind.name(),
                    suggested(kind, &r.syscall, r.ioctl.as_deref()),
                    r.comment
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "unexplained rules:\n{}", wrong.join("\n"));
}

#[test]
fn no_syscall_is_declared_twice_by_one_owner_in_one_thread() {
    for needs in all() {
        for (i, a) in needs.syscalls.iter().enumerate() {
            for b in &needs.syscalls[i + 1..] {
                let shared = a.threads.iter().any(|t| b.threads.contains(t));
                assert!(
                    !(a.name == b.name && a.ioctl == b.ioctl && shared),
                    "{} declares {} {:?} twice for one thread",
                    needs.owner,
                    a.name,
                    a.ioctl
                );
            }
        }
    }
}

#[test]
fn ioctl_rules_match_their_request_numbers() {
    // The request names that libc defines; the KVM ones are checked by the boot
    // tests (a wrong number kills the vCPU thread).
    let known = [
        ("TCGETS", libc::TCGETS),
        ("TCSETS", libc::TCSETS),
        ("FIONBIO", libc::FIONBIO),
    ];
    let mut seen = 0;
    for (kind, json) in KINDS {
        for r in rules(kind, json) {
            if let Some((_, nr)) = known.iter().find(|(n, _)| r.ioctl.as_deref() == Some(n)) {
                assert_eq!(r.val, Some(*nr), "{} {:?}", kind.name(), r.ioctl);
                seen += 1;
            }
        }
    }
    assert_eq!(seen, known.len());
}

#[test]
fn every_device_is_aggregated_with_its_paths_and_fds() {
    let owners: Vec<_> = all().iter().map(|n| n.owner).collect();
    for dev in [
        "serial",
        "i8042",
        "exit port",
        "virtio-mmio",
        "virtio-blk",
        "virtio-net",
        "virtio-vsock",
        "virtio-rng",
        "api",
    ] {
        assert!(owners.contains(&dev), "{dev} is not aggregated: {owners:?}");
    }
    let paths = all_paths();
    assert!(paths.iter().any(|(o, p)| *o == "virtio-vsock"
        && p.source == PathSource::VsockSocket
        && p.access == Access::Bind));
    assert!(all_fds()
        .iter()
        .any(|(o, f)| *o == "virtio-net" && f.kind == FdKind::Tap));
}

#[test]
fn every_fd_is_used_with_declared_syscalls() {
    for needs in all() {
        for fd in needs.fds {
            let uses = fd.kind.used_by();
            // (The filters allow what is declared: the tests above.)
            let used = uses.is_empty() || needs.syscalls.iter().any(|s| uses.contains(&s.name));
            assert!(
                used,
                "{} holds {:?} ({}) but declares none of {uses:?}",
                needs.owner, fd.kind, fd.what
            );
        }
    }
}

#[test]
fn opened_fds_come_from_declared_paths() {
    for needs in all() {
        for fd in needs.fds {
            let from_path = match fd.origin {
                FdOrigin::Opened => needs.paths.iter().any(|p| !p.at_runtime),
                FdOrigin::AtRuntime if fd.kind == FdKind::File => {
                    needs.paths.iter().any(|p| p.at_runtime)
                }
                _ => true,
            };
            assert!(
                from_path,
                "{} opens {} ({:?}) from no declared path",
                needs.owner, fd.what, fd.origin
            );
        }
        for p in needs.paths.iter().filter(|p| p.at_runtime) {
            // What is opened under the filters is opened on the VMM thread.
            assert!(
                needs.syscalls.iter().any(|s| {
                    ["openat", "connect"].contains(&s.name) && s.threads.contains(&ThreadKind::Vmm)
                }),
                "{} opens {} at runtime without openat or connect",
                needs.owner,
                p.source.name()
            );
        }
    }
}

#[test]
fn every_path_source_is_declared_once_per_owner() {
    for needs in all() {
        for (i, a) in needs.paths.iter().enumerate() {
            assert!(
                !needs.paths[i + 1..].iter().any(|b| b.source == a.source),
                "{} declares {} twice",
                needs.owner,
                a.source.name()
            );
        }
    }
}
