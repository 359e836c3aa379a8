//! `/proc` readings: CPU time of this process's threads by name (so the nodes' runtime can be
//! told from the bench's own load generator and tap), of another process (a nats-server),
//! and resident memory. Linux only; a reading that cannot be had is 0.

use std::time::Duration;

/// CPU time run so far by a thread's `schedstat` file (nanoseconds, first field).
fn schedstat(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// CPU time of every thread of process `pid` (`None`: this one) whose name starts with
/// `name_prefix` (`""`: all).
pub fn cpu_of_threads(pid: Option<u32>, name_prefix: &str) -> Duration {
    let base = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("{base}/task")).into_iter().flatten().flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if name.trim_end().starts_with(name_prefix) {
            total += schedstat(&dir.join("schedstat"));
        }
    }
    Duration::from_nanos(total)
}

/// CPU time of the calling thread.
pub fn cpu_of_this_thread() -> Duration {
    Duration::from_nanos(schedstat(std::path::Path::new("/proc/thread-self/schedstat")))
}

/// Resident memory of process `pid` (`None`: this one), in bytes.
pub fn rss(pid: Option<u32>) -> u64 {
    let path = pid.map_or_else(|| "/proc/self/status".to_owned(), |p| format!("/proc/{p}/status"));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next().and_then(|kib| kib.parse::<u64>().ok()))
        })
        .map_or(0, |kib| kib * 1024)
}
