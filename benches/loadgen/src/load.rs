//! Load mode: sessions sending messages until the budget, the error limit or the time bound
//! is reached.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cli::{Config, Pipelining};
use crate::smtp::{Conn, Fail, Limits, Script, Step};
use crate::stats::{cpu_seconds, micros, Spread, Tally};

struct Shared {
    cfg: Config,
    script: Script,
    limits: Limits,
    /// Messages claimed so far (shared budget).
    claimed: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    /// Takes one message from the budget.
    fn claim(&self, mine: &mut u64) -> bool {
        if self.cfg.per_session {
            *mine += 1;
            *mine <= self.cfg.messages
        } else {
            self.claimed.fetch_add(1, Ordering::Relaxed) < self.cfg.messages
        }
    }

    /// Counts a failure; stops every session once the error limit is reached.
    fn fail(&self, tally: &mut Tally, fail: &Fail) {
        let added = tally.fail(fail);
        if added > 0
            && self.errors.fetch_add(added, Ordering::Relaxed) + added >= self.cfg.max_errors
        {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    async fn open(&self, tally: &mut Tally) -> Result<Conn, Fail> {
        let started = Instant::now();
        let mut conn = Conn::open(self.cfg.target, self.limits).await?;
        conn.ehlo(&self.script.ehlo).await?;
        tally.connected(started.elapsed(), conn.pipelining);
        Ok(conn)
    }

    /// One transaction; returns whether it was pipelined.
    async fn transaction(&self, conn: &mut Conn) -> Result<bool, Fail> {
        let s = &self.script;
        let pipelined = match self.cfg.pipelining {
            Pipelining::Off => false,
            Pipelining::Auto => conn.pipelining,
            Pipelining::Force => true,
        };
        if pipelined {
            conn.send(Step::Mail, &s.group).await?;
            conn.reply(Step::Mail, None).await?;
            conn.reply(Step::Rcpt, None).await?;
            conn.reply(Step::Data, None).await?;
        } else {
            conn.send(Step::Mail, &s.mail).await?;
            conn.reply(Step::Mail, None).await?;
            conn.send(Step::Rcpt, &s.rcpt).await?;
            conn.reply(Step::Rcpt, None).await?;
            conn.send(Step::Data, &s.data).await?;
            conn.reply(Step::Data, None).await?;
        }
        conn.send(Step::Body, &s.message).await?;
        conn.reply(Step::Body, None).await?;
        Ok(pipelined)
    }
}

async fn session(shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<Conn> = None;
    let mut on_conn = 0u64;
    let mut mine = 0u64;
    let per_conn = shared.cfg.per_connection;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if Instant::now() >= shared.limits.deadline {
            tally.timed_out = true;
            break;
        }
        if !shared.claim(&mut mine) {
            break;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match shared.open(&mut tally).await {
                Ok(c) => {
                    on_conn = 0;
                    conn.insert(c)
                }
                Err(Fail::Deadline) => {
                    tally.timed_out = true;
                    tally.unfinished += 1;
                    break;
                }
                Err(fail) => {
                    tally.failed += 1;
                    shared.fail(&mut tally, &fail);
                    // Do not spin on a server that refuses connections.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let started = Instant::now();
        match shared.transaction(c).await {
            Ok(pipelined) => {
                tally.latency_us.push(micros(started.elapsed()));
                tally.delivered += 1;
                tally.pipelined += u64::from(pipelined);
                on_conn += 1;
                if per_conn > 0 && on_conn >= per_conn {
                    if let Some(c) = conn.take() {
                        if let Err(fail) = c.quit(&shared.script.quit).await {
                            shared.fail(&mut tally, &fail);
                        }
                    }
                }
            }
            Err(Fail::Deadline) => {
                tally.timed_out = true;
                tally.unfinished += 1;
                conn = None;
                break;
            }
            Err(fail) => {
                tally.failed += 1;
                conn = None;
                shared.fail(&mut tally, &fail);
            }
        }
    }
    if let Some(c) = conn.take() {
        if !tally.timed_out {
            if let Err(fail) = c.quit(&shared.script.quit).await {
                shared.fail(&mut tally, &fail);
            }
        }
    }
    tally
}

/// Runs the load; prints the summary and the RESULT line. True when every message was
/// delivered without any error.
pub async fn run(cfg: Config) -> bool {
    let requested = if cfg.per_session {
        cfg.messages * cfg.sessions as u64
    } else {
        cfg.messages
    };
    let limits = Limits {
        deadline: Instant::now() + cfg.timeout,
        reply_timeout: cfg.reply_timeout,
    };
    let shared = Arc::new(Shared {
        script: Script::new(&cfg),
        cfg,
        limits,
        claimed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let cfg = &shared.cfg;
    let cpu_before = cpu_seconds();
    let started = std::time::Instant::now();
    let sessions: Vec<_> = (0..cfg.sessions)
        .map(|_| tokio::spawn(session(shared.clone())))
        .collect();
    let mut all = Tally::default();
    for s in sessions {
        match s.await {
            Ok(t) => all.merge(t),
            Err(e) => {
                *all.errors.entry("session task failed".into()).or_default() += 1;
                all.samples.push(e.to_string());
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let client_cpu = cpu_seconds() - cpu_before;

    let msg_bytes = cfg.size as f64;
    let rate = all.delivered as f64 / elapsed;
    let mib_s = rate * msg_bytes / (1 << 20) as f64;
    let mb_s = rate * msg_bytes / 1e6;
    let lat = Spread::of(&mut all.latency_us);
    let con = Spread::of(&mut all.connect_us);
    let connects = all.connect_us.len();
    let errors = all.error_count();
    let mode = match cfg.pipelining {
        Pipelining::Off => "lock-step",
        Pipelining::Auto => "pipelined where advertised",
        Pipelining::Force => "pipelined (forced)",
    };
    if !cfg.quiet {
        let per_conn = match cfg.per_connection {
            0 => "all on one connection".to_string(),
            k => format!("{k} per connection"),
        };
        println!(
            "smtp-load {}: {} sessions, {requested} messages of {} bytes, {mode}, {per_conn}",
            cfg.target, cfg.sessions, cfg.size
        );
        println!(
            "  delivered {}/{requested} in {elapsed:.3} s: {rate:.0} msgs/s, {mib_s:.2} MiB/s ({mb_s:.2} MB/s){}",
            all.delivered,
            if all.timed_out { "  [hit the time bound]" } else { "" }
        );
        println!(
            "  per-message latency (MAIL to 250 after the dot): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            lat.p50, lat.p99, lat.max
        );
        println!(
            "  {connects} connections (connect+greeting+EHLO): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {} slower than 0.9 s; PIPELINING advertised on {}, used for {} messages",
            con.p50, con.p99, con.max, all.slow_connects, all.advertised, all.pipelined
        );
        println!(
            "  errors {errors} ({}), failed messages {}; client CPU {client_cpu:.2} s",
            all.error_summary(),
            all.failed
        );
        for s in &all.samples {
            println!("    e.g. {s}");
        }
    }
    println!(
        "RESULT mode=load target={} sessions={} size={} pipeline={:?} per_connection={} \
         requested={requested} delivered={} failed={} unfinished={} errors={errors} \
         error_classes={} elapsed_s={elapsed:.4} msgs_per_s={rate:.1} mib_per_s={mib_s:.2} \
         mb_per_s={mb_s:.2} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} connects={connects} \
         connect_p50_ms={:.3} connect_p99_ms={:.3} connect_max_ms={:.3} slow_connects={} \
         advertised={} pipelined={} timed_out={} client_cpu_s={client_cpu:.3}",
        cfg.target,
        cfg.sessions,
        cfg.size,
        cfg.pipelining,
        cfg.per_connection,
        all.delivered,
        all.failed,
        all.unfinished,
        all.error_summary(),
        lat.p50,
        lat.p99,
        lat.max,
        con.p50,
        con.p99,
        con.max,
        all.slow_connects,
        all.advertised,
        all.pipelined,
        u8::from(all.timed_out),
    );
    errors == 0 && all.delivered == requested
}
