//! The simple handler API: Python's `process_message(peer, mailfrom, rcpttos, data)`.
//!
//! Implement [`ProcessMessage`] and wrap it in [`Buffered`] to get a core
//! [`Handler`]: the message is collected in memory (bounded by the configured message size
//! limit, which the core enforces while it streams; with no limit, by nothing) and handed
//! over whole once its end arrived. That is up to the limit per connection in a
//! transaction: 32 MiB by default, times `Options::max_connections` at worst, so lower
//! either for a server that must fit in less memory, or stream with [`Handler`]; optional
//! [`mail`](ProcessMessage::mail) and [`rcpt`](ProcessMessage::rcpt) decide on the sender
//! and on each recipient before any content is sent. For
//! streaming or the other protocol steps, implement [`Handler`] directly.
#![allow(async_fn_in_trait)]

use std::net::SocketAddr;

use smtpd_core::handler::{AbortReason, Context, Handler, MailParams, Verdict};
use smtpd_core::reply::EnhancedCode;
use smtpd_core::Reply;

/// A reply owned by the application (for texts built at run time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedReply {
    pub code: u16,
    pub enhanced: Option<EnhancedCode>,
    pub text: String,
}

impl OwnedReply {
    /// A reply with an enhanced status code `class.subject.detail`.
    pub fn new(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Self {
        OwnedReply {
            code,
            enhanced: Some(EnhancedCode(enhanced.0, enhanced.1, enhanced.2)),
            text: text.into(),
        }
    }

    /// A reply without an enhanced status code (the server adds `class.0.0` when it sends
    /// enhanced codes: `Extensions::enhanced_status_codes`, on by default).
    pub fn plain(code: u16, text: impl Into<String>) -> Self {
        OwnedReply {
            code,
            enhanced: None,
            text: text.into(),
        }
    }

    pub fn from_reply(reply: &Reply<'_>) -> Self {
        OwnedReply {
            code: reply.code,
            enhanced: reply.enhanced,
            text: reply.text.to_owned(),
        }
    }

    pub fn as_reply(&self) -> Reply<'_> {
        Reply {
            code: self.code,
            enhanced: self.enhanced,
            text: &self.text,
        }
    }
}

/// One received message, as Python's `process_message` got it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The client's address (Python's `peer`).
    pub peer: Option<SocketAddr>,
    /// The reverse-path; empty for `<>`.
    pub mailfrom: &'a str,
    /// The accepted forward-paths, in order.
    pub rcpttos: &'a [String],
    /// The message content exactly as received after dot-unstuffing (CRLF line ends).
    pub data: &'a [u8],
    /// The HELO/EHLO argument.
    pub helo: Option<&'a str>,
    pub params: MailParams,
    /// The MAIL parameters as the client wrote them; Python's `mail_options` are these,
    /// upper-cased and split at blanks.
    pub mail_parameters: &'a str,
}

/// Receives whole messages.
///
/// The methods are cancelled (dropped while they wait) only when a shutdown's grace period
/// ends; the client then gets `421`, no `250` for the message. A client that goes away
/// meanwhile is noticed once the method returns, so bound waits on other servers
/// (`compio::time::timeout`): a method that never returns holds its connection.
pub trait ProcessMessage {
    /// Decides on the sender (`MAIL FROM`, empty for `<>`), before any recipient or content:
    /// `Ok(())` accepts it, an error reply refuses the transaction (`550`, or `450` to ask
    /// for a retry). `params` are the MAIL parameters (SIZE, BODY, SMTPUTF8). The default
    /// accepts every sender.
    async fn mail(
        &mut self,
        cx: &Context<'_>,
        from: &str,
        params: &MailParams,
    ) -> Result<(), OwnedReply> {
        let _ = (cx, from, params);
        Ok(())
    }

    /// Decides on one recipient (`RCPT TO`), before any content: `Ok(())` accepts it, an
    /// error reply refuses it (`550` for no such user, `450` to ask for a retry). Only
    /// accepted recipients reach [`process_message`](Self::process_message). The default
    /// accepts every recipient.
    async fn rcpt(&mut self, cx: &Context<'_>, to: &str) -> Result<(), OwnedReply> {
        let _ = (cx, to);
        Ok(())
    }

    /// Handles one message. `Ok(())` answers `250 OK`; an error reply refuses it (or, if it is
    /// a 2xx, accepts it with that text). Return `Ok` only once the message is safely handed on.
    async fn process_message(&mut self, message: &Message<'_>) -> Result<(), OwnedReply>;
}

/// Adapts a [`ProcessMessage`] to the core's streaming [`Handler`].
#[derive(Debug, Default)]
pub struct Buffered<P> {
    inner: P,
    data: Vec<u8>,
    rcpttos: Vec<String>,
    reply: Option<OwnedReply>,
}

impl<P> Buffered<P> {
    pub fn new(inner: P) -> Self {
        Buffered {
            inner,
            data: Vec::new(),
            rcpttos: Vec::new(),
            reply: None,
        }
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }

    pub fn into_inner(self) -> P {
        self.inner
    }

    /// The verdict for a [`ProcessMessage`] method's result (its reply is kept for the wire).
    fn verdict(&mut self, result: Result<(), OwnedReply>) -> Verdict<'_> {
        self.reply = result.err();
        match &self.reply {
            Some(reply) => Verdict::Reply(reply.as_reply()),
            None => Verdict::Accept,
        }
    }
}

impl<P: ProcessMessage> Handler for Buffered<P> {
    async fn mail(&mut self, cx: &Context<'_>, from: &str, params: &MailParams) -> Verdict<'_> {
        let result = self.inner.mail(cx, from, params).await;
        self.verdict(result)
    }

    async fn rcpt(&mut self, cx: &Context<'_>, to: &str) -> Verdict<'_> {
        let result = self.inner.rcpt(cx, to).await;
        self.verdict(result)
    }

    async fn data_start(&mut self, _: &Context<'_>) -> Verdict<'_> {
        self.data.clear();
        Verdict::Accept
    }

    async fn data_chunk(&mut self, _: &Context<'_>, chunk: &[u8]) -> Result<(), Reply<'static>> {
        self.data.extend_from_slice(chunk);
        Ok(())
    }

    async fn data_end(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        self.rcpttos.clear();
        self.rcpttos.extend(cx.rcpttos.clone().map(str::to_owned));
        let message = Message {
            peer: cx.peer,
            mailfrom: cx.mailfrom.unwrap_or_default(),
            rcpttos: &self.rcpttos,
            data: &self.data,
            helo: cx.seen_greeting,
            params: cx.mail_params,
            mail_parameters: cx.mail_parameters,
        };
        let result = self.inner.process_message(&message).await;
        release(&mut self.data);
        self.verdict(result)
    }

    async fn data_abort(&mut self, _: &Context<'_>, _: AbortReason) {
        release(&mut self.data);
    }
}

/// Empties a message buffer, giving large allocations back (idle sessions stay small).
fn release(buffer: &mut Vec<u8>) {
    buffer.clear();
    if buffer.capacity() > 64 * 1024 {
        *buffer = Vec::new();
    }
}
