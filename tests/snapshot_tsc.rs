//! A snapshot taken where the vCPUs' TSC ran at another frequency: the state
//! file is rewritten (through the library's own format, so it stays valid)
//! with a TSC frequency 1 MHz off this host's, and the restore sets it with
//! KVM_SET_TSC_KHZ, says so, and the guest goes on counting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use caisson::snapshot::{format, state::MicrovmState};
use common::snapshot::*;
use common::tempdir;

#[test]
fn a_snapshot_from_another_tsc_frequency_is_scaled_on_restore() {
    let work = tempdir();
    let snap = Snapshot::at(work.path(), "tsc");
    let mut v = boot_api("snap-tsc", "snapcount", "", false, None);
    wait_count(&mut v, 50);
    pause(&v);
    create_ok(&v, "Full", &snap);
    let old = kill(v);

    let mut state: MicrovmState = format::decode(&std::fs::read(&snap.state).unwrap()).unwrap();
    let host = state.vcpus[0]
        .tsc_khz
        .expect("KVM reports the TSC frequency here");
    let other = host + 1000;
    for vcpu in &mut state.vcpus {
        vcpu.tsc_khz = Some(other);
    }
    std::fs::write(&snap.state, format::encode(&state).unwrap()).unwrap();

    let mut r = restore("snap-tsc2", &snap, true);
    let (cut, _) = last_count(&old);
    let new = wait_count(&mut r, cut + 100);
    assert_continues(&old, &new);
    let log = r.stderr();
    assert!(
        log.contains(&format!("runs at {other} kHz, this host's at {host} kHz")),
        "the restore did not scale the TSC: {log}"
    );
}
