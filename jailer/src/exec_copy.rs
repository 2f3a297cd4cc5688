//! The VMM's copy in the jail (`<root>/<exec-file name>`). Copied, never linked
//! or bound: two VMMs must not share its pages (Firecracker's jailer copies for
//! the same reason). The copy is the dearest step of a jailed start (~1.4 ms for
//! a 3 MiB VMM on ext4 here), so it starts as soon as the settings are read, on
//! a thread of its own, into an unnamed `O_TMPFILE` beside the jail directory;
//! once the jail directory exists, [`ExecCopy::place`] links it in as the exec
//! target, and [`ExecCopy::finish`] joins the thread before the clone.
//!
//! The thread must be joined before any fork or clone: the child of a
//! multi-threaded process could inherit a lock the thread held. Dropped
//! unfinished (an error on the way), it is joined too.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// A step of the copy that failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecCopyError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the thread copying the exec file {0} panicked")]
    Panicked(PathBuf),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ExecCopyError {
    let path = path.to_path_buf();
    move |source| ExecCopyError::Io {
        action,
        path,
        source,
    }
}

/// Copies `src` into `dst` (opened for writing) and makes it 0755 (the mode
/// given at creation is masked by the umask). File to file, std copies with
/// `copy_file_range`, in the kernel.
fn copy_into(src: &Path, mut dst: File, shown_as: &Path) -> Result<(), ExecCopyError> {
    let mut from = File::open(src).map_err(io("open", src))?;
    std::io::copy(&mut from, &mut dst).map_err(io("copy the exec file to", shown_as))?;
    dst.set_permissions(std::fs::Permissions::from_mode(0o755))
        .map_err(io("chmod", shown_as))?;
    // `dst` is closed here, before the child may exec the file (a writer
    // would make that ETXTBSY).
    Ok(())
}

/// The exec file's copy under way.
pub struct ExecCopy {
    src: PathBuf,
    /// The unnamed file (held to link it in), or none where the filesystem
    /// has no `O_TMPFILE`: then the copy starts at [`ExecCopy::place`].
    tmp: Option<File>,
    thread: Option<JoinHandle<Result<(), ExecCopyError>>>,
}

impl ExecCopy {
    /// Starts copying `exec_file` into an unnamed file in `dir` (made if
    /// missing), which must be on the jail directory's filesystem.
    pub fn start(exec_file: &Path, dir: &Path) -> Result<Self, ExecCopyError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let tmp = match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o700)
            .open(dir)
        {
            Ok(f) => f,
            // A filesystem without O_TMPFILE: copy into the named target later.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
                return Ok(ExecCopy {
                    src: exec_file.to_path_buf(),
                    tmp: None,
                    thread: None,
                })
            }
            Err(e) => return Err(io("create an unnamed file in", dir)(e)),
        };
        let dst = tmp
            .try_clone()
            .map_err(io("duplicate the fd of a file in", dir))?;
        let thread = Self::spawn(exec_file, dst, dir)?;
        Ok(ExecCopy {
            src: exec_file.to_path_buf(),
            tmp: Some(tmp),
            thread: Some(thread),
        })
    }

    fn spawn(
        src: &Path,
        dst: File,
        shown_as: &Path,
    ) -> Result<JoinHandle<Result<(), ExecCopyError>>, ExecCopyError> {
        let (src, shown) = (src.to_path_buf(), shown_as.to_path_buf());
        std::thread::Builder::new()
            .name("exec-copy".into())
            .spawn(move || copy_into(&src, dst, &shown))
            .map_err(io("start a thread to copy the exec file to", shown_as))
    }

    /// Gives the copy its name, `target` (which must not exist), in the jail.
    pub fn place(&mut self, target: &Path) -> Result<(), ExecCopyError> {
        match self.tmp.take() {
            Some(tmp) => {
                // Linking an unnamed file by its /proc fd path needs no
                // capability (AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH,
                // which a rootless jailer lacks).
                let fd_path = PathBuf::from(format!("/proc/self/fd/{}", tmp.as_raw_fd()));
                match nix::unistd::linkat(
                    nix::fcntl::AT_FDCWD,
                    &fd_path,
                    nix::fcntl::AT_FDCWD,
                    target,
                    nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
                ) {
                    // `tmp` (a writable fd) is closed here.
                    Ok(()) => Ok(()),
                    // The jail root is a mount of its own (an orchestrator's
                    // bind mount, as Kata's): no link crosses a mount, even on
                    // one filesystem. The unnamed copy is dropped, and the
                    // exec file copied again into the named target.
                    Err(nix::errno::Errno::EXDEV) => {
                        self.join()?;
                        drop(tmp);
                        self.copy_named(target)
                    }
                    Err(e) => Err(io("link the exec file's copy as", target)(e.into())),
                }
            }
            None => self.copy_named(target),
        }
    }

    /// Starts copying into `target`, created here.
    fn copy_named(&mut self, target: &Path) -> Result<(), ExecCopyError> {
        let dst = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(target)
            .map_err(io("create", target))?;
        self.thread = Some(Self::spawn(&self.src, dst, target)?);
        Ok(())
    }

    /// Waits for the copy.
    pub fn finish(mut self) -> Result<(), ExecCopyError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), ExecCopyError> {
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(done)) => done,
            Some(Err(_)) => Err(ExecCopyError::Panicked(self.src.clone())),
        }
    }
}

impl Drop for ExecCopy {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copies_into_a_new_file_of_its_own() {
        let dir = crate::mcs::tests::tempdir("exec-copy");
        let src = dir.join("vmm");
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &body).unwrap();
        let mut c = ExecCopy::start(&src, &dir.join("base")).unwrap();
        std::fs::create_dir(dir.join("base/root")).unwrap();
        let target = dir.join("base/root/vmm");
        c.place(&target).unwrap();
        c.finish().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), body);
        let (m, s) = (
            std::fs::metadata(&target).unwrap(),
            std::fs::metadata(&src).unwrap(),
        );
        assert_eq!(m.permissions().mode() & 0o7777, 0o755);
        // A copy, not a link: its own inode, one name.
        assert_ne!(m.ino(), s.ino());
        assert_eq!(m.nlink(), 1);
        // Nothing else was left in the directory.
        let names: Vec<_> = std::fs::read_dir(dir.join("base"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("root")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn copies_into_a_jail_root_that_is_a_mount_of_its_own() {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        let dir = crate::mcs::tests::tempdir("exec-copy-mnt");
        let src = dir.join("vmm");
        std::fs::write(&src, b"vmm body").unwrap();
        let root = dir.join("base/root");
        std::fs::create_dir_all(&root).unwrap();
        let none: Option<&str> = None;
        mount(Some(&root), &root, none, MsFlags::MS_BIND, none).unwrap();
        let mut c = ExecCopy::start(&src, &dir.join("base")).unwrap();
        let placed = c.place(&root.join("vmm"));
        let finished = c.finish();
        let body = std::fs::read(root.join("vmm"));
        umount2(&root, MntFlags::MNT_DETACH).unwrap();
        placed.unwrap();
        finished.unwrap();
        assert_eq!(body.unwrap(), b"vmm body");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_an_existing_target_and_a_missing_source() {
        let dir = crate::mcs::tests::tempdir("exec-copy-err");
        let src = dir.join("vmm");
        std::fs::write(&src, b"x").unwrap();
        let target = dir.join("taken");
        std::fs::write(&target, b"other").unwrap();
        let mut c = ExecCopy::start(&src, &dir).unwrap();
        let err = c.place(&target).unwrap_err().to_string();
        assert!(err.contains("link") && err.contains("taken"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"other");
        drop(c);

        let missing = dir.join("no-such-vmm");
        let c = ExecCopy::start(&missing, &dir).unwrap();
        let err = c.finish().unwrap_err().to_string();
        assert!(err.contains("open") && err.contains("no-such-vmm"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
