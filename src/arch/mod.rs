//! Architecture support. Only x86_64 is implemented; it knows nothing of devices.

pub mod x86_64;
