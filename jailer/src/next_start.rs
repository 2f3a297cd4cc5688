//! What a running VM's jailer prepares for the next start (profile `[ahead]`):
//! the exec file's next private copy ([`crate::exec_copy::copy_ahead`]) and the
//! next empty network namespace ([`crate::netns_pool::make_next`]). On one
//! detached thread at idle priority, so that it takes no time a VM wants; it
//! dies with the jailer (an unfinished copy, still unnamed, with it).

use std::path::PathBuf;

/// What to prepare.
#[derive(Debug, Clone, Default)]
pub struct Next {
    /// The exec file and the directory its copy goes in.
    pub exec_copy: Option<(PathBuf, PathBuf)>,
    /// The runtime directory whose slot gets the namespace.
    pub netns: Option<PathBuf>,
}

/// Starts preparing `next`. Call only once no fork or clone follows: a child
/// could inherit a lock the thread holds. Problems are logged, never fatal
/// (the next start then does the work itself).
pub fn prepare(next: Next) {
    if next.exec_copy.is_none() && next.netns.is_none() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("next-start".into())
        .spawn(move || {
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
    if let Err(e) = spawned {
        log::warn!("cannot start preparing the next start: {e}");
    }
}
