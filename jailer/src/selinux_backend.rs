//! Every SELinux call the jailer makes, behind one small trait, so that allocation,
//! collision handling, the image-labelling plan and restore are tested with a fake.

use std::path::{Path, PathBuf};

/// A failed SELinux call.
#[derive(Debug, thiserror::Error)]
pub enum SelinuxError {
    #[error("cannot read the SELinux label of {path}: {message}")]
    GetFile { path: PathBuf, message: String },
    #[error("cannot label {path} as {label}: {message}")]
    SetFile {
        path: PathBuf,
        label: String,
        message: String,
    },
    #[error("cannot open {path} (for the exec label): {errno}")]
    OpenExec {
        path: &'static str,
        errno: nix::Error,
    },
    #[error("cannot set the exec label {label} through {path}: {errno}")]
    SetExec {
        label: String,
        path: &'static str,
        errno: nix::Error,
    },
}

/// Where `setexeccon` writes: this thread's exec-label attribute.
pub const EXEC_ATTR: &str = "/proc/thread-self/attr/exec";

/// An open exec-label attribute. `setexeccon` in two halves: the jailer opens it
/// while `/proc` is reachable and writes the label after `pivot_root`, right before
/// `execve` (the kernel lets the opener's process write it until it execs).
#[derive(Debug)]
pub struct ExecAttr {
    fd: std::os::fd::OwnedFd,
}

impl ExecAttr {
    /// Opens [`EXEC_ATTR`] for writing.
    pub fn open() -> Result<Self, SelinuxError> {
        use nix::fcntl::{open, OFlag};
        let fd = open(
            EXEC_ATTR,
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|errno| SelinuxError::OpenExec {
            path: EXEC_ATTR,
            errno,
        })?;
        Ok(Self { fd })
    }

    /// Writes the label, with its NUL as libselinux does, in one write at offset 0
    /// (the kernel takes no partial writes). Allocates nothing, so a test may call
    /// it in a forked child.
    pub fn write_label(&self, label: &std::ffi::CStr) -> Result<(), nix::Error> {
        let bytes = label.to_bytes_with_nul();
        match nix::sys::uio::pwrite(&self.fd, bytes, 0) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(_) => Err(nix::Error::EIO),
            Err(e) => Err(e),
        }
    }

    /// [`Self::write_label`], with the error naming the label.
    pub fn set(&self, label: &std::ffi::CStr) -> Result<(), SelinuxError> {
        self.write_label(label)
            .map_err(|errno| SelinuxError::SetExec {
                label: label.to_string_lossy().into_owned(),
                path: EXEC_ATTR,
                errno,
            })
    }
}

/// The SELinux operations the jailer needs.
pub trait SelinuxBackend {
    /// True when the host enforces or permits SELinux (selinuxfs is mounted).
    fn enabled(&self) -> bool;
    /// The label of a file (not following symlinks); `None` when it has none.
    fn file_label(&self, path: &Path) -> Result<Option<String>, SelinuxError>;
    /// Sets the label of a file (not following symlinks).
    fn set_file_label(&self, path: &Path, label: &str) -> Result<(), SelinuxError>;
    /// Opens the attribute that sets the label the next `execve` of this thread
    /// runs under (see [`ExecAttr`]).
    fn open_exec_attr(&self) -> Result<ExecAttr, SelinuxError>;
    /// The labels of running processes (`/proc/*/attr/current`); none when the
    /// host has SELinux off.
    fn process_labels(&self) -> Vec<String>;
}

/// The host's SELinux, through libselinux (the `selinux` crate).
#[derive(Debug, Default)]
pub struct HostSelinux;

impl SelinuxBackend for HostSelinux {
    fn enabled(&self) -> bool {
        !matches!(
            selinux::kernel_support(),
            selinux::KernelSupport::Unsupported
        )
    }

    fn file_label(&self, path: &Path) -> Result<Option<String>, SelinuxError> {
        let ctx = selinux::SecurityContext::of_path(path, false, true).map_err(|e| {
            SelinuxError::GetFile {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        let Some(ctx) = ctx else { return Ok(None) };
        let text = ctx
            .to_c_string()
            .map_err(|e| SelinuxError::GetFile {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
            .map(|c| c.to_string_lossy().into_owned());
        Ok(text)
    }

    fn set_file_label(&self, path: &Path, label: &str) -> Result<(), SelinuxError> {
        let err = |message: String| SelinuxError::SetFile {
            path: path.to_path_buf(),
            label: label.to_string(),
            message,
        };
        let c = std::ffi::CString::new(label).map_err(|e| err(e.to_string()))?;
        let ctx = selinux::SecurityContext::from_c_str(&c, true);
        let r = ctx
            .set_for_path(path, false, true)
            .map_err(|e| err(e.to_string()));
        drop(ctx);
        r
    }

    fn open_exec_attr(&self) -> Result<ExecAttr, SelinuxError> {
        ExecAttr::open()
    }

    fn process_labels(&self) -> Vec<String> {
        // Without SELinux no process has a label, and the scan costs ~5 µs per
        // process (5 ms on a host with a thousand).
        if !self.enabled() {
            return Vec::new();
        }
        read_process_labels(Path::new("/proc"))
    }
}

/// Reads `attr/current` of every process under `proc_dir`, skipping unreadable ones.
pub fn read_process_labels(proc_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(proc_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("attr/current")).ok())
        .map(|s| s.trim_end_matches(['\0', '\n']).to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// An in-memory SELinux for tests.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    #[derive(Debug, Default)]
    pub struct FakeSelinux {
        pub enabled: bool,
        pub files: RefCell<BTreeMap<PathBuf, String>>,
        pub running: Vec<String>,
        /// Setting a label on this path fails.
        pub fail_on: Option<PathBuf>,
    }

    impl SelinuxBackend for FakeSelinux {
        fn enabled(&self) -> bool {
            self.enabled
        }
        fn file_label(&self, path: &Path) -> Result<Option<String>, SelinuxError> {
            Ok(self.files.borrow().get(path).cloned())
        }
        fn set_file_label(&self, path: &Path, label: &str) -> Result<(), SelinuxError> {
            if self.fail_on.as_deref() == Some(path) {
                return Err(SelinuxError::SetFile {
                    path: path.to_path_buf(),
                    label: label.to_string(),
                    message: "injected failure".into(),
                });
            }
            self.files
                .borrow_mut()
                .insert(path.to_path_buf(), label.to_string());
            Ok(())
        }
        fn open_exec_attr(&self) -> Result<ExecAttr, SelinuxError> {
            // No unit test execs; the real attribute is tested with ExecAttr itself.
            Err(SelinuxError::OpenExec {
                path: EXEC_ATTR,
                errno: nix::Error::ENOSYS,
            })
        }
        fn process_labels(&self) -> Vec<String> {
            self.running.clone()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn host_process_labels_are_read_from_proc() {
        let dir = crate::mcs::tests::tempdir("proc-labels");
        for (pid, label) in [("12", "a:b:c:s0:c1,c2\0"), ("13", ""), ("self", "x:y:z:s0")] {
            std::fs::create_dir_all(dir.join(pid).join("attr")).unwrap();
            std::fs::write(dir.join(pid).join("attr/current"), label).unwrap();
        }
        assert_eq!(
            read_process_labels(&dir),
            vec!["a:b:c:s0:c1,c2".to_string()]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The exec label must be written right before exec, after pivot_root, the uid
    /// change and Landlock. A child opens the attribute, leaves `/proc` behind
    /// (chroot into an empty directory in its own mount namespace) and drops to
    /// nobody; its write through the early fd still reaches the LSM: without
    /// SELinux (this host) the LSM layer answers EINVAL, with SELinux it succeeds
    /// (the child's own current label). A path-based setexeccon there finds no
    /// `/proc` (ENOENT), and an fd opened by another process is refused (EPERM).
    #[test]
    fn exec_attr_opened_before_the_root_change_is_written_after_it() {
        use nix::sys::wait::{waitpid, WaitStatus};
        let empty = crate::mcs::tests::tempdir("exec-attr");
        let selinux = HostSelinux.enabled();
        let label = if selinux {
            std::fs::read_to_string("/proc/self/attr/current")
                .unwrap()
                .trim_end_matches(['\0', '\n'])
                .to_string()
        } else {
            "system_u:system_r:caisson_vm_t:s0:c1,c2".to_string()
        };
        let label = std::ffi::CString::new(label).unwrap();
        let root = std::ffi::CString::new(empty.as_os_str().as_encoded_bytes()).unwrap();
        let attr_path = std::ffi::CString::new(EXEC_ATTR).unwrap();
        // Opened by this (the parent) process: the child may not write through it.
        let foreign = HostSelinux.open_exec_attr().unwrap();
        // SAFETY: the child makes only raw syscalls on data prepared before the fork
        // (no allocation, no locks) and ends with _exit.
        let pid = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = (|| -> i32 {
                    if foreign.write_label(&label) != Err(nix::Error::EPERM) {
                        return 10;
                    }
                    let Ok(attr) = ExecAttr::open() else {
                        return 11;
                    };
                    // SAFETY: plain syscalls on valid C strings.
                    unsafe {
                        if libc::unshare(libc::CLONE_NEWNS) != 0
                            || libc::mount(
                                std::ptr::null(),
                                c"/".as_ptr(),
                                std::ptr::null(),
                                libc::MS_PRIVATE | libc::MS_REC,
                                std::ptr::null(),
                            ) != 0
                            || libc::chroot(root.as_ptr()) != 0
                            || libc::chdir(c"/".as_ptr()) != 0
                        {
                            return 12;
                        }
                        if libc::access(attr_path.as_ptr(), libc::W_OK) == 0
                            || nix::errno::Errno::last() != nix::Error::ENOENT
                        {
                            return 13;
                        }
                        if libc::setresgid(65534, 65534, 65534) != 0
                            || libc::setresuid(65534, 65534, 65534) != 0
                        {
                            return 14;
                        }
                    }
                    match attr.write_label(&label) {
                        Ok(()) => 0,
                        Err(nix::Error::EINVAL) => 22,
                        Err(nix::Error::EPERM) => 1,
                        Err(nix::Error::EACCES) => 2,
                        Err(_) => 99,
                    }
                })();
                // SAFETY: ends the forked child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => child,
        };
        let status = waitpid(pid, None).unwrap();
        std::fs::remove_dir_all(&empty).unwrap();
        let expected = if selinux { 0 } else { 22 };
        assert_eq!(
            status,
            WaitStatus::Exited(pid, expected),
            "10: foreign fd not refused, 11: open failed, 12: chroot failed, 13: /proc still \
             reachable, 14: setuid failed, 1/2: refused after the root change, 22: EINVAL \
             (no SELinux), 99: other; SELinux enabled: {selinux}"
        );
    }

    #[test]
    fn host_without_selinux_is_not_enabled() {
        // This machine has SELinux compiled in but no selinuxfs.
        let expected = Path::new("/sys/fs/selinux/enforce").exists();
        assert_eq!(HostSelinux.enabled(), expected);
    }
}
