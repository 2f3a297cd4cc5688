//! Undoing a jail: the VM's processes are killed through its cgroup, the cgroup
//! removed, image labels and owners restored, the jail directory removed, the MCS
//! pair released and the state file deleted. Used by the supervising jailer when
//! the VM ends and by `caisson-jailer cleanup --id` when the jailer itself died.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::mcs::{pid_alive, McsStore};
use crate::selinux_backend::SelinuxBackend;
use crate::state::{JailState, StateError};

/// A cleanup that could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cleanup of {id} left {count} problem(s): {problems}")]
    Partial {
        id: String,
        count: usize,
        problems: String,
    },
}

/// Undoes everything recorded in `state`; returns the problems met (each step is tried).
pub fn undo(state: &JailState, runtime_dir: &Path, backend: &dyn SelinuxBackend) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = crate::cgroup::remove(&state.cgroup_leaves) {
        problems.push(e.to_string());
    }
    // Outside a cgroup (or if it could not be emptied), kill the VM directly when
    // the pid still belongs to this VM's cgroup.
    if state.vm_pid > 0 && pid_alive(state.vm_pid) && belongs_to(state) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(state.vm_pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid_alive(state.vm_pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for e in crate::labels::restore(backend, &state.image_labels) {
        problems.push(e.to_string());
    }
    problems.extend(crate::resources::restore_owners(&state.owners));
    if state.firecracker_mode {
        // The jail root is the orchestrator's: only the jailer's own files go.
        problems.extend(crate::fcmode::remove_created(&state.created_in_jail));
    } else if let Err(e) = crate::jailfs::remove_jail_dir(&state.jail_dir, &state.id) {
        problems.push(e.to_string());
    }
    if let Err(e) = McsStore::new(&runtime_dir.join("mcs")).release(&state.id) {
        problems.push(e.to_string());
    }
    if let Err(e) = JailState::remove(runtime_dir, &state.id) {
        problems.push(e.to_string());
    }
    problems
}

fn belongs_to(state: &JailState) -> bool {
    std::fs::read_to_string(format!("/proc/{}/cgroup", state.vm_pid))
        .map(|t| t.lines().any(|l| l.ends_with(&format!("/{}", state.id))))
        .unwrap_or(false)
}

/// `caisson-jailer cleanup --id`: asks a live jailer to stop its VM (it cleans up
/// itself); if the jailer is dead or does not finish in time, cleans up directly.
pub fn cleanup_id(
    id: &str,
    runtime_dir: &Path,
    backend: &dyn SelinuxBackend,
) -> Result<(), CleanupError> {
    let state = JailState::load(runtime_dir, id)?;
    let me = std::process::id() as i32;
    if state.jailer_pid != me && pid_alive(state.jailer_pid) && is_jailer(state.jailer_pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(state.jailer_pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + crate::supervise::GRACE + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !crate::state::path_for(runtime_dir, id).exists() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let problems = undo(&state, runtime_dir, backend);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CleanupError::Partial {
            id: id.to_string(),
            count: problems.len(),
            problems: problems.join("; "),
        })
    }
}

fn is_jailer(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().starts_with("caisson-jailer"))
        .unwrap_or(false)
}
