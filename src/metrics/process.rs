//! Process metrics under the standard names every Prometheus user knows (`process_*`, as the
//! Go, Python and Java clients export them), read from `/proc` at scrape time.
//!
//! Only Linux has this `/proc` layout. Elsewhere, and whenever a file is missing or does not
//! parse, the affected metrics are left out of the scrape instead of failing it: a scrape
//! that errors loses every other metric too.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`). The kernel fixes it at 100 for
/// user space on every mainstream architecture; Prometheus' own `procfs` hard-codes the same
/// value. Asking `sysconf(_SC_CLK_TCK)` would need `unsafe`, which the crate forbids.
const USER_HZ: f64 = 100.0;

/// The fields sluice uses from `/proc/self/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// User-mode CPU time, in clock ticks (field 14).
    pub utime_ticks: u64,
    /// Kernel-mode CPU time, in clock ticks (field 15).
    pub stime_ticks: u64,
    /// Start time after system boot, in clock ticks (field 22).
    pub start_ticks: u64,
    /// Virtual memory size in bytes (field 23).
    pub vsize_bytes: u64,
}

/// Parses `/proc/<pid>/stat`. The second field, the command name, is wrapped in parentheses
/// but may itself contain spaces and parentheses, so the fixed fields are counted from the
/// *last* `)`. Returns `None` on anything unexpected; never panics.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let after_comm = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first token after the command name.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n.checked_sub(3)?)?.parse().ok() };
    Some(Stat {
        utime_ticks: field(14)?,
        stime_ticks: field(15)?,
        start_ticks: field(22)?,
        vsize_bytes: field(23)?,
    })
}

/// Reads a `kB` line such as `VmRSS: 123456 kB` from `/proc/<pid>/status`, in bytes.
pub(crate) fn parse_status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let kb: u64 = parts.next()?.parse().ok()?;
        (parts.next()? == "kB").then_some(kb.checked_mul(1024)?)
    })
}

/// Reads the system boot time (`btime`, Unix seconds) from `/proc/stat`.
pub(crate) fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next()? == "btime").then_some(())?;
        parts.next()?.parse().ok()
    })
}

/// Reads the soft limit of open files from `/proc/<pid>/limits`; `None` when unlimited.
pub(crate) fn parse_max_fds(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        line.strip_prefix("Max open files")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// One scrape's worth of process facts; each is `None` when it could not be read.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Sample {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

impl Sample {
    /// Reads `/proc/self` now. On other systems every field is `None`.
    pub(crate) fn read() -> Sample {
        if !cfg!(target_os = "linux") {
            return Sample::default();
        }
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let stat = read("/proc/self/stat").as_deref().and_then(parse_stat);
        let status = read("/proc/self/status");
        let boot = read("/proc/stat").as_deref().and_then(parse_boot_time);
        Sample {
            cpu_seconds: stat.map(|s| s.utime_ticks.saturating_add(s.stime_ticks) as f64 / USER_HZ),
            resident_bytes: status.as_deref().and_then(|s| parse_status_kb(s, "VmRSS")),
            virtual_bytes: stat.map(|s| s.vsize_bytes),
            start_time_seconds: stat
                .zip(boot)
                .map(|(s, boot)| boot as f64 + s.start_ticks as f64 / USER_HZ),
            // The directory handle used to list it is one of the entries, as in other clients.
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|dir| dir.count() as u64),
            max_fds: read("/proc/self/limits").as_deref().and_then(parse_max_fds),
        }
    }
}

/// The `process_*` metric families, produced fresh on every scrape.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = Sample::read();
        if let Some(v) = s.cpu_seconds {
            let m = ConstCounter::new(v);
            // The counter encoder appends `_total`: exposed as `process_cpu_seconds_total`.
            m.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent, in seconds.",
                None,
                m.metric_type(),
            )?)?;
        }
        let gauges: [(&str, &str, Option<f64>); 5] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size, in bytes.",
                s.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size, in bytes.",
                s.virtual_bytes.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds.",
                s.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                s.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (soft limit).",
                s.max_fds.map(|v| v as f64),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let m = ConstGauge::new(v);
                m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A real line from a Linux 6.x kernel, with a hostile command name spliced in.
    fn stat_line(comm: &str) -> String {
        format!(
            "4242 ({comm}) S 1 4242 4242 0 -1 4194560 5218 0 12 0 \
             250 75 0 0 20 0 9 0 123456 1073741824 3000 18446744073709551615 \
             1 1 0 0 0 0 0 4096 17642 0 0 0 17 3 0 0 0 0 0"
        )
    }

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let want = Stat {
            utime_ticks: 250,
            stime_ticks: 75,
            start_ticks: 123_456,
            vsize_bytes: 1_073_741_824,
        };
        for comm in ["sluiced", "a b", ") 1 2 3 (", "x) S 9 9 (y", "((("] {
            assert_eq!(parse_stat(&stat_line(comm)), Some(want), "comm {comm:?}");
        }
    }

    #[test]
    fn odd_stat_text_is_rejected_without_panicking() {
        for text in [
            "",
            ")",
            "1 (x)",
            "1 (x) S 1 2",
            "no parens at all 1 2 3",
            "1 (é) S ü",
        ] {
            assert_eq!(parse_stat(text), None, "{text:?}");
        }
        let truncated = stat_line("sluiced");
        for end in 0..truncated.len() {
            // Must not panic on any prefix (including ones that split a number).
            let _ = parse_stat(&truncated[..end]);
        }
    }

    #[test]
    fn status_memory_lines_are_read_in_bytes() {
        let status = "Name:\tsluiced\nVmPeak:\t  20000 kB\nVmSize:\t   19000 kB\n\
                      VmRSS:\t    5120 kB\nThreads:\t9\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(5120 * 1024));
        assert_eq!(parse_status_kb(status, "VmSize"), Some(19000 * 1024));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        assert_eq!(parse_status_kb("VmRSS:\tlots kB\n", "VmRSS"), None);
        assert_eq!(parse_status_kb("VmRSS:\t12\n", "VmRSS"), None);
        assert_eq!(parse_status_kb("VmRSSX:\t12 kB\n", "VmRSS"), None);
    }

    #[test]
    fn boot_time_and_fd_limit_are_parsed() {
        let stat = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1764000000\nprocesses 7\n";
        assert_eq!(parse_boot_time(stat), Some(1_764_000_000));
        assert_eq!(parse_boot_time("btime\n"), None);

        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_fds(unlimited), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_sampled_on_linux() {
        let s = Sample::read();
        assert!(s.resident_bytes.unwrap() > 0);
        assert!(s.virtual_bytes.unwrap() >= s.resident_bytes.unwrap());
        assert!(s.open_fds.unwrap() >= 3);
        assert!(s.cpu_seconds.unwrap() >= 0.0);
        // Started after 2020 and not in the future.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = s.start_time_seconds.unwrap();
        assert!(start > 1_577_836_800.0 && start <= now + 1.0, "{start}");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "\\PC*") {
            let _ = parse_stat(&text);
            let _ = parse_status_kb(&text, "VmRSS");
            let _ = parse_boot_time(&text);
            let _ = parse_max_fds(&text);
        }
    }
}
