//! `eipsim ctl`: one operation or question to a running `eipsim run`, over
//! its control socket (protocol: `src/io/live/control.rs`, README).
//!
//! Exit status: 0 applied (or answered), 1 refused, 2 no such socket or
//! bad arguments.

use crate::config::{AssociationMode, Operation, RouteSpec, RuleSpec, Via};
use crate::io::live::control::DEFAULT_SOCKET;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

/// `eipsim ctl`'s flags.
#[derive(clap::Args)]
pub(super) struct CtlArgs {
    /// The control socket of the run.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print the answer as one JSON line.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(clap::Subcommand)]
enum CtlCommand {
    /// Attach a detached secondary ENI.
    AttachEni { eni: String },
    /// Detach a secondary ENI (its flows end).
    DetachEni { eni: String },
    /// Associate an EIP with an ENI.
    AssociateEip {
        address: Ipv4Addr,
        #[arg(long)]
        eni: String,
        #[arg(long, value_parser = ["nat", "cut-through"])]
        mode: String,
        #[arg(long)]
        private_ip: Option<Ipv4Addr>,
        /// Peak bandwidth toward the Internet, Mbit/s.
        #[arg(long)]
        bandwidth_mbps: Option<u32>,
        /// From the Internet, Mbit/s (default: the cloud's rule).
        #[arg(long)]
        inbound_mbps: Option<u32>,
    },
    /// Take an EIP off its ENI (its flows end).
    UnassociateEip { address: Ipv4Addr },
    /// Give an ENI one more private IP.
    AssignPrivateIp { eni: String, private_ip: Ipv4Addr },
    /// Take a secondary private IP off an ENI.
    UnassignPrivateIp { eni: String, private_ip: Ipv4Addr },
    /// Change the instance OS's route table: add, del or replace.
    Route {
        #[arg(value_parser = ["add", "del", "replace"])]
        action: String,
        dst: String,
        /// A next-hop ENI (repeat, or list with commas, for load
        /// balancing).
        #[arg(long, value_delimiter = ',')]
        via: Vec<String>,
        #[arg(long, value_delimiter = ',')]
        weights: Vec<i64>,
        #[arg(long, value_parser = ["hash", "random"])]
        balance: Option<String>,
        #[arg(long)]
        metric: Option<u32>,
        #[arg(long)]
        from: Option<String>,
    },
    /// Add a rule to a security group.
    Authorize(RuleArgs),
    /// Remove a rule from a security group.
    Revoke(RuleArgs),
    /// Put an ENI in a security group.
    Join { eni: String, security_group: String },
    /// Take an ENI out of a security group.
    Leave { eni: String, security_group: String },
    /// Trace the next N packets the run processes, as `trace` prints
    /// them (like VPP's `trace add`).
    Trace {
        #[arg(value_parser = clap::value_parser!(u32).range(1..=10_000))]
        count: u32,
    },
    /// Show the run's topology (as a file), its flows or its counters.
    Show {
        #[arg(value_parser = ["topology", "flows", "counters"])]
        what: String,
    },
}

/// A rule's keys, as `[[security_group.rule]]` names them.
#[derive(clap::Args)]
struct RuleArgs {
    security_group: String,
    #[arg(long, value_parser = ["ingress", "egress"])]
    direction: String,
    #[arg(long, value_parser = ["tcp", "udp", "icmp", "gre", "all"])]
    protocol: String,
    #[arg(long)]
    port_range: Option<String>,
    #[arg(long)]
    cidr: Option<String>,
    #[arg(long)]
    group: Option<String>,
    #[arg(long, value_parser = ["accept", "drop"])]
    policy: Option<String>,
    #[arg(long)]
    priority: Option<i64>,
    #[arg(long)]
    description: Option<String>,
}

impl RuleArgs {
    fn spec(self) -> RuleSpec {
        RuleSpec {
            security_group: self.security_group,
            direction: self.direction,
            policy: self.policy,
            priority: self.priority,
            protocol: self.protocol,
            port_range: self.port_range,
            cidr: self.cidr,
            group: self.group,
            description: self.description,
        }
    }
}

/// The request line for a command, or why the arguments do not make one.
fn request(c: CtlCommand) -> Result<Value, String> {
    let op = match c {
        CtlCommand::Show { what } => return Ok(serde_json::json!({ "show": what })),
        CtlCommand::Trace { count } => return Ok(serde_json::json!({ "trace": count })),
        CtlCommand::AttachEni { eni } => Operation::AttachEni { eni },
        CtlCommand::DetachEni { eni } => Operation::DetachEni { eni },
        CtlCommand::AssociateEip {
            address,
            eni,
            mode,
            private_ip,
            bandwidth_mbps,
            inbound_mbps,
        } => Operation::AssociateEip {
            address,
            eni,
            mode: if mode == "nat" {
                AssociationMode::Nat
            } else {
                AssociationMode::CutThrough
            },
            private_ip,
            bandwidth_mbps,
            inbound_mbps,
        },
        CtlCommand::UnassociateEip { address } => Operation::UnassociateEip { address },
        CtlCommand::AssignPrivateIp { eni, private_ip } => {
            Operation::AssignPrivateIp { eni, private_ip }
        }
        CtlCommand::UnassignPrivateIp { eni, private_ip } => {
            Operation::UnassignPrivateIp { eni, private_ip }
        }
        CtlCommand::Route {
            action,
            dst,
            mut via,
            weights,
            balance,
            metric,
            from,
        } => {
            if action != "del" && via.is_empty() {
                return Err(format!("route {action} needs --via ENI"));
            }
            let spec = RouteSpec {
                dst,
                via: match via.len() {
                    0 => None,
                    1 => via.pop().map(Via::One),
                    _ => Some(Via::Many(via)),
                },
                weights: (!weights.is_empty()).then_some(weights),
                balance,
                metric,
                from,
            };
            match action.as_str() {
                "add" => Operation::RouteAdd(spec),
                "del" => Operation::RouteDel(spec),
                _ => Operation::RouteReplace(spec),
            }
        }
        CtlCommand::Authorize(r) => Operation::Authorize(r.spec()),
        CtlCommand::Revoke(r) => Operation::Revoke(r.spec()),
        CtlCommand::Join {
            eni,
            security_group,
        } => Operation::Join {
            eni,
            security_group,
        },
        CtlCommand::Leave {
            eni,
            security_group,
        } => Operation::Leave {
            eni,
            security_group,
        },
    };
    Ok(serde_json::to_value(&op).expect("operations serialise"))
}

/// Sends one request and waits for its answer: one line, or for a trace
/// the lines up to the one with a `result` (`each` sees the others).
fn ask(socket: &PathBuf, req: &Value, each: &mut dyn FnMut(&Value)) -> std::io::Result<Value> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(90)))?;
    s.write_all(req.to_string().as_bytes())?;
    s.write_all(b"\n")?;
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the run closed the connection",
            ));
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if req.get("trace").is_some() && v.get("result").is_none() {
            each(&v);
            continue;
        }
        return Ok(v);
    }
}

pub(super) fn ctl_cmd(args: CtlArgs) -> ExitCode {
    let req = match request(args.command) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("eipsim ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let json = args.json;
    let mut each = |v: &Value| {
        if json {
            say!("{v}");
        } else {
            say!("{}", v["trace"].as_str().unwrap_or_default());
        }
    };
    let answer = match ask(&args.socket, &req, &mut each) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "eipsim ctl: {}: {e} (is `eipsim run` running with --control {0}?)",
                args.socket.display()
            );
            return ExitCode::from(2);
        }
    };
    if args.json {
        say!("{answer}");
    } else {
        say!("{}", text(&answer).trim_end());
    }
    match answer["result"].as_str() {
        Some("refused") => ExitCode::from(1),
        Some("error") => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    }
}

/// An answer in words.
fn text(a: &Value) -> String {
    if let Some(t) = a["topology"].as_str() {
        return t.to_string();
    }
    if let Some(f) = a["flows"].as_array() {
        return f.iter().map(|l| format!("{l}\n")).collect();
    }
    if a.get("counters").is_some() {
        return serde_json::to_string_pretty(&a["counters"]).unwrap_or_default();
    }
    if a["result"] == "done" {
        return format!("{} packet(s) traced", a["traced"]);
    }
    let mut s = format!(
        "{}: {}",
        a["op"].as_str().unwrap_or("request"),
        a["result"].as_str().unwrap_or("?")
    );
    match a["result"].as_str() {
        Some("applied") => {
            let ended = a["flows_ended"].as_array().map_or(0, |v| v.len());
            s.push_str(&format!(", {ended} flow(s) ended\n"));
            for f in a["flows_ended"].as_array().into_iter().flatten() {
                s.push_str(&format!(
                    "    ended {} {} <-> {} on {} ({})\n",
                    crate::explain::trace::proto_name(f["proto"].as_u64().unwrap_or(0) as u8),
                    f["instance"].as_str().unwrap_or(""),
                    f["remote"].as_str().unwrap_or(""),
                    f["eni"].as_str().unwrap_or(""),
                    f["reason"].as_str().unwrap_or("")
                ));
            }
        }
        _ => {
            s.push('\n');
            for r in a["reasons"].as_array().into_iter().flatten() {
                s.push_str(&format!("    {}\n", r.as_str().unwrap_or("")));
            }
        }
    }
    s
}
