//! `smtp-load`: a bounded SMTP load generator for loopback benchmarks of smtpd-rs and the
//! servers it is compared with.
//!
//! Load mode: N sessions share M messages (or send M each) of S bytes. Each session
//! connects, reads the 220 greeting, sends EHLO and then runs transactions: lock-step
//! (MAIL, RCPT, DATA, each awaiting its reply) or pipelined (MAIL+RCPT+DATA in one write
//! when the server advertises PIPELINING, RFC 2920), then the content and the final dot.
//! With `--per-connection K` it QUITs after K messages and reconnects (`--churn`: K = 1).
//! Every reply code is checked; a wrong one is an error, the connection is dropped and the
//! session goes on with a new one (the message counts as failed).
//!
//! Idle mode (`--idle N --watch-pid PID`): opens N connections that each completed EHLO and
//! reports the server's resident memory before and after, per connection.
//!
//! Bounds: at most `--timeout` seconds (default 60; a watchdog thread ends the process 10 s
//! after that no matter what), every reply within `--reply-timeout`, at most
//! `--max-errors` errors, only loopback targets.

mod cli;
mod idle;
mod load;
mod smtp;
mod stats;

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cfg = match cli::parse(std::env::args().skip(1)) {
        Ok(cfg) => cfg,
        Err(e) if e.is_empty() => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("smtp-load: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    stats::raise_fd_limit(cfg.sessions.max(cfg.idle) as u64 + 64);

    let hard_bound = cfg.timeout + cfg.hold + Duration::from_secs(10);
    std::thread::spawn(move || {
        std::thread::sleep(hard_bound);
        eprintln!("smtp-load: hard time bound of {hard_bound:?} reached, exiting");
        std::process::exit(3);
    });

    let runtime = if cfg.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smtp-load: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let ok = if cfg.idle > 0 {
        runtime.block_on(idle::run(cfg))
    } else {
        runtime.block_on(load::run(cfg))
    };
    // Do not wait for connections still closing.
    runtime.shutdown_background();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
