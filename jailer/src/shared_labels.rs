//! sVirt labels of files that several VMs use at once, as libvirt keeps them (it
//! counts the users of a shared image in an extended attribute): a read-only image
//! or snapshot restored by clones carries the shared label without categories
//! (`<image_ro_type>:<level>`) for as long as any of its VMs runs, and gets its
//! own label back when the last one ends.
//!
//! The users are the VMs' state files, read under the runtime lock that starts
//! and ends take. A VM that finds a file already recorded by another VM takes
//! over that VM's record of the original label instead of reading the shared
//! label as the original; a VM that ends while another VM still records the file
//! leaves the label as it is. A file another VM holds under a different label
//! (its own writable image, labelled with its categories) is refused: relabelling
//! it would take it away from that VM.

use std::path::{Path, PathBuf};

use crate::labels::{self, LabelChange, LabelError, LabelRecord};
use crate::selinux_backend::SelinuxBackend;
use crate::state::{JailState, RuntimeLock, StateError};

/// A shared labelling step that failed.
#[derive(Debug, thiserror::Error)]
pub enum SharedLabelError {
    #[error(transparent)]
    Label(#[from] LabelError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{path} is in use by VM {peer} with the label {label}, which {wanted} for this VM would take away (a writable image may be used by one VM only)")]
    InUse {
        path: PathBuf,
        peer: String,
        label: String,
        wanted: String,
    },
}

/// Every other VM's label records in `runtime_dir`, as (VM id, record).
fn peer_records(runtime_dir: &Path, own_id: &str) -> Vec<(String, LabelRecord)> {
    crate::state::list_ids(runtime_dir)
        .into_iter()
        .filter(|id| id != own_id)
        .filter_map(|id| JailState::load(runtime_dir, &id).ok())
        .flat_map(|st| {
            let id = st.id.clone();
            st.image_labels.into_iter().map(move |r| (id.clone(), r))
        })
        .collect()
}

/// Applies `plan` for the VM of `state`, records what was done in its
/// `image_labels` and saves the state, all under the runtime lock. A file that
/// another running VM recorded already keeps the label it has, when that is the
/// one planned (a shared read-only file); its original is that VM's record. On
/// failure nothing this call relabelled is left relabelled.
pub fn apply(
    backend: &dyn SelinuxBackend,
    runtime_dir: &Path,
    state: &mut JailState,
    plan: &[LabelChange],
) -> Result<(), SharedLabelError> {
    let _lock = RuntimeLock::take(runtime_dir)?;
    let peers = peer_records(runtime_dir, &state.id);
    let mut set_here: Vec<LabelRecord> = Vec::new();
    let mut records: Vec<LabelRecord> = Vec::new();
    let undo = |set_here: &[LabelRecord]| {
        for e in labels::restore(backend, set_here) {
            log::error!("{e}");
        }
    };
    for change in plan {
        // The same file twice (a disk also used as initrd): the first original.
        if records.iter().any(|r| r.path == change.path) {
            continue;
        }
        let Some((peer, held)) = peers.iter().find(|(_, r)| r.path == change.path) else {
            match labels::apply(backend, std::slice::from_ref(change)) {
                Ok(done) => {
                    set_here.extend(done.iter().cloned());
                    records.extend(done);
                    continue;
                }
                Err(e) => {
                    undo(&set_here);
                    return Err(e.into());
                }
            }
        };
        let current = match backend.file_label(&change.path) {
            Ok(c) => c.unwrap_or_else(|| "(none)".into()),
            Err(e) => {
                undo(&set_here);
                return Err(LabelError::from(e).into());
            }
        };
        if current != change.label {
            undo(&set_here);
            return Err(SharedLabelError::InUse {
                path: change.path.clone(),
                peer: peer.clone(),
                label: current,
                wanted: change.label.clone(),
            });
        }
        records.push(LabelRecord {
            path: change.path.clone(),
            original: held.original.clone(),
        });
    }
    state.image_labels.extend(records);
    if let Err(e) = state.save(runtime_dir) {
        undo(&set_here);
        return Err(e.into());
    }
    Ok(())
}

/// Puts back the original labels of the VM of `state`, except on files another
/// VM still records (they keep the shared label; the last VM puts it back).
/// Runs under the runtime lock (`held`, or taken here). Returns the failures.
pub fn restore(
    backend: &dyn SelinuxBackend,
    runtime_dir: &Path,
    state: &JailState,
    held: Option<&RuntimeLock>,
) -> Vec<String> {
    if state.image_labels.is_empty() {
        return Vec::new();
    }
    let mut problems = Vec::new();
    let _taken = RuntimeLock::unless_held(held, runtime_dir, &mut problems);
    let peers = peer_records(runtime_dir, &state.id);
    let (kept, mine): (Vec<&LabelRecord>, Vec<&LabelRecord>) = state
        .image_labels
        .iter()
        .partition(|r| peers.iter().any(|(_, p)| p.path == r.path));
    for r in kept {
        log::info!(
            "{}: label kept, another VM still uses the file",
            r.path.display()
        );
    }
    let mine: Vec<LabelRecord> = mine.into_iter().cloned().collect();
    problems.extend(
        labels::restore(backend, &mine)
            .into_iter()
            .map(|e| e.to_string()),
    );
    problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::labels::Image;
    use crate::mcs::Categories;
    use crate::profile::Profile;
    use crate::selinux_backend::fake::FakeSelinux;

    const ORIGINAL: &str = "system_u:object_r:user_tmp_t:s0";
    const SHARED: &str = "system_u:object_r:caisson_image_ro_t:s0";

    fn state(id: &str) -> JailState {
        let mut st: JailState = serde_json::from_str(crate::state::tests::MINIMAL).unwrap();
        st.id = id.into();
        st
    }

    fn plan_for(cats: Categories, files: &[(&str, bool)]) -> Vec<LabelChange> {
        let s = Profile::load("strict").unwrap().selinux;
        let images: Vec<Image> = files
            .iter()
            .map(|(p, w)| Image {
                path: PathBuf::from(p),
                writable: *w,
            })
            .collect();
        labels::plan(&s, cats, &images)
    }

    fn fake(paths: &[&str]) -> FakeSelinux {
        let f = FakeSelinux {
            enabled: true,
            ..Default::default()
        };
        for p in paths {
            f.files
                .borrow_mut()
                .insert(PathBuf::from(p), ORIGINAL.into());
        }
        f
    }

    fn label(f: &FakeSelinux, p: &str) -> String {
        f.files.borrow()[Path::new(p)].clone()
    }

    /// Two clones of one snapshot: the file keeps the shared label until the last
    /// of them ends, whichever order they end in, and then gets its own back.
    #[test]
    fn a_shared_file_keeps_its_label_until_its_last_vm_ends() {
        for b_ends_first in [false, true] {
            let dir = crate::mcs::tests::tempdir("shared-labels");
            let snap = "/img/vm.snap";
            let f = fake(&[snap, "/img/a.ext4", "/img/b.ext4"]);
            let mut a = state("vm-a");
            let mut b = state("vm-b");
            a.save(&dir).unwrap();
            b.save(&dir).unwrap();
            let cats_a = Categories { a: 1, b: 2 };
            let cats_b = Categories { a: 3, b: 4 };
            apply(
                &f,
                &dir,
                &mut a,
                &plan_for(cats_a, &[(snap, false), ("/img/a.ext4", true)]),
            )
            .unwrap();
            apply(
                &f,
                &dir,
                &mut b,
                &plan_for(cats_b, &[(snap, false), ("/img/b.ext4", true)]),
            )
            .unwrap();
            assert_eq!(label(&f, snap), SHARED);
            // B took A's record of the original, not the shared label it found.
            assert_eq!(b.image_labels[0].original, ORIGINAL);
            let (first, second) = if b_ends_first { (&b, &a) } else { (&a, &b) };
            assert!(restore(&f, &dir, first, None).is_empty());
            JailState::remove(&dir, &first.id).unwrap();
            assert_eq!(label(&f, snap), SHARED, "the other VM still runs");
            // The ended VM's own disk got its label back at once.
            let own = if b_ends_first {
                "/img/b.ext4"
            } else {
                "/img/a.ext4"
            };
            assert_eq!(label(&f, own), ORIGINAL);
            assert!(restore(&f, &dir, second, None).is_empty());
            JailState::remove(&dir, &second.id).unwrap();
            assert_eq!(label(&f, snap), ORIGINAL);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    /// Another VM's writable image is refused, and nothing this VM relabelled
    /// before the refusal stays relabelled.
    #[test]
    fn another_vms_writable_image_is_refused_and_undone() {
        let dir = crate::mcs::tests::tempdir("shared-labels-inuse");
        let f = fake(&["/img/kernel", "/img/a.ext4"]);
        let mut a = state("vm-a");
        a.save(&dir).unwrap();
        apply(
            &f,
            &dir,
            &mut a,
            &plan_for(Categories { a: 1, b: 2 }, &[("/img/a.ext4", true)]),
        )
        .unwrap();
        let a_label = label(&f, "/img/a.ext4");
        let mut b = state("vm-b");
        b.save(&dir).unwrap();
        let plan = plan_for(
            Categories { a: 3, b: 4 },
            &[("/img/kernel", false), ("/img/a.ext4", false)],
        );
        let err = apply(&f, &dir, &mut b, &plan).unwrap_err().to_string();
        assert!(
            err.contains("/img/a.ext4") && err.contains("vm-a") && err.contains(&a_label),
            "{err}"
        );
        assert_eq!(label(&f, "/img/kernel"), ORIGINAL);
        assert_eq!(label(&f, "/img/a.ext4"), a_label);
        assert!(b.image_labels.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
