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
//!
//! Faster still: once a VM runs, its jailer makes the next launch's copy
//! ([`copy_ahead`], on an idle-priority thread), named
//! `.next-copy.<boot>.<exec file's dev, inode, size, mtime, ctime>` beside the
//! jail directories. The next start renames it into its jail (one rename, off
//! the copy's ~1-2 ms), so each copy still serves exactly one VM. The name
//! keeps it honest: a copy from another boot (it may not have reached the disk
//! whole) or of an exec file changed since is never used, and is replaced.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// An unnamed file in `dir`, or none where its filesystem has no `O_TMPFILE`.
fn unnamed_in(dir: &Path) -> Result<Option<File>, ExecCopyError> {
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o700)
        .open(dir)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => Ok(None),
        Err(e) => Err(io("create an unnamed file in", dir)(e)),
    }
}

/// Gives the unnamed file `tmp` the name `target`. Linking by its /proc fd
/// path needs no capability (AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH,
/// which a rootless jailer lacks).
fn link_as(tmp: &File, target: &Path) -> nix::Result<()> {
    let fd_path = PathBuf::from(format!("/proc/self/fd/{}", tmp.as_raw_fd()));
    nix::unistd::linkat(
        nix::fcntl::AT_FDCWD,
        &fd_path,
        nix::fcntl::AT_FDCWD,
        target,
        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
    )
}

/// The name prefix of the copies made ahead.
pub const AHEAD_PREFIX: &str = ".next-copy.";

/// The name of the copy made ahead for `src` as it is now (see the module
/// docs), or none when the boot or the file cannot be identified.
pub fn ahead_name(src: &Path) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let m = std::fs::metadata(src).ok()?;
    Some(format!(
        "{AHEAD_PREFIX}{}.{:x}.{:x}.{:x}.{:x}.{:x}.{:x}.{:x}",
        boot.trim().replace('-', ""),
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

/// Whether `path` is a copy made ahead by this jailer's user that can serve a
/// VM: a regular file of the source's size, 0755, with one name.
fn usable_ahead(path: &Path, size: u64) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| {
        m.is_file()
            && m.uid() == nix::unistd::geteuid().as_raw()
            && m.mode() & 0o7777 == 0o755
            && m.nlink() == 1
            && m.size() == size
    })
}

/// How the exec file reached the jail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Copied on this start (into an unnamed file, or under its name).
    Copied,
    /// The copy made ahead by an earlier start, renamed in.
    RenamedAhead,
    /// Copied under its name because the jail root is a mount of its own,
    /// which no link or rename crosses: a copy made ahead could not serve.
    CopiedAcrossMount,
}

/// The exec file's copy under way.
pub struct ExecCopy {
    src: PathBuf,
    /// The unnamed file (held to link it in), or none where the filesystem
    /// has no `O_TMPFILE` or a copy made ahead is used: then the copy starts
    /// at [`ExecCopy::place`] (if it must).
    tmp: Option<File>,
    /// The copy made ahead that [`ExecCopy::place`] renames in.
    ahead: Option<PathBuf>,
    thread: Option<JoinHandle<Result<(), ExecCopyError>>>,
    placed: Placed,
}

impl ExecCopy {
    /// Starts copying `exec_file` into an unnamed file in `dir` (made if
    /// missing), which must be on the jail directory's filesystem; with
    /// `use_ahead`, takes the copy made ahead in `dir` instead when there is one.
    pub fn start(exec_file: &Path, dir: &Path, use_ahead: bool) -> Result<Self, ExecCopyError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let mut copy = ExecCopy {
            src: exec_file.to_path_buf(),
            tmp: None,
            ahead: None,
            thread: None,
            placed: Placed::Copied,
        };
        if use_ahead {
            let size = std::fs::metadata(exec_file).map(|m| m.size());
            if let (Some(name), Ok(size)) = (ahead_name(exec_file), size) {
                let path = dir.join(name);
                if usable_ahead(&path, size) {
                    copy.ahead = Some(path);
                    return Ok(copy);
                }
            }
        }
        // A filesystem without O_TMPFILE: copy into the named target later.
        let Some(tmp) = unnamed_in(dir)? else {
            return Ok(copy);
        };
        let dst = tmp
            .try_clone()
            .map_err(io("duplicate the fd of a file in", dir))?;
        copy.thread = Some(Self::spawn(exec_file, dst, dir)?);
        copy.tmp = Some(tmp);
        Ok(copy)
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
        if let Some(ahead) = self.ahead.take() {
            use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
            return match renameat2(
                AT_FDCWD,
                &ahead,
                AT_FDCWD,
                target,
                RenameFlags::RENAME_NOREPLACE,
            ) {
                // Checked again where it now is: what was renamed is what runs.
                Ok(()) if usable_ahead(target, self.src_size()) => {
                    self.placed = Placed::RenamedAhead;
                    Ok(())
                }
                Ok(()) => {
                    std::fs::remove_file(target).map_err(io("remove", target))?;
                    self.copy_named(target)
                }
                // Taken by a start beside this one: copy after all.
                Err(nix::errno::Errno::ENOENT) => self.copy_named(target),
                Err(nix::errno::Errno::EXDEV) => {
                    self.placed = Placed::CopiedAcrossMount;
                    self.copy_named(target)
                }
                Err(e) => Err(io("rename the copy made ahead to", target)(e.into())),
            };
        }
        match self.tmp.take() {
            Some(tmp) => {
                match link_as(&tmp, target) {
                    // `tmp` (a writable fd) is closed here.
                    Ok(()) => Ok(()),
                    // The jail root is a mount of its own (an orchestrator's
                    // bind mount, as Kata's): no link crosses a mount, even on
                    // one filesystem. The unnamed copy is dropped, and the
                    // exec file copied again into the named target.
                    Err(nix::errno::Errno::EXDEV) => {
                        self.join()?;
                        drop(tmp);
                        self.placed = Placed::CopiedAcrossMount;
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

    fn src_size(&self) -> u64 {
        std::fs::metadata(&self.src).map_or(u64::MAX, |m| m.size())
    }

    /// Waits for the copy; says how the exec file was placed.
    pub fn finish(mut self) -> Result<Placed, ExecCopyError> {
        self.join()?;
        Ok(self.placed)
    }

    fn join(&mut self) -> Result<(), ExecCopyError> {
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(done)) => done,
            Some(Err(_)) => Err(ExecCopyError::Panicked(self.src.clone())),
        }
    }
}

/// Makes the next start's copy of `src` in `dir` (see the module docs); on
/// the idle-priority thread of [`crate::next_start`].
pub fn copy_ahead(src: &Path, dir: &Path) -> Result<(), ExecCopyError> {
    let Some(name) = ahead_name(src) else {
        return Ok(());
    };
    let target = dir.join(&name);
    let size = std::fs::metadata(src).map_err(io("stat", src))?.size();
    if !usable_ahead(&target, size) {
        // (One that is there but not as made would be refused forever.)
        match std::fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &target)(e)),
        }
        // No O_TMPFILE: no copy ahead (a named one could be seen half made).
        let Some(tmp) = unnamed_in(dir)? else {
            return Ok(());
        };
        let dst = tmp
            .try_clone()
            .map_err(io("duplicate the fd of a file in", dir))?;
        copy_into(src, dst, &target)?;
        // The exec file changed while it was copied: this copy is of neither.
        if ahead_name(src).as_deref() != Some(name.as_str()) {
            return Ok(());
        }
        match link_as(&tmp, &target) {
            // (EEXIST: a start beside this one made it first.)
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(io("link the copy made ahead as", &target)(e.into())),
        }
    }
    // Copies of another boot or of an earlier exec file serve no start.
    let entries = std::fs::read_dir(dir).map_err(io("read", dir))?;
    for entry in entries.flatten() {
        let n = entry.file_name();
        let n = n.to_string_lossy();
        if n.starts_with(AHEAD_PREFIX) && n != name.as_str() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
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
        let mut c = ExecCopy::start(&src, &dir.join("base"), false).unwrap();
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

    fn ahead_names(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(AHEAD_PREFIX))
            .collect()
    }

    #[test]
    fn a_copy_made_ahead_serves_one_start_and_only_for_the_same_exec_file() {
        let dir = crate::mcs::tests::tempdir("exec-copy-ahead");
        let base = dir.join("base");
        std::fs::create_dir_all(base.join("a")).unwrap();
        std::fs::create_dir_all(base.join("b")).unwrap();
        let src = dir.join("vmm");
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        std::fs::write(&src, &body).unwrap();
        // Nothing made ahead yet: this start copies.
        let mut c = ExecCopy::start(&src, &base, true).unwrap();
        c.place(&base.join("a/vmm")).unwrap();
        assert_eq!(c.finish().unwrap(), Placed::Copied);
        copy_ahead(&src, &base).unwrap();
        let made = ahead_names(&base);
        assert_eq!(made, vec![ahead_name(&src).unwrap()]);
        let ahead = std::fs::metadata(base.join(&made[0])).unwrap();
        // The next start takes it: a rename, so the same inode, now in the jail.
        let mut c = ExecCopy::start(&src, &base, true).unwrap();
        c.place(&base.join("b/vmm")).unwrap();
        assert_eq!(c.finish().unwrap(), Placed::RenamedAhead);
        let placed = std::fs::metadata(base.join("b/vmm")).unwrap();
        assert_eq!(placed.ino(), ahead.ino());
        assert_ne!(placed.ino(), std::fs::metadata(&src).unwrap().ino());
        assert_eq!(placed.nlink(), 1);
        assert_eq!(placed.mode() & 0o7777, 0o755);
        assert_eq!(std::fs::read(base.join("b/vmm")).unwrap(), body);
        assert!(ahead_names(&base).is_empty(), "one copy serves one start");

        // The exec file changes: the copy made for the old one is never used,
        // and the next copy ahead replaces it.
        copy_ahead(&src, &base).unwrap();
        let old = ahead_names(&base);
        std::fs::write(&src, b"a new vmm").unwrap();
        let mut c = ExecCopy::start(&src, &base, true).unwrap();
        std::fs::create_dir_all(base.join("c")).unwrap();
        c.place(&base.join("c/vmm")).unwrap();
        assert_eq!(c.finish().unwrap(), Placed::Copied);
        assert_eq!(std::fs::read(base.join("c/vmm")).unwrap(), b"a new vmm");
        assert_eq!(ahead_names(&base), old);
        copy_ahead(&src, &base).unwrap();
        assert_eq!(ahead_names(&base), vec![ahead_name(&src).unwrap()]);
        assert_ne!(ahead_names(&base), old);

        // A copy that is not as made (here: writable by others) is not used,
        // and the next copy ahead replaces it.
        let made = base.join(&ahead_names(&base)[0]);
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut c = ExecCopy::start(&src, &base, true).unwrap();
        std::fs::create_dir_all(base.join("d")).unwrap();
        c.place(&base.join("d/vmm")).unwrap();
        assert_eq!(c.finish().unwrap(), Placed::Copied);
        copy_ahead(&src, &base).unwrap();
        let mode = std::fs::metadata(&made).unwrap().mode();
        assert_eq!(mode & 0o7777, 0o755);
        // Spoiled between the check and the rename: removed, and copied instead.
        let mut c = ExecCopy::start(&src, &base, true).unwrap();
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::create_dir_all(base.join("d2")).unwrap();
        c.place(&base.join("d2/vmm")).unwrap();
        assert_eq!(c.finish().unwrap(), Placed::Copied);
        let d2 = std::fs::metadata(base.join("d2/vmm")).unwrap();
        assert_eq!(d2.mode() & 0o7777, 0o755);
        assert_eq!(std::fs::read(base.join("d2/vmm")).unwrap(), b"a new vmm");
        copy_ahead(&src, &base).unwrap();
        // Turned off, none is used either.
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = ExecCopy::start(&src, &base, false).unwrap();
        std::fs::create_dir_all(base.join("e")).unwrap();
        c.place(&base.join("e/vmm")).unwrap();
        assert_eq!(c.finish().unwrap(), Placed::Copied);
        assert!(made.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_copy_made_ahead_is_not_renamed_across_a_mount() {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        let dir = crate::mcs::tests::tempdir("exec-copy-ahead-mnt");
        let base = dir.join("base");
        let root = base.join("id/root");
        std::fs::create_dir_all(&root).unwrap();
        let src = dir.join("vmm");
        std::fs::write(&src, b"vmm body").unwrap();
        copy_ahead(&src, &base).unwrap();
        let none: Option<&str> = None;
        mount(Some(&root), &root, none, MsFlags::MS_BIND, none).unwrap();
        let mut c = ExecCopy::start(&src, &base, true).unwrap();
        let placed = c.place(&root.join("vmm"));
        let finished = c.finish();
        let body = std::fs::read(root.join("vmm"));
        umount2(&root, MntFlags::MNT_DETACH).unwrap();
        placed.unwrap();
        assert_eq!(finished.unwrap(), Placed::CopiedAcrossMount);
        assert_eq!(body.unwrap(), b"vmm body");
        // The copy made ahead stays for a start it can serve.
        assert_eq!(ahead_names(&base).len(), 1);
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
        let mut c = ExecCopy::start(&src, &dir.join("base"), false).unwrap();
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
        let mut c = ExecCopy::start(&src, &dir, false).unwrap();
        let err = c.place(&target).unwrap_err().to_string();
        assert!(err.contains("link") && err.contains("taken"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"other");
        drop(c);

        let missing = dir.join("no-such-vmm");
        let c = ExecCopy::start(&missing, &dir, true).unwrap();
        let err = c.finish().unwrap_err().to_string();
        assert!(err.contains("open") && err.contains("no-such-vmm"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
