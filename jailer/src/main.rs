//! caisson-jailer: see README.md.
//!
//! The entry point is C's `main`, not Rust's: Rust's runtime set-up before
//! `fn main` (the main thread's stack guard, found by reading /proc/self/maps,
//! and its signal stack and handlers) cost ~60 µs of every jailed start here,
//! a tenth of the jail's whole budget (issue 11, part 7; measured with a
//! static binary spawned 150 times, CPU time at `main`: 462 -> 403 µs). What
//! of that set-up the jailer relies on, `process::runtime_start` does: SIGPIPE
//! ignored, and fds 0-2 open. A stack overflow is a plain SIGSEGV instead of a
//! message.
#![cfg_attr(not(test), no_main)]
// (The test harness brings its own `main`: the binary has no tests, and
// nothing here is used under it.)
#![cfg_attr(test, allow(dead_code))]

use clap::Parser;

use caisson_jailer::cli::{Cli, Command};

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            // One write per line (stderr is unbuffered: eprintln! writes each
            // piece, five syscalls on every start's SELinux notice).
            let line = format!("caisson-jailer: {}: {}\n", r.level(), r.args());
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

fn code(n: i32) -> i32 {
    i32::from(u8::try_from(n).unwrap_or(1))
}

/// The C entry point (see the module docs). `std::env::args` still works: the
/// arguments are taken from glibc at start-up, not from here.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    caisson_jailer::process::runtime_start();
    let code = jailer_main();
    // Rust's runtime flushes stdout at exit; so must this one.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    code
}

fn jailer_main() -> i32 {
    let _ = log::set_logger(&LOGGER).map(|()| log::set_max_level(log::LevelFilter::Info));
    let cli = Cli::parse();
    let backend = caisson_jailer::selinux_backend::HostSelinux;
    match cli.command {
        None => run(&cli.run),
        Some(Command::Run(args)) => run(&args),
        Some(Command::Audit(a)) => {
            match caisson_jailer::audit::audit(&a.runtime_dir, &a.id, a.expect_seccomp) {
                Ok(report) => {
                    match serde_json::to_string_pretty(&report) {
                        Ok(s) => println!("{s}"),
                        Err(e) => eprintln!("caisson-jailer: cannot print the report: {e}"),
                    }
                    if report.ok {
                        0
                    } else {
                        3
                    }
                }
                Err(e) => {
                    eprintln!("caisson-jailer: audit: {e}");
                    1
                }
            }
        }
        Some(Command::Cleanup(c)) => {
            let done = match &c.id {
                Some(id) => caisson_jailer::cleanup::cleanup_id(id, &c.runtime_dir, &backend),
                None => {
                    caisson_jailer::cleanup::cleanup_stale(&c.runtime_dir, &backend).map(|swept| {
                        for id in swept {
                            println!("{id}");
                        }
                    })
                }
            };
            match done {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("caisson-jailer: cleanup: {e}");
                    1
                }
            }
        }
    }
}

fn run(args: &caisson_jailer::cli::RunArgs) -> i32 {
    match caisson_jailer::jail::run(args) {
        Ok(n) => code(n),
        Err(e) => {
            eprintln!("caisson-jailer: {e}");
            1
        }
    }
}
