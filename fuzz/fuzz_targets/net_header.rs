//! virtio-net header handling on TX: whatever the guest puts in the header, the
//! tap gets a zeroed header and the frame unchanged, or nothing.
#![no_main]

use caisson::devices::virtio::net::{rx_header, tx_frame, MAX_FRAME};
use caisson::devices::virtio::tap::VNET_HDR_LEN;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = tx_frame(data) {
        assert!(data.len() <= MAX_FRAME);
        assert_eq!(out.len(), data.len());
        assert!(out[..VNET_HDR_LEN].iter().all(|b| *b == 0));
        assert_eq!(&out[VNET_HDR_LEN..], &data[VNET_HDR_LEN..]);
    }
    assert_eq!(rx_header()[10], 1);
});
