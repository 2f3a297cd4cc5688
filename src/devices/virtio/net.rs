//! virtio-net (work in progress).

use super::VirtioDevice;
use crate::config::devices::ValidNet;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("interface {0}: virtio-net is not implemented yet")]
    NotImplemented(String),
}

pub fn from_config(n: &ValidNet) -> Result<Box<dyn VirtioDevice>, NetError> {
    Err(NetError::NotImplemented(n.id.clone()))
}
