use super::testing::*;
use super::*;
use crate::devices::virtio::chain::testing as ct;
use crate::devices::virtio::rng::Rng;

fn rng_device() -> MmioDevice {
    MmioDevice::new("test-rng".into(), Box::new(Rng::new()), ct::memory()).unwrap()
}

#[test]
fn identity_registers() {
    let mut d = rng_device();
    assert_eq!(rd(&mut d, r::MAGIC_VALUE), 0x7472_6976);
    assert_eq!(rd(&mut d, r::VERSION), 2);
    assert_eq!(rd(&mut d, r::DEVICE_ID), 4);
    wr(&mut d, r::DEVICE_FEATURES_SEL, 1);
    assert_eq!(rd(&mut d, r::DEVICE_FEATURES), 1, "VERSION_1 is bit 32");
    wr(&mut d, r::QUEUE_SEL, 0);
    assert_eq!(rd(&mut d, r::QUEUE_NUM_MAX), 256);
    wr(&mut d, r::QUEUE_SEL, 5);
    assert_eq!(rd(&mut d, r::QUEUE_NUM_MAX), 0);
}

#[test]
fn negotiation_and_reset() {
    let mut d = rng_device();
    bring_up(&mut d, VIRTIO_F_VERSION_1, 16);
    assert_eq!(rd(&mut d, r::STATUS), 0xf);
    wr(&mut d, r::STATUS, 0);
    assert_eq!(rd(&mut d, r::STATUS), 0);
    wr(&mut d, r::QUEUE_SEL, 0);
    assert_eq!(rd(&mut d, r::QUEUE_READY), 0);
}

#[test]
fn legacy_only_driver_is_refused() {
    let mut d = rng_device();
    wr(&mut d, r::STATUS, s::ACKNOWLEDGE | s::DRIVER);
    wr(&mut d, r::DRIVER_FEATURES, 0);
    wr(
        &mut d,
        r::STATUS,
        s::ACKNOWLEDGE | s::DRIVER | s::FEATURES_OK,
    );
    assert_eq!(rd(&mut d, r::STATUS) & s::FEATURES_OK, 0);
    // Unoffered feature bits are refused too.
    wr(&mut d, r::DRIVER_FEATURES_SEL, 1);
    wr(&mut d, r::DRIVER_FEATURES, 1 | 2);
    wr(
        &mut d,
        r::STATUS,
        s::ACKNOWLEDGE | s::DRIVER | s::FEATURES_OK,
    );
    assert_eq!(rd(&mut d, r::STATUS) & s::FEATURES_OK, 0);
}

#[test]
fn queue_size_not_power_of_two_needs_reset() {
    let mut d = rng_device();
    negotiate(&mut d, VIRTIO_F_VERSION_1);
    wr(&mut d, r::QUEUE_SEL, 0);
    wr(&mut d, r::QUEUE_NUM, 100);
    assert_ne!(rd(&mut d, r::STATUS) & s::DEVICE_NEEDS_RESET, 0);
    assert_eq!(rd(&mut d, r::INTERRUPT_STATUS) & 2, 2, "config interrupt");
    assert_eq!(d.irqfd().read().unwrap(), 1);
    // Nothing but a reset is accepted now; the reset clears it.
    wr(&mut d, r::STATUS, 0xf);
    assert_ne!(rd(&mut d, r::STATUS) & s::DEVICE_NEEDS_RESET, 0);
    wr(&mut d, r::STATUS, 0);
    assert_eq!(rd(&mut d, r::STATUS), 0);
    bring_up(&mut d, VIRTIO_F_VERSION_1, 16);
    assert_eq!(rd(&mut d, r::STATUS), 0xf);
    // Too big is refused the same way.
    negotiate(&mut d, VIRTIO_F_VERSION_1);
    wr(&mut d, r::QUEUE_NUM, 512);
    assert_ne!(rd(&mut d, r::STATUS) & s::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn ring_outside_memory_needs_reset() {
    let mut d = rng_device();
    negotiate(&mut d, VIRTIO_F_VERSION_1);
    wr(&mut d, r::QUEUE_NUM, 16);
    wr(&mut d, r::QUEUE_DESC_LOW, 0xd000_0000);
    wr(&mut d, r::QUEUE_DRIVER_LOW, ct::AVAIL_RING as u32);
    wr(&mut d, r::QUEUE_DEVICE_LOW, ct::USED_RING as u32);
    wr(&mut d, r::QUEUE_READY, 1);
    assert_ne!(rd(&mut d, r::STATUS) & s::DEVICE_NEEDS_RESET, 0);
    assert_eq!(rd(&mut d, r::QUEUE_READY), 0);
}

#[test]
fn misaligned_ring_needs_reset() {
    let mut d = rng_device();
    negotiate(&mut d, VIRTIO_F_VERSION_1);
    wr(&mut d, r::QUEUE_DESC_LOW, 0x1008);
    assert_ne!(rd(&mut d, r::STATUS) & s::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn notify_before_driver_ok_is_ignored() {
    let mem = ct::memory();
    let mut d = MmioDevice::new("test-rng".into(), Box::new(Rng::new()), mem.clone()).unwrap();
    wr(&mut d, r::QUEUE_NOTIFY, 0);
    assert!(d.queue_eventfds()[0].read().is_err(), "no work queued");
    // The ioeventfd path: the event loop sees the notification, ignores it.
    d.queue_eventfds()[0].write(1).unwrap();
    run_notified(&mut d);
    assert_eq!(ct::used(&mem, 0).0, 0, "nothing completed");
    assert!(d.warnings() >= 2);
    assert_eq!(rd(&mut d, r::STATUS), 0, "not a fault");
}

#[test]
fn config_access_outside_the_space_is_ignored() {
    let mut d = rng_device();
    let before = d.warnings();
    let mut b = [0xffu8; 4];
    d.read(r::CONFIG, &mut b);
    assert_eq!(b, [0; 4], "rng has no config space");
    d.write(r::CONFIG + 0x10, &[1, 2, 3, 4]);
    d.read(0xffc, &mut b);
    assert_eq!(b, [0; 4]);
    assert_eq!(d.warnings(), before + 3);
    assert_eq!(rd(&mut d, r::STATUS), 0);
}

#[test]
fn narrow_register_access_is_ignored() {
    let mut d = rng_device();
    let mut b = [0xffu8; 2];
    d.read(r::MAGIC_VALUE, &mut b);
    assert_eq!(b, [0, 0]);
    d.write(r::STATUS, &[1]);
    assert_eq!(rd(&mut d, r::STATUS), 0);
}

#[test]
fn interrupt_ack_clears_bits() {
    let mut d = rng_device();
    d.interrupt.signal_used();
    d.interrupt.signal_config();
    assert_eq!(rd(&mut d, r::INTERRUPT_STATUS), 3);
    wr(&mut d, r::INTERRUPT_ACK, 1);
    assert_eq!(rd(&mut d, r::INTERRUPT_STATUS), 2);
}

#[test]
fn looping_chain_needs_reset_and_reset_recovers() {
    let mem = ct::memory();
    let mut d = MmioDevice::new("test-rng".into(), Box::new(Rng::new()), mem.clone()).unwrap();
    bring_up(&mut d, VIRTIO_F_VERSION_1, 16);
    ct::write_desc(&mem, 0, ct::DATA, 64, ct::F_WRITE | ct::F_NEXT, 1);
    ct::write_desc(&mem, 1, ct::DATA, 64, ct::F_WRITE | ct::F_NEXT, 0);
    ct::publish(&mem, &[0]);
    wr(&mut d, r::QUEUE_NOTIFY, 0);
    run_notified(&mut d);
    assert_ne!(rd(&mut d, r::STATUS) & s::DEVICE_NEEDS_RESET, 0);
    assert_eq!(ct::used(&mem, 0).0, 0);
    // Further notifications do nothing until the reset.
    wr(&mut d, r::QUEUE_NOTIFY, 0);
    run_notified(&mut d);
    assert_eq!(ct::used(&mem, 0).0, 0);
    // After a reset, a valid request is served.
    mem.write_obj(0u16, vm_memory::GuestAddress(ct::AVAIL_RING + 2))
        .unwrap();
    bring_up(&mut d, VIRTIO_F_VERSION_1, 16);
    ct::write_chain(&mem, 0, &[(ct::DATA, 64, true)]);
    ct::publish(&mem, &[0]);
    wr(&mut d, r::QUEUE_NOTIFY, 0);
    run_notified(&mut d);
    assert_eq!(ct::used(&mem, 0), (1, 0, 64));
}
use vm_memory::Bytes;
