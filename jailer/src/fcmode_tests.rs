//! Unit tests of Firecracker's mode: argument handling, resolution in the jail
//! root, the layout it adds and removes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn config_file_is_found_among_the_vmm_arguments() {
    assert_eq!(
        config_arg(&s(&["--config-file", "/fcConfig.json"])).unwrap(),
        Some("/fcConfig.json".into())
    );
    assert_eq!(
        config_arg(&s(&["--level", "Debug", "--config-file=vm.json", "--x"])).unwrap(),
        Some("vm.json".into())
    );
    assert_eq!(config_arg(&s(&["--api-sock", "/a.sock"])).unwrap(), None);
    assert_eq!(config_arg(&[]).unwrap(), None);
    for bad in [
        s(&["--config-file"]),
        s(&["--config-file", "--no-api"]),
        s(&["--config-file="]),
    ] {
        assert!(matches!(config_arg(&bad), Err(FcModeError::ConfigValue)));
    }
}

#[test]
fn paths_are_relative_to_the_jail_root_and_never_above_it() {
    let root = Path::new("/srv/jailer/firecracker/vm1/root");
    let rel = |p: &str| jail_relative("f", Path::new(p), root);
    assert_eq!(rel("/fcConfig.json").unwrap(), Path::new("fcConfig.json"));
    assert_eq!(rel("vmlinux").unwrap(), Path::new("vmlinux"));
    assert_eq!(rel("./a/../b/./c").unwrap(), Path::new("b/c"));
    for bad in ["/../etc/shadow", "../x", "a/../../x"] {
        let e = rel(bad).unwrap_err().to_string();
        assert!(
            e.contains("escapes the jail root") && e.contains(bad),
            "{e}"
        );
    }
    assert!(rel("/")
        .unwrap_err()
        .to_string()
        .contains("jail root itself"));
}

fn jail(tag: &str) -> PathBuf {
    let base = crate::mcs::tests::tempdir(tag);
    let root = base.join("firecracker/vm1/root");
    std::fs::create_dir_all(&root).unwrap();
    root
}

#[test]
fn config_is_read_in_the_jail_root_and_its_files_resolved_there() {
    let root = jail("fc-config");
    std::fs::write(root.join("vmlinux"), b"k").unwrap();
    std::fs::write(root.join("rootfs"), b"r").unwrap();
    std::fs::write(root.join("drive_0"), b"").unwrap();
    std::os::unix::fs::symlink("rootfs", root.join("rootfs-link")).unwrap();
    let write_cfg = |rootfs: &str| {
        std::fs::write(
            root.join("fcConfig.json"),
            format!(
                r#"{{"boot-source": {{"kernel_image_path": "/vmlinux"}},
                   "machine-config": {{"mem_size_mib": 64, "vcpu_count": 2}},
                   "drives": [
                     {{"drive_id": "rootfs", "path_on_host": "{rootfs}", "is_root_device": false, "is_read_only": true}},
                     {{"drive_id": "drive_0", "path_on_host": "/drive_0", "is_root_device": false, "is_read_only": false}}
                   ],
                   "vsock": {{"guest_cid": 3, "uds_path": "/kata.hvsock"}}}}"#
            ),
        )
        .unwrap();
    };
    write_cfg("/rootfs-link");
    let res = open_config(&root, "/fcConfig.json").unwrap();
    let paths: Vec<_> = res
        .files
        .iter()
        .map(|f| (f.jail_path.clone(), f.writable, f.kind))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("/fcConfig.json".into(), false, Kind::Config),
            ("/vmlinux".into(), false, Kind::Kernel),
            // The symlink inside the root resolved to its target, as the VMM will.
            ("/rootfs".into(), false, Kind::Drive),
            ("/drive_0".into(), true, Kind::Drive),
        ]
    );
    assert_eq!(res.files[2].host_path, root.join("rootfs"));
    assert_eq!((res.mem_size_mib, res.vcpu_count), (64, 2));
    assert_eq!(res.vsock_name.as_deref(), Some("kata.hvsock"));
    // The same config from a relative path.
    assert_eq!(open_config(&root, "fcConfig.json").unwrap().files.len(), 4);

    // A file outside the root, by `..`, by an absolute symlink, by a climbing one.
    std::os::unix::fs::symlink("/etc/hostname", root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc/hostname", root.join("up-link")).unwrap();
    for bad in ["/../../etc/hostname", "/abs-link", "/up-link"] {
        write_cfg(bad);
        let e = open_config(&root, "/fcConfig.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("escapes the jail root") && e.contains("drives[0].path_on_host"),
            "{bad}: {e}"
        );
    }
    // The config itself must be inside the root too.
    let e = open_config(&root, "/../../x.json").unwrap_err().to_string();
    assert!(e.contains("escapes the jail root"), "{e}");
    let e = open_config(&root, "/missing.json").unwrap_err().to_string();
    assert!(e.contains("missing.json"), "{e}");
    std::fs::remove_dir_all(root.ancestors().nth(3).unwrap()).unwrap();
}

#[test]
fn without_a_config_the_root_files_are_the_vms_writable_by_owner() {
    let root = jail("fc-scan");
    std::fs::write(root.join("vmlinux"), b"k").unwrap();
    std::fs::write(root.join("disk.img"), vec![0u8; 8192]).unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/extra.img"), b"e").unwrap();
    std::fs::create_dir(root.join("run")).unwrap();
    std::fs::write(root.join("run/ignored"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("link")).unwrap();
    nix::unistd::chown(
        &root.join("disk.img"),
        Some(nix::unistd::Uid::from_raw(4242)),
        Some(nix::unistd::Gid::from_raw(4242)),
    )
    .unwrap();
    std::fs::set_permissions(root.join("vmlinux"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(
        root.join("disk.img"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mut res = scan_root(&root, &["run"]).unwrap();
    classify(&mut res.files, 4242, 4242);
    let got: Vec<_> = res
        .files
        .iter()
        .map(|f| (f.jail_path.display().to_string(), f.writable))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/disk.img".to_string(), true),
            ("/vmlinux".to_string(), false),
            ("/sub/extra.img".to_string(), false),
        ]
    );
    assert_eq!(res.largest_writable_disk(), 8192);
    classify(&mut res.files, 5000, 5000);
    assert!(res.files.iter().all(|f| !f.writable));
    std::fs::remove_dir_all(root.ancestors().nth(3).unwrap()).unwrap();
}

#[test]
fn uid_zero_is_accepted_with_a_warning_and_replaced() {
    let w = root_id_warning(Some(0), Some(0)).unwrap();
    assert!(
        w.contains("--uid 0 --gid 0") && w.contains("never runs as root"),
        "{w}"
    );
    assert!(root_id_warning(Some(0), Some(7))
        .unwrap()
        .starts_with("--uid 0 accepted"));
    assert!(root_id_warning(Some(123), None).is_none());
    assert!(root_id_warning(None, None).is_none());
    assert_eq!(vm_id(Some(0), 100_001), 100_001);
    assert_eq!(vm_id(None, 100_001), 100_001);
    assert_eq!(vm_id(Some(123), 100_001), 123);
}

#[test]
fn prepare_adds_firecrackers_layout_and_cleanup_removes_only_that() {
    let root = jail("fc-prepare");
    let base = root.ancestors().nth(3).unwrap().to_path_buf();
    std::fs::write(root.join("vmlinux"), b"k").unwrap();
    std::fs::create_dir(root.join("run")).unwrap();
    std::fs::create_dir(base.join("bin")).unwrap();
    let exe = base.join("bin/firecracker");
    std::fs::write(&exe, b"#!").unwrap();
    let paths = crate::jailfs::jail_paths(&base, &exe, "vm1").unwrap();
    assert_eq!(paths.root, root);
    check_leftovers(&paths).unwrap();
    let res = Resources {
        files: Vec::new(),
        taps: Vec::new(),
        vsock_name: Some("kata.hvsock".into()),
        jail_config: String::new(),
        mem_size_mib: 0,
        vcpu_count: 0,
    };
    let mut p = prepare(&paths, &exe, &res, Some((4242, 4343))).unwrap();
    let meta = |rel: &str| std::fs::metadata(root.join(rel)).unwrap();
    // prepare leaves the exec target to the copy, which jail.rs records only
    // once it is placed (an orchestrator's own file there is never removed).
    assert!(!root.join("firecracker").exists());
    assert!(!p.created.contains(&root.join("firecracker")));
    let mut copy = crate::exec_copy::ExecCopy::start(&exe, &base, false).unwrap();
    copy.place(&root.join("firecracker")).unwrap();
    copy.finish().unwrap();
    p.created.push(root.join("firecracker"));
    assert_eq!(meta("firecracker").permissions().mode() & 0o7777, 0o755);
    assert_eq!(std::fs::read(root.join("firecracker")).unwrap(), b"#!");
    for d in ["", "dev", "dev/net", "run"] {
        assert_eq!((meta(d).uid(), meta(d).gid()), (4242, 4343), "{d}");
        assert_eq!(meta(d).permissions().mode() & 0o777, 0o700, "{d}");
    }
    // The root and run were there: their owners are restored; dev was made.
    let owned: Vec<_> = p.owners.iter().map(|o| o.path.clone()).collect();
    assert_eq!(owned, vec![root.clone(), root.join("run")]);
    assert!(p.created.contains(&root.join("dev")));
    assert!(!p.created.contains(&root.join("run")));
    // The plan's device nodes (the child makes them) and the vsock socket go too.
    for made in ["dev/kvm", "dev/net/tun", "kata.hvsock"] {
        assert!(p.created.contains(&root.join(made)), "{made}");
    }
    assert!(!p.created.contains(&root.join("dev/urandom")));
    write_pid_file(&paths, 4321).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("firecracker.pid")).unwrap(),
        "4321"
    );
    let e = check_leftovers(&paths).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    let _ = std::os::unix::net::UnixListener::bind(root.join("run/firecracker.socket")).unwrap();
    // Files the VMM made (a snapshot in the root, one in a directory the jailer
    // made) are the orchestrator's: they stay, and so does their directory.
    std::fs::write(root.join("vm.snap"), b"s").unwrap();
    std::fs::write(root.join("dev/vm.mem"), b"m").unwrap();
    assert!(remove_created(&p.created).is_empty());
    assert!(crate::resources::restore_owners(&p.owners).is_empty());
    let mut left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, vec!["dev", "run", "vm.snap", "vmlinux"]);
    assert_eq!(std::fs::read(root.join("dev/vm.mem")).unwrap(), b"m");
    assert!(!root.join("dev/net").exists());
    assert_eq!(meta("").uid(), 0);
    check_leftovers(&paths).unwrap();
    std::fs::remove_dir_all(&base).unwrap();
}
