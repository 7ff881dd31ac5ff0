//! `smtpd`: the server binary. See `smtpd --help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use smtpd_core::network::Network;
use smtpd_linux::cli::{Args, Class, LogFormat};
use smtpd_linux::handlers::{
    DebuggingServer, Maildir, MailmanProxy, PureProxy, RelayAccess, Sink, Upstream,
};
use smtpd_linux::logging::{BatchedStderr, TextLayer};
use smtpd_linux::{Buffered, HandlerFactory, Server};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => {
            // One line, as for the other usage errors: clap's first (`error: ...`).
            let text = error.to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("smtpd: {first} (see smtpd --help)");
            return ExitCode::from(2);
        }
    };
    let log = init_logging(&args);
    let result = run(&args);
    log.flush_now();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("smtpd: error: {error}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    args.validate()?;
    let class = args.class()?;
    let mut config = args.config();
    if matches!(class, Class::PureProxy | Class::MailmanProxy) {
        // Content is relayed with DATA, which cannot carry binary content.
        config.extensions.binarymime = false;
    }
    let upstream = Arc::new(Upstream {
        address: args.remote.clone(),
        hostname: config.hostname.to_owned(),
    });
    let access = Arc::new(args.relay_access());
    let lists = Arc::new(Upstream {
        address: args.lmtp.clone(),
        hostname: config.hostname.to_owned(),
    });
    warn_of_vast(
        "--proxy-protocol",
        &args.proxy_protocol,
        "open to any client naming any address",
    );
    let relays = matches!(class, Class::PureProxy | Class::MailmanProxy);
    if !relays && args.relay_access() != RelayAccess::default() {
        tracing::warn!(
            "--relay-networks and --relay-domains apply to PureProxy and MailmanProxy only"
        );
    }
    let data_timeout = config.timeouts.data_block;
    let builder = Server::builder(config).options(args.options()?);
    match class {
        Class::DebuggingServer => {
            let printer = DebuggingServer {
                envelope: args.debug,
                patience: data_timeout,
            };
            serve(builder.build(move |_| Buffered::new(printer)))
        }
        Class::Sink => serve(builder.build(|_| Sink)),
        Class::MailmanProxy => {
            log_relay_access(&access);
            serve(builder.build(move |peer: std::net::SocketAddr| {
                MailmanProxy::new(upstream.clone(), access.clone(), lists.clone(), peer.ip())
            }))
        }
        Class::PureProxy => {
            log_relay_access(&access);
            serve(builder.build(move |peer: std::net::SocketAddr| {
                PureProxy::new(upstream.clone(), access.clone(), peer.ip())
            }))
        }
        Class::Maildir(dir) => {
            Maildir::create_dirs(&dir)
                .map_err(|e| format!("cannot use maildir {}: {e}", dir.display()))?;
            let dir: Arc<PathBuf> = Arc::new(dir);
            serve(builder.build(move |_| Maildir::new(dir.clone())))
        }
    }
}

/// Says who may relay, and warns of an open relay.
fn log_relay_access(access: &RelayAccess) {
    let networks = access.networks.iter().map(|network| network.to_string());
    let networks = networks.collect::<Vec<_>>().join(",");
    let domains = access.domains.join(",");
    tracing::info!(%networks, %domains, "relaying for clients in networks, and for anyone to domains");
    warn_of_vast(
        "--relay-networks",
        &access.networks,
        "an open relay, or nearly",
    );
}

/// Warns of each network in `networks` that is wider than any private one.
fn warn_of_vast(flag: &str, networks: &[Network], what_it_makes: &str) {
    for network in networks.iter().filter(|network| network.is_vast()) {
        tracing::warn!(
            "{flag} {network} is wider than any private network: this server is {what_it_makes}"
        );
    }
}

fn serve<F: HandlerFactory>(server: std::io::Result<Server<F>>) -> Result<(), String> {
    let server = server.map_err(|e| format!("cannot listen: {e}"))?;
    let shutdown = server.shutdown_handle().map_err(|e| e.to_string())?;
    let mut signals = Signals::new(stop_signals()).map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let mut signals = signals.forever();
        if signals.next().is_some() {
            tracing::info!("shutting down");
            shutdown.shutdown();
        }
        if signals.next().is_some() {
            std::process::exit(1);
        }
    });
    tracing::info!(addr = %server.local_addr(), "listening");
    server.run().map_err(|e| e.to_string())
}

/// The signals that start a graceful shutdown: SIGINT, SIGTERM, and SIGHUP (the terminal
/// went away) unless it is ignored, as under `nohup`.
fn stop_signals() -> Vec<i32> {
    // SAFETY: a query (no new action); `old` is a valid sigaction to fill in.
    let hangup_ignored = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(SIGHUP, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    };
    let mut signals = vec![SIGINT, SIGTERM];
    if !hangup_ignored {
        signals.push(SIGHUP);
    }
    signals
}

/// Logs go to stderr through a batching writer (see [`BatchedStderr`]).
fn init_logging(args: &Args) -> BatchedStderr {
    // -d asks for the traffic whatever RUST_LOG says; otherwise RUST_LOG, or info.
    let filter = match args.debug {
        true => tracing_subscriber::EnvFilter::new("info,smtpd=debug,smtpd_linux=debug"),
        false => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    let log = BatchedStderr::start();
    let registry = tracing_subscriber::registry().with(filter);
    match args.log_format {
        LogFormat::Text => registry.with(TextLayer::new(log.clone())).init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(log.clone()),
            )
            .init(),
    }
    log
}
