//! One connection: moves bytes between an io_uring socket and a core [`Session`].
//!
//! No SMTP rule lives here. The loop writes whatever output the session has (one write per
//! pipelined group), reads into an owned buffer appended with `slice(len..)`, and keeps one
//! timer: the session's own deadline, or the shutdown grace period.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use smtpd_core::{Config, Handler, Instant, Session};
use tokio::sync::watch;
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

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
    let mut grace_until: Option<tokio::time::Instant> = None;
    let mut outcome = Outcome::Closed;
    // One timer for the connection, moved only when the deadline changes; one shutdown
    // future, polled until the shutdown request arrives (a value can only become `true`).
    let never = far_future();
    let timer = tokio::time::sleep_until(never);
    tokio::pin!(timer);
    let shutdown = shared.shutdown.changed();
    tokio::pin!(shutdown);
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
        let filled = input.len();
        let read = stream.read(input.slice(filled..));
        tokio::pin!(read);
        let (result, buffer) = loop {
            let session_deadline = session.poll_timeout().map(|at| clock.instant(at));
            let deadline = match (session_deadline, grace_until) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(never),
            };
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                (result, slice) = &mut read => break (result, slice.into_inner()),
                () = &mut timer => {
                    if grace_until.is_some_and(|grace| grace <= tokio::time::Instant::now()) {
                        session.handle_shutdown().await;
                        outcome = Outcome::Shutdown;
                    } else {
                        session.handle_timeout(clock.now()).await;
                    }
                    timer.as_mut().reset(never);
                }
                _ = &mut shutdown, if grace_until.is_none() => {
                    grace_until = Some(tokio::time::Instant::now() + shared.grace);
                    if session.is_idle() {
                        session.handle_shutdown().await;
                        outcome = Outcome::Shutdown;
                    }
                }
            }
            if session.is_closed() {
                // Nothing more is wanted. Dropping the pending read does not cancel it: the
                // in-flight operation keeps the socket open until it completes, which a silent
                // client never makes happen. Shutting the socket down sends the FIN after the
                // reply and completes the read, so the descriptor is closed.
                let _ = write_output(&stream, &mut session, output).await;
                let _ = stream.shutdown(std::net::Shutdown::Both);
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
    stream: &TcpStream,
    session: &mut Session<'static, H>,
    mut buffer: Vec<u8>,
) -> Result<Vec<u8>, ()> {
    if session.output().is_empty() {
        return Ok(buffer);
    }
    buffer.clear();
    buffer.extend_from_slice(session.output());
    let written = buffer.len();
    let (result, buffer) = stream.write_all(buffer).await;
    result.map_err(|_| ())?;
    session.consume_output(written);
    Ok(buffer)
}

/// A deadline that never comes (the timer's resting position).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

impl Clock {
    /// Now, as the core counts time.
    pub fn now(&self) -> Instant {
        Instant::from_millis(self.start.elapsed().as_millis() as u64)
    }

    /// The runtime instant of a core deadline.
    pub fn instant(&self, at: Instant) -> tokio::time::Instant {
        self.start + Duration::from_millis(at.as_millis())
    }
}
