//! Where workers run: CPU lists (`--cpus`, the kernel's cpulist format as
//! `taskset -c` and VPP's `corelist-workers` take it) and pinning a thread
//! to one CPU (sched_setaffinity(2)).
//!
//! Pinning is asked for, not the default: measured on a 2-core machine
//! with the endpoints on the same CPUs, it helped one TCP stream or hurt
//! small UDP datagrams depending on how the scheduler grouped the other
//! processes (BENCHMARKS.md, "Workers pinned to CPUs"). On a host whose
//! workers have CPUs of their own (VPP's and OVS-DPDK's setting) it keeps
//! a worker's caches and queues on one core.

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

/// The CPU of each worker: entry `w % len` of `--cpus` for worker `w`;
/// `None` (no `--cpus`): not pinned, the scheduler places them.
///
/// Errors: a CPU of `--cpus` this process may not run on (named, with
/// the `allowed` list: what sched_getaffinity gave).
pub fn placement(
    workers: usize,
    given: Option<&[usize]>,
    allowed: &[usize],
) -> Result<Option<Vec<usize>>, String> {
    let Some(list) = given else {
        return Ok(None);
    };
    if let Some(c) = list.iter().find(|c| !allowed.contains(c)) {
        return Err(format!(
            "--cpus: CPU {c} is not one this process may run on (allowed: {})",
            format_cpu_list(allowed)
        ));
    }
    Ok(Some((0..workers).map(|w| list[w % list.len()]).collect()))
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
        assert_eq!(placement(2, None, &allowed).unwrap(), None);
        assert_eq!(
            placement(2, Some(&[1, 0]), &allowed).unwrap(),
            Some(vec![1, 0])
        );
        // Wraps around.
        assert_eq!(
            placement(3, Some(&[1]), &allowed).unwrap(),
            Some(vec![1, 1, 1])
        );
        let e = placement(2, Some(&[0, 5]), &allowed).unwrap_err();
        assert!(e.contains("CPU 5") && e.contains("allowed: 0-1"), "{e}");
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
