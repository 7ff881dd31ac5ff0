//! The driver: a [`Channel`] and a [`Handler`], awaited together.
//!
//! A frontend owns one `Session` per connection and does only I/O:
//!
//! ```text
//! session.handle_input(&[], now).await;          // greeting
//! loop {
//!     write(session.output()); session.consume_output(n);
//!     if session.is_closed() { break }
//!     select { read(buf) => { let used = session.handle_input(&buf, now).await; keep buf[used..] }
//!              timer(session.poll_timeout()) => session.handle_timeout(now).await }
//! }
//! ```
//!
//! `handle_input` consumes as much input as it can: every complete command of a pipelined
//! group is answered into the output buffer, so the replies go out in one write
//! (RFC 2920). It stops early only when the output buffer needs flushing; the caller then
//! writes the output and offers the unconsumed rest again.

use core::net::SocketAddr;

use crate::channel::{capacity, Channel, Event};
use crate::config::Config;
use crate::envelope::Arena;
use crate::handler::{CloseReason, Context, Handler, Verdict};
use crate::timeout::Instant;

/// One SMTP session: channel state plus the application's handler.
pub struct Session<
    'c,
    H,
    const LINE: usize = { capacity::LINE },
    const OUT: usize = { capacity::OUT },
    A = [u8; capacity::ENVELOPE],
> {
    channel: Channel<'c, LINE, OUT, A>,
    handler: H,
}

impl<'c, H: Handler, const LINE: usize, const OUT: usize, const ENVELOPE: usize>
    Session<'c, H, LINE, OUT, [u8; ENVELOPE]>
{
    /// A session for a new connection, with an inline envelope arena; call
    /// `handle_input(&[], now)` to send the greeting.
    pub fn new(config: &'c Config<'c>, peer: Option<SocketAddr>, handler: H) -> Self {
        Self::with_arena(config, peer, handler, [0; ENVELOPE])
    }
}

impl<'c, H: Handler, const LINE: usize, const OUT: usize, A: Arena> Session<'c, H, LINE, OUT, A> {
    /// A session for a new connection that keeps its envelope in `arena` (see
    /// [`envelope`](crate::envelope)); call `handle_input(&[], now)` to send the greeting.
    pub fn with_arena(
        config: &'c Config<'c>,
        peer: Option<SocketAddr>,
        handler: H,
        arena: A,
    ) -> Self {
        Session {
            channel: Channel::with_arena(config, peer, arena),
            handler,
        }
    }

    /// Processes `input` received at `now`; returns how many octets were consumed.
    ///
    /// When the input ends in the middle of a message, the handler's `data_pause` is awaited
    /// before returning.
    pub async fn handle_input(&mut self, input: &[u8], now: Instant) -> usize {
        let mut pos = 0;
        // Content was given to the handler, and its message has not ended yet.
        let mut streamed = false;
        loop {
            let (n, chunk) = self.channel.receive(&input[pos..], now);
            pos += n;
            if let Some(chunk) = chunk {
                streamed = true;
                let cx = self.channel.context();
                if let Err(reply) = self.handler.data_chunk(&cx, chunk).await {
                    self.channel.refuse_data(reply);
                }
                continue;
            }
            match self.dispatch().await {
                Some(ends_message) => streamed &= !ends_message,
                None if streamed && pos == input.len() => {
                    streamed = false;
                    let cx = self.channel.context();
                    if let Err(reply) = self.handler.data_pause(&cx).await {
                        // On to the abort notification the refusal raised.
                        self.channel.refuse_data(reply);
                        continue;
                    }
                    return pos;
                }
                None => return pos,
            }
        }
    }

    /// Ends the session with `421` if its deadline has passed (see [`poll_timeout`](Self::poll_timeout)).
    pub async fn handle_timeout(&mut self, now: Instant) {
        self.channel.handle_timeout(now);
        while self.dispatch().await.is_some() {}
    }

    /// The server is stopping: `421` now (call it once the grace period is over).
    pub async fn handle_shutdown(&mut self) {
        self.channel.shutdown();
        while self.dispatch().await.is_some() {}
    }

    /// The connection closed or failed: an open message is aborted.
    pub async fn handle_disconnect(&mut self) {
        self.channel.handle_disconnect();
        while self.dispatch().await.is_some() {}
    }

    /// The next deadline, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.channel.poll_timeout()
    }

    /// Reply bytes waiting to be written.
    pub fn output(&self) -> &[u8] {
        self.channel.output()
    }

    /// Drops the first `n` octets of output, once written.
    pub fn consume_output(&mut self, n: usize) {
        self.channel.consume_output(n)
    }

    /// The session is over: write the remaining output, then close.
    pub fn is_closed(&self) -> bool {
        self.channel.is_closed()
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.channel.close_reason()
    }

    /// No transaction is in progress (see [`Channel::is_idle`]).
    pub fn is_idle(&self) -> bool {
        self.channel.is_idle()
    }

    pub fn context(&self) -> Context<'_> {
        self.channel.context()
    }

    pub fn handler(&self) -> &H {
        &self.handler
    }

    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    pub fn into_handler(self) -> H {
        self.handler
    }

    /// Awaits the hook for the pending event, if any, and resolves it; returns whether the
    /// event ended a message (`None`: there was none).
    async fn dispatch(&mut self) -> Option<bool> {
        let event = self.channel.event()?;
        let ends_message = matches!(event, Event::DataEnd | Event::DataAbort(_));
        let cx = self.channel.context();
        let handler = &mut self.handler;
        let verdict = match event {
            Event::Connect => handler.connect(&cx).await,
            Event::Hello { domain, extended } => handler.hello(&cx, domain, extended).await,
            Event::Mail { from, params } => handler.mail(&cx, from, &params).await,
            Event::Rcpt { to } => handler.rcpt(&cx, to).await,
            Event::DataStart => handler.data_start(&cx).await,
            Event::DataEnd => handler.data_end(&cx).await,
            Event::DataAbort(reason) => {
                handler.data_abort(&cx, reason).await;
                Verdict::Accept
            }
            Event::Rset => {
                handler.rset(&cx).await;
                Verdict::Accept
            }
            Event::Quit => {
                handler.quit(&cx).await;
                Verdict::Accept
            }
            Event::Closed(reason) => {
                handler.closed(&cx, reason).await;
                Verdict::Accept
            }
            Event::Unknown { verb, arg } => match handler.unknown(&cx, verb, arg).await {
                Some(reply) => Verdict::Reply(reply),
                None => Verdict::Accept,
            },
        };
        self.channel.resolve(verdict);
        Some(ends_message)
    }
}
