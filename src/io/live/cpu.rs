//! Where workers run: CPU lists (`--cpus`, the kernel's cpulist format as
//! `taskset -c` and VPP's `corelist-workers` take it) and pinning a thread
//! to one CPU (sched_setaffinity(2)).
//!
//! By default (`--cpus auto`) a run whose ports are all AF_PACKET and
//! that has a worker for each CPU it may run on (the default worker
//! count) pins worker `i` to the `i`-th of them; any other run leaves the
//! workers to the scheduler ([`placement`]). Measured on a 2-core machine
//! with the endpoints on the same CPUs (BENCHMARKS.md, "Pinning and the
//! ring as the AF_PACKET defaults"): over AF_PACKET ports with their
//! receive rings, pinned workers delivered about 1.5x the small UDP
//! datagrams and 1.17x one TCP stream of unpinned ones; on TAP devices
//! pinning changed nothing beyond the noise ("Workers pinned to CPUs").
//! On a host whose workers have CPUs of their own (VPP's and OVS-DPDK's
//! setting) it keeps a worker's caches and queues on one core.

use std::io;

/// Parses a CPU list: comma-separated CPU numbers and inclusive ranges,
/// `0-3,6` (as `taskset -c`, `/sys/devices/system/cpu/online` and
/// cpuset(7) write them). Order is kept and repeats are allowed: worker
/// `i` runs on entry `i` (modulo the length).
///
/// Errors: an empty list, an empty item, a number that does not parse, a
/// range whose end is below its start, or a CPU at or above
/// `libc::CPU_SETSIZE` (1024); the message names the item.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let max = libc::CPU_SETSIZE as usize;
    let num = |t: &str| -> Result<usize, String> {
        let n: usize = t
            .trim()
            .parse()
            .map_err(|_| format!("{t:?} in {s:?} is not a CPU number"))?;
        if n >= max {
            return Err(format!(
                "CPU {n} in {s:?} is beyond the largest, {}",
                max - 1
            ));
        }
        Ok(n)
    };
    let mut cpus = Vec::new();
    for item in s.split(',') {
        if item.trim().is_empty() {
            return Err(format!(
                "{s:?} has an empty item: write CPUs as 0-3,6 (numbers and ranges, comma-separated)"
            ));
        }
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if b < a {
                    return Err(format!("range {item:?} in {s:?} ends before it starts"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(num(item)?),
        }
    }
    Ok(cpus)
}

/// Writes CPUs as a cpulist: ascending runs become ranges (`0-3,6`), in
/// the given order otherwise.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if j > i {
            format!("{}-{}", cpus[i], cpus[j])
        } else {
            cpus[i].to_string()
        });
        i = j + 1;
    }
    out.join(",")
}

/// The CPUs this process may run on (sched_getaffinity(2) of the calling
/// thread), ascending: what `taskset` or a cgroup's cpuset left it.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the kernel writes
    // at most size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins the calling thread to one CPU. Errors: the kernel's (EINVAL for a
/// CPU that is offline or outside the process's cpuset).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: as in `allowed_cpus`; CPU_SET's index is checked above.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What `--cpus` asks for.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Pinning {
    /// `auto` (the default): pinned when every port is AF_PACKET and each
    /// worker can have a CPU of its own, else left to the scheduler.
    #[default]
    Auto,
    /// `none`: the scheduler places the workers.
    None,
    /// A CPU list: worker `i` on entry `i` (modulo the length).
    List(Vec<usize>),
}

impl Pinning {
    /// `auto`, `none`, or a CPU list ([`parse_cpu_list`], whose errors
    /// these are).
    pub fn parse(s: &str) -> Result<Pinning, String> {
        match s.trim() {
            "auto" => Ok(Pinning::Auto),
            "none" => Ok(Pinning::None),
            _ => parse_cpu_list(s)
                .map(Pinning::List)
                .map_err(|e| format!("{e} (or auto, or none)")),
        }
    }
}

/// Where the workers run, and why (the report's `live.pinning`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The CPU of each worker; `None`: not pinned, the scheduler places
    /// them.
    pub cpus: Option<Vec<usize>>,
    /// Why, in a few words: `--cpus LIST`, `--cpus none`, or what `auto`
    /// found.
    pub why: String,
}

/// The CPU of each worker. A list: entry `w % len` for worker `w`.
/// `Auto`: worker `w` on the `w`-th of the `allowed` CPUs when
/// `all_af_packet` and there are exactly as many workers as allowed CPUs
/// (the default worker count: eipsim then has every CPU it may use, one
/// per worker, so pinning moves no one onto CPUs the host kept for
/// others); else not pinned. A run with fewer workers than CPUs (`--workers
/// 1`, a container's CPU quota) is not pinned: the lowest CPUs are where
/// other pinned programs and interrupts tend to be.
///
/// Errors: a CPU of `--cpus` this process may not run on (named, with
/// the `allowed` list: what sched_getaffinity gave).
pub fn placement(
    workers: usize,
    pinning: &Pinning,
    all_af_packet: bool,
    allowed: &[usize],
) -> Result<Placement, String> {
    let not = |why: String| Ok(Placement { cpus: None, why });
    let list = match pinning {
        Pinning::None => return not("--cpus none".into()),
        Pinning::Auto if !all_af_packet => {
            return not("auto: not pinned, a port is a TAP device".into());
        }
        Pinning::Auto if workers != allowed.len() => {
            return not(format!(
                "auto: not pinned, {workers} worker(s) for {} allowed CPU(s)",
                allowed.len()
            ));
        }
        Pinning::Auto => {
            return Ok(Placement {
                cpus: Some(allowed.to_vec()),
                why: "auto: pinned, every port is AF_PACKET and each allowed CPU has a worker"
                    .into(),
            });
        }
        Pinning::List(list) => list,
    };
    if let Some(c) = list.iter().find(|c| !allowed.contains(c)) {
        return Err(format!(
            "--cpus: CPU {c} is not one this process may run on (allowed: {})",
            format_cpu_list(allowed)
        ));
    }
    Ok(Placement {
        cpus: Some((0..workers).map(|w| list[w % list.len()]).collect()),
        why: format!("--cpus {}", format_cpu_list(list)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_as_taskset_writes_them() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0-3,6").unwrap(), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("3,1").unwrap(), vec![3, 1]);
        assert_eq!(parse_cpu_list(" 2 - 4 ").unwrap(), vec![2, 3, 4]);
        for bad in ["", "1,", "a", "3-1", "0-x", "1024", "-1"] {
            let e = parse_cpu_list(bad).unwrap_err();
            assert!(
                e.contains(&format!("{bad:?}")) || e.contains("empty"),
                "{bad}: {e}"
            );
        }
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(format_cpu_list(&[1, 0]), "1,0");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn workers_go_where_cpus_says_or_are_left_to_the_scheduler() {
        let allowed = [0, 1];
        let list = |l: &[usize]| Pinning::List(l.to_vec());
        let cpus = |w, p: &Pinning, af| placement(w, p, af, &allowed).unwrap().cpus;
        for af_packet in [false, true] {
            assert_eq!(cpus(2, &Pinning::None, af_packet), None);
            assert_eq!(cpus(2, &list(&[1, 0]), af_packet), Some(vec![1, 0]));
            // Wraps around.
            assert_eq!(cpus(3, &list(&[1]), af_packet), Some(vec![1, 1, 1]));
            let e = placement(2, &list(&[0, 5]), af_packet, &allowed).unwrap_err();
            assert!(e.contains("CPU 5") && e.contains("allowed: 0-1"), "{e}");
        }
        assert_eq!(
            placement(2, &list(&[1, 0]), true, &allowed).unwrap().why,
            "--cpus 1,0"
        );
        assert_eq!(
            placement(2, &Pinning::None, true, &allowed).unwrap().why,
            "--cpus none"
        );
    }

    #[test]
    fn auto_pins_af_packet_runs_with_a_worker_on_each_allowed_cpu() {
        let auto = Pinning::Auto;
        let p = |w, af, allowed: &[usize]| placement(w, &auto, af, allowed).unwrap();
        // A TAP device among the ports: the scheduler places the workers.
        assert_eq!(p(2, false, &[0, 1]).cpus, None);
        assert!(p(2, false, &[0, 1]).why.contains("TAP"));
        // All AF_PACKET, a worker per allowed CPU: each on its own, in
        // the order taskset left them.
        assert_eq!(p(2, true, &[0, 1]).cpus, Some(vec![0, 1]));
        assert_eq!(p(3, true, &[2, 5, 7]).cpus, Some(vec![2, 5, 7]));
        assert_eq!(p(1, true, &[3]).cpus, Some(vec![3]));
        assert!(p(1, true, &[3]).why.starts_with("auto: pinned"));
        // Fewer workers than CPUs (--workers 1, a CPU quota): the lowest
        // CPUs would be everyone's choice, so none is pinned; more workers
        // than CPUs: two would share one.
        assert_eq!(p(1, true, &[0, 1]).cpus, None);
        assert_eq!(p(2, true, &[0, 1, 2, 3]).cpus, None);
        assert_eq!(p(3, true, &[0, 1]).cpus, None);
        assert_eq!(
            p(1, true, &[0, 1]).why,
            "auto: not pinned, 1 worker(s) for 2 allowed CPU(s)"
        );
        assert_eq!(Pinning::parse("auto").unwrap(), Pinning::Auto);
        assert_eq!(Pinning::parse("none").unwrap(), Pinning::None);
        assert_eq!(Pinning::parse("0-2").unwrap(), Pinning::List(vec![0, 1, 2]));
        let e = Pinning::parse("nope").unwrap_err();
        assert!(
            e.contains("\"nope\"") && e.contains("or auto, or none"),
            "{e}"
        );
        assert_eq!(Pinning::default(), Pinning::Auto);
    }

    #[test]
    fn this_thread_can_be_pinned_to_an_allowed_cpu() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        let cpu = *allowed.last().unwrap();
        // On a thread of its own: the test harness's threads keep theirs.
        std::thread::spawn(move || {
            pin_current_thread(cpu).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![cpu]);
            // SAFETY: sched_getcpu(3) has no preconditions.
            assert_eq!(unsafe { libc::sched_getcpu() }, cpu as i32);
        })
        .join()
        .unwrap();
        assert!(pin_current_thread(libc::CPU_SETSIZE as usize).is_err());
    }
}
