//! One connection: moves bytes between an io_uring socket and a core [`Session`].
//!
//! No SMTP rule lives here. The loop writes whatever output the session has (one write per
//! pipelined group; a `send` first, the ring for what the socket does not take), receives
//! through one multishot receive, and keeps one alarm: the session's own deadline, or the
//! end of the shutdown grace period.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant as StdInstant};

use compio::buf::BufResult;
use compio::driver::BufferRef;
use compio::io::{AsyncReadMulti, AsyncWriteExt};
use compio::net::TcpStream;
use futures_core::Stream;
use smtpd_core::{Config, Handler, Instant, Session};

use crate::alarm::Alarms;
use crate::server::Clock;
use crate::stop::Stop;

/// How a session ended, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The session closed itself (QUIT, 421 after errors or timeout, refused connect).
    Closed,
    /// The client went away without QUIT.
    Disconnected,
    /// Ended by server shutdown.
    Shutdown,
}

/// What a connection needs from its server.
pub(crate) struct Shared {
    pub config: &'static Config<'static>,
    pub clock: Rc<Clock>,
    pub stop: Rc<Stop>,
    pub alarms: Rc<Alarms>,
    pub grace: Duration,
}

/// What ended a wait for input.
enum Wake {
    Input(Option<io::Result<BufferRef>>),
    Timer,
    Shutdown,
}

/// Serves one connection until its session closes; returns how it ended, and the handler.
pub(crate) async fn serve<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    handler: H,
    shared: Shared,
) -> (Outcome, H) {
    let clock = shared.clock.clone();
    let mut session: Session<'static, H> = Session::new(shared.config, Some(peer), handler);
    // Bytes the session left unconsumed because its output had to be flushed first.
    let mut pending: Vec<u8> = Vec::new();
    let mut output: Vec<u8> = Vec::with_capacity(1024);
    let mut grace_until: Option<StdInstant> = None;
    let mut outcome = Outcome::Closed;
    // One multishot receive for the whole connection, into the thread's buffer pool: an
    // idle connection holds no read buffer, and a busy one needs no new submission.
    let mut reader = &stream;
    let mut incoming = pin!(reader.read_multi(0));
    // The connection's deadline: the session's own, or the end of the shutdown grace period.
    let alarm = shared.alarms.register();
    // The shutdown request, polled until it arrives.
    let mut shutdown = pin!(shared.stop.listen());
    session.handle_input(&[], clock.now()).await;
    loop {
        match write_output(&stream, &mut session, output).await {
            Ok(buffer) => output = buffer,
            Err(()) => {
                session.handle_disconnect().await;
                return (Outcome::Disconnected, session.into_handler());
            }
        }
        if session.is_closed() {
            break;
        }
        if !pending.is_empty() {
            // The core consumes more once its output is flushed (channel::receive).
            let used = session.handle_input(&pending, clock.now()).await;
            pending.drain(..used);
            if used > 0 || !session.output().is_empty() {
                continue;
            }
        }
        if grace_until.is_some() && session.is_idle() {
            session.handle_shutdown().await;
            outcome = Outcome::Shutdown;
            continue;
        }
        let session_deadline = session.poll_timeout().map(|at| clock.instant(at));
        alarm.set(match (session_deadline, grace_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        });
        let wake = poll_fn(|cx| {
            if let Poll::Ready(input) = incoming.as_mut().poll_next(cx) {
                return Poll::Ready(Wake::Input(input));
            }
            if alarm.poll_fired(cx).is_ready() {
                return Poll::Ready(Wake::Timer);
            }
            if grace_until.is_none() && shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Shutdown);
            }
            Poll::Pending
        })
        .await;
        match wake {
            Wake::Input(Some(Ok(input))) => {
                if pending.is_empty() {
                    let used = session.handle_input(&input, clock.now()).await;
                    pending.extend_from_slice(&input[used..]);
                } else {
                    pending.extend_from_slice(&input);
                }
            }
            // The buffer pool ran dry (ENOBUFS) for a moment; the receive is submitted again.
            Wake::Input(Some(Err(error))) if error.kind() == io::ErrorKind::ResourceBusy => {}
            Wake::Input(_) => {
                session.handle_disconnect().await;
                return (Outcome::Disconnected, session.into_handler());
            }
            Wake::Timer => {
                if grace_until.is_some_and(|grace| grace <= StdInstant::now()) {
                    session.handle_shutdown().await;
                    outcome = Outcome::Shutdown;
                } else {
                    session.handle_timeout(clock.now()).await;
                }
            }
            Wake::Shutdown => {
                grace_until = Some(StdInstant::now() + shared.grace);
                if session.is_idle() {
                    session.handle_shutdown().await;
                    outcome = Outcome::Shutdown;
                }
            }
        }
    }
    // Dropping the receive cancels it; dropping the stream then closes the connection.
    (outcome, session.into_handler())
}

/// Writes all pending session output in one submission; returns the buffer for reuse.
async fn write_output<H: Handler>(
    mut stream: &TcpStream,
    session: &mut Session<'static, H>,
    mut buffer: Vec<u8>,
) -> Result<Vec<u8>, ()> {
    if session.output().is_empty() {
        return Ok(buffer);
    }
    // Replies are small and the socket buffer almost always has room: one `send` now is
    // cheaper than a ring round trip. What it cannot take goes through the ring.
    let sent = send_now(stream, session.output());
    session.consume_output(sent);
    if session.output().is_empty() {
        return Ok(buffer);
    }
    buffer.clear();
    buffer.extend_from_slice(session.output());
    let written = buffer.len();
    let BufResult(result, buffer) = stream.write_all(buffer).await;
    result.map_err(|_| ())?;
    session.consume_output(written);
    Ok(buffer)
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
