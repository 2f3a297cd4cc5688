//! virtio-vsock (work in progress).

use super::VirtioDevice;
use crate::config::devices::ValidVsock;

#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    #[error("vsock (cid {0}): not implemented yet")]
    NotImplemented(u32),
}

pub fn from_config(v: &ValidVsock) -> Result<Box<dyn VirtioDevice>, VsockError> {
    Err(VsockError::NotImplemented(v.cid))
}
