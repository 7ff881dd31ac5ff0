//! `MailmanProxy`: mail for Mailman 3's lists goes to Mailman over LMTP (RFC 2033), the rest
//! is relayed as by [`PureProxy`] (Python's `MailmanProxy`, which handed list mail to
//! Mailman 2 in-process and was removed with it).
//!
//! Which recipients are lists is Mailman's to say: each RCPT is first asked of its LMTP
//! runner, which accepts its lists' addresses (with their `-request`, `-owner`, `-join`...
//! sub-addresses) and refuses any other with `550`; those are relayed, as the
//! [`RelayAccess`] permits (lists take mail from anyone). A message goes to one
//! place, one list or the relay: a recipient for another place gets `452 4.5.3`, which
//! clients send again in a transaction of its own (RFC 5321 3.3); the same list named twice
//! is one post. So the reply after the content is the one place's: `250` means Mailman (or
//! the upstream) has the message.
//! MAIL is answered here and passed on with the first recipient, to Mailman or the relay,
//! whose refusal then answers that RCPT. A MAIL Mailman cannot take (SMTPUTF8, which its
//! runner does not offer, or its refusal) says nothing about the recipients: a bare MAIL asks
//! about them instead, and a list among them gets the refusal. Any 2xx to RCPT makes the
//! recipient Mailman's. A session lost mid-transaction is opened again, with the MAIL. Without
//! Mailman, recipients get `451 4.4.1` (whether they are lists cannot be known).

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use smtpd_core::client::{write_mail, write_rcpt};
use smtpd_core::handler::{AbortReason, CloseReason, Context, Handler, MailParams, Verdict};
use smtpd_core::Reply;

use super::next_hop::{completion, patience, NextHop, Protocol, Upstream};
use super::proxy::{unsupported, PureProxy, RelayAccess};
use super::relay::{Relay, LOST};
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

/// Whether Mailman took a recipient as one of its lists.
enum Listed {
    Yes,
    No,
    /// Mailman's reply is neither: it goes to the client as it is.
    Other,
}

/// What Mailman made of this transaction's MAIL.
#[derive(Debug)]
enum ListsMail {
    /// Not passed on (yet, or on the current session).
    Unsent,
    /// Accepted: recipients are asked as they come.
    Accepted,
    /// Refused with this reply (or a local one, for what Mailman does not offer). A bare
    /// MAIL took its place, only to ask about recipients: a list among them gets the refusal,
    /// the others are relayed.
    Refused(OwnedReply),
}

/// MAIL on `hop`; a `421` (Mailman is closing the session) is an error.
async fn mail(hop: &mut NextHop, from: &str, params: &MailParams) -> io::Result<OwnedReply> {
    let mut line = String::new();
    let _ = write_mail(&mut line, from, params, &hop.offered);
    let reply = completion(
        hop.command(line.as_bytes(), patience::COMMAND).await?,
        "MAIL",
    )?;
    hop.in_transaction = matches!(reply.code, 200..=299);
    match reply.code {
        421 => Err(io::Error::other(format!(
            "MAIL answered with 421 {}",
            reply.text
        ))),
        _ => Ok(reply),
    }
}

/// One client connection's list delivery and relay.
#[derive(Debug)]
pub struct MailmanProxy {
    relay: PureProxy,
    /// The LMTP relay to Mailman.
    lists: Relay,
    /// This transaction's MAIL, passed on when its first recipient shows where it goes.
    sender: Option<(String, MailParams)>,
    route: Option<Route>,
    lists_mail: ListsMail,
    /// The relay has this transaction's MAIL.
    relay_mailed: bool,
}

impl MailmanProxy {
    /// List mail to Mailman's LMTP runner at `lists`, from anyone; other recipients are
    /// relayed to `upstream` as `access` permits.
    pub fn new(
        upstream: Arc<Upstream>,
        access: Arc<RelayAccess>,
        lists: Arc<Upstream>,
        peer: IpAddr,
    ) -> Self {
        MailmanProxy {
            relay: PureProxy::new(upstream, access, peer),
            lists: Relay::new(lists, Protocol::Lmtp, String::new()),
            sender: None,
            route: None,
            lists_mail: ListsMail::Unsent,
            relay_mailed: false,
        }
    }

    /// Asks Mailman whether `to` is one of its lists (its reply, if it matters, is kept in
    /// `self.lists`); `Err` with the reply for the client when Mailman cannot say.
    async fn ask_lists(&mut self, to: &str) -> Result<Listed, Reply<'static>> {
        if matches!(self.lists_mail, ListsMail::Unsent) || self.lists.hop.is_none() {
            let Some((from, params)) = self.sender.clone() else {
                return Err(LISTS_UNAVAILABLE);
            };
            // A kept session Mailman has closed meanwhile: once more on a new one.
            let kept = self.lists.hop.is_some();
            self.lists_mail = match self.mail_lists(&from, &params).await {
                Err(_) if kept => self.mail_lists(&from, &params).await?,
                mailed => mailed?,
            };
        }
        let hop = self.lists.hop.as_ref().ok_or(LISTS_UNAVAILABLE)?;
        if !to.is_ascii() && !hop.offered.smtputf8 {
            // Mailman cannot even be given this address: it is no list of its.
            return Ok(Listed::No);
        }
        let mut line = String::new();
        let _ = write_rcpt(&mut line, to);
        self.lists
            .exchange(&line, patience::COMMAND)
            .await
            .map_err(|_| LISTS_UNAVAILABLE)?;
        // `exchange` lets only a 2xx, 4xx or 5xx through.
        match self.lists.reply.code {
            200..=299 => Ok(Listed::Yes),
            550 => Ok(Listed::No),
            _ => Ok(Listed::Other),
        }
    }

    /// Passes this transaction's MAIL to Mailman (opening a session if there is none). If
    /// Mailman cannot take it, a bare MAIL is sent instead, only to ask about recipients.
    async fn mail_lists(
        &mut self,
        from: &str,
        params: &MailParams,
    ) -> Result<ListsMail, Reply<'static>> {
        if self.lists.hop.is_none() {
            self.lists.open(LISTS_UNAVAILABLE).await?;
        }
        let hop = self.lists.hop.as_mut().ok_or(LISTS_UNAVAILABLE)?;
        let mailed = async {
            hop.ready_for_mail().await?;
            let refusal = match unsupported(params, &hop.offered) {
                Some(local) => OwnedReply::from_reply(&local),
                None => {
                    let reply = mail(hop, from, params).await?;
                    match reply.code {
                        200..=299 => return Ok(ListsMail::Accepted),
                        400..=599 => reply,
                        code => return Err(io::Error::other(format!("MAIL answered with {code}"))),
                    }
                }
            };
            // The null reverse-path: what is asked is the recipients, and any sender address
            // (a UTF-8 one too) would do.
            let bare = mail(hop, "", &MailParams::default()).await?;
            if bare.code != 250 {
                return Err(io::Error::other(format!(
                    "a bare MAIL answered with {}",
                    bare.code
                )));
            }
            Ok(ListsMail::Refused(refusal))
        }
        .await;
        mailed.map_err(|error| {
            self.lists.lost(&error);
            LISTS_UNAVAILABLE
        })
    }
    /// Relays `to`, passing the relay this transaction's MAIL first.
    async fn relay_rcpt(&mut self, cx: &Context<'_>, to: &str) -> Verdict<'_> {
        // Asked here too (PureProxy's `rcpt` asks again): a denied recipient must not open
        // an upstream transaction.
        if let Err(denied) = self.relay.access.check(cx, to) {
            return Verdict::Reply(denied);
        }
        if !self.relay_mailed {
            let Some((from, params)) = self.sender.as_ref() else {
                return Verdict::Reply(LOST);
            };
            let mailed = self.relay.try_mail(from, params).await;
            if !self.relay.verdict(mailed).is_accept() {
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
}

impl Handler for MailmanProxy {
    async fn mail(&mut self, _: &Context<'_>, from: &str, params: &MailParams) -> Verdict<'_> {
        self.sender = Some((from.to_owned(), *params));
        self.route = None;
        self.lists_mail = ListsMail::Unsent;
        self.relay_mailed = false;
        Verdict::Accept
    }

    async fn rcpt(&mut self, cx: &Context<'_>, to: &str) -> Verdict<'_> {
        if self.route == Some(Route::List) {
            // The same list named again (list names are case-insensitive in Mailman): one
            // post, so not passed on, and not a recipient to send separately either. The
            // list is the transaction's first accepted recipient: any other went elsewhere.
            let list = cx.rcpttos.clone().next();
            if list.is_some_and(|list| list.eq_ignore_ascii_case(to)) {
                return Verdict::Accept;
            }
            return Verdict::Reply(ONE_PLACE);
        }
        match self.ask_lists(to).await {
            Err(reply) => Verdict::Reply(reply),
            Ok(Listed::Yes) => match &self.lists_mail {
                // A list, but Mailman cannot take this message.
                ListsMail::Refused(refusal) => Verdict::Reply(refusal.as_reply()),
                _ if self.route == Some(Route::Relay) => Verdict::Reply(ONE_PLACE),
                _ => {
                    self.route = Some(Route::List);
                    self.lists.verdict(Ok(()))
                }
            },
            Ok(Listed::No) => self.relay_rcpt(cx, to).await,
            Ok(Listed::Other) => self.lists.verdict(Ok(())),
        }
    }

    async fn data_start(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        match self.route {
            Some(Route::List) => self.lists.data_start(cx).await,
            Some(Route::Relay) => self.relay.data_start(cx).await,
            // No recipient was routed (cannot happen): never content to a stale transaction.
            None => Verdict::Reply(LOST),
        }
    }

    async fn data_chunk(&mut self, cx: &Context<'_>, chunk: &[u8]) -> Result<(), Reply<'static>> {
        match self.route {
            Some(Route::List) => self.lists.data_chunk(chunk).await,
            _ => self.relay.data_chunk(cx, chunk).await,
        }
    }

    async fn data_pause(&mut self, cx: &Context<'_>) -> Result<(), Reply<'static>> {
        match self.route {
            Some(Route::List) => self.lists.data_pause().await,
            _ => self.relay.data_pause(cx).await,
        }
    }

    async fn data_end(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        match self.route {
            // One list recipient, so one reply (RFC 2033 4.2).
            Some(Route::List) => self.lists.data_end().await,
            _ => self.relay.data_end(cx).await,
        }
    }

    async fn data_abort(&mut self, cx: &Context<'_>, reason: AbortReason) {
        match self.route {
            Some(Route::List) => self.lists.data_abort(reason),
            _ => self.relay.data_abort(cx, reason).await,
        }
    }

    /// However the session ended, the upstream's and Mailman's end with QUIT.
    async fn closed(&mut self, cx: &Context<'_>, reason: CloseReason) {
        self.relay.closed(cx, reason).await;
        self.lists.quit();
    }
}
