//! virtio-vsock packets: the 44-byte little-endian header and the checks on a
//! packet the guest sent. Pure functions over byte slices (fuzzed).

pub const HDR_LEN: usize = 44;
/// Largest payload of one packet (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
pub const MAX_PAYLOAD: u32 = 64 << 10;

pub const TYPE_STREAM: u16 = 1;

pub const OP_REQUEST: u16 = 1;
pub const OP_RESPONSE: u16 = 2;
pub const OP_RST: u16 = 3;
pub const OP_SHUTDOWN: u16 = 4;
pub const OP_RW: u16 = 5;
pub const OP_CREDIT_UPDATE: u16 = 6;
pub const OP_CREDIT_REQUEST: u16 = 7;

pub const SHUTDOWN_RCV: u32 = 1;
pub const SHUTDOWN_SEND: u32 = 2;

pub const HOST_CID: u64 = 2;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub kind: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet of {len} bytes is shorter than the {HDR_LEN}-byte header")]
    Short { len: usize },
    #[error("packet payload length {len} exceeds {MAX_PAYLOAD}")]
    TooLong { len: u32 },
    #[error("packet payload length {len} exceeds the {have} bytes the buffer holds")]
    Truncated { len: u32, have: usize },
    #[error("packet from cid {src} to cid {dst}: expected {guest} to {HOST_CID}")]
    Cid { src: u64, dst: u64, guest: u64 },
    #[error("packet op {op} is unknown")]
    Op { op: u16 },
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from(u32_at(b, o)) | (u64::from(u32_at(b, o + 4)) << 32)
}

impl Header {
    /// Decodes the first [`HDR_LEN`] bytes of `b`.
    pub fn decode(b: &[u8]) -> Result<Self, PacketError> {
        if b.len() < HDR_LEN {
            return Err(PacketError::Short { len: b.len() });
        }
        Ok(Self {
            src_cid: u64_at(b, 0),
            dst_cid: u64_at(b, 8),
            src_port: u32_at(b, 16),
            dst_port: u32_at(b, 20),
            len: u32_at(b, 24),
            kind: u16_at(b, 28),
            op: u16_at(b, 30),
            flags: u32_at(b, 32),
            buf_alloc: u32_at(b, 36),
            fwd_cnt: u32_at(b, 40),
        })
    }

    pub fn encode(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.kind.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// Checks a packet the guest sent (`bytes` = header + everything after it in the
/// chain) and returns its header and payload.
pub fn parse_tx(bytes: &[u8], guest_cid: u64) -> Result<(Header, &[u8]), PacketError> {
    let h = Header::decode(bytes)?;
    if h.len > MAX_PAYLOAD {
        return Err(PacketError::TooLong { len: h.len });
    }
    let have = bytes.len() - HDR_LEN;
    if h.len as usize > have {
        return Err(PacketError::Truncated { len: h.len, have });
    }
    if h.src_cid != guest_cid || h.dst_cid != HOST_CID {
        return Err(PacketError::Cid {
            src: h.src_cid,
            dst: h.dst_cid,
            guest: guest_cid,
        });
    }
    if !(OP_REQUEST..=OP_CREDIT_REQUEST).contains(&h.op) {
        return Err(PacketError::Op { op: h.op });
    }
    Ok((h, &bytes[HDR_LEN..HDR_LEN + h.len as usize]))
}

/// Parses a host-initiated connection's first line, `CONNECT <port>\n`.
pub fn parse_connect(line: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(line).ok()?;
    let s = s.strip_suffix('\n')?;
    let port = s.strip_prefix("CONNECT ")?;
    if port.is_empty() || port.len() > 10 || !port.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    port.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(len: u32, payload: &[u8]) -> Vec<u8> {
        let h = Header {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 1000,
            dst_port: 5000,
            len,
            kind: TYPE_STREAM,
            op: OP_RW,
            flags: 0,
            buf_alloc: 4096,
            fwd_cnt: 7,
        };
        let mut v = h.encode().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn header_round_trip_and_payload() {
        let v = pkt(5, b"hello, and more");
        let (h, p) = parse_tx(&v, 3).unwrap();
        assert_eq!(
            (h.src_port, h.dst_port, h.fwd_cnt, h.op),
            (1000, 5000, 7, OP_RW)
        );
        assert_eq!(p, b"hello");
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn bad_packets_are_named() {
        assert_eq!(parse_tx(&[0; 43], 3), Err(PacketError::Short { len: 43 }));
        assert_eq!(
            parse_tx(&pkt(6, b"hello"), 3),
            Err(PacketError::Truncated { len: 6, have: 5 })
        );
        assert!(matches!(
            parse_tx(&pkt(MAX_PAYLOAD + 1, b""), 3),
            Err(PacketError::TooLong { .. })
        ));
        assert!(matches!(
            parse_tx(&pkt(0, b""), 4),
            Err(PacketError::Cid { src: 3, .. })
        ));
        let mut v = pkt(0, b"");
        v[30] = 9;
        assert_eq!(parse_tx(&v, 3), Err(PacketError::Op { op: 9 }));
    }

    #[test]
    fn connect_lines() {
        assert_eq!(parse_connect(b"CONNECT 52\n"), Some(52));
        assert_eq!(parse_connect(b"CONNECT 4294967295\n"), Some(u32::MAX));
        for bad in [
            &b"CONNECT 52"[..],
            b"CONNECT \n",
            b"connect 52\n",
            b"CONNECT -1\n",
            b"CONNECT 4294967296\n",
            b"CONNECT 5 2\n",
        ] {
            assert_eq!(
                parse_connect(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
