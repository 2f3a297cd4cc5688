//! The controller's part of a snapshot. Restoring accepts exactly what the
//! guest can reach through the ports (so every snapshot taken restores) and
//! raises no interrupt: a byte waiting at the head of the buffer already
//! pulsed IRQ 1, and the guest's interrupt controller state holds the rest.

use serde::{Deserialize, Serialize};

use super::*;

/// One byte of the output buffer and whether it came from the AUX port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutByteState {
    pub byte: u8,
    pub aux: bool,
}

/// The PS/2 keyboard's protocol state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyboardState {
    pub scanning: bool,
    /// Three LED bits.
    pub leds: u8,
    /// Seven typematic bits.
    pub typematic: u8,
    /// Scancode set, 1 to 3.
    pub set: u8,
    /// A command waiting for its parameter byte.
    pub pending: Option<u8>,
    pub last_sent: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct I8042State {
    /// Controller RAM; byte 0 is the command byte.
    pub ram: [u8; 32],
    pub outp: u8,
    /// A controller command waiting for its data byte.
    pub pending: Option<u8>,
    pub last_was_cmd: bool,
    /// At most [`BUFFER_SIZE`] bytes, head first.
    pub out: Vec<OutByteState>,
    pub last_read: u8,
    pub xlate_break: bool,
    pub kbd: KeyboardState,
}

/// Controller commands that wait for a data byte.
fn takes_data(cmd: u8) -> bool {
    matches!(cmd, CMD_WRITE_RAM..=0x7f | CMD_WRITE_OUTP..=CMD_WRITE_AUX)
}

/// Keyboard commands that wait for a parameter byte.
fn takes_parameter(cmd: u8) -> bool {
    matches!(
        cmd,
        KBD_SET_LEDS | KBD_SCANCODE_SET | KBD_TYPEMATIC | 0xfb..=0xfd
    )
}

fn check(st: &I8042State) -> Result<(), I8042Error> {
    let bad = |field: &'static str, value: u8, reason: &'static str| {
        Err(I8042Error::State {
            field,
            value,
            reason,
        })
    };
    if st.out.len() > BUFFER_SIZE {
        return Err(I8042Error::StateBufferTooLong { len: st.out.len() });
    }
    if let Some(cmd) = st.pending.filter(|&c| !takes_data(c)) {
        return bad(
            "pending controller command",
            cmd,
            "is not one that waits for a data byte",
        );
    }
    let k = &st.kbd;
    if let Some(cmd) = k.pending.filter(|&c| !takes_parameter(c)) {
        return bad(
            "pending keyboard command",
            cmd,
            "is not one that waits for a parameter",
        );
    }
    if !(1..=3).contains(&k.set) {
        return bad("keyboard scancode set", k.set, "is not 1, 2 or 3");
    }
    if k.leds & !0x07 != 0 {
        return bad("keyboard LEDs", k.leds, "has bits beyond the three LEDs");
    }
    if k.typematic & !0x7f != 0 {
        return bad("keyboard typematic rate", k.typematic, "has bit 7 set");
    }
    Ok(())
}

impl I8042 {
    pub fn save_state(&self) -> I8042State {
        let k = &self.kbd;
        I8042State {
            ram: self.ram,
            outp: self.outp,
            pending: self.pending,
            last_was_cmd: self.last_was_cmd,
            out: self
                .out
                .iter()
                .map(|b| OutByteState {
                    byte: b.byte,
                    aux: b.aux,
                })
                .collect(),
            last_read: self.last_read,
            xlate_break: self.xlate_break,
            kbd: KeyboardState {
                scanning: k.scanning,
                leds: k.leds,
                typematic: k.typematic,
                set: k.set,
                pending: k.pending,
                last_sent: k.last_sent,
            },
        }
    }

    /// Restores `st` after checking it; on an error nothing changes. Raises
    /// no interrupt and requests no reset (an output port with the reset line
    /// low is restored as it is: the reset was requested when it was written).
    pub fn restore_state(&mut self, st: &I8042State) -> Result<(), I8042Error> {
        check(st)?;
        self.ram = st.ram;
        self.outp = st.outp;
        self.pending = st.pending;
        self.last_was_cmd = st.last_was_cmd;
        self.out.clear();
        self.out.extend(st.out.iter().map(|b| OutByte {
            byte: b.byte,
            aux: b.aux,
        }));
        self.last_read = st.last_read;
        self.xlate_break = st.xlate_break;
        let k = &st.kbd;
        self.kbd = Keyboard {
            scanning: k.scanning,
            leds: k.leds,
            typematic: k.typematic,
            set: k.set,
            pending: k.pending,
            last_sent: k.last_sent,
        };
        Ok(())
    }
}
