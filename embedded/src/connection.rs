//! One accepted connection: moves bytes between an embassy-net TCP socket and a core
//! [`Session`], then closes the socket.
//!
//! No SMTP rule lives here. The loop writes whatever output the session has (one write per
//! pipelined reply group), hands read octets to the session, and waits for either more
//! octets or the session's own deadline (the core's per-phase timeouts), whichever comes
//! first. When the session is over the socket is closed cleanly: the output is flushed, our
//! FIN is sent and the client's awaited for at most [`Options::linger`]; an error or a
//! client that stops taking data ends in an abort (RST) instead.

use embassy_futures::select::{select, Either};
use embassy_net::tcp::TcpSocket;
use embassy_time::{with_timeout, Duration};
use smtpd_core::envelope::Arena;
use smtpd_core::{Handler, Session};

use crate::clock;

/// How the pool listens and how long it waits on a client's socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Options {
    /// TCP port to listen on (25 for SMTP).
    pub port: u16,
    /// Longest wait for the client to take the session's output (a client that stops
    /// reading). Past it the connection is reset.
    pub write_timeout: Duration,
    /// After the server closed its side: longest wait for the client to acknowledge our FIN
    /// and close its side. Past it the connection is reset and the slot listens again.
    pub linger: Duration,
    /// Longest wait, after a client's SYN, for its handshake to complete. A SYN whose
    /// sender never answers our SYN-ACK (a forged source address, a lost route) would
    /// otherwise hold the slot's one listening socket for good.
    pub handshake_timeout: Duration,
}

impl Options {
    /// Listens on `port`, with a 5-minute write timeout (RFC 5321 4.5.3.2.7's command
    /// timeout), a 2-second linger and a 20-second handshake timeout.
    pub const fn new(port: u16) -> Self {
        Options {
            port,
            write_timeout: Duration::from_secs(300),
            linger: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(20),
        }
    }
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// The session ended itself (QUIT, a `421` after errors or a timeout, a refused connect).
    Closed,
    /// The client closed its side without QUIT.
    ClientClosed,
    /// The connection failed: reset by the client, or it stopped taking our output.
    Failed,
}

/// Serves the accepted `socket` until `session` is over, then closes the socket.
///
/// `input` is the buffer octets are read into; whatever the session did not consume yet
/// stays at its front.
pub async fn run<H, const LINE: usize, const OUT: usize, A: Arena>(
    socket: &mut TcpSocket<'_>,
    session: &mut Session<'_, H, LINE, OUT, A>,
    input: &mut [u8],
    options: &Options,
) -> Outcome
where
    H: Handler,
{
    let outcome = exchange(socket, session, input, options).await;
    match outcome {
        Outcome::Closed | Outcome::ClientClosed => close(socket, input, options).await,
        Outcome::Failed => abort(socket).await,
    }
    outcome
}

/// The SMTP exchange proper: returns once the session is over.
async fn exchange<H, const LINE: usize, const OUT: usize, A: Arena>(
    socket: &mut TcpSocket<'_>,
    session: &mut Session<'_, H, LINE, OUT, A>,
    input: &mut [u8],
    options: &Options,
) -> Outcome
where
    H: Handler,
{
    session.handle_input(&[], clock::now()).await; // the greeting
    let mut filled = 0;
    loop {
        if write_output(socket, session, options).await.is_err() {
            session.handle_disconnect().await;
            return Outcome::Failed;
        }
        if session.is_closed() {
            return Outcome::Closed;
        }
        if filled > 0 {
            // Fresh octets, or octets left over because the output needed flushing first.
            let used = session.handle_input(&input[..filled], clock::now()).await;
            input.copy_within(used..filled, 0);
            filled -= used;
            if used > 0 || !session.output().is_empty() {
                continue;
            }
        }
        if filled == input.len() {
            // The session takes input whenever its output is empty; never wait on a full
            // buffer if that ever changed.
            warn!("session stopped taking input");
            session.handle_disconnect().await;
            return Outcome::Failed;
        }
        let deadline = session.poll_timeout();
        match select(
            socket.read(&mut input[filled..]),
            clock::sleep_until(deadline),
        )
        .await
        {
            Either::First(Ok(0)) => {
                session.handle_disconnect().await;
                return Outcome::ClientClosed;
            }
            Either::First(Ok(n)) => filled += n,
            Either::First(Err(_)) => {
                session.handle_disconnect().await;
                return Outcome::Failed;
            }
            Either::Second(()) => session.handle_timeout(clock::now()).await,
        }
    }
}

/// Why output could not be written.
enum WriteError {
    Reset,
    TimedOut,
}

/// Writes all pending session output.
async fn write_output<H, const LINE: usize, const OUT: usize, A: Arena>(
    socket: &mut TcpSocket<'_>,
    session: &mut Session<'_, H, LINE, OUT, A>,
    options: &Options,
) -> Result<(), WriteError>
where
    H: Handler,
{
    while !session.output().is_empty() {
        match with_timeout(options.write_timeout, socket.write(session.output())).await {
            Ok(Ok(n)) => session.consume_output(n),
            Ok(Err(_)) => return Err(WriteError::Reset),
            Err(_) => {
                debug!("write timed out");
                return Err(WriteError::TimedOut);
            }
        }
    }
    Ok(())
}

/// Closes our side after the output, waits for the client to close its side, and resets the
/// connection if that does not happen within the linger time.
async fn close(socket: &mut TcpSocket<'_>, sink: &mut [u8], options: &Options) {
    socket.close();
    let closed = with_timeout(options.linger, async {
        // Our data and FIN acknowledged...
        socket.flush().await?;
        // ...then the client's FIN; whatever it still sends is discarded.
        loop {
            if socket.read(sink).await? == 0 {
                return Ok::<(), embassy_net::tcp::Error>(());
            }
        }
    })
    .await;
    if !matches!(closed, Ok(Ok(()))) {
        debug!("close did not complete, resetting");
        abort(socket).await;
    }
}

/// Resets the connection and waits (briefly) for the RST to be sent.
async fn abort(socket: &mut TcpSocket<'_>) {
    socket.abort();
    let _ = with_timeout(Duration::from_secs(1), socket.flush()).await;
}
