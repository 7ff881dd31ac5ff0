//! One connection: moves bytes between an io_uring socket and a core [`Session`].
//!
//! No SMTP rule lives here. The loop writes whatever output the session has (one `send`
//! per pipelined group; the ring takes what the socket does not), hands each received
//! chunk to the core (after the bytes the core left, if any), and keeps one alarm: the
//! session's own deadline, the end of the shutdown grace period, or, while the peer leaves
//! its replies unread, the end of its patience.
//!
//! A connection from a trusted proxy (`Options::proxy_protocol`) first sends a PROXY
//! protocol header; the core reads it (`smtpd_core::proxy_header`), and the session is the
//! client's it names. A connection whose header does not come, or is not one, is closed
//! without a reply.
//!
//! Receiving is one multishot receive into the connection's own `Inbox`: while the
//! connection waits on its handler or on a peer that does not read, the kernel fills at most
//! the inbox's few buffers, then TCP flow control holds that peer back, and no connection
//! can take receive memory from the others.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant as StdInstant};

use compio::buf::BufResult;
use compio::io::AsyncWriteExt;
use compio::net::TcpStream;
use smtpd_core::channel::capacity;
use smtpd_core::network::Network;
use smtpd_core::proxy_header::{self, ProxyHeader, ProxyHeaderError};
use smtpd_core::{replies, CloseReason, Config, Handler, Instant, Session};

use crate::alarm::{Alarm, Alarms};
use crate::arena::PageArena;
use crate::client_limit::{Admitted, ClientLimit};
use crate::inbox::{Chunk, Inbox, InboxPool};
use crate::logging::Traffic;
use crate::server::{closing_reply, Clock};

/// How a session ended, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The session closed itself: QUIT, too many bad commands, or a handler's `421`.
    Closed(CloseReason),
    /// The client kept the session waiting past a timeout (`421 4.4.2`), or left its
    /// replies unread as long.
    TimedOut,
    /// The client went away without QUIT.
    Disconnected,
    /// Ended by server shutdown.
    Shutdown,
    /// A trusted proxy's connection began with no valid PROXY header (none, a malformed
    /// one, one too long): closed without a reply.
    NoProxyHeader(ProxyHeaderError),
    /// The client had as many connections open as it may (`421 4.7.0`).
    TooManyFromClient,
    /// The handler panicked: the replies made before, then `421 4.3.0`.
    HandlerPanicked,
}

impl Outcome {
    /// How a closed session ended, as the core saw it.
    fn of<H: Handler>(session: &ServerSession<H>) -> Outcome {
        match session.close_reason() {
            Some(CloseReason::Timeout) => Outcome::TimedOut,
            Some(CloseReason::Shutdown) => Outcome::Shutdown,
            Some(CloseReason::Disconnected) | None => Outcome::Disconnected,
            Some(reason) => Outcome::Closed(reason),
        }
    }
}

/// What a connection needs from its server (one value per thread, cloned per connection).
#[derive(Clone)]
pub(crate) struct Shared {
    pub config: &'static Config<'static>,
    pub clock: Rc<Clock>,
    pub alarms: Rc<Alarms>,
    pub inboxes: Rc<InboxPool>,
    pub grace: Duration,
    /// Connections from these networks begin with a PROXY header.
    pub proxies: Rc<[Network]>,
    /// Connections per client.
    pub clients: Arc<ClientLimit>,
}

/// The core session as the server sizes it: default buffers, and the envelope in a
/// [`PageArena`] (room for 100 of the longest paths, paid for by the page).
type ServerSession<H> = Session<'static, H, { capacity::LINE }, { capacity::OUT }, PageArena>;

/// How long a closing connection waits for its receive to end before giving up its inbox.
const RECEIVE_END: Duration = Duration::from_secs(1);

/// How long a proxy may take to send its header (Postfix's `smtpd_upstream_proxy_timeout`).
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What ended a wait for input.
enum Wake {
    Received(std::io::Result<Option<Chunk>>),
    Timer,
    Shutdown,
}

/// `addr` with an IPv4-mapped IPv6 address (`[::ffff:192.0.2.1]:25`, as a dual-stack socket
/// or a proxy may give an IPv4 client) as the IPv4 address it is.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// A connection's end: whose it was, how it ended, and its handler (none when the session
/// never began: a proxy's header was missing, bad or late, or the server stopped first).
pub(crate) struct Served<H> {
    /// The client: the connection's peer, or the one its proxy named; `None` when the proxy
    /// relayed a client it did not name.
    pub client: Option<SocketAddr>,
    /// The peer, when it was a trusted proxy.
    pub proxy: Option<SocketAddr>,
    pub outcome: Outcome,
    pub handler: Option<H>,
}

impl<H> Served<H> {
    /// The client for the log: its address, or `unknown`.
    pub fn client_name(&self) -> impl std::fmt::Display {
        struct Name(Option<SocketAddr>);
        impl std::fmt::Display for Name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.0 {
                    Some(addr) => addr.fmt(f),
                    None => f.write_str("unknown"),
                }
            }
        }
        Name(self.client)
    }
}

/// Serves one connection from `peer` until its session closes, with the handler made for
/// the client (`peer`, or the client named by the PROXY header of a trusted proxy).
pub(crate) async fn serve<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    make_handler: impl FnOnce(SocketAddr) -> H,
    arena: PageArena,
    mut inbox: Inbox,
    shared: Shared,
) -> Served<H> {
    let alarm = shared.alarms.register();
    let proxy = shared
        .proxies
        .iter()
        .any(|proxy| proxy.contains(peer.ip()))
        .then_some(peer);
    let opened = match proxy {
        Some(_) => proxied_client(&stream, peer, &mut inbox, &alarm).await,
        None => Ok((Some(peer), Vec::new())),
    };
    // The client's place among its connections, held to the end; none left: refused.
    let admitted = match &opened {
        Ok((Some(client), _)) => {
            let local = || stream.local_addr().ok().map(|local| local.ip());
            shared.clients.admit(client.ip(), local)
        }
        _ => Some(Admitted::uncounted()),
    };
    let served = match opened {
        Ok((client, _)) if admitted.is_none() => {
            let reply = closing_reply(shared.config, replies::TOO_MANY_CONNECTIONS_FROM_CLIENT);
            send_now(&stream, &reply);
            Served {
                client,
                proxy,
                outcome: Outcome::TooManyFromClient,
                handler: None,
            }
        }
        Ok((client, input)) => {
            // A client its proxy did not name is unknown to the session (and so to the relay
            // rule); handlers made per connection, and the traffic log, get the proxy's address.
            let known = client.unwrap_or(peer);
            let handler = make_handler(known);
            let mut session: ServerSession<H> =
                Session::with_arena(shared.config, client, handler, arena);
            let mut last_words = LastWords {
                stream: &stream,
                config: shared.config,
                armed: true,
            };
            let conversation = converse(
                &stream,
                known,
                &mut session,
                &mut inbox,
                input,
                &alarm,
                &shared,
            );
            let outcome = match unless_panicking(conversation).await {
                Some(outcome) => outcome,
                None => {
                    // The replies made before the handler panicked hold (a 250 among them
                    // means a message was handed on); then the 421 of a session whose
                    // state is unknown.
                    let mut last = session.output().to_vec();
                    last.extend(closing_reply(shared.config, replies::SESSION_ABORTED));
                    send_now(&stream, &last);
                    inbox.recover_dropped_chunk();
                    Outcome::HandlerPanicked
                }
            };
            last_words.armed = false;
            Served {
                client,
                proxy,
                outcome,
                handler: Some(session.into_handler()),
            }
        }
        Err(outcome) => Served {
            client: Some(peer),
            proxy,
            outcome,
            handler: None,
        },
    };
    if inbox.is_armed() {
        // The inbox is reusable once its receive has ended: shutting the socket down ends
        // it at once (and sends our FIN, as closing would).
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on the descriptor `stream` keeps open.
        unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_RDWR) };
        alarm.set(Some(StdInstant::now() + RECEIVE_END));
        poll_fn(|cx| match inbox.poll_end(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            // Given up: dropping an armed inbox leaks its memory, never reuses it.
            Poll::Pending => alarm.poll_fired(cx),
        })
        .await;
    }
    served
}

/// Reads a trusted proxy's PROXY header: the client it names and the input after the
/// header. The proxy's own connection (`LOCAL`, a health check) is `peer`'s; a client the
/// proxy does not name (`UNKNOWN`, a UNIX socket...) is `None`, unknown. (The specification
/// would have `peer` for both; the proxy's address may well have relay rights.)
async fn proxied_client(
    stream: &TcpStream,
    peer: SocketAddr,
    inbox: &mut Inbox,
    alarm: &Alarm,
) -> Result<(Option<SocketAddr>, Vec<u8>), Outcome> {
    alarm.set(Some(StdInstant::now() + PROXY_HEADER_TIMEOUT));
    let mut input = Vec::new();
    loop {
        let wake = poll_fn(|cx| {
            if let Poll::Ready(received) = inbox.poll_receive(stream, cx) {
                return Poll::Ready(Wake::Received(received));
            }
            if alarm.poll_fired(cx).is_ready() {
                return Poll::Ready(Wake::Timer);
            }
            alarm.poll_stop(cx).map(|()| Wake::Shutdown)
        })
        .await;
        let chunk = match wake {
            Wake::Received(Ok(Some(chunk))) => chunk,
            Wake::Received(_) => return Err(Outcome::Disconnected),
            Wake::Timer => return Err(Outcome::TimedOut),
            Wake::Shutdown => return Err(Outcome::Shutdown),
        };
        let received = inbox.data(&chunk);
        tracing::debug!(%peer, "received {}", Traffic(received));
        input.extend_from_slice(received);
        inbox.give_back(chunk);
        match proxy_header::parse(&input) {
            Ok(None) => continue,
            Ok(Some((header, len))) => {
                let client = match header {
                    ProxyHeader::Client(client) => Some(canonical(client)),
                    ProxyHeader::Local => Some(peer),
                    ProxyHeader::Unnamed => None,
                };
                input.drain(..len);
                return Ok((client, input));
            }
            Err(error) => return Err(Outcome::NoProxyHeader(error)),
        }
    }
}

/// Runs a conversation; `None` if it panicked (a handler's bug), with its state dropped, so
/// that the connection still ends as every other does: its receive ended, its memory
/// reused, its session logged.
async fn unless_panicking<T>(work: impl Future<Output = T>) -> Option<T> {
    let mut work = pin!(work);
    poll_fn(|cx| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.as_mut().poll(cx)))
            .map_or(Poll::Ready(None), |poll| poll.map(Some))
    })
    .await
}

/// Sends the client a last `421` if the conversation ends without finishing: its task was
/// dropped in the middle, because the server gave up on it (a handler that did not return
/// within a shutdown's grace period and the second after). The session's state is then
/// unknown; the client keeps its message and retries. Costs nothing while the conversation
/// goes on.
struct LastWords<'a> {
    stream: &'a TcpStream,
    config: &'a Config<'a>,
    armed: bool,
}

impl Drop for LastWords<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.say();
        }
    }
}

impl LastWords<'_> {
    #[cold]
    #[inline(never)]
    fn say(&self) {
        let reply = closing_reply(self.config, replies::SESSION_ABORTED);
        send_now(self.stream, &reply);
    }
}

/// The conversation: replies out, input in, until the session closes or the peer goes.
///
/// `input`: octets received before the conversation began (after a PROXY header).
async fn converse<H: Handler>(
    stream: &TcpStream,
    peer: SocketAddr,
    session: &mut ServerSession<H>,
    inbox: &mut Inbox,
    mut input: Vec<u8>,
    alarm: &Alarm,
    shared: &Shared,
) -> Outcome {
    let clock = &shared.clock;
    // `input` holds the octets the core has not consumed yet (a partial line, or commands
    // pipelined behind one whose reply is not yet out).
    // Only used for replies the socket does not take at once.
    let mut output: Vec<u8> = Vec::new();
    let grace_until: Cell<Option<StdInstant>> = Cell::new(None);
    // A peer may leave replies unread as long as it may stay silent (RFC 5321 gives no
    // write timeout; Postfix uses its command timeout too), and not past the grace period.
    let replies = Replies {
        stream,
        peer,
        alarm,
        patience: shared.config.timeouts.command,
    };
    let work = Work {
        alarm,
        grace: shared.grace,
        grace_until: &grace_until,
    };
    session.handle_input(&[], clock.now()).await;
    loop {
        match replies.write(session, output, grace_until.get()).await {
            Ok(buffer) => output = buffer,
            Err(ended) => {
                session.handle_disconnect().await;
                return ended;
            }
        }
        if session.is_closed() {
            return Outcome::of(session);
        }
        if !input.is_empty() {
            // The core consumes more once its output is flushed (channel::receive).
            let Some(used) = work
                .until_stopped(session.handle_input(&input, clock.now()))
                .await
            else {
                return work.stop(session, &replies, output).await;
            };
            input.drain(..used);
            if used > 0 || !session.output().is_empty() {
                continue;
            }
        }
        if grace_until.get().is_some() && session.is_idle() {
            session.handle_shutdown().await;
            continue;
        }
        let chunk = loop {
            let session_deadline = session.poll_timeout().map(|at| clock.instant(at));
            alarm.set(match (session_deadline, grace_until.get()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            });
            let wake = poll_fn(|cx| {
                if let Poll::Ready(received) = inbox.poll_receive(stream, cx) {
                    return Poll::Ready(Wake::Received(received));
                }
                if alarm.poll_fired(cx).is_ready() {
                    return Poll::Ready(Wake::Timer);
                }
                if work.poll_stop(cx).is_ready() {
                    return Poll::Ready(Wake::Shutdown);
                }
                Poll::Pending
            })
            .await;
            match wake {
                Wake::Received(received) => break received,
                Wake::Timer => {
                    if work.grace_over() {
                        session.handle_shutdown().await;
                    } else {
                        session.handle_timeout(clock.now()).await;
                    }
                }
                Wake::Shutdown => {
                    if session.is_idle() {
                        session.handle_shutdown().await;
                    }
                }
            }
            if session.is_closed() {
                // Nothing more is wanted: the reply goes out, then the connection closes.
                let _ = replies.write(session, output, grace_until.get()).await;
                return Outcome::of(session);
            }
        };
        let Ok(Some(chunk)) = chunk else {
            session.handle_disconnect().await;
            return Outcome::Disconnected;
        };
        let received = inbox.data(&chunk);
        tracing::debug!(%peer, "received {}", Traffic(received));
        let handled = if input.is_empty() {
            // The common case: the core reads straight from the inbox.
            let used = work
                .until_stopped(session.handle_input(received, clock.now()))
                .await;
            used.map(|used| input.extend_from_slice(&received[used..]))
        } else {
            input.extend_from_slice(received);
            let used = work
                .until_stopped(session.handle_input(&input, clock.now()))
                .await;
            used.map(|used| drop(input.drain(..used)))
        };
        inbox.give_back(chunk);
        if handled.is_none() {
            return work.stop(session, &replies, output).await;
        }
    }
}

/// A session's handler at work, and the shutdown that may end the wait for it.
struct Work<'a> {
    alarm: &'a Alarm,
    grace: Duration,
    /// When the grace period of a shutdown ends (the server is stopping).
    grace_until: &'a Cell<Option<StdInstant>>,
}

impl Work<'_> {
    /// Awaits the handler's `work`; `None` when a shutdown's grace period ended first. The
    /// work is then dropped, and the session must be ended with [`stop`](Self::stop).
    async fn until_stopped<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let mut work = pin!(work);
        poll_fn(|cx| {
            if let Poll::Ready(done) = work.as_mut().poll(cx) {
                return Poll::Ready(Some(done));
            }
            let _ = self.poll_stop(cx);
            if self.grace_until.get().is_none() {
                return Poll::Pending;
            }
            loop {
                match self.alarm.poll_fired(cx) {
                    Poll::Ready(()) if self.grace_over() => return Poll::Ready(None),
                    // The deadline set before the work began: the session has none while its
                    // handler works, so the wait is now for the grace period's end.
                    Poll::Ready(()) => self.alarm.set(self.grace_until.get()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await
    }

    /// Ready once, when the server is first seen stopping: the grace period starts then,
    /// and the alarm is set for its end.
    fn poll_stop(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.grace_until.get().is_some() || self.alarm.poll_stop(cx).is_pending() {
            return Poll::Pending;
        }
        let until = StdInstant::now() + self.grace;
        self.grace_until.set(Some(until));
        self.alarm.set(Some(until));
        Poll::Ready(())
    }

    /// The grace period of a shutdown has ended.
    fn grace_over(&self) -> bool {
        self.grace_until
            .get()
            .is_some_and(|until| until <= StdInstant::now())
    }

    /// Ends a session whose handler was still at work when the grace period ended: `421`
    /// (RFC 5321 3.8), as for the others.
    async fn stop<H: Handler>(
        &self,
        session: &mut ServerSession<H>,
        replies: &Replies<'_>,
        output: Vec<u8>,
    ) -> Outcome {
        session.handle_shutdown().await;
        let _ = replies.write(session, output, self.grace_until.get()).await;
        Outcome::Shutdown
    }
}

/// What writing a connection's replies needs besides the session.
#[derive(Clone, Copy)]
struct Replies<'a> {
    stream: &'a TcpStream,
    /// For the debug log.
    peer: SocketAddr,
    alarm: &'a Alarm,
    /// How long the peer may leave replies unread.
    patience: Duration,
}

impl Replies<'_> {
    /// Writes all pending session output; returns the buffer for reuse. Replies are small
    /// and the socket almost always has room, so one `send` goes first; what it cannot take
    /// goes through the ring. Fails on a write error (`Disconnected`), or when the peer
    /// leaves the replies unread for `patience` (`TimedOut`) or past the end of the grace
    /// period (`Shutdown`).
    async fn write<H: Handler>(
        &self,
        session: &mut ServerSession<H>,
        mut buffer: Vec<u8>,
        grace_until: Option<StdInstant>,
    ) -> Result<Vec<u8>, Outcome> {
        let Replies {
            stream,
            peer,
            alarm,
            patience,
        } = *self;
        if session.output().is_empty() {
            return Ok(buffer);
        }
        tracing::debug!(%peer, "sending {}", Traffic(session.output()));
        let sent = send_now(stream, session.output());
        session.consume_output(sent);
        if session.output().is_empty() {
            return Ok(buffer);
        }
        buffer.clear();
        buffer.extend_from_slice(session.output());
        let written = buffer.len();
        let now = StdInstant::now();
        let give_up =
            grace_until.map_or(now + patience, |grace| grace.max(now).min(now + patience));
        alarm.set(Some(give_up));
        let mut writer = stream;
        let mut write = pin!(writer.write_all(buffer));
        let buffer = poll_fn(|cx| {
            if let Poll::Ready(BufResult(result, buffer)) = write.as_mut().poll(cx) {
                return Poll::Ready(result.map(|()| buffer).or(Err(Outcome::Disconnected)));
            }
            alarm.poll_fired(cx).map(|()| match grace_until {
                Some(grace) if grace <= give_up => Err(Outcome::Shutdown),
                _ => Err(Outcome::TimedOut),
            })
        })
        .await?;
        session.consume_output(written);
        Ok(buffer)
    }
}

/// Sends what the socket takes without blocking; returns the count (0 on any error: the
/// ring write that follows reports it).
fn send_now(stream: &TcpStream, bytes: &[u8]) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the lifetime of `stream`; `bytes` is valid memory.
    let sent = unsafe {
        libc::send(
            stream.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(sent).unwrap_or(0)
}

impl Clock {
    /// Now, as the core counts time.
    pub fn now(&self) -> Instant {
        Instant::from_millis(self.start.elapsed().as_millis() as u64)
    }

    /// The runtime instant of a core deadline.
    pub fn instant(&self, at: Instant) -> StdInstant {
        self.start + Duration::from_millis(at.as_millis())
    }
}
