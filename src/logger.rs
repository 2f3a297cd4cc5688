//! A small `log` backend honouring Firecracker's logger options: level, file,
//! and whether to show the level and the origin of each line.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use log::{LevelFilter, Log, Metadata, Record};

#[derive(Debug, thiserror::Error)]
pub enum LoggerError {
    #[error("--level: {0:?} is not one of Off, Error, Warning, Info, Debug, Trace")]
    Level(String),
    #[error("--log-path: cannot open {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the logger is already initialised")]
    AlreadySet,
}

/// Parses Firecracker's level names, case-insensitively.
pub fn parse_level(s: &str) -> Result<LevelFilter, LoggerError> {
    match s.to_ascii_lowercase().as_str() {
        "off" => Ok(LevelFilter::Off),
        "error" => Ok(LevelFilter::Error),
        "warn" | "warning" => Ok(LevelFilter::Warn),
        "info" => Ok(LevelFilter::Info),
        "debug" => Ok(LevelFilter::Debug),
        "trace" => Ok(LevelFilter::Trace),
        _ => Err(LoggerError::Level(s.to_string())),
    }
}

struct Inner {
    id: String,
    show_level: bool,
    show_origin: bool,
    out: Box<dyn Write + Send>,
}

/// One process-wide logger; `init` may be called again (PUT /logger) to move it.
struct Logger(Mutex<Option<Inner>>);

static LOGGER: Logger = Logger(Mutex::new(None));

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let mut guard = crate::devices::lock(&self.0);
        let Some(inner) = guard.as_mut() else {
            return;
        };
        let thread = std::thread::current();
        let mut line = format!("[{}:{}", inner.id, thread.name().unwrap_or("-"));
        if inner.show_level {
            line.push_str(&format!(":{}", r.level()));
        }
        if inner.show_origin {
            line.push_str(&format!(
                ":{}:{}",
                r.file().unwrap_or("?"),
                r.line().unwrap_or(0)
            ));
        }
        line.push_str(&format!("] {}\n", r.args()));
        // Logging must never take the VMM down (nor block it: a FIFO is non-blocking).
        let _ = inner.out.write_all(line.as_bytes());
        let _ = inner.out.flush();
    }

    fn flush(&self) {
        if let Some(inner) = crate::devices::lock(&self.0).as_mut() {
            let _ = inner.out.flush();
        }
    }
}

static TO_FILE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether log lines go to a file (rather than stderr).
pub fn logs_to_file() -> bool {
    TO_FILE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the logger, or moves it (a later call, as `PUT /logger` makes): to
/// `path` (appending; a named pipe is opened non-blocking, so a pipe nobody
/// reads never stalls the VMM) or to stderr.
pub fn init(
    id: &str,
    level: LevelFilter,
    path: Option<&Path>,
    show_level: bool,
    show_origin: bool,
) -> Result<(), LoggerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let out: Box<dyn Write + Send> = match path {
        Some(p) => {
            let file = File::options()
                .create(true)
                .append(true)
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(p)
                .map_err(|source| LoggerError::Open {
                    path: p.to_path_buf(),
                    source,
                })?;
            // The SIGSYS handler cannot take the logger's lock; it writes here directly.
            crate::seccomp::set_log_fd(std::os::fd::AsRawFd::as_raw_fd(&file));
            Box::new(file)
        }
        None => Box::new(std::io::stderr()),
    };
    let first = {
        let mut guard = crate::devices::lock(&LOGGER.0);
        let first = guard.is_none();
        // The old file stays open (leaked) if the SIGSYS handler may still hold
        // its fd; a replaced logger is rare (once per VM at most).
        if let Some(old) = guard.replace(Inner {
            id: id.to_string(),
            show_level,
            show_origin,
            out,
        }) {
            std::mem::forget(old);
        }
        first
    };
    TO_FILE.store(path.is_some(), std::sync::atomic::Ordering::Relaxed);
    if first {
        log::set_logger(&LOGGER).map_err(|_| LoggerError::AlreadySet)?;
    }
    log::set_max_level(level);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse_level("Warning").ok(), Some(LevelFilter::Warn));
        assert_eq!(parse_level("TRACE").ok(), Some(LevelFilter::Trace));
        assert!(parse_level("loud").is_err());
    }
}
