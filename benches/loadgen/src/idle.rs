//! Idle mode: how much memory a server spends on connections that only said EHLO.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cli::Config;
use crate::smtp::{Conn, Fail, Limits, Script, Step};
use crate::stats::{cpu_seconds, proc_kb, Spread, Tally};

/// Handshakes in flight at once, so a small accept queue is not what is measured.
const OPENING: usize = 256;
/// Time for the server to settle after the last EHLO before its memory is read.
const SETTLE: Duration = Duration::from_millis(1000);

/// Opens the idle connections and reports; true when all of them were opened and still
/// answered NOOP afterwards.
pub async fn run(cfg: Config) -> bool {
    let limits = Limits {
        deadline: Instant::now() + cfg.timeout,
        reply_timeout: cfg.reply_timeout,
    };
    let script = Arc::new(Script::new(&cfg));
    let rss = |field: &str| cfg.watch_pid.and_then(|pid| proc_kb(pid, field));
    let mut tally = Tally::default();
    let cpu_before = cpu_seconds();

    // One full session first, so one-time set-up costs are not counted per connection.
    let warm = async {
        let mut c = Conn::open(cfg.target, limits).await?;
        c.ehlo(&script.ehlo).await?;
        c.quit(&script.quit).await
    };
    if let Err(fail) = warm.await {
        tally.fail(&fail);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss("VmRSS");

    let gate = Arc::new(Semaphore::new(OPENING));
    let tasks: Vec<_> = (0..cfg.idle)
        .map(|_| {
            let (gate, script, target) = (gate.clone(), script.clone(), cfg.target);
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                let started = Instant::now();
                let mut c = Conn::open(target, limits).await?;
                c.ehlo(&script.ehlo).await?;
                Ok::<_, Fail>((c, started.elapsed()))
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(cfg.idle);
    for t in tasks {
        match t.await {
            Ok(Ok((c, took))) => {
                tally.connected(took, c.pipelining);
                conns.push(c);
            }
            Ok(Err(fail)) => {
                tally.fail(&fail);
            }
            Err(e) => {
                *tally.errors.entry("task failed".into()).or_default() += 1;
                tally.samples.push(e.to_string());
            }
        }
    }
    tokio::time::sleep(SETTLE).await;
    let after = rss("VmRSS");
    let peak = rss("VmHWM");

    // Each connection must still be served.
    let mut alive = 0usize;
    for c in &mut conns {
        let noop = async {
            c.send(Step::Noop, &script.noop).await?;
            c.reply(Step::Noop, None).await
        };
        match noop.await {
            Ok(()) => alive += 1,
            Err(fail) => {
                tally.fail(&fail);
            }
        }
    }
    let hold_until = (Instant::now() + cfg.hold).min(limits.deadline);
    tokio::time::sleep_until(hold_until).await;
    let open = conns.len();
    drop(conns);

    let per_conn = match (before, after) {
        (Some(b), Some(a)) if open > 0 => Some((a as f64 - b as f64) * 1024.0 / open as f64),
        _ => None,
    };
    let con = Spread::of(&mut tally.connect_us);
    let errors = tally.error_count();
    let client_cpu = cpu_seconds() - cpu_before;
    let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    if !cfg.quiet {
        println!(
            "smtp-load {}: {} idle connections (greeted, EHLO done): {open} open, {alive} still answered NOOP",
            cfg.target, cfg.idle
        );
        println!(
            "  opening: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {} slower than 0.9 s",
            con.p50, con.p99, con.max, tally.slow_connects
        );
        if let Some(pid) = cfg.watch_pid {
            println!(
                "  server pid {pid}: VmRSS {} kB before, {} kB after (VmHWM {} kB): {} bytes per connection",
                show(before),
                show(after),
                show(peak),
                per_conn.map_or("-".into(), |b| format!("{b:.0}"))
            );
        }
        println!("  errors {errors} ({})", tally.error_summary());
        for s in &tally.samples {
            println!("    e.g. {s}");
        }
    }
    println!(
        "RESULT mode=idle target={} requested={} open={open} alive={alive} errors={errors} \
         error_classes={} rss_before_kb={} rss_after_kb={} rss_peak_kb={} rss_per_conn_bytes={} \
         connect_p50_ms={:.3} connect_p99_ms={:.3} connect_max_ms={:.3} slow_connects={} timed_out={} \
         client_cpu_s={client_cpu:.3}",
        cfg.target,
        cfg.idle,
        tally.error_summary(),
        show(before),
        show(after),
        show(peak),
        per_conn.map_or("-".into(), |b| format!("{b:.0}")),
        con.p50,
        con.p99,
        con.max,
        tally.slow_connects,
        u8::from(tally.timed_out),
    );
    errors == 0 && alive == cfg.idle
}
