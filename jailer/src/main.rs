//! caisson-jailer: see README.md.

use std::process::ExitCode;

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

fn code(n: i32) -> ExitCode {
    ExitCode::from(u8::try_from(n).unwrap_or(1))
}

fn main() -> ExitCode {
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
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(3)
                    }
                }
                Err(e) => {
                    eprintln!("caisson-jailer: audit: {e}");
                    ExitCode::from(1)
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
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("caisson-jailer: cleanup: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn run(args: &caisson_jailer::cli::RunArgs) -> ExitCode {
    match caisson_jailer::jail::run(args) {
        Ok(n) => code(n),
        Err(e) => {
            eprintln!("caisson-jailer: {e}");
            ExitCode::from(1)
        }
    }
}
