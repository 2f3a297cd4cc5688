//! The i8042 keyboard controller (ports 0x60 data, 0x64 status/command) with a
//! PS/2 keyboard on its first port and nothing on its AUX port: enough for
//! Linux's i8042 and atkbd drivers to probe both without timeouts, for the guest
//! to reset the machine (0xFE to port 0x64, or the output port's reset bit), and
//! for the host to send ctrl-alt-del ([`I8042::trigger_ctrl_alt_del`]). Bytes for
//! the guest wait in one bounded FIFO; IRQ 1 is pulsed through an irqfd when
//! keyboard data reaches its head and the command byte enables the interrupt.
//! Nothing the guest sends can grow memory, panic, or reach the host but a reset.
//!
//! Sandbox: holds the IRQ 1 eventfd and writes to it (from the vCPU threads that
//! do the port I/O, and from the VMM thread for ctrl-alt-del).

use std::collections::VecDeque;
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;
use super::virtio::warn::WarnLimiter;
use super::{FdKind, FdNeed, FdOrigin, SandboxNeeds, Syscall, VMM_VCPU};
use crate::exit::{ExitReason, ExitSignal};

mod state;
pub use state::{I8042State, KeyboardState, OutByteState};

pub const SANDBOX: SandboxNeeds = SandboxNeeds {
    owner: "i8042",
    paths: &[],
    fds: &[FdNeed::new(
        FdKind::EventFd,
        FdOrigin::Created,
        "irqfd (IRQ 1)",
    )],
    syscalls: &[Syscall::new(
        "write",
        VMM_VCPU,
        "raise IRQ 1 through the irqfd (guest access on a vcpu, SendCtrlAltDel on the vmm thread)",
    )],
};

#[derive(Debug, thiserror::Error)]
pub enum I8042Error {
    #[error("i8042 output buffer has room for {free} bytes, ctrl-alt-del needs {needed}")]
    BufferFull { needed: usize, free: usize },
    #[error(
        "the guest has disabled the keyboard (command byte {ctr:#04x}, scanning enabled: {scanning})"
    )]
    KeyboardDisabled { ctr: u8, scanning: bool },
    #[error("cannot raise IRQ 1 through its eventfd: {0}")]
    Irq(#[source] std::io::Error),
    #[error("i8042 snapshot: the output buffer holds {len} bytes, more than {BUFFER_SIZE}")]
    StateBufferTooLong { len: usize },
    #[error("i8042 snapshot: {field} {value:#04x} {reason}")]
    State {
        field: &'static str,
        value: u8,
        reason: &'static str,
    },
}

/// Offsets from port 0x60.
const DATA: u64 = 0;
const STATUS: u64 = 4;

/// Status register bits.
const STR_OBF: u8 = 0x01;
const STR_SYS: u8 = 0x04;
/// The last write went to the command port (0x64) rather than the data port.
const STR_CMDDAT: u8 = 0x08;
/// Keyboard not inhibited (no keylock).
const STR_KEYLOCK: u8 = 0x10;
/// The byte at the head of the output buffer came from the AUX port.
const STR_AUXDATA: u8 = 0x20;

/// Command byte (controller RAM byte 0) bits.
const CTR_KBDINT: u8 = 0x01;
const CTR_SYS: u8 = 0x04;
const CTR_KBDDIS: u8 = 0x10;
const CTR_AUXDIS: u8 = 0x20;
const CTR_XLATE: u8 = 0x40;
/// As Firecracker's i8042 starts: keyboard interrupt on, POST passed, no
/// translation (so Linux talks scancode set 2 to the keyboard directly).
const CTR_DEFAULT: u8 = CTR_KBDINT | CTR_SYS;

/// Output port bits: bit 0 low holds the CPU in reset, bit 1 gates A20.
const OUTP_RESET: u8 = 0x01;
const OUTP_A20: u8 = 0x02;

/// Controller commands (port 0x64).
const CMD_READ_RAM: u8 = 0x20; // 0x20..=0x3f read RAM byte n (0x20: command byte)
const CMD_WRITE_RAM: u8 = 0x60; // 0x60..=0x7f write RAM byte n (0x60: command byte)
const CMD_AUX_DISABLE: u8 = 0xa7;
const CMD_AUX_ENABLE: u8 = 0xa8;
const CMD_AUX_TEST: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_KBD_DISABLE: u8 = 0xad;
const CMD_KBD_ENABLE: u8 = 0xae;
const CMD_READ_OUTP: u8 = 0xd0;
const CMD_WRITE_OUTP: u8 = 0xd1;
const CMD_WRITE_KBD_OBUF: u8 = 0xd2;
const CMD_WRITE_AUX_OBUF: u8 = 0xd3;
const CMD_WRITE_AUX: u8 = 0xd4;
const CMD_A20_OFF: u8 = 0xdd;
const CMD_A20_ON: u8 = 0xdf;
const CMD_PULSE: u8 = 0xf0; // 0xf0..=0xff pulse the output lines whose bits are 0

/// Controller replies.
const SELF_TEST_OK: u8 = 0x55;
const INTERFACE_OK: u8 = 0x00;

/// Keyboard commands and replies (port 0x60).
const KBD_SET_LEDS: u8 = 0xed;
const KBD_ECHO: u8 = 0xee;
const KBD_SCANCODE_SET: u8 = 0xf0;
const KBD_GET_ID: u8 = 0xf2;
const KBD_TYPEMATIC: u8 = 0xf3;
const KBD_ENABLE: u8 = 0xf4;
const KBD_DISABLE: u8 = 0xf5;
const KBD_DEFAULTS: u8 = 0xf6;
const KBD_RESEND: u8 = 0xfe;
const KBD_RESET: u8 = 0xff;
const ACK: u8 = 0xfa;
const NAK: u8 = 0xfe;
const BAT_OK: u8 = 0xaa;
const KBD_ID: [u8; 2] = [0xab, 0x83];
/// 10.9 characters per second after 500 ms.
const TYPEMATIC_DEFAULT: u8 = 0x2b;

/// The output FIFO's size, as Firecracker's and Linux's I8042_BUFFER_SIZE.
pub const BUFFER_SIZE: usize = 16;

/// Left ctrl, left alt and delete pressed, then released, in each scancode set.
const CAD_SET1: &[u8] = &[0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d];
const CAD_SET2: &[u8] = &[
    0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14,
];
const CAD_SET3: &[u8] = &[0x11, 0x19, 0x64, 0xf0, 0x64, 0xf0, 0x19, 0xf0, 0x11];

/// The controller's set 2 to set 1 translation, for the codes this keyboard
/// sends (the scancode-set numbers, the ID byte and ctrl, alt, delete); bytes
/// from 0x80 up pass unchanged, except the ID byte 0x83.
fn xlate(code: u8) -> u8 {
    match code {
        0x01 => 0x43,
        0x02 => 0x41,
        0x03 => 0x3f,
        0x11 => 0x38,
        0x14 => 0x1d,
        0x71 => 0x53,
        0x83 => 0x41,
        c => c,
    }
}

/// Up to three bytes a keyboard command answers with: the bytes and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reply([u8; 3], usize);

impl Reply {
    fn one(a: u8) -> Self {
        Self([a, 0, 0], 1)
    }
    fn bytes(&self) -> &[u8] {
        self.0.get(..self.1).unwrap_or(&[])
    }
}

/// A PS/2 keyboard: its command protocol, no keys of its own.
#[derive(Debug)]
struct Keyboard {
    /// Scanning enabled (0xf4) or disabled (0xf5).
    scanning: bool,
    leds: u8,
    typematic: u8,
    /// Scancode set, 1 to 3.
    set: u8,
    /// A command waiting for its parameter byte.
    pending: Option<u8>,
    /// The last byte sent, for 0xfe (resend).
    last_sent: u8,
}

impl Keyboard {
    fn new() -> Self {
        Self {
            scanning: true,
            leds: 0,
            typematic: TYPEMATIC_DEFAULT,
            set: 2,
            pending: None,
            last_sent: BAT_OK,
        }
    }

    /// Handles one byte from the host side of the cable; returns the answer.
    fn receive(&mut self, byte: u8) -> Reply {
        let reply = match self.pending.take() {
            Some(cmd) => self.parameter(cmd, byte),
            None => self.command(byte),
        };
        if let Some(&last) = reply.bytes().last() {
            self.last_sent = last;
        }
        reply
    }

    /// Applies `change` and acknowledges.
    fn ack(&mut self, change: impl FnOnce(&mut Self)) -> Reply {
        change(self);
        Reply::one(ACK)
    }

    fn command(&mut self, cmd: u8) -> Reply {
        match cmd {
            KBD_SET_LEDS | KBD_SCANCODE_SET | KBD_TYPEMATIC | 0xfb..=0xfd => {
                self.ack(|k| k.pending = Some(cmd))
            }
            KBD_ECHO => Reply::one(KBD_ECHO),
            KBD_GET_ID => Reply([ACK, KBD_ID[0], KBD_ID[1]], 3),
            KBD_ENABLE => self.ack(|k| k.scanning = true),
            KBD_DISABLE => self.ack(|k| {
                k.typematic = TYPEMATIC_DEFAULT;
                k.scanning = false;
            }),
            KBD_DEFAULTS => self.ack(|k| k.typematic = TYPEMATIC_DEFAULT),
            // Set-3 key types for all keys: accepted, every key sends make and break.
            0xf7..=0xfa => Reply::one(ACK),
            KBD_RESEND => Reply::one(self.last_sent),
            KBD_RESET => {
                *self = Self::new();
                Reply([ACK, BAT_OK, 0], 2)
            }
            // Anything else, including the extended commands (0xe8, 0xea, 0xeb)
            // Linux tries: not a command this keyboard knows.
            _ => Reply::one(NAK),
        }
    }

    fn parameter(&mut self, cmd: u8, arg: u8) -> Reply {
        match (cmd, arg) {
            (KBD_SET_LEDS, _) => self.ack(|k| k.leds = arg & 0x07),
            (KBD_TYPEMATIC, _) => self.ack(|k| k.typematic = arg & 0x7f),
            (KBD_SCANCODE_SET, 0) => Reply([ACK, self.set, 0], 2),
            (KBD_SCANCODE_SET, 1..=3) => self.ack(|k| k.set = arg),
            (KBD_SCANCODE_SET, _) => Reply::one(NAK),
            // 0xfb..=0xfd: the type of one set-3 key.
            _ => Reply::one(ACK),
        }
    }

    /// Ctrl-alt-del as this keyboard sends it in its current scancode set.
    fn ctrl_alt_del(&self) -> &'static [u8] {
        match self.set {
            1 => CAD_SET1,
            3 => CAD_SET3,
            _ => CAD_SET2,
        }
    }
}

/// Where a byte in the output buffer came from: the AUX port or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OutByte {
    byte: u8,
    aux: bool,
}

#[derive(Debug)]
pub struct I8042 {
    exit: Arc<ExitSignal>,
    irq: EventFd,
    /// Controller RAM; byte 0 is the command byte.
    ram: [u8; 32],
    outp: u8,
    /// A controller command waiting for its data byte on port 0x60.
    pending: Option<u8>,
    /// The last write went to port 0x64.
    last_was_cmd: bool,
    out: VecDeque<OutByte>,
    /// Returned when the guest reads port 0x60 with nothing in the buffer.
    last_read: u8,
    /// Translation saw a break prefix (0xf0) and waits for the code it applies to.
    xlate_break: bool,
    kbd: Keyboard,
    warn: WarnLimiter,
}

impl I8042 {
    /// `irq` is registered with KVM as the irqfd of IRQ 1; a reset requests
    /// [`ExitReason::GuestReset`] from `exit`.
    pub fn new(exit: Arc<ExitSignal>, irq: EventFd) -> Self {
        let mut ram = [0u8; 32];
        ram[0] = CTR_DEFAULT;
        Self {
            exit,
            irq,
            ram,
            outp: OUTP_RESET | OUTP_A20,
            pending: None,
            last_was_cmd: false,
            out: VecDeque::with_capacity(BUFFER_SIZE),
            last_read: 0,
            xlate_break: false,
            kbd: Keyboard::new(),
            warn: WarnLimiter::new("i8042"),
        }
    }

    fn ctr(&self) -> u8 {
        self.ram[0]
    }

    fn set_ctr(&mut self, value: u8) {
        let was = self.ctr();
        self.ram[0] = value;
        if was & CTR_KBDINT == 0 {
            // Data that waited while the interrupt was off now raises it.
            self.raise_if_pending();
        }
    }

    /// Queues ctrl-alt-del (make then break codes, in the keyboard's scancode set,
    /// translated when the guest has translation on) and raises IRQ 1 if the guest
    /// enabled it. Fails, queuing nothing, if the guest disabled the keyboard or
    /// the whole sequence does not fit in the output buffer.
    pub fn trigger_ctrl_alt_del(&mut self) -> Result<(), I8042Error> {
        let (ctr, scanning) = (self.ctr(), self.kbd.scanning);
        if ctr & CTR_KBDDIS != 0 || !scanning {
            return Err(I8042Error::KeyboardDisabled { ctr, scanning });
        }
        let codes = self.kbd.ctrl_alt_del();
        // Translation folds each break prefix into the code after it.
        let xlate = ctr & CTR_XLATE != 0;
        let needed = codes.iter().filter(|&&c| !xlate || c != 0xf0).count();
        let free = BUFFER_SIZE.saturating_sub(self.out.len());
        if needed > free {
            return Err(I8042Error::BufferFull { needed, free });
        }
        let was_empty = self.out.is_empty();
        for &c in codes {
            self.push_from_keyboard(c);
        }
        if was_empty && self.head_raises_irq() {
            self.irq.write(1).map_err(I8042Error::Irq)?;
        }
        Ok(())
    }

    /// Whether the byte at the head of the buffer makes the controller raise IRQ 1.
    fn head_raises_irq(&self) -> bool {
        self.ctr() & CTR_KBDINT != 0 && self.out.front().is_some_and(|b| !b.aux)
    }

    fn raise_if_pending(&mut self) {
        if self.head_raises_irq() {
            if let Err(e) = self.irq.write(1) {
                self.warn.warn(&format_args!("cannot raise IRQ 1: {e}"));
            }
        }
    }

    /// Appends a byte; returns false (dropping it) when the buffer is full.
    fn push(&mut self, byte: u8, aux: bool) -> bool {
        if self.out.len() >= BUFFER_SIZE {
            self.warn.warn(&format_args!(
                "output buffer full, dropped {byte:#04x} (the guest is not reading port 0x60)"
            ));
            return false;
        }
        self.out.push_back(OutByte { byte, aux });
        true
    }

    /// A byte from the keyboard, through the translation the command byte selects.
    fn push_from_keyboard(&mut self, code: u8) {
        let byte = if self.ctr() & CTR_XLATE == 0 {
            code
        } else if code == 0xf0 {
            self.xlate_break = true;
            return;
        } else if std::mem::take(&mut self.xlate_break) {
            xlate(code) | 0x80
        } else {
            xlate(code)
        };
        self.push(byte, false);
    }

    /// A controller reply replaces whatever the buffer held, as in Firecracker,
    /// so the guest's next read of port 0x60 is this reply.
    fn reply(&mut self, byte: u8) {
        self.out.clear();
        self.xlate_break = false;
        self.push(byte, false);
        self.raise_if_pending();
    }

    /// Appends a byte the guest wrote for itself (0xd2, 0xd3).
    fn push_and_raise(&mut self, byte: u8, aux: bool) {
        let was_empty = self.out.is_empty();
        if self.push(byte, aux) && was_empty {
            self.raise_if_pending();
        }
    }

    fn reset(&self) {
        crate::metrics::METRICS.i8042.reset_count.inc();
        self.exit.request(ExitReason::GuestReset);
    }

    fn status(&self) -> u8 {
        let head = self.out.front();
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        STR_KEYLOCK
            | flag(self.ctr() & CTR_SYS != 0, STR_SYS)
            | flag(head.is_some(), STR_OBF)
            | flag(head.is_some_and(|b| b.aux), STR_AUXDATA)
            | flag(self.last_was_cmd, STR_CMDDAT)
    }

    fn read_data(&mut self) -> u8 {
        if let Some(b) = self.out.pop_front() {
            self.last_read = b.byte;
            self.raise_if_pending();
        }
        self.last_read
    }

    fn command(&mut self, cmd: u8) {
        self.last_was_cmd = true;
        self.pending = None;
        match cmd {
            CMD_READ_RAM..=0x3f => self.reply(self.ram[usize::from(cmd & 0x1f)]),
            CMD_WRITE_RAM..=0x7f | CMD_WRITE_OUTP..=CMD_WRITE_AUX => self.pending = Some(cmd),
            CMD_AUX_DISABLE => self.ram[0] |= CTR_AUXDIS,
            CMD_AUX_ENABLE => self.ram[0] &= !CTR_AUXDIS,
            CMD_AUX_TEST => self.reply(INTERFACE_OK),
            CMD_SELF_TEST => {
                self.ram[0] |= CTR_SYS;
                self.reply(SELF_TEST_OK);
            }
            CMD_KBD_TEST => self.reply(INTERFACE_OK),
            CMD_KBD_DISABLE => self.ram[0] |= CTR_KBDDIS,
            CMD_KBD_ENABLE => self.ram[0] &= !CTR_KBDDIS,
            CMD_READ_OUTP => self.reply(self.outp),
            CMD_A20_OFF => self.outp &= !OUTP_A20,
            CMD_A20_ON => self.outp |= OUTP_A20,
            CMD_PULSE..=0xff if cmd & OUTP_RESET == 0 => self.reset(),
            _ => log::trace!("i8042: ignored controller command {cmd:#04x}"),
        }
    }

    fn write_data(&mut self, byte: u8) {
        self.last_was_cmd = false;
        match self.pending.take() {
            Some(CMD_WRITE_RAM) => self.set_ctr(byte),
            Some(cmd @ 0x61..=0x7f) => self.ram[usize::from(cmd & 0x1f)] = byte,
            Some(CMD_WRITE_OUTP) => {
                self.outp = byte;
                if byte & OUTP_RESET == 0 {
                    self.reset();
                }
            }
            Some(CMD_WRITE_KBD_OBUF) => self.push_and_raise(byte, false),
            // AUX loopback: the byte comes back flagged as AUX data. IRQ 12 is not
            // wired, so it raises nothing.
            Some(CMD_WRITE_AUX_OBUF) => self.push_and_raise(byte, true),
            // No AUX device is attached: the byte goes nowhere.
            Some(_) => log::trace!("i8042: byte {byte:#04x} for the absent AUX device"),
            None => self.send_to_keyboard(byte),
        }
    }

    /// A byte for the keyboard. Sending enables the keyboard interface, and the
    /// keyboard drops what it had not sent yet before it answers.
    fn send_to_keyboard(&mut self, byte: u8) {
        self.ram[0] &= !CTR_KBDDIS;
        self.out.retain(|b| b.aux);
        self.xlate_break = false;
        let was_empty = self.out.is_empty();
        let reply = self.kbd.receive(byte);
        for &b in reply.bytes() {
            self.push_from_keyboard(b);
        }
        if was_empty {
            self.raise_if_pending();
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let m = &crate::metrics::METRICS.i8042;
        let value = match (offset, data.len()) {
            (DATA, 1) => Some(self.read_data()),
            (STATUS, 1) => Some(self.status()),
            _ => None,
        };
        let count = if value.is_some() {
            &m.read_count
        } else {
            &m.missed_read_count
        };
        count.inc();
        data.fill(value.unwrap_or(0));
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let m = &crate::metrics::METRICS.i8042;
        match (offset, data) {
            (DATA, &[b]) => self.write_data(b),
            (STATUS, &[b]) => self.command(b),
            _ => {
                m.missed_write_count.inc();
                log::trace!("i8042: ignored write of {data:02x?} at offset {offset}");
                return;
            }
        }
        m.write_count.inc();
    }
}

#[cfg(test)]
mod tests;
