//! Saving and restoring the transport, with virtio-rng behind it.

use super::*;
use crate::devices::bus::BusDevice;
use crate::devices::virtio::block::BlockState;
use crate::devices::virtio::chain::testing as ct;
use crate::devices::virtio::mmio::testing::*;
use crate::devices::virtio::registers as r;
use crate::devices::virtio::rng::Rng;
use crate::memory::GuestMemoryMmap;

fn rng(mem: &GuestMemoryMmap) -> MmioDevice {
    MmioDevice::new("test-rng".into(), Box::new(Rng::new()), mem.clone()).unwrap()
}

/// A running rng whose request 0 is posted but not yet served.
fn running() -> (GuestMemoryMmap, MmioDevice) {
    let mem = ct::memory();
    let mut d = rng(&mem);
    bring_up(&mut d, VIRTIO_F_VERSION_1, 16);
    run_notified(&mut d);
    ct::write_chain(&mem, 0, &[(ct::DATA, 64, true)]);
    ct::publish(&mem, &[0]);
    (mem, d)
}

/// The registers a driver can read.
fn registers(d: &mut MmioDevice) -> Vec<u32> {
    let mut v = Vec::new();
    for sel in 0..2 {
        wr(d, r::DEVICE_FEATURES_SEL, sel);
        v.push(rd(d, r::DEVICE_FEATURES));
    }
    wr(d, r::QUEUE_SEL, 0);
    for off in [
        r::DEVICE_ID,
        r::QUEUE_NUM_MAX,
        r::QUEUE_NUM,
        r::QUEUE_READY,
        r::INTERRUPT_STATUS,
        r::STATUS,
        r::CONFIG_GENERATION,
    ] {
        v.push(rd(d, off));
    }
    v
}

/// Serves one rng request at descriptor `head` (slot `slot`) and checks it.
fn serves(mem: &GuestMemoryMmap, d: &mut MmioDevice, head: u16) {
    ct::write_chain(mem, head, &[(ct::DATA, 64, true)]);
    let heads: Vec<u16> = (0..=head).collect();
    ct::publish(mem, &heads);
    wr(d, r::QUEUE_NOTIFY, 0);
    run_notified(d);
    assert_eq!(ct::used(mem, head), (head + 1, u32::from(head), 64));
}

#[test]
fn round_trip_keeps_registers_and_serves_the_pending_request_once() {
    let (mem, mut d) = running();
    d.interrupt.signal_config();
    d.config_generation = 7;
    let _ = d.irqfd().read();
    let saved = d.save_state();
    let bytes = postcard::to_allocvec(&saved).unwrap();
    let decoded: MmioState = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(decoded, saved);

    let mem2 = copy_memory(&mem);
    let mut fresh = rng(&mem2);
    clear_dirty(&mem2);
    fresh.restore_state(&decoded).unwrap();
    assert!(!any_dirty(&mem2), "restore wrote guest memory");
    assert!(fresh.irqfd().read().is_err(), "restore raised no interrupt");
    assert!(
        fresh.queue_eventfds()[0].read().is_err(),
        "nothing kicked yet"
    );
    assert_eq!(fresh.save_state(), saved);
    assert_eq!(registers(&mut fresh), registers(&mut d));

    fresh.kick_after_restore();
    run_notified(&mut fresh);
    assert_eq!(ct::used(&mem2, 0), (1, 0, 64), "served after the kick");
    fresh.kick_after_restore();
    run_notified(&mut fresh);
    assert_eq!(ct::used(&mem2, 0).0, 1, "and only once");
    serves(&mem2, &mut fresh, 1);
    assert!(any_dirty(&mem2), "the bitmap does see device writes");
}

#[test]
fn a_device_the_driver_had_not_started_is_not_kicked() {
    let mem = ct::memory();
    let mut d = rng(&mem);
    negotiate(&mut d, VIRTIO_F_VERSION_1);
    let saved = d.save_state();
    let mut fresh = rng(&mem);
    fresh.restore_state(&saved).unwrap();
    fresh.kick_after_restore();
    assert!(fresh.queue_eventfds()[0].read().is_err());
    assert_eq!(rd(&mut fresh, r::STATUS), 0xb);
    // The driver goes on where it was.
    wr(&mut fresh, r::QUEUE_NUM, 16);
    wr(&mut fresh, r::QUEUE_DESC_LOW, ct::DESC_TABLE as u32);
    wr(&mut fresh, r::QUEUE_DRIVER_LOW, ct::AVAIL_RING as u32);
    wr(&mut fresh, r::QUEUE_DEVICE_LOW, ct::USED_RING as u32);
    wr(&mut fresh, r::QUEUE_READY, 1);
    wr(&mut fresh, r::STATUS, 0xf);
    run_notified(&mut fresh);
    serves(&mem, &mut fresh, 0);
}

#[test]
fn a_broken_device_stays_broken_until_reset() {
    let (mem, mut d) = running();
    ct::write_desc(&mem, 0, ct::DATA, 64, ct::F_WRITE | ct::F_NEXT, 0);
    wr(&mut d, r::QUEUE_NOTIFY, 0);
    run_notified(&mut d);
    assert_ne!(d.device_status() & s::DEVICE_NEEDS_RESET, 0);
    let saved = d.save_state();
    let mut fresh = rng(&mem);
    fresh.restore_state(&saved).unwrap();
    fresh.kick_after_restore();
    assert!(fresh.queue_eventfds()[0].read().is_err(), "not live");
    assert_eq!(fresh.device_status(), d.device_status());
}

#[test]
fn the_driver_cannot_set_undefined_status_bits() {
    let mut d = rng(&ct::memory());
    wr(
        &mut d,
        r::STATUS,
        s::ACKNOWLEDGE | 0x100 | s::DEVICE_NEEDS_RESET,
    );
    assert_eq!(rd(&mut d, r::STATUS), s::ACKNOWLEDGE);
}

type Mutation = fn(&mut MmioState);

#[test]
fn hostile_states_are_refused_and_the_device_stays_usable() {
    let cases: &[(&str, Mutation)] = &[
        ("has 0 queues, the device has 1", |s| {
            s.queues.clear();
        }),
        ("has 2 queues, the device has 1", |s| {
            let q = s.queues[0].clone();
            s.queues.push(q);
        }),
        ("queue 0: size 0 is not a power of two in 1..=256", |s| {
            s.queues[0].size = 0
        }),
        ("queue 0: size 3 is not a power of two", |s| {
            s.queues[0].size = 3
        }),
        ("queue 0: size 512 is not a power of two in 1..=256", |s| {
            s.queues[0].size = 512
        }),
        ("queue 0: max size 128 differs from the device's 256", |s| {
            s.queues[0].max_size = 128
        }),
        ("are not inside guest memory", |s| {
            s.queues[0].desc_table = 0xd000_0000
        }),
        ("are not inside guest memory", |s| {
            s.queues[0].used_ring = u64::MAX - 3
        }),
        ("descriptor table 0x1008 is not 16-byte aligned", |s| {
            s.queues[0].desc_table = 0x1008
        }),
        ("used ring 0x3002 is not 4-byte aligned", |s| {
            s.queues[0].used_ring = 0x3002
        }),
        ("event_idx is set", |s| s.queues[0].event_idx = true),
        (
            "next_avail 100 is more than the size 16 ahead of next_used 0",
            |s| s.queues[0].next_avail = 100,
        ),
        (
            "queue 0: ready while the status 0x3 lacks FEATURES_OK",
            |s| s.status = 3,
        ),
        ("status 0x10f: bits 0x100 are not defined", |s| {
            s.status = 0x10f
        }),
        ("status 0x7: DRIVER_OK without FEATURES_OK", |s| {
            s.status = 7
        }),
        ("status 0x9: FEATURES_OK without DRIVER", |s| s.status = 9),
        ("bits 0x10000000000 are not offered", |s| {
            s.driver_features |= 1 << 40
        }),
        ("VIRTIO_F_VERSION_1 is missing", |s| s.driver_features = 0),
        ("set while the status 0x1 lacks DRIVER", |s| {
            s.status = 1;
            s.queues[0].ready = false;
        }),
        ("interrupt status 0x4 has bits", |s| s.interrupt_status = 4),
        (
            "the snapshot holds virtio-blk device state for a virtio-rng device",
            |s| {
                s.device = DeviceState::Block(BlockState {
                    capacity: 8,
                    read_only: false,
                })
            },
        ),
    ];
    let (mem, d) = running();
    let good = d.save_state();
    for (want, mutate) in cases {
        let mut bad = good.clone();
        mutate(&mut bad);
        let mut fresh = rng(&mem);
        let err = fresh.restore_state(&bad).unwrap_err().to_string();
        assert!(err.contains(want), "{err:?} should say {want:?}");
        assert!(err.starts_with("test-rng: "), "{err:?} names the device");
        assert_eq!(fresh.device_status(), 0, "{want}: nothing was applied");
        assert_eq!(fresh.interrupt.status(), 0);
        // Still usable: a good state restores, or a driver can start it.
        fresh.restore_state(&good).unwrap();
        assert_eq!(fresh.save_state(), good);
    }
    let mut fresh = rng(&mem);
    assert!(fresh
        .restore_state(&{
            let mut b = good.clone();
            b.queues[0].size = 0;
            b
        })
        .is_err());
    bring_up(&mut fresh, VIRTIO_F_VERSION_1, 16);
    run_notified(&mut fresh);
    serves(&mem, &mut fresh, 0);
}

#[test]
fn unconfigured_queues_restore_with_their_defaults() {
    let mem = ct::memory();
    let d = rng(&mem);
    let saved = d.save_state();
    assert_eq!(saved.queues[0].size, 256);
    assert!(!saved.queues[0].ready);
    let mut fresh = rng(&mem);
    fresh.restore_state(&saved).unwrap();
    let mut b = [0u8; 4];
    fresh.read(r::MAGIC_VALUE, &mut b);
    assert_eq!(u32::from_le_bytes(b), r::MAGIC);
}
