//! The scripts users run: `scripts/replace-eni.sh` rehearses replacing a
//! secondary ENI under live traffic, with real kernels in network
//! namespaces (it removes everything it made).
//!
//! Without root, /dev/net/tun, `ip` or `python3` the test skips with a
//! message, unless EIPSIM_REQUIRE_TAP=1 (CI sets it): then it fails.

use std::process::Command;

mod common;

#[test]
fn replace_eni_script_keeps_its_promise() {
    if !common::lab_available_with(
        "replace_eni_script_keeps_its_promise",
        &[("bash", "bash"), ("python3", "python3")],
    ) {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/replace-eni.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("EIPSIM_BIN", env!("CARGO_BIN_EXE_eipsim"))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "replace-eni.sh: {}\n{stdout}\n{stderr}",
        out.status
    );
    for line in [
        "  ok: the flow that ended is eth1's transfer",
        "  ok: every byte intact",
        "  ok: no stall (longest gap under 1 s)",
        "  ok: it ended with its ENI",
        "  ok: the Internet host reached the instance at 203.0.113.30, which saw it as 198.51.100.7",
        "  ok: 3 applied, 1 refused, 1 flow ended",
        "  eipsim run: detach-eni applied: 1 flow(s) ended",
        "== every check held: eth1 was replaced by eth3, the primary's transfer never noticed",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing {line:?} in:\n{stdout}\n{stderr}"
        );
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
}
