//! Isolation profiles: one declarative TOML file sets every layer of the jail.
//!
//! The shipped profiles (`policy/profiles/*.toml`) are embedded in the binary, so
//! `--profile strict` works from any directory; any other value is read as a path.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The shipped `strict` profile.
pub const STRICT: &str = include_str!("../../policy/profiles/strict.toml");
/// The shipped `dev` profile.
pub const DEV: &str = include_str!("../../policy/profiles/dev.toml");

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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupSettings {
    /// `"auto"`, `"1"` or `"2"` (a string or an integer in the file).
    pub version: toml::Value,
    pub parent: String,
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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RlimitSettings {
    pub nofile: u64,
    /// A byte count, `"unlimited"` or `"auto"`.
    pub fsize: toml::Value,
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

/// `[selinux]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SelinuxSettings {
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
    pub range: String,
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

/// One whole profile.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub namespaces: Namespaces,
    pub cgroup: CgroupSettings,
    pub resources: ResourceSettings,
    pub rlimits: RlimitSettings,
    pub landlock: LandlockSettings,
    pub selinux: SelinuxSettings,
    pub seccomp: SeccompSettings,
    pub identity: IdentitySettings,
}

/// The cgroup version a profile asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
            "strict" => Self::parse("strict", STRICT),
            "dev" => Self::parse("dev", DEV),
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

    /// Parses and checks profile text; `name` is used in error messages.
    pub fn parse(name: &str, text: &str) -> Result<Self, ProfileError> {
        let profile: Profile = toml::from_str(text).map_err(|e| ProfileError::Parse {
            name: name.to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        profile.check(name)?;
        Ok(profile)
    }

    fn check(&self, name: &str) -> Result<(), ProfileError> {
        let bad = |key: &'static str, value: String, reason: &'static str| ProfileError::Value {
            name: name.to_string(),
            key,
            value,
            reason,
        };
        self.cgroup_version()
            .map_err(|v| bad("cgroup.version", v, "expected \"auto\", 1 or 2"))?;
        crate::cgroup::check_parent(&self.cgroup.parent).map_err(|_| {
            bad(
                "cgroup.parent",
                self.cgroup.parent.clone(),
                "must be a relative path of [A-Za-z0-9._-] components",
            )
        })?;
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
        self.fsize().map_err(|v| {
            bad(
                "rlimits.fsize",
                v,
                "expected bytes, \"unlimited\" or \"auto\"",
            )
        })?;
        crate::mcs::CategoryRange::parse(&self.selinux.range).map_err(|_| {
            bad(
                "selinux.range",
                self.selinux.range.clone(),
                "expected cLO.cHI with LO < HI <= 1023",
            )
        })?;
        let label_parts: [(&'static str, &String); 6] = [
            ("selinux.user", &self.selinux.user),
            ("selinux.role", &self.selinux.role),
            ("selinux.process_type", &self.selinux.process_type),
            ("selinux.image_type", &self.selinux.image_type),
            ("selinux.image_ro_type", &self.selinux.image_ro_type),
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

    /// The cgroup version choice, or the offending value.
    pub fn cgroup_version(&self) -> Result<CgroupVersionChoice, String> {
        match &self.cgroup.version {
            toml::Value::String(s) if s == "auto" => Ok(CgroupVersionChoice::Auto),
            toml::Value::String(s) if s == "1" => Ok(CgroupVersionChoice::V1),
            toml::Value::String(s) if s == "2" => Ok(CgroupVersionChoice::V2),
            toml::Value::Integer(1) => Ok(CgroupVersionChoice::V1),
            toml::Value::Integer(2) => Ok(CgroupVersionChoice::V2),
            other => Err(other.to_string()),
        }
    }

    /// The `fsize` choice, or the offending value.
    pub fn fsize(&self) -> Result<FsizeChoice, String> {
        match &self.rlimits.fsize {
            toml::Value::String(s) if s == "auto" => Ok(FsizeChoice::Auto),
            toml::Value::String(s) if s == "unlimited" => Ok(FsizeChoice::Unlimited),
            toml::Value::Integer(n) if *n > 0 => Ok(FsizeChoice::Bytes(*n as u64)),
            other => Err(other.to_string()),
        }
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
        assert_eq!(strict.fsize(), Ok(FsizeChoice::Auto));
        assert_eq!(strict.cgroup_version(), Ok(CgroupVersionChoice::Auto));
        assert_eq!(strict.seccomp.baseline, BaselineMode::Default);
        assert!(!strict.seccomp.inet);
        let dev = Profile::load("dev").unwrap();
        assert_eq!(dev.seccomp.mode, SeccompMode::Off);
        assert_eq!(dev.seccomp.baseline, BaselineMode::Off);
        assert!(!dev.namespaces.pid);
        assert_eq!(dev.fsize(), Ok(FsizeChoice::Unlimited));
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
