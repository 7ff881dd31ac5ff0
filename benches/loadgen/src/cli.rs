//! Command line of `smtp-load`: parsing, limits, and the loopback-only target check.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Upper bounds that keep every run small enough for one machine.
pub const MAX_SESSIONS: usize = 20_000;
pub const MAX_MESSAGES: u64 = 10_000_000;
pub const MAX_SIZE: usize = 64 << 20;
pub const MAX_TIMEOUT_SECS: f64 = 3600.0;

/// When to send MAIL, RCPT and DATA in one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipelining {
    /// Lock-step: one command, one reply.
    Off,
    /// Pipeline when the EHLO reply advertises PIPELINING, else lock-step.
    Auto,
    /// Pipeline even when not advertised (to test a server's robustness).
    Force,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub target: SocketAddr,
    pub sessions: usize,
    /// Messages in total, or per session with `per_session`.
    pub messages: u64,
    pub per_session: bool,
    /// Message size in bytes (headers and body, without the terminating dot line).
    pub size: usize,
    pub pipelining: Pipelining,
    /// Messages per connection before QUIT and a new connection; 0 = no limit.
    pub per_connection: u64,
    /// Hard bound of the whole run.
    pub timeout: Duration,
    /// Bound on each reply (and each write).
    pub reply_timeout: Duration,
    pub threads: usize,
    /// Stop once this many errors happened.
    pub max_errors: u64,
    pub helo: String,
    pub from: String,
    pub to: String,
    /// Idle mode: open this many connections (EHLO done) and keep them open.
    pub idle: usize,
    /// Process whose VmRSS is read before and after the idle connections open.
    pub watch_pid: Option<u32>,
    /// How long idle connections are held after measuring.
    pub hold: Duration,
    pub quiet: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            target: SocketAddr::from(([127, 0, 0, 1], 25)),
            sessions: 1,
            messages: 1000,
            per_session: false,
            size: 1024,
            pipelining: Pipelining::Off,
            per_connection: 0,
            timeout: Duration::from_secs(60),
            reply_timeout: Duration::from_secs(10),
            threads: 1,
            max_errors: 100,
            helo: "loadgen.invalid".into(),
            from: "sender@loadgen.invalid".into(),
            to: "sink@loadgen.invalid".into(),
            idle: 0,
            watch_pid: None,
            hold: Duration::ZERO,
            quiet: false,
        }
    }
}

pub const USAGE: &str = "\
usage: smtp-load [OPTIONS] HOST:PORT        (HOST must be a loopback address)

load (default mode): SESSIONS connections share MESSAGES messages of SIZE bytes
  -s, --sessions N          concurrent sessions (default 1)
  -m, --messages M          messages in total (default 1000)
      --per-session         M counts per session instead of in total
  -l, --size S              message size: bytes, or with k/K/KiB or m/M/MiB (default 1024)
  -p, --pipeline MODE       off (lock-step, default) | auto (MAIL+RCPT+DATA in one write
                            when PIPELINING is advertised) | force
  -k, --per-connection K    QUIT and reconnect after K messages (0 = never, default)
      --churn               one message per connection (= -k 1)
  -d, --timeout SECS        hard bound of the whole run (default 60)
      --reply-timeout SECS  bound on each reply or write (default 10)
  -t, --threads N           runtime threads (default 1)
  -e, --max-errors N        stop after N errors (default 100)
      --helo NAME  --from ADDR  --to ADDR

idle mode: measure a server's memory per idle connection
      --idle N              open N connections, each greeted and EHLO'd, and keep them open
      --watch-pid PID       read PID's VmRSS before and after (per-connection delta)
      --hold SECS           keep them open this long after measuring (default 0)

  -q, --quiet               only the RESULT line
  -h, --help

Prints a summary and one machine-readable line: RESULT key=value ...
Exit status: 0 all delivered without error, 1 errors or messages missing, 2 usage,
3 hard timeout.";

/// Parses `args` (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
    let mut cfg = Config::default();
    let mut target: Option<String> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-s" | "--sessions" => cfg.sessions = number(&value(&flag)?, &flag)?,
            "-m" | "--messages" => cfg.messages = number(&value(&flag)?, &flag)?,
            "--per-session" => cfg.per_session = true,
            "-l" | "--size" => cfg.size = parse_size(&value(&flag)?)?,
            "-p" | "--pipeline" => {
                cfg.pipelining = match value(&flag)?.as_str() {
                    "off" | "no" => Pipelining::Off,
                    "auto" | "on" | "yes" => Pipelining::Auto,
                    "force" => Pipelining::Force,
                    other => return Err(format!("--pipeline: unknown mode {other:?}")),
                }
            }
            "-k" | "--per-connection" => cfg.per_connection = number(&value(&flag)?, &flag)?,
            "--churn" => cfg.per_connection = 1,
            "-d" | "--timeout" => cfg.timeout = seconds(&value(&flag)?, &flag)?,
            "--reply-timeout" => cfg.reply_timeout = seconds(&value(&flag)?, &flag)?,
            "-t" | "--threads" => cfg.threads = number(&value(&flag)?, &flag)?,
            "-e" | "--max-errors" => cfg.max_errors = number(&value(&flag)?, &flag)?,
            "--helo" => cfg.helo = value(&flag)?,
            "--from" => cfg.from = value(&flag)?,
            "--to" => cfg.to = value(&flag)?,
            "--idle" => cfg.idle = number(&value(&flag)?, &flag)?,
            "--watch-pid" => cfg.watch_pid = Some(number(&value(&flag)?, &flag)?),
            "--hold" => cfg.hold = seconds(&value(&flag)?, &flag)?,
            "-q" | "--quiet" => cfg.quiet = true,
            "-h" | "--help" => return Err(String::new()),
            f if f.starts_with('-') && f.len() > 1 => return Err(format!("unknown option {f}")),
            _ if target.is_none() => target = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let target = target.ok_or("missing HOST:PORT")?;
    cfg.target = loopback_target(&target)?;
    if cfg.sessions == 0 || cfg.sessions > MAX_SESSIONS {
        return Err(format!("--sessions must be 1..={MAX_SESSIONS}"));
    }
    if cfg.idle > MAX_SESSIONS {
        return Err(format!("--idle must be at most {MAX_SESSIONS}"));
    }
    let total = if cfg.per_session {
        cfg.messages.saturating_mul(cfg.sessions as u64)
    } else {
        cfg.messages
    };
    if total > MAX_MESSAGES {
        return Err(format!("at most {MAX_MESSAGES} messages in total"));
    }
    if cfg.size > MAX_SIZE {
        return Err(format!("--size must be at most {MAX_SIZE} bytes"));
    }
    if cfg.threads == 0 || cfg.threads > 64 {
        return Err("--threads must be 1..=64".into());
    }
    for (name, v) in [
        ("--helo", &cfg.helo),
        ("--from", &cfg.from),
        ("--to", &cfg.to),
    ] {
        if v.bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b'<' || b == b'>')
        {
            return Err(format!(
                "{name}: no spaces, angle brackets or control characters"
            ));
        }
    }
    Ok(cfg)
}

/// Resolves `spec` and refuses anything that is not a loopback address.
pub fn loopback_target(spec: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = spec
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {spec:?} (want HOST:PORT): {e}"))?
        .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| format!("{spec:?} resolves to nothing"))?;
    if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "refusing {spec:?}: {} is not a loopback address (only 127.0.0.0/8 and ::1 are allowed)",
            bad.ip()
        ));
    }
    if first.port() == 0 {
        return Err(format!("{spec:?}: port 0"));
    }
    Ok(first)
}

fn number<T: std::str::FromStr>(v: &str, flag: &str) -> Result<T, String> {
    v.replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: not a number: {v:?}"))
}

fn seconds(v: &str, flag: &str) -> Result<Duration, String> {
    let s: f64 = v
        .parse()
        .map_err(|_| format!("{flag}: not a number of seconds: {v:?}"))?;
    if !(0.0..=MAX_TIMEOUT_SECS).contains(&s) {
        return Err(format!("{flag}: must be 0..={MAX_TIMEOUT_SECS} seconds"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// `1024`, `1k`, `1KiB`, `1M`, `1MiB` (binary units).
pub fn parse_size(v: &str) -> Result<usize, String> {
    let lower = v.to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("--size: not a size: {v:?}"))?;
    let mult = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(format!("--size: unknown unit in {v:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("--size: too large: {v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn only_loopback_targets() {
        assert!(loopback_target("127.0.0.1:2525").is_ok());
        assert!(loopback_target("127.1.2.3:2525").is_ok());
        assert!(loopback_target("[::1]:2525").is_ok());
        assert!(loopback_target("10.0.0.1:25").is_err());
        assert!(loopback_target("192.168.1.1:25").is_err());
        assert!(loopback_target("0.0.0.0:25").is_err());
        assert!(loopback_target("127.0.0.1:0").is_err());
        assert!(loopback_target("127.0.0.1").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("1G").is_err());
        assert!(parse_size("x").is_err());
    }

    #[test]
    fn parses_a_scenario() {
        let c = parse(args(
            "-s 50 -m 20_000 -l 1KiB -p auto --churn 127.0.0.1:2600",
        ))
        .unwrap();
        assert_eq!(c.sessions, 50);
        assert_eq!(c.messages, 20_000);
        assert_eq!(c.size, 1024);
        assert_eq!(c.pipelining, Pipelining::Auto);
        assert_eq!(c.per_connection, 1);
        let c = parse(args("--sessions=16 --timeout=5 127.0.0.1:1")).unwrap();
        assert_eq!(c.sessions, 16);
        assert_eq!(c.timeout, Duration::from_secs(5));
    }

    #[test]
    fn refuses_unbounded_runs() {
        assert!(parse(args("-m 100000000 127.0.0.1:25")).is_err());
        assert!(parse(args("-d 100000 127.0.0.1:25")).is_err());
        assert!(parse(args("-s 0 127.0.0.1:25")).is_err());
        assert!(parse(args("-s 1 8.8.8.8:25")).is_err());
        assert!(parse(args("--from a<b 127.0.0.1:25")).is_err());
    }
}
