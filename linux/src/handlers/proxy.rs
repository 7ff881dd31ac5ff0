//! `PureProxy`: relays every message to one upstream server (Python's `PureProxy`,
//! `smtpd -c PureProxy localhost:port remotehost:port`).
//!
//! Unlike Python's, which accepts first and relays later (refusals only logged), the relay
//! is transparent: each connection opens its own upstream session at its first MAIL, passes
//! MAIL, every RCPT and DATA on as they come and answers with the upstream's reply, and
//! streams the content. So a refused recipient is refused to the client, and `250` after the
//! content is the upstream's `250`: the message was handed on. As in Python, an
//! `X-Peer: <client ip>` line is added at the end of the headers.
//!
//! Replies pass unchanged, except that an upstream `421` (it is closing) reaches the client
//! as `451`, since only this server may end the client's session. A message whose relay is
//! dropped (the client vanished, RSET...) ends the upstream session without the final dot,
//! so the upstream discards it. Content goes out with CRLF line ends and dot-stuffing by the
//! core's [`DotStuffer`](smtpd_core::client::DotStuffer), so no upstream can be made to see a second message.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use smtpd_core::client::{write_mail, write_rcpt};
use smtpd_core::handler::{AbortReason, Body, Context, Handler, MailParams, Verdict};
use smtpd_core::Reply;

use super::next_hop::{for_client, patience, NextHop, Outgoing, Protocol, Upstream};
use crate::message::OwnedReply;

const UNAVAILABLE: Reply<'static> = Reply::new(451, (4, 4, 1), "Error: next hop unavailable");
pub(super) const LOST: Reply<'static> =
    Reply::new(451, (4, 4, 2), "Error: connection to the next hop lost");
const NO_SMTPUTF8: Reply<'static> = Reply::new(
    550,
    (5, 6, 7),
    "Error: the next hop does not support SMTPUTF8",
);
const NO_8BITMIME: Reply<'static> = Reply::new(
    550,
    (5, 6, 3),
    "Error: the next hop does not accept 8-bit content",
);

/// One client connection's relay.
#[derive(Debug)]
pub struct PureProxy {
    upstream: Arc<Upstream>,
    hop: Option<NextHop>,
    /// The upstream's last reply, lent to the core.
    reply: OwnedReply,
    message: Outgoing,
}

impl PureProxy {
    pub fn new(upstream: Arc<Upstream>, peer: IpAddr) -> Self {
        PureProxy {
            upstream,
            hop: None,
            reply: OwnedReply::new(250, (2, 0, 0), ""),
            message: Outgoing::adding(format!("X-Peer: {peer}\r\n")),
        }
    }

    /// Sends `line` and keeps the upstream's answer in `self.reply` (`421` as `451`,
    /// dropping the upstream); or the local error reply when the upstream failed.
    async fn exchange(&mut self, line: &str, patience: Duration) -> Result<(), Reply<'static>> {
        let hop = self.hop.as_mut().ok_or(LOST)?;
        match hop.command(line.as_bytes(), patience).await {
            Ok(reply) => {
                self.keep(reply);
                Ok(())
            }
            Err(error) => Err(self.lost(&error)),
        }
    }

    fn keep(&mut self, mut reply: OwnedReply) {
        if for_client(&mut reply) {
            tracing::warn!(upstream = %self.upstream.address, reply = %reply.text, "upstream closing");
            self.hop = None;
        }
        self.reply = reply;
    }

    /// The verdict after [`exchange`](Self::exchange).
    pub(super) fn verdict(&self, exchanged: Result<(), Reply<'static>>) -> Verdict<'_> {
        Verdict::Reply(match exchanged {
            Ok(()) => self.reply.as_reply(),
            Err(local) => local,
        })
    }

    fn lost(&mut self, error: &io::Error) -> Reply<'static> {
        tracing::warn!(upstream = %self.upstream.address, %error, "upstream lost");
        self.hop = None;
        LOST
    }

    /// An upstream session ready for MAIL: the open one (after RSET if a transaction was
    /// left open there), or a new one. Returns whether it is new.
    async fn ready_hop(&mut self) -> Result<bool, Reply<'static>> {
        if let Some(hop) = self.hop.as_mut() {
            if !hop.in_transaction {
                return Ok(false);
            }
            match hop.command(b"RSET\r\n", patience::COURTESY).await {
                Ok(reply) if reply.code == 250 => {
                    hop.in_transaction = false;
                    return Ok(false);
                }
                _ => self.hop = None,
            }
        }
        match NextHop::open(&self.upstream, Protocol::Smtp).await {
            Ok(hop) => {
                self.hop = Some(hop);
                Ok(true)
            }
            Err(error) => {
                tracing::warn!(upstream = %self.upstream.address, %error, "upstream unavailable");
                Err(UNAVAILABLE)
            }
        }
    }

    /// MAIL on a ready session; `Err` (a local reply) when there is none.
    pub(super) async fn try_mail(
        &mut self,
        from: &str,
        params: &MailParams,
    ) -> Result<(), Reply<'static>> {
        let fresh = self.ready_hop().await?;
        let offered = self.hop.as_ref().map(|hop| hop.offered).unwrap_or_default();
        if params.smtputf8 && !offered.smtputf8 {
            return Err(NO_SMTPUTF8);
        }
        if params.body != Body::SevenBit && !offered.eight_bit_mime {
            return Err(NO_8BITMIME);
        }
        let mut line = String::new();
        let _ = write_mail(&mut line, from, params, &offered);
        let exchanged = self.exchange(&line, patience::COMMAND).await;
        // A kept session may have been closed by the upstream meanwhile (an idle timeout's
        // 421, or just gone): then once more on a new one.
        if !fresh && (exchanged.is_err() || self.hop.is_none()) {
            self.hop = None;
            return Box::pin(self.try_mail(from, params)).await;
        }
        if let (Ok(()), Some(hop)) = (&exchanged, self.hop.as_mut()) {
            hop.in_transaction = self.reply.code == 250;
        }
        exchanged
    }

    /// Writes what is pending when `all`, or when a piece is full.
    async fn flush(&mut self, all: bool) -> io::Result<()> {
        let hop = self.hop.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        hop.flush(&mut self.message, all).await
    }
}

impl Handler for PureProxy {
    async fn mail(&mut self, _: &Context<'_>, from: &str, params: &MailParams) -> Verdict<'_> {
        let mailed = self.try_mail(from, params).await;
        self.verdict(mailed)
    }

    async fn rcpt(&mut self, _: &Context<'_>, to: &str) -> Verdict<'_> {
        let mut line = String::new();
        let _ = write_rcpt(&mut line, to);
        let exchanged = self.exchange(&line, patience::COMMAND).await;
        self.verdict(exchanged)
    }

    async fn data_start(&mut self, _: &Context<'_>) -> Verdict<'_> {
        let Some(hop) = self.hop.as_mut() else {
            return Verdict::Reply(LOST);
        };
        match hop.start_data(&mut self.message).await {
            // The core's own 354 (or, for BDAT, its 250s): the client's dialogue is its own.
            Ok(None) => Verdict::Accept,
            Ok(Some(refusal)) => {
                self.keep(refusal);
                Verdict::Reply(self.reply.as_reply())
            }
            Err(error) => Verdict::Reply(self.lost(&error)),
        }
    }

    async fn data_chunk(&mut self, _: &Context<'_>, chunk: &[u8]) -> Result<(), Reply<'static>> {
        self.message.encode(chunk);
        self.flush(false).await.map_err(|error| self.lost(&error))
    }

    async fn data_end(&mut self, _: &Context<'_>) -> Verdict<'_> {
        let Some(hop) = self.hop.as_mut() else {
            return Verdict::Reply(LOST);
        };
        match hop.end_data(&mut self.message).await {
            Ok(reply) => {
                self.keep(reply);
                Verdict::Reply(self.reply.as_reply())
            }
            Err(error) => Verdict::Reply(self.lost(&error)),
        }
    }

    async fn data_abort(&mut self, _: &Context<'_>, reason: AbortReason) {
        // The upstream is reading content: only closing the connection makes it drop it.
        if self.hop.take().is_some() {
            tracing::info!(upstream = %self.upstream.address, ?reason, "relay dropped");
        }
        self.message.pending.clear();
    }

    async fn quit(&mut self, _: &Context<'_>) {
        if let Some(mut hop) = self.hop.take() {
            let _ = hop.command(b"QUIT\r\n", patience::COURTESY).await;
        }
    }
}
