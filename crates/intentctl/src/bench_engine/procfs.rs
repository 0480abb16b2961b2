//! What the bench reads about a process from /proc: CPU time used (utime + stime), the
//! resident set now (VmRSS) and its peak (VmHWM), and the reset of that peak.

use anyhow::Context;

/// Linux reports utime and stime in /proc/<pid>/stat in USER_HZ ticks, which the kernel
/// fixes at 100 per second for every architecture it exports to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// Which process: this one or a child by pid.
#[derive(Clone, Copy, Debug)]
pub enum Process {
    This,
    Child(u32),
}

impl Process {
    fn path(self, file: &str) -> String {
        match self {
            Process::This => format!("/proc/self/{file}"),
            Process::Child(pid) => format!("/proc/{pid}/{file}"),
        }
    }
}

/// CPU seconds (user + system) the process has used so far.
pub fn cpu_seconds(process: Process) -> anyhow::Result<f64> {
    let path = process.path("stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let after_name = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path} has no ')'"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the line (utime, stime) are 11 and 12 after the name.
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .with_context(|| format!("{path} has too few fields"))?
            .parse::<u64>()
            .with_context(|| format!("{path}: field {index} after the name is not a number"))
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / TICKS_PER_SECOND)
}

/// A `VmXXX:` line of /proc/<pid>/status, in KiB.
fn status_kib(process: Process, field: &str) -> anyhow::Result<u64> {
    let path = process.path("status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = text
        .lines()
        .find(|line| line.starts_with(field))
        .with_context(|| format!("{path} has no {field}"))?;
    line.split_whitespace()
        .nth(1)
        .with_context(|| format!("{path}: {field} has no value"))?
        .parse()
        .with_context(|| format!("{path}: {field} is not a number"))
}

/// Resident set size now, KiB.
pub fn rss_kib(process: Process) -> anyhow::Result<u64> {
    status_kib(process, "VmRSS:")
}

/// Peak resident set size since start or the last [`reset_peak`], KiB.
pub fn peak_rss_kib(process: Process) -> anyhow::Result<u64> {
    status_kib(process, "VmHWM:")
}

/// Resets the peak RSS to the current RSS (`5` into clear_refs, Linux 4.0+). False when
/// the kernel or the container refuses; the peak is then cumulative since the start.
pub fn reset_peak(process: Process) -> bool {
    std::fs::write(process.path("clear_refs"), "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_sane_figures() {
        let cpu_before = cpu_seconds(Process::This).expect("cpu");
        // Burn a little CPU so the tick counter moves.
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(60) {
            spin = spin.wrapping_add(std::hint::black_box(1));
        }
        assert!(spin > 0);
        let cpu_after = cpu_seconds(Process::This).expect("cpu");
        assert!(cpu_after > cpu_before, "{cpu_before} -> {cpu_after}");
        let rss = rss_kib(Process::This).expect("rss");
        let peak = peak_rss_kib(Process::This).expect("peak");
        assert!(rss > 0 && peak >= rss, "rss {rss} peak {peak}");
        assert!(cpu_seconds(Process::Child(u32::MAX)).is_err());
    }
}
