//! Counting: per-session tallies, percentiles, and what the process can read about itself
//! and about the server (CPU, memory).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::smtp::Fail;

/// Connects slower than this most likely waited for a SYN retransmission (the first
/// retransmission timeout is 1 s): the server's accept queue overflowed.
pub const SLOW_CONNECT: Duration = Duration::from_millis(900);

/// What sessions count; merged at the end.
#[derive(Debug, Default)]
pub struct Tally {
    pub delivered: u64,
    /// Messages started but not delivered (their connection failed).
    pub failed: u64,
    /// Messages cut short by the run's time bound.
    pub unfinished: u64,
    pub latency_us: Vec<u32>,
    pub connect_us: Vec<u32>,
    pub slow_connects: u64,
    /// Connections whose EHLO reply advertised PIPELINING.
    pub advertised: u64,
    /// Messages sent with MAIL+RCPT+DATA in one write.
    pub pipelined: u64,
    pub errors: BTreeMap<String, u64>,
    /// The first few errors in full.
    pub samples: Vec<String>,
    pub timed_out: bool,
}

impl Tally {
    /// Records a failure; returns the number of errors it added (0 for the time bound).
    pub fn fail(&mut self, fail: &Fail) -> u64 {
        if *fail == Fail::Deadline {
            self.timed_out = true;
            return 0;
        }
        *self.errors.entry(fail.class()).or_default() += 1;
        if self.samples.len() < 3 {
            self.samples.push(fail.to_string());
        }
        1
    }

    pub fn connected(&mut self, took: Duration, advertised: bool) {
        self.connect_us.push(micros(took));
        if took >= SLOW_CONNECT {
            self.slow_connects += 1;
        }
        if advertised {
            self.advertised += 1;
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn merge(&mut self, other: Tally) {
        self.delivered += other.delivered;
        self.failed += other.failed;
        self.unfinished += other.unfinished;
        self.latency_us.extend(other.latency_us);
        self.connect_us.extend(other.connect_us);
        self.slow_connects += other.slow_connects;
        self.advertised += other.advertised;
        self.pipelined += other.pipelined;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for s in other.samples {
            if self.samples.len() < 5 {
                self.samples.push(s);
            }
        }
        self.timed_out |= other.timed_out;
    }

    /// `class=count,...` with spaces and `=` replaced, for the RESULT line.
    pub fn error_summary(&self) -> String {
        if self.errors.is_empty() {
            return "none".into();
        }
        self.errors
            .iter()
            .map(|(k, v)| format!("{}:{v}", k.replace([' ', '='], "_")))
            .collect::<Vec<_>>()
            .join(",")
    }
}

pub fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// Percentiles of a set of microsecond samples, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spread {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    /// Nearest-rank percentiles; all zero without samples. Sorts `samples`.
    pub fn of(samples: &mut [u32]) -> Spread {
        if samples.is_empty() {
            return Spread::default();
        }
        samples.sort_unstable();
        let rank = |q: f64| {
            let i = (q * samples.len() as f64).ceil() as usize;
            f64::from(samples[i.clamp(1, samples.len()) - 1]) / 1000.0
        };
        Spread {
            p50: rank(0.50),
            p99: rank(0.99),
            max: rank(1.0),
        }
    }
}

/// User plus system CPU seconds of this process so far.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Raises the soft limit on open files towards `want` (up to the hard limit).
pub fn raise_fd_limit(want: u64) {
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let want = want as libc::rlim_t;
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A `Vm*` field of `/proc/PID/status`, in KiB.
pub fn proc_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        let s = Spread::of(&mut v);
        assert_eq!((s.p50, s.p99, s.max), (50.0, 99.0, 100.0));
        let mut one = vec![1500];
        assert_eq!(Spread::of(&mut one).p50, 1.5);
        assert_eq!(Spread::of(&mut []), Spread::default());
    }

    #[test]
    fn reads_own_memory() {
        let pid = std::process::id();
        assert!(proc_kb(pid, "VmRSS").is_some_and(|kb| kb > 0));
        assert!(proc_kb(pid, "VmNothing").is_none());
    }
}
