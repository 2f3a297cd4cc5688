//! The child's side of the jail sequence (steps 5-11): run in the cloned child,
//! from its cgroup to the exec of the VMM; it returns only on failure.

use std::convert::Infallible;
use std::ffi::CString;

use crate::cgroup::{self, CgroupPlan};
use crate::identity;
use crate::jail::{JailError, Mode, Settings};
use crate::jailfs::{self, JailPaths};
use crate::landlock_rules;
use crate::namespaces::{self, MadeNetns, Netns};
use crate::resources::Resources;
use crate::rlimits::Rlimits;
use crate::sandbox_plan::{JailMode, JailView, Plan};
use crate::selinux_backend::SelinuxBackend;
use crate::supervise;
use crate::timing as mark;

/// What the child needs.
pub(crate) struct ChildCtx<'a> {
    /// The jailer's CPU affinity, which the VM gets back (the jailer moves the
    /// child off its own CPU while both work).
    pub(crate) affinity: crate::placement::Affinity,
    pub(crate) settings: &'a Settings,
    pub(crate) cgroup: &'a CgroupPlan,
    pub(crate) res: &'a Resources,
    pub(crate) netns: Option<&'a Netns>,
    /// The jailer makes the v1 cgroup beside the child, which waits for it
    /// before it joins (`supervise::await_cgroup`).
    pub(crate) cgroup_made_beside: bool,
    /// The new network namespace made ahead of the clone (none rootless, or
    /// with `--netns`, or without a network namespace of the VM's own).
    pub(crate) made_netns: Option<&'a MadeNetns>,
    pub(crate) paths: &'a JailPaths,
    pub(crate) rlimits: &'a Rlimits,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) exec_label: Option<CString>,
    pub(crate) argv: Vec<CString>,
}

/// Steps 5-11, in the child. Returns only on failure.
pub(crate) fn confine(
    ctx: &ChildCtx<'_>,
    backend: &dyn SelinuxBackend,
) -> Result<Infallible, JailError> {
    let p = &ctx.settings.profile;
    mark::mark("child: running");
    // 4 (cont.). The way into the v1 cgroup, which the parent is making beside
    // these steps (joined after the release).
    let cgroup_join = cgroup::open_join_points(ctx.cgroup)?;
    // 5. Namespaces (pid and user namespaces came with the clone).
    namespaces::enter(&p.namespaces, ctx.netns, ctx.made_netns, &ctx.settings.id)?;
    if ctx.settings.rootless {
        namespaces::forbid_nested_user_namespaces()?;
    } else {
        crate::tap::hand_over(&ctx.res.taps, ctx.uid, ctx.gid)?;
    }
    mark::mark("child: 5 namespaces entered");
    // 3 (cont.). The exec-label attribute is out of reach after pivot_root: open
    // it now; the label is written right before exec (step 11).
    let exec_attr = match &ctx.exec_label {
        Some(label) => Some((backend.open_exec_attr()?, label)),
        None => None,
    };
    // 6. Filesystem: what the VMM's sandbox declarations need, and no more.
    let fc = matches!(ctx.settings.mode, Mode::Firecracker { .. });
    let plan = Plan::new(&JailView {
        mode: JailMode::of(ctx.settings),
        exec_name: &ctx.paths.exec_name,
        res: ctx.res,
    });
    let old_root = jailfs::enter_root(
        &ctx.paths.root,
        &ctx.res.files,
        &plan.mounts(),
        (ctx.uid, ctx.gid),
        ctx.settings.rootless,
        fc,
    )?;
    // 7. rlimits. 8 (first half). No capability can be gained at exec any more.
    ctx.rlimits.apply()?;
    let bounding = identity::drop_bounding()?;
    mark::mark("child: 7-8 rlimits, bounding set");
    // 4 (cont.). Into the VM's cgroup (v1; v2 was born there), which the
    // parent makes beside the steps above, before the child becomes the VM.
    if ctx.cgroup_made_beside {
        supervise::await_cgroup()?;
    }
    cgroup::join_self(cgroup_join)?;
    mark::mark("child: in its cgroup");
    // Everything so far is undone with the jail (the cgroup holds this process);
    // from here on the VM runs, so its state record (pid) must exist first.
    if !ctx.settings.rootless {
        supervise::await_release()?;
    }
    mark::mark("child: released");
    // 6 (cont.). The old root off, now that the jailer is idle (see `OldRoot`).
    old_root.detach()?;
    mark::mark("child: 6 mounted and pivoted");
    ctx.affinity.restore()?;
    // 8. Identity: no groups, the VM's uid/gid, no capabilities, no new privileges.
    identity::drop_to(ctx.uid, ctx.gid, !ctx.settings.rootless, bounding)?;
    // The VMM must not outlive its supervisor: the uid change cleared the death
    // signal; re-arm it, and end here if the jailer died before it was re-armed.
    supervise::rearm_death_signal().map_err(JailError::DeathSignal)?;
    mark::mark("child: 8 identity, death signal");
    // 9. Landlock.
    landlock_rules::restrict(
        &plan.rules(),
        p.landlock.mode,
        p.landlock.deny_tcp,
        p.landlock.scope,
    )?;
    mark::mark("child: 9 landlock");
    // 10. The jailer's seccomp baseline, under the VMM's own filters.
    crate::seccomp_baseline::apply(&p.seccomp)?;
    mark::mark("child: 10 seccomp baseline, exec");
    // 11. Exec the VMM, under its sVirt label.
    supervise::reset_signals();
    let path = ctx.argv.first().cloned().ok_or(JailError::Missing {
        flag: "--exec-file",
    })?;
    if let Some((attr, label)) = &exec_attr {
        attr.set(label)?;
    }
    let env: [CString; 0] = [];
    let errno = match nix::unistd::execve(&path, &ctx.argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    Err(JailError::Exec {
        path: path.to_string_lossy().into_owned(),
        errno,
    })
}
