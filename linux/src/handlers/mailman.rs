//! `MailmanProxy`: mail for Mailman 3's lists goes to Mailman over LMTP (RFC 2033), the rest
//! is relayed as by [`PureProxy`] (Python's `MailmanProxy`, which handed list mail to
//! Mailman 2 in-process and was removed with it).
//!
//! Which recipients are lists is Mailman's to say: each RCPT is first asked of its LMTP
//! runner, which accepts its lists' addresses (with their `-request`, `-owner`, `-join`...
//! sub-addresses) and refuses any other with `550`; those are relayed. A message goes to one
//! place, one list or the relay: a recipient for another place gets `452 4.5.3`, which
//! clients send again in a transaction of its own (RFC 5321 3.3). So the reply after the
//! content is the one place's: `250` means Mailman (or the upstream) has the message.
//! MAIL is answered here and passed on with the first recipient, to Mailman or the relay,
//! whose refusal then answers that RCPT. Without Mailman, recipients get `451 4.4.1`
//! (whether they are lists cannot be known).

use std::net::IpAddr;
use std::sync::Arc;

use smtpd_core::client::{write_mail, write_rcpt};
use smtpd_core::handler::{AbortReason, Context, Handler, MailParams, Verdict};
use smtpd_core::Reply;

use super::next_hop::{for_client, patience, NextHop, Outgoing, Protocol, Upstream};
use super::proxy::{PureProxy, LOST};
use crate::message::OwnedReply;

const LISTS_UNAVAILABLE: Reply<'static> = Reply::new(
    451,
    (4, 4, 1),
    "Error: the mailing list server is unavailable",
);
const ONE_PLACE: Reply<'static> = Reply::new(
    452,
    (4, 5, 3),
    "Error: a mailing list takes a message of its own; send to this recipient separately",
);

/// Where the current transaction's recipients go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    List,
    Relay,
}

/// One client connection's list delivery and relay.
#[derive(Debug)]
pub struct MailmanProxy {
    relay: PureProxy,
    lists: Arc<Upstream>,
    /// The LMTP session with Mailman.
    hop: Option<NextHop>,
    /// This transaction's MAIL, passed on when its first recipient shows where it goes.
    sender: Option<(String, MailParams)>,
    route: Option<Route>,
    /// Mailman has this transaction's MAIL (true: it refused it, so nothing is a list).
    lists_mailed: Option<bool>,
    /// The relay has this transaction's MAIL.
    relay_mailed: bool,
    /// Mailman's last reply, lent to the core.
    reply: OwnedReply,
    message: Outgoing,
}

impl MailmanProxy {
    /// Relays to `upstream`, list mail to Mailman's LMTP runner at `lists`.
    pub fn new(upstream: Arc<Upstream>, lists: Arc<Upstream>, peer: IpAddr) -> Self {
        MailmanProxy {
            relay: PureProxy::new(upstream, peer),
            lists,
            hop: None,
            sender: None,
            route: None,
            lists_mailed: None,
            relay_mailed: false,
            reply: OwnedReply::new(250, (2, 0, 0), ""),
            message: Outgoing::default(),
        }
    }

    /// Asks Mailman whether `to` is one of its lists (Mailman's reply, if it matters, is
    /// kept in `self.reply`); `Err` with the reply for the client when Mailman cannot say.
    async fn ask_lists(&mut self, to: &str) -> Result<Listed, Reply<'static>> {
        if self.hop.is_none() {
            match NextHop::open(&self.lists, Protocol::Lmtp).await {
                Ok(hop) => self.hop = Some(hop),
                Err(error) => {
                    tracing::warn!(lmtp = %self.lists.address, %error, "Mailman unavailable");
                    return Err(LISTS_UNAVAILABLE);
                }
            }
        }
        let (Some(hop), mailed, Some((from, params))) =
            (self.hop.as_mut(), &mut self.lists_mailed, &self.sender)
        else {
            return Err(LISTS_UNAVAILABLE);
        };
        let asked = async {
            if mailed.is_none() {
                if hop.in_transaction {
                    hop.command(b"RSET\r\n", patience::COURTESY).await?;
                    hop.in_transaction = false;
                }
                let mut line = String::new();
                let _ = write_mail(&mut line, from, params, &hop.offered);
                let reply = hop.command(line.as_bytes(), patience::COMMAND).await?;
                hop.in_transaction = reply.code == 250;
                *mailed = Some(!hop.in_transaction);
            }
            if *mailed == Some(true) {
                return Ok(None);
            }
            let mut line = String::new();
            let _ = write_rcpt(&mut line, to);
            hop.command(line.as_bytes(), patience::COMMAND)
                .await
                .map(Some)
        }
        .await;
        let reply = match asked {
            // Mailman refused this transaction's MAIL: none of its recipients is a list.
            Ok(None) => return Ok(Listed::No),
            Ok(Some(reply)) => reply,
            Err(error) => {
                tracing::warn!(lmtp = %self.lists.address, %error, "Mailman lost");
                self.hop = None;
                return Err(LISTS_UNAVAILABLE);
            }
        };
        let listed = match reply.code {
            250 => Listed::Yes,
            550 => Listed::No,
            _ => Listed::Other,
        };
        self.keep(reply);
        Ok(listed)
    }

    /// Relays `to`, passing the relay this transaction's MAIL first.
    async fn relay_rcpt(&mut self, cx: &Context<'_>, to: &str) -> Verdict<'_> {
        if !self.relay_mailed {
            let Some((from, params)) = self.sender.as_ref() else {
                return Verdict::Reply(LOST);
            };
            let mailed = self.relay.try_mail(from, params).await;
            if mailed.is_err() || !self.relay.verdict(mailed).is_accept() {
                return self.relay.verdict(mailed);
            }
            self.relay_mailed = true;
        }
        let verdict = self.relay.rcpt(cx, to).await;
        if verdict.is_accept() {
            self.route = Some(Route::Relay);
        }
        verdict
    }

    /// Writes what is pending for the list when `all`, or when a piece is full.
    async fn flush(&mut self, all: bool) -> std::io::Result<()> {
        let hop = self.hop.as_mut().ok_or(std::io::ErrorKind::NotConnected)?;
        hop.flush(&mut self.message, all).await
    }

    /// Keeps Mailman's `reply` for the client (a closing `421` as `451`, dropping the session).
    fn keep(&mut self, mut reply: OwnedReply) {
        if for_client(&mut reply) {
            self.hop = None;
        }
        self.reply = reply;
    }

    fn lost(&mut self, error: &std::io::Error) -> Reply<'static> {
        tracing::warn!(lmtp = %self.lists.address, %error, "Mailman lost");
        self.hop = None;
        LOST
    }
}

/// Whether Mailman took a recipient as one of its lists.
enum Listed {
    Yes,
    No,
    /// Mailman's reply is neither: it goes to the client as it is.
    Other,
}

impl Handler for MailmanProxy {
    async fn mail(&mut self, _: &Context<'_>, from: &str, params: &MailParams) -> Verdict<'_> {
        self.sender = Some((from.to_owned(), *params));
        self.route = None;
        self.lists_mailed = None;
        self.relay_mailed = false;
        Verdict::Accept
    }

    async fn rcpt(&mut self, cx: &Context<'_>, to: &str) -> Verdict<'_> {
        if self.route == Some(Route::List) {
            return Verdict::Reply(ONE_PLACE);
        }
        match self.ask_lists(to).await {
            Err(reply) => Verdict::Reply(reply),
            Ok(Listed::Yes) if self.route == Some(Route::Relay) => Verdict::Reply(ONE_PLACE),
            Ok(Listed::Yes) => {
                self.route = Some(Route::List);
                Verdict::Reply(self.reply.as_reply())
            }
            Ok(Listed::No) => self.relay_rcpt(cx, to).await,
            Ok(Listed::Other) => Verdict::Reply(self.reply.as_reply()),
        }
    }

    async fn data_start(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        if self.route != Some(Route::List) {
            return self.relay.data_start(cx).await;
        }
        let Some(hop) = self.hop.as_mut() else {
            return Verdict::Reply(LOST);
        };
        match hop.start_data(&mut self.message).await {
            Ok(None) => Verdict::Accept,
            Ok(Some(refusal)) => {
                self.keep(refusal);
                Verdict::Reply(self.reply.as_reply())
            }
            Err(error) => Verdict::Reply(self.lost(&error)),
        }
    }

    async fn data_chunk(&mut self, cx: &Context<'_>, chunk: &[u8]) -> Result<(), Reply<'static>> {
        if self.route != Some(Route::List) {
            return self.relay.data_chunk(cx, chunk).await;
        }
        self.message.encode(chunk);
        self.flush(false).await.map_err(|error| self.lost(&error))
    }

    async fn data_end(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        if self.route != Some(Route::List) {
            return self.relay.data_end(cx).await;
        }
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

    async fn data_abort(&mut self, cx: &Context<'_>, reason: AbortReason) {
        if self.route != Some(Route::List) {
            return self.relay.data_abort(cx, reason).await;
        }
        // Mailman is reading content: only closing the connection makes it drop it.
        if self.hop.take().is_some() {
            tracing::info!(lmtp = %self.lists.address, ?reason, "list delivery dropped");
        }
        self.message.pending.clear();
    }

    async fn quit(&mut self, cx: &Context<'_>) {
        self.relay.quit(cx).await;
        if let Some(mut hop) = self.hop.take() {
            let _ = hop.command(b"QUIT\r\n", patience::COURTESY).await;
        }
    }
}
