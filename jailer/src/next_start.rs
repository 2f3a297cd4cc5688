//! What a running VM's jailer prepares for the next start (profile `[ahead]`):
//! the exec file's next private copy ([`crate::exec_copy::copy_ahead`]) and the
//! next empty network namespace ([`crate::netns_pool::make_next`]). On one
//! thread at idle priority, started after the VMM's exec and a settle time, so
//! that it takes no time a VM wants; the jailer joins it when the VM ends (a
//! jailer killed first takes an unfinished copy, still unnamed, with it).

use std::path::PathBuf;

/// What to prepare.
#[derive(Debug, Clone, Default)]
pub struct Next {
    /// The exec file and the directory its copy goes in.
    pub exec_copy: Option<(PathBuf, PathBuf)>,
    /// The runtime directory whose slot gets the namespace.
    pub netns: Option<PathBuf>,
}

impl Next {
    /// Nothing to prepare.
    pub fn is_empty(&self) -> bool {
        self.exec_copy.is_none() && self.netns.is_none()
    }
}

/// The thread preparing the next start; [`Preparing::finish`] once the VM ended.
#[derive(Debug)]
pub struct Preparing {
    handle: std::thread::JoinHandle<()>,
    vm_ended: Option<std::sync::mpsc::Sender<()>>,
}

impl Preparing {
    /// The VM ended: prepare now if the thread still waits for the start to
    /// settle, and wait for it (its unfinished copy would die with the jailer).
    pub fn finish(mut self) {
        drop(self.vm_ended.take());
        if self.handle.join().is_err() {
            log::warn!("preparing the next start panicked");
        }
    }
}

/// Starts preparing `next` once `settle` has passed or the VM ended, whichever
/// is first: until the VM's own start is past, its work is what the CPUs are
/// for (the preparation is kernel work, and a CPU busy in the kernel delays the
/// RCU and SRCU grace periods that the VMM's KVM set-up waits for). Call only
/// once no fork or clone follows: a child could inherit a lock the thread
/// holds. Problems are logged, never fatal (the next start then does the work
/// itself).
pub fn prepare(next: Next, settle: std::time::Duration) -> Option<Preparing> {
    if next.is_empty() {
        return None;
    }
    let (vm_ended, ended) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("next-start".into())
        .spawn(move || {
            // Either outcome (timeout, or the sender dropped) means: go.
            let _ = ended.recv_timeout(settle);
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: `param` is a valid sched_param; pid 0 is the calling
            // thread, the only one whose policy this changes.
            if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
                log::debug!(
                    "next start prepared at normal priority: {}",
                    std::io::Error::last_os_error()
                );
            }
            // The namespace first: it is the smaller job, and the thread ends in it.
            if let Some(runtime_dir) = next.netns {
                if let Err(e) = crate::netns_pool::make_next(&runtime_dir) {
                    log::warn!("the next start's network namespace: {e}");
                }
            }
            if let Some((src, dir)) = next.exec_copy {
                if let Err(e) = crate::exec_copy::copy_ahead(&src, &dir) {
                    log::warn!("the exec file's copy for the next start: {e}");
                }
            }
        });
    match spawned {
        Ok(handle) => Some(Preparing {
            handle,
            vm_ended: Some(vm_ended),
        }),
        Err(e) => {
            log::warn!("cannot start preparing the next start: {e}");
            None
        }
    }
}
