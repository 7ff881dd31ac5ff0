//! The application boundary: an async trait with one hook per protocol step.
//!
//! Every hook has a default that accepts, so `impl Handler for Sink {}` is a working server
//! that discards mail. Hooks are `async fn`s without `Send` bounds and without allocation, so
//! the same handler type serves a thread-per-core io_uring runtime and an embassy executor.
//!
//! Who awaits the hooks: [`Session`](crate::session::Session), in this crate. It feeds bytes
//! to the sans-io [`Channel`](crate::channel::Channel), awaits the hook for each event the
//! channel raises, and hands the verdict back. Frontends only move bytes and keep a timer; no
//! SMTP rule lives outside the core.
//!
//! Ordering guarantees, for each transaction:
//! `mail` → `rcpt`* → `data_start` → `data_chunk`* → exactly one of `data_end` / `data_abort`.
//! `data_abort` is called for every message whose `data_start` was accepted and that will not
//! reach `data_end` (too big, bare newline, handler refusal, RSET, timeout, disconnect...):
//! whatever the handler buffered for it must be discarded. Only the reply to `data_end`
//! acknowledges a message, so a handler that answers 250 there must have handed it on.
//! For the session: `connect` first, `closed` last (once, after any `data_abort`).
#![allow(async_fn_in_trait)]

use core::net::SocketAddr;

use crate::envelope::Rcpttos;
use crate::reply::Reply;

/// A hook's decision.
///
/// It borrows from the handler (`Verdict<'_>` of `&mut self`), so a reply text made at run
/// time lives in a field of the handler until the next hook (e.g. a queue id written into a
/// `String` field, then `Reply::new(250, (2, 0, 0), &self.queue_id)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verdict<'a> {
    /// Proceed with the core's default reply.
    Accept,
    /// Send this reply: a 2xx/3xx accepts with a custom text, a 4xx/5xx refuses, and `421`
    /// also closes the session. An accepting reply is sent with the code the step allows
    /// (RFC 5321 4.3.2): `220` greeting, `250` HELO/EHLO, MAIL and end of data, `250`/`251`
    /// RCPT (so a `200` to RCPT goes out as `250`); DATA's `354` keeps only a `354`'s text.
    /// At the end of data only a 2xx accepts (a message is acknowledged by nothing less): a
    /// 3xx there goes out as `451 4.3.0`. An enhanced code takes the reply's class.
    Reply(Reply<'a>),
}

impl Verdict<'_> {
    pub fn is_accept(&self) -> bool {
        match self {
            Verdict::Accept => true,
            Verdict::Reply(reply) => reply.is_positive(),
        }
    }

    /// As the verdict at the end of data: whether it acknowledges the message (only a 2xx
    /// does; a 3xx goes out as `451`).
    pub fn acknowledges_message(&self) -> bool {
        match self {
            Verdict::Accept => true,
            Verdict::Reply(reply) => reply.code / 100 == 2,
        }
    }
}

/// Whether the channel is reading commands or message content (Python's `smtp_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SmtpState {
    Command,
    Data,
}

/// The `BODY=` MAIL parameter (RFC 6152, RFC 3030).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Body {
    #[default]
    SevenBit,
    EightBitMime,
    BinaryMime,
}

/// The MAIL parameters the core understands, validated (any other parameter is refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MailParams {
    /// `SIZE=` (RFC 1870), already checked against the limit.
    pub size: Option<u64>,
    pub body: Body,
    /// `SMTPUTF8` (RFC 6531): UTF-8 addresses are allowed in this transaction.
    pub smtputf8: bool,
}

/// Why a started message will not reach `data_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AbortReason {
    /// Over the message size limit.
    TooBig,
    /// A bare CR or LF under the reject policy.
    BareNewline,
    /// A text line over the limit.
    LineTooLong,
    /// `data_chunk` returned an error.
    Refused,
    /// RSET, HELO, EHLO or QUIT ended the transaction.
    Reset,
    /// The client went silent past the timeout.
    Timeout,
    /// The connection ended (or was ended) mid-message.
    Disconnected,
    /// The server is shutting down.
    Shutdown,
}

/// Why a session ended ([`Handler::closed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CloseReason {
    /// The client sent QUIT and got `221`.
    Quit,
    /// The connection ended without QUIT: the peer closed or reset it, or the frontend
    /// stopped waiting for it (a write failed, or replies were left unread too long).
    Disconnected,
    /// The client was silent past a timeout: `421 4.4.2` (RFC 5321 4.5.3.2).
    Timeout,
    /// The server is shutting down: `421 4.3.2`.
    Shutdown,
    /// Too many bad commands: `421 4.7.0`.
    TooManyErrors,
    /// A handler's `421` (the service is not available, RFC 5321 3.8).
    Unavailable,
}

/// What a hook can see of the session: Python's `SMTPChannel` attributes.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    /// The server's host name (Python's `fqdn`).
    pub fqdn: &'a str,
    /// The client address given by the frontend (Python's `peer`).
    pub peer: Option<SocketAddr>,
    pub smtp_state: SmtpState,
    /// The HELO/EHLO argument, once greeted.
    pub seen_greeting: Option<&'a str>,
    /// The greeting was EHLO.
    pub extended_smtp: bool,
    /// The reverse-path, once MAIL was accepted; empty for `<>`.
    pub mailfrom: Option<&'a str>,
    /// The accepted MAIL's parameters as the client wrote them (`size=10 BODY=8BITMIME`);
    /// Python's `mail_options` are these, upper-cased and split.
    pub mail_parameters: &'a str,
    /// The accepted forward-paths.
    pub rcpttos: Rcpttos<'a>,
    /// The accepted MAIL's parameters.
    pub mail_params: MailParams,
}

/// The per-connection application logic. Every hook has an accepting default.
pub trait Handler {
    /// A client connected. An accepting reply replaces the `220` greeting. A 5xx refusal is
    /// sent as `554` (RFC 5321 3.1), after which every command but QUIT gets `503` (and
    /// counts as a bad command); any other refusal is sent as `421` and closes at once.
    async fn connect(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        let _ = cx;
        Verdict::Accept
    }

    /// HELO (`extended == false`) or EHLO. Accepting starts a new session state.
    async fn hello(&mut self, cx: &Context<'_>, domain: &str, extended: bool) -> Verdict<'_> {
        let _ = (cx, domain, extended);
        Verdict::Accept
    }

    /// MAIL, with a syntactically valid reverse-path (empty for `<>`) and checked parameters.
    async fn mail(&mut self, cx: &Context<'_>, from: &str, params: &MailParams) -> Verdict<'_> {
        let _ = (cx, from, params);
        Verdict::Accept
    }

    /// RCPT: accept or refuse one recipient.
    async fn rcpt(&mut self, cx: &Context<'_>, to: &str) -> Verdict<'_> {
        let _ = (cx, to);
        Verdict::Accept
    }

    /// DATA, or the first BDAT of a transaction, before any content.
    async fn data_start(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        let _ = cx;
        Verdict::Accept
    }

    /// A piece of message content, dot-unstuffed, in order. An error refuses the message:
    /// the rest is discarded and the reply is sent once the client finished sending it.
    async fn data_chunk(&mut self, cx: &Context<'_>, chunk: &[u8]) -> Result<(), Reply<'static>> {
        let _ = (cx, chunk);
        Ok(())
    }

    /// The client's input ran dry in the middle of a message: all content received so far
    /// was given to `data_chunk`, and the session waits for more. A handler that buffers
    /// content for a next hop should pass it on now, since the next hop's data-block timer
    /// runs (RFC 5321 4.5.3.2.5). An error refuses the message, as from `data_chunk`.
    async fn data_pause(&mut self, cx: &Context<'_>) -> Result<(), Reply<'static>> {
        let _ = cx;
        Ok(())
    }

    /// The whole message was received: the final verdict. Answer 250 only once the message
    /// has been handed on.
    ///
    /// Like every hook, this may be cancelled by the frontend (dropped while it waits, as
    /// the Linux server does when a shutdown's grace period ends); the client then gets no
    /// `250`, so the message is not acknowledged.
    async fn data_end(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        let _ = cx;
        Verdict::Accept
    }

    /// The started message is dropped; discard what was buffered for it.
    async fn data_abort(&mut self, cx: &Context<'_>, reason: AbortReason) {
        let _ = (cx, reason);
    }

    /// RSET (the transaction is dropped).
    async fn rset(&mut self, cx: &Context<'_>) {
        let _ = cx;
    }

    /// QUIT (the session ends after `221`).
    async fn quit(&mut self, cx: &Context<'_>) {
        let _ = cx;
    }

    /// The session is over, for `reason`; its last reply, if any, is already in the output.
    /// Called once, after any `data_abort`: the place for per-session accounting. (A
    /// frontend that drops a session without ending it, for instance when a handler
    /// panicked, skips it.)
    async fn closed(&mut self, cx: &Context<'_>, reason: CloseReason) {
        let _ = (cx, reason);
    }

    /// A verb the core does not implement (Python's `smtp_FOO` methods). `None` answers
    /// `500 Error: command "FOO" not recognized`.
    async fn unknown(
        &mut self,
        cx: &Context<'_>,
        verb: &str,
        arg: Option<&str>,
    ) -> Option<Reply<'_>> {
        let _ = (cx, verb, arg);
        None
    }
}
