//! One connection's relay to one next hop, shared by [`PureProxy`](super::PureProxy) and
//! [`MailmanProxy`](super::MailmanProxy): the session (opened when needed), the next hop's
//! last reply (lent to the core as a verdict), and the content on its way.
//!
//! Replies pass unchanged, except that a `421` (the next hop is closing) reaches the client as
//! `451`, since only this server may end its client's session. A message whose relay is
//! dropped ends the session without the final dot, so the next hop discards it.

use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use smtpd_core::handler::{AbortReason, Context, Verdict};
use smtpd_core::Reply;

use super::next_hop::{completion, patience, NextHop, Outgoing, Protocol, Upstream};
use crate::date::rfc5322;
use crate::message::OwnedReply;

/// The session with the next hop was lost (or there is none mid-transaction).
pub(super) const LOST: Reply<'static> =
    Reply::new(451, (4, 4, 2), "Error: connection to the next hop lost");

/// More `Received:` fields than this make a message a mail loop's (RFC 5321 6.3: "at least
/// 100").
const MAX_HOPS: usize = 100;

const TOO_MANY_HOPS: Reply<'static> =
    Reply::new(554, (5, 4, 6), "Error: too many hops, a mail loop?");

#[derive(Debug)]
pub(super) struct Relay {
    pub(super) next: Arc<Upstream>,
    protocol: Protocol,
    pub(super) hop: Option<NextHop>,
    /// The next hop's last reply, lent to the core.
    pub(super) reply: OwnedReply,
    message: Outgoing,
}

impl Relay {
    /// A relay to `next` whose content gets `added` (a header line, or nothing).
    pub(super) fn new(next: Arc<Upstream>, protocol: Protocol, added: String) -> Self {
        Relay {
            next,
            protocol,
            hop: None,
            reply: OwnedReply::new(250, (2, 0, 0), ""),
            message: Outgoing::adding(added),
        }
    }

    /// Opens a new session, replacing the old; `Err(unavailable)` if there is none to be had.
    pub(super) async fn open(&mut self, unavailable: Reply<'static>) -> Result<(), Reply<'static>> {
        self.hop = None;
        match NextHop::open(&self.next, self.protocol).await {
            Ok(hop) => {
                self.hop = Some(hop);
                Ok(())
            }
            Err(error) => {
                tracing::warn!(next_hop = %self.next.address, %error, "next hop unavailable");
                Err(unavailable)
            }
        }
    }

    /// Sends `line` (MAIL or RCPT) and keeps the answer in `self.reply`; or the local error
    /// reply when the next hop failed or answered out of step.
    pub(super) async fn exchange(
        &mut self,
        line: &str,
        patience: Duration,
    ) -> Result<(), Reply<'static>> {
        let hop = self.hop.as_mut().ok_or(LOST)?;
        let step = line.split(' ').next().unwrap_or_default();
        let answered = hop.command(line.as_bytes(), patience).await;
        match answered.and_then(|reply| completion(reply, step)) {
            Ok(reply) => {
                self.keep(reply);
                Ok(())
            }
            Err(error) => Err(self.lost(&error)),
        }
    }

    /// Keeps the next hop's `reply` for the client. A `421` (the next hop is closing)
    /// becomes `451`, since only this server may end its client's session, and the session
    /// is dropped.
    pub(super) fn keep(&mut self, mut reply: OwnedReply) {
        if reply.code == 421 {
            tracing::warn!(next_hop = %self.next.address, reply = %reply.text, "next hop closing");
            self.hop = None;
            reply.code = 451;
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

    pub(super) fn lost(&mut self, error: &io::Error) -> Reply<'static> {
        tracing::warn!(next_hop = %self.next.address, %error, "next hop lost");
        self.hop = None;
        LOST
    }

    pub(super) async fn data_start(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        let Some(hop) = self.hop.as_mut() else {
            return Verdict::Reply(LOST);
        };
        self.message.start(&received(cx, SystemTime::now()));
        match hop.start_data().await {
            // The core's own 354 (or, for BDAT, its 250s): the client's dialogue is its own.
            Ok(None) => Verdict::Accept,
            Ok(Some(refusal)) => {
                self.keep(refusal);
                Verdict::Reply(self.reply.as_reply())
            }
            Err(error) => Verdict::Reply(self.lost(&error)),
        }
    }

    /// Passes `chunk` on; a message that has been through too many hops is refused (and then
    /// dropped, as every refused message is).
    pub(super) async fn data_chunk(&mut self, chunk: &[u8]) -> Result<(), Reply<'static>> {
        self.message.encode(chunk);
        if self.message.received > MAX_HOPS {
            return Err(TOO_MANY_HOPS);
        }
        self.flush(false).await
    }

    /// The client paused: what is pending goes out, so the next hop's data-block timer sees
    /// the content as it comes.
    pub(super) async fn data_pause(&mut self) -> Result<(), Reply<'static>> {
        self.flush(true).await
    }

    /// Writes the pending content when `all`, or when a piece is full.
    async fn flush(&mut self, all: bool) -> Result<(), Reply<'static>> {
        let Some(hop) = self.hop.as_mut() else {
            return Err(LOST);
        };
        hop.flush(&mut self.message, all)
            .await
            .map_err(|error| self.lost(&error))
    }

    pub(super) async fn data_end(&mut self) -> Verdict<'_> {
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

    pub(super) fn data_abort(&mut self, reason: AbortReason) {
        // The next hop is reading content: only closing the connection makes it drop it.
        if self.hop.take().is_some() {
            tracing::info!(next_hop = %self.next.address, ?reason, "relay dropped");
        }
        self.message.pending.clear();
    }

    /// Ends the session with QUIT. Its answer is awaited on the side, so the client's `221`
    /// does not wait for it.
    pub(super) fn quit(&mut self) {
        if let Some(mut hop) = self.hop.take() {
            compio::runtime::spawn(async move {
                let _ = hop.command(b"QUIT\r\n", patience::COURTESY).await;
            })
            .detach();
        }
    }
}

/// The trace line a relay puts first in the content (RFC 5321 4.4), e.g.
/// `Received: from client.example ([192.0.2.1]) by mx.example.org (smtpd-rs) with ESMTP;
/// Sun, 29 Nov 2026 05:30:00 +0000`. The protocol is `SMTP`, `ESMTP` or, with SMTPUTF8,
/// `UTF8SMTP` (RFC 6531 3.7.3).
fn received(cx: &Context<'_>, now: SystemTime) -> String {
    let mut line = String::from("Received: from ");
    // The client's own name for itself, in printable ASCII but for comment parentheses.
    let helo = cx.seen_greeting.unwrap_or("unknown");
    line.extend(helo.chars().map(|c| match c {
        '!'..='~' if c != '(' && c != ')' => c,
        _ => '?',
    }));
    match cx.peer.map(|peer| peer.ip().to_canonical()) {
        Some(IpAddr::V4(ip)) => {
            let _ = write!(line, " ([{ip}])");
        }
        Some(IpAddr::V6(ip)) => {
            let _ = write!(line, " ([IPv6:{ip}])");
        }
        None => {}
    }
    let protocol = match (cx.mail_params.smtputf8, cx.extended_smtp) {
        (true, _) => "UTF8SMTP",
        (false, true) => "ESMTP",
        (false, false) => "SMTP",
    };
    let _ = write!(
        line,
        "\r\n\tby {} (smtpd-rs) with {protocol}; {}\r\n",
        cx.fqdn,
        rfc5322(now)
    );
    line
}
