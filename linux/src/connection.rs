//! One connection: moves bytes between an io_uring socket and a core [`Session`].
//!
//! No SMTP rule lives here. The loop writes whatever output the session has (one write per
//! pipelined group), reads into an owned buffer (appending after the bytes it holds), and
//! keeps one timer: the session's own deadline, or the shutdown grace period.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant as StdInstant};

use compio::buf::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use compio::time::sleep_until;
use smtpd_core::{Config, Handler, Instant, Session};
use tokio::sync::watch;

use crate::server::Clock;

/// Read buffer size: large enough for fast bodies, only touched pages cost memory.
const READ_BUFFER: usize = 64 * 1024;

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
    pub shutdown: watch::Receiver<bool>,
    pub grace: Duration,
}

/// What ended a wait for input.
enum Wake {
    Read(BufResult<usize, Vec<u8>>),
    Timer,
    Shutdown,
}

/// Serves one connection until its session closes; returns how it ended, and the handler.
pub(crate) async fn serve<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    handler: H,
    mut shared: Shared,
) -> (Outcome, H) {
    let clock = shared.clock.clone();
    let mut session: Session<'static, H> = Session::new(shared.config, Some(peer), handler);
    let mut input: Vec<u8> = Vec::with_capacity(READ_BUFFER);
    let mut output: Vec<u8> = Vec::with_capacity(1024);
    let mut grace_until: Option<StdInstant> = None;
    let mut outcome = Outcome::Closed;
    // One timer for the connection. It is moved only to an earlier deadline: a later one
    // (every command pushes the deadline on) lets it fire early, and the core ignores a
    // timeout that has not yet come, after which the timer is set again.
    let mut timer_at = far_future();
    let mut timer = pin!(sleep_until(timer_at));
    // One shutdown future, polled until the request arrives (a value can only become `true`).
    let mut shutdown = pin!(shared.shutdown.changed());
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
        if !input.is_empty() {
            // Input left over because the output needed flushing first.
            let used = session.handle_input(&input, clock.now()).await;
            input.drain(..used);
            if used > 0 || !session.output().is_empty() {
                continue;
            }
        }
        if grace_until.is_some() && session.is_idle() {
            session.handle_shutdown().await;
            outcome = Outcome::Shutdown;
            continue;
        }
        let mut reader = &stream;
        let mut read = pin!(reader.append(input));
        let BufResult(result, buffer) = loop {
            let session_deadline = session.poll_timeout().map(|at| clock.instant(at));
            let deadline = match (session_deadline, grace_until) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or_else(far_future),
            };
            if deadline < timer_at {
                timer_at = deadline;
                timer.set(sleep_until(timer_at));
            }
            let wake = poll_fn(|cx| {
                if let Poll::Ready(read) = read.as_mut().poll(cx) {
                    return Poll::Ready(Wake::Read(read));
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Timer);
                }
                if grace_until.is_none() && shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Shutdown);
                }
                Poll::Pending
            })
            .await;
            match wake {
                Wake::Read(read) => break read,
                Wake::Timer => {
                    timer_at = far_future();
                    timer.set(sleep_until(timer_at));
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
            if session.is_closed() {
                // Nothing more is wanted: dropping the read cancels it, the reply goes out
                // and dropping the stream closes the connection.
                let _ = write_output(&stream, &mut session, output).await;
                return (outcome, session.into_handler());
            }
        };
        input = buffer;
        match result {
            Ok(0) | Err(_) => {
                session.handle_disconnect().await;
                return (Outcome::Disconnected, session.into_handler());
            }
            Ok(_) => {
                let used = session.handle_input(&input, clock.now()).await;
                input.drain(..used);
            }
        }
    }
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

/// A deadline that never comes (the timer's resting position).
fn far_future() -> StdInstant {
    StdInstant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
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
