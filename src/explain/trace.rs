//! Trace events in words: one sentence per [`Event`], for `eipsim trace`,
//! `route get` and anyone reading a packet's way through the engine.
//!
//! The engine records values; this is the only place that chooses words
//! for them, with the topology at hand to turn ids into names.

use super::describe;
use crate::config::{
    AlgAction, AlgProtocol, AssociationMode, EipId, EniId, GroupId, GroupType, Peer, RuleDirection,
    Topology,
};
use crate::engine::flow::{Flow, FlowId, FlowKey};
use crate::engine::secgroup::Judgement;
use crate::engine::trace::Checksums;
use crate::engine::{Direction, Event, Link, Verdict};
use crate::wire::ipv4::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use serde_json::{Value, json};

/// An IP protocol number as traces name it: tcp, udp, icmp or "proto N".
pub fn proto_name(p: u8) -> String {
    match p {
        PROTO_TCP => "tcp".into(),
        PROTO_UDP => "udp".into(),
        PROTO_ICMP => "icmp".into(),
        n => format!("proto {n}"),
    }
}

/// A flow key in words: `udp 172.16.0.10:9000 > 198.51.100.7:9000 on instance`.
pub fn key_text(k: &FlowKey) -> String {
    format!(
        "{} {}:{} > {}:{} on {}",
        proto_name(k.proto),
        k.src,
        k.sport,
        k.dst,
        k.dport,
        k.side
    )
}

/// A flow in words, with its three names of the instance endpoint.
pub fn flow_text(topo: &Topology, id: FlowId, f: &Flow) -> String {
    let eip = f
        .eip
        .map(|e| format!(", EIP {}", topo.eip(e).address))
        .unwrap_or_default();
    format!(
        "flow #{id} {} instance {}:{} (ENI {} as {}) <-> {}:{}, public {} on {}{eip}",
        proto_name(f.proto),
        f.inst_addr,
        f.inst_port,
        topo.eni(f.eni).name,
        f.eni_addr,
        f.remote,
        f.remote_port,
        f.pub_addr,
        f.out_port
    )
}

/// A verdict in words, for a frame received on `in_port`.
pub fn verdict_text(topo: &Topology, in_port: Link, v: &Verdict) -> String {
    let via = |eni: Option<EniId>, eip: Option<EipId>| {
        let mut s = String::new();
        if let Some(e) = eni {
            s.push_str(&format!(" via {}", topo.eni(e).name));
        }
        if let Some(e) = eip {
            let e = topo.eip(e);
            s.push_str(&format!(", EIP {} ({})", e.address, e.mode.name()));
        }
        s
    };
    match *v {
        Verdict::Forwarded { port, eni, eip } => {
            format!("forwarded to {port}{}", via(eni, eip))
        }
        Verdict::Fragmented {
            port,
            eni,
            eip,
            pieces,
        } => {
            format!("forwarded to {port} as {pieces} fragments{}", via(eni, eip))
        }
        Verdict::Consumed { reply: Some(p) } => format!("consumed: reply sent on {p}"),
        Verdict::Consumed { reply: None } => "consumed".to_string(),
        Verdict::Dropped { reason, .. } => {
            format!("dropped ({}): {}", reason.name(), reason.explain())
        }
        Verdict::Held => {
            format!("held: a fragment from {in_port} waiting for its first fragment")
        }
    }
}

/// A security group rule in words, in the file's terms: `security group
/// "sg-web" rule (line 14): priority 1 accept ingress tcp 80/80 from
/// 0.0.0.0/0 "web"`.
pub fn rule_text(topo: &Topology, group: GroupId, rule: u16) -> String {
    let g = topo.group(group);
    let r = &g.rules[usize::from(rule)];
    let peer = match r.peer {
        Peer::Cidr(n) => n.to_string(),
        Peer::Group(o) => format!("group {:?}", topo.group(o).name),
    };
    let ports = if r.protocol.has_ports() {
        format!(" {}", r.ports_text())
    } else {
        String::new()
    };
    let desc = if r.description.is_empty() {
        String::new()
    } else {
        format!(" {:?}", r.description)
    };
    format!(
        "security group {:?} rule (line {}): priority {} {} {} {}{ports} {} {peer}{desc}",
        g.name,
        r.line,
        r.priority,
        r.policy.name(),
        r.direction.name(),
        r.protocol.name(),
        match r.direction {
            RuleDirection::Ingress => "from",
            RuleDirection::Egress => "to",
        },
    )
}

/// What decided a security group judgement, in words.
pub fn judgement_text(topo: &Topology, j: &Judgement) -> String {
    match *j {
        Judgement::Rule { group, rule, .. } => rule_text(topo, group, rule),
        Judgement::IntraGroup { group } => format!(
            "members of basic security group {:?} may talk over the VPC (internal_isolation = false), before any rule",
            topo.group(group).name
        ),
        Judgement::Default { kind } => format!(
            "no rule matched: default of a{} {} group ({})",
            if kind == GroupType::Enterprise {
                "n"
            } else {
                ""
            },
            kind.name(),
            match kind {
                GroupType::Basic => "ingress denied, egress allowed",
                GroupType::Enterprise => "ingress and egress denied",
            }
        ),
    }
}

/// What eipsim answers ARP for on a port.
fn stands_for(port: Link) -> &'static str {
    match port {
        Link::Instance => "every address that is not the instance's own (it is the gateway)",
        Link::Internet => "the EIPs",
        Link::Vpc => "the private IPs of ENIs with private networking",
    }
}

fn alg_action(a: AlgAction) -> &'static str {
    match a {
        AlgAction::Drop => "drop",
        AlgAction::Forward => "forward, counted",
    }
}

/// An invalid IPv4 header's fault in words.
fn ipv4_fault(f: &crate::engine::trace::Ipv4Fault) -> String {
    use crate::engine::trace::Ipv4Fault as F;
    match *f {
        F::Short { len } => {
            format!("IPv4 header cut short: {len} bytes, a header has at least 20")
        }
        F::Version { version } => format!("IP version {version}, not 4"),
        F::HeaderLength { header_len, len } if header_len < 20 => {
            format!("IPv4 header length {header_len} bytes (IHL): under 20 ({len} bytes there)")
        }
        F::HeaderLength { header_len, len } => {
            format!("IPv4 header length {header_len} bytes (IHL): beyond the {len} bytes there")
        }
        F::TotalBelowHeader {
            total_len,
            header_len,
        } => format!("IPv4 total length {total_len} is below its header length {header_len}"),
        F::CutShort { total_len, len } => format!(
            "IPv4 total length {total_len}, but only {len} bytes are there: the packet was cut short (a capture's snap length?)"
        ),
        F::Checksum => "IPv4 header checksum does not verify".into(),
        F::PastMaxLength { end } => {
            format!("IPv4 fragment ends at byte {end}, past 65,535 (RFC 791)")
        }
    }
}

/// One event in words.
pub fn text(topo: &Topology, ev: &Event) -> String {
    let eni = |e: EniId| &topo.eni(e).name;
    match ev {
        Event::Receive { port, len, frame } => {
            format!("{len} bytes on {port}: {}", describe::frame(frame))
        }
        Event::ShortFrame { len } => format!("{len} bytes: shorter than an Ethernet header"),
        Event::UnsupportedEthertype { ethertype } => {
            format!("EtherType 0x{ethertype:04x} is neither IPv4 nor ARP")
        }
        Event::Ipv4Invalid { fault } => ipv4_fault(fault),
        Event::ArpMalformed => "not an Ethernet/IPv4 ARP packet, or cut short".into(),
        Event::ArpNotRequest { operation } => {
            format!("operation {operation}: not a request, nothing to answer")
        }
        Event::ArpGratuitous { target } => {
            format!("gratuitous ARP for {target}: nothing to answer")
        }
        Event::ArpNotOurs { port, target } => format!(
            "who-has {target}: on {port} eipsim answers for {}; not this one",
            stands_for(*port)
        ),
        Event::ArpReply { port, target, mac } => format!(
            "who-has {target}: on {port} eipsim answers for {}: {target} is-at {mac}",
            stands_for(*port)
        ),
        Event::TransportTruncated => {
            "the transport header (or the packet an ICMP error quotes) is cut short".into()
        }
        Event::NotUnicast { dst } => {
            format!("destination {dst} is broadcast, multicast or unspecified")
        }
        Event::MartianSource { src } => format!(
            "source {src} is a martian address (0/8, 127/8, 169.254/16, 224/4 or 240/4): no host sends from it, and a router must not forward it (RFC 1812 5.3.7)"
        ),
        Event::MartianDestination { dst } => format!(
            "destination {dst} is a martian address (0/8, 127/8, 169.254/16 or 240/4): a router must not forward to it (RFC 1812 5.3.7)"
        ),
        Event::LinkBroadcast { mac } => format!(
            "a unicast packet in a link-layer broadcast or multicast frame (to {mac}): a router does not forward it (RFC 1812 5.3.4)"
        ),
        Event::SpoofedSource { src, nat_eip } => match nat_eip {
            Some(id) => format!(
                "source {src} is this instance's EIP in NAT mode, which the OS does not have (the seed: a NAT-mode EIP is not shown in the OS); send from {} and the EIP stage maps it",
                topo.eip(*id).private_ip
            ),
            None => format!(
                "source {src} is not an address of the instance (a private IP of an ENI or a cut-through EIP)"
            ),
        },
        Event::TtlExpired { ttl } => format!("TTL {ttl} <= 1: the host path is one hop"),
        Event::ChecksPassed { port, ttl } => format!(
            "TTL {ttl} > 1{}",
            if *port == Link::Instance {
                ", destination unicast"
            } else {
                ""
            }
        ),
        Event::SourceOwned { src, eni: e } => {
            format!("source {src} is an address of the instance ({})", eni(*e))
        }
        Event::LaterFragment { ident } => format!(
            "a later fragment (id {ident}, offset > 0): no ports, it follows its first fragment"
        ),
        Event::FirstDecided { in_port, verdict } => format!(
            "the first fragment decided: {}",
            verdict_text(topo, *in_port, verdict)
        ),
        Event::FragmentHeld => "its first fragment has not come yet: held until it does".into(),
        Event::FlowHit { id, flow } => format!("hit: {}", flow_text(topo, *id, flow)),
        Event::FlowQuoteMismatch {
            id,
            flow,
            dir,
            addr,
            flow_addr,
        } => format!(
            "{} matches the quoted packet, but the error {} {addr}, not {} the flow's address {flow_addr}: not this flow",
            flow_text(topo, *id, flow),
            match dir {
                Direction::Outbound => "comes from",
                Direction::Inbound => "is sent to",
            },
            match dir {
                Direction::Outbound => "from",
                Direction::Inbound => "to",
            },
        ),
        Event::FlowMiss { key, quote } => format!(
            "miss for {}{}",
            key_text(key),
            if *quote {
                " (the flow of the packet this ICMP error quotes)"
            } else {
                ""
            }
        ),
        Event::FlowKeyTaken { dir, key } => match dir {
            Direction::Outbound => format!("{} is already used by another flow", key_text(key)),
            Direction::Inbound => format!(
                "the instance already uses {} for another flow",
                key_text(key)
            ),
        },
        Event::FlowCreated { id, flow, dir } => format!(
            "created: {}{}",
            flow_text(topo, *id, flow),
            match dir {
                Direction::Outbound => "",
                Direction::Inbound => " (replies leave the same way, no route needed)",
            }
        ),
        Event::FlowTableFull { dir, stateless } => match (dir, stateless) {
            (Direction::Outbound, false) => "the table is full and this flow needs state".into(),
            (Direction::Outbound, true) => "the table is full; forwarded without state (replies map back by the static NAT)".into(),
            (Direction::Inbound, false) => "the table is full and the reply would need this flow".into(),
            (Direction::Inbound, true) => "the table is full; forwarded without state (the route table sends replies back the same way)".into(),
        },
        Event::Route {
            src,
            dst,
            candidates,
        } => {
            let list = if candidates.is_empty() {
                "no route matches".to_string()
            } else {
                candidates
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        format!(
                            "{}{}",
                            topo.route_text(&topo.routes[*r]),
                            if i == 0 { " [chosen]" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            format!("{src} > {dst}: {list}")
        }
        Event::Balance {
            balance,
            seed,
            value,
            total,
            bucket,
            nexthops,
            chosen,
        } => {
            let names: Vec<String> = nexthops
                .iter()
                .map(|(e, c)| format!("{} below {c}", eni(*e)))
                .collect();
            let random = *balance == crate::config::Balance::Random;
            let how = if random {
                format!("seeded random draw {value:#018x}")
            } else {
                format!("symmetric 5-tuple hash (seed {seed}) {value:#018x}")
            };
            format!(
                "{how} mod {total} = bucket {bucket} ({}) -> {}{}",
                names.join(", "),
                eni(*chosen),
                if random {
                    "; remembered in the flow"
                } else {
                    ""
                }
            )
        }
        Event::SourceKept { src, eni: e } => {
            format!("{src} is an address of {}: kept", eni(*e))
        }
        Event::SourceSelected {
            src,
            eni: e,
            to,
            cut_through,
        } => format!(
            "{src} is not an address of {}: it becomes {to} (the ENI's {}); replies get {src} back",
            eni(*e),
            if *cut_through {
                "cut-through EIP"
            } else {
                "primary private IP"
            },
        ),
        Event::VpcNoPrivate { dst, eni: e } => format!(
            "{dst} is in the VPC {}, but {} has a cut-through EIP and no private network (seed: private network features unavailable)",
            topo.vpc_cidr,
            eni(*e)
        ),
        Event::Vpc { dst, src } => format!(
            "{dst} is in the VPC {}: out on vpc with the private source {src}",
            topo.vpc_cidr
        ),
        Event::EipNat { eip, private } => format!(
            "{eip} is associated in NAT mode with {private}: source {private} -> {eip}"
        ),
        Event::EipCutThrough { addr, eni: e } => format!(
            "{addr} is {}'s cut-through EIP, its own address: no rewrite",
            eni(*e)
        ),
        Event::EipNone { addr } => format!("{addr} has no EIP associated"),
        Event::LocalDestination { port, dst, found } => match (found, port) {
            (Some((e, Some(id), addr)), _) => match topo.eip(*id).mode {
                AssociationMode::Nat => format!(
                    "{dst} is an EIP of {} in NAT mode: destination -> {addr}",
                    eni(*e)
                ),
                AssociationMode::CutThrough => {
                    format!("{dst} is {}'s cut-through EIP: delivered unchanged", eni(*e))
                }
            },
            (Some((e, None, _)), _) => format!("{dst} is a private IP of {}", eni(*e)),
            (None, Link::Internet) => format!("{dst} is not an EIP of this instance"),
            (None, _) => format!("{dst} is not a private IP of an ENI with private networking"),
        },
        Event::AlgFlow { id, protocol } => format!(
            "flow #{id}: {} is forwarded and counted (action forward)",
            protocol.name()
        ),
        Event::AlgNotApplied { eip, .. } => format!(
            "not applied: {}",
            if *eip {
                "cut-through carries every IP protocol (the seed: FTP, H.323, SIP, DNS, RTSP, TFTP included)"
            } else {
                "the VPC path has no EIP and no NAT ALG"
            }
        ),
        // ICMP queries carry an identifier in both "port" fields.
        Event::AlgSupported { proto: 1, sport, .. } => format!(
            "NAT mode: icmp id {sport} is no protocol on the unsupported list"
        ),
        Event::AlgSupported { proto, sport, dport } => format!(
            "NAT mode: {} {sport} > {dport} is no protocol on the unsupported list",
            proto_name(*proto)
        ),
        Event::AlgUnsupported {
            proto,
            sport,
            dport,
            protocol,
            action,
        } => format!(
            "NAT mode: {} {sport} > {dport} is {}, which the NAT ALG does not support{}; action {}",
            proto_name(*proto),
            protocol.name(),
            if *protocol == AlgProtocol::Ftp {
                " (on this topology's [alg] list)"
            } else {
                " (the seed names H.323, SIP, DNS, RTSP and TFTP)"
            },
            alg_action(*action)
        ),
        Event::Rewrite {
            ttl,
            dir,
            from,
            to,
            sums,
            out,
        } => {
            let what = if dir.is_outbound() {
                "source"
            } else {
                "destination"
            };
            let addr = if from == to {
                format!("{what} {from} unchanged")
            } else {
                format!("{what} {from} -> {to}")
            };
            let sums = match sums {
                Checksums::TtlOnly => {
                    "IPv4 header checksum (TTL only; the transport checksum is untouched)"
                }
                Checksums::Tcp => "IPv4 and TCP checksums",
                Checksums::Udp => "IPv4 and UDP checksums (a zero UDP checksum stays zero)",
                Checksums::IcmpError => {
                    "IPv4 and ICMP checksums, and the quoted packet's address and checksums (RFC 5508)"
                }
                Checksums::Ipv4 => "IPv4 header checksum",
            };
            format!(
                "TTL {ttl} -> {}; {addr}; {sums} updated incrementally (RFC 1624); out on {out}",
                ttl - 1
            )
        }
        Event::RewriteLater {
            ttl,
            before,
            after,
            out,
        } => format!(
            "TTL {ttl} -> {}; addresses {} > {} -> {} > {}; IPv4 header checksum updated incrementally (no transport header in a later fragment); out on {out}",
            ttl - 1,
            before.0,
            before.1,
            after.0,
            after.1
        ),
        Event::Fragmented {
            len,
            port,
            mtu,
            pieces,
        } => format!(
            "{len} bytes exceed {port}'s MTU {mtu} and DF is clear: {pieces} fragments (RFC 791)"
        ),
        Event::IcmpErrorWithheld { why } => match why {
            crate::engine::trace::Withheld::AboutAnError => {
                "no ICMP error goes back: the packet is an ICMP error itself (RFC 1122 3.2.2, RFC 1812 4.3.2.7)".into()
            }
            crate::engine::trace::Withheld::NotFirstFragment => {
                "no ICMP error goes back: the packet is not the first fragment of its datagram (RFC 1122 3.2.2)".into()
            }
            crate::engine::trace::Withheld::RateLimited => {
                "no ICMP error goes back: the port's ICMP error rate limit ([icmp_errors]) is reached (RFC 1812 4.3.2.8)".into()
            }
            crate::engine::trace::Withheld::NoAddress => {
                "no ICMP error goes back: eipsim has no address of its own to send it from on this port".into()
            }
        },
        Event::Hairpin { eip } => format!(
            "{} is this instance's own EIP: the packet turns at the EIP gateway and comes back in through it as from the Internet (hairpinning, RFC 4787 REQ-9); one hop in all, so the TTL above is given back before the second pass",
            topo.eip(*eip).address
        ),
        Event::TimeExceeded { port, from } => format!(
            "ICMP time exceeded in transit back on {port}, from {from} (RFC 1812 5.3.1: the sender sees this hop)"
        ),
        Event::FragNeeded { mtu, port, from } => format!(
            "larger than the egress MTU {mtu} with DF set: ICMP fragmentation-needed (next-hop MTU {mtu}) back on {port} from {from} (RFC 1191)"
        ),
        Event::SecurityGroup {
            eni: e,
            packet,
            judgement,
            allowed,
        } => format!(
            "{} {}{} {} {} at {} (over {}): {}: {}",
            packet.dir.name(),
            proto_name(packet.proto),
            packet.port.map(|p| format!(" port {p}")).unwrap_or_default(),
            match packet.dir {
                RuleDirection::Ingress => "from",
                RuleDirection::Egress => "to",
            },
            packet.peer,
            eni(*e),
            packet.via,
            judgement_text(topo, judgement),
            if *allowed { "allowed" } else { "denied" }
        ),
        Event::SecurityGroupSessionExpired { id, idle_ns } => format!(
            "flow #{id}'s security group session was idle {:.1} s, more than 910 s: the packet is judged again",
            *idle_ns as f64 / 1e9
        ),
        Event::Bandwidth {
            eip,
            dir,
            bytes,
            mbps,
            shared,
            admitted,
        } => {
            let e = topo.eip(*eip);
            let whose = if *shared {
                match e.plan {
                    Some(p) => format!("bandwidth plan {:?}'s", topo.plan(p).name),
                    None => "its plan's".to_string(),
                }
            } else {
                format!("EIP {}'s", e.address)
            };
            format!(
                "{bytes} IP bytes {} {} {whose} {mbps} Mbit/s {} limit",
                if dir.is_outbound() { "toward the Internet:" } else { "from the Internet:" },
                if *admitted { "within" } else { "over" },
                if dir.is_outbound() { "outbound" } else { "inbound" },
            )
        }
        Event::EniDetached { addr, eni: e } => format!(
            "{addr} belongs to {}, which is detached from the instance",
            eni(*e)
        ),
        Event::SmtpBlocked { dst } => format!(
            "TCP to {dst} port 25 on the Internet: the cloud blocks outbound port 25 by default ([cloud] smtp_port_25)"
        ),
        Event::CutThroughReserved { dst, eip } => format!(
            "{dst} is in 100.64.0.0/10, which EIP {} in cut-through mode cannot reach (since 2026-04-23)",
            topo.eip(*eip).address
        ),
        Event::Verdict { in_port, verdict } => verdict_text(topo, *in_port, verdict),
        Event::Released {
            in_port,
            by,
            verdict,
        } => match by {
            Some(n) => format!(
                "released when packet {n} came: {}",
                verdict_text(topo, *in_port, verdict)
            ),
            None => format!(
                "still waiting at the end of the input: {}",
                verdict_text(topo, *in_port, verdict)
            ),
        },
    }
}

/// One event as a JSON object: `step`, `text` (its sentence, from
/// [`text`]), `event` (its kind) and its fields.
pub fn json(ev: &Event, text: &str) -> Value {
    let mut v = serde_json::to_value(ev).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("step".into(), Value::from(ev.step()));
        m.insert("text".into(), Value::from(text));
    }
    v
}

/// A topology event as `trace --events` prints it: `event 1 (line 3) at
/// 1700000005.000000000: detach-eni {"eni":"eth1"}: applied, 2 flow(s)
/// ended`, then one indented line per flow it ended, or per reason it was
/// refused.
pub fn event_text(topo: &Topology, o: &crate::io::events::Outcome) -> String {
    let e = o.event;
    let mut args = serde_json::to_value(&e.op).unwrap_or_default();
    if let Some(m) = args.as_object_mut() {
        m.remove("op");
    }
    let head = format!(
        "event {} (line {}) at {}.{:09}: {} {args}",
        e.index + 1,
        e.line,
        o.ts / 1_000_000_000,
        o.ts % 1_000_000_000,
        e.op.name()
    );
    match &o.result {
        Ok(ended) => {
            let mut s = format!("{head}: applied, {} flow(s) ended\n", ended.len());
            for x in ended {
                s.push_str(&format!(
                    "     ended    {} ({})\n",
                    flow_text(topo, x.id, &x.flow),
                    x.reason.name()
                ));
            }
            s
        }
        Err(reasons) => {
            let mut s = format!("{head}: refused, nothing changed\n");
            for r in reasons {
                s.push_str(&format!("     refused  {r}\n"));
            }
            s
        }
    }
}
