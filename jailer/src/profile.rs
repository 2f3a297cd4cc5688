//! Isolation profiles: one declarative TOML file sets every layer of the jail.
//!
//! The shipped profiles (`policy/profiles/*.toml`) are embedded in the binary, so
//! `--profile strict` works from any directory; any other value is read as a path.
//! Every value is typed and checked when the profile is read ([`Profile::parse`]);
//! a bad one is an error naming the profile, the key and the value, never a
//! fallback to a default.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cgroup::CgroupParent;
use crate::mcs::CategoryRange;

/// The shipped `strict` profile.
pub const STRICT: &str = include_str!("../../policy/profiles/strict.toml");
/// The shipped `dev` profile.
pub const DEV: &str = include_str!("../../policy/profiles/dev.toml");
/// The shipped profiles as build.rs turned them into JSON: the form the jailer
/// reads them in (serde_json's code is there for the config anyway, while the
/// TOML parser's first run costs ~80 µs of the start).
const STRICT_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/profiles/strict.json"));
const DEV_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/profiles/dev.json"));

/// A profile that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid profile {name}: {message}")]
    Parse { name: String, message: String },
    #[error("invalid profile {name}: {key} = {value}: {reason}")]
    Value {
        name: String,
        key: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl ProfileError {
    fn value(name: &str, key: &'static str, value: String, reason: &'static str) -> Self {
        Self::Value {
            name: name.to_string(),
            key,
            value,
            reason,
        }
    }
}

/// The types of a profile's free-form values: [`Raw`] as read from the file,
/// [`Typed`] once parsed. One definition of each section serves both, and the
/// step from one to the other ([`Profile::parse`]) is where every value is
/// checked, each failure naming the profile, the key and the value.
pub trait Values {
    /// `cgroup.version`.
    type Version: std::fmt::Debug + Clone + PartialEq;
    /// `cgroup.parent`.
    type Parent: std::fmt::Debug + Clone + PartialEq;
    /// `rlimits.fsize`.
    type Fsize: std::fmt::Debug + Clone + PartialEq;
    /// `selinux.range`.
    type Range: std::fmt::Debug + Clone + PartialEq;
}

/// A profile's values as the TOML file has them.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {}

impl Values for Raw {
    type Version = toml::Value;
    type Parent = String;
    type Fsize = toml::Value;
    type Range = String;
}

/// A profile's values parsed: what the jail sequence uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed {}

impl Values for Typed {
    type Version = CgroupVersionChoice;
    type Parent = CgroupParent;
    type Fsize = FsizeChoice;
    type Range = CategoryRange;
}

/// How strictly a layer is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LandlockMode {
    BestEffort,
    Require,
    Off,
}

/// SELinux labelling mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SelinuxMode {
    /// Label when SELinux is enabled, log and skip otherwise.
    Auto,
    /// Fail when SELinux is not enabled.
    Require,
    Off,
}

/// Whether the VMM installs its seccomp filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SeccompMode {
    On,
    Off,
}

/// `[namespaces]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Namespaces {
    pub pid: bool,
    pub ipc: bool,
    pub uts: bool,
    pub cgroup: bool,
    pub net: bool,
}

/// `[cgroup]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupSettings<V: Values = Typed> {
    /// `"auto"`, `"1"` or `"2"` (a string or an integer in the file).
    pub version: V::Version,
    pub parent: V::Parent,
    #[serde(default)]
    pub memory_max_mib: Option<u64>,
    #[serde(default)]
    pub memory_overhead_mib: u64,
    pub cpu_period_us: u64,
    #[serde(default)]
    pub cpu_quota_us: Option<u64>,
    pub pids_max: u64,
}

/// `[resources]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSettings {
    /// Directories the VM's files must resolve under.
    pub roots: Vec<std::path::PathBuf>,
}

/// `[rlimits]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlimitSettings<V: Values = Typed> {
    pub nofile: u64,
    /// A byte count, `"unlimited"` or `"auto"`.
    pub fsize: V::Fsize,
    pub nproc: u64,
}

/// `[landlock]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LandlockSettings {
    pub mode: LandlockMode,
    /// Deny every TCP bind and connect (ABI >= 4).
    pub deny_tcp: bool,
    /// Scope abstract unix sockets and signals to the jail (ABI >= 6).
    pub scope: bool,
}

/// `[selinux]`. The names (user, role, types, level) are checked at load to be
/// SELinux identifiers, so that none can add a field to the labels made of them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelinuxSettings<V: Values = Typed> {
    pub mode: SelinuxMode,
    pub user: String,
    pub role: String,
    pub process_type: String,
    pub image_type: String,
    pub image_ro_type: String,
    /// The type of jail directories (the policy's `caisson_jail_t`): where the
    /// VMM creates files they get its own file type by type transition. The
    /// `--api` jail's `/snapshots` carries it with the VM's categories.
    #[serde(default = "default_jail_type")]
    pub jail_type: String,
    pub level: String,
    /// The categories the jailer allocates from, `cLO.cHI`.
    pub range: V::Range,
}

fn default_jail_type() -> String {
    "caisson_jail_t".into()
}

/// The jailer's own seccomp baseline (seccomp/baseline.json), installed just
/// before exec, under the VMM's filters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaselineMode {
    /// The baseline shipped in seccomp/baseline.json.
    Default,
    /// No baseline (also what a state file written before the baseline existed means).
    #[default]
    Off,
}

/// `[seccomp]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeccompSettings {
    /// The VMM's own per-thread filters.
    pub mode: SeccompMode,
    /// The jailer's baseline, stacked under the VMM's filters.
    pub baseline: BaselineMode,
    /// Let the baseline allow AF_INET and AF_INET6 sockets (optional, default
    /// false: every family but AF_UNIX is denied).
    #[serde(default)]
    pub inet: bool,
}

/// `[identity]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    /// Derived uid = gid = uid_base + A * 1024 + B for categories cA,cB.
    pub uid_base: u32,
}

/// `[ahead]` (optional): what a running VM's jailer prepares for the next
/// start, at idle priority, so that the next start skips it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AheadSettings {
    /// The next start's private copy of the exec file, renamed into its jail
    /// instead of copied (see `exec_copy`). Default true.
    #[serde(default = "yes")]
    pub exec_copy: bool,
    /// The next start's empty network namespace, bound under the runtime
    /// directory until taken (see `netns_pool`). Default true.
    #[serde(default = "yes")]
    pub netns: bool,
}

fn yes() -> bool {
    true
}

impl Default for AheadSettings {
    fn default() -> Self {
        Self {
            exec_copy: true,
            netns: true,
        }
    }
}

/// One whole profile: [`Profile<Raw>`] as the file has it, [`Profile`] (typed)
/// as [`Profile::load`] returns it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(deserialize = "CgroupSettings<V>: Deserialize<'de>, \
        RlimitSettings<V>: Deserialize<'de>, SelinuxSettings<V>: Deserialize<'de>")
)]
pub struct Profile<V: Values = Typed> {
    pub name: String,
    pub namespaces: Namespaces,
    pub cgroup: CgroupSettings<V>,
    pub resources: ResourceSettings,
    pub rlimits: RlimitSettings<V>,
    pub landlock: LandlockSettings,
    pub selinux: SelinuxSettings<V>,
    pub seccomp: SeccompSettings,
    pub identity: IdentitySettings,
    #[serde(default)]
    pub ahead: AheadSettings,
}

/// The cgroup version a profile asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersionChoice {
    Auto,
    V1,
    V2,
}

/// `fsize` in the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsizeChoice {
    Bytes(u64),
    Unlimited,
    /// Largest writable disk + 64 MiB.
    Auto,
}

impl Profile {
    /// Loads a shipped profile by name, or a profile file by path.
    pub fn load(name_or_path: &str) -> Result<Self, ProfileError> {
        match name_or_path {
            "strict" => Self::shipped("strict", STRICT_JSON),
            "dev" => Self::shipped("dev", DEV_JSON),
            path => {
                let text = std::fs::read_to_string(Path::new(path)).map_err(|source| {
                    ProfileError::Read {
                        path: path.to_string(),
                        source,
                    }
                })?;
                Self::parse(path, &text)
            }
        }
    }

    /// Parses, types and checks profile text; `name` is used in error messages.
    pub fn parse(name: &str, text: &str) -> Result<Self, ProfileError> {
        let raw: Profile<Raw> = toml::from_str(text).map_err(|e| ProfileError::Parse {
            name: name.to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        raw.checked(name)
    }

    /// A shipped profile from its JSON form, typed and checked as a file is.
    fn shipped(name: &str, json: &str) -> Result<Self, ProfileError> {
        let raw: Profile<Raw> = serde_json::from_str(json).map_err(|e| ProfileError::Parse {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        raw.checked(name)
    }

    /// The ranges of the numbers and the form of the SELinux names.
    fn check(&self, name: &str) -> Result<(), ProfileError> {
        let bad = |key, value: String, reason| ProfileError::value(name, key, value, reason);
        if self.cgroup.cpu_period_us < 1000 || self.cgroup.cpu_period_us > 1_000_000 {
            return Err(bad(
                "cgroup.cpu_period_us",
                self.cgroup.cpu_period_us.to_string(),
                "must be in 1000..=1000000",
            ));
        }
        if let Some(q) = self.cgroup.cpu_quota_us {
            if q < 1000 {
                return Err(bad(
                    "cgroup.cpu_quota_us",
                    q.to_string(),
                    "must be at least 1000",
                ));
            }
        }
        if self.cgroup.memory_max_mib == Some(0) {
            return Err(bad("cgroup.memory_max_mib", "0".into(), "must be positive"));
        }
        if self.cgroup.pids_max == 0 {
            return Err(bad("cgroup.pids_max", "0".into(), "must be positive"));
        }
        if let Some(r) = self
            .resources
            .roots
            .iter()
            .find(|r| !r.is_absolute() || r.as_os_str().is_empty())
        {
            return Err(bad(
                "resources.roots",
                r.display().to_string(),
                "each root must be an absolute path",
            ));
        }
        if self.rlimits.nofile < 16 {
            return Err(bad(
                "rlimits.nofile",
                self.rlimits.nofile.to_string(),
                "must be at least 16",
            ));
        }
        if self.rlimits.nproc == 0 {
            return Err(bad("rlimits.nproc", "0".into(), "must be positive"));
        }
        let label_parts: [(&'static str, &String); 7] = [
            ("selinux.user", &self.selinux.user),
            ("selinux.role", &self.selinux.role),
            ("selinux.process_type", &self.selinux.process_type),
            ("selinux.image_type", &self.selinux.image_type),
            ("selinux.image_ro_type", &self.selinux.image_ro_type),
            ("selinux.jail_type", &self.selinux.jail_type),
            ("selinux.level", &self.selinux.level),
        ];
        for (key, value) in label_parts {
            let ok = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if !ok {
                return Err(bad(
                    key,
                    value.clone(),
                    "must be a non-empty SELinux identifier of [A-Za-z0-9_.]",
                ));
            }
        }
        if self.identity.uid_base == 0 || self.identity.uid_base > u32::MAX - 1024 * 1024 {
            return Err(bad(
                "identity.uid_base",
                self.identity.uid_base.to_string(),
                "must be in 1..=4293918719 so that derived ids are not root and fit in 32 bits",
            ));
        }
        Ok(())
    }
}

/// A value typed when the profile is read, from its [`Raw`] form.
trait FromRaw: Sized {
    type Raw: std::fmt::Display;
    /// What a refused value should have been.
    const EXPECTED: &'static str;
    fn from_raw(raw: &Self::Raw) -> Option<Self>;
}

impl FromRaw for CgroupVersionChoice {
    type Raw = toml::Value;
    const EXPECTED: &'static str = "expected \"auto\", 1 or 2";
    /// The numbers also as strings (`--cgroup-version`'s form).
    fn from_raw(raw: &toml::Value) -> Option<Self> {
        match raw {
            toml::Value::String(s) if s == "auto" => Some(Self::Auto),
            toml::Value::String(s) if s == "1" => Some(Self::V1),
            toml::Value::String(s) if s == "2" => Some(Self::V2),
            toml::Value::Integer(1) => Some(Self::V1),
            toml::Value::Integer(2) => Some(Self::V2),
            _ => None,
        }
    }
}

impl FromRaw for FsizeChoice {
    type Raw = toml::Value;
    const EXPECTED: &'static str = "expected a positive byte count, \"unlimited\" or \"auto\"";
    fn from_raw(raw: &toml::Value) -> Option<Self> {
        match raw {
            toml::Value::String(s) if s == "auto" => Some(Self::Auto),
            toml::Value::String(s) if s == "unlimited" => Some(Self::Unlimited),
            toml::Value::Integer(n) => u64::try_from(*n).ok().filter(|&n| n > 0).map(Self::Bytes),
            _ => None,
        }
    }
}

impl FromRaw for CgroupParent {
    type Raw = String;
    const EXPECTED: &'static str = "must be a relative path of [A-Za-z0-9._-] components";
    fn from_raw(raw: &String) -> Option<Self> {
        Self::parse(raw).ok()
    }
}

impl FromRaw for CategoryRange {
    type Raw = String;
    const EXPECTED: &'static str = "expected cLO.cHI with LO < HI <= 1023";
    fn from_raw(raw: &String) -> Option<Self> {
        Self::parse(raw).ok()
    }
}

/// `raw` typed, or the error naming the profile, the key and the value as
/// written (TOML's form for `toml::Value`s, quotes and all; strings as they are).
fn typed<T: FromRaw>(name: &str, key: &'static str, raw: &T::Raw) -> Result<T, ProfileError> {
    T::from_raw(raw).ok_or_else(|| ProfileError::value(name, key, raw.to_string(), T::EXPECTED))
}

impl Profile<Raw> {
    fn checked(self, name: &str) -> Result<Profile, ProfileError> {
        let profile = self.typed(name)?;
        profile.check(name)?;
        Ok(profile)
    }

    /// Parses the free-form values into their types; the rest moves over as is.
    fn typed(self, name: &str) -> Result<Profile, ProfileError> {
        let (c, r, s) = (self.cgroup, self.rlimits, self.selinux);
        Ok(Profile {
            name: self.name,
            namespaces: self.namespaces,
            cgroup: CgroupSettings {
                version: typed(name, "cgroup.version", &c.version)?,
                parent: typed(name, "cgroup.parent", &c.parent)?,
                memory_max_mib: c.memory_max_mib,
                memory_overhead_mib: c.memory_overhead_mib,
                cpu_period_us: c.cpu_period_us,
                cpu_quota_us: c.cpu_quota_us,
                pids_max: c.pids_max,
            },
            resources: self.resources,
            rlimits: RlimitSettings {
                nofile: r.nofile,
                fsize: typed(name, "rlimits.fsize", &r.fsize)?,
                nproc: r.nproc,
            },
            landlock: self.landlock,
            selinux: SelinuxSettings {
                mode: s.mode,
                user: s.user,
                role: s.role,
                process_type: s.process_type,
                image_type: s.image_type,
                image_ro_type: s.image_ro_type,
                jail_type: s.jail_type,
                level: s.level,
                range: typed(name, "selinux.range", &s.range)?,
            },
            seccomp: self.seccomp,
            identity: self.identity,
            ahead: self.ahead,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_parse() {
        let strict = Profile::load("strict").unwrap();
        assert_eq!(strict.name, "strict");
        assert!(strict.namespaces.pid);
        assert_eq!(strict.seccomp.mode, SeccompMode::On);
        assert_eq!(strict.landlock.mode, LandlockMode::BestEffort);
        assert_eq!(strict.selinux.mode, SelinuxMode::Auto);
        assert_eq!(strict.rlimits.fsize, FsizeChoice::Auto);
        assert_eq!(strict.cgroup.version, CgroupVersionChoice::Auto);
        assert_eq!(strict.cgroup.parent.as_str(), "caisson");
        assert_eq!(strict.selinux.range, CategoryRange { lo: 0, hi: 1023 });
        assert_eq!(strict.seccomp.baseline, BaselineMode::Default);
        assert!(!strict.seccomp.inet);
        let dev = Profile::load("dev").unwrap();
        assert_eq!(dev.seccomp.mode, SeccompMode::Off);
        assert_eq!(dev.seccomp.baseline, BaselineMode::Off);
        assert!(!dev.namespaces.pid);
        assert_eq!(dev.rlimits.fsize, FsizeChoice::Unlimited);
        assert_eq!(dev.cgroup.parent.as_str(), "caisson-dev");
    }

    /// The embedded JSON forms are the TOML files, value for value.
    #[test]
    fn shipped_json_is_the_toml() {
        for (name, toml) in [("strict", STRICT), ("dev", DEV)] {
            assert_eq!(
                Profile::load(name).unwrap(),
                Profile::parse(name, toml).unwrap(),
                "{name}"
            );
        }
        assert!(matches!(
            Profile::shipped("strict", "{\"name\": 1"),
            Err(ProfileError::Parse { .. })
        ));
    }

    /// strict.toml with one line changed, loaded as `p.toml`.
    fn strict_with(from: &str, to: &str) -> Result<Profile, String> {
        assert!(STRICT.contains(from), "{from} not found in strict.toml");
        Profile::parse("p.toml", &STRICT.replace(from, to)).map_err(|e| e.to_string())
    }

    /// Each value fails with the file, the key and the value as written.
    fn assert_refused(from: &str, key: &str, values: &[&str]) {
        for value in values {
            let line = format!("{} = {value}", key.rsplit('.').next().unwrap());
            let err = strict_with(from, &line).unwrap_err();
            let want = format!("invalid profile p.toml: {key} = {value}: ");
            assert!(err.starts_with(&want), "{err} does not start with {want}");
        }
    }

    #[test]
    fn cgroup_version_is_typed_at_load() {
        let from = "version = \"auto\"";
        for (to, want) in [
            ("version = \"auto\"", CgroupVersionChoice::Auto),
            ("version = 1", CgroupVersionChoice::V1),
            ("version = \"1\"", CgroupVersionChoice::V1),
            ("version = 2", CgroupVersionChoice::V2),
            ("version = \"2\"", CgroupVersionChoice::V2),
        ] {
            assert_eq!(strict_with(from, to).unwrap().cgroup.version, want, "{to}");
        }
        assert_refused(
            from,
            "cgroup.version",
            &["3", "0", "\"3\"", "\"v2\"", "\"Auto\"", "true", "2.0"],
        );
    }

    #[test]
    fn fsize_is_typed_at_load() {
        let from = "fsize = \"auto\"";
        for (to, want) in [
            ("fsize = \"auto\"", FsizeChoice::Auto),
            ("fsize = \"unlimited\"", FsizeChoice::Unlimited),
            ("fsize = 1", FsizeChoice::Bytes(1)),
            ("fsize = 1073741824", FsizeChoice::Bytes(1 << 30)),
        ] {
            assert_eq!(strict_with(from, to).unwrap().rlimits.fsize, want, "{to}");
        }
        assert_refused(
            from,
            "rlimits.fsize",
            &["0", "-1", "\"huge\"", "\"1024\"", "1.5", "false"],
        );
    }

    #[test]
    fn cgroup_parent_is_typed_at_load() {
        let from = "parent = \"caisson\"";
        let p = strict_with(from, "parent = \"machine/caisson.vms\"").unwrap();
        assert_eq!(p.cgroup.parent.as_str(), "machine/caisson.vms");
        // (Displayed as the path, without TOML's quotes.)
        for bad in ["", "/abs", "a/../b", "a//b", "a b", ".", "a/"] {
            let err = strict_with(from, &format!("parent = {bad:?}")).unwrap_err();
            let want = format!("invalid profile p.toml: cgroup.parent = {bad}: ");
            assert!(err.starts_with(&want), "{err} does not start with {want}");
        }
        // Not a string at all: serde names the key and what it wanted.
        let err = strict_with(from, "parent = 5").unwrap_err();
        assert!(err.contains("p.toml") && err.contains("parent"), "{err}");
    }

    #[test]
    fn the_ahead_section_is_optional_and_checked() {
        let strict = Profile::load("strict").unwrap();
        assert!(strict.ahead.exec_copy && strict.ahead.netns);
        // A profile written before `[ahead]` existed: both on.
        let start = STRICT.find("\n[ahead]").unwrap();
        let old = Profile::parse("old.toml", &STRICT[..start]).unwrap();
        assert_eq!(old.ahead, AheadSettings::default());
        let off = strict_with("netns = true", "netns = false").unwrap();
        assert!(off.ahead.exec_copy && !off.ahead.netns);
        let err = strict_with("netns = true", "netns = true\npool = 3").unwrap_err();
        assert!(err.contains("p.toml") && err.contains("pool"), "{err}");
    }

    #[test]
    fn mcs_range_is_typed_at_load() {
        let from = "range = \"c0.c1023\"";
        let p = strict_with(from, "range = \"c10.c20\"").unwrap();
        assert_eq!(p.selinux.range, CategoryRange { lo: 10, hi: 20 });
        for bad in ["c5.c2000", "c3.c3", "c4.c2", "c0-c3", "0.1", "c0.c", ""] {
            let err = strict_with(from, &format!("range = {bad:?}")).unwrap_err();
            let want = format!("invalid profile p.toml: selinux.range = {bad}: ");
            assert!(err.starts_with(&want), "{err} does not start with {want}");
        }
    }

    #[test]
    fn selinux_names_are_identifiers() {
        let err = strict_with(
            "jail_type = \"caisson_jail_t\"",
            "jail_type = \"t:s0:c1,c2\"",
        )
        .unwrap_err();
        assert!(
            err.starts_with("invalid profile p.toml: selinux.jail_type = t:s0:c1,c2: "),
            "{err}"
        );
        let err = strict_with("level = \"s0\"", "level = \"\"").unwrap_err();
        assert!(
            err.starts_with("invalid profile p.toml: selinux.level = : "),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let text = STRICT.replace("pids_max = 64", "pids_max = 64\npid_max = 3");
        let err = Profile::parse("t", &text).unwrap_err().to_string();
        assert!(err.contains("pid_max"), "{err}");
    }

    #[test]
    fn bad_mode_is_named() {
        let text = STRICT.replace("mode = \"best-effort\"", "mode = \"maybe\"");
        let err = Profile::parse("t", &text).unwrap_err().to_string();
        assert!(err.contains("maybe"), "{err}");
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let cases = [
            ("pids_max = 64", "pids_max = 0", "cgroup.pids_max = 0"),
            ("version = \"auto\"", "version = 3", "cgroup.version = 3"),
            (
                "parent = \"caisson\"",
                "parent = \"../etc\"",
                "cgroup.parent = ../etc",
            ),
            (
                "range = \"c0.c1023\"",
                "range = \"c5.c2000\"",
                "selinux.range = c5.c2000",
            ),
            (
                "fsize = \"auto\"",
                "fsize = \"huge\"",
                "rlimits.fsize = \"huge\"",
            ),
            ("nofile = 2048", "nofile = 3", "rlimits.nofile = 3"),
            (
                "roots = [\"/var/lib/caisson\", \"/srv/caisson\"]",
                "roots = [\"relative/dir\"]",
                "resources.roots = relative/dir",
            ),
            (
                "process_type = \"caisson_vm_t\"",
                "process_type = \"a:b\"",
                "selinux.process_type = a:b",
            ),
            ("uid_base = 100000", "uid_base = 0", "identity.uid_base = 0"),
            (
                "cpu_period_us = 100000",
                "cpu_period_us = 5",
                "cgroup.cpu_period_us = 5",
            ),
        ];
        for (from, to, want) in cases {
            let text = STRICT.replace(from, to);
            assert_ne!(text, STRICT, "{from} not found in strict.toml");
            let err = Profile::parse("t", &text).unwrap_err().to_string();
            assert!(err.contains(want), "{err} does not contain {want}");
        }
    }

    #[test]
    fn bad_baseline_names_file_key_and_value() {
        let text = STRICT.replace("baseline = \"default\"", "baseline = \"strictest\"");
        assert_ne!(text, STRICT);
        let err = Profile::parse("p.toml", &text).unwrap_err().to_string();
        for want in ["p.toml", "baseline", "strictest"] {
            assert!(err.contains(want), "{err} does not contain {want}");
        }
        let text = STRICT.replace("inet = false", "inet = \"yes\"");
        assert_ne!(text, STRICT);
        let err = Profile::parse("p.toml", &text).unwrap_err().to_string();
        for want in ["p.toml", "inet", "yes"] {
            assert!(err.contains(want), "{err} does not contain {want}");
        }
        // inet is optional; baseline is not.
        let text = STRICT.replace("inet = false\n", "");
        assert!(!Profile::parse("p.toml", &text).unwrap().seccomp.inet);
        let text = STRICT.replace("baseline = \"default\"\n", "");
        let err = Profile::parse("p.toml", &text).unwrap_err().to_string();
        assert!(err.contains("baseline"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = Profile::load("/nonexistent/p.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/p.toml"), "{err}");
    }
}
