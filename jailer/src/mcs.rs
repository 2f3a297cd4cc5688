//! MCS category pairs: each running VM gets a unique `cA,cB` (A < B).
//!
//! Allocations are recorded as one file per VM id under the runtime dir
//! (`/run/caisson/mcs/<id>`, holding `cA,cB <jailer pid>`), guarded by an flock on
//! `.lock`. A pair is in use when a live jailer recorded it or when a running
//! process carries it in its SELinux label (`/proc/*/attr/current`), so the set is
//! rebuilt from the host's state every time and stale files are ignored.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// A failed allocation or release.
#[derive(Debug, thiserror::Error)]
pub enum McsError {
    #[error("invalid category range {value:?}: expected cLO.cHI with LO < HI <= 1023")]
    Range { value: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {path}: {errno}")]
    Lock { path: PathBuf, errno: nix::Error },
    #[error("VM id {id} already holds categories {categories} (jailer pid {pid} is alive)")]
    IdInUse {
        id: String,
        categories: Categories,
        pid: i32,
    },
    #[error("every category pair in {range} is in use ({used} pairs)")]
    Exhausted { range: String, used: usize },
    #[error("cannot read random bytes: {0}")]
    Random(std::io::Error),
}

/// The highest category number SELinux MCS policies define.
pub const MAX_CATEGORY: u16 = 1023;

/// `cLO.cHI`: the categories the jailer may hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CategoryRange {
    pub lo: u16,
    pub hi: u16,
}

impl CategoryRange {
    /// Parses `cLO.cHI`.
    pub fn parse(value: &str) -> Result<Self, McsError> {
        let err = || McsError::Range {
            value: value.to_string(),
        };
        let (lo, hi) = value.split_once('.').ok_or_else(err)?;
        let num = |s: &str| -> Result<u16, McsError> {
            s.strip_prefix('c')
                .and_then(|n| n.parse::<u16>().ok())
                .ok_or_else(err)
        };
        let (lo, hi) = (num(lo)?, num(hi)?);
        if lo >= hi || hi > MAX_CATEGORY {
            return Err(err());
        }
        Ok(Self { lo, hi })
    }

    /// Number of pairs A < B in the range.
    pub fn pairs(&self) -> usize {
        let n = usize::from(self.hi - self.lo) + 1;
        n * (n - 1) / 2
    }
}

impl fmt::Display for CategoryRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}.c{}", self.lo, self.hi)
    }
}

/// A category pair `cA,cB` with A < B.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Categories {
    pub a: u16,
    pub b: u16,
}

impl fmt::Display for Categories {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{},c{}", self.a, self.b)
    }
}

impl Categories {
    /// Parses `cA,cB` (A < B); anything else (ranges, one category) is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.trim().split_once(',')?;
        let a = a.strip_prefix('c')?.parse::<u16>().ok()?;
        let b = b.strip_prefix('c')?.parse::<u16>().ok()?;
        (a < b && b <= MAX_CATEGORY).then_some(Self { a, b })
    }

    /// The pair in an SELinux context `user:role:type:sN:cA,cB`, if it has exactly one pair.
    pub fn from_context(context: &str) -> Option<Self> {
        let context = context.trim_end_matches(['\0', '\n']);
        let mut parts = context.splitn(5, ':');
        let _user = parts.next()?;
        let _role = parts.next()?;
        let _type = parts.next()?;
        let _sens = parts.next()?;
        Self::parse(parts.next()?)
    }
}

/// Where random numbers come from (the OS, or a fixed sequence in tests).
pub trait RandomSource {
    fn next_u32(&mut self) -> Result<u32, McsError>;
}

/// `getrandom(2)`.
#[derive(Debug, Default)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn next_u32(&mut self) -> Result<u32, McsError> {
        let mut buf = [0u8; 4];
        // SAFETY: buf is a valid, writable 4-byte buffer for the duration of the call.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n != 4 {
            return Err(McsError::Random(std::io::Error::last_os_error()));
        }
        Ok(u32::from_ne_bytes(buf))
    }
}

/// True when a process with this pid exists.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

/// The allocation records under `<runtime dir>/mcs`.
#[derive(Debug, Clone)]
pub struct McsStore {
    dir: PathBuf,
}

/// One record: which VM holds which pair, for which jailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub id: String,
    pub categories: Categories,
    pub pid: i32,
}

impl McsStore {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> McsError + 'a {
        move |source| McsError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    fn lock(&self) -> Result<Flock<File>, McsError> {
        let path = self.dir.join(".lock");
        let file = match crate::state::open_lock_file(&self.dir, &path) {
            Ok(f) => f,
            Err(crate::state::InDirError::Dir(e)) => return Err(Self::io("create", &self.dir)(e)),
            Err(crate::state::InDirError::Op(e)) => return Err(Self::io("open", &path)(e)),
        };
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| McsError::Lock {
            path: path.clone(),
            errno,
        })
    }

    /// Every record in the store (stale ones included).
    pub fn records(&self) -> Result<Vec<Allocation>, McsError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Self::io("read", &self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(Self::io("read", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let mut words = text.split_whitespace();
            let cats = words.next().and_then(Categories::parse);
            let pid = words.next().and_then(|p| p.parse::<i32>().ok());
            if let (Some(categories), Some(pid)) = (cats, pid) {
                out.push(Allocation {
                    id: name,
                    categories,
                    pid,
                });
            }
        }
        Ok(out)
    }

    /// Picks a random unused pair in `range` for `id` and records it for jailer `pid`.
    /// `process_labels` are the SELinux contexts of running processes.
    pub fn allocate(
        &self,
        id: &str,
        range: CategoryRange,
        process_labels: &[String],
        pid: i32,
        rng: &mut dyn RandomSource,
    ) -> Result<Categories, McsError> {
        let _lock = self.lock()?;
        let mut used = BTreeSet::new();
        for label in process_labels {
            if let Some(c) = Categories::from_context(label) {
                used.insert(c);
            }
        }
        for rec in self.records()? {
            if pid_alive(rec.pid) {
                if rec.id == id {
                    return Err(McsError::IdInUse {
                        id: id.to_string(),
                        categories: rec.categories,
                        pid: rec.pid,
                    });
                }
                used.insert(rec.categories);
            } else {
                log::info!(
                    "dropping stale MCS record {} ({}, jailer pid {} is gone)",
                    rec.id,
                    rec.categories,
                    rec.pid
                );
                let _ = std::fs::remove_file(self.dir.join(&rec.id));
            }
        }
        let chosen = pick(range, &used, rng)?;
        let path = self.dir.join(id);
        let tmp = self.dir.join(format!(".{id}.tmp"));
        let mut f = File::create(&tmp).map_err(Self::io("create", &tmp))?;
        // One write (File is unbuffered; `writeln!` would make four).
        f.write_all(format!("{chosen} {pid}\n").as_bytes())
            .map_err(Self::io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(Self::io("rename", &tmp))?;
        Ok(chosen)
    }

    /// Forgets `id`'s allocation (a missing record is fine).
    pub fn release(&self, id: &str) -> Result<(), McsError> {
        let _lock = self.lock()?;
        let path = self.dir.join(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::io("remove", &path)(e)),
        }
    }
}

/// A random pair not in `used`: random draws first, then a scan so that a nearly
/// full range still finds the last free pairs.
fn pick(
    range: CategoryRange,
    used: &BTreeSet<Categories>,
    rng: &mut dyn RandomSource,
) -> Result<Categories, McsError> {
    let span = u32::from(range.hi - range.lo) + 1;
    for _ in 0..256 {
        let a = range.lo + (rng.next_u32()? % span) as u16;
        let b = range.lo + (rng.next_u32()? % span) as u16;
        if a == b {
            continue;
        }
        let c = Categories {
            a: a.min(b),
            b: a.max(b),
        };
        if !used.contains(&c) {
            return Ok(c);
        }
    }
    for a in range.lo..range.hi {
        for b in (a + 1)..=range.hi {
            let c = Categories { a, b };
            if !used.contains(&c) {
                return Ok(c);
            }
        }
    }
    Err(McsError::Exhausted {
        range: range.to_string(),
        used: used.len(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;

    /// Returns the given numbers in order, then repeats the last one.
    pub struct Seq(pub Vec<u32>, pub usize);

    impl RandomSource for Seq {
        fn next_u32(&mut self) -> Result<u32, McsError> {
            let v = self.0.get(self.1).or(self.0.last()).copied().unwrap_or(0);
            self.1 += 1;
            Ok(v)
        }
    }

    pub fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "caisson-jailer-test-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn range_parsing() {
        assert_eq!(
            CategoryRange::parse("c0.c1023").unwrap(),
            CategoryRange { lo: 0, hi: 1023 }
        );
        for bad in ["c5.c5", "c9.c3", "0.1023", "c0.c1024", "c0", "c0.cx"] {
            let err = CategoryRange::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        assert_eq!(CategoryRange::parse("c0.c3").unwrap().pairs(), 6);
    }

    #[test]
    fn context_parsing() {
        assert_eq!(
            Categories::from_context("system_u:system_r:caisson_vm_t:s0:c3,c700\0"),
            Some(Categories { a: 3, b: 700 })
        );
        assert_eq!(
            Categories::from_context("unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023"),
            None
        );
        assert_eq!(
            Categories::from_context("system_u:system_r:init_t:s0"),
            None
        );
        assert_eq!(Categories::from_context("a:b:c:s0:c7,c3"), None);
    }

    #[test]
    fn allocation_avoids_records_and_running_labels() {
        let dir = tempdir("mcs-collide");
        let store = McsStore::new(&dir);
        let range = CategoryRange::parse("c0.c3").unwrap();
        let me = std::process::id() as i32;
        // The rng keeps proposing (1,2): first a running process holds it.
        let labels = vec!["system_u:system_r:caisson_vm_t:s0:c1,c2".to_string()];
        let c1 = store
            .allocate("vm-a", range, &labels, me, &mut Seq(vec![1, 2], 0))
            .unwrap();
        assert_ne!(c1, Categories { a: 1, b: 2 });
        assert_eq!(
            c1,
            Categories { a: 0, b: 1 },
            "the scan takes the first free pair"
        );
        // The rng proposes exactly what vm-a holds: must be skipped.
        let c2 = store
            .allocate("vm-b", range, &labels, me, &mut Seq(vec![1, 0], 0))
            .unwrap();
        assert_ne!(c2, c1);
        assert_ne!(c2, Categories { a: 1, b: 2 });
        // Same id again while its jailer is alive: refused.
        let err = store
            .allocate("vm-a", range, &[], me, &mut OsRandom)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("vm-a") && err.contains(&c1.to_string()),
            "{err}"
        );
        // Fill the rest of the 6 pairs, then the range is exhausted.
        for id in ["vm-c", "vm-d", "vm-e"] {
            store
                .allocate(id, range, &labels, me, &mut OsRandom)
                .unwrap();
        }
        let err = store
            .allocate("vm-f", range, &labels, me, &mut OsRandom)
            .unwrap_err();
        assert!(matches!(err, McsError::Exhausted { used: 6, .. }), "{err}");
        let all: BTreeSet<_> = store
            .records()
            .unwrap()
            .iter()
            .map(|r| r.categories)
            .collect();
        assert_eq!(all.len(), 5, "five distinct pairs recorded");
        // Releasing frees the pair for the next VM.
        store.release("vm-c").unwrap();
        let again = store
            .allocate("vm-f", range, &labels, me, &mut OsRandom)
            .unwrap();
        assert!(!store.records().unwrap().iter().any(|r| r.id == "vm-c"));
        assert!(all.contains(&again));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_records_are_dropped() {
        let dir = tempdir("mcs-stale");
        let store = McsStore::new(&dir);
        let range = CategoryRange::parse("c0.c1").unwrap();
        // A record for a pid that cannot exist (beyond pid_max).
        std::fs::write(dir.join("old-vm"), "c0,c1 2147483000\n").unwrap();
        let c = store
            .allocate(
                "new-vm",
                range,
                &[],
                std::process::id() as i32,
                &mut OsRandom,
            )
            .unwrap();
        assert_eq!(c, Categories { a: 0, b: 1 });
        assert!(!dir.join("old-vm").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn random_picks_are_ordered_and_in_range() {
        let range = CategoryRange::parse("c10.c20").unwrap();
        let used = BTreeSet::new();
        for _ in 0..200 {
            let c = pick(range, &used, &mut OsRandom).unwrap();
            assert!(c.a < c.b && c.a >= 10 && c.b <= 20, "{c}");
        }
    }
}
