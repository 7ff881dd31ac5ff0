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
//! Unlike Python's, it is no open relay: only clients in its [`RelayAccess`] networks
//! (loopback by default) may send to any domain, others only to its domains; other
//! recipients get `550 5.7.1` and never reach the upstream.
//!
//! Replies pass unchanged but for `421` (see [`Relay`]). A message whose relay is dropped
//! (the client vanished, RSET...) ends the upstream session without the final dot, so the
//! upstream discards it. Content goes out with CRLF line ends and dot-stuffing by the core's
//! [`DotStuffer`](smtpd_core::client::DotStuffer), so no upstream can be made to see a
//! second message.

use std::net::IpAddr;
use std::sync::Arc;

use smtpd_core::client::{write_mail, write_rcpt, ServerExtensions};
use smtpd_core::handler::{AbortReason, Body, CloseReason, Context, Handler, MailParams, Verdict};
use smtpd_core::network::{Network, LOOPBACK};
use smtpd_core::relay_policy::{RelayPolicy, RELAY_DENIED};
use smtpd_core::Reply;

use super::next_hop::{patience, Protocol, Upstream};
use super::relay::Relay;

const UNAVAILABLE: Reply<'static> = Reply::new(451, (4, 4, 1), "Error: next hop unavailable");
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

/// The refusal of a MAIL with `params` by a next hop that does not offer what they need.
pub(super) fn unsupported(
    params: &MailParams,
    offered: &ServerExtensions,
) -> Option<Reply<'static>> {
    if params.smtputf8 && !offered.smtputf8 {
        return Some(NO_SMTPUTF8);
    }
    if params.body != Body::SevenBit && !offered.eight_bit_mime {
        return Some(NO_8BITMIME);
    }
    None
}

/// Who may relay through a proxy, shared by all connections: the owned form of the core's
/// [`RelayPolicy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayAccess {
    /// Clients that may send to any domain.
    pub networks: Vec<Network>,
    /// Domains anyone may send to (`example.com`, or `.example.com` for those below it).
    pub domains: Vec<String>,
}

/// Loopback clients only, to no domain else: no open relay by default (the `smtpd` binary's
/// `--relay-networks` default too).
impl Default for RelayAccess {
    fn default() -> Self {
        RelayAccess {
            networks: LOOPBACK.to_vec(),
            domains: Vec::new(),
        }
    }
}

impl RelayAccess {
    fn policy(&self) -> RelayPolicy<'_, String> {
        RelayPolicy {
            networks: &self.networks,
            domains: &self.domains,
        }
    }

    /// `Err` with `550 5.7.1` unless the client of `cx` may send to `to`.
    pub(super) fn check(&self, cx: &Context<'_>, to: &str) -> Result<(), Reply<'static>> {
        match self.policy().permits(cx.peer.map(|peer| peer.ip()), to) {
            true => Ok(()),
            false => Err(RELAY_DENIED),
        }
    }
}

/// One client connection's relay.
#[derive(Debug)]
pub struct PureProxy {
    relay: Relay,
    pub(super) access: Arc<RelayAccess>,
}

impl PureProxy {
    /// Relays to `upstream` the recipients `access` permits; `peer` is the client's address
    /// for the `X-Peer` line.
    pub fn new(upstream: Arc<Upstream>, access: Arc<RelayAccess>, peer: IpAddr) -> Self {
        PureProxy {
            relay: Relay::new(upstream, Protocol::Smtp, format!("X-Peer: {peer}\r\n")),
            access,
        }
    }

    /// An upstream session ready for MAIL: the open one (after RSET if a transaction was
    /// left open there), or a new one. Returns whether it is new.
    async fn ready_hop(&mut self) -> Result<bool, Reply<'static>> {
        if let Some(hop) = self.relay.hop.as_mut() {
            if hop.ready_for_mail().await.is_ok() {
                return Ok(false);
            }
        }
        self.relay.open(UNAVAILABLE).await.map(|()| true)
    }

    /// MAIL on a ready session, the upstream's answer kept; `Err` (a local reply) when there
    /// is no session or the message cannot go there.
    pub(super) async fn try_mail(
        &mut self,
        from: &str,
        params: &MailParams,
    ) -> Result<(), Reply<'static>> {
        let fresh = self.ready_hop().await?;
        let offered = self
            .relay
            .hop
            .as_ref()
            .map(|hop| hop.offered)
            .unwrap_or_default();
        if let Some(refusal) = unsupported(params, &offered) {
            return Err(refusal);
        }
        let mut line = String::new();
        let _ = write_mail(&mut line, from, params, &offered);
        let exchanged = self.relay.exchange(&line, patience::COMMAND).await;
        // A kept session may have been closed by the upstream meanwhile (an idle timeout's
        // 421, or just gone): then once more on a new one.
        if !fresh && (exchanged.is_err() || self.relay.hop.is_none()) {
            self.relay.hop = None;
            return Box::pin(self.try_mail(from, params)).await;
        }
        if let (Ok(()), Some(hop)) = (&exchanged, self.relay.hop.as_mut()) {
            hop.in_transaction = matches!(self.relay.reply.code, 200..=299);
        }
        exchanged
    }

    /// The verdict after [`try_mail`](Self::try_mail).
    pub(super) fn verdict(&self, exchanged: Result<(), Reply<'static>>) -> Verdict<'_> {
        self.relay.verdict(exchanged)
    }
}

impl Handler for PureProxy {
    async fn mail(&mut self, _: &Context<'_>, from: &str, params: &MailParams) -> Verdict<'_> {
        let mailed = self.try_mail(from, params).await;
        self.verdict(mailed)
    }

    async fn rcpt(&mut self, cx: &Context<'_>, to: &str) -> Verdict<'_> {
        if let Err(denied) = self.access.check(cx, to) {
            return Verdict::Reply(denied);
        }
        let mut line = String::new();
        let _ = write_rcpt(&mut line, to);
        let exchanged = self.relay.exchange(&line, patience::COMMAND).await;
        self.relay.verdict(exchanged)
    }

    async fn data_start(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        self.relay.data_start(cx).await
    }

    async fn data_chunk(&mut self, _: &Context<'_>, chunk: &[u8]) -> Result<(), Reply<'static>> {
        self.relay.data_chunk(chunk).await
    }

    async fn data_pause(&mut self, _: &Context<'_>) -> Result<(), Reply<'static>> {
        self.relay.data_pause().await
    }

    async fn data_end(&mut self, _: &Context<'_>) -> Verdict<'_> {
        self.relay.data_end().await
    }

    async fn data_abort(&mut self, _: &Context<'_>, reason: AbortReason) {
        self.relay.data_abort(reason);
    }

    /// However the session ended, the upstream's ends with QUIT.
    async fn closed(&mut self, _: &Context<'_>, _: CloseReason) {
        self.relay.quit();
    }
}
