//! One rtnetlink request: RTM_GETLINK for a tun/tap device's owner and group
//! (IFLA_LINKINFO → IFLA_INFO_DATA → IFLA_TUN_OWNER/IFLA_TUN_GROUP). sysfs shows
//! them only for the netns it was mounted in, and the VM's taps usually live in
//! another. Hand-written, a request and a bounded parser: netlink-packet-route
//! (2.6 MB of source and two more crates) leaves tun's info data as raw attributes
//! anyway, so it would not spare the parsing.

use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt::ReceiveTimeout, AddressFamily, MsgFlags,
    NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

/// An RTM_GETLINK exchange that failed.
#[derive(Debug, thiserror::Error)]
pub enum RtnetlinkError {
    #[error("cannot {call} on a NETLINK_ROUTE socket (ifindex {index}): {errno}")]
    Socket {
        call: &'static str,
        index: u32,
        errno: nix::Error,
    },
    #[error("RTM_GETLINK for ifindex {index} refused: {errno}")]
    Kernel { index: u32, errno: nix::Error },
    #[error("malformed RTM_GETLINK reply for ifindex {index}: {what}")]
    Malformed { index: u32, what: &'static str },
}

/// A tun/tap device's owner and group; None where it has none (the kernel's
/// INVALID_UID/GID, which it reports by leaving the attribute out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunIds {
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 1;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_TUN_OWNER: u16 = 1;
const IFLA_TUN_GROUP: u16 = 2;
/// NLA_F_NESTED and NLA_F_NET_BYTEORDER masked off.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// A link message is a few KiB (its statistics included); more is refused.
const REPLY_MAX: usize = 32 * 1024;
const SEQ: u32 = 1;

/// The owner and group of the device `index` in the calling thread's network
/// namespace; None when it is not a tun/tap device.
pub fn tun_ids(index: u32) -> Result<Option<TunIds>, RtnetlinkError> {
    let sock_err = |call: &'static str| move |errno| RtnetlinkError::Socket { call, index, errno };
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(sock_err("create"))?;
    // The kernel answers within the send; the timeout only bounds a lost reply.
    setsockopt(&fd, ReceiveTimeout, &TimeVal::new(1, 0)).map_err(sock_err("set a timeout"))?;
    sendto(
        fd.as_raw_fd(),
        &request(index),
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(sock_err("send RTM_GETLINK"))?;
    let mut buf = vec![0u8; REPLY_MAX];
    // Messages of other sequence numbers (none expected) are skipped, a few times.
    for _ in 0..4 {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC).map_err(sock_err("receive"))?;
        if n > buf.len() {
            return Err(RtnetlinkError::Malformed {
                index,
                what: "reply larger than 32 KiB",
            });
        }
        if let Some(reply) = parse_reply(&buf[..n], index)? {
            return Ok(reply);
        }
    }
    Err(RtnetlinkError::Malformed {
        index,
        what: "no reply with the request's sequence number",
    })
}

/// RTM_GETLINK for one interface index.
fn request(index: u32) -> [u8; NLMSG_HDR + IFINFOMSG] {
    let mut req = [0u8; NLMSG_HDR + IFINFOMSG];
    req[0..4].copy_from_slice(&((NLMSG_HDR + IFINFOMSG) as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    req[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req[8..12].copy_from_slice(&SEQ.to_ne_bytes());
    // ifinfomsg: family AF_UNSPEC, the index, no flags.
    req[NLMSG_HDR + 4..NLMSG_HDR + 8].copy_from_slice(&index.to_ne_bytes());
    req
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The datagram's answer to the request: Some(result) for the message with the
/// request's sequence number, None when it holds none.
fn parse_reply(buf: &[u8], index: u32) -> Result<Option<Option<TunIds>>, RtnetlinkError> {
    let bad = |what| RtnetlinkError::Malformed { index, what };
    let mut at = 0;
    while at < buf.len() {
        let len = u32_at(buf, at).ok_or(bad("truncated message header"))? as usize;
        let end = at
            .checked_add(len)
            .filter(|e| len >= NLMSG_HDR && *e <= buf.len())
            .ok_or(bad("message length out of bounds"))?;
        let msg = &buf[at..end];
        at = end.saturating_add(3) & !3;
        if u32_at(msg, 8) != Some(SEQ) {
            continue;
        }
        let body = &msg[NLMSG_HDR..];
        return match u16_at(msg, 4) {
            Some(NLMSG_ERROR) => {
                let code = u32_at(body, 0).ok_or(bad("truncated error message"))? as i32;
                if code == 0 {
                    return Err(bad("an acknowledgement instead of the link"));
                }
                Err(RtnetlinkError::Kernel {
                    index,
                    errno: nix::Error::from_raw(code.saturating_neg()),
                })
            }
            Some(RTM_NEWLINK) => {
                if u32_at(body, 4) != Some(index) {
                    return Err(bad("a link of another index"));
                }
                let attrs = body.get(IFINFOMSG..).ok_or(bad("truncated ifinfomsg"))?;
                Ok(Some(tun_info(attrs).map_err(bad)?))
            }
            _ => Err(bad("an unexpected message type")),
        };
    }
    Ok(None)
}

/// The link's tun owner and group, from its attributes; None if it is no tun/tap.
fn tun_info(attrs: &[u8]) -> Result<Option<TunIds>, &'static str> {
    let Some(info) = find(attrs, IFLA_LINKINFO)? else {
        return Ok(None);
    };
    let kind = find(info, IFLA_INFO_KIND)?.unwrap_or_default();
    if kind.split(|b| *b == 0).next() != Some(b"tun") {
        return Ok(None);
    }
    let data = find(info, IFLA_INFO_DATA)?.unwrap_or_default();
    let id = |kind| -> Result<Option<u32>, &'static str> {
        match find(data, kind)? {
            None => Ok(None),
            Some(v) => u32_at(v, 0).map(Some).ok_or("a short IFLA_TUN_OWNER/GROUP"),
        }
    };
    Ok(Some(TunIds {
        owner: id(IFLA_TUN_OWNER)?,
        group: id(IFLA_TUN_GROUP)?,
    }))
}

/// The payload of the first attribute of `kind` in a run of rtattrs.
fn find(mut attrs: &[u8], kind: u16) -> Result<Option<&[u8]>, &'static str> {
    while !attrs.is_empty() {
        let len = u16_at(attrs, 0).ok_or("a truncated attribute header")? as usize;
        if len < 4 || len > attrs.len() {
            return Err("an attribute length out of bounds");
        }
        if u16_at(attrs, 2).map(|t| t & NLA_TYPE_MASK) == Some(kind) {
            return Ok(Some(&attrs[4..len]));
        }
        attrs = attrs.get((len + 3) & !3..).unwrap_or_default();
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        v.extend(kind.to_ne_bytes());
        v.extend(payload);
        v.resize((v.len() + 3) & !3, 0);
        v
    }

    fn message(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut v = ((NLMSG_HDR + body.len()) as u32).to_ne_bytes().to_vec();
        v.extend(kind.to_ne_bytes());
        v.extend(0u16.to_ne_bytes());
        v.extend(seq.to_ne_bytes());
        v.extend(0u32.to_ne_bytes());
        v.extend(body);
        v
    }

    fn link(index: u32, kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8; IFINFOMSG];
        body[4..8].copy_from_slice(&index.to_ne_bytes());
        body.extend(attr(3, b"tap0\0"));
        let mut info = attr(IFLA_INFO_KIND, kind);
        info.extend(attr(IFLA_INFO_DATA | 0x8000, data));
        body.extend(attr(IFLA_LINKINFO | 0x8000, &info));
        message(RTM_NEWLINK, SEQ, &body)
    }

    #[test]
    fn the_owner_and_group_are_read_and_absent_means_none() {
        let mut data = attr(IFLA_TUN_OWNER, &4321u32.to_ne_bytes());
        data.extend(attr(3, &[2]));
        let got = parse_reply(&link(7, b"tun\0", &data), 7).unwrap();
        assert_eq!(
            got,
            Some(Some(TunIds {
                owner: Some(4321),
                group: None
            }))
        );
        data.extend(attr(IFLA_TUN_GROUP, &55u32.to_ne_bytes()));
        let got = parse_reply(&link(7, b"tun\0", &data), 7).unwrap().unwrap();
        assert_eq!(got.unwrap().group, Some(55));
    }

    #[test]
    fn other_kinds_and_messages_are_told_apart() {
        // A veth is no tap.
        assert_eq!(
            parse_reply(&link(7, b"veth\0", &[]), 7).unwrap(),
            Some(None)
        );
        // Another sequence number: not the answer.
        assert_eq!(
            parse_reply(&message(RTM_NEWLINK, 9, &[0; 16]), 7).unwrap(),
            None
        );
        let err = message(NLMSG_ERROR, SEQ, &(-19i32).to_ne_bytes());
        match parse_reply(&err, 7) {
            Err(RtnetlinkError::Kernel { errno, .. }) => assert_eq!(errno, nix::Error::ENODEV),
            other => panic!("{other:?}"),
        }
        assert!(parse_reply(&link(8, b"tun\0", &[]), 7).is_err());
    }

    #[test]
    fn lengths_out_of_bounds_are_refused_not_followed() {
        let mut m = link(7, b"tun\0", &attr(IFLA_TUN_OWNER, &1u32.to_ne_bytes()));
        for cut in [3, NLMSG_HDR + 2, m.len() - 2] {
            assert!(parse_reply(&m[..cut], 7).is_err(), "cut at {cut}");
        }
        // An attribute claiming more than its message holds.
        let at = NLMSG_HDR + IFINFOMSG;
        m[at..at + 2].copy_from_slice(&0xfff0u16.to_ne_bytes());
        assert!(parse_reply(&m, 7).is_err());
        m[at..at + 2].copy_from_slice(&2u16.to_ne_bytes());
        assert!(parse_reply(&m, 7).is_err());
        // A short owner attribute.
        assert!(parse_reply(&link(7, b"tun\0", &attr(IFLA_TUN_OWNER, &[1])), 7).is_err());
    }

    #[test]
    fn the_kernel_answers_for_loopback_and_refuses_a_missing_index() {
        // lo (index 1 in every namespace) has no link info: no tap.
        assert_eq!(tun_ids(1).unwrap(), None);
        match tun_ids(u32::MAX >> 1) {
            Err(RtnetlinkError::Kernel { errno, .. }) => assert_eq!(errno, nix::Error::ENODEV),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_request_asks_for_one_index() {
        let r = request(42);
        assert_eq!(u32_at(&r, 0), Some(32));
        assert_eq!(u16_at(&r, 4), Some(RTM_GETLINK));
        assert_eq!(u32_at(&r, NLMSG_HDR + 4), Some(42));
    }
}
