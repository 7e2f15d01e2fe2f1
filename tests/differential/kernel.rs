//! The Linux side of the differential test: a router network namespace
//! configured like a topology ([`kernel_config`], the one place that maps
//! eipsim's model to kernel configuration), three TAP devices in it that
//! stand for eipsim's ports, and a loop that writes each input frame to
//! its port's TAP and reads what the kernel sends on every TAP.

use eipsim::config::{AssociationMode, EniId, Route, Topology};
use eipsim::engine::{Link, PORT_MACS};
use eipsim::io::tap::{Tap, TapConfig};
use eipsim::probe::PEER_MACS;
use ipnetwork::Ipv4Network;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The router's device for each port, in [`Link::ALL`] order.
pub const DEVS: [&str; 3] = ["ti", "tn", "tv"];

/// How long the kernel must stay silent after an input frame before the
/// next one goes in: everything it sends meanwhile is that frame's doing.
/// The kernel forwards a frame written to a TAP within microseconds; this
/// is generous so that a busy machine cannot move an output to the wrong
/// input.
const QUIET: Duration = Duration::from_millis(40);

/// The MTU of a port with no limit in the scenario (the TAP maximum: 65535 less the Ethernet header).
const NO_LIMIT_MTU: u32 = 65521;

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The next hop that stands for ENI `eni` on the Internet side: the kernel
/// has no ENIs, so each ENI is a gateway address of its own on the
/// `internet` device, and the NAT rules tell ENIs apart by the route's
/// next hop (`rt ip nexthop`). Never the address of a packet.
fn inet_gw(eni: EniId) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 254 - eni.0 as u8)
}

/// The same on the VPC side.
fn vpc_gw(eni: EniId) -> Ipv4Addr {
    Ipv4Addr::new(172, 31, 255, 254 - eni.0 as u8)
}

/// What [`kernel_config`] produces: commands for `ip -batch`, sysctls and
/// an nftables ruleset, all for the router namespace.
pub struct KernelConfig {
    /// `sysctl -w` assignments, before the devices exist (so that
    /// `default` values reach them) and after.
    pub sysctls: Vec<String>,
    /// Lines for `ip -batch -` (addresses, neighbours, routes, rules).
    pub ip: String,
    /// Per-device sysctls, once the devices exist.
    pub dev_sysctls: Vec<String>,
    /// The ruleset for `nft -f -`.
    pub nft: String,
}

/// The topology as Linux configuration: the mapping this test is about.
///
/// * Ports: one TAP per port, `ti` (instance), `tn` (internet), `tv`
///   (vpc), with eipsim's MACs for the port and the scenario's MTU
///   (65521, the most a TAP takes, where the scenario has no limit). The hosts beyond them are
///   permanent neighbours with the fixtures' peer MACs.
/// * Forwarding on; IPv6 off (eipsim carries IPv4 only); no redirects; no
///   per-destination ICMP rate limit (`icmp_ratelimit = 0`: eipsim has only
///   the per-port token bucket, which Linux's `icmp_msgs_per_sec` and
///   `icmp_msgs_burst` defaults equal); the multipath hash on the 5-tuple
///   (policy 1, as eipsim's per-flow hash) with a fixed seed;
///   `nf_conntrack_tcp_be_liberal` (the fixtures' TCP segments do not
///   follow real sequence numbers; eipsim does not track windows).
/// * The instance: each address the instance may send from (every private
///   IP, every cut-through EIP) is a /32 route on `ti` in table 100, with
///   the ENI's gateway as the preferred source (the gateways are the
///   router's addresses on `ti`, so ICMP errors toward the instance come
///   from the gateway of the ENI that owns the destination, as in
///   eipsim). Table 100 serves packets from the Internet and the VPC and
///   the router's own (`iif lo`). Packets from the instance never use it:
///   they follow the instance route table, as in eipsim. A packet from the
///   instance whose source is none of these addresses is dropped before
///   anything else looks at it (nftables, prerouting at raw priority: the
///   reverse-path filter would do, but its lookup runs with the output
///   device as input device and so sees table 101).
/// * The instance route table: each ENI is a next-hop gateway, on `tn`
///   for Internet destinations and on `tv` for VPC destinations (`to
///   vpc_cidr`), so every route is written twice, in an Internet table and
///   a VPC table, with its metric; several ENIs are a multipath route
///   with `nexthop ... weight`. A `from` route gets `ip rule from PREFIX`
///   (the most specific prefix first) and tables of its own, which also
///   hold the routes without `from` whose destination it does not have
///   (eipsim's order: longest destination first, then a matching `from`,
///   then the metric). Every table ends in an `unreachable` default of the
///   worst metric, so a lookup never falls through to the next rule.
/// * NAT (nftables): per NAT EIP, `dnat` EIP -> private IP for what comes
///   in on `tn`; per ENI (by next hop) `snat` of a new flow leaving on
///   `tn`: its private IPs to their EIPs, any other source to the EIP of
///   the ENI's primary private IP (eipsim's source selection, then NAT),
///   and through a cut-through ENI any source but its EIP to its EIP;
///   on `tv` any source not of the ENI to its primary private IP.
///   Cut-through EIPs are not translated.
/// * Filter (forward): invalid conntrack state is dropped; from `tn` only
///   what NAT maps back (an EIP's `dnat`, a reply to a `snat`) or what is
///   addressed to a cut-through EIP reaches the instance, and nothing else
///   is forwarded; from `tv` only packets to a private IP of an ENI with
///   private networking; a new flow from the instance is dropped if its
///   ENI cannot carry it (a cut-through ENI to the VPC, a private IP with
///   no EIP to the Internet).
/// * ARP: proxy ARP on `ti` (the router answers for what it routes
///   elsewhere), proxy entries on `tn` for each EIP and on `tv` for each
///   private IP of an ENI with private networking (with routes for the
///   NAT EIPs in table 101, used only by the ARP lookup from `tn`).
/// * Hairpin (the instance to one of its own EIPs): `dnat` as from the
///   Internet (NAT EIPs) and a mark on the flow that sends its packets,
///   both ways, through table 100 back to `ti`; the sender's private IP is
///   translated to its own EIP (eipsim takes the EIP of the ENI the route
///   to the EIP picks: the same in the scenarios, not in general).
pub fn kernel_config(topo: &Topology, mtu: [Option<u32>; 3]) -> KernelConfig {
    let [ti, tn, tv] = DEVS;
    let vpc = topo.vpc_cidr;
    let enis: Vec<EniId> = (0..topo.enis.len()).map(|i| EniId(i as u16)).collect();
    let cut_through = |e: EniId| topo.cut_through_eip(e).map(|c| topo.eip(c).address);
    let eip_of = |p: Ipv4Addr| {
        topo.eips
            .iter()
            .find(|x| x.mode == AssociationMode::Nat && x.private_ip == p)
            .map(|x| x.address)
    };
    let owned: Vec<(Ipv4Addr, EniId)> = enis
        .iter()
        .flat_map(|&e| {
            let ips = topo.eni(e).private_ips.iter().map(move |&p| (p, e));
            ips.chain(cut_through(e).map(|a| (a, e)))
        })
        .collect();
    let vpc_local: Vec<Ipv4Addr> = enis
        .iter()
        .filter(|&&e| cut_through(e).is_none())
        .flat_map(|&e| topo.eni(e).private_ips.clone())
        .collect();
    let ct_eips: Vec<Ipv4Addr> = enis.iter().filter_map(|&e| cut_through(e)).collect();
    let nat_eips: Vec<(Ipv4Addr, Ipv4Addr)> = topo
        .eips
        .iter()
        .filter(|x| x.mode == AssociationMode::Nat)
        .map(|x| (x.address, x.private_ip))
        .collect();

    let sysctls: Vec<String> = [
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.default.send_redirects=0",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        "net.ipv4.icmp_ratelimit=0",
        "net.ipv4.fib_multipath_hash_policy=1",
        "net.ipv4.fib_multipath_hash_seed=1",
        "net.netfilter.nf_conntrack_tcp_be_liberal=1",
    ]
    .map(String::from)
    .to_vec();
    let mut ip = String::new();
    for (i, dev) in DEVS.iter().enumerate() {
        let m = mtu[i].unwrap_or(NO_LIMIT_MTU);
        let _ = writeln!(ip, "link set {dev} address {} mtu {m}", mac(PORT_MACS[i].0));
    }
    // The instance side: the gateways, the instance's addresses, table 100.
    for &e in &enis {
        let _ = writeln!(ip, "address add {}/32 dev {ti}", topo.eni(e).gateway);
    }
    for &(a, e) in &owned {
        let _ = writeln!(
            ip,
            "neigh replace {a} lladdr {} dev {ti} nud permanent",
            mac(PEER_MACS[0])
        );
        let src = topo.eni(e).gateway;
        let _ = writeln!(ip, "route add table 100 {a}/32 dev {ti} src {src}");
    }
    for &(x, _) in &nat_eips {
        let _ = writeln!(ip, "route add table 101 {x}/32 dev {ti}");
        let _ = writeln!(ip, "neigh add proxy {x} dev {tn}");
    }
    for &x in &ct_eips {
        let _ = writeln!(ip, "neigh add proxy {x} dev {tn}");
    }
    for &p in &vpc_local {
        let _ = writeln!(ip, "neigh add proxy {p} dev {tv}");
    }
    for &e in &enis {
        let _ = writeln!(
            ip,
            "neigh replace {} lladdr {} dev {tn} nud permanent",
            inet_gw(e),
            mac(PEER_MACS[1])
        );
        let _ = writeln!(
            ip,
            "neigh replace {} lladdr {} dev {tv} nud permanent",
            vpc_gw(e),
            mac(PEER_MACS[2])
        );
    }
    for (pref, rule) in [
        (99, "fwmark 0x1"),
        (100, "iif lo"),
        (101, "iif tn"),
        (102, "iif tv"),
    ] {
        let _ = writeln!(ip, "rule add pref {pref} {rule} lookup 100");
    }
    let _ = writeln!(ip, "rule add pref 103 iif {tn} lookup 101");
    // The instance route table, per `from` group (most specific first,
    // the routes without `from` last).
    let mut froms: Vec<Ipv4Network> = topo.routes.iter().filter_map(|r| r.from).collect();
    froms.sort_by_key(|f| (std::cmp::Reverse(f.prefix()), f.network()));
    froms.dedup();
    let groups: Vec<Option<Ipv4Network>> = froms.into_iter().map(Some).chain([None]).collect();
    for (g, from) in groups.iter().enumerate() {
        let (t_inet, t_vpc) = (1000 + 2 * g, 1001 + 2 * g);
        let applies = |r: &Route| match (r.from, from) {
            (None, _) => true,
            (Some(rf), Some(f)) => rf.prefix() <= f.prefix() && rf.contains(f.network()),
            (Some(_), None) => false,
        };
        let specificity = |r: &Route| r.from.map_or(-1, |f| i32::from(f.prefix()));
        let candidates: Vec<&Route> = topo.routes.iter().filter(|r| applies(r)).collect();
        for r in &candidates {
            // At an equal destination, a more specific `from` wins outright.
            let best = candidates
                .iter()
                .filter(|o| o.dst == r.dst)
                .map(|o| specificity(o))
                .max();
            if best != Some(specificity(r)) {
                continue;
            }
            route_line(&mut ip, r, t_inet, tn, inet_gw);
            route_line(&mut ip, r, t_vpc, tv, vpc_gw);
        }
        for t in [t_inet, t_vpc] {
            let _ = writeln!(
                ip,
                "route add table {t} unreachable 0.0.0.0/0 metric 4294967295"
            );
        }
        let sel = from.map_or(String::new(), |f| format!("from {f} "));
        let pref = 200 + 2 * g;
        let _ = writeln!(ip, "rule add pref {pref} {sel}to {vpc} lookup {t_vpc}");
        let _ = writeln!(ip, "rule add pref {} {sel}lookup {t_inet}", pref + 1);
    }
    let dev_sysctls = vec![
        format!("net.ipv4.conf.{ti}.proxy_arp=1"),
        format!("net.ipv4.neigh.{ti}.proxy_delay=0"),
        format!("net.ipv4.neigh.{tn}.proxy_delay=0"),
        format!("net.ipv4.neigh.{tv}.proxy_delay=0"),
    ];

    let set = |v: &[Ipv4Addr]| {
        let s: Vec<String> = v.iter().map(|a| a.to_string()).collect();
        format!("{{ {} }}", s.join(", "))
    };
    let mut pre = String::new();
    for &(x, p) in &nat_eips {
        let _ = writeln!(pre, "    iif \"{tn}\" ip daddr {x} dnat to {p}");
    }
    // Hairpin: the instance to one of its EIPs. The flow is marked (ct
    // mark, copied to each packet's mark before routing) so that rule 99
    // sends it to table 100, back to the instance.
    let hairpin = "meta mark set 0x1 ct mark set 0x1";
    for &(x, p) in &nat_eips {
        let _ = writeln!(pre, "    iif \"{ti}\" ip daddr {x} {hairpin} dnat to {p}");
    }
    for &x in &ct_eips {
        let _ = writeln!(pre, "    iif \"{ti}\" ip daddr {x} {hairpin}");
    }
    let owned_set = set(&owned.iter().map(|&(a, _)| a).collect::<Vec<_>>());
    let spoof = format!("    iif \"{ti}\" ip saddr != {owned_set} drop\n");
    let mut fwd = String::new();
    fwd += "    ct state invalid drop\n";
    let _ = writeln!(fwd, "    iif \"{tn}\" oif != \"{ti}\" drop");
    let not_ct = if ct_eips.is_empty() {
        String::new()
    } else {
        format!(" ip daddr != {}", set(&ct_eips))
    };
    let _ = writeln!(
        fwd,
        "    iif \"{tn}\" ct status & (snat | dnat) == 0{not_ct} drop"
    );
    let _ = writeln!(fwd, "    iif \"{tv}\" oif != \"{ti}\" drop");
    let _ = writeln!(fwd, "    iif \"{tv}\" ip daddr != {} drop", set(&vpc_local));
    let mut post = String::new();
    for &(x, p) in &nat_eips {
        let _ = writeln!(
            post,
            "    oif \"{ti}\" ct mark 0x1 ip saddr {p} snat to {x}"
        );
    }
    for &e in &enis {
        let eni = topo.eni(e);
        let (gn, gv) = (inet_gw(e), vpc_gw(e));
        let orig = format!("iif \"{ti}\" ct direction original");
        if let Some(x) = cut_through(e) {
            let _ = writeln!(fwd, "    {orig} rt ip nexthop {gv} drop");
            let _ = writeln!(
                post,
                "    oif \"{tn}\" rt ip nexthop {gn} ip saddr != {x} snat to {x}"
            );
            continue;
        }
        for &p in &eni.private_ips {
            match eip_of(p) {
                Some(x) => {
                    let _ = writeln!(
                        post,
                        "    oif \"{tn}\" rt ip nexthop {gn} ip saddr {p} snat to {x}"
                    );
                }
                None => {
                    let _ = writeln!(fwd, "    {orig} rt ip nexthop {gn} ip saddr {p} drop");
                }
            }
        }
        let own = set(&eni.private_ips);
        match eip_of(eni.primary_ip()) {
            Some(x) => {
                let _ = writeln!(
                    post,
                    "    oif \"{tn}\" rt ip nexthop {gn} ip saddr != {own} snat to {x}"
                );
            }
            None => {
                let _ = writeln!(fwd, "    {orig} rt ip nexthop {gn} ip saddr != {own} drop");
            }
        }
        let p = eni.primary_ip();
        let _ = writeln!(
            post,
            "    oif \"{tv}\" rt ip nexthop {gv} ip saddr != {own} snat to {p}"
        );
    }
    let nft = format!(
        "table ip eipsim_diff {{\n  chain filter_in {{\n    type filter hook prerouting priority raw; policy accept;\n{spoof}  }}\n  chain mark_in {{\n    type filter hook prerouting priority mangle; policy accept;\n    ct mark 0x1 meta mark set 0x1\n  }}\n  chain nat_in {{\n    type nat hook prerouting priority dstnat; policy accept;\n{pre}  }}\n  chain filter_fwd {{\n    type filter hook forward priority filter; policy accept;\n{fwd}  }}\n  chain nat_out {{\n    type nat hook postrouting priority srcnat; policy accept;\n{post}  }}\n}}\n"
    );
    KernelConfig {
        sysctls,
        ip,
        dev_sysctls,
        nft,
    }
}

/// One `ip route` line: the route in table `table`, each ENI of `via` a
/// next hop on `dev` (weights only for a multipath route; Linux allows
/// 1 to 256).
fn route_line(out: &mut String, r: &Route, table: usize, dev: &str, gw: fn(EniId) -> Ipv4Addr) {
    let _ = write!(out, "route add table {table} {} metric {}", r.dst, r.metric);
    if r.via.len() == 1 {
        let _ = write!(out, " via {} dev {dev} onlink", gw(r.via[0]));
    } else {
        for (e, w) in r.via.iter().zip(&r.weights) {
            assert!(*w <= 256, "Linux multipath weights stop at 256");
            let _ = write!(out, " nexthop via {} dev {dev} weight {w} onlink", gw(*e));
        }
    }
    out.push('\n');
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(cmd: &mut Command, input: Option<&str>, what: &str) {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut stdin = child.stdin.take().expect("piped");
    if let Some(text) = input {
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(stdin);
    let o = child.wait_with_output().expect("wait");
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        input.unwrap_or("")
    );
}

/// A router namespace configured like a topology, with its three TAPs.
/// Dropping it closes the TAPs (which removes them) and deletes the
/// namespace, also when a test fails half-way.
pub struct Router {
    ns: String,
    taps: Vec<Tap>,
}

impl Drop for Router {
    fn drop(&mut self) {
        self.taps.clear();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns])
            .stderr(Stdio::null())
            .output();
    }
}

impl Router {
    /// Builds the namespace for `topo` with port MTUs `mtu`.
    pub fn new(topo: &Topology, mtu: [Option<u32>; 3]) -> Router {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ns = format!("eipsim-diff{}-{n}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .output();
        run(
            Command::new("ip").args(["netns", "add", &ns]),
            None,
            "ip netns add",
        );
        // From here on the guard removes the namespace whatever happens.
        let mut r = Router {
            ns,
            taps: Vec::new(),
        };
        let cfg = kernel_config(topo, mtu);
        if std::env::var("EIPSIM_DIFF_DUMP").is_ok() {
            eprintln!(
                "sysctl {:?} {:?}\nip -batch:\n{}nft:\n{}",
                cfg.sysctls, cfg.dev_sysctls, cfg.ip, cfg.nft
            );
        }
        r.sysctl(&cfg.sysctls);
        let path = format!("/run/netns/{}", r.ns);
        r.taps = std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).expect("netns file");
            // SAFETY: setns on a valid namespace descriptor; it changes
            // only this thread's network namespace, and the thread ends.
            let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}");
            DEVS.iter()
                .zip(mtu)
                .map(|(dev, m)| {
                    let cfg = TapConfig {
                        mtu: m.unwrap_or(NO_LIMIT_MTU),
                        offload: false,
                        queues: 1,
                        steer: None,
                    };
                    Tap::open(dev, cfg).unwrap_or_else(|e| panic!("TAP {dev}: {e}"))
                })
                .collect()
        })
        .join()
        .expect("TAPs open");
        run(
            Command::new("ip").args(["-n", &r.ns, "-batch", "-"]),
            Some(&cfg.ip),
            "ip -batch",
        );
        r.sysctl(&cfg.dev_sysctls);
        run(
            Command::new("ip").args(["netns", "exec", &r.ns, "nft", "-f", "-"]),
            Some(&cfg.nft),
            "nft -f",
        );
        r
    }

    fn sysctl(&self, kv: &[String]) {
        run(
            Command::new("ip")
                .args(["netns", "exec", &self.ns, "sysctl", "-q", "-e", "-w"])
                .args(kv),
            None,
            "sysctl",
        );
    }

    fn fd(&self, port: usize) -> &OwnedFd {
        &self.taps[port].queues()[0]
    }

    /// Reads every frame the kernel sends until it has been quiet for
    /// [`QUIET`]; returns them with the port each left on.
    pub fn collect(&self) -> Vec<(Link, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        let mut last = Instant::now();
        loop {
            let mut fds: Vec<libc::pollfd> = (0..3)
                .map(|i| libc::pollfd {
                    fd: self.fd(i).as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            let left = QUIET.saturating_sub(last.elapsed());
            if left.is_zero() {
                return out;
            }
            // SAFETY: poll(2) over three valid descriptors.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 3, left.as_millis() as i32 + 1) };
            assert!(rc >= 0, "poll: {}", std::io::Error::last_os_error());
            for (i, p) in fds.iter().enumerate() {
                if p.revents & libc::POLLIN == 0 {
                    continue;
                }
                loop {
                    // SAFETY: read(2) into a buffer we own, of its length.
                    let n = unsafe { libc::read(p.fd, buf.as_mut_ptr().cast(), buf.len()) };
                    if n <= 0 {
                        break;
                    }
                    out.push((Link::ALL[i], buf[..n as usize].to_vec()));
                    last = Instant::now();
                }
            }
        }
    }

    /// Writes `frame` as if it arrived on `port`, then collects what the
    /// kernel sends because of it.
    pub fn inject(&self, port: Link, frame: &[u8]) -> Vec<(Link, Vec<u8>)> {
        let fd = self.fd(port.index()).as_raw_fd();
        // SAFETY: write(2) of a buffer we own, of its length.
        let n = unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            // Shorter than an Ethernet header: the TAP refuses it, as
            // a NIC would never deliver it.
            return Vec::new();
        }
        assert_eq!(
            n,
            frame.len() as isize,
            "write to the {port} TAP: {}",
            std::io::Error::last_os_error()
        );
        self.collect()
    }
}
