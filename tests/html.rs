//! `eipsim replay --html FILE`: one self-contained page, and that it
//! renders in a browser.
//!
//! The first tests always run: the page refers to nothing outside itself
//! and shows the demo's ports, ENIs, EIPs, drop reasons and paths. The
//! rendering test needs headless Chromium (Debian's `chromium`, which
//! .ci/run installs); without it, it prints `SKIPPED ...` and passes,
//! unless EIPSIM_REQUIRE_TAP=1 (CI sets it): then it fails. Its screenshot
//! and the page are kept as artifacts: `target/html-report.png` and
//! `target/html-report.html`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A scratch directory, removed when the test ends (also on failure).
struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmpdir(tag: &str) -> TmpDir {
    let d = std::env::temp_dir().join(format!("eipsim-html-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Replays a scenario of pcaps/ with `--html`; returns the page and
/// report.json.
fn replay_html(dir: &Path, scenario: &str, events: bool) -> (String, Value) {
    let sc = root().join("pcaps").join(scenario);
    let out = dir.join("out");
    let page = dir.join("report.html");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eipsim"));
    cmd.arg("replay")
        .arg("--config")
        .arg(sc.join("topology.toml"))
        .arg("--out-dir")
        .arg(&out)
        .arg("--html")
        .arg(&page);
    for port in ["instance", "internet", "vpc"] {
        let f = sc.join("in").join(format!("{port}.pcap"));
        if f.exists() {
            cmd.arg("--in").arg(format!("{port}={}", f.display()));
        }
    }
    if events {
        cmd.arg("--events").arg(sc.join("events.toml"));
    }
    let o = cmd.output().expect("runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("wrote {}", page.display())), "{err}");
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    (
        std::fs::read_to_string(&page).unwrap(),
        serde_json::from_str(&report).unwrap(),
    )
}

/// What would make the page fetch something: a URL, a `src`, a
/// stylesheet or script file, a CSS import or an external `url(...)`.
fn external_references(page: &str) -> Vec<String> {
    let lower = page.to_ascii_lowercase();
    let mut found = Vec::new();
    for bad in [
        "http://",
        "https://",
        "src=",
        "<link rel=\"stylesheet\"",
        "@import",
        "<script",
        "<iframe",
        "<object",
        "<embed",
        "<img",
    ] {
        if lower.contains(bad) {
            found.push(bad.to_string());
        }
    }
    // url(...) only to the page's own SVG markers.
    for (i, _) in lower.match_indices("url(") {
        if !lower[i..].starts_with("url(#") {
            found.push(lower[i..(i + 40).min(lower.len())].to_string());
        }
    }
    // href only to data: (the empty favicon, so no favicon is fetched).
    for (i, _) in lower.match_indices("href=\"") {
        if !lower[i..].starts_with("href=\"data:") {
            found.push(lower[i..(i + 40).min(lower.len())].to_string());
        }
    }
    found
}

/// 1234 -> "1,234", as the page writes numbers.
fn commas(n: u64) -> String {
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

#[test]
fn the_page_is_self_contained_and_shows_the_demo() {
    let dir = tmpdir("demo");
    let (page, report) = replay_html(&dir.0, "demo", false);
    assert!(page.starts_with("<!DOCTYPE html>"), "{}", &page[..100]);
    assert!(page.trim_end().ends_with("</html>"));
    assert_eq!(
        external_references(&page),
        Vec::<String>::new(),
        "the page must not fetch anything"
    );
    // The diagram, the traffic bars and the two charts are inline SVG.
    assert!(page.contains("aria-label=\"topology diagram\""));
    assert!(page.contains("aria-label=\"drop reasons\""));
    assert!(page.contains("aria-label=\"packets per second\""));
    assert!(page.matches("<svg ").count() >= 4);
    // Every port, ENI and EIP, in the diagram and in the traffic table,
    // with report.json's packet counts.
    for (group, names) in [
        ("ports", vec!["instance", "internet", "vpc"]),
        ("enis", vec!["eth0", "eth1", "eth2"]),
        (
            "eips",
            vec![
                "203.0.113.10",
                "203.0.113.11",
                "203.0.113.12",
                "203.0.113.13",
            ],
        ),
    ] {
        for n in names {
            let t = &report[group][n];
            assert!(t.is_object(), "{group} {n} in report.json");
            let row = format!("<td><b>{n}</b></td>");
            let at = page.find(&row).unwrap_or_else(|| panic!("no row for {n}"));
            let cells: String = page[at..].chars().take(600).collect();
            for k in ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"] {
                let v = commas(t[k].as_u64().unwrap());
                assert!(
                    cells.contains(&format!("<td class=\"n\">{v}</td>")),
                    "{n} {k} = {v}: {cells}"
                );
            }
            let tip = match group {
                "ports" => format!("(port {n})"),
                "enis" => format!("<title>ENI {n}:"),
                _ => format!("<title>EIP {n} on"),
            };
            assert!(page.contains(&tip), "the diagram shows {n}");
        }
    }
    // The routes on the diagram's edges, and the NAT / cut-through words.
    assert!(page.contains("default metric 0"));
    assert!(page.contains("NAT 172.16.0.10") && page.contains(">cut-through</text>"));
    // Every drop reason of the demo (and only those) in the chart.
    let drops = report["drops"].as_object().unwrap();
    let mut seen = 0;
    for (reason, n) in drops {
        let n = n.as_u64().unwrap();
        let in_chart = page.contains(&format!("<title>{reason}: "));
        assert_eq!(in_chart, n > 0, "{reason}: {n}");
        seen += usize::from(n > 0);
    }
    assert!(seen >= 4, "the demo drops for several reasons");
    for r in ["alg_unsupported", "spoofed_source", "unknown_eip"] {
        assert!(page.contains(&format!("<title>{r}: ")), "{r}");
    }
    // Packets per second: the demo's 15 frames by verdict.
    let f = &report["frames"];
    let title = format!(
        ": {} forwarded, {} consumed, {} dropped</title>",
        f["forwarded"], f["consumed"], f["dropped"]
    );
    assert!(page.contains(&title), "{title}");
    // The paths summary: the ARP request's path, and a count per group
    // that adds up to the frames received.
    assert!(page.contains("receive \u{203a} arp \u{203a} verdict"));
    assert!(page.contains("dropped (alg_unsupported)"));
    let paths = &page[page.find("id=\"paths\"").unwrap()..];
    let total: u64 = paths
        .split("<tr><td class=\"n\">")
        .skip(1)
        .map(|r| {
            r[..r.find('<').unwrap()]
                .replace(',', "")
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, f["received"].as_u64().unwrap());
}

/// With --events the page shows the topology at the end, as report.json
/// counts it: ENIs added, detached, EIPs disassociated.
#[test]
fn the_page_follows_topology_events() {
    let dir = tmpdir("events");
    let (page, report) = replay_html(&dir.0, "topology_changes", true);
    assert_eq!(external_references(&page), Vec::<String>::new());
    for (eni, _) in report["enis"].as_object().unwrap() {
        assert!(page.contains(&format!("<title>ENI {eni}:")), "{eni}");
    }
    for (eip, _) in report["eips"].as_object().unwrap() {
        assert!(page.contains(&format!("<title>EIP {eip} on")), "{eip}");
    }
}

/// The first of `chromium`, `chromium-browser` on the PATH.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Runs headless Chromium on `page` with `args`; returns (stdout, the
/// console messages it logged, stderr). Killed after two minutes.
fn run_chromium(exe: &str, page: &Path, profile: &Path, args: &[String]) -> (String, Vec<String>) {
    let mut child = Command::new(exe)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    // Read both pipes on threads, so a full pipe cannot stall chromium.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (t_out.join().unwrap(), t_err.join().unwrap());
    assert!(status.success(), "chromium failed: {status}\n{stderr}");
    (stdout, console_messages(&stderr))
}

/// Chromium's log lines for the page's console (`...:CONSOLE:1] "msg",
/// source: ...`, errors, warnings and uncaught exceptions alike) and any
/// "Uncaught" error. The page has no script, so it should log none.
fn console_messages(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_page_renders_in_headless_chromium() {
    let Some(exe) = chromium() else {
        let msg =
            "the_page_renders_in_headless_chromium: needs chromium (apt-get install chromium)";
        if std::env::var("EIPSIM_REQUIRE_TAP").as_deref() == Ok("1") {
            panic!("{msg} (EIPSIM_REQUIRE_TAP=1)");
        }
        eprintln!("SKIPPED {msg}");
        return;
    };
    let dir = tmpdir("chromium");
    let (page, _) = replay_html(&dir.0, "demo", false);
    // The artifacts, next to the build's other outputs.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .to_path_buf();
    let html = target.join("html-report.html");
    let png = target.join("html-report.png");
    std::fs::write(&html, &page).unwrap();
    let _ = std::fs::remove_file(&png);

    // The checker sees console errors: a page that logs one and throws.
    let bad = dir.0.join("bad.html");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><html><head><link rel=\"icon\" href=\"data:,\"></head><body><p>x</p>\
         <script>console.error(\"logged-error\"); throw new Error(\"thrown-error\");</script>\
         </body></html>",
    )
    .unwrap();
    let (_, msgs) = run_chromium(
        exe,
        &bad,
        &dir.0.join("profile-bad"),
        &["--dump-dom".into()],
    );
    assert!(
        msgs.iter().any(|m| m.contains("logged-error"))
            && msgs
                .iter()
                .any(|m| m.contains("Uncaught Error: thrown-error")),
        "console messages are not seen: {msgs:?}"
    );

    // The report: a screenshot, no console message.
    let (_, msgs) = run_chromium(
        exe,
        &html,
        &dir.0.join("profile-shot"),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,2600".into(),
            "--hide-scrollbars".into(),
        ],
    );
    assert!(msgs.is_empty(), "console messages: {msgs:#?}");
    let shot = std::fs::read(&png).expect("the screenshot is written");
    assert!(shot.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    // Width and height from the IHDR chunk.
    let (w, h) = (
        u32::from_be_bytes(shot[16..20].try_into().unwrap()),
        u32::from_be_bytes(shot[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (1280, 2600));
    assert!(shot.len() > 50_000, "a page with content, not a blank one");

    // The DOM Chromium built holds what the file says: it parsed all of it.
    let (dom, msgs) = run_chromium(
        exe,
        &html,
        &dir.0.join("profile-dom"),
        &["--dump-dom".into()],
    );
    assert!(msgs.is_empty(), "console messages: {msgs:#?}");
    for s in [
        "aria-label=\"topology diagram\"",
        "aria-label=\"packets per second\"",
        "<title>ENI eth2:",
        "<title>EIP 203.0.113.12 on",
        "<title>alg_unsupported: ",
        "id=\"paths\"",
        "</footer>",
    ] {
        assert!(dom.contains(s), "{s} not in the rendered DOM");
    }
    eprintln!("kept {} and {}", png.display(), html.display());
}
