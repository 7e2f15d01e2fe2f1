//! `eipsim replay --html FILE`: one self-contained HTML page about a
//! replay. The topology as a diagram, packets and bytes per port, ENI and
//! EIP, the drop reasons, packets per second and the paths summary.
//!
//! Everything is inline: CSS in a `<style>`, the diagram and the charts as
//! SVG drawn here from the numbers (no Graphviz, no JavaScript, no fonts or
//! images to fetch), so the file opens anywhere, offline, and can be kept
//! as a CI artifact. The diagram follows `eipsim show --format dot`
//! ([`crate::explain::show::dot`]): instance, ENIs with their routes, EIPs
//! with their mode, the Internet and the VPC.

use super::replay::Second;
use super::trace::PathGroup;
use crate::config::{AssociationMode, EniId, Topology};
use crate::engine::DropReason;
use serde_json::Value;
use std::fmt::Write;

/// What the page is made of; [`html`] turns it into the page.
#[derive(Debug, Clone, Copy)]
pub struct HtmlReport<'a> {
    /// The topology file, as given to `--config` (the page's title).
    pub config: &'a str,
    /// The inputs, as given to `--in` (`PORT=CAPTURE`).
    pub inputs: &'a [String],
    /// The topology at the end of the replay.
    pub topo: &'a Topology,
    /// The report, as written to report.json ([`super::report::report`]).
    pub report: &'a Value,
    /// Input frames per second ([`super::replay::ReplaySummary::per_second`]).
    pub per_second: &'a [Second],
    /// The paths the packets took ([`super::trace::summary`]).
    pub paths: &'a [PathGroup],
}

/// Escapes text for HTML and SVG (text and attribute values).
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// 1234567 -> "1,234,567".
fn num(n: u64) -> String {
    let d = n.to_string();
    let mut o = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            o.push(',');
        }
        o.push(c);
    }
    o
}

/// A counter of the report, 0 when absent.
fn get(v: &Value, keys: &[&str]) -> u64 {
    keys.iter()
        .fold(v, |v, k| &v[*k])
        .as_u64()
        .unwrap_or_default()
}

const CSS: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#1d2530;background:#f4f6f9}
main{max-width:1320px;margin:0 auto;padding:16px 24px 40px}
h1{font-size:22px;margin:8px 0 2px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d5dbe3;padding-bottom:4px}
.sub{color:#5b6776;margin:0 0 12px}
.sub code{background:#e6eaf0;padding:0 4px;border-radius:3px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{background:#fff;border:1px solid #d5dbe3;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:20px}
.card span{color:#5b6776;font-size:12px}
.fwd b{color:#1f7a3a}.drop b{color:#b3261e}.cons b{color:#2759a8}
.panel{background:#fff;border:1px solid #d5dbe3;border-radius:6px;padding:12px;overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e6eaf0;vertical-align:middle}
th{color:#5b6776;font-weight:600;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#8a95a3}
.path{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;color:#3b4654}
.legend{font-size:12px;color:#5b6776;margin:4px 0 0}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px;vertical-align:-1px}
svg text{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif}
footer{color:#8a95a3;font-size:12px;margin-top:28px}
";

const GREEN: &str = "#2e9e55";
const BLUE: &str = "#3b73c8";
const RED: &str = "#d2463b";
const AMBER: &str = "#e3a21a";

/// The whole page.
pub fn html(r: &HtmlReport) -> String {
    let mut s = String::new();
    let title = format!("eipsim replay: {}", r.config);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <link rel=\"icon\" href=\"data:,\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        esc(&title)
    );
    let _ = writeln!(s, "<h1>eipsim replay report</h1>");
    let inputs: Vec<String> = r
        .inputs
        .iter()
        .map(|i| format!("<code>{}</code>", esc(i)))
        .collect();
    let _ = writeln!(
        s,
        "<p class=\"sub\">topology <code>{}</code> (region {}, VPC {}); inputs {}</p>",
        esc(r.config),
        esc(&r.topo.region),
        r.topo.vpc_cidr,
        inputs.join(", ")
    );
    cards(&mut s, r.report);
    let _ = writeln!(s, "<h2 id=\"topology\">Topology</h2>");
    let _ = writeln!(
        s,
        "<div class=\"panel\">{}<p class=\"legend\">Edges from the instance carry the routes that \
         use each ENI; edges to EIPs the association mode; dashed edges the ENIs' private network \
         to the VPC. Counts are packets as report.json has them (rx: into the instance, or \
         received on a port; tx: the other way).</p></div>",
        topology_svg(r.topo, r.report)
    );
    traffic(&mut s, r.topo, r.report);
    let _ = writeln!(s, "<h2 id=\"drops\">Drop reasons</h2>");
    let _ = writeln!(s, "<div class=\"panel\">{}</div>", drops_svg(r.report));
    let _ = writeln!(s, "<h2 id=\"rate\">Packets per second</h2>");
    let _ = writeln!(s, "<div class=\"panel\">{}</div>", rate_svg(r.per_second));
    paths(&mut s, r.paths);
    let _ = writeln!(
        s,
        "<footer>Made by eipsim {} from the same engine run as report.json; no external \
         resources.</footer>\n</main>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    );
    s
}

/// The ledger, flows and ICMP errors as figures at the top.
fn cards(s: &mut String, report: &Value) {
    let f = |k: &str| get(report, &["frames", k]);
    let items = [
        ("", "received", f("received")),
        ("fwd", "forwarded", f("forwarded")),
        ("cons", "consumed", f("consumed")),
        ("drop", "dropped", f("dropped")),
        ("", "held", f("held")),
        ("", "generated", f("generated")),
        ("", "flows created", get(report, &["flows", "created"])),
        ("", "flows active", get(report, &["flows", "active"])),
        (
            "",
            "ICMP errors sent",
            get(report, &["icmp_errors", "frag_needed"])
                + get(report, &["icmp_errors", "time_exceeded"]),
        ),
    ];
    s.push_str("<div class=\"cards\">");
    for (class, label, n) in items {
        let _ = write!(
            s,
            "<div class=\"card {class}\"><b>{}</b><span>{label}</span></div>",
            num(n)
        );
    }
    s.push_str("</div>\n");
}

/// The route words on the edge from the instance to an ENI, as in
/// `show --format dot`: `default metric 0`, `... weight 1/2 (hash)`.
fn route_labels(t: &Topology, id: EniId) -> Vec<String> {
    t.routes
        .iter()
        .filter(|r| r.via.contains(&id))
        .map(|r| {
            let dst = if r.dst.prefix() == 0 {
                "default".to_string()
            } else {
                r.dst.to_string()
            };
            let from = r.from.map(|f| format!(" from {f}")).unwrap_or_default();
            let k = r.via.iter().position(|v| *v == id).unwrap_or(0);
            let weight = if r.via.len() > 1 {
                format!(
                    " weight {}/{} ({})",
                    r.weights[k],
                    r.weights.iter().sum::<u32>(),
                    r.balance.name()
                )
            } else {
                String::new()
            };
            format!("{dst}{from} metric {}{weight}", r.metric)
        })
        .collect()
}

/// A box with lines of text, the first bold.
#[allow(clippy::too_many_arguments)]
fn node(
    s: &mut String,
    (x, y, w, h): (f64, f64, f64, f64),
    lines: &[String],
    fill: &str,
    stroke: &str,
    dashed: bool,
    round: f64,
    tip: &str,
) {
    let dash = if dashed {
        " stroke-dasharray=\"5 3\""
    } else {
        ""
    };
    let _ = write!(
        s,
        "<g><title>{}</title><rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"{round}\" \
         fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"{dash}/>",
        esc(tip)
    );
    let top = y + h / 2.0 - (lines.len() as f64 - 1.0) * LINE / 2.0 + 4.0;
    for (i, l) in lines.iter().enumerate() {
        let (weight, size, color) = if i == 0 {
            ("600", 13, "#1d2530")
        } else if l.starts_with("rx ") {
            ("400", 11, "#5b6776")
        } else {
            ("400", 12, "#1d2530")
        };
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"{size}\" \
             font-weight=\"{weight}\" fill=\"{color}\">{}</text>",
            x + w / 2.0,
            top + i as f64 * LINE,
            esc(l)
        );
    }
    s.push_str("</g>\n");
}

const LINE: f64 = 15.0;

/// Text with a white halo, so edges under it do not hide it.
fn label(s: &mut String, x: f64, y: f64, anchor: &str, text: &str) {
    let _ = write!(
        s,
        "<text x=\"{x}\" y=\"{y}\" text-anchor=\"{anchor}\" font-size=\"11\" fill=\"#3b4654\" \
         stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\">{}</text>",
        esc(text)
    );
}

fn traffic_line(report: &Value, group: &str, key: &str) -> String {
    let t = &report[group][key];
    format!(
        "rx {} / tx {} pkts",
        num(get(t, &["rx_packets"])),
        num(get(t, &["tx_packets"]))
    )
}

/// The topology, laid out in columns (instance, ENIs, EIPs, the outside)
/// with elbow edges, so route labels sit on horizontal segments.
fn topology_svg(t: &Topology, report: &Value) -> String {
    const INST_X: f64 = 20.0;
    const INST_W: f64 = 150.0;
    const ENI_X: f64 = 560.0;
    const ENI_W: f64 = 210.0;
    const EIP_X: f64 = 940.0;
    const EIP_W: f64 = 190.0;
    const OUT_X: f64 = 1230.0;
    const OUT_W: f64 = 150.0;
    const EIP_H: f64 = 58.0;
    const GAP: f64 = 22.0;
    const TOP: f64 = 20.0;
    let width = OUT_X + OUT_W + 20.0;
    let mut body = String::new();
    let mut edges = String::new();
    // One block per ENI: its box, its EIPs beside it, its route labels
    // above the edge into it.
    let mut y = TOP;
    let mut eip_centres = Vec::new();
    let mut eni_mids = Vec::new();
    let mut vpc_links = Vec::new();
    for (i, e) in t.enis.iter().enumerate() {
        let id = EniId(i as u16);
        let mut lines = vec![format!(
            "{}{}",
            e.name,
            match (e.primary, e.attached) {
                (true, true) => " (primary)",
                (false, true) => "",
                (true, false) => " (primary, detached)",
                (false, false) => " (detached)",
            }
        )];
        lines.extend(t.os_addresses(id).iter().map(|a| a.to_string()));
        lines.push(traffic_line(report, "enis", &e.name));
        let eni_h = lines.len() as f64 * LINE + 16.0;
        let eips: Vec<usize> = (0..t.eips.len()).filter(|&k| t.eips[k].eni == id).collect();
        let routes = route_labels(t, id);
        let label_h = routes.len() as f64 * 13.0 + 8.0;
        let eips_h = eips.len() as f64 * (EIP_H + 10.0) - 10.0;
        let block = eni_h.max(eips_h).max(label_h * 2.0).max(EIP_H);
        let mid = y + block / 2.0;
        let ey = mid - eni_h / 2.0;
        let private = t.cut_through_eip(id).is_none();
        let tip = format!(
            "ENI {}: {}{}",
            e.name,
            if private {
                "private network"
            } else {
                "cut-through, no private network"
            },
            if e.attached { "" } else { "; detached" }
        );
        node(
            &mut body,
            (ENI_X, ey, ENI_W, eni_h),
            &lines,
            if e.primary { "#e8f0fb" } else { "#f1f5fa" },
            if e.attached { "#3b73c8" } else { "#9aa5b1" },
            !e.attached,
            4.0,
            &tip,
        );
        eni_mids.push(mid);
        // Route labels above the edge's last horizontal segment.
        for (k, l) in routes.iter().enumerate() {
            let ly = mid - 6.0 - (routes.len() - 1 - k) as f64 * 13.0;
            label(&mut edges, ENI_X - 10.0, ly, "end", l);
        }
        // EIPs of this ENI, stacked beside it.
        let ey0 = mid - eips_h / 2.0;
        for (k, &n) in eips.iter().enumerate() {
            let a = &t.eips[n];
            let py = ey0 + k as f64 * (EIP_H + 10.0);
            let addr = a.address.to_string();
            let mut lines = vec![addr.clone(), a.mode.name().to_string()];
            if !a.associated {
                lines[1].push_str(" (not associated)");
            }
            lines.push(traffic_line(report, "eips", &addr));
            let cut = a.mode == AssociationMode::CutThrough;
            node(
                &mut body,
                (EIP_X, py, EIP_W, EIP_H),
                &lines,
                if cut { "#fff4e0" } else { "#fbfbe9" },
                if !a.associated {
                    "#9aa5b1"
                } else if cut {
                    "#c9861a"
                } else {
                    "#a39a2c"
                },
                !a.associated,
                EIP_H / 2.0,
                &format!("EIP {addr} on {} ({})", e.name, a.mode.name()),
            );
            let pm = py + EIP_H / 2.0;
            let words = match a.mode {
                AssociationMode::Nat => format!("NAT {}", a.private_ip),
                AssociationMode::CutThrough => "cut-through".to_string(),
            };
            let trunk = ENI_X + ENI_W + 24.0;
            let _ = write!(
                edges,
                "<path d=\"M{} {mid} H{trunk} V{pm} H{}\" fill=\"none\" stroke=\"#7b8794\" \
                 stroke-width=\"1.3\" marker-end=\"url(#arrow)\"/>",
                ENI_X + ENI_W,
                EIP_X - 2.0
            );
            label(&mut edges, EIP_X - 10.0, pm - 5.0, "end", &words);
            eip_centres.push(pm);
        }
        if private {
            vpc_links.push((ENI_X + ENI_W / 2.0, ey + eni_h, y + block + GAP / 2.0));
        }
        y += block + GAP;
    }
    let eni_bottom = y - GAP;
    // The instance, midway down the ENIs; its trunk to each ENI.
    let inst_lines = vec![
        "instance".to_string(),
        t.region.clone(),
        traffic_line(report, "ports", "instance"),
    ];
    let inst_h = inst_lines.len() as f64 * LINE + 18.0;
    let first = eni_mids.first().copied().unwrap_or(TOP + inst_h / 2.0);
    let last = eni_mids.last().copied().unwrap_or(first);
    let inst_mid = (first + last) / 2.0;
    node(
        &mut body,
        (INST_X, inst_mid - inst_h / 2.0, INST_W, inst_h),
        &inst_lines,
        "#eef1f5",
        "#4a5563",
        false,
        2.0,
        "the instance OS (port instance)",
    );
    for m in &eni_mids {
        let trunk = INST_X + INST_W + 24.0;
        let _ = write!(
            edges,
            "<path d=\"M{} {inst_mid} H{trunk} V{m} H{}\" fill=\"none\" stroke=\"#4a5563\" \
             stroke-width=\"1.4\" marker-end=\"url(#arrow)\"/>",
            INST_X + INST_W,
            ENI_X - 2.0
        );
    }
    // The Internet beside the EIPs; the VPC below, reached along the gaps
    // between the ENI blocks.
    let out_h = 3.0 * LINE + 18.0;
    let inet_mid = match (eip_centres.first(), eip_centres.last()) {
        (Some(a), Some(b)) => (a + b) / 2.0,
        _ => inst_mid,
    };
    let vpc_mid = eni_bottom + GAP + out_h / 2.0 + 10.0;
    let height = vpc_mid + out_h / 2.0 + 20.0;
    node(
        &mut body,
        (OUT_X, inet_mid - out_h / 2.0, OUT_W, out_h),
        &[
            "Internet".to_string(),
            "port internet".to_string(),
            traffic_line(report, "ports", "internet"),
        ],
        "#f3eefb",
        "#7a52b3",
        false,
        out_h / 2.0,
        "the Internet (port internet)",
    );
    for c in &eip_centres {
        let _ = write!(
            edges,
            "<path d=\"M{} {c} C{} {c} {} {inet_mid} {} {inet_mid}\" fill=\"none\" \
             stroke=\"#7a52b3\" stroke-width=\"1.2\" marker-end=\"url(#arrow)\"/>",
            EIP_X + EIP_W,
            EIP_X + EIP_W + 50.0,
            OUT_X - 50.0,
            OUT_X - 2.0
        );
    }
    node(
        &mut body,
        (OUT_X, vpc_mid - out_h / 2.0, OUT_W, out_h),
        &[
            "VPC".to_string(),
            t.vpc_cidr.to_string(),
            traffic_line(report, "ports", "vpc"),
        ],
        "#eaf6ee",
        "#2e9e55",
        false,
        out_h / 2.0,
        "the VPC (port vpc)",
    );
    let gutter = OUT_X - 30.0;
    for (x, from, gap_y) in vpc_links {
        let _ = write!(
            edges,
            "<path d=\"M{x} {from} V{gap_y} H{gutter} V{vpc_mid} H{}\" fill=\"none\" \
             stroke=\"#2e9e55\" stroke-width=\"1.2\" stroke-dasharray=\"5 4\" \
             marker-end=\"url(#arrow)\"/>",
            OUT_X - 2.0
        );
    }
    format!(
        "<svg viewBox=\"0 0 {width} {height}\" width=\"100%\" \
         role=\"img\" aria-label=\"topology diagram\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0 0 L10 5 L0 10 z\" \
         fill=\"#5b6776\"/></marker></defs>\n{edges}\n{body}</svg>"
    )
}

/// A horizontal bar for a table cell: rx and tx packets against `max`.
fn bar_cell(rx: u64, tx: u64, max: u64) -> String {
    let w = |n: u64| {
        if max == 0 {
            0.0
        } else {
            (n as f64 / max as f64 * 200.0).max(if n > 0 { 1.0 } else { 0.0 })
        }
    };
    format!(
        "<svg width=\"204\" height=\"18\" viewBox=\"0 0 204 18\" role=\"img\" \
         aria-label=\"rx {rx}, tx {tx}\"><rect x=\"0\" y=\"2\" width=\"{:.1}\" height=\"6\" \
         fill=\"{BLUE}\"/><rect x=\"0\" y=\"10\" width=\"{:.1}\" height=\"6\" fill=\"{GREEN}\"/></svg>",
        w(rx),
        w(tx)
    )
}

/// Packets and bytes per port, ENI and EIP.
fn traffic(s: &mut String, t: &Topology, report: &Value) {
    let _ = writeln!(s, "<h2 id=\"traffic\">Packets and bytes</h2>");
    let row = |v: &Value| {
        [
            get(v, &["rx_packets"]),
            get(v, &["rx_bytes"]),
            get(v, &["tx_packets"]),
            get(v, &["tx_bytes"]),
        ]
    };
    let mut rows: Vec<(String, String, String, [u64; 4])> = Vec::new();
    for p in crate::engine::Link::ALL {
        rows.push((
            "port".into(),
            p.name().into(),
            match p {
                crate::engine::Link::Instance => "rx: from the instance OS".into(),
                crate::engine::Link::Internet => "rx: from the Internet".into(),
                crate::engine::Link::Vpc => "rx: from the VPC".into(),
            },
            row(&report["ports"][p.name()]),
        ));
    }
    for (i, e) in t.enis.iter().enumerate() {
        let id = EniId(i as u16);
        let kind = match (e.primary, t.cut_through_eip(id)) {
            (true, _) => "primary ENI",
            (false, Some(_)) => "secondary ENI, cut-through",
            (false, None) => "secondary ENI",
        };
        let kind = if e.attached {
            kind.to_string()
        } else {
            format!("{kind}; detached")
        };
        rows.push((
            "ENI".into(),
            e.name.clone(),
            kind,
            row(&report["enis"][&e.name]),
        ));
    }
    for e in &t.eips {
        let a = e.address.to_string();
        let v = &report["eips"][&a];
        let mut what = format!("{} on {}", e.mode.name(), t.eni(e.eni).name);
        let (btx, brx) = (
            get(v, &["bandwidth_exceeded", "tx_packets"]),
            get(v, &["bandwidth_exceeded", "rx_packets"]),
        );
        if btx + brx > 0 {
            let _ = write!(
                what,
                "; over bandwidth: {} tx, {} rx dropped",
                num(btx),
                num(brx)
            );
        }
        if !e.associated {
            what.push_str("; not associated");
        }
        rows.push(("EIP".into(), a, what, row(v)));
    }
    let max = rows.iter().map(|r| r.3[0].max(r.3[2])).max().unwrap_or(0);
    s.push_str(
        "<div class=\"panel\"><table><thead><tr><th>kind</th><th>name</th><th></th>\
         <th class=\"n\">rx packets</th><th class=\"n\">rx bytes</th><th class=\"n\">tx packets</th>\
         <th class=\"n\">tx bytes</th><th>packets</th></tr></thead><tbody>\n",
    );
    for (kind, name, what, [rp, rb, tp, tb]) in &rows {
        let _ = writeln!(
            s,
            "<tr><td class=\"muted\">{kind}</td><td><b>{}</b></td><td class=\"muted\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td></tr>",
            esc(name),
            esc(what),
            num(*rp),
            num(*rb),
            num(*tp),
            num(*tb),
            bar_cell(*rp, *tp, max)
        );
    }
    let _ = writeln!(
        s,
        "</tbody></table><p class=\"legend\"><span class=\"sw\" style=\"background:{BLUE}\"></span>rx \
         <span class=\"sw\" style=\"background:{GREEN}\"></span>tx. Ports: rx is received on \
         the port, tx sent on it. ENIs: rx is into the instance through it, tx out of it. EIPs: \
         rx is from the Internet to it, tx from it. Bytes are Ethernet frame bytes.</p></div>"
    );
}

/// The drop reasons with a count, largest first, as horizontal bars.
fn drops_svg(report: &Value) -> String {
    let mut drops: Vec<(DropReason, u64)> = DropReason::ALL
        .iter()
        .map(|r| (*r, get(report, &["drops", r.name()])))
        .filter(|(_, n)| *n > 0)
        .collect();
    drops.sort_by_key(|(r, n)| (std::cmp::Reverse(*n), *r));
    if drops.is_empty() {
        return "<p class=\"muted\">No packet was dropped.</p>".into();
    }
    let max = drops[0].1;
    let (lw, bw, rh) = (230.0, 760.0, 26.0);
    let h = drops.len() as f64 * rh + 10.0;
    let mut s = format!(
        "<svg viewBox=\"0 0 {} {h}\" width=\"100%\" \
         style=\"max-width:1100px\" role=\"img\" aria-label=\"drop reasons\">",
        lw + bw + 90.0
    );
    for (i, (r, n)) in drops.iter().enumerate() {
        let y = 5.0 + i as f64 * rh;
        let w = (*n as f64 / max as f64 * bw).max(2.0);
        let _ = write!(
            s,
            "<g><title>{}: {}</title><text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"12\" \
             fill=\"#1d2530\">{}</text><rect x=\"{lw}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" \
             rx=\"2\" fill=\"{RED}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\" \
             fill=\"#1d2530\">{}</text></g>",
            esc(r.name()),
            esc(r.explain()),
            lw - 8.0,
            y + rh / 2.0 + 4.0,
            esc(r.name()),
            y + 3.0,
            rh - 6.0,
            lw + w + 6.0,
            y + rh / 2.0 + 4.0,
            num(*n)
        );
    }
    s.push_str("</svg>");
    s.push_str("<table style=\"margin-top:8px\"><tbody>");
    for (r, n) in &drops {
        let _ = write!(
            s,
            "<tr><td><b>{}</b></td><td class=\"n\">{}</td><td class=\"muted\">{}</td></tr>",
            esc(r.name()),
            num(*n),
            esc(r.explain())
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// At most this many bars; longer replays are binned wider than a second.
const MAX_BARS: u64 = 120;

/// Input frames per second as stacked bars (forwarded, consumed,
/// dropped), from the first second with a frame to the last; seconds
/// with none are empty bars.
fn rate_svg(hist: &[Second]) -> String {
    let (Some(first), Some(last)) = (hist.first(), hist.last()) else {
        return "<p class=\"muted\">No frames.</p>".into();
    };
    let span = last.second - first.second + 1;
    let width = span.div_ceil(MAX_BARS);
    let bars = span.div_ceil(width) as usize;
    let mut bins = vec![[0u64; 3]; bars];
    for h in hist {
        let b = &mut bins[((h.second - first.second) / width) as usize];
        b[0] += h.forwarded;
        b[1] += h.consumed;
        b[2] += h.dropped;
    }
    let peak = bins
        .iter()
        .map(|b| b.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    // The Y axis in packets per second, with round steps; its top in
    // frames per bar is `max`.
    let step = nice_step(peak as f64 / width as f64 / 4.0, width == 1);
    let lines = ((peak as f64 / width as f64 / step).ceil() as u64).max(1);
    let max = step * lines as f64 * width as f64;
    let (left, top, plot_w, plot_h) = (60.0, 14.0, 1000.0, 220.0);
    let bw = plot_w / bars as f64;
    // A bar no wider than 40: a short replay's few seconds stay bars.
    let (bar_w, bar_off) = ((bw * 0.8).min(40.0), (bw - (bw * 0.8).min(40.0)) / 2.0);
    let mut s = format!(
        "<svg viewBox=\"0 0 {} {}\" width=\"100%\" \
         style=\"max-width:1100px\" role=\"img\" aria-label=\"packets per second\">",
        left + plot_w + 20.0,
        top + plot_h + 40.0
    );
    for k in 0..=lines {
        let y = top + plot_h - plot_h * k as f64 / lines as f64;
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#e6eaf0\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\" fill=\"#5b6776\">{}</text>",
            left + plot_w,
            left - 6.0,
            y + 4.0,
            fmt_rate(step * k as f64)
        );
    }
    let colours = [GREEN, BLUE, RED];
    let names = ["forwarded", "consumed", "dropped"];
    for (i, b) in bins.iter().enumerate() {
        let x = left + i as f64 * bw;
        let mut y = top + plot_h;
        let t0 = i as u64 * width;
        let _ = write!(
            s,
            "<g><title>t+{t0}s{}: {} forwarded, {} consumed, {} dropped</title>",
            if width > 1 {
                format!(" to t+{}s", t0 + width)
            } else {
                String::new()
            },
            num(b[0]),
            num(b[1]),
            num(b[2])
        );
        for (k, n) in b.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let h = *n as f64 / max * plot_h;
            y -= h;
            let _ = write!(
                s,
                "<rect x=\"{:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{h:.2}\" fill=\"{}\"/>",
                x + bar_off,
                bar_w,
                colours[k]
            );
        }
        s.push_str("</g>");
    }
    // X axis: about ten ticks, in seconds from the first frame's second.
    let step = (bars as f64 / 10.0).ceil().max(1.0) as usize;
    let _ = write!(
        s,
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#8a95a3\"/>",
        left + plot_w,
        top + plot_h,
        top + plot_h
    );
    for i in (0..bars).step_by(step) {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" \
             fill=\"#5b6776\">{}s</text>",
            left + (i as f64 + 0.5) * bw,
            top + plot_h + 16.0,
            i as u64 * width
        );
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#5b6776\">\
         seconds since {} (packet clock, s since the epoch){}</text></svg>",
        left + plot_w / 2.0,
        top + plot_h + 34.0,
        first.second,
        if width > 1 {
            format!("; each bar {width} s, height the mean per second")
        } else {
            String::new()
        }
    );
    s.push_str("<p class=\"legend\">");
    for (c, n) in colours.iter().zip(names) {
        let _ = write!(s, "<span class=\"sw\" style=\"background:{c}\"></span>{n}");
    }
    let total: [u64; 3] = bins
        .iter()
        .fold([0; 3], |a, b| [a[0] + b[0], a[1] + b[1], a[2] + b[2]]);
    let _ = write!(
        s,
        " &nbsp; input frames by final verdict; {} in {} s, peak {} per {}</p>",
        num(total.iter().sum()),
        num(span),
        num(peak),
        if width > 1 {
            format!("{width} s")
        } else {
            "second".into()
        }
    );
    s
}

/// A round axis step (1, 2 or 5 times a power of ten) of at least `raw`;
/// at least 1 when `whole`.
fn nice_step(raw: f64, whole: bool) -> f64 {
    if raw <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    if whole { step.max(1.0) } else { step }
}

fn fmt_rate(v: f64) -> String {
    if v >= 10.0 || v == v.trunc() {
        num(v.round() as u64)
    } else {
        format!("{v:.1}")
    }
}

/// The paths summary, as `trace --summary` groups it.
fn paths(s: &mut String, groups: &[PathGroup]) {
    let _ = writeln!(s, "<h2 id=\"paths\">Paths through the stages</h2>");
    if groups.is_empty() {
        s.push_str("<div class=\"panel\"><p class=\"muted\">No packets.</p></div>\n");
        return;
    }
    let total: usize = groups.iter().map(|g| g.count).sum();
    s.push_str(
        "<div class=\"panel\"><table><thead><tr><th class=\"n\">packets</th><th class=\"n\">share</th>\
         <th>outcome</th><th>path</th><th class=\"n\">e.g. packet</th></tr></thead><tbody>\n",
    );
    for g in groups {
        let (colour, outcome) = match (g.reason, g.out_port) {
            (Some(r), _) => (RED, format!("{} ({r})", g.verdict)),
            (None, Some(p)) => (
                if g.verdict == "consumed" { BLUE } else { GREEN },
                format!("{} to {p}", g.verdict),
            ),
            (None, None) => (
                if g.verdict == "consumed" { BLUE } else { AMBER },
                g.verdict.to_string(),
            ),
        };
        let _ = writeln!(
            s,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{:.1}%</td><td><span class=\"sw\" \
             style=\"background:{colour};margin-left:0\"></span>{}</td><td class=\"path\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            num(g.count as u64),
            g.count as f64 * 100.0 / total as f64,
            esc(&outcome),
            esc(&g.path.join(" \u{203a} ")),
            g.example
        );
    }
    s.push_str(
        "</tbody></table><p class=\"legend\">Packets grouped by the stages they went through and \
         their verdict, as <code>eipsim trace --summary</code> prints them; the example is the \
         packet's number in the merged input (<code>eipsim trace --packet N</code>).</p></div>\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_escapes() {
        assert_eq!(num(0), "0");
        assert_eq!(num(999), "999");
        assert_eq!(num(1000), "1,000");
        assert_eq!(num(1234567), "1,234,567");
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(nice_step(15.0 / 4.0, true), 5.0);
        assert_eq!(nice_step(0.3, true), 1.0);
        assert_eq!(nice_step(0.3, false), 0.5);
        assert_eq!(nice_step(230.0, true), 500.0);
        assert_eq!(nice_step(0.0, true), 1.0);
    }

    #[test]
    fn long_replays_are_binned_to_at_most_max_bars() {
        let hist: Vec<Second> = (0..1000)
            .map(|i| Second {
                second: 1_000 + i * 3,
                forwarded: 2,
                consumed: 0,
                dropped: 1,
            })
            .collect();
        let svg = rate_svg(&hist);
        let bars = svg.matches("<g><title>t+").count();
        assert!(bars <= MAX_BARS as usize && bars > 100, "{bars}");
        assert!(svg.contains("each bar 25 s"), "{svg}");
    }
}
