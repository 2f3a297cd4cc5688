//! Port I/O and MMIO address dispatch: vCPU exits are routed to the device whose
//! range holds the address, with the offset into that range.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::lock;

/// A device on a bus. Accesses carry the offset from the device's base.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("device range {base:#x}+{len:#x} is empty or overlaps another device")]
    Overlap { base: u64, len: u64 },
}

struct Entry {
    len: u64,
    device: Arc<Mutex<dyn BusDevice>>,
}

/// An address space of non-overlapping device ranges.
#[derive(Default)]
pub struct Bus {
    devices: BTreeMap<u64, Entry>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<_> = self.devices.iter().map(|(b, e)| (*b, e.len)).collect();
        f.debug_struct("Bus").field("ranges", &ranges).finish()
    }
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        device: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), BusError> {
        let end = base.checked_add(len).filter(|_| len > 0);
        let overlaps = |end: u64| {
            self.devices
                .range(..end)
                .next_back()
                .is_some_and(|(b, e)| b + e.len > base)
        };
        match end {
            Some(end) if !overlaps(end) => {
                self.devices.insert(base, Entry { len, device });
                Ok(())
            }
            _ => Err(BusError::Overlap { base, len }),
        }
    }

    fn find(&self, addr: u64) -> Option<(u64, &Entry)> {
        let (base, entry) = self.devices.range(..=addr).next_back()?;
        (addr - base < entry.len).then_some((addr - base, entry))
    }

    /// Reads from the device at `addr`; returns false if no device is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((offset, e)) => {
                lock(&e.device).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Writes to the device at `addr`; returns false if no device is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((offset, e)) => {
                lock(&e.device).write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<(u64, u8)>);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data[0]));
        }
    }

    #[test]
    fn dispatch_and_overlap() {
        let mut bus = Bus::new();
        let dev = Arc::new(Mutex::new(Echo(vec![])));
        bus.insert(0x10, 8, dev.clone()).expect("insert");
        assert!(bus.insert(0x17, 2, dev.clone()).is_err());
        assert!(bus.insert(0x8, 9, dev.clone()).is_err());
        assert!(bus.insert(0x18, 0, dev.clone()).is_err());
        assert!(bus.insert(u64::MAX, 2, dev.clone()).is_err());
        bus.insert(0x18, 1, dev.clone()).expect("adjacent");
        let mut b = [0u8; 1];
        assert!(bus.read(0x13, &mut b));
        assert_eq!(b[0], 3);
        assert!(!bus.read(0x19, &mut b));
        assert!(!bus.read(0x0f, &mut b));
        assert!(bus.write(0x17, &[9]));
        assert_eq!(lock(&dev).0, vec![(7, 9)]);
    }
}
