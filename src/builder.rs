//! The one ordered construction: a validated config in, a running VM out.
//! Each step is one call, in the order the hardware needs it.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::memory::GuestMemoryMmap;
use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_MEM_LOG_DIRTY_PAGES,
    KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, Kvm, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::arch::x86_64::{acpi, boot, cpuid, layout, mptable, regs};
use crate::config::{SerialSink, ValidConfig};
use crate::devices::bus::{Bus, BusError};
use crate::devices::exit_port::ExitPort;
use crate::devices::i8042::I8042;
use crate::devices::serial::{SerialDevice, SerialOut};
use crate::exit::ExitSignal;
use crate::memory::{self, MemoryError};
use crate::vcpu::{self, Lifecycle, PauseControl, Vcpu, VcpuError};
use crate::vm::{self, Vm, VmError, VmParts, VmResources};

pub mod restore;
pub mod virtio_devices;

pub use restore::restore_vm;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot open /dev/kvm: {0}")]
    Kvm(kvm_ioctls::Error),
    #[error("KVM lacks the required capability {0:?}")]
    MissingCap(Cap),
    #[error("{what} failed: {source}")]
    KvmCall {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    #[error(transparent)]
    Regs(#[from] regs::RegsError),
    #[error(transparent)]
    Mptable(#[from] mptable::MptableError),
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error("cannot create an eventfd for {what}: {source}")]
    EventFd {
        what: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Virtio(#[from] virtio_devices::VirtioSetupError),
    #[error("cannot open the serial output {path}: {source}")]
    SerialOutput {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error("cannot restore {what}: {reason}")]
    Restore { what: String, reason: String },
}

fn kvm_call<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, BuildError> {
    r.map_err(|source| BuildError::KvmCall { what, source })
}

fn eventfd(what: &'static str) -> Result<EventFd, BuildError> {
    EventFd::new(libc::EFD_NONBLOCK).map_err(|source| BuildError::EventFd { what, source })
}

/// Opens /dev/kvm and checks the capabilities the VMM relies on.
pub fn open_kvm() -> Result<Kvm, BuildError> {
    let kvm = Kvm::new().map_err(BuildError::Kvm)?;
    for cap in [
        Cap::Irqchip,
        Cap::Ioeventfd,
        Cap::Irqfd,
        Cap::ImmediateExit,
        Cap::Pit2,
        Cap::UserMemory,
    ] {
        if !kvm.check_extension(cap) {
            return Err(BuildError::MissingCap(cap));
        }
    }
    Ok(kvm)
}

/// The most vCPUs KVM allows; used to validate the config before building.
pub fn kvm_max_vcpus() -> Result<u64, BuildError> {
    Ok(open_kvm()?.get_max_vcpus() as u64)
}

fn register_memory(vm: &VmFd, mem: &GuestMemoryMmap, track_dirty: bool) -> Result<(), BuildError> {
    let flags = if track_dirty {
        KVM_MEM_LOG_DIRTY_PAGES
    } else {
        0
    };
    for (slot, region) in mem.iter().enumerate() {
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
            flags,
        };
        // SAFETY: the region is a live mapping of exactly `memory_size` bytes owned
        // by `mem`, which the VM keeps alive for as long as the VM fd exists.
        kvm_call("KVM_SET_USER_MEMORY_REGION", unsafe {
            vm.set_user_memory_region(r)
        })?;
    }
    Ok(())
}

fn setup_irqchip(vm: &VmFd) -> Result<(), BuildError> {
    kvm_call(
        "KVM_SET_TSS_ADDR",
        vm.set_tss_address(layout::KVM_TSS_ADDRESS as usize),
    )?;
    kvm_call("KVM_CREATE_IRQCHIP", vm.create_irq_chip())?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    kvm_call("KVM_CREATE_PIT2", vm.create_pit2(pit))
}

fn serial_output(cfg: &ValidConfig) -> Result<SerialOut, BuildError> {
    let out = plain_serial_output(&cfg.serial)?;
    Ok(match &cfg.serial_limit {
        Some(limit) => match crate::devices::serial::LimitedOut::new(out, limit) {
            Some(limited) => Box::new(limited),
            None => return plain_serial_output(&cfg.serial),
        },
        None => out,
    })
}

fn plain_serial_output(sink: &SerialSink) -> Result<SerialOut, BuildError> {
    Ok(match sink {
        SerialSink::Stdout => Box::new(std::io::stdout()),
        SerialSink::None => Box::new(std::io::sink()),
        SerialSink::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| BuildError::SerialOutput {
                    path: path.clone(),
                    source,
                })?,
        ),
    })
}

/// The legacy devices on the port I/O bus: serial (IRQ 4), i8042 (IRQ 1) and the exit port.
struct Legacy {
    pio: Bus,
    serial: Arc<Mutex<SerialDevice>>,
    i8042: Arc<Mutex<I8042>>,
}

fn setup_legacy_devices(
    vm: &VmFd,
    cfg: &ValidConfig,
    exit: &Arc<ExitSignal>,
) -> Result<Legacy, BuildError> {
    let irq = eventfd("the serial IRQ")?;
    kvm_call(
        "KVM_IRQFD (serial)",
        vm.register_irqfd(&irq, layout::SERIAL_IRQ),
    )?;
    let drained = eventfd("the serial input-drained event")?;
    let serial = Arc::new(Mutex::new(SerialDevice::new(
        irq,
        drained,
        serial_output(cfg)?,
    )));
    let mut pio = Bus::new();
    pio.insert(
        u64::from(layout::SERIAL_PORT_BASE),
        u64::from(layout::SERIAL_PORT_LEN),
        serial.clone(),
    )?;
    let kbd_irq = eventfd("the i8042 IRQ")?;
    kvm_call(
        "KVM_IRQFD (i8042)",
        vm.register_irqfd(&kbd_irq, layout::I8042_IRQ),
    )?;
    let i8042 = Arc::new(Mutex::new(I8042::new(exit.clone(), kbd_irq)));
    pio.insert(
        u64::from(layout::I8042_PORT_BASE),
        u64::from(layout::I8042_PORT_LEN),
        i8042.clone(),
    )?;
    pio.insert(
        u64::from(layout::EXIT_PORT),
        1,
        Arc::new(Mutex::new(ExitPort(exit.clone()))),
    )?;
    Ok(Legacy { pio, serial, i8042 })
}

/// The per-device metric groups (`block_<id>`, `net_<id>`, ...) for a metrics line.
pub fn device_metric_groups() -> Vec<crate::metrics::ExtraGroup> {
    crate::devices::virtio::metrics::groups()
}

/// The kernel command line: `boot_args`, then the devices' words (the root
/// device, and where each virtio device was placed unless
/// `caisson.virtio_cmdline` is false), as Firecracker's attach_* functions add
/// them. `boot::load_cmdline` refuses one that is too long.
pub fn kernel_cmdline(cfg: &ValidConfig) -> String {
    [cfg.cmdline.clone()]
        .into_iter()
        .chain(virtio_devices::cmdline_words(
            &cfg.virtio,
            cfg.virtio_cmdline,
        ))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What boot and restore share: the VM with its memory, interrupt
/// controllers, legacy and virtio devices, before any vCPU exists.
struct Core {
    kvm: Kvm,
    vm: VmFd,
    mem: GuestMemoryMmap,
    exit: Arc<ExitSignal>,
    serial: Arc<Mutex<SerialDevice>>,
    i8042: Arc<Mutex<I8042>>,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    virtio: virtio_devices::Placed,
}

/// The steps before the vCPUs, in order, on guest memory `mem` (fresh, or a
/// snapshot's mapping).
fn build_core(cfg: &ValidConfig, kvm: Kvm, mem: GuestMemoryMmap) -> Result<Core, BuildError> {
    let vm = kvm_call("KVM_CREATE_VM", kvm.create_vm())?;
    register_memory(&vm, &mem, cfg.track_dirty_pages)?;
    setup_irqchip(&vm)?;
    let exit = Arc::new(ExitSignal::new().map_err(|source| BuildError::EventFd {
        what: "the exit signal",
        source,
    })?);
    let Legacy { pio, serial, i8042 } = setup_legacy_devices(&vm, cfg, &exit)?;
    let mut mmio = Bus::new();
    let virtio = virtio_devices::setup(&vm, &mem, &cfg.virtio, &mut mmio)?;
    Ok(Core {
        kvm,
        vm,
        mem,
        exit,
        serial,
        i8042,
        pio: Arc::new(pio),
        mmio: Arc::new(mmio),
        virtio,
    })
}

/// Whether KVM's emulator runs guest kernel code here (no VMX/SVM), so that
/// CPUID must hide what it cannot run and the vCPUs complete what it cannot.
fn emulator_safe() -> bool {
    let safe = !cpuid::host_has_hardware_virtualization();
    if safe {
        log::info!(
            "host has no VMX/SVM: KVM emulates guest kernel code instruction by instruction \
             (about 1000x slower than native); hiding the CPUID features its emulator cannot \
             run and completing int3, int n and fwait in the VMM"
        );
    }
    safe
}

/// The shared vCPU plumbing.
struct VcpuKit {
    stop: Arc<AtomicBool>,
    pause: Arc<PauseControl>,
    parked: std::sync::mpsc::Receiver<u8>,
    msr_index: Arc<Vec<u32>>,
    emulator_safe: bool,
}

fn vcpu_kit(kvm: &Kvm) -> Result<VcpuKit, BuildError> {
    vcpu::install_kick_handler()?;
    crate::seccomp::install_sigsys_handler()?;
    let (pause, parked) = PauseControl::new();
    Ok(VcpuKit {
        stop: Arc::new(AtomicBool::new(false)),
        pause,
        parked,
        msr_index: Arc::new(crate::snapshot::kvm_state::saveable_msrs(kvm).map_err(|e| {
            BuildError::Restore {
                what: "the MSR list".into(),
                reason: e.to_string(),
            }
        })?),
        emulator_safe: emulator_safe(),
    })
}

fn new_vcpu(core: &Core, kit: &VcpuKit, index: u8) -> Result<Vcpu, BuildError> {
    let fd = kvm_call("KVM_CREATE_VCPU", core.vm.create_vcpu(u64::from(index)))?;
    Ok(Vcpu::new(
        index,
        fd,
        core.pio.clone(),
        core.mmio.clone(),
        Lifecycle {
            exit: core.exit.clone(),
            stop: kit.stop.clone(),
            pause: kit.pause.clone(),
        },
        kit.emulator_safe,
        kit.msr_index.clone(),
    ))
}

/// The last steps: the event loop with its subscribers, metrics, and the
/// main thread's filter. The vCPUs are spawned and waiting.
fn finish(
    cfg: &ValidConfig,
    core: Core,
    kit: VcpuKit,
    handles: Vec<vcpu::VcpuHandle>,
    seccomp: Option<&crate::seccomp::Filters>,
) -> Result<Vm, BuildError> {
    let Core {
        vm,
        mem,
        exit,
        serial,
        i8042,
        virtio,
        ..
    } = core;
    let serial_input = matches!(cfg.serial, SerialSink::Stdout).then(|| serial.clone());
    let mut vm = Vm::new(VmParts {
        vcpus: handles,
        exit,
        stop: kit.stop,
        pause: kit.pause,
        parked: kit.parked,
        serial_input,
        i8042,
        serial,
        virtio: virtio.by_id,
        resources: VmResources {
            vm,
            memory: mem,
            track_dirty: cfg.track_dirty_pages,
        },
    })?;
    for s in virtio.subscribers {
        vm.add_device_subscriber(s);
    }
    // Metrics every 60 s; the timer is armed here, before the filter forbids it.
    let periodic = crate::metrics::periodic::PeriodicFlush::new(
        crate::metrics::periodic::PERIOD,
        Box::new(device_metric_groups),
    )
    .map_err(|source| BuildError::EventFd {
        what: "the metrics timer",
        source,
    })?;
    vm.add_subscriber(Arc::new(Mutex::new(periodic)));
    // Last step before any guest code runs: confine the main thread too.
    match seccomp {
        Some(f) => f.install(crate::seccomp::ThreadKind::Vmm)?,
        None => log::warn!("seccomp is off: the VMM runs without syscall filters"),
    }
    Ok(vm)
}

/// Builds and starts the VM described by `cfg`, each thread confined by its filter
/// in `seccomp` (`None` only with `--no-seccomp`). The vCPUs run when this returns.
pub fn build_vm(
    cfg: &ValidConfig,
    seccomp: Option<&crate::seccomp::Filters>,
) -> Result<Vm, BuildError> {
    vm::block_stop_signals()?;
    let kvm = open_kvm()?;
    let mem = memory::create_guest_memory(cfg.mem_size_mib)?;
    let core = build_core(cfg, kvm, mem)?;
    let mem = &core.mem;

    let kernel = boot::load_kernel(mem, &cfg.kernel, cfg.kernel_format)?;
    let initrd = match &cfg.initrd {
        Some(path) => Some(boot::load_initrd(mem, path, kernel.end)?),
        None => None,
    };
    let cmdline_len = boot::load_cmdline(mem, &kernel_cmdline(cfg))?;

    // The firmware tables describe the vCPUs and the devices just placed; the
    // boot parameters point to the ACPI tables.
    mptable::setup(mem, cfg.vcpu_count)?;
    let rsdp = acpi::setup(mem, cfg.vcpu_count, &core.virtio.windows)?;
    // A kernel with a PVH entry is started through it, as Firecracker does.
    let ram = cfg.mem_size_mib << 20;
    let (protocol, entry) = match kernel.pvh_entry {
        Some(pvh) => {
            boot::write_pvh_start_info(mem, ram, initrd, rsdp)?;
            (regs::BootProtocol::Pvh, pvh)
        }
        None => {
            boot::write_zero_page(mem, ram, &kernel, cmdline_len, initrd, rsdp)?;
            (regs::BootProtocol::Linux64, kernel.entry)
        }
    };
    regs::write_boot_tables(mem, protocol)?;

    let supported = kvm_call(
        "KVM_GET_SUPPORTED_CPUID",
        core.kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES),
    )?;
    let kit = vcpu_kit(&core.kvm)?;
    let mut handles = Vec::with_capacity(usize::from(cfg.vcpu_count));
    for index in 0..cfg.vcpu_count {
        let v = new_vcpu(&core, &kit, index)?;
        let mut vcpu_cpuid = supported.clone();
        cpuid::normalize(
            &mut vcpu_cpuid,
            cpuid::CpuidPlan {
                vcpu_id: index,
                vcpu_count: cfg.vcpu_count,
                emulator_safe: kit.emulator_safe,
            },
        );
        v.configure(&vcpu_cpuid, entry, protocol)?;
        handles.push(v.spawn(seccomp.cloned())?);
    }
    let vm = finish(cfg, core, kit, handles, seccomp)?;
    vm.start();
    Ok(vm)
}
