//! Undoing a jail: the VM's processes are killed through its cgroup, the cgroup
//! removed, image labels, owners and taps restored, the jail directory removed,
//! the MCS pair released and the state file deleted. Used by the supervising jailer when
//! the VM ends and by `caisson-jailer cleanup --id` when the jailer itself died.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::mcs::{pid_alive, McsStore};
use crate::selinux_backend::SelinuxBackend;
use crate::state::{JailState, RuntimeLock, StateError};

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
    undo_inner(state, runtime_dir, backend, None)
}

/// [`undo`], with the runtime lock already held (`Some`) or taken for the parent
/// cgroups (`None`).
fn undo_inner(
    state: &JailState,
    runtime_dir: &Path,
    backend: &dyn SelinuxBackend,
    held: Option<&RuntimeLock>,
) -> Vec<String> {
    let mut problems = Vec::new();
    match crate::cgroup::remove(&state.cgroup_leaves) {
        Ok(()) if !state.cgroup_parent.is_empty() && !state.cgroup_leaves.is_empty() => {
            // The last VM under a parent removes it, never while a start creates a
            // leaf under it (starts take the same lock).
            let taken = RuntimeLock::unless_held(held, runtime_dir, &mut problems);
            if held.is_some() || taken.is_some() {
                let depth = state.cgroup_parent.split('/').count();
                crate::cgroup::remove_empty_parents(&state.cgroup_leaves, depth);
            }
        }
        Ok(()) => {}
        Err(e) => problems.push(e.to_string()),
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
    problems.extend(crate::shared_labels::restore(
        backend,
        runtime_dir,
        state,
        held,
    ));
    problems.extend(crate::resources::restore_owners(&state.owners));
    // Before the MCS pair (and so the VM's uid) can go to another VM.
    problems.extend(crate::tap::give_back(&state.taps, state.uid, state.gid));
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

/// Undoes every record in `runtime_dir` whose jailer and VM are both gone (a
/// jailer killed with SIGKILL cannot clean up; its VM died with it through the
/// death signal). Runs under `lock`, which every start takes, so a record being
/// written by a live start is never touched. Also unbinds the network
/// namespaces that jailers now gone took from the pool
/// ([`crate::netns_pool::sweep_taken`]). Returns the ids swept and the problems
/// met.
pub fn sweep_stale(
    runtime_dir: &Path,
    backend: &dyn SelinuxBackend,
    lock: &RuntimeLock,
) -> (Vec<String>, Vec<String>) {
    let mut swept = Vec::new();
    let mut problems = Vec::new();
    // The network namespaces that jailers now gone took from the pool.
    crate::netns_pool::sweep_taken(runtime_dir, lock);
    for id in crate::state::list_ids(runtime_dir) {
        let state = match JailState::load(runtime_dir, &id) {
            Ok(s) => s,
            // A record half-written or of another version: not ours to judge.
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        if !is_stale(&state) {
            continue;
        }
        log::info!(
            "sweeping VM {id}: its jailer {} and VM {} are gone",
            state.jailer_pid,
            state.vm_pid
        );
        problems.extend(undo_inner(&state, runtime_dir, backend, Some(lock)));
        swept.push(id);
    }
    (swept, problems)
}

/// Both the jailer and the VM of `state` are gone.
fn is_stale(state: &JailState) -> bool {
    let me = std::process::id() as i32;
    if state.jailer_pid == me || (pid_alive(state.jailer_pid) && is_jailer(state.jailer_pid)) {
        return false;
    }
    // A VM outside a cgroup (rootless) cannot be told from a reused pid: alive
    // counts as alive.
    let vm_alive = state.vm_pid > 0
        && pid_alive(state.vm_pid)
        && (state.cgroup_leaves.is_empty() || belongs_to(state));
    !vm_alive
}

/// `caisson-jailer cleanup --stale`.
pub fn cleanup_stale(
    runtime_dir: &Path,
    backend: &dyn SelinuxBackend,
) -> Result<Vec<String>, CleanupError> {
    let lock = RuntimeLock::take(runtime_dir)?;
    let (swept, problems) = sweep_stale(runtime_dir, backend, &lock);
    if problems.is_empty() {
        Ok(swept)
    } else {
        Err(CleanupError::Partial {
            id: format!("the stale records ({})", swept.join(", ")),
            count: problems.len(),
            problems: problems.join("; "),
        })
    }
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
