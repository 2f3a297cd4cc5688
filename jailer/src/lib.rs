//! caisson-jailer: takes one guest from an untrusted config to a uniquely confined
//! `caisson` process. [`jail::run`] is the whole sequence, one step per call.

pub mod api_jail;
pub mod audit;
pub mod cgroup;
pub mod child;
pub mod cleanup;
pub mod cli;
pub mod exec_copy;
pub mod fcmode;
pub mod identity;
pub mod jail;
pub mod jailfs;
pub mod labels;
pub mod landlock_rules;
pub mod mcs;
pub mod namespaces;
pub mod netns_pool;
pub mod next_start;
pub mod placement;
pub mod process;
pub mod profile;
pub mod resources;
pub mod rlimits;
pub mod rtnetlink;
pub mod sandbox_plan;
pub mod seccomp_baseline;
pub mod selinux_backend;
pub mod settings;
pub mod shared_labels;
pub mod snapshot_files;
pub mod state;
pub mod supervise;
pub mod tap;
pub mod timing;
