//! `eipsim reach`: its flags and the command.

use super::load;
use std::path::PathBuf;
use std::process::ExitCode;

/// `eipsim reach`'s flags.
#[derive(clap::Args)]
pub(super) struct ReachArgs {
    /// The topology file (default: the built-in example of `demo`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Only what is about this address: the blocks inbound to it (an EIP,
    /// or a private IP from the VPC) and outbound from it.
    #[arg(long, value_name = "ADDR")]
    address: Option<std::net::Ipv4Addr>,
    /// Only the inbound blocks.
    #[arg(long, conflicts_with = "outbound")]
    inbound: bool,
    /// Only the outbound blocks.
    #[arg(long)]
    outbound: bool,
    /// Only the lines about this protocol: tcp, udp, icmp, gre or other
    /// (lines about every protocol, such as a martian source, stay).
    #[arg(long, value_name = "PROTO", value_parser = parse_proto)]
    proto: Option<crate::explain::reach::ProtoClass>,
}

fn parse_proto(s: &str) -> Result<crate::explain::reach::ProtoClass, String> {
    use crate::explain::reach::ProtoClass;
    ProtoClass::ALL
        .into_iter()
        .find(|c| c.name() == s)
        .ok_or_else(|| format!("unknown protocol {s:?}: use tcp, udp, icmp, gre or other"))
}

/// Prints what reaches the instance and what it reaches, for every flow.
/// Exit status: 0 done; 1 the topology is invalid (every problem printed
/// with file and line, as `check` does); 2 an `--address` the instance
/// does not have.
pub(super) fn reach_cmd(args: ReachArgs) -> ExitCode {
    let topo = match &args.config {
        Some(c) => match load(c) {
            Some(t) => t,
            None => return ExitCode::from(1),
        },
        None => crate::config::Topology::from_toml(&crate::demo::demo().topology)
            .expect("the built-in topology is valid"),
    };
    if let Some(a) = args.address {
        let eips = topo.eips.iter().map(|e| e.address);
        let private = topo.enis.iter().flat_map(|e| e.private_ips.iter().copied());
        let own: Vec<String> = eips.chain(private).map(|x| x.to_string()).collect();
        if !own.contains(&a.to_string()) {
            // An empty answer would read as "nothing reaches it".
            eprintln!(
                "eipsim reach: --address {a} is neither an EIP nor a private IP of this instance (its addresses: {})",
                own.join(", ")
            );
            return ExitCode::from(2);
        }
    }
    let mut r = crate::explain::reach::reach(&topo);
    if let Some(a) = args.address {
        r.inbound.retain(|b| b.to == a);
        r.outbound.retain(|b| b.from == a);
    }
    if let Some(p) = args.proto {
        let keep = |l: &crate::explain::reach::Line| l.protocol.is_none_or(|c| c == p);
        for b in &mut r.inbound {
            b.lines.retain(keep);
        }
        r.inbound.retain(|b| !b.lines.is_empty());
        for o in &mut r.outbound {
            for path in &mut o.paths {
                path.lines.retain(keep);
            }
            o.paths.retain(|p| !p.lines.is_empty());
        }
        r.outbound.retain(|o| !o.paths.is_empty());
    }
    if args.inbound {
        r.outbound.clear();
    }
    if args.outbound {
        r.inbound.clear();
    }
    if args.json {
        say!("{}", r.json());
    } else {
        say!("{}", r.text().trim_end());
    }
    ExitCode::SUCCESS
}
