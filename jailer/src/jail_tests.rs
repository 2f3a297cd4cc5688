//! Unit tests of the jail sequence's decisions (flags, modes, argv, limits).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::mcs::CategoryRange;
use crate::selinux_backend::fake::FakeSelinux;

#[test]
fn selinux_modes() {
    let off = FakeSelinux::default();
    let on = FakeSelinux {
        enabled: true,
        ..Default::default()
    };
    assert!(!selinux_enabled(&off, SelinuxMode::Auto).unwrap());
    assert!(matches!(
        selinux_enabled(&off, SelinuxMode::Require),
        Err(JailError::SelinuxRequired)
    ));
    assert!(selinux_enabled(&on, SelinuxMode::Auto).unwrap());
    assert!(selinux_enabled(&on, SelinuxMode::Require).unwrap());
    assert!(!selinux_enabled(&on, SelinuxMode::Off).unwrap());
}

fn args() -> RunArgs {
    RunArgs {
        id: Some("vm-1".into()),
        exec_file: Some("/usr/bin/caisson".into()),
        config_file: Some("/tmp/vm.json".into()),
        profile: "strict".into(),
        ..Default::default()
    }
}

#[test]
fn flags_override_single_profile_values() {
    let s = Settings::resolve(&args()).unwrap();
    assert_eq!(s.profile.seccomp.mode, SeccompMode::On);
    assert_eq!(s.profile.cgroup.parent.as_str(), "caisson");
    let mut a = args();
    a.profile = "dev".into();
    a.new_pid_ns = true;
    a.seccomp = Some(crate::profile::SeccompMode::On);
    a.landlock = Some(crate::profile::LandlockMode::Require);
    a.selinux = Some(crate::profile::SelinuxMode::Require);
    a.parent_cgroup = Some("machine/vms".into());
    a.cgroup_version = Some("2".into());
    a.cgroups = vec!["cpuset.cpus=0".into()];
    a.mcs_range = Some("c10.c20".into());
    a.resource_limits = vec!["fsize=4096".into(), "no-file=8".into()];
    a.netns = Some("/var/run/netns/vm1".into());
    a.uid = Some(7);
    a.daemonize = true;
    a.chroot_base_dir = "/srv/j".into();
    let s = Settings::resolve(&a).unwrap();
    assert!(s.profile.namespaces.pid);
    assert_eq!(s.profile.seccomp.mode, SeccompMode::On);
    assert_eq!(s.profile.landlock.mode, LandlockMode::Require);
    assert_eq!(s.profile.selinux.mode, SelinuxMode::Require);
    assert_eq!(s.profile.cgroup.parent.as_str(), "machine/vms");
    assert_eq!(s.cgroup_version, CgroupVersion::V2);
    assert_eq!(
        s.extra_cgroups,
        vec![("cpuset.cpus".to_string(), "0".to_string())]
    );
    assert_eq!(s.profile.selinux.range, CategoryRange { lo: 10, hi: 20 });
    // --resource-limit is not held to the profile's minimum (as in Firecracker).
    assert_eq!(s.profile.rlimits.fsize, FsizeChoice::Bytes(4096));
    assert_eq!(s.profile.rlimits.nofile, 8);
    assert_eq!(s.netns.as_deref(), Some(Path::new("/var/run/netns/vm1")));
    assert_eq!(s.vm_ids(100_005), (7, 100_005));
    assert!(s.daemonize);
    assert_eq!(s.paths.root, Path::new("/srv/j/caisson/vm-1/root"));
    // Other dev values stay.
    assert_eq!(s.profile.rlimits.nproc, 256);
}

#[test]
fn missing_flags_and_bad_ids_are_named() {
    let mut a = args();
    a.id = None;
    assert!(Settings::resolve(&a)
        .unwrap_err()
        .to_string()
        .contains("--id"));
    let mut a = args();
    a.id = Some("bad id".into());
    assert!(Settings::resolve(&a)
        .unwrap_err()
        .to_string()
        .contains("bad id"));
    // Without --config-file: Firecracker's mode, whose config (if any) is the
    // VMM's own --config-file; one without a value is named.
    let mut a = args();
    a.config_file = None;
    a.exec_args = vec!["--config-file".into()];
    let e = Settings::resolve(&a).unwrap_err().to_string();
    assert!(e.contains("--config-file") && e.contains("no value"), "{e}");
    // Bad flag values are named before any step runs.
    for (set, want) in [
        (
            (|a: &mut RunArgs| a.mcs_range = Some("c9.c2".into())) as fn(&mut RunArgs),
            "\"c9.c2\"",
        ),
        (|a| a.parent_cgroup = Some("../x".into()), "\"../x\""),
        (|a| a.cgroup_version = Some("3".into()), "\"3\""),
        (
            |a| a.resource_limits = vec!["stack=1".into()],
            "\"stack=1\"",
        ),
        (|a| a.cgroups = vec!["cpus=1".into()], "\"cpus=1\""),
        (|a| a.exec_file = Some("/usr/bin/.x".into()), "/usr/bin/.x"),
        (
            |a| a.profile = "/nonexistent/p.toml".into(),
            "/nonexistent/p.toml",
        ),
    ] {
        let mut a = args();
        set(&mut a);
        let e = Settings::resolve(&a).unwrap_err().to_string();
        assert!(e.contains(want), "{e} does not contain {want}");
    }
}

#[test]
fn rootless_refuses_what_needs_root() {
    let mut a = args();
    a.rootless = true;
    a.netns = Some("/var/run/netns/vm1".into());
    let e = Settings::resolve(&a).unwrap_err().to_string();
    assert!(e.contains("--rootless cannot use --netns"), "{e}");
    let mut a = args();
    a.rootless = true;
    a.selinux = Some(SelinuxMode::Require);
    let e = Settings::resolve(&a).unwrap_err().to_string();
    assert!(e.contains("--rootless cannot use --selinux=require"), "{e}");
}

#[test]
fn firecrackers_mode_replaces_uid_0_with_the_derived_id() {
    let mut a = args();
    a.uid = Some(0);
    a.gid = Some(5);
    // Caisson's mode takes the ids as given (identity::drop_to refuses 0).
    assert_eq!(Settings::resolve(&a).unwrap().vm_ids(100_001), (0, 5));
    a.config_file = None;
    let s = Settings::resolve(&a).unwrap();
    assert_eq!(s.vm_ids(100_001), (100_001, 5));
    a.uid = None;
    a.gid = None;
    let s = Settings::resolve(&a).unwrap();
    assert_eq!(s.vm_ids(100_001), (100_001, 100_001));
}

#[test]
fn without_a_config_file_the_jailer_is_firecrackers() {
    let s = Settings::resolve(&args()).unwrap();
    assert_eq!(
        s.mode,
        Mode::Caisson {
            config_file: "/tmp/vm.json".into()
        }
    );
    let mut a = args();
    a.config_file = None;
    a.uid = Some(0);
    a.gid = Some(0);
    a.exec_args = vec![
        "--level".into(),
        "Debug".into(),
        "--config-file".into(),
        "/fcConfig.json".into(),
    ];
    let s = Settings::resolve(&a).unwrap();
    assert_eq!(
        s.mode,
        Mode::Firecracker {
            config: Some("/fcConfig.json".into())
        }
    );
    a.exec_args.clear();
    let s = Settings::resolve(&a).unwrap();
    assert_eq!(s.mode, Mode::Firecracker { config: None });
}

fn argv_strings(s: &Settings) -> Vec<String> {
    vmm_argv(s, &StartTimes::now())
        .unwrap()
        .into_iter()
        .map(|c| c.into_string().unwrap())
        .collect()
}

#[test]
fn firecrackers_mode_forwards_the_vmm_arguments_unchanged() {
    let mut a = args();
    a.config_file = None;
    a.exec_file = Some("/usr/bin/firecracker".into());
    let extra = ["--config-file", "/fcConfig.json", "--level", "Debug"];
    a.exec_args = extra.iter().map(|x| x.to_string()).collect();
    let s = Settings::resolve(&a).unwrap();
    let argv = argv_strings(&s);
    // Firecracker's jailer: /<exec name> --id ID and the three times, then the
    // arguments after --, as given; the API stays on.
    assert_eq!(argv[0], "/firecracker");
    assert_eq!(argv[1..3], ["--id", "vm-1"]);
    assert_eq!(argv[3], "--start-time-us");
    assert_eq!(argv[5], "--start-time-cpu-us");
    assert_eq!(argv[7], "--parent-cpu-time-us");
    assert_eq!(argv[9..], extra);
    assert!(!argv.contains(&"--no-api".to_string()));
    // Caisson's mode still runs its own config without the API.
    let mut a = args();
    a.exec_args = vec!["--x".into()];
    let s = Settings::resolve(&a).unwrap();
    let argv = argv_strings(&s);
    assert_eq!(argv[1..4], ["--no-api", "--config-file", "/config.json"]);
    assert_eq!(argv.last().unwrap(), "--x");
}

#[test]
fn limits_follow_the_guest() {
    let s = Settings::resolve(&args()).unwrap();
    let res = Resources {
        files: Vec::new(),
        taps: Vec::new(),
        vsock_name: None,
        jail_config: String::new(),
        mem_size_mib: 512,
        vcpu_count: 2,
    };
    let l = cgroup_limits(&s, &res);
    assert_eq!(l.memory_bytes, (512 + 128) << 20);
    assert_eq!(l.cpu_quota_us, 200_000);
    assert_eq!(l.cpu_period_us, 100_000);
    assert_eq!(l.pids_max, 64);
}

#[test]
fn node_sets_the_cpuset_of_that_numa_node() {
    let mut a = args();
    a.node = Some(0);
    a.cgroups = vec!["cpuset.cpus=0".into()];
    let s = Settings::resolve(&a).unwrap();
    let cpus = std::fs::read_to_string("/sys/devices/system/node/node0/cpulist").unwrap();
    // The node first; an explicit --cgroup, written after it, wins.
    assert_eq!(
        s.extra_cgroups,
        vec![
            ("cpuset.cpus".to_string(), cpus.trim().to_string()),
            ("cpuset.mems".to_string(), "0".to_string()),
            ("cpuset.cpus".to_string(), "0".to_string()),
        ]
    );
    a.node = Some(4095);
    let e = Settings::resolve(&a).unwrap_err().to_string();
    assert!(
        e.contains("--node 4095") && e.contains("node4095/cpulist"),
        "{e}"
    );
}
