//! sVirt labels: the per-VM process label and the image-labelling plan.
//!
//! Writable images get `system_u:object_r:<image_type>:<level>:cA,cB`, so only the VM
//! holding cA,cB may open them; read-only or shared images (kernel, initrd, ro disks)
//! get `<image_ro_type>:<level>` with no categories. The original labels are
//! recorded (in the VM's state file) and restored when the VM ends.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::mcs::Categories;
use crate::profile::SelinuxSettings;
use crate::selinux_backend::{SelinuxBackend, SelinuxError};

/// A failed labelling step.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error(transparent)]
    Selinux(#[from] SelinuxError),
    #[error("{path} has no SELinux label to restore later; refusing to relabel it")]
    NoOriginal { path: PathBuf },
}

/// The process label for a VM holding `cats`.
pub fn process_label(s: &SelinuxSettings, cats: Categories) -> String {
    format!(
        "{}:{}:{}:{}:{}",
        s.user, s.role, s.process_type, s.level, cats
    )
}

/// One image to label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub path: PathBuf,
    pub writable: bool,
}

/// One planned relabel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelChange {
    pub path: PathBuf,
    pub label: String,
}

/// A relabel done, with the label to put back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelRecord {
    pub path: PathBuf,
    pub original: String,
}

/// The labels each image gets.
pub fn plan(s: &SelinuxSettings, cats: Categories, images: &[Image]) -> Vec<LabelChange> {
    images
        .iter()
        .map(|img| LabelChange {
            path: img.path.clone(),
            label: image_label(s, cats, img.writable),
        })
        .collect()
}

/// One of the VM's files as the jail has it, with its label: for the state
/// file and the audit, which list every file (disks, snapshot files) alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub kind: crate::resources::Kind,
    /// The config field that named it.
    pub field: String,
    pub host_path: PathBuf,
    pub jail_path: PathBuf,
    pub writable: bool,
    /// Device and inode of the file opened (what the jail must show there).
    pub dev_ino: (u64, u64),
    /// The label planned for it ([`plan`]).
    pub label: String,
    /// Whether the label was applied (false with SELinux off or rootless).
    pub label_applied: bool,
}

/// The records of `files`, with the labels [`plan`] gives them.
pub fn file_records(
    s: &SelinuxSettings,
    cats: Categories,
    files: &[crate::resources::Resource],
    applied: bool,
) -> Vec<FileRecord> {
    files
        .iter()
        .map(|f| FileRecord {
            kind: f.kind,
            field: f.field.clone(),
            host_path: f.host_path.clone(),
            jail_path: f.jail_path.clone(),
            writable: f.writable,
            dev_ino: f.dev_ino,
            label: image_label(s, cats, f.writable),
            label_applied: applied,
        })
        .collect()
}

/// The label of an image: the VM's categories when it writes it, the shared
/// read-only label without categories otherwise.
pub fn image_label(s: &SelinuxSettings, cats: Categories, writable: bool) -> String {
    if writable {
        format!("system_u:object_r:{}:{}:{}", s.image_type, s.level, cats)
    } else {
        format!("system_u:object_r:{}:{}", s.image_ro_type, s.level)
    }
}

/// The label of a jail directory the VMM writes new files in (the `--api` jail's
/// `/snapshots`): the jail directory type with the VM's categories. Files the VMM
/// creates there get the policy's VM file type by type transition, at the VM's
/// level, so no VM but this one may use the directory or what it holds.
pub fn jail_dir_label(s: &SelinuxSettings, cats: Categories) -> String {
    format!("system_u:object_r:{}:{}:{}", s.jail_type, s.level, cats)
}

/// Applies `plan`, returning the records needed to undo it. On failure, what was
/// already relabelled is restored before the error is returned.
pub fn apply(
    backend: &dyn SelinuxBackend,
    plan: &[LabelChange],
) -> Result<Vec<LabelRecord>, LabelError> {
    let mut done: Vec<LabelRecord> = Vec::new();
    for change in plan {
        // The same file may appear twice (a disk also used as initrd): keep the first original.
        if done.iter().any(|r| r.path == change.path) {
            continue;
        }
        let step = || -> Result<LabelRecord, LabelError> {
            let original =
                backend
                    .file_label(&change.path)?
                    .ok_or_else(|| LabelError::NoOriginal {
                        path: change.path.clone(),
                    })?;
            backend.set_file_label(&change.path, &change.label)?;
            Ok(LabelRecord {
                path: change.path.clone(),
                original,
            })
        };
        match step() {
            Ok(rec) => done.push(rec),
            Err(e) => {
                for err in restore(backend, &done) {
                    log::error!("{err}");
                }
                return Err(e);
            }
        }
    }
    Ok(done)
}

/// Puts the original labels back; returns the failures (each restore is tried).
pub fn restore(backend: &dyn SelinuxBackend, records: &[LabelRecord]) -> Vec<SelinuxError> {
    records
        .iter()
        .rev()
        .filter_map(|r| backend.set_file_label(&r.path, &r.original).err())
        .collect()
}

/// True when `path` is one of the records (for tests and audit).
pub fn is_recorded(records: &[LabelRecord], path: &Path) -> bool {
    records.iter().any(|r| r.path == path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::profile::Profile;
    use crate::selinux_backend::fake::FakeSelinux;

    fn settings() -> SelinuxSettings {
        Profile::load("strict").unwrap().selinux
    }

    fn images() -> Vec<Image> {
        vec![
            Image {
                path: "/img/vmlinux".into(),
                writable: false,
            },
            Image {
                path: "/img/root.ext4".into(),
                writable: true,
            },
            Image {
                path: "/img/shared.ext4".into(),
                writable: false,
            },
        ]
    }

    #[test]
    fn process_label_carries_the_pair() {
        let cats = Categories { a: 4, b: 900 };
        assert_eq!(
            process_label(&settings(), cats),
            "system_u:system_r:caisson_vm_t:s0:c4,c900"
        );
    }

    #[test]
    fn the_snapshot_directory_is_a_jail_directory_with_the_pair() {
        let cats = Categories { a: 7, b: 31 };
        assert_eq!(
            jail_dir_label(&settings(), cats),
            "system_u:object_r:caisson_jail_t:s0:c7,c31"
        );
        // A profile written before jail_type existed gets the policy's type.
        let text = crate::profile::STRICT.replace("jail_type = \"caisson_jail_t\"\n", "");
        assert!(!text.contains("jail_type"));
        let p = Profile::parse("old", &text).unwrap();
        assert_eq!(p.selinux.jail_type, "caisson_jail_t");
    }

    #[test]
    fn plan_gives_categories_only_to_writable_images() {
        let p = plan(&settings(), Categories { a: 1, b: 2 }, &images());
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].label, "system_u:object_r:caisson_image_ro_t:s0");
        assert_eq!(p[1].label, "system_u:object_r:caisson_image_t:s0:c1,c2");
        assert_eq!(p[2].label, "system_u:object_r:caisson_image_ro_t:s0");
    }

    #[test]
    fn apply_then_restore_round_trips() {
        let fake = FakeSelinux {
            enabled: true,
            ..Default::default()
        };
        for img in images() {
            fake.files.borrow_mut().insert(
                img.path.clone(),
                format!("system_u:object_r:user_home_t:s0#{}", img.path.display()),
            );
        }
        let before = fake.files.borrow().clone();
        let p = plan(&settings(), Categories { a: 1, b: 2 }, &images());
        let records = apply(&fake, &p).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(
            fake.files.borrow()[Path::new("/img/root.ext4")],
            "system_u:object_r:caisson_image_t:s0:c1,c2"
        );
        assert!(is_recorded(&records, Path::new("/img/shared.ext4")));
        assert!(restore(&fake, &records).is_empty());
        assert_eq!(*fake.files.borrow(), before);
    }

    #[test]
    fn failure_midway_restores_what_was_done() {
        let fake = FakeSelinux {
            enabled: true,
            fail_on: Some("/img/shared.ext4".into()),
            ..Default::default()
        };
        for img in images() {
            fake.files
                .borrow_mut()
                .insert(img.path.clone(), "system_u:object_r:etc_t:s0".into());
        }
        let before = fake.files.borrow().clone();
        let p = plan(&settings(), Categories { a: 1, b: 2 }, &images());
        let err = apply(&fake, &p).unwrap_err().to_string();
        assert!(
            err.contains("/img/shared.ext4") && err.contains("caisson_image_ro_t"),
            "{err}"
        );
        assert_eq!(*fake.files.borrow(), before);
    }

    #[test]
    fn unlabelled_file_is_refused() {
        let fake = FakeSelinux {
            enabled: true,
            ..Default::default()
        };
        let p = plan(&settings(), Categories { a: 1, b: 2 }, &images());
        let err = apply(&fake, &p).unwrap_err().to_string();
        assert!(err.contains("/img/vmlinux"), "{err}");
        assert!(fake.files.borrow().is_empty());
    }
}
