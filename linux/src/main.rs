//! `smtpd`: the server binary. See `smtpd --help`.

use std::path::{Path, PathBuf};
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
use smtpd_linux::process::{self, User};
use smtpd_linux::{Buffered, HandlerFactory, Options, Server};
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
    let mut options = args.options()?;
    fit_descriptors(&mut options, &class)?;
    let builder = Server::builder(config).options(options);
    let maildir = match &class {
        Class::Maildir(dir) => Some(dir.clone()),
        _ => None,
    };
    // Started as root, the server leaves root once its threads are set up. A maildir is
    // made (or checked) by the user who writes into it.
    let user = leave_root(args, maildir.as_deref())?;
    if let (Some(dir), None) = (&maildir, &user) {
        create_maildir(dir).map_err(|e| e.to_string())?;
    }
    let ready = move || {
        if let Some(user) = &user {
            run_as(user)?;
            if let Some(dir) = &maildir {
                create_maildir(dir)?;
            }
            // Only now: a maildir the user cannot write is a start-up error instead.
            tracing::info!(user = %user.name, uid = user.uid, gid = user.gid, "left root");
        }
        Ok(())
    };
    match class {
        Class::DebuggingServer => {
            let printer = DebuggingServer {
                envelope: args.debug,
                patience: data_timeout,
            };
            serve(builder.build(move |_| Buffered::new(printer)), ready)
        }
        Class::Sink => serve(builder.build(|_| Sink), ready),
        Class::MailmanProxy => {
            log_relay_access(&access);
            let server = builder.build(move |peer: std::net::SocketAddr| {
                MailmanProxy::new(upstream.clone(), access.clone(), lists.clone(), peer.ip())
            });
            serve(server, ready)
        }
        Class::PureProxy => {
            log_relay_access(&access);
            let server = builder.build(move |peer: std::net::SocketAddr| {
                PureProxy::new(upstream.clone(), access.clone(), peer.ip())
            });
            serve(server, ready)
        }
        Class::Maildir(dir) => {
            let dir: Arc<PathBuf> = Arc::new(dir);
            serve(builder.build(move |_| Maildir::new(dir.clone())), ready)
        }
    }
}

/// Creates the maildir's directories where missing, and checks that they can be written.
fn create_maildir(dir: &Path) -> std::io::Result<()> {
    Maildir::create_dirs(dir).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot use maildir {}: {e}", dir.display()),
        )
    })
}

/// Raises the descriptor limit, and lowers `--max-connections` to what it holds, so that a
/// connection over it gets `421`, never a wait in the backlog for a descriptor.
fn fit_descriptors(options: &mut Options, class: &Class) -> Result<(), String> {
    // Beside its socket: a relay's upstream connections, a message file and its directory.
    let per_connection = match class {
        Class::Sink | Class::DebuggingServer => 1,
        Class::Maildir(_) => 2,
        Class::PureProxy | Class::MailmanProxy => 3,
    };
    let (limit, not_raised) = match process::raise_descriptor_limit() {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read the descriptor limit");
            return Ok(());
        }
    };
    if let Some(error) = not_raised {
        tracing::warn!(%error, "cannot raise the descriptor limit to its hard limit");
    }
    let room = process::connections_within(limit, per_connection, options.threads);
    if room == 0 {
        return Err(format!(
            "{limit} descriptors (`ulimit -n`) leave no room for connections"
        ));
    }
    if room < options.max_connections {
        tracing::warn!(
            "{limit} descriptors (`ulimit -n`) hold {room} connection{}: --max-connections \
             lowered from {}",
            if room == 1 { "" } else { "s" },
            options.max_connections
        );
        options.max_connections = room;
    }
    Ok(())
}

/// The user a server started as root becomes once it listens, as Python's smtpd became
/// `nobody`: `--user`, else `nobody`, or for a maildir the maildir's owner. None with `-n`,
/// when not started as root, and for a maildir of root's (with a warning).
fn leave_root(args: &Args, maildir: Option<&Path>) -> Result<Option<User>, String> {
    if args.nosetuid {
        return Ok(None);
    }
    if !process::is_root() {
        if args.user.is_some() {
            tracing::warn!("--user is for a server started as root: this one runs on as it is");
        }
        return Ok(None);
    }
    let cannot = |e: std::io::Error| {
        format!("cannot leave root ({e}): name a user with --user, or keep root with -n")
    };
    if let Some(name) = &args.user {
        return User::named(name).map(Some).map_err(cannot);
    }
    let Some(dir) = maildir else {
        return User::named("nobody").map(Some).map_err(cannot);
    };
    if dir.exists() {
        let owner = User::owner_of(dir).map_err(cannot)?;
        if !owner.is_root() {
            return Ok(Some(owner));
        }
    }
    // Root only by its real or saved id: it becomes its effective user for good.
    // SAFETY: plain system call.
    let effective = unsafe { libc::geteuid() };
    if effective != 0 {
        return User::with_id(effective).map(Some).map_err(cannot);
    }
    let held = match process::held_by_another(dir) {
        Ok(Some((place, who))) => format!(
            ", although {} on the way to it is {who}, who can point root's writes elsewhere",
            place.display()
        ),
        _ => String::new(),
    };
    tracing::warn!(
        "maildir {} is root's: the server runs on as root{held} (give the maildir to a user \
         of its own, or name one with --user; -n keeps root without this warning)",
        dir.display()
    );
    Ok(None)
}

/// Switches to `user`.
fn run_as(user: &User) -> std::io::Result<()> {
    process::switch_to(user).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot switch to user {} ({e}): name another with --user, or keep root with -n",
                user.name
            ),
        )
    })
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

/// Runs a bound server until it is stopped, calling `ready` once its threads are set up.
fn serve<F: HandlerFactory>(
    server: std::io::Result<Server<F>>,
    ready: impl FnOnce() -> std::io::Result<()>,
) -> Result<(), String> {
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
    let addr = server.local_addr();
    let ready = || {
        ready()?;
        tracing::info!(%addr, "listening");
        Ok(())
    };
    server.run_after(ready).map_err(|e| e.to_string())
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
