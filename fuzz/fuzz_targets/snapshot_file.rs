//! The snapshot reader: a state file from an untrusted place (another host,
//! a shared store) must be refused with an error, never panic, whatever its
//! bytes. Framing, checksum and postcard decoding of the whole state, then
//! the embedded configuration's parse, as a load does them.
#![no_main]

use caisson::snapshot::{format, state::MicrovmState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Raw bytes through the whole reader (almost all fail the checksum).
    let _ = format::decode::<MicrovmState>(data);
    // The same bytes as a payload in a valid frame, so the decoder itself is
    // reached: re-frame them with the right magic, version, length and CRC.
    let framed = frame(data);
    if let Ok(state) = format::decode::<MicrovmState>(&framed) {
        let _ = caisson::config::VmConfig::from_json(&state.config_json);
        let _ = state.memory.total();
    }
});

fn frame(payload: &[u8]) -> Vec<u8> {
    const CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_ECMA_182);
    let mut f = Vec::with_capacity(payload.len() + 26);
    f.extend_from_slice(&format::MAGIC);
    f.extend_from_slice(&format::VERSION.to_le_bytes());
    f.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    f.extend_from_slice(payload);
    let crc = CRC.checksum(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}
