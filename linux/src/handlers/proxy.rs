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
//! core's [`DotStuffer`], so no upstream can be made to see a second message.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use compio::buf::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use smtpd_core::client::{write_mail, write_rcpt, DotStuffer, ReplyReader, ServerExtensions};
use smtpd_core::handler::{AbortReason, Body, Context, Handler, MailParams, Verdict};
use smtpd_core::Reply;

use crate::message::OwnedReply;

/// Where and how to relay; shared by all connections.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// `host:port`, resolved at each connection.
    pub address: String,
    /// The name given in EHLO.
    pub hostname: String,
}

/// How long to wait for the upstream (RFC 5321 4.5.3.2: its client timeouts).
mod patience {
    use std::time::Duration;
    pub const GREETING: Duration = Duration::from_secs(300);
    pub const COMMAND: Duration = Duration::from_secs(300);
    pub const DATA_INIT: Duration = Duration::from_secs(120);
    pub const DATA_BLOCK: Duration = Duration::from_secs(180);
    pub const DATA_END: Duration = Duration::from_secs(600);
    /// QUIT and RSET: nothing depends on the answer.
    pub const COURTESY: Duration = Duration::from_secs(5);
}

const UNAVAILABLE: Reply<'static> = Reply::new(451, (4, 4, 1), "Error: next hop unavailable");
const LOST: Reply<'static> = Reply::new(451, (4, 4, 2), "Error: connection to the next hop lost");
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

/// Content is written to the upstream in pieces of about this size.
const WRITE_SIZE: usize = 64 * 1024;

/// One client connection's relay.
#[derive(Debug)]
pub struct PureProxy {
    upstream: Arc<Upstream>,
    /// `X-Peer: <ip>` CRLF.
    peer_header: String,
    hop: Option<NextHop>,
    /// The upstream's last reply, lent to the core.
    reply: OwnedReply,
    message: Outgoing,
}

impl PureProxy {
    pub fn new(upstream: Arc<Upstream>, peer: IpAddr) -> Self {
        PureProxy {
            upstream,
            peer_header: format!("X-Peer: {peer}\r\n"),
            hop: None,
            reply: OwnedReply::new(250, (2, 0, 0), ""),
            message: Outgoing::default(),
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
        if reply.code == 421 {
            tracing::warn!(upstream = %self.upstream.address, reply = %reply.text, "upstream closing");
            self.hop = None;
            reply.code = 451;
        }
        self.reply = reply;
    }

    /// The verdict after [`exchange`](Self::exchange).
    fn verdict(&self, exchanged: Result<(), Reply<'static>>) -> Verdict<'_> {
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
        match NextHop::open(&self.upstream).await {
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
    async fn try_mail(&mut self, from: &str, params: &MailParams) -> Result<(), Reply<'static>> {
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
        if self.message.pending.len() < WRITE_SIZE && !all {
            return Ok(());
        }
        let hop = self.hop.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        let pending = std::mem::take(&mut self.message.pending);
        let (result, mut pending) = hop.send(pending, patience::DATA_BLOCK).await;
        pending.clear();
        // Between messages a connection keeps only a small buffer.
        if all && pending.capacity() > 2 * WRITE_SIZE {
            pending = Vec::new();
        }
        self.message.pending = pending;
        result
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
        self.message.start();
        let exchanged = self.exchange("DATA\r\n", patience::DATA_INIT).await;
        match (exchanged, self.reply.code) {
            // The core's own 354 (or, for BDAT, its 250s): the client's dialogue is its own.
            (Ok(()), 354) => Verdict::Accept,
            (Ok(()), code @ 200..=399) => {
                let error = io::Error::other(format!("DATA answered with {code}"));
                Verdict::Reply(self.lost(&error))
            }
            (exchanged, _) => self.verdict(exchanged),
        }
    }

    async fn data_chunk(&mut self, _: &Context<'_>, chunk: &[u8]) -> Result<(), Reply<'static>> {
        self.message.encode(chunk, &self.peer_header);
        self.flush(false).await.map_err(|error| self.lost(&error))
    }

    async fn data_end(&mut self, _: &Context<'_>) -> Verdict<'_> {
        self.message.finish(&self.peer_header);
        if let Err(error) = self.flush(true).await {
            return Verdict::Reply(self.lost(&error));
        }
        let Some(hop) = self.hop.as_mut() else {
            return Verdict::Reply(LOST);
        };
        match hop.reply(patience::DATA_END).await {
            Ok(reply) => {
                hop.in_transaction = false;
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

/// The content on its way out: dot-stuffed, with `X-Peer` added at the end of the headers.
#[derive(Debug, Default)]
struct Outgoing {
    pending: Vec<u8>,
    stuffer: DotStuffer,
    /// The headers ended (and `X-Peer` was added).
    past_headers: bool,
    /// The headers seen so far end inside a line.
    mid_line: bool,
}

impl Outgoing {
    /// Readies for a new message, keeping the buffer.
    fn start(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        *self = Outgoing {
            pending,
            ..Outgoing::default()
        };
        self.pending.clear();
    }

    fn encode(&mut self, chunk: &[u8], peer_header: &str) {
        let mut rest = chunk;
        if !self.past_headers {
            // The header section ends at the first empty line (RFC 5322 2.1).
            let mut end = None;
            for (i, &byte) in chunk.iter().enumerate() {
                if !self.mid_line && (byte == b'\r' || byte == b'\n') {
                    end = Some(i);
                    break;
                }
                self.mid_line = byte != b'\n';
            }
            let Some(end) = end else {
                return self.stuff(chunk);
            };
            self.stuff(&chunk[..end]);
            self.stuff(peer_header.as_bytes());
            self.past_headers = true;
            rest = &chunk[end..];
        }
        self.stuff(rest);
    }

    /// Ends the content; `X-Peer` goes last when it had no empty line (as in Python).
    fn finish(&mut self, peer_header: &str) {
        if !self.past_headers {
            if self.mid_line {
                self.stuff(b"\r\n");
            }
            self.stuff(peer_header.as_bytes());
        }
        let pending = &mut self.pending;
        self.stuffer
            .finish(|octets| pending.extend_from_slice(octets));
    }

    fn stuff(&mut self, content: &[u8]) {
        let pending = &mut self.pending;
        self.stuffer
            .encode(content, |octets| pending.extend_from_slice(octets));
    }
}

/// An SMTP session with the upstream.
#[derive(Debug)]
struct NextHop {
    stream: TcpStream,
    /// Received, not yet read as replies.
    input: Vec<u8>,
    replies: ReplyReader<2048>,
    offered: ServerExtensions,
    /// A MAIL was accepted and its transaction not ended.
    in_transaction: bool,
}

impl NextHop {
    /// Connects, takes the greeting and says EHLO (HELO if EHLO is refused).
    async fn open(upstream: &Upstream) -> io::Result<NextHop> {
        let stream = compio::time::timeout(
            patience::GREETING,
            TcpStream::connect(upstream.address.as_str()),
        )
        .await
        .map_err(|_| io::ErrorKind::TimedOut)??;
        stream.set_nodelay(true)?;
        let mut hop = NextHop {
            stream,
            input: Vec::with_capacity(4096),
            replies: ReplyReader::new(),
            offered: ServerExtensions::default(),
            in_transaction: false,
        };
        let greeting = hop.reply(patience::GREETING).await?;
        if greeting.code != 220 {
            return Err(refused("greeting", &greeting));
        }
        let ehlo = format!("EHLO {}\r\n", upstream.hostname);
        let reply = hop.command(ehlo.as_bytes(), patience::COMMAND).await?;
        if reply.code == 250 {
            hop.offered = ServerExtensions::from_ehlo(&reply.text);
            return Ok(hop);
        }
        let helo = format!("HELO {}\r\n", upstream.hostname);
        let reply = hop.command(helo.as_bytes(), patience::COMMAND).await?;
        match reply.code {
            250 => Ok(hop),
            _ => Err(refused("HELO", &reply)),
        }
    }

    async fn command(&mut self, line: &[u8], patience: Duration) -> io::Result<OwnedReply> {
        let (sent, _) = self.send(line.to_vec(), patience).await;
        sent?;
        self.reply(patience).await
    }

    async fn send(&mut self, octets: Vec<u8>, patience: Duration) -> (io::Result<()>, Vec<u8>) {
        let (result, octets) =
            match compio::time::timeout(patience, self.stream.write_all(octets)).await {
                Ok(BufResult(result, octets)) => (result, octets),
                Err(_) => return (Err(io::ErrorKind::TimedOut.into()), Vec::new()),
            };
        (result, octets)
    }

    /// The next reply, waiting at most `patience` in all.
    async fn reply(&mut self, patience: Duration) -> io::Result<OwnedReply> {
        compio::time::timeout(patience, async {
            loop {
                let (used, reply) = self.replies.read(&self.input);
                let reply = reply.map(|reply| {
                    reply.map(|reply| OwnedReply {
                        code: reply.code,
                        enhanced: reply.enhanced,
                        text: reply.text.to_owned(),
                    })
                });
                self.input.drain(..used);
                match reply {
                    Some(Ok(reply)) => return Ok(reply),
                    Some(Err(error)) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("bad reply: {error:?}"),
                        ))
                    }
                    None if self.input.len() > 64 * 1024 => {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"))
                    }
                    None => {}
                }
                self.input.reserve(4096);
                let input = std::mem::take(&mut self.input);
                let BufResult(read, input) = self.stream.append(input).await;
                self.input = input;
                if read? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
        })
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }
}

fn refused(step: &str, reply: &OwnedReply) -> io::Error {
    io::Error::other(format!("{step} refused: {} {}", reply.code, reply.text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What goes out for `content` given in pieces of `step` octets.
    fn outgoing(content: &[u8], step: usize) -> Vec<u8> {
        let mut message = Outgoing::default();
        message.start();
        for piece in content.chunks(step) {
            message.encode(piece, "X-Peer: ::1\r\n");
        }
        message.finish("X-Peer: ::1\r\n");
        message.pending
    }

    #[test]
    fn the_peer_line_ends_the_headers_in_any_pieces() {
        let cases: [(&[u8], &[u8]); 6] = [
            (
                b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\n",
                b"A: 1\r\nB: 2\r\nX-Peer: ::1\r\n\r\nbody\r\n\r\n.\r\n",
            ),
            (b"\r\nbody\r\n", b"X-Peer: ::1\r\n\r\nbody\r\n.\r\n"),
            (b"A: 1\r\n", b"A: 1\r\nX-Peer: ::1\r\n.\r\n"),
            (b"A: 1", b"A: 1\r\nX-Peer: ::1\r\n.\r\n"),
            (b"", b"X-Peer: ::1\r\n.\r\n"),
            (
                b"A: .1\r\n.B\r\n\r\n.\r\n",
                b"A: .1\r\n..B\r\nX-Peer: ::1\r\n\r\n..\r\n.\r\n",
            ),
        ];
        for (content, expected) in cases {
            for step in 1..=content.len().max(1) {
                assert_eq!(
                    outgoing(content, step),
                    expected,
                    "{content:?} in pieces of {step}"
                );
            }
        }
    }
}
