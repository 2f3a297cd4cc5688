//! The `caisson` command line: Firecracker's process flags plus quick-use flags,
//! and `caisson demo`. Errors map to the exit codes documented in the README.

use std::path::PathBuf;
use std::process::ExitCode;

use caisson::config::{self, Overrides, VmConfig, DEFAULT_ID};
use caisson::exit::code;
use caisson::{builder, demo, logger, metrics, seccomp};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "caisson",
    version,
    about = "A security-hardened sandbox VMM",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Boot the demo guest embedded in this binary, without the jailer
    /// (tests/demo.sh runs it jailed).
    Demo {
        /// Number of vCPUs for the demo VM.
        #[arg(long, default_value_t = 1)]
        vcpus: u8,
        /// Extra words for the demo guest's command line.
        #[arg(long, default_value = "")]
        cmdline: String,
        /// Do not install seccomp filters (debugging only).
        #[arg(long)]
        no_seccomp: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Firecracker JSON config file describing the VM.
    #[arg(long, value_name = "PATH")]
    config_file: Option<PathBuf>,
    /// Do not start the API server (the only mode Caisson has so far).
    #[arg(long)]
    no_api: bool,
    /// Firecracker's API socket path; the API is not implemented yet.
    #[arg(long, value_name = "PATH")]
    api_sock: Option<PathBuf>,
    /// Instance id (1-64 characters of [A-Za-z0-9-]).
    #[arg(long, default_value = DEFAULT_ID)]
    id: String,
    /// Log level: Off, Error, Warning, Info, Debug or Trace.
    #[arg(long)]
    level: Option<String>,
    /// Append log lines to this file instead of stderr.
    #[arg(long, value_name = "PATH")]
    log_path: Option<PathBuf>,
    /// Show each log line's level.
    #[arg(long)]
    show_level: bool,
    /// Show each log line's source file and line.
    #[arg(long)]
    show_log_origin: bool,
    /// Passed by Firecracker's jailer; `api_server.process_startup_time_us` is measured from it.
    #[arg(long, value_name = "US")]
    start_time_us: Option<u64>,
    /// Passed by Firecracker's jailer; `api_server.process_startup_time_cpu_us` is measured from it.
    #[arg(long, value_name = "US")]
    start_time_cpu_us: Option<u64>,
    /// Passed by Firecracker's jailer; added to `api_server.process_startup_time_cpu_us`.
    #[arg(long, value_name = "US")]
    parent_cpu_time_us: Option<u64>,
    /// Do not install seccomp filters (debugging only).
    #[arg(long)]
    no_seccomp: bool,
    /// Use the filters in this seccompiler JSON file (keys `vmm` and `vcpu`)
    /// instead of the built-in ones.
    #[arg(long, value_name = "PATH", conflicts_with = "no_seccomp")]
    seccomp_filter: Option<PathBuf>,
    /// Kernel image (ELF vmlinux or bzImage); overrides boot-source.kernel_image_path.
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Initrd; overrides boot-source.initrd_path.
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// Kernel command line; overrides boot-source.boot_args.
    #[arg(long)]
    cmdline: Option<String>,
    /// vCPU count; overrides machine-config.vcpu_count.
    #[arg(long)]
    vcpus: Option<u64>,
    /// Guest memory in MiB; overrides machine-config.mem_size_mib.
    #[arg(long)]
    mem_mib: Option<u64>,
    /// Serial output: stdout, none, or a file path.
    #[arg(long)]
    serial: Option<String>,
}

/// A failure before the VM ran, with its exit code.
struct Failure {
    code: i32,
    message: String,
}

impl Failure {
    fn input(e: impl std::fmt::Display) -> Self {
        Self {
            code: code::BAD_INPUT,
            message: e.to_string(),
        }
    }
    fn vmm(e: impl std::fmt::Display) -> Self {
        Self {
            code: code::VMM_ERROR,
            message: e.to_string(),
        }
    }
}

fn init_logging(args: &RunArgs, file: Option<&config::LoggerConfig>) -> Result<(), Failure> {
    let level = args
        .level
        .clone()
        .or_else(|| file.and_then(|l| l.level.clone()))
        .unwrap_or_else(|| "Warning".into());
    let level = logger::parse_level(&level).map_err(Failure::input)?;
    let path = args
        .log_path
        .clone()
        .or_else(|| file.and_then(|l| l.log_path.clone()));
    let show_level = args.show_level || file.and_then(|l| l.show_level).unwrap_or(false);
    let show_origin = args.show_log_origin || file.and_then(|l| l.show_log_origin).unwrap_or(false);
    logger::init(&args.id, level, path.as_deref(), show_level, show_origin).map_err(Failure::input)
}

fn run_vm(cfg: &config::ValidConfig) -> Result<i32, Failure> {
    log::info!(
        "starting VM {}: {} vCPUs, {} MiB",
        cfg.id,
        cfg.vcpu_count,
        cfg.mem_size_mib
    );
    let vm = builder::build_vm(cfg).map_err(Failure::vmm)?;
    let reason = vm.run();
    // As Firecracker does when the VMM stops. The per-device groups come in here.
    if let Err(e) = metrics::flush(Vec::new) {
        log::warn!("{e}");
    }
    let reason = reason.map_err(Failure::vmm)?;
    let exit_code = reason.exit_code();
    if exit_code == code::OK {
        log::info!("VM {} ended: {reason}", cfg.id);
    } else {
        eprintln!("caisson: VM {} ended: {reason}", cfg.id);
        if logger::logs_to_file() {
            log::error!("VM {} ended: {reason}", cfg.id);
        }
    }
    Ok(exit_code)
}

fn run(args: RunArgs) -> Result<i32, Failure> {
    config::validate_id(&args.id).map_err(Failure::input)?;
    let mut vm_config = match &args.config_file {
        Some(path) => VmConfig::from_file(path).map_err(Failure::input)?,
        None => VmConfig::default(),
    };
    init_logging(&args, vm_config.logger.as_ref())?;
    if args.config_file.is_none() && args.kernel.is_none() {
        return Err(Failure::input(
            "no VM to run: give --config-file or --kernel (the API server is not implemented yet)",
        ));
    }
    if let (Some(sock), false) = (&args.api_sock, args.no_api) {
        log::warn!(
            "--api-sock {}: the API server is not implemented; ignoring it",
            sock.display()
        );
    }
    vm_config.apply(&Overrides {
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        cmdline: args.cmdline.clone(),
        vcpus: args.vcpus,
        mem_mib: args.mem_mib,
        serial: args.serial.clone(),
    });
    // Without /dev/kvm the static checks still run; building then reports KVM's error.
    let max_vcpus = builder::kvm_max_vcpus().unwrap_or(config::MAX_VCPUS_MPTABLE);
    let mut cfg = vm_config
        .validate(&args.id, max_vcpus)
        .map_err(Failure::input)?;
    cfg.seccomp = seccomp_filters(args.no_seccomp, args.seccomp_filter.as_deref())?;
    if let Some(path) = &cfg.metrics_path {
        metrics::init(path).map_err(Failure::input)?;
    }
    metrics::report_start_time(
        args.start_time_us,
        args.start_time_cpu_us,
        args.parent_cpu_time_us,
    );
    run_vm(&cfg)
}

/// The filters to install: built in, from a file, or none (with a warning).
fn seccomp_filters(
    off: bool,
    file: Option<&std::path::Path>,
) -> Result<Option<seccomp::Filters>, Failure> {
    if off {
        eprintln!(
            "caisson: warning: --no-seccomp: the VMM runs without seccomp filters (debugging only)"
        );
        return Ok(None);
    }
    match file {
        Some(path) => seccomp::Filters::from_json_file(path)
            .map(Some)
            .map_err(Failure::input),
        None => seccomp::Filters::embedded().map(Some).map_err(Failure::vmm),
    }
}

fn demo(vcpus: u8, cmdline: &str, no_seccomp: bool) -> Result<i32, Failure> {
    logger::init("demo", log::LevelFilter::Warn, None, false, false).map_err(Failure::vmm)?;
    let max = builder::kvm_max_vcpus().map_err(Failure::vmm)?;
    if vcpus == 0 || u64::from(vcpus) > max.min(config::MAX_VCPUS_MPTABLE) {
        return Err(Failure::input(format!("--vcpus: {vcpus} is out of range")));
    }
    let filters = seccomp_filters(no_seccomp, None)?;
    run_vm(&demo::demo_config("demo", cmdline, vcpus, filters))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Demo {
            vcpus,
            cmdline,
            no_seccomp,
        }) => demo(vcpus, &cmdline, no_seccomp),
        None => run(cli.run),
    };
    match result {
        Ok(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        Err(f) => {
            eprintln!("caisson: error: {}", f.message);
            if logger::logs_to_file() {
                log::error!("{}", f.message);
            }
            ExitCode::from(u8::try_from(f.code).unwrap_or(1))
        }
    }
}
