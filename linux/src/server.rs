//! The server: one io_uring runtime per thread, each with its own `SO_REUSEPORT` listener.
//!
//! Connections never leave the thread that accepted them. A shared counter caps the number
//! of connections (over the cap a connection gets the core's `421 4.3.2` and is closed).
//! Shutdown stops accepting at once, lets sessions finish for a grace period, then ends the
//! rest with `421`.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use compio::buf::BufResult;
use compio::driver::ProactorBuilder;
use compio::io::AsyncWriteExt;
use compio::net::{TcpListener, TcpStream};
use compio::runtime::RuntimeBuilder;
use smtpd_core::channel::Channel;
use smtpd_core::network::Network;
use smtpd_core::{replies, Config, Handler, Reply, Verdict};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{watch, Notify};

use crate::alarm::Alarms;
use crate::arena::PageArena;
use crate::client_limit::ClientLimit;
use crate::connection::{canonical, serve, Shared};
use crate::inbox::InboxPool;
use crate::logging::Logged;
use crate::start::Start;

/// Creates one handler per connection; shared by all threads.
pub trait HandlerFactory: Send + Sync + 'static {
    type Handler: Handler + 'static;
    fn new_handler(&self, peer: SocketAddr) -> Self::Handler;
}

impl<F, H> HandlerFactory for F
where
    F: Fn(SocketAddr) -> H + Send + Sync + 'static,
    H: Handler + 'static,
{
    type Handler = H;
    fn new_handler(&self, peer: SocketAddr) -> H {
        self(peer)
    }
}

/// Server settings beyond the protocol [`Config`].
#[derive(Clone, Debug)]
pub struct Options {
    pub bind: SocketAddr,
    /// Runtimes (threads); each accepts on its own listener.
    pub threads: usize,
    pub max_connections: usize,
    /// Connections one client (an IPv4 address, an IPv6 /64) may have open at once; more get
    /// `421 4.7.0`. Behind a trusted proxy, the client it names. This host's own clients
    /// (loopback, the connection's own address) are not counted; 0 counts no one.
    pub max_connections_per_client: usize,
    /// How long sessions may go on after a shutdown request.
    pub shutdown_grace: Duration,
    /// Listen backlog per listener.
    pub backlog: i32,
    /// Connections from these networks (the load balancers in front) begin with a PROXY
    /// protocol header, version 1 or 2, naming the client: the session, its log and its
    /// handler see that client. Others are served as they come. Only a proxy's own
    /// addresses belong here: the header names any address it likes.
    pub proxy_protocol: Vec<Network>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bind: SocketAddr::from(([127, 0, 0, 1], 8025)),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: 10_000,
            max_connections_per_client: 50,
            shutdown_grace: Duration::from_secs(30),
            backlog: 4096,
            proxy_protocol: Vec::new(),
        }
    }
}

/// Builds a [`Server`].
pub struct Builder {
    options: Options,
    /// Set by [`bind`](Builder::bind); wins over `options.bind` whatever the call order.
    bind: Option<SocketAddr>,
    config: Config<'static>,
}

impl Builder {
    /// The address to listen on (default `127.0.0.1:8025`; port 0 picks a free port, see
    /// [`Server::local_addr`]). Takes precedence over [`Options::bind`].
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = Some(addr);
        self
    }

    /// Server settings; its `bind` is used unless [`bind`](Builder::bind) was called.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// The protocol configuration (host name, limits, timeouts, extensions); see
    /// [`Server::builder`].
    pub fn config(mut self, config: Config<'_>) -> Self {
        self.config = kept(config);
        self
    }

    /// Binds the listeners (one per thread); fails when the address cannot be used. The
    /// configuration is kept for the rest of the program (sessions borrow it), so build
    /// servers once, not in a loop.
    pub fn build<F: HandlerFactory>(self, factory: F) -> io::Result<Server<F>> {
        let listeners = bind_listeners(
            self.bind.unwrap_or(self.options.bind),
            self.options.threads.max(1),
            self.options.backlog,
        )?;
        let local_addr = listeners[0].local_addr()?;
        let (shutdown, _) = watch::channel(false);
        Ok(Server {
            options: self.options,
            config: Box::leak(Box::new(self.config)),
            factory: Arc::new(factory),
            listeners,
            local_addr,
            shutdown: Arc::new(shutdown),
        })
    }
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server<F> {
    options: Options,
    config: &'static Config<'static>,
    factory: Arc<F>,
    listeners: Vec<std::net::TcpListener>,
    local_addr: SocketAddr,
    shutdown: Arc<watch::Sender<bool>>,
}

/// Asks a running server to shut down gracefully.
#[derive(Clone)]
pub struct ShutdownHandle {
    request: Arc<watch::Sender<bool>>,
    /// Duplicates of the listening sockets.
    listeners: Arc<Vec<std::net::TcpListener>>,
}

impl ShutdownHandle {
    /// Asks every thread to let its sessions finish, and stops listening at once: the port
    /// is free for a new server when this returns.
    pub fn shutdown(&self) {
        self.request.send_replace(true);
        for listener in self.listeners.iter() {
            let _ = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Monotonic time origin of one runtime.
pub(crate) struct Clock {
    pub start: std::time::Instant,
}

impl Server<()> {
    /// A builder with defaults: 127.0.0.1:8025, one thread per core.
    ///
    /// `config` is the core's, whose defaults are stricter than the `smtpd` binary's: a
    /// message with a bare CR or LF is refused (`550 5.5.2`; the binary's default is
    /// `bare_newline = BareNewline::Normalize`), and so is one with a line over 1000 octets
    /// (`500 5.5.2` after its end; the binary's default is `limits.text_line = None`, as in
    /// Python). Its texts (host name, banner) are copied and kept for the rest of the
    /// program.
    pub fn builder(config: Config<'_>) -> Builder {
        Builder {
            options: Options::default(),
            bind: None,
            config: kept(config),
        }
    }
}

/// `config` with copies of its texts that live for the rest of the program, for the
/// sessions to borrow.
fn kept(config: Config<'_>) -> Config<'static> {
    let keep = |text: &str| -> &'static str { Box::leak(text.into()) };
    Config {
        hostname: keep(config.hostname),
        banner: keep(config.banner),
        extensions: config.extensions,
        limits: config.limits,
        timeouts: config.timeouts,
        bare_newline: config.bare_newline,
    }
}

impl<F: HandlerFactory> Server<F> {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle to shut the server down from another thread (not from inside a signal
    /// handler: it takes a lock; the `smtpd` binary uses `signal-hook`'s iterator thread).
    /// [`run`](Self::run) returns once the sessions are done. The handle holds duplicates of
    /// the listening sockets until it is dropped or used, so a server that is dropped
    /// without [`run`](Self::run) keeps its port until then.
    pub fn shutdown_handle(&self) -> io::Result<ShutdownHandle> {
        Ok(ShutdownHandle {
            request: self.shutdown.clone(),
            listeners: Arc::new(
                self.listeners
                    .iter()
                    .map(std::net::TcpListener::try_clone)
                    .collect::<io::Result<_>>()?,
            ),
        })
    }

    /// Serves until shut down and every session has ended. Fails if no thread could serve
    /// (or one panicked); a thread that could not is logged and leaves its share to the others.
    pub fn run(self) -> io::Result<()> {
        self.run_after(|| Ok(()))
    }

    /// As [`run`](Self::run), calling `ready` once every thread's io_uring runtime is set
    /// up and before any connection is served: the moment to give up privileges (the
    /// `smtpd` binary leaves root there). If `ready` fails, nothing is served and its error
    /// is returned.
    pub fn run_after(self, ready: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let connections = Arc::new(AtomicUsize::new(0));
        let clients = ClientLimit::new(self.options.max_connections_per_client);
        let start = Arc::new(Start::new(self.listeners.len()));
        let threads: Vec<_> = self
            .listeners
            .into_iter()
            .enumerate()
            .map(|(index, listener)| {
                let worker = Worker {
                    config: self.config,
                    factory: self.factory.clone(),
                    shutdown: self.shutdown.subscribe(),
                    connections: connections.clone(),
                    max_connections: self.options.max_connections,
                    clients: clients.clone(),
                    grace: self.options.shutdown_grace,
                    proxies: self.options.proxy_protocol.clone(),
                };
                let start = start.clone();
                std::thread::Builder::new()
                    .name(format!("smtpd-{index}"))
                    .spawn(move || {
                        let listening = listener.try_clone();
                        let served = worker.serve(listener, &start);
                        if let Err(error) = &served {
                            // Its listener (shared with the shutdown handle) would go on
                            // taking connections that nobody accepts.
                            if let Ok(listening) = &listening {
                                let _ = socket2::SockRef::from(listening)
                                    .shutdown(std::net::Shutdown::Both);
                            }
                            let others = match start.serving() {
                                true => ": the other threads take its connections",
                                false => "",
                            };
                            tracing::error!(thread = index, %error, "serving thread failed{others}");
                        }
                        served
                    })
            })
            .collect::<io::Result<_>>()
            .inspect_err(|_| start.release(false))?;
        // No thread set up: their errors say why, and nothing is ready.
        let set_up = start.wait_for_threads();
        let ready = if set_up { ready() } else { Ok(()) };
        start.release(set_up && ready.is_ok());
        // A thread that could not serve was logged, and the others took its connections:
        // the server failed only if none served.
        let (mut served, mut failure) = (false, None);
        for thread in threads {
            match thread.join() {
                Ok(Ok(())) => served = true,
                Ok(Err(error)) => failure = failure.or(Some(error)),
                Err(_) => return Err(io::Error::other("worker thread panicked")),
            }
        }
        ready?;
        match failure {
            Some(error) if !served => Err(error),
            _ => Ok(()),
        }
    }
}

struct Worker<F> {
    config: &'static Config<'static>,
    factory: Arc<F>,
    shutdown: watch::Receiver<bool>,
    connections: Arc<AtomicUsize>,
    max_connections: usize,
    clients: Arc<ClientLimit>,
    grace: Duration,
    proxies: Vec<Network>,
}

impl<F: HandlerFactory> Worker<F> {
    /// Sets this thread's io_uring runtime up, waits for the word to `start`, and serves
    /// `listener`'s connections until shut down.
    fn serve(self, listener: std::net::TcpListener, start: &Start) -> io::Result<()> {
        let joining = start.join();
        let runtime = runtime();
        let serve = joining.set_up(runtime.is_ok());
        let runtime = runtime.map_err(|error| {
            let why = match error.raw_os_error() {
                Some(libc::ENOMEM) => {
                    "; is the locked memory limit, `ulimit -l`, too low for \
                                       this many threads?"
                }
                Some(libc::EPERM) => {
                    "; io_uring is not permitted here (sysctl \
                                      kernel.io_uring_disabled, or a seccomp filter)"
                }
                _ => "",
            };
            io::Error::new(
                error.kind(),
                format!("cannot set up io_uring ({error}{why})"),
            )
        })?;
        if !serve {
            return Ok(());
        }
        // The runtime polls the future it blocks on at every wake-up; a task is polled only
        // when woken.
        let worker = runtime.spawn(self.run(listener));
        runtime
            .block_on(worker)
            .unwrap_or_else(|_| Err(io::Error::other("worker task failed")))
    }

    async fn run(self, listener: std::net::TcpListener) -> io::Result<()> {
        let listener = TcpListener::from_std(listener)?;
        // What every connection of this thread shares.
        let shared = Shared {
            config: self.config,
            clock: Rc::new(Clock {
                start: std::time::Instant::now(),
            }),
            alarms: Alarms::new()?,
            inboxes: InboxPool::new(),
            grace: self.grace,
            proxies: self.proxies.as_slice().into(),
            clients: self.clients.clone(),
        };
        compio::runtime::spawn({
            let alarms = shared.alarms.clone();
            async move {
                if let Err(error) = alarms.run().await {
                    tracing::error!(%error, "connection deadlines: timer failed");
                }
            }
        })
        .detach();
        let active = Rc::new(Cell::new(0usize));
        let idle = Rc::new(Notify::new());
        let mut shutdown = self.shutdown.clone();
        let mut requested = pin!(shutdown.wait_for(|stop| *stop));
        let (mut last_accept_error, mut failed_accepts) = (None, 0u64);
        loop {
            let mut accept = pin!(listener.accept());
            let accepted = poll_fn(|cx| match requested.as_mut().poll(cx) {
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => accept.as_mut().poll(cx).map(Some),
            })
            .await;
            match accepted {
                None => break,
                Some(Ok((stream, peer))) => {
                    // An IPv4 client of a dual-stack listener, as the IPv4 address it is.
                    let peer = canonical(peer);
                    self.spawn(stream, peer, &shared, &active, &idle)
                }
                Some(Err(error)) => {
                    // Out of descriptors (or memory) until sessions end: wait a little, and
                    // log it once a second, not at every retry.
                    let now = std::time::Instant::now();
                    if last_accept_error.is_none_or(|at| now - at >= Duration::from_secs(1)) {
                        tracing::warn!(%error, retries = failed_accepts, "accept failed");
                        last_accept_error = Some(now);
                        failed_accepts = 0;
                    }
                    failed_accepts += 1;
                    compio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        // The ring may hold the socket open a while after the process exits (its cancelled
        // accept): ShutdownHandle::shutdown has stopped it listening already, so that a new
        // server can bind the port at once and no connection waits in a backlog nobody
        // accepts from.
        drop(listener);
        shared.alarms.stop();
        // Sessions get the grace period and then their 421; one whose handler never returns
        // (say, a DebuggingServer print into a stdout nobody reads) is not waited for past
        // that: ending the runtime closes its connection.
        let give_up = compio::time::sleep(self.grace + Duration::from_secs(1));
        let mut give_up = pin!(give_up);
        while active.get() > 0 {
            let mut ended = pin!(idle.notified());
            let gave_up = poll_fn(|cx| match ended.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(false),
                Poll::Pending => give_up.as_mut().poll(cx).map(|()| true),
            })
            .await;
            if gave_up {
                tracing::warn!(
                    sessions = active.get(),
                    "closing sessions that did not end in time"
                );
                break;
            }
        }
        Ok(())
    }

    fn spawn(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        shared: &Shared,
        active: &Rc<Cell<usize>>,
        idle: &Rc<Notify>,
    ) {
        let _ = stream.set_nodelay(true);
        let over_cap = self.connections.fetch_add(1, Ordering::AcqRel) >= self.max_connections;
        let slot = ConnectionSlot {
            connections: self.connections.clone(),
            active: active.clone(),
            idle: idle.clone(),
        };
        active.set(active.get() + 1);
        let config = self.config;
        let memory = match over_cap {
            true => None,
            false => PageArena::take()
                .map(|arena| (arena, shared.inboxes.take()))
                .inspect_err(|error| tracing::warn!(%peer, %error, "no memory for a session"))
                .ok(),
        };
        let Some((arena, inbox)) = memory else {
            // A trusted proxy's connection too, before its header: reading that would take
            // the memory there is none of, and the proxy passes the 421 on to its client.
            compio::runtime::spawn(async move {
                refuse(stream, config).await;
                tracing::info!(
                    %peer,
                    messages = 0,
                    outcome = tracing::field::display("TooManyConnections"),
                    ms = 0,
                    "session"
                );
                drop(slot);
            })
            .detach();
            return;
        };
        let factory = self.factory.clone();
        let make_handler = move |client| Logged::new(factory.new_handler(client), client);
        let shared = shared.clone();
        compio::runtime::spawn(async move {
            let started = std::time::Instant::now();
            let served = serve(stream, peer, make_handler, arena, inbox, shared).await;
            let messages = served
                .handler
                .as_ref()
                .map_or(0, |handler| handler.messages());
            tracing::info!(
                peer = %served.client_name(),
                proxy = served.proxy.map(tracing::field::display),
                messages,
                outcome = ?served.outcome,
                ms = started.elapsed().as_millis() as u64,
                "session"
            );
            drop(slot);
        })
        .detach();
    }
}

/// Answers a connection over the cap with the core's `421 4.3.2` and closes it.
async fn refuse(mut stream: TcpStream, config: &'static Config<'static>) {
    let reply = closing_reply(config, replies::TOO_MANY_CONNECTIONS);
    let BufResult(_, _) = stream.write_all(reply).await;
    let _ = stream.close().await;
}

/// `reply` (a `421`) as the core writes it: the greeting a new session gives when its
/// connect is refused with it.
pub(crate) fn closing_reply(config: &Config<'_>, reply: Reply<'_>) -> Vec<u8> {
    let mut channel: Channel<'_> = Channel::new(config, None);
    channel.resolve(Verdict::Reply(reply));
    channel.output().to_vec()
}

/// One thread's runtime. The ring has a single issuer that runs its own completion work
/// when it waits (`DEFER_TASKRUN`): a wake-up is one `io_uring_enter`, no interrupt.
fn runtime() -> io::Result<compio::runtime::Runtime> {
    let mut proactor = ProactorBuilder::new();
    proactor
        .capacity(1024)
        .single_issuer(true)
        .defer_taskrun(true)
        .coop_taskrun(true)
        .taskrun_flag(true);
    RuntimeBuilder::new().with_proactor(proactor).build()
}

/// Releases a connection's place in the counters when the task ends.
struct ConnectionSlot {
    connections: Arc<AtomicUsize>,
    active: Rc<Cell<usize>>,
    idle: Rc<Notify>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
        self.active.set(self.active.get() - 1);
        self.idle.notify_one();
    }
}

/// One `SO_REUSEPORT` listener per thread on `addr`. Fails like a plain bind would when the
/// port is taken (even by another `SO_REUSEPORT` user).
fn bind_listeners(
    addr: SocketAddr,
    count: usize,
    backlog: i32,
) -> io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        // A plain bind fails if anyone holds the port; reuse-port sockets would share it.
        // A server stopped just before may take a moment to let go of it: retry briefly.
        let mut attempts = 0;
        loop {
            match std::net::TcpListener::bind(addr) {
                Ok(probe) => break drop(probe),
                Err(error) if error.kind() == io::ErrorKind::AddrInUse && attempts < 10 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => return Err(error),
            }
        }
    }
    let mut listeners = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        if addr.is_ipv6() {
            // `[::]` serves IPv4 too, as `0.0.0.0` and `::` together would.
            socket.set_only_v6(!addr.ip().is_unspecified())?;
        }
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}
