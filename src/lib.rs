//! Caisson: a minimal, security-hardened KVM VMM.
//!
//! Data flows one way: [`config`] validates user input into a [`config::ValidConfig`],
//! [`builder::build_vm`] turns that into a running [`vm::Vm`] in one ordered sequence.

pub mod api;
pub mod arch;
pub mod backing_file;
pub mod builder;
pub mod config;
pub mod controller;
pub mod demo;
pub mod devices;
pub mod exit;
pub mod logger;
pub mod memory;
pub mod metrics;
pub mod rate_limiter;
pub mod sandbox;
pub mod seccomp;
pub mod snapshot;
pub mod vcpu;
pub mod vm;
