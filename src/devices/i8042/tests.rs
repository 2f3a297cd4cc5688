use super::*;

struct Rig {
    dev: I8042,
    irq: EventFd,
    exit: Arc<ExitSignal>,
}

fn rig() -> Rig {
    let exit = Arc::new(ExitSignal::new().unwrap());
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let dev = I8042::new(exit.clone(), irq.try_clone().unwrap());
    Rig { dev, irq, exit }
}

impl Rig {
    fn cmd(&mut self, c: u8) {
        self.dev.write(STATUS, &[c]);
    }
    fn data(&mut self, b: u8) {
        self.dev.write(DATA, &[b]);
    }
    fn inb(&mut self, offset: u64) -> u8 {
        let mut b = [0u8];
        self.dev.read(offset, &mut b);
        b[0]
    }
    /// Everything in the output buffer, read as Linux's i8042_flush reads it.
    fn drain(&mut self) -> Vec<u8> {
        let mut v = vec![];
        while self.inb(STATUS) & STR_OBF != 0 && v.len() <= BUFFER_SIZE {
            v.push(self.inb(DATA));
        }
        v
    }
    /// How many times IRQ 1 was pulsed since the last call.
    fn irqs(&self) -> u64 {
        self.irq.read().unwrap_or(0)
    }
    /// i8042_command: a controller command, its parameters, its replies.
    fn command(&mut self, c: u8, params: &[u8]) -> Vec<u8> {
        self.cmd(c);
        params.iter().for_each(|&p| self.data(p));
        self.drain()
    }
    /// ps2_command: a keyboard command and its parameters, each answered.
    fn kbd(&mut self, c: u8, params: &[u8]) -> Vec<u8> {
        let mut v = vec![];
        for b in std::iter::once(c).chain(params.iter().copied()) {
            self.data(b);
            v.extend(self.drain());
        }
        v
    }
}

const NONE: [u8; 0] = [];

#[test]
fn linux_controller_probe() {
    let mut r = rig();
    // i8042_controller_check: nothing to flush; no keylock, POST passed.
    assert_eq!(r.inb(STATUS), STR_KEYLOCK | STR_SYS);
    // Self-test, and the status says the last write was a command.
    r.cmd(CMD_SELF_TEST);
    assert_eq!(r.inb(STATUS) & (STR_OBF | STR_CMDDAT), STR_OBF | STR_CMDDAT);
    assert_eq!(r.inb(DATA), SELF_TEST_OK);
    assert_eq!(r.inb(STATUS) & STR_OBF, 0);
    // i8042_controller_init: two identical CTR reads, then the CTR written
    // back with the keyboard disabled and its interrupt off.
    assert_eq!(r.command(0x20, &[]), [CTR_DEFAULT]);
    assert_eq!(r.command(0x20, &[]), [CTR_DEFAULT]);
    let ctr = (CTR_DEFAULT | CTR_KBDDIS) & !CTR_KBDINT;
    assert_eq!(r.command(0x60, &[ctr]), NONE);
    assert_eq!(r.inb(STATUS) & STR_CMDDAT, 0);
    assert_eq!(r.command(0x20, &[]), [ctr]);
    assert_eq!(r.command(CMD_KBD_TEST, &[]), [INTERFACE_OK]);
    assert_eq!(r.command(CMD_AUX_TEST, &[]), [INTERFACE_OK]);
    // Port enable/disable commands move the CTR bits.
    r.cmd(CMD_KBD_ENABLE);
    r.cmd(CMD_AUX_DISABLE);
    assert_eq!(r.command(0x20, &[]), [(ctr & !CTR_KBDDIS) | CTR_AUXDIS]);
    r.cmd(CMD_KBD_DISABLE);
    r.cmd(CMD_AUX_ENABLE);
    assert_eq!(r.command(0x20, &[]), [ctr]);
    // i8042_enable_kbd_port.
    assert_eq!(r.command(0x60, &[CTR_DEFAULT]), NONE);
    assert_eq!(r.command(0x20, &[]), [CTR_DEFAULT]);
    // Other RAM bytes, the output port, an unknown command.
    assert_eq!(r.command(0x65, &[0x5a]), NONE);
    assert_eq!(r.command(0x25, &[]), [0x5a]);
    assert_eq!(r.command(CMD_READ_OUTP, &[]), [OUTP_RESET | OUTP_A20]);
    r.cmd(CMD_A20_OFF);
    assert_eq!(r.command(CMD_READ_OUTP, &[]), [OUTP_RESET]);
    assert_eq!(r.command(CMD_WRITE_OUTP, &[0xdf]), NONE);
    assert_eq!(r.command(CMD_READ_OUTP, &[]), [0xdf]);
    assert_eq!(r.command(0xc0, &[]), NONE);
    assert_eq!(r.exit.reason(), None);
}

#[test]
fn aux_loopback_is_flagged_and_mux_is_absent() {
    let mut r = rig();
    // i8042_set_mux_mode: the third loop byte comes back unchanged: no MUX.
    for b in [0xf0, 0x56, 0xa4] {
        r.cmd(CMD_WRITE_AUX_OBUF);
        r.data(b);
        let aux = STR_OBF | STR_AUXDATA;
        assert_eq!(r.inb(STATUS) & aux, aux);
        assert_eq!(r.drain(), [b]);
        assert_eq!(r.inb(STATUS) & aux, 0);
    }
    // IRQ 12 is not wired; bytes for the absent AUX device vanish.
    assert_eq!(r.irqs(), 0);
    assert_eq!(r.command(CMD_WRITE_AUX, &[0xff]), NONE);
}

#[test]
fn atkbd_probe_sequence() {
    let mut r = rig();
    assert_eq!(r.kbd(KBD_RESET, &[]), [ACK, BAT_OK]);
    assert_eq!(r.kbd(KBD_GET_ID, &[]), [ACK, 0xab, 0x83]);
    assert_eq!(r.kbd(KBD_DISABLE, &[]), [ACK]);
    assert!(!r.dev.kbd.scanning);
    // atkbd_select_set: the extended commands are refused.
    assert_eq!(r.kbd(0xea, &[0x71]), [NAK, NAK]);
    assert_eq!(r.kbd(0xe8, &[]), [NAK]);
    // atkbd_reset_state, atkbd_set_leds, atkbd_activate.
    assert_eq!(r.kbd(KBD_SET_LEDS, &[0]), [ACK, ACK]);
    assert_eq!(r.kbd(KBD_TYPEMATIC, &[0]), [ACK, ACK]);
    assert_eq!(r.dev.kbd.typematic, 0);
    assert_eq!(r.kbd(KBD_SET_LEDS, &[0x07]), [ACK, ACK]);
    assert_eq!(r.dev.kbd.leds, 0x07);
    assert_eq!(r.kbd(KBD_ENABLE, &[]), [ACK]);
    assert!(r.dev.kbd.scanning);
    // Scancode sets, echo, resend, defaults, set-3 key types, junk.
    assert_eq!(r.kbd(KBD_SCANCODE_SET, &[0]), [ACK, ACK, 2]);
    assert_eq!(r.kbd(KBD_SCANCODE_SET, &[3]), [ACK, ACK]);
    assert_eq!(r.kbd(KBD_SCANCODE_SET, &[0]), [ACK, ACK, 3]);
    assert_eq!(r.kbd(KBD_SCANCODE_SET, &[9]), [ACK, NAK]);
    assert_eq!(r.kbd(KBD_ECHO, &[]), [KBD_ECHO]);
    assert_eq!(r.kbd(KBD_RESEND, &[]), [KBD_ECHO]);
    assert_eq!(r.kbd(KBD_DEFAULTS, &[]), [ACK]);
    assert_eq!(r.dev.kbd.typematic, TYPEMATIC_DEFAULT);
    assert_eq!(r.kbd(0xfa, &[]), [ACK]);
    assert_eq!(r.kbd(0xfb, &[0x14]), [ACK, ACK]);
    assert_eq!(r.kbd(0x00, &[]), [NAK]);
    // Reset brings set 2 and the LEDs off back.
    assert_eq!(r.kbd(KBD_RESET, &[]), [ACK, BAT_OK]);
    assert_eq!((r.dev.kbd.set, r.dev.kbd.leds), (2, 0));
}

#[test]
fn irq_follows_the_interrupt_enable_bit() {
    let mut r = rig();
    // On by default: one pulse for the ACK at the head.
    r.data(KBD_ENABLE);
    assert_eq!(r.irqs(), 1);
    assert_eq!(r.inb(DATA), ACK);
    assert_eq!(r.irqs(), 0);
    // Several bytes: a pulse for the first, one after each read leaving more.
    r.data(KBD_GET_ID);
    assert_eq!(r.irqs(), 1);
    for (byte, more) in [(ACK, 1), (0xab, 1), (0x83, 0)] {
        assert_eq!(r.inb(DATA), byte);
        assert_eq!(r.irqs(), more);
    }
    // Controller replies raise it too, as on hardware.
    r.cmd(0x20);
    assert_eq!(r.irqs(), 1);
    // Interrupt off: data waits, the status says so, no pulse.
    r.cmd(0x60);
    r.data(CTR_DEFAULT & !CTR_KBDINT);
    r.data(KBD_RESET);
    assert_eq!(r.inb(STATUS) & STR_OBF, STR_OBF);
    assert_eq!(r.inb(DATA), ACK);
    assert_eq!(r.irqs(), 0);
    // Turning it on with data waiting raises it; rewriting it does not.
    r.command(0x60, &[CTR_DEFAULT]);
    assert_eq!(r.irqs(), 1);
    assert_eq!(r.command(0x60, &[CTR_DEFAULT]), NONE);
    assert_eq!(r.irqs(), 0);
}

#[test]
fn reset_line_ends_the_vm() {
    for (cmd, param) in [(0xfe, None), (0xf0, None), (CMD_WRITE_OUTP, Some(0x02))] {
        let mut r = rig();
        // Pulses that leave bit 0 alone, and output port values with it set.
        r.cmd(0xff);
        r.cmd(0xf1);
        r.command(CMD_WRITE_OUTP, &[0x03]);
        assert_eq!(r.exit.reason(), None);
        r.cmd(cmd);
        param.into_iter().for_each(|p| r.data(p));
        assert_eq!(r.exit.reason(), Some(ExitReason::GuestReset));
        assert_eq!(ExitReason::GuestReset.exit_code(), 0);
    }
}

#[test]
fn ctrl_alt_del_in_set_2() {
    let mut r = rig();
    r.dev.trigger_ctrl_alt_del().unwrap();
    assert_eq!(r.irqs(), 1);
    assert_eq!(r.drain(), CAD_SET2);
    // Re-raised after each read that left bytes behind.
    assert_eq!(r.irqs(), CAD_SET2.len() as u64 - 1);
}

#[test]
fn translation_applies_to_keyboard_bytes_only() {
    let mut r = rig();
    r.command(0x60, &[CTR_DEFAULT | CTR_XLATE]);
    assert_eq!(r.kbd(KBD_GET_ID, &[]), [ACK, 0xab, 0x41]);
    assert_eq!(r.kbd(KBD_SCANCODE_SET, &[0]), [ACK, ACK, 0x41]);
    assert_eq!(r.command(CMD_WRITE_KBD_OBUF, &[0x83]), [0x83]);
    r.dev.trigger_ctrl_alt_del().unwrap();
    assert_eq!(r.drain(), CAD_SET1);
    // Untranslated, in the keyboard's own sets 3 and 1.
    r.command(0x60, &[CTR_DEFAULT]);
    for (set, codes) in [(3, CAD_SET3), (1, CAD_SET1)] {
        r.kbd(KBD_SCANCODE_SET, &[set]);
        r.dev.trigger_ctrl_alt_del().unwrap();
        assert_eq!(r.drain(), codes);
    }
}

#[test]
fn ctrl_alt_del_errors() {
    let mut r = rig();
    // Not enough room: nothing is queued.
    for i in 0..10 {
        r.cmd(CMD_WRITE_KBD_OBUF);
        r.data(i);
    }
    let err = r.dev.trigger_ctrl_alt_del().unwrap_err();
    assert!(matches!(
        err,
        I8042Error::BufferFull {
            needed: 11,
            free: 6
        }
    ));
    assert!(err.to_string().contains("room for 6 bytes"));
    assert_eq!(r.drain().len(), 10);
    // Interrupt off: queued, no pulse.
    r.command(0x60, &[0]);
    r.irqs();
    r.dev.trigger_ctrl_alt_del().unwrap();
    assert_eq!(r.irqs(), 0);
    assert_eq!(r.drain(), CAD_SET2);
    // The guest disabled the keyboard interface, or the keyboard.
    r.cmd(CMD_KBD_DISABLE);
    let err = r.dev.trigger_ctrl_alt_del().unwrap_err();
    assert!(matches!(
        err,
        I8042Error::KeyboardDisabled { ctr: 0x10, .. }
    ));
    r.cmd(CMD_KBD_ENABLE);
    r.kbd(KBD_DISABLE, &[]);
    assert!(r.dev.trigger_ctrl_alt_del().is_err());
    r.kbd(KBD_ENABLE, &[]);
    r.dev.trigger_ctrl_alt_del().unwrap();
}

#[test]
fn empty_reads_and_odd_accesses_are_harmless() {
    let mut r = rig();
    assert_eq!([r.inb(DATA), r.inb(DATA)], [0, 0]);
    r.data(KBD_ECHO);
    // Once empty, port 0x60 keeps the last byte, as the output register would.
    assert_eq!([r.inb(DATA), r.inb(DATA)], [KBD_ECHO, KBD_ECHO]);
    let mut wide = [0x11u8; 2];
    r.dev.read(DATA, &mut wide);
    assert_eq!(wide, [0, 0]);
    r.dev.write(STATUS, &[0xfe, 0xfe]);
    r.dev.write(STATUS, &[]);
    r.dev.write(2, &[0xfe]);
    assert_eq!(r.inb(3), 0);
    assert_eq!(r.exit.reason(), None);
    assert_eq!(r.irqs(), 1);
}

#[test]
fn floods_stay_bounded() {
    let mut r = rig();
    // The guest never reads: D2/D3 bytes pile up to the buffer size, then drop.
    for i in 0..10_000u32 {
        r.cmd(CMD_WRITE_KBD_OBUF);
        r.data(i as u8);
        r.cmd(CMD_WRITE_AUX_OBUF);
        r.data(i as u8);
        assert!(r.dev.out.len() <= BUFFER_SIZE);
    }
    // Every byte value to both ports in a pseudo-random order, never read,
    // leaving out the ones that reset.
    let mut x: u32 = 0x1234_5678;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let b = (x >> 8) as u8;
        if x & 1 == 0 {
            r.data(b);
        } else if b != CMD_WRITE_OUTP && (b < CMD_PULSE || b & 1 == 1) {
            r.cmd(b);
        }
        assert!(r.dev.out.len() <= BUFFER_SIZE && r.dev.out.capacity() < 64);
    }
    assert_eq!(r.exit.reason(), None);
    assert!(r.drain().len() <= BUFFER_SIZE);
}

/// A controller with translation on, data and AUX bytes queued, a keyboard
/// command waiting for its parameter and a controller command for its data.
fn busy() -> Rig {
    let mut r = rig();
    r.command(CMD_WRITE_RAM, &[CTR_KBDINT | CTR_SYS | CTR_XLATE]);
    r.kbd(KBD_TYPEMATIC, &[0x20]);
    r.data(KBD_SET_LEDS);
    r.cmd(CMD_WRITE_KBD_OBUF);
    r.data(0x99);
    r.cmd(CMD_WRITE_AUX_OBUF);
    r.data(0x77);
    r.cmd(CMD_WRITE_OUTP);
    r.irqs();
    r
}

#[test]
fn state_round_trip_keeps_the_buffer_and_pending_commands() {
    let mut a = busy();
    let saved = a.dev.save_state();
    assert_eq!(saved.out.len(), 3, "{saved:?}");
    assert_eq!(saved.pending, Some(CMD_WRITE_OUTP));
    assert_eq!(saved.kbd.pending, Some(KBD_SET_LEDS));
    let bytes = postcard::to_allocvec(&saved).unwrap();
    let decoded: I8042State = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(decoded, saved);

    let mut b = rig();
    b.dev.restore_state(&decoded).unwrap();
    assert_eq!(b.irqs(), 0, "restore raised no interrupt");
    assert_eq!(b.dev.save_state(), saved);
    assert_eq!(b.inb(STATUS), a.inb(STATUS));
    assert_eq!(b.drain(), a.drain());
    // Both pending commands complete as they would have.
    b.data(OUTP_RESET | OUTP_A20);
    assert_eq!(b.command(CMD_READ_OUTP, &[]), [OUTP_RESET | OUTP_A20]);
    assert_eq!(b.kbd(0x04, &[]), [ACK], "the LED parameter");
    assert_eq!(b.dev.kbd.leds, 0x04);
    b.irqs();
    b.dev.trigger_ctrl_alt_del().unwrap();
    assert_eq!(b.irqs(), 1);
    assert_eq!(b.exit.reason(), None);
}

type Mutation = fn(&mut I8042State);

#[test]
fn hostile_states_are_refused_and_change_nothing() {
    let cases: [(&str, Mutation); 6] = [
        ("holds 17 bytes, more than 16", |s| {
            s.out = vec![
                OutByteState {
                    byte: 0,
                    aux: false
                };
                17
            ]
        }),
        ("pending controller command 0x20 is not", |s| {
            s.pending = Some(0x20)
        }),
        ("pending keyboard command 0xf4 is not", |s| {
            s.kbd.pending = Some(0xf4)
        }),
        ("scancode set 0x04 is not 1, 2 or 3", |s| s.kbd.set = 4),
        ("keyboard LEDs 0x08", |s| s.kbd.leds = 8),
        ("typematic rate 0x80", |s| s.kbd.typematic = 0x80),
    ];
    let good = busy().dev.save_state();
    let mut r = rig();
    let before = r.dev.save_state();
    for (want, mutate) in cases {
        let mut bad = good.clone();
        mutate(&mut bad);
        let err = r.dev.restore_state(&bad).unwrap_err().to_string();
        assert!(err.contains(want), "{err:?} should say {want:?}");
        assert_eq!(r.dev.save_state(), before);
    }
    let mut full = good.clone();
    full.out = vec![
        OutByteState {
            byte: 1,
            aux: false
        };
        BUFFER_SIZE
    ];
    r.dev.restore_state(&full).unwrap();
    assert!(r.dev.trigger_ctrl_alt_del().is_err(), "no room");
    assert_eq!(r.drain().len(), BUFFER_SIZE);
}
