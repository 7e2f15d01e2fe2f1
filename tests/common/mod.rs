//! What the root-only end-to-end tests share: whether they can run here.
//!
//! Without root or a tool they need, a test prints `SKIPPED ...` and
//! passes, unless `EIPSIM_REQUIRE_TAP=1` (CI sets it): then it fails.

use std::process::Command;

/// True if `cmd` is on the PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether `test` can run here: root, /dev/net/tun, the ip command, and
/// each `(command, what it is)` of `tools`. If not, skip with a message
/// (or panic under `EIPSIM_REQUIRE_TAP=1`).
pub fn lab_available_with(test: &str, tools: &[(&str, &str)]) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut missing: Vec<&str> = [
        (!root).then_some("root"),
        (!std::path::Path::new("/dev/net/tun").exists()).then_some("/dev/net/tun"),
        (!have("ip")).then_some("the ip command (iproute2)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    missing.extend(
        tools
            .iter()
            .filter(|(c, _)| !have(c))
            .map(|(_, what)| *what),
    );
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: needs {}", missing.join(", "));
    if std::env::var("EIPSIM_REQUIRE_TAP").as_deref() == Ok("1") {
        panic!("{msg} (EIPSIM_REQUIRE_TAP=1)");
    }
    eprintln!("SKIPPED {msg}");
    false
}
