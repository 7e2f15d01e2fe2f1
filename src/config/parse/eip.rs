//! The `[[eip]]` section and the association rules of the seed's table
//! (NAT and cut-through).

use super::eni::Enis;
use super::{AddressOwners, Checker};
use crate::config::model::{AssociationMode, CUT_THROUGH_REGIONS, Eip, Eni, EniId};
use crate::config::raw::RawEip;
use ipnetwork::Ipv4Network;
use std::net::Ipv4Addr;
use toml::Spanned;

/// An `[[eip]]` whose address and target are valid, about to be checked
/// against the association rules of the seed's table.
struct Candidate<'a> {
    line: usize,
    entry: &'a str,
    eni: &'a Eni,
    private_ip: Ipv4Addr,
    /// The EIPs already associated with the same ENI, in file order.
    others: Vec<&'a Eip>,
}

/// Why `a` cannot be an elastic *public* IP, if it cannot: the ranges of
/// the IANA special-purpose registry (RFC 6890) that are never routed on
/// the Internet, or never to one host. Kept on purpose, though RFC 6890
/// marks them not global: the documentation ranges (192.0.2.0/24,
/// 198.51.100.0/24, 203.0.113.0/24, RFC 5737), which examples use, and
/// the benchmarking range (198.18.0.0/15, RFC 2544), which labs use. A
/// router drops the martian ones (RFC 1812 5.3.7), so such an EIP could
/// not be reached either way.
pub(crate) fn not_public(a: Ipv4Addr) -> Option<&'static str> {
    let o = a.octets();
    Some(if o[0] == 0 {
        "in 0.0.0.0/8, \"this network\" (RFC 1122)"
    } else if a.is_loopback() {
        "a loopback address (127.0.0.0/8)"
    } else if a.is_private() {
        "a private address (RFC 1918)"
    } else if o[0] == 100 && o[1] & 0xc0 == 64 {
        "in 100.64.0.0/10, the shared address space (RFC 6598)"
    } else if o[..3] == [192, 0, 0] {
        "in 192.0.0.0/24, the IETF protocol assignments (RFC 6890)"
    } else if a.is_link_local() {
        "a link-local address (169.254.0.0/16, RFC 3927)"
    } else if a.is_multicast() {
        "a multicast address (224.0.0.0/4)"
    } else if a.is_broadcast() {
        "the limited broadcast address"
    } else if o[0] >= 240 {
        "in 240.0.0.0/4, reserved (RFC 1112)"
    } else {
        return None;
    })
}

impl Checker<'_> {
    /// The `[[eip]]` entries: a public address outside the VPC, unique in
    /// the file, on an existing ENI and one of its private IPs, following
    /// the association rules of its mode.
    pub(super) fn eips(
        &mut self,
        raw: &[Spanned<RawEip>],
        enis: &Enis,
        region: &str,
        vpc: Option<Ipv4Network>,
        owners: &mut AddressOwners,
    ) -> Vec<Eip> {
        let mut eips: Vec<Eip> = Vec::new();
        for raw_eip in raw {
            let line = self.lines.of(raw_eip);
            let e = raw_eip.get_ref();
            let entry = format!("[[eip]] {}", e.address.get_ref());
            let Some(address) = self.ip(&e.address, &entry, "address") else {
                continue;
            };
            if let Some(vpc) = vpc
                && vpc.contains(address)
            {
                self.err(
                    line,
                    &entry,
                    format!("an EIP must be a public address outside vpc_cidr {vpc}"),
                );
            } else if let Some(why) = not_public(address) {
                self.err(
                    line,
                    &entry,
                    format!("an EIP must be a public address; {address} is {why}"),
                );
            }
            if !self.claim(owners, address, &entry, line) {
                continue;
            }
            if eips.len() >= usize::from(u16::MAX) {
                self.err(line, &entry, "too many EIPs (at most 65535)");
                break;
            }
            let Some((eni_id, private_ip)) = self.eip_target(e, &entry, enis) else {
                continue;
            };
            let candidate = Candidate {
                line,
                entry: &entry,
                eni: &enis.list[usize::from(eni_id.0)],
                private_ip,
                others: eips.iter().filter(|o| o.eni == eni_id).collect(),
            };
            match e.mode {
                AssociationMode::Nat => self.nat_rules(&candidate),
                AssociationMode::CutThrough => self.cut_through_rules(&candidate, region),
            }
            let (bandwidth_mbps, inbound_mbps) = self.eip_bandwidth(e, &entry);
            eips.push(Eip {
                address,
                eni: eni_id,
                mode: e.mode,
                private_ip,
                bandwidth_mbps,
                inbound_mbps,
                plan: None,
                associated: true,
                line,
            });
        }
        eips
    }

    /// The ENI an `[[eip]]` names and the private IP it maps to or is bound
    /// to: `private_ip` if given (it must be one of the ENI's), else the
    /// ENI's primary private IP. `None` after an error, and silently for an
    /// ENI without private IPs (already reported).
    fn eip_target(&mut self, e: &RawEip, entry: &str, enis: &Enis) -> Option<(EniId, Ipv4Addr)> {
        let Some(&eni_id) = enis.by_name.get(e.eni.get_ref()) else {
            let l = self.lines.of(&e.eni);
            self.err(l, entry, format!("no ENI is named {:?}", e.eni.get_ref()));
            return None;
        };
        let eni = &enis.list[usize::from(eni_id.0)];
        let &primary_ip = eni.private_ips.first()?;
        let private_ip = match &e.private_ip {
            None => primary_ip,
            Some(s) => {
                let ip = self.ip(s, entry, "private_ip")?;
                if !eni.private_ips.contains(&ip) {
                    let l = self.lines.of(s);
                    self.err(
                        l,
                        entry,
                        format!("private_ip {ip} is not a private IP of ENI {:?}", eni.name),
                    );
                    return None;
                }
                ip
            }
        };
        Some((eni_id, private_ip))
    }

    /// NAT mode, the seed's table: no EIP beside a cut-through one; at most
    /// 1 EIP on the primary ENI; on a secondary ENI, as many as it has
    /// private IPs, each EIP mapped to a distinct one. Reports the first
    /// rule broken.
    fn nat_rules(&mut self, e: &Candidate) {
        let (line, entry, eni, others) = (e.line, e.entry, e.eni, &e.others);
        if let Some(ct) = others
            .iter()
            .find(|o| o.mode == AssociationMode::CutThrough)
        {
            self.err(line, entry, format!(
                "ENI {:?} already has EIP {} in cut-through mode (line {}): a cut-through ENI carries exactly one EIP",
                eni.name, ct.address, ct.line));
        } else if eni.primary && !others.is_empty() {
            self.err(
                line,
                entry,
                format!(
                    "NAT on the primary ENI {:?} allows at most 1 EIP; it already has {} (line {})",
                    eni.name, others[0].address, others[0].line
                ),
            );
        } else if let Some(o) = others.iter().find(|o| o.private_ip == e.private_ip) {
            self.err(line, entry, format!(
                "private IP {} of ENI {:?} is already mapped to EIP {} (line {}): on a secondary ENI each EIP needs a distinct private IP",
                e.private_ip, eni.name, o.address, o.line));
        }
    }

    /// Cut-through mode, the seed's table and note: secondary ENIs only;
    /// exactly one EIP on the ENI; bound to its primary private IP; only in
    /// [`CUT_THROUGH_REGIONS`]. Reports every rule broken.
    fn cut_through_rules(&mut self, e: &Candidate, region: &str) {
        let (line, entry, eni, private_ip) = (e.line, e.entry, e.eni, e.private_ip);
        let primary_ip = eni.primary_ip();
        if eni.primary {
            self.err(
                line,
                entry,
                format!(
                    "cut-through mode is for secondary ENIs only; {:?} is the primary ENI",
                    eni.name
                ),
            );
        }
        if let Some(o) = e.others.first() {
            self.err(line, entry, format!(
                "ENI {:?} already has EIP {} (line {}): in cut-through mode an ENI carries exactly one EIP",
                eni.name, o.address, o.line));
        }
        if private_ip != primary_ip {
            self.err(line, entry, format!(
                "cut-through binds the EIP to the ENI's primary private IP {primary_ip}, not {private_ip}"));
        }
        if !CUT_THROUGH_REGIONS.contains(&region) {
            self.err(
                line,
                entry,
                format!(
                    "cut-through mode is not available in region {region:?}; it exists in: {}",
                    CUT_THROUGH_REGIONS.join(", ")
                ),
            );
        }
    }
}
