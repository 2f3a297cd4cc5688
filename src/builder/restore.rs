//! The restore: the boot's ordered construction, with a snapshot's state in
//! place of the kernel, the firmware tables and the boot registers.

use std::path::Path;

use super::{build_core, finish, new_vcpu, open_kvm, vcpu_kit, BuildError};
use crate::config::ValidConfig;
use crate::devices::lock;
use crate::snapshot::state::MicrovmState;
use crate::snapshot::{kvm_state, memory as snapmem};
use crate::vm::{self, Vm};

fn restore_err(what: impl Into<String>, reason: impl std::fmt::Display) -> BuildError {
    BuildError::Restore {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// Checks the state against the configuration it is restored with, before
/// anything is built from it.
fn check_shape(state: &MicrovmState, cfg: &ValidConfig) -> Result<(), BuildError> {
    if state.vcpus.len() != usize::from(cfg.vcpu_count) {
        return Err(restore_err(
            "the vCPUs",
            format!(
                "the snapshot holds {} vCPU states for a {}-vCPU machine",
                state.vcpus.len(),
                cfg.vcpu_count
            ),
        ));
    }
    let want = crate::memory::ram_ranges(cfg.mem_size_mib << 20);
    let have: Vec<(u64, u64)> = state
        .memory
        .regions
        .iter()
        .map(|r| (r.guest_addr, r.size))
        .collect();
    let want: Vec<(u64, u64)> = want.iter().map(|(a, l)| (a.0, *l)).collect();
    if have != want {
        return Err(restore_err(
            "guest memory",
            format!(
                "the snapshot's regions {have:x?} are not those of {} MiB of RAM {want:x?}",
                cfg.mem_size_mib
            ),
        ));
    }
    Ok(())
}

/// Builds the VM saved in `state`, its RAM mapped private from `mem_file`
/// and its devices made from `cfg` (this process's paths, with the load's
/// overrides). The vCPUs are spawned, confined and waiting: the caller either
/// starts the VM or marks it paused.
pub fn restore_vm(
    state: &MicrovmState,
    cfg: &ValidConfig,
    mem_file: &Path,
    seccomp: Option<&crate::seccomp::Filters>,
) -> Result<Vm, BuildError> {
    vm::block_stop_signals()?;
    check_shape(state, cfg)?;
    let kvm = open_kvm()?;
    let mem = snapmem::map_private(mem_file, &state.memory)
        .map_err(crate::snapshot::SnapshotError::from)?;
    let core = build_core(cfg, kvm, mem)?;

    lock(&core.serial)
        .restore_state(&state.devices.serial)
        .map_err(|e| restore_err("the serial port", e))?;
    lock(&core.i8042)
        .restore_state(&state.devices.i8042)
        .map_err(|e| restore_err("the i8042", e))?;
    if state.devices.virtio.len() != core.virtio.by_id.len() {
        return Err(restore_err(
            "the virtio devices",
            format!(
                "the snapshot has {} and the configuration {}",
                state.devices.virtio.len(),
                core.virtio.by_id.len()
            ),
        ));
    }
    for entry in &state.devices.virtio {
        let dev = core
            .virtio
            .by_id
            .iter()
            .find(|(id, d)| **id == entry.id && lock(d).device().device_type() == entry.device_type)
            .map(|(_, d)| d)
            .ok_or_else(|| {
                restore_err(
                    format!("virtio device {:?}", entry.id),
                    format!(
                        "the configuration has no device of type {} with that id",
                        entry.device_type
                    ),
                )
            })?;
        lock(dev)
            .restore_state(&entry.mmio)
            .map_err(|e| restore_err(format!("virtio device {:?}", entry.id), e))?;
    }

    let kit = vcpu_kit(&core.kvm)?;
    let mut handles = Vec::with_capacity(state.vcpus.len());
    for (index, vcpu_state) in (0u8..).zip(&state.vcpus) {
        let v = new_vcpu(&core, &kit, index)?;
        v.restore(vcpu_state)?;
        handles.push(v.spawn(seccomp.cloned())?);
    }
    kvm_state::restore_vm(&core.vm, &state.vm).map_err(|e| restore_err("the VM", e))?;
    // The queues' pending requests and the vsock reset are served once the
    // devices are on the event loop.
    for (_, d) in &core.virtio.by_id {
        lock(d).kick_after_restore();
    }
    finish(cfg, core, kit, handles, seccomp)
}
