//! The listener pool: one listening TCP socket per [`Slot`], each looping
//! accept → serve a core [`Session`] → close.
//!
//! smoltcp has no listen backlog: a SYN is answered only when a socket is waiting in
//! `accept`, and refused (RST) otherwise. Every slot therefore listens on its own socket as
//! soon as its previous connection is closed; the pool size is the number of clients served
//! at once, and a client beyond it is refused until a slot frees up.
//!
//! [`serve`] runs a whole pool as one future (for one embassy task); [`serve_slot`] runs a
//! single slot, for applications that prefer one task per slot.

use core::net::SocketAddr;

use embassy_futures::join::join_array;
use embassy_net::tcp::{State, TcpSocket};
use embassy_net::Stack;
use embassy_time::Timer;
use smtpd_core::{Config, Handler, Session};

use crate::connection::{self, Options};
use crate::slot::Slot;

/// Makes the handler for each accepted connection.
///
/// Implemented for closures `Fn(slot_index, peer) -> H`.
pub trait MakeHandler {
    type Handler: Handler;

    /// The handler for a connection from `peer` accepted on slot number `slot`.
    fn make_handler(&self, slot: usize, peer: Option<SocketAddr>) -> Self::Handler;
}

impl<F, H> MakeHandler for F
where
    F: Fn(usize, Option<SocketAddr>) -> H,
    H: Handler,
{
    type Handler = H;

    fn make_handler(&self, slot: usize, peer: Option<SocketAddr>) -> H {
        self(slot, peer)
    }
}

/// Serves SMTP on `stack` with one listening socket per slot, forever.
///
/// All `N` slots run inside this one future (joined), so one embassy task serves up to `N`
/// concurrent sessions.
pub async fn serve<
    'c,
    M,
    const N: usize,
    const RX: usize,
    const TX: usize,
    const INPUT: usize,
    const LINE: usize,
    const OUT: usize,
    const ENVELOPE: usize,
>(
    stack: Stack<'_>,
    config: &'c Config<'c>,
    options: &Options,
    slots: &mut [Slot<RX, TX, INPUT, LINE, OUT, ENVELOPE>; N],
    make: &M,
) -> !
where
    M: MakeHandler,
{
    let mut index = 0;
    let pool = slots.each_mut().map(|slot| {
        let slot_index = index;
        index += 1;
        serve_slot(stack, config, options, slot_index, slot, make)
    });
    join_array(pool).await;
    // Only reached with an empty pool.
    loop {
        core::future::pending::<()>().await;
    }
}

/// Serves SMTP on one slot, forever: listen, serve the accepted connection, close, repeat.
///
/// `index` is handed to [`MakeHandler::make_handler`].
pub async fn serve_slot<
    'c,
    M,
    const RX: usize,
    const TX: usize,
    const INPUT: usize,
    const LINE: usize,
    const OUT: usize,
    const ENVELOPE: usize,
>(
    stack: Stack<'_>,
    config: &'c Config<'c>,
    options: &Options,
    index: usize,
    slot: &mut Slot<RX, TX, INPUT, LINE, OUT, ENVELOPE>,
    make: &M,
) -> !
where
    M: MakeHandler,
{
    loop {
        let Slot { rx, tx, input } = &mut *slot;
        let mut socket = TcpSocket::new(stack, rx, tx);
        // Replies are written once per pipelined group; Nagle would only delay them.
        socket.set_nagle_enabled(false);
        // Bounds the SYN-received state; the session's own deadlines take over once open.
        socket.set_timeout(Some(options.handshake_timeout));
        if let Err(error) = socket.accept(options.port).await {
            warn!("slot {}: accept failed: {}", index, error);
            drop(socket);
            Timer::after_secs(1).await;
            continue;
        }
        if socket.state() == State::Closed {
            // The handshake timed out (accept returns with the socket closed), or the client
            // reset the connection at once.
            debug!("slot {}: handshake not completed", index);
            continue;
        }
        socket.set_timeout(None);
        let peer = socket.remote_endpoint().map(SocketAddr::from);
        debug!(
            "slot {}: connection from {}",
            index,
            socket.remote_endpoint()
        );
        let handler = make.make_handler(index, peer);
        let mut session: Session<'c, M::Handler, LINE, OUT, [u8; ENVELOPE]> =
            Session::new(config, peer, handler);
        let outcome = connection::run(&mut socket, &mut session, input, options).await;
        debug!("slot {}: connection ended: {}", index, outcome);
    }
}
