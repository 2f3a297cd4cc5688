//! The snapshot file's framing: what makes a state file recognisable, versioned
//! and verified before a single field of it is trusted.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "CAISSNAP"
//!      8     2  format version, little endian
//!     10     8  payload length n, little endian
//!     18     n  payload: the state, serialized with postcard
//!   18+n     8  CRC-64/ECMA-182 of bytes 0..18+n, little endian
//! ```
//!
//! The reader checks, in this order, the length, the magic, the version, the
//! declared payload length, the checksum, and only then decodes the payload,
//! which must be consumed exactly. Each failure is its own error.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The first bytes of every Caisson snapshot file.
pub const MAGIC: [u8; 8] = *b"CAISSNAP";
/// The format this build writes and the only one it reads.
pub const VERSION: u16 = 1;
/// Largest state file accepted: the state of 32 vCPUs with 4 KiB of XSAVE
/// each and every device is well under 1 MiB.
pub const MAX_FILE_LEN: u64 = 16 << 20;

const HEADER_LEN: usize = 8 + 2 + 8;
const CRC_LEN: usize = 8;
const CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_ECMA_182);

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("the file is too short to be a snapshot ({len} bytes; a snapshot has at least {min})")]
    TooShort { len: usize, min: usize },
    #[error("the file is {len} bytes, over the {max}-byte limit for a snapshot state file")]
    TooLong { len: u64, max: u64 },
    #[error("not a Caisson snapshot (the file starts with {found:02x?}, not \"CAISSNAP\")")]
    Magic { found: [u8; 8] },
    #[error(
        "snapshot format version {found} is not supported: this Caisson ({}) reads version {VERSION} only",
        env!("CARGO_PKG_VERSION")
    )]
    Version { found: u16 },
    #[error("the file is truncated or has trailing bytes: the header declares {declared} bytes of state, the file holds {actual}")]
    Length { declared: u64, actual: u64 },
    #[error("checksum mismatch: the file says {stored:#018x}, its contents give {computed:#018x} (the file is corrupt)")]
    Checksum { stored: u64, computed: u64 },
    #[error("the state does not decode: {0}")]
    Decode(postcard::Error),
    #[error("the state decodes but leaves {0} bytes unread")]
    Trailing(usize),
    #[error("cannot encode the state: {0}")]
    Encode(postcard::Error),
}

/// The whole file for `state`.
pub fn encode<T: Serialize>(state: &T) -> Result<Vec<u8>, FormatError> {
    let payload = postcard::to_stdvec(state).map_err(FormatError::Encode)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + CRC_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    let crc = CRC.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Checks the framing of `file` and decodes its state.
pub fn decode<T: DeserializeOwned>(file: &[u8]) -> Result<T, FormatError> {
    let min = HEADER_LEN + CRC_LEN;
    if file.len() as u64 > MAX_FILE_LEN {
        return Err(FormatError::TooLong {
            len: file.len() as u64,
            max: MAX_FILE_LEN,
        });
    }
    if file.len() < min {
        // A file cut inside the magic is still named as not a snapshot.
        if file.len() >= 8 && file[..8] != MAGIC {
            let mut found = [0u8; 8];
            found.copy_from_slice(&file[..8]);
            return Err(FormatError::Magic { found });
        }
        return Err(FormatError::TooShort {
            len: file.len(),
            min,
        });
    }
    let mut found = [0u8; 8];
    found.copy_from_slice(&file[..8]);
    if found != MAGIC {
        return Err(FormatError::Magic { found });
    }
    let version = u16::from_le_bytes([file[8], file[9]]);
    if version != VERSION {
        return Err(FormatError::Version { found: version });
    }
    let declared = le_u64(&file[10..18]);
    let actual = (file.len() - min) as u64;
    if declared != actual {
        return Err(FormatError::Length { declared, actual });
    }
    let body_end = file.len() - CRC_LEN;
    let stored = le_u64(&file[body_end..]);
    let computed = CRC.checksum(&file[..body_end]);
    if stored != computed {
        return Err(FormatError::Checksum { stored, computed });
    }
    let (state, rest) =
        postcard::take_from_bytes::<T>(&file[HEADER_LEN..body_end]).map_err(FormatError::Decode)?;
    if !rest.is_empty() {
        return Err(FormatError::Trailing(rest.len()));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct S {
        a: u64,
        b: Vec<u8>,
        c: String,
    }

    fn sample() -> Vec<u8> {
        encode(&S {
            a: 7,
            b: vec![1, 2, 3],
            c: "x".into(),
        })
        .expect("encodes")
    }

    #[test]
    fn round_trips() {
        let s: S = decode(&sample()).expect("decodes");
        assert_eq!(s.a, 7);
        assert_eq!(s.b, [1, 2, 3]);
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let good = sample();
        for byte in 0..good.len() {
            for bit in 0..8 {
                let mut f = good.clone();
                f[byte] ^= 1 << bit;
                assert!(decode::<S>(&f).is_err(), "flip of bit {bit} of byte {byte}");
            }
        }
    }

    #[test]
    fn each_fault_is_named() {
        let good = sample();
        let msg = |f: &[u8]| decode::<S>(f).expect_err("refused").to_string();
        assert!(msg(&good[..good.len() - 1]).contains("truncated"));
        assert!(msg(&good[..5]).contains("too short"));
        assert!(msg(b"#!/bin/sh\necho hello world\n").contains("not a Caisson snapshot"));
        let mut v = good.clone();
        v[8] = 99;
        assert!(msg(&v).contains("version 99"));
        let mut c = good.clone();
        let mid = HEADER_LEN + 2;
        c[mid] ^= 0x10;
        assert!(msg(&c).contains("checksum"));
        let mut t = good.clone();
        t.push(0);
        assert!(msg(&t).contains("trailing") || msg(&t).contains("truncated"));
        assert!(msg(&vec![0u8; (MAX_FILE_LEN + 1) as usize]).contains("limit"));
    }

    #[test]
    fn a_valid_frame_around_a_bad_payload_is_a_decode_error() {
        // Right magic, version, length and checksum, but the payload is a
        // huge length prefix with nothing behind it.
        let payload = [0xff, 0xff, 0xff, 0xff, 0x0f];
        let mut f = Vec::new();
        f.extend_from_slice(&MAGIC);
        f.extend_from_slice(&VERSION.to_le_bytes());
        f.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        f.extend_from_slice(&payload);
        let crc = CRC.checksum(&f);
        f.extend_from_slice(&crc.to_le_bytes());
        let e = decode::<S>(&f).expect_err("refused").to_string();
        assert!(e.contains("does not decode"), "{e}");
    }
}
