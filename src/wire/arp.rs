//! ARP for IPv4 over Ethernet (RFC 826).

use super::ethernet::Mac;
use super::{Result, WireError, read_u16, write_u16};
use std::net::Ipv4Addr;

/// Bytes in an Ethernet/IPv4 ARP packet (8 fixed, then two MAC and two
/// IPv4 addresses).
pub const PACKET_LEN: usize = 28;
/// ARP operation code of a request (RFC 826 `ares_op$REQUEST`).
pub const OP_REQUEST: u16 = 1;
/// ARP operation code of a reply (RFC 826 `ares_op$REPLY`).
pub const OP_REPLY: u16 = 2;

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
}

/// A view of an ARP packet; only Ethernet/IPv4 ARP is accepted.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer`: [`WireError::Truncated`] below 28 bytes,
    /// [`WireError::Malformed`] unless hardware type 1 (Ethernet), protocol
    /// 0x0800 (IPv4) and address lengths 6 and 4.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if read_u16(b, field::HTYPE) != 1
            || read_u16(b, field::PTYPE) != 0x0800
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(WireError::Malformed);
        }
        Ok(Packet { buffer })
    }

    /// The operation: [`OP_REQUEST`], [`OP_REPLY`], or anything else the
    /// sender wrote (not checked).
    pub fn operation(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::OPER)
    }

    fn mac_at(&self, at: usize) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[at..at + 6]);
        Mac(m)
    }

    fn ip_at(&self, at: usize) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
    }

    /// Sender hardware address (SHA).
    pub fn sender_mac(&self) -> Mac {
        self.mac_at(field::SHA)
    }
    /// Sender protocol address (SPA); equal to the target's in a gratuitous
    /// ARP.
    pub fn sender_ip(&self) -> Ipv4Addr {
        self.ip_at(field::SPA)
    }
    /// Target hardware address (THA); zero in a request.
    pub fn target_mac(&self) -> Mac {
        self.mac_at(field::THA)
    }
    /// Target protocol address (TPA): the address being asked for.
    pub fn target_ip(&self) -> Ipv4Addr {
        self.ip_at(field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Turns a request into the reply `mac` gives for the requested address:
    /// the requester becomes the target, the answer the sender.
    pub fn make_reply(&mut self, mac: Mac) {
        let b = self.buffer.as_mut();
        let mut requester = [0u8; 10];
        requester.copy_from_slice(&b[field::SHA..field::SHA + 10]);
        let mut asked = [0u8; 4];
        asked.copy_from_slice(&b[field::TPA..field::TPA + 4]);
        write_u16(b, field::OPER, OP_REPLY);
        b[field::SHA..field::SHA + 6].copy_from_slice(&mac.0);
        b[field::SPA..field::SPA + 4].copy_from_slice(&asked);
        b[field::THA..field::THA + 10].copy_from_slice(&requester);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> [u8; 28] {
        let mut b = [0u8; 28];
        b[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        b[8..14].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        b[14..18].copy_from_slice(&[172, 16, 0, 10]);
        b[24..28].copy_from_slice(&[172, 16, 0, 1]);
        b
    }

    #[test]
    fn reply_swaps_roles() {
        let mut b = request();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.operation(), OP_REQUEST);
        p.make_reply(Mac([2, 0xee, 0, 0, 0, 1]));
        assert_eq!(p.operation(), OP_REPLY);
        assert_eq!(p.sender_ip(), Ipv4Addr::new(172, 16, 0, 1));
        assert_eq!(p.sender_mac(), Mac([2, 0xee, 0, 0, 0, 1]));
        assert_eq!(p.target_ip(), Ipv4Addr::new(172, 16, 0, 10));
        assert_eq!(p.target_mac(), Mac([2, 0, 0, 0, 0, 9]));
    }

    #[test]
    fn rejects_non_ethernet_ipv4() {
        let mut b = request();
        b[5] = 16;
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(WireError::Malformed)
        );
        assert_eq!(
            Packet::new_checked(&b[..27]).err(),
            Some(WireError::Truncated)
        );
    }
}
