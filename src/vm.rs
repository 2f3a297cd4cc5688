//! The running VM: the main-thread event loop (event-manager), the vCPU threads,
//! and an orderly stop that yields the exit reason.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use event_manager::{
    EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberId, SubscriberOps,
};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::i8042::I8042;
use crate::devices::lock;
use crate::devices::serial::{FdInput, Feed, SerialDevice};
use crate::devices::virtio::mmio::MmioDevice;
use crate::devices::virtio::DeviceUpdate;
use crate::exit::{ExitReason, ExitSignal};
use crate::vcpu::{PauseControl, VcpuHandle};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("the event loop failed: {0:?}")]
    EventLoop(event_manager::Error),
    #[error("cannot create the event loop: {0:?}")]
    EventManager(event_manager::Error),
    #[error("cannot set up signal handling: {0}")]
    Signals(nix::Error),
    #[error("the VM is already {0}")]
    AlreadyInState(&'static str),
    #[error("vCPU pause timed out: {parked} of {total} vCPUs stopped within {ms} ms")]
    PauseTimeout {
        parked: usize,
        total: usize,
        ms: u128,
    },
    #[error("the i8042 cannot take the key sequence: {0}")]
    Keyboard(String),
    #[error("no device with id {0:?}")]
    NoDevice(String),
    #[error("{id}: the update failed: {reason}")]
    Update { id: String, reason: String },
    #[error("the microVM must be paused first")]
    NotPaused,
    #[error("{0}")]
    Snapshot(String),
}

/// How long a pause may take before it is reported as failed.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(2);

pub type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// The signals that stop the VM cleanly.
pub fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

/// Blocks the stop signals in the calling thread; threads spawned after this
/// inherit the mask, so only the event loop's signalfd receives them.
pub fn block_stop_signals() -> Result<(), VmError> {
    stop_signals().thread_block().map_err(VmError::Signals)
}

/// Wakes the event loop when any thread requests the VM's end.
struct ExitWaker(Arc<ExitSignal>);

impl MutEventSubscriber for ExitWaker {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(self.0.eventfd(), EventSet::IN)) {
            log::error!("cannot watch the exit eventfd: {e:?}");
        }
    }
    fn process(&mut self, _: Events, _: &mut EventOps) {
        let _ = self.0.eventfd().read();
    }
}

/// Turns SIGTERM/SIGINT/SIGHUP into a clean stop.
struct SignalWatcher {
    fd: SignalFd,
    exit: Arc<ExitSignal>,
}

impl MutEventSubscriber for SignalWatcher {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.fd, EventSet::IN)) {
            log::error!("cannot watch the signalfd: {e:?}");
        }
    }
    fn process(&mut self, _: Events, _: &mut EventOps) {
        if let Ok(Some(info)) = self.fd.read_signal() {
            let signo = i32::try_from(info.ssi_signo).unwrap_or(0);
            log::info!("received signal {signo}, stopping the VM");
            if signo == libc::SIGHUP {
                crate::metrics::METRICS.signals.sighup.store(1);
            }
            self.exit.request(ExitReason::Signal(signo));
        }
    }
}

/// Feeds stdin to the serial port. On a terminal, input is passed through raw
/// (no line editing, no echo) while the VM runs, as Firecracker does; Ctrl-C
/// still stops the VMM.
///
/// Stdin is read unbuffered, straight from fd 0 (bytes in std's own stdin
/// buffer would be invisible to epoll), and only as fast as the guest drains
/// the UART's receive FIFO: while the FIFO is full stdin is taken off the
/// event loop (its bytes stay in the pipe or terminal), and it is watched
/// again once the guest has read the FIFO empty (the serial's input-drained
/// eventfd).
struct SerialInput {
    serial: Arc<Mutex<SerialDevice>>,
    drained: Arc<EventFd>,
    /// Stdin is off the loop until the FIFO drains.
    paused: bool,
    /// Stdin ended (or cannot be polled): it is never watched again.
    ended: bool,
    saved_termios: Option<nix::sys::termios::Termios>,
}

impl SerialInput {
    fn new(serial: Arc<Mutex<SerialDevice>>) -> Self {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let stdin = std::io::stdin();
        let saved_termios = tcgetattr(&stdin).ok();
        if let Some(saved) = &saved_termios {
            let mut raw = saved.clone();
            nix::sys::termios::cfmakeraw(&mut raw);
            raw.local_flags |= LocalFlags::ISIG;
            if let Err(e) = tcsetattr(&stdin, SetArg::TCSANOW, &raw) {
                log::warn!("cannot put the terminal in raw mode: {e}");
            }
        }
        let drained = lock(&serial).input_drained();
        Self {
            serial,
            drained,
            paused: false,
            ended: false,
            saved_termios,
        }
    }

    fn stdin_events() -> Events {
        Events::new_raw(std::io::stdin().as_raw_fd(), EventSet::IN)
    }
}

impl Drop for SerialInput {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved_termios {
            let stdin = std::io::stdin();
            let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, saved);
        }
    }
}

impl MutEventSubscriber for SerialInput {
    fn init(&mut self, ops: &mut EventOps) {
        // Not pollable (a regular file, /dev/null): the guest simply gets no input.
        if let Err(e) = ops.add(Self::stdin_events()) {
            log::debug!("serial input disabled: stdin cannot be polled: {e:?}");
            self.ended = true;
            return;
        }
        if let Err(e) = ops.add(Events::new(&*self.drained, EventSet::IN)) {
            log::error!("cannot watch the serial input-drained eventfd: {e:?}");
        }
    }
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.drained.as_raw_fd() {
            let _ = self.drained.read();
            if self.paused && !self.ended {
                match ops.add(Self::stdin_events()) {
                    Ok(()) => self.paused = false,
                    Err(e) => log::warn!("cannot watch stdin again: {e:?}"),
                }
            }
            return;
        }
        // Unbuffered: bytes left in std's stdin buffer would be invisible to epoll.
        let fed = lock(&self.serial).feed_input(&mut FdInput(std::io::stdin()));
        match fed {
            Feed::Queued(_) => {}
            Feed::Full => {
                // Level-triggered: leaving stdin on the loop would spin.
                let _ = ops.remove(Self::stdin_events());
                self.paused = true;
            }
            Feed::End => {
                let _ = ops.remove(Self::stdin_events());
                self.ended = true;
            }
        }
    }
}

/// Wakes the event loop when a control request (the API) is pending; the
/// request itself is taken by the [`Control`] after the loop returns.
struct ControlWaker(EventFd);

impl MutEventSubscriber for ControlWaker {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.0, EventSet::IN)) {
            log::error!("cannot watch the control eventfd: {e:?}");
        }
    }
    fn process(&mut self, _: Events, _: &mut EventOps) {
        let _ = self.0.read();
    }
}

/// What drives a running VM from outside (the API controller): called on the
/// event-loop thread whenever its waker fired.
pub trait Control {
    /// The eventfd that is written when requests are pending, for the event
    /// loop to watch. Made before the VM's seccomp filter is in place (which
    /// forbids dup), and handed over once.
    fn take_waker(&mut self) -> Option<EventFd>;
    fn handle_pending(&mut self, vm: &mut Vm);
}

/// Whether the vCPUs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Paused,
}

/// What the builder hands to [`Vm::new`].
pub struct VmParts {
    pub vcpus: Vec<VcpuHandle>,
    pub exit: Arc<ExitSignal>,
    pub stop: Arc<AtomicBool>,
    pub pause: Arc<PauseControl>,
    pub parked: Receiver<u8>,
    pub serial_input: Option<Arc<Mutex<SerialDevice>>>,
    pub i8042: Arc<Mutex<I8042>>,
    /// The serial port, for snapshots.
    pub serial: Arc<Mutex<SerialDevice>>,
    /// The virtio devices by drive_id / iface_id, for post-boot updates.
    pub virtio: Vec<(String, Arc<Mutex<MmioDevice>>)>,
    /// Held for the VM's lifetime: KVM state and guest RAM.
    pub resources: VmResources,
}

/// The VM fd and guest RAM, dropped after the vCPUs are joined.
pub struct VmResources {
    pub vm: kvm_ioctls::VmFd,
    pub memory: crate::memory::GuestMemoryMmap,
    /// Whether the memory slots log dirty pages (`track_dirty_pages`).
    pub track_dirty: bool,
}

pub struct Vm {
    vcpus: Vec<VcpuHandle>,
    exit: Arc<ExitSignal>,
    stop: Arc<AtomicBool>,
    pause: Arc<PauseControl>,
    parked: Receiver<u8>,
    state: RunState,
    events: EventManager<Subscriber>,
    /// Device subscribers on the event loop while running.
    device_ids: Vec<SubscriberId>,
    /// Device subscribers taken off the loop while paused.
    parked_devices: Vec<Subscriber>,
    i8042: Arc<Mutex<I8042>>,
    serial: Arc<Mutex<SerialDevice>>,
    virtio: Vec<(String, Arc<Mutex<MmioDevice>>)>,
    // Held for the VM's lifetime: KVM state and guest RAM.
    resources: VmResources,
}

impl Vm {
    /// Sets up the event loop for a VM whose vCPUs are spawned but paused.
    pub fn new(parts: VmParts) -> Result<Self, VmError> {
        let VmParts {
            vcpus,
            exit,
            stop,
            pause,
            parked,
            serial_input,
            i8042,
            serial,
            virtio,
            resources,
        } = parts;
        let mut events = EventManager::<Subscriber>::new().map_err(VmError::EventManager)?;
        events.add_subscriber(Arc::new(Mutex::new(ExitWaker(exit.clone()))));
        let fd = SignalFd::with_flags(
            &stop_signals(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )
        .map_err(VmError::Signals)?;
        events.add_subscriber(Arc::new(Mutex::new(SignalWatcher {
            fd,
            exit: exit.clone(),
        })));
        if let Some(serial) = serial_input {
            events.add_subscriber(Arc::new(Mutex::new(SerialInput::new(serial))));
        }
        Ok(Self {
            vcpus,
            exit,
            stop,
            pause,
            parked,
            state: RunState::Running,
            events,
            device_ids: Vec::new(),
            parked_devices: Vec::new(),
            i8042,
            serial,
            virtio,
            resources,
        })
    }

    /// Adds a device's subscriber to the event loop (before [`Vm::start`]).
    /// Device subscribers are taken off the loop while the VM is paused.
    pub fn add_device_subscriber(&mut self, s: Subscriber) {
        let id = self.events.add_subscriber(s);
        self.device_ids.push(id);
    }

    /// Adds a subscriber that stays on the loop while paused (metrics, control).
    pub fn add_subscriber(&mut self, s: Subscriber) {
        self.events.add_subscriber(s);
    }

    /// Lets every vCPU run for the first time.
    pub fn start(&self) {
        for v in &self.vcpus {
            v.resume();
        }
    }

    pub fn state(&self) -> RunState {
        self.state
    }

    /// Stops every vCPU out of KVM_RUN and holds it, and takes the devices off
    /// the event loop, so the guest neither runs nor is served until
    /// [`Vm::resume`].
    pub fn pause(&mut self) -> Result<(), VmError> {
        if self.state == RunState::Paused {
            return Err(VmError::AlreadyInState("paused"));
        }
        while self.parked.try_recv().is_ok() {}
        self.pause.request(true);
        for v in &self.vcpus {
            v.kick();
        }
        let start = Instant::now();
        let mut parked = 0;
        while parked < self.vcpus.len() {
            let left = PAUSE_TIMEOUT.saturating_sub(start.elapsed());
            match self.parked.recv_timeout(left) {
                Ok(_) => parked += 1,
                Err(_) => {
                    // The vCPUs that did park wait for a resume; let them go.
                    self.pause.request(false);
                    for v in &self.vcpus {
                        v.resume();
                    }
                    return Err(VmError::PauseTimeout {
                        parked,
                        total: self.vcpus.len(),
                        ms: PAUSE_TIMEOUT.as_millis(),
                    });
                }
            }
        }
        for id in self.device_ids.drain(..) {
            match self.events.remove_subscriber(id) {
                Ok(s) => self.parked_devices.push(s),
                Err(e) => log::error!("cannot take a device off the event loop: {e:?}"),
            }
        }
        self.state = RunState::Paused;
        Ok(())
    }

    /// Puts the devices back on the event loop and lets the vCPUs run again.
    pub fn resume(&mut self) -> Result<(), VmError> {
        if self.state == RunState::Running {
            return Err(VmError::AlreadyInState("running"));
        }
        for s in std::mem::take(&mut self.parked_devices) {
            let id = self.events.add_subscriber(s);
            self.device_ids.push(id);
        }
        self.pause.request(false);
        for v in &self.vcpus {
            v.resume();
        }
        self.state = RunState::Running;
        Ok(())
    }

    /// Presses Ctrl-Alt-Del on the i8042 keyboard, as Firecracker does.
    pub fn send_ctrl_alt_del(&self) -> Result<(), VmError> {
        lock(&self.i8042)
            .trigger_ctrl_alt_del()
            .map_err(|e| VmError::Keyboard(e.to_string()))
    }

    /// Applies a post-boot update to the virtio device `id` of type `device_type`
    /// (PATCH /drives, PATCH /network-interfaces).
    pub fn update_device(
        &self,
        device_type: u32,
        id: &str,
        update: DeviceUpdate,
    ) -> Result<(), VmError> {
        let dev = self
            .virtio
            .iter()
            .find(|(i, d)| i == id && lock(d).device().device_type() == device_type)
            .map(|(_, d)| d)
            .ok_or_else(|| VmError::NoDevice(id.to_string()))?;
        lock(dev).update(update).map_err(|e| VmError::Update {
            id: id.to_string(),
            reason: e.to_string(),
        })
    }

    /// The VM fd, guest memory and whether dirty pages are logged.
    pub fn resources(&self) -> &VmResources {
        &self.resources
    }

    /// The state of every vCPU, each read on its own thread. Only while paused.
    pub fn save_vcpus(&self) -> Result<Vec<crate::snapshot::state::VcpuState>, VmError> {
        if self.state != RunState::Paused {
            return Err(VmError::NotPaused);
        }
        self.vcpus
            .iter()
            .map(|v| v.save_state().map_err(|e| VmError::Snapshot(e.to_string())))
            .collect()
    }

    /// The devices' state. Only while paused (no vCPU or event touches them).
    pub fn save_devices(&self) -> Result<crate::snapshot::state::DevicesState, VmError> {
        if self.state != RunState::Paused {
            return Err(VmError::NotPaused);
        }
        Ok(crate::snapshot::state::DevicesState {
            serial: lock(&self.serial).save_state(),
            i8042: lock(&self.i8042).save_state(),
            virtio: self
                .virtio
                .iter()
                .map(|(id, d)| {
                    let d = lock(d);
                    crate::snapshot::state::VirtioEntry {
                        id: id.clone(),
                        device_type: d.device().device_type(),
                        mmio: d.save_state(),
                    }
                })
                .collect(),
        })
    }

    /// Marks a VM built from a snapshot, whose vCPUs were never let run, as
    /// paused: a later resume lets them run. Its devices are on the loop but
    /// idle; they are taken off as in a pause.
    pub fn set_restored_paused(&mut self) {
        for id in self.device_ids.drain(..) {
            match self.events.remove_subscriber(id) {
                Ok(s) => self.parked_devices.push(s),
                Err(e) => log::error!("cannot take a device off the event loop: {e:?}"),
            }
        }
        self.state = RunState::Paused;
    }

    /// Asks the VM to end as if it had received `reason`.
    pub fn request_exit(&self, reason: ExitReason) {
        self.exit.request(reason);
    }

    /// Runs the event loop until the VM ends, then stops and joins the vCPUs.
    /// With a `control`, its waker is watched and it runs whenever that fires.
    pub fn run(mut self, mut control: Option<&mut dyn Control>) -> Result<ExitReason, VmError> {
        if let Some(waker) = control.as_mut().and_then(|c| c.take_waker()) {
            self.events
                .add_subscriber(Arc::new(Mutex::new(ControlWaker(waker))));
        }
        let reason = loop {
            if let Some(r) = self.exit.reason() {
                break r;
            }
            let dispatched = self.events.run().map_err(VmError::EventLoop)?;
            crate::metrics::METRICS
                .vmm
                .device_events
                .add(dispatched as u64);
            if let Some(c) = control.as_mut() {
                c.handle_pending(&mut self);
            }
        };
        self.stop_vcpus();
        Ok(reason)
    }

    /// Stops every vCPU out of KVM_RUN and joins its thread. Idempotent.
    fn stop_vcpus(&mut self) {
        self.stop.store(true, Ordering::Release);
        for v in &self.vcpus {
            v.kick();
        }
        for v in self.vcpus.drain(..) {
            v.join();
        }
    }
}

impl Drop for Vm {
    /// Guest memory and the VM fd (in `_resources`) are dropped after this
    /// returns, so no vCPU can still be running on them, whatever the caller did
    /// (an event-loop error, a VM never run).
    fn drop(&mut self) {
        self.stop_vcpus();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;
    use std::time::Duration;

    use crate::config::VmConfig;

    fn vcpu_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|c| c.trim_end().starts_with("fc_vcpu"))
            .count()
    }

    #[test]
    fn dropping_a_running_vm_stops_and_joins_its_vcpus() {
        // The demo guest waits for serial input forever, so its vCPUs are running.
        let json = serde_json::json!({
            "boot-source": {
                "kernel_image_path": format!("{}/demo.elf", crate::demo::GUEST_BUILD_DIR),
                "boot_args": "console=ttyS0 caisson.demo_wait",
            },
            "machine-config": {"vcpu_count": 2, "mem_size_mib": 32},
            "caisson": {"serial": "none"},
        });
        let cfg = VmConfig::from_json(&json.to_string())
            .expect("config")
            .validate("drop-test", 2)
            .expect("valid");
        let (done_tx, done) = channel();
        // The builder blocks the stop signals in its thread; keep that out of the
        // test harness's thread.
        std::thread::spawn(move || {
            let vm = crate::builder::build_vm(&cfg, None).expect("build the VM");
            std::thread::sleep(Duration::from_millis(200));
            let running = vcpu_threads();
            drop(vm);
            let _ = done_tx.send((running, vcpu_threads()));
        });
        let (running, after) = done
            .recv_timeout(Duration::from_secs(30))
            .expect("dropping the VM returned");
        assert_eq!(running, 2, "both vCPU threads ran");
        assert_eq!(after, 0, "no vCPU thread outlives the VM");
    }
}
