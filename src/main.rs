//! The `caisson` command line: Firecracker's process flags plus quick-use flags,
//! and `caisson demo`. Errors map to the exit codes documented in the README.

use std::path::PathBuf;
use std::process::ExitCode;

use caisson::api::ApiReceiver;
use caisson::config::{self, Overrides, VmConfig, DEFAULT_ID};
use caisson::controller::{actions_from_config, ActionError, Controller, VmmAction};
use caisson::exit::code;
use caisson::vm::Vm;
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
    /// Work on snapshot files.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Write the pages of a Diff snapshot's memory file onto the memory file
    /// of the snapshot it followed (Firecracker's rebase-snap), so that the
    /// Diff's state file can be loaded with the base file.
    Rebase {
        /// The earlier memory file (Full, or already rebased); it is updated.
        #[arg(long, value_name = "PATH")]
        base_file: PathBuf,
        /// The Diff snapshot's (sparse) memory file.
        #[arg(long, value_name = "PATH")]
        diff_file: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Firecracker JSON config file describing the VM.
    #[arg(long, value_name = "PATH")]
    config_file: Option<PathBuf>,
    /// Do not start the API server.
    #[arg(long)]
    no_api: bool,
    /// The API socket (default /run/firecracker.socket). The API is on unless
    /// --no-api is given, except with the quick-use flags (--kernel ...), where
    /// it is on only when --api-sock is given.
    #[arg(long, value_name = "PATH")]
    api_sock: Option<PathBuf>,
    /// Largest API request body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = caisson::api::http::DEFAULT_MAX_PAYLOAD)]
    http_api_max_payload_size: usize,
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
    /// Use the filters in this seccompiler JSON file (keys `vmm`, `vcpu` and `api`)
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

/// Reports how the VM ended and returns the process's exit code.
fn finish(
    id: &str,
    vm: Vm,
    control: Option<&mut dyn caisson::vm::Control>,
) -> Result<i32, Failure> {
    let reason = vm.run(control);
    // As Firecracker does when the VMM stops.
    if let Err(e) = metrics::flush(builder::device_metric_groups) {
        log::warn!("{e}");
    }
    let reason = reason.map_err(Failure::vmm)?;
    let exit_code = reason.exit_code();
    if exit_code == code::OK {
        log::info!("VM {id} ended: {reason}");
    } else {
        eprintln!("caisson: VM {id} ended: {reason}");
        if logger::logs_to_file() {
            log::error!("VM {id} ended: {reason}");
        }
    }
    Ok(exit_code)
}

fn run_vm(cfg: &config::ValidConfig, filters: Option<&seccomp::Filters>) -> Result<i32, Failure> {
    log::info!(
        "starting VM {}: {} vCPUs, {} MiB",
        cfg.id,
        cfg.vcpu_count,
        cfg.mem_size_mib
    );
    let vm = builder::build_vm(cfg, filters).map_err(Failure::vmm)?;
    finish(&cfg.id, vm, None)
}

/// An action from the config file failed: a bad file, or a VM that cannot be built.
fn action_failure(e: ActionError) -> Failure {
    match e {
        ActionError::Start(e) => Failure::vmm(e),
        e @ ActionError::LoadSnapshot(_) => Failure::vmm(e),
        other => Failure::input(other),
    }
}

/// The API on a running VM: requests are taken on the event-loop thread.
struct ApiControl {
    controller: Controller,
    api: ApiReceiver,
}

impl caisson::vm::Control for ApiControl {
    fn take_waker(&mut self) -> Option<vmm_sys_util::eventfd::EventFd> {
        self.api.loop_waker.take()
    }
    fn handle_pending(&mut self, vm: &mut Vm) {
        while let Ok((action, reply)) = self.api.requests.try_recv() {
            let _ = reply.send(self.controller.handle_runtime(action, vm));
        }
    }
}

/// Serves pre-boot requests until one starts the VM; None if a stop signal
/// came first.
fn serve_until_start(
    controller: &mut Controller,
    api: &ApiReceiver,
) -> Result<Option<Vm>, Failure> {
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use std::os::fd::AsRawFd;
    use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
    let signals = SignalFd::with_flags(
        &caisson::vm::stop_signals(),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
    .map_err(Failure::vmm)?;
    let epoll = Epoll::new().map_err(Failure::vmm)?;
    for fd in [api.waker.as_raw_fd(), signals.as_raw_fd()] {
        epoll
            .ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, fd as u64),
            )
            .map_err(Failure::vmm)?;
    }
    let mut ready = [EpollEvent::default(); 2];
    loop {
        match epoll.wait(-1, &mut ready) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::vmm(format!("epoll_wait: {e}"))),
        }
        if let Ok(Some(info)) = signals.read_signal() {
            log::info!(
                "received signal {} before the VM started; exiting",
                info.ssi_signo
            );
            return Ok(None);
        }
        let _ = api.waker.read();
        while let Ok((action, reply)) = api.requests.try_recv() {
            let (result, vm) = controller.handle_preboot(action);
            let _ = reply.send(result);
            if vm.is_some() {
                return Ok(vm);
            }
        }
    }
}

fn run(args: RunArgs) -> Result<i32, Failure> {
    config::validate_id(&args.id).map_err(Failure::input)?;
    let mut vm_config = match &args.config_file {
        Some(path) => VmConfig::from_file(path).map_err(Failure::input)?,
        None => VmConfig::default(),
    };
    init_logging(&args, vm_config.logger.as_ref())?;
    // Quick-use flags keep the API off unless a socket is asked for.
    let api_on = !args.no_api && (args.api_sock.is_some() || args.kernel.is_none());
    if !api_on && args.config_file.is_none() && args.kernel.is_none() {
        return Err(Failure::input(
            "no VM to run: give --config-file or --kernel, or leave the API on",
        ));
    }
    vm_config.apply(&Overrides {
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        cmdline: args.cmdline.clone(),
        vcpus: args.vcpus,
        mem_mib: args.mem_mib,
        serial: args.serial.clone(),
    });
    // Every thread spawned from here inherits the mask; only signalfds see them.
    caisson::vm::block_stop_signals().map_err(Failure::vmm)?;
    let filters = seccomp_filters(args.no_seccomp, args.seccomp_filter.as_deref())?;
    seccomp::install_sigsys_handler().map_err(Failure::vmm)?;
    let api = if api_on {
        let path = args
            .api_sock
            .clone()
            .unwrap_or_else(|| PathBuf::from(caisson::api::DEFAULT_SOCKET));
        let listener = caisson::api::bind(&path).map_err(Failure::input)?;
        Some(
            caisson::api::spawn(listener, args.http_api_max_payload_size, filters.clone())
                .map_err(Failure::vmm)?,
        )
    } else {
        None
    };
    // Without /dev/kvm the static checks still run; building then reports KVM's error.
    let max_vcpus = builder::kvm_max_vcpus().unwrap_or(config::MAX_VCPUS_MPTABLE);
    metrics::report_start_time(
        args.start_time_us,
        args.start_time_cpu_us,
        args.parent_cpu_time_us,
    );
    let mut controller = Controller::new(&args.id, max_vcpus, filters);
    let mut vm = None;
    if args.config_file.is_some() || args.kernel.is_some() {
        // The file's logger was applied above, with the flags taking precedence.
        vm_config.logger = None;
        // A `snapshot-load` file restores; any other boots.
        let boots = vm_config.snapshot_load.is_none();
        for action in actions_from_config(vm_config)
            .into_iter()
            .chain(boots.then_some(VmmAction::StartMicroVm))
        {
            let (result, built) = controller.handle_preboot(action);
            result.map_err(action_failure)?;
            vm = built;
        }
    }
    let vm = match (vm, &api) {
        (Some(vm), _) => vm,
        (None, Some(api)) => match serve_until_start(&mut controller, api)? {
            Some(vm) => vm,
            None => return Ok(code::OK),
        },
        (None, None) => return Err(Failure::vmm("the VM was not started")),
    };
    let id = controller.id().to_string();
    match api {
        Some(api) => {
            let mut control = ApiControl { controller, api };
            finish(&id, vm, Some(&mut control))
        }
        None => finish(&id, vm, None),
    }
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
    let cfg = demo::demo_config("demo", cmdline, vcpus, max)
        .map_err(|e| Failure::input(e.to_string()))?;
    run_vm(&cfg, filters.as_ref())
}

/// One malloc arena for the whole process. glibc gives each thread an arena
/// of its own and, when one shrinks, reads /proc/sys/vm/overcommit_memory,
/// which no thread's seccomp filter allows; one arena also means less memory.
fn single_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator tunable; called before any thread
    // is spawned.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// `caisson snapshot rebase`: a diff memory file's pages onto its base, as
/// Firecracker's rebase-snap does.
fn snapshot_command(cmd: SnapshotCommand) -> Result<i32, Failure> {
    match cmd {
        SnapshotCommand::Rebase {
            base_file,
            diff_file,
        } => {
            let copied = caisson::snapshot::memory::rebase(&base_file, &diff_file)
                .map_err(Failure::input)?;
            println!(
                "{}: wrote {copied} bytes of {} onto it",
                base_file.display(),
                diff_file.display()
            );
            Ok(code::OK)
        }
    }
}

fn main() -> ExitCode {
    single_malloc_arena();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Snapshot { command }) => snapshot_command(command),
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
