//! The `[[eni]]` section, and the rule that exactly one ENI is primary.

use super::{AddressOwners, Checker};
use crate::config::model::{Eni, EniId};
use crate::config::raw::RawEni;
use ipnetwork::Ipv4Network;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use toml::Spanned;

/// The `[[eni]]` entries accepted so far, and what later sections need.
pub(super) struct Enis {
    /// In file order, without those rejected as duplicates; [`EniId`]
    /// indexes this.
    pub(super) list: Vec<Eni>,
    pub(super) by_name: HashMap<String, EniId>,
    /// Name and line of each ENI with `primary = true`, in file order.
    pub(super) primaries: Vec<(String, usize)>,
    /// Whether the file set each ENI's `gateway` (indexed like `list`).
    pub(super) gateway_given: Vec<bool>,
}

impl Checker<'_> {
    /// The `[[eni]]` entries: names non-empty and unique, at least one
    /// private IP each (the first is the primary private IP), all inside
    /// the VPC and unique in the file.
    pub(super) fn enis(
        &mut self,
        raw: &[Spanned<RawEni>],
        vpc: Option<Ipv4Network>,
        owners: &mut AddressOwners,
    ) -> Enis {
        let mut enis = Enis {
            list: Vec::new(),
            by_name: HashMap::new(),
            primaries: Vec::new(),
            gateway_given: Vec::new(),
        };
        for raw_eni in raw {
            let line = self.lines.of(raw_eni);
            let e = raw_eni.get_ref();
            let entry = format!("[[eni]] {:?}", e.name);
            if e.name.is_empty() {
                self.err(line, &entry, "the ENI name is empty");
            } else if e.name.len() > 200 {
                // Room for .pcapng within a file name's 255 bytes.
                self.err(
                    line,
                    &entry,
                    "an ENI name has at most 200 bytes (it names the ENI's capture file)",
                );
            } else if e.name == "."
                || e.name == ".."
                || e.name.chars().any(|c| c == '/' || c.is_control())
            {
                // The name names files (replay's eni/NAME.pcap, run's
                // captures): it must stay one file name in that folder.
                self.err(
                    line,
                    &entry,
                    "an ENI name cannot be . or .., nor hold a / or a control character (it names the ENI's capture file)",
                );
            }
            if let Some(&other) = enis.by_name.get(&e.name) {
                let first = enis.list[usize::from(other.0)].line;
                self.err(
                    line,
                    &entry,
                    format!("duplicate ENI name (first defined on line {first})"),
                );
                continue;
            }
            if e.private_ips.is_empty() {
                self.err(
                    line,
                    &entry,
                    "an ENI needs at least one private IP (the first is its primary private IP)",
                );
            }
            let ips = self.private_ips(&e.private_ips, &entry, vpc, owners);
            let gateway = self.gateway(e.gateway.as_ref(), ips.first(), &entry, line, vpc);
            if e.primary {
                enis.primaries.push((e.name.clone(), line));
            }
            if enis.list.len() >= usize::from(u16::MAX) {
                self.err(line, &entry, "too many ENIs");
                break;
            }
            enis.by_name
                .insert(e.name.clone(), EniId(enis.list.len() as u16));
            enis.gateway_given.push(e.gateway.is_some());
            enis.list.push(Eni {
                name: e.name.clone(),
                primary: e.primary,
                private_ips: ips,
                gateway,
                security_groups: Vec::new(),
                attached: e.attached.as_ref().is_none_or(|a| *a.get_ref()),
                line,
            });
            if e.primary && e.attached.as_ref().is_some_and(|a| !*a.get_ref()) {
                let l = self.lines.of(e.attached.as_ref().expect("checked"));
                self.err(
                    l,
                    &entry,
                    "the primary ENI cannot be detached from the instance (attached = false is for secondary ENIs)",
                );
            }
        }
        enis
    }

    /// The `private_ips` of one `[[eni]]`: the valid ones, in file order
    /// (an address used twice is reported and still kept).
    fn private_ips(
        &mut self,
        raw: &[Spanned<String>],
        entry: &str,
        vpc: Option<Ipv4Network>,
        owners: &mut AddressOwners,
    ) -> Vec<Ipv4Addr> {
        let mut ips = Vec::new();
        for s in raw {
            let Some(ip) = self.ip(s, entry, "private IP") else {
                continue;
            };
            let l = self.lines.of(s);
            if let Some(vpc) = vpc
                && !vpc.contains(ip)
            {
                self.err(
                    l,
                    entry,
                    format!("private IP {ip} is outside vpc_cidr {vpc}"),
                );
            }
            self.claim(owners, ip, entry, l);
            ips.push(ip);
        }
        ips
    }

    /// The `gateway` of one `[[eni]]`, inside the VPC; without one, the
    /// .253 of the primary private IP's /24 (see [`Eni::gateway`]).
    fn gateway(
        &mut self,
        raw: Option<&Spanned<String>>,
        primary: Option<&Ipv4Addr>,
        entry: &str,
        line: usize,
        vpc: Option<Ipv4Network>,
    ) -> Ipv4Addr {
        let default = primary.map_or(Ipv4Addr::UNSPECIFIED, |p| {
            let o = p.octets();
            Ipv4Addr::new(o[0], o[1], o[2], 253)
        });
        let Some(s) = raw else {
            return default;
        };
        let Some(gw) = self.ip(s, entry, "gateway") else {
            return default;
        };
        if let Some(vpc) = vpc
            && !vpc.contains(gw)
        {
            self.err(
                self.lines.of(s).max(line),
                entry,
                format!("gateway {gw} is outside vpc_cidr {vpc}"),
            );
        }
        gw
    }

    /// No ENI's gateway (given or implied) is an address an ENI or EIP
    /// uses: the instance would send to itself. `given[i]`: the file set
    /// the gateway of `enis[i]`.
    pub(super) fn gateways(&mut self, enis: &[Eni], given: &[bool], owners: &AddressOwners) {
        for (e, &given) in enis.iter().zip(given) {
            if let Some((who, at)) = owners.get(&e.gateway) {
                let msg = if given {
                    format!(
                        "gateway {} is an address of the instance ({who} on line {at}): the vSwitch gateway is another host",
                        e.gateway
                    )
                } else {
                    format!(
                        "the implied gateway {} (.253 of the primary private IP's /24) is used by {who} on line {at}: set gateway = \"...\" to the ENI's vSwitch gateway",
                        e.gateway
                    )
                };
                self.err(e.line, format!("[[eni]] {:?}", e.name), msg);
            }
        }
    }

    /// Exactly one ENI is primary (the seed's table tells primary from
    /// secondary ENIs, and its FAQ sends packets from the primary ENI by
    /// default). With none, the error is on the line of `region` (at least
    /// 1); with several, on each but the first.
    pub(super) fn one_primary_eni(
        &mut self,
        primaries: &[(String, usize)],
        region: &Spanned<String>,
    ) {
        match primaries.len() {
            1 => {}
            0 => self.err(
                self.lines.of(region).max(1),
                "[[eni]]",
                "no ENI has primary = true: exactly one primary ENI is required",
            ),
            _ => {
                for (name, line) in &primaries[1..] {
                    self.err(
                        *line,
                        format!("[[eni]] {name:?}"),
                        format!(
                            "a second primary ENI ({:?} on line {} is primary): exactly one is allowed",
                            primaries[0].0, primaries[0].1
                        ),
                    );
                }
            }
        }
    }
}
