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
    #[error("cannot set the exec label {label}: {message}")]
    SetExec { label: String, message: String },
}

/// The SELinux operations the jailer needs.
pub trait SelinuxBackend {
    /// True when the host enforces or permits SELinux (selinuxfs is mounted).
    fn enabled(&self) -> bool;
    /// The label of a file (not following symlinks); `None` when it has none.
    fn file_label(&self, path: &Path) -> Result<Option<String>, SelinuxError>;
    /// Sets the label of a file (not following symlinks).
    fn set_file_label(&self, path: &Path, label: &str) -> Result<(), SelinuxError>;
    /// `setexeccon`: the label the next `execve` of this thread runs under.
    fn set_exec_label(&self, label: &str) -> Result<(), SelinuxError>;
    /// The labels of running processes (`/proc/*/attr/current`).
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

    fn set_exec_label(&self, label: &str) -> Result<(), SelinuxError> {
        let err = |message: String| SelinuxError::SetExec {
            label: label.to_string(),
            message,
        };
        let c = std::ffi::CString::new(label).map_err(|e| err(e.to_string()))?;
        let ctx = selinux::SecurityContext::from_c_str(&c, true);
        let r = ctx.set_for_next_exec().map_err(|e| err(e.to_string()));
        drop(ctx);
        r
    }

    fn process_labels(&self) -> Vec<String> {
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
        pub exec_label: RefCell<Option<String>>,
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
        fn set_exec_label(&self, label: &str) -> Result<(), SelinuxError> {
            *self.exec_label.borrow_mut() = Some(label.to_string());
            Ok(())
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

    #[test]
    fn host_without_selinux_is_not_enabled() {
        // This machine has SELinux compiled in but no selinuxfs.
        let expected = Path::new("/sys/fs/selinux/enforce").exists();
        assert_eq!(HostSelinux.enabled(), expected);
    }
}
