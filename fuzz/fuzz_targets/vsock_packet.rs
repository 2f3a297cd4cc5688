//! The vsock packet parser: a TX packet (header + payload) from the guest, and
//! the host's CONNECT line.
#![no_main]

use caisson::devices::virtio::vsock::packet::{
    parse_connect, parse_tx, Header, HDR_LEN, MAX_PAYLOAD,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::decode(data) {
        assert_eq!(Header::decode(&h.encode()).ok(), Some(h));
    }
    if let Ok((h, payload)) = parse_tx(data, 3) {
        assert_eq!(payload.len(), h.len as usize);
        assert!(h.len <= MAX_PAYLOAD);
        assert!(HDR_LEN + payload.len() <= data.len());
    }
    if let Some(port) = parse_connect(data) {
        let digits = data
            .strip_prefix(b"CONNECT ")
            .and_then(|d| d.strip_suffix(b"\n"))
            .expect("CONNECT <digits>\\n");
        assert!(digits.iter().all(u8::is_ascii_digit));
        assert_eq!(
            std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse().ok()),
            Some(port)
        );
    }
});
