//! `caisson-jailer audit --id`: reads the running VM's confinement from /proc and
//! compares it with what the jailer applied (the state file) and the profile.
//! Prints one JSON object; any deviation makes the command exit non-zero.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::cgroup::CgroupVersion;
use crate::profile::{BaselineMode, SeccompMode};
use crate::seccomp_baseline;
use crate::state::{JailState, StateError};

/// An audit that could not run.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("VM {id}: process {pid} is not running")]
    NotRunning { id: String, pid: i32 },
}

/// One comparison.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub layer: &'static str,
    pub item: String,
    pub expected: String,
    pub actual: String,
    pub ok: bool,
}

/// The audit result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: String,
    pub pid: i32,
    pub profile: String,
    pub ok: bool,
    pub deviations: usize,
    pub checks: Vec<Check>,
}

fn check(
    layer: &'static str,
    item: impl Into<String>,
    expected: impl Into<String>,
    actual: impl Into<String>,
) -> Check {
    let (expected, actual) = (expected.into(), actual.into());
    Check {
        layer,
        item: item.into(),
        ok: expected == actual,
        expected,
        actual,
    }
}

/// Fields of /proc/<pid>/status.
fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "absent".into())
}

/// `Max open files  2048  2048  files` -> "2048 2048".
fn limit_line(limits: &str, name: &str) -> String {
    limits
        .lines()
        .find(|l| l.starts_with(name))
        .map(|l| {
            let rest = l[name.len()..].split_whitespace().collect::<Vec<_>>();
            format!(
                "{} {}",
                rest.first().unwrap_or(&"?"),
                rest.get(1).unwrap_or(&"?")
            )
        })
        .unwrap_or_else(|| "absent".into())
}

fn lim(v: Option<u64>) -> String {
    match v {
        Some(n) => format!("{n} {n}"),
        None => "unlimited unlimited".into(),
    }
}

/// The seccomp checks. `expect_seccomp` (2 or 0) says whether the exec target
/// installs a filter of its own (default: the VMM does unless the VM's seccomp mode
/// is off); the jailer's baseline filters, when on, come on top: `Seccomp` is 2
/// when either is there, and `Seccomp_filters` at least the baseline's filters
/// plus the VMM's thread filter.
fn seccomp_checks(
    vmm: SeccompMode,
    baseline: BaselineMode,
    expect_seccomp: Option<u8>,
    status: &str,
) -> Vec<Check> {
    let own = expect_seccomp.unwrap_or(if vmm == SeccompMode::On { 2 } else { 0 });
    let own_filters = u32::from(own == 2);
    let baseline_filters = seccomp_baseline::filter_count(baseline);
    let min_filters = baseline_filters + own_filters;
    let want_mode = if min_filters > 0 { 2 } else { own };
    let filters = status_field(status, "Seccomp_filters");
    let filters_ok = match filters.parse::<u32>() {
        Ok(n) if min_filters == 0 => n == 0,
        Ok(n) => n >= min_filters,
        Err(_) => false,
    };
    vec![
        check(
            "seccomp",
            "Seccomp",
            want_mode.to_string(),
            status_field(status, "Seccomp"),
        ),
        Check {
            layer: "seccomp",
            item: "Seccomp_filters".into(),
            expected: if min_filters == 0 {
                "0".into()
            } else {
                format!(">={min_filters} ({baseline_filters} baseline + {own_filters} exec target)")
            },
            actual: filters,
            ok: filters_ok,
        },
    ]
}

/// Audits the VM `id`.
pub fn audit(
    runtime_dir: &Path,
    id: &str,
    expect_seccomp: Option<u8>,
) -> Result<Report, AuditError> {
    let st = JailState::load(runtime_dir, id)?;
    audit_state(&st, expect_seccomp)
}

/// Audits the process recorded in `st`.
pub fn audit_state(st: &JailState, expect_seccomp: Option<u8>) -> Result<Report, AuditError> {
    let pid = st.vm_pid;
    let proc_dir = format!("/proc/{pid}");
    let status = std::fs::read_to_string(format!("{proc_dir}/status")).map_err(|_| {
        AuditError::NotRunning {
            id: st.id.clone(),
            pid,
        }
    })?;
    let mut checks = Vec::new();

    // SELinux (the label computed for the pair is shown when it is not applied).
    if let (None, Some(computed)) = (&st.selinux_label, &st.computed_label) {
        let note = format!("not applied (SELinux off): {computed}");
        checks.push(check("selinux", "computed process label", &note, &note));
    }
    let ctx = std::fs::read_to_string(format!("{proc_dir}/attr/current"))
        .map(|s| s.trim_end_matches(['\0', '\n']).to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unconfined/none".into());
    checks.push(check(
        "selinux",
        "attr/current",
        st.selinux_label
            .clone()
            .unwrap_or_else(|| "unconfined/none".into()),
        ctx,
    ));

    // Seccomp and no-new-privs.
    checks.extend(seccomp_checks(
        st.seccomp,
        st.seccomp_baseline,
        expect_seccomp,
        &status,
    ));
    checks.push(check(
        "identity",
        "NoNewPrivs",
        "1",
        status_field(&status, "NoNewPrivs"),
    ));

    // Capabilities.
    for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        checks.push(check(
            "capabilities",
            key,
            "0000000000000000",
            status_field(&status, key),
        ));
    }

    // Identity.
    checks.push(check(
        "identity",
        "Uid",
        format!("{0} {0} {0} {0}", st.host_uid),
        status_field(&status, "Uid"),
    ));
    checks.push(check(
        "identity",
        "Gid",
        format!("{0} {0} {0} {0}", st.host_gid),
        status_field(&status, "Gid"),
    ));
    checks.push(check(
        "identity",
        "Groups",
        st.groups
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        status_field(&status, "Groups"),
    ));

    // Namespaces, against the host's (/proc/1/ns, or this auditor's own when pid 1
    // is out of reach, as inside a container).
    for ns in ["mnt", "pid", "ipc", "uts", "cgroup", "net", "user"] {
        let host = ["/proc/1/ns", "/proc/self/ns"]
            .iter()
            .find_map(|d| std::fs::read_link(format!("{d}/{ns}")).ok())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "unreadable".into());
        let vm = std::fs::read_link(format!("{proc_dir}/ns/{ns}"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "unreadable".into());
        if ns == "net" {
            if let Some(netns) = &st.netns {
                let want = std::fs::metadata(netns)
                    .map(|m| format!("net:[{}]", m.ino()))
                    .unwrap_or_else(|_| "missing".into());
                checks.push(check("namespaces", "net (joined --netns)", want, vm));
                continue;
            }
        }
        let new = st.new_namespaces.iter().any(|n| n == ns);
        checks.push(Check {
            layer: "namespaces",
            item: ns.into(),
            expected: if new {
                format!("not {host}")
            } else {
                host.clone()
            },
            ok: if new {
                vm != host && vm != "unreadable"
            } else {
                vm == host
            },
            actual: vm,
        });
    }

    // cgroup membership and limits.
    let cg = std::fs::read_to_string(format!("{proc_dir}/cgroup")).unwrap_or_default();
    for leaf in &st.cgroup_leaves {
        let rel = leaf
            .strip_prefix(crate::cgroup::CGROUP_ROOT)
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|_| leaf.clone());
        let (hier, want) = match st.cgroup_version {
            CgroupVersion::V1 => {
                let mut comps = rel.components();
                let ctrl = comps
                    .next()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_default();
                (ctrl, format!("/{}", comps.as_path().display()))
            }
            CgroupVersion::V2 => {
                let p = rel.strip_prefix("unified").unwrap_or(&rel).to_path_buf();
                (String::new(), format!("/{}", p.display()))
            }
        };
        let actual = cg
            .lines()
            .find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let _n = parts.next()?;
                let ctrls = parts.next()?;
                let path = parts.next()?;
                let matches = if hier.is_empty() {
                    ctrls.is_empty()
                } else {
                    ctrls.split(',').any(|c| c == hier)
                };
                matches.then(|| path.to_string())
            })
            .unwrap_or_else(|| "absent".into());
        checks.push(check(
            "cgroup",
            format!("member of {}", if hier.is_empty() { "v2" } else { &hier }),
            want,
            actual,
        ));
    }
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unreadable".into())
    };
    let l = &st.cgroup_limits;
    match st.cgroup_version {
        CgroupVersion::V1 => {
            for leaf in &st.cgroup_leaves {
                for (file, want) in [
                    ("memory.limit_in_bytes", l.memory_bytes.to_string()),
                    ("cpu.cfs_quota_us", l.cpu_quota_us.to_string()),
                    ("cpu.cfs_period_us", l.cpu_period_us.to_string()),
                    ("pids.max", l.pids_max.to_string()),
                ] {
                    let p = leaf.join(file);
                    if p.exists() {
                        checks.push(check("cgroup", file, want, read(&p)));
                    }
                }
            }
        }
        CgroupVersion::V2 => {
            if let Some(leaf) = st.cgroup_leaves.first() {
                checks.push(check(
                    "cgroup",
                    "memory.max",
                    l.memory_bytes.to_string(),
                    read(&leaf.join("memory.max")),
                ));
                checks.push(check(
                    "cgroup",
                    "cpu.max",
                    format!("{} {}", l.cpu_quota_us, l.cpu_period_us),
                    read(&leaf.join("cpu.max")),
                ));
                checks.push(check(
                    "cgroup",
                    "pids.max",
                    l.pids_max.to_string(),
                    read(&leaf.join("pids.max")),
                ));
            }
        }
    }

    // rlimits.
    let limits = std::fs::read_to_string(format!("{proc_dir}/limits")).unwrap_or_default();
    let r = &st.rlimits;
    checks.push(check(
        "rlimits",
        "Max open files",
        lim(Some(r.nofile)),
        limit_line(&limits, "Max open files"),
    ));
    checks.push(check(
        "rlimits",
        "Max file size",
        lim(r.fsize),
        limit_line(&limits, "Max file size"),
    ));
    checks.push(check(
        "rlimits",
        "Max processes",
        lim(Some(r.nproc)),
        limit_line(&limits, "Max processes"),
    ));
    checks.push(check(
        "rlimits",
        "Max core file size",
        lim(Some(r.core)),
        limit_line(&limits, "Max core file size"),
    ));

    // Root directory: the process's / is the jail root (same inode), not the host's.
    let link = std::fs::read_link(format!("{proc_dir}/root"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let actual_root = std::fs::metadata(format!("{proc_dir}/root"))
        .map(|m| (m.dev(), m.ino()))
        .ok();
    let jail_root = std::fs::metadata(&st.root).map(|m| (m.dev(), m.ino())).ok();
    checks.push(Check {
        layer: "filesystem",
        item: "root".into(),
        expected: st.root.display().to_string(),
        actual: format!("{link} (dev/ino {actual_root:?} vs jail {jail_root:?})"),
        ok: actual_root.is_some() && actual_root == jail_root,
    });

    // The VM's files (disks, kernel, snapshot files) and the API jail.
    checks.extend(file_checks(st, &proc_dir));
    checks.extend(api_checks(st));

    // Landlock cannot be read back from /proc; report what was applied.
    if let Some(ll) = &st.landlock {
        checks.push(check(
            "landlock",
            format!(
                "ruleset as applied, not observable in /proc (kernel ABI {})",
                ll.kernel_abi
            ),
            ll.status.clone(),
            ll.status.clone(),
        ));
    }

    let deviations = checks.iter().filter(|c| !c.ok).count();
    Ok(Report {
        id: st.id.clone(),
        pid,
        profile: st.profile.clone(),
        ok: deviations == 0,
        deviations,
        checks,
    })
}

/// The mount options ("ro" or "rw") of the mount `path` is on, in a
/// /proc/<pid>/mountinfo (the last, i.e. top, mount of the longest matching point).
fn mount_access(mountinfo: &str, path: &Path) -> String {
    let mut best: Option<(usize, String)> = None;
    for l in mountinfo.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let (Some(point), Some(opts)) = (f.get(4), f.get(5)) else {
            continue;
        };
        let point = Path::new(point);
        if !path.starts_with(point) {
            continue;
        }
        let depth = point.components().count();
        if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
            let access = opts.split(',').next().unwrap_or("?").to_string();
            best = Some((depth, access));
        }
    }
    best.map(|(_, a)| a).unwrap_or_else(|| "no mount".into())
}

/// Each of the VM's files: the jail shows the file opened at its jail path, on a
/// read-only mount unless the VM writes it; its label as planned (applied or not).
fn file_checks(st: &JailState, proc_dir: &str) -> Vec<Check> {
    let mountinfo = std::fs::read_to_string(format!("{proc_dir}/mountinfo")).unwrap_or_default();
    let mut checks = Vec::new();
    for f in &st.vm_files {
        let want_access = if f.writable { "rw" } else { "ro" };
        let item = format!("{:?} {} ({})", f.kind, f.jail_path.display(), f.field);
        let seen = std::fs::metadata(format!("{proc_dir}/root{}", f.jail_path.display()))
            .map(|m| format!("{}:{}", m.dev(), m.ino()))
            .unwrap_or_else(|_| "missing".into());
        checks.push(check(
            "files",
            item.clone(),
            format!(
                "{want_access} {}:{} = {}",
                f.dev_ino.0,
                f.dev_ino.1,
                f.host_path.display()
            ),
            format!(
                "{} {seen} = {}",
                mount_access(&mountinfo, &f.jail_path),
                f.host_path.display()
            ),
        ));
        checks.push(label_check(&f.host_path, &f.label, f.label_applied));
    }
    checks
}

/// The label of a file: the planned one when applied (read back), else a note.
fn label_check(path: &Path, planned: &str, applied: bool) -> Check {
    use crate::selinux_backend::SelinuxBackend;
    let item = format!("label of {}", path.display());
    if !applied {
        let note = format!("not applied (SELinux off): {planned}");
        return check("selinux", item, &note, &note);
    }
    let actual = crate::selinux_backend::HostSelinux
        .file_label(path)
        .map(|l| l.unwrap_or_else(|| "none".into()))
        .unwrap_or_else(|e| e.to_string());
    check("selinux", item, planned, actual)
}

/// `--api`: the socket is there, and the snapshot directory is the VM's.
fn api_checks(st: &JailState) -> Vec<Check> {
    use std::os::unix::fs::FileTypeExt;
    let Some(api) = &st.api else {
        return Vec::new();
    };
    let sock = std::fs::symlink_metadata(&api.socket_host_path)
        .map(|m| {
            if m.file_type().is_socket() {
                "socket"
            } else {
                "not a socket"
            }
        })
        .unwrap_or("missing");
    let dir = std::fs::symlink_metadata(&api.snapshot_dir_host_path)
        .map(|m| format!("dir {}:{} {:o}", m.uid(), m.gid(), m.mode() & 0o7777))
        .unwrap_or_else(|_| "missing".into());
    vec![
        check(
            "api",
            format!("API socket {}", api.socket_host_path.display()),
            "socket",
            sock,
        ),
        check(
            "api",
            format!(
                "snapshot directory {}",
                api.snapshot_dir_host_path.display()
            ),
            format!("dir {}:{} 700", st.host_uid, st.host_gid),
            dir,
        ),
        label_check(
            &api.snapshot_dir_host_path,
            &api.snapshot_dir_label,
            api.label_applied,
        ),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn proc_parsing() {
        let status = "Name:\tx\nCapEff:\t0000000000000000\nUid:\t100\t100\t100\t100\nGroups:\t\n";
        assert_eq!(status_field(status, "CapEff"), "0000000000000000");
        assert_eq!(status_field(status, "Uid"), "100 100 100 100");
        assert_eq!(status_field(status, "Groups"), "");
        assert_eq!(status_field(status, "Seccomp"), "absent");
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax file size             unlimited            unlimited            bytes\nMax open files            2048                 2048                 files\n";
        assert_eq!(limit_line(limits, "Max open files"), "2048 2048");
        assert_eq!(limit_line(limits, "Max file size"), "unlimited unlimited");
        assert_eq!(lim(None), "unlimited unlimited");
        let mountinfo = "1 0 8:1 /j/root / ro,nosuid - ext4 /dev/sda1 rw\n\
            2 1 8:1 /img/d /res/drive0-d rw,nosuid - ext4 /dev/sda1 rw\n\
            3 1 8:1 /img/s /res/snapshot-s ro,nosuid - ext4 /dev/sda1 rw\n";
        assert_eq!(mount_access(mountinfo, Path::new("/res/drive0-d")), "rw");
        assert_eq!(mount_access(mountinfo, Path::new("/res/snapshot-s")), "ro");
        assert_eq!(mount_access(mountinfo, Path::new("/config.json")), "ro");
        assert_eq!(mount_access("", Path::new("/x")), "no mount");
    }

    fn seccomp_ok(
        vmm: SeccompMode,
        baseline: BaselineMode,
        expect: Option<u8>,
        mode: u8,
        filters: u32,
    ) -> Vec<(String, bool)> {
        let status = format!("Seccomp:\t{mode}\nSeccomp_filters:\t{filters}\n");
        seccomp_checks(vmm, baseline, expect, &status)
            .into_iter()
            .map(|c| (format!("{} {} {}", c.item, c.expected, c.actual), c.ok))
            .collect()
    }

    fn all_ok(v: &[(String, bool)]) -> bool {
        v.iter().all(|(_, ok)| *ok)
    }

    #[test]
    fn seccomp_counts_the_baseline_and_the_vmm_filter() {
        use BaselineMode::{Default as On, Off};
        use SeccompMode as M;
        // Baseline (1 filter) + the VMM's thread filter.
        assert!(all_ok(&seccomp_ok(M::On, On, None, 2, 2)));
        assert!(all_ok(&seccomp_ok(M::On, On, None, 2, 4)));
        // One of them missing: a deviation on the count only.
        let v = seccomp_ok(M::On, On, None, 2, 1);
        assert!(v[0].1, "{v:?}");
        assert_eq!(
            v[1],
            (
                "Seccomp_filters >=2 (1 baseline + 1 exec target) 1".into(),
                false
            )
        );
        // An exec target with no filter of its own (the probe): the baseline alone.
        assert!(all_ok(&seccomp_ok(M::On, On, Some(0), 2, 1)));
        assert!(!all_ok(&seccomp_ok(M::On, On, Some(0), 0, 0)));
        // The VMM's filters off, the baseline on.
        assert!(all_ok(&seccomp_ok(M::Off, On, None, 2, 1)));
        // Baseline off: as before.
        assert!(all_ok(&seccomp_ok(M::On, Off, None, 2, 1)));
        assert!(all_ok(&seccomp_ok(M::Off, Off, None, 0, 0)));
        assert!(!all_ok(&seccomp_ok(M::Off, Off, None, 2, 1)));
        assert!(!all_ok(&seccomp_ok(M::On, Off, None, 0, 0)));
    }
}
