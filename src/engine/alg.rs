//! The NAT ALG policy: which application protocols an EIP in NAT mode does
//! not carry, recognised by their well-known ports (either direction).

use crate::config::{AlgAction, AlgPolicy, AlgProtocol};
use crate::wire::ipv4::{PROTO_TCP, PROTO_UDP};

/// The well-known ports of each protocol, by transport.
pub fn well_known_ports(p: AlgProtocol) -> &'static [(u8, u16)] {
    match p {
        AlgProtocol::H323 => &[(PROTO_TCP, 1720), (PROTO_UDP, 1719)],
        AlgProtocol::Sip => &[(PROTO_UDP, 5060), (PROTO_TCP, 5060), (PROTO_TCP, 5061)],
        AlgProtocol::Rtsp => &[(PROTO_TCP, 554), (PROTO_UDP, 554)],
        AlgProtocol::Tftp => &[(PROTO_UDP, 69)],
        AlgProtocol::Dns => &[(PROTO_UDP, 53), (PROTO_TCP, 53)],
        AlgProtocol::Ftp => &[(PROTO_TCP, 21)],
    }
}

/// The policy compiled to a flat list of (transport, port, protocol).
#[derive(Debug, Clone)]
pub struct Alg {
    rules: Vec<(u8, u16, AlgProtocol)>,
    /// What happens to a new NAT flow of a listed protocol (`[alg] action`).
    pub action: AlgAction,
}

impl Alg {
    /// The rules of `policy`: every well-known port of each unsupported
    /// protocol.
    pub fn new(policy: &AlgPolicy) -> Self {
        let rules = policy
            .unsupported
            .iter()
            .flat_map(|&p| {
                well_known_ports(p)
                    .iter()
                    .map(move |&(t, port)| (t, port, p))
            })
            .collect();
        Alg {
            rules,
            action: policy.action,
        }
    }

    /// The unsupported protocol a packet belongs to, if any.
    #[inline]
    pub fn recognise(&self, proto: u8, sport: u16, dport: u16) -> Option<AlgProtocol> {
        self.rules
            .iter()
            .find(|&&(t, port, _)| t == proto && (port == sport || port == dport))
            .map(|&(_, _, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_either_direction() {
        let alg = Alg::new(&AlgPolicy {
            unsupported: AlgProtocol::DEFAULT_UNSUPPORTED.to_vec(),
            action: AlgAction::Drop,
        });
        assert_eq!(
            alg.recognise(PROTO_UDP, 40000, 5060),
            Some(AlgProtocol::Sip)
        );
        assert_eq!(
            alg.recognise(PROTO_UDP, 5060, 40000),
            Some(AlgProtocol::Sip)
        );
        assert_eq!(alg.recognise(PROTO_TCP, 5061, 1), Some(AlgProtocol::Sip));
        assert_eq!(alg.recognise(PROTO_UDP, 5061, 1), None);
        assert_eq!(alg.recognise(PROTO_TCP, 1720, 1), Some(AlgProtocol::H323));
        assert_eq!(alg.recognise(PROTO_UDP, 1, 69), Some(AlgProtocol::Tftp));
        assert_eq!(alg.recognise(PROTO_TCP, 1, 69), None);
        // FTP is known but not on the default list.
        assert_eq!(alg.recognise(PROTO_TCP, 1, 21), None);
        assert_eq!(alg.recognise(PROTO_TCP, 1, 443), None);
    }
}
