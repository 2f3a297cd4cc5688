//! Drive backing files, shared by config's checks and the block device (so that
//! config need not know the devices).

use std::fs::File;
use std::path::Path;

/// Opens a drive's backing file: a regular file or a block device (Kata
/// hot-plugs host block devices over its placeholder drives). The open does
/// not block (O_NONBLOCK, which both ignore), so a FIFO named as a drive is
/// refused instead of stalling the VMM thread.
pub fn open(path: &Path, writable: bool) -> Result<File, std::io::Error> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !(kind.is_file() || kind.is_block_device()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file or a block device",
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_and_block_devices_only() {
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(open(f.path(), true).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path(), false).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // Non-blocking: a FIFO with no writer is refused at once, not waited on.
        assert!(open(&fifo, false).is_err());
        assert!(open(&dir.path().join("missing"), false).is_err());
    }
}
