//! A client session with the next hop (an upstream SMTP server, or an LMTP server such as
//! Mailman's), and the content on its way there.
//!
//! The protocol rules (reply syntax, EHLO keywords, command lines, dot-stuffing) are the
//! core's (`smtpd_core::client`); this is their I/O: connecting, waiting at most the
//! RFC 5321 4.5.3.2 client timeouts, reading replies.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use compio::buf::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use smtpd_core::client::{DotStuffer, ReplyReader, ServerExtensions};

use crate::message::OwnedReply;

/// A next hop and the name to greet it with; shared by all connections.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// `host:port`, resolved at each connection.
    pub address: String,
    /// The name given in EHLO.
    pub hostname: String,
}

/// How long to wait for the upstream (RFC 5321 4.5.3.2: its client timeouts).
pub(super) mod patience {
    use std::time::Duration;
    pub const GREETING: Duration = Duration::from_secs(300);
    pub const COMMAND: Duration = Duration::from_secs(300);
    pub const DATA_INIT: Duration = Duration::from_secs(120);
    pub const DATA_BLOCK: Duration = Duration::from_secs(180);
    pub const DATA_END: Duration = Duration::from_secs(600);
    /// QUIT and RSET: nothing depends on the answer.
    pub const COURTESY: Duration = Duration::from_secs(5);
}

/// Which greeting the next hop expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Protocol {
    /// EHLO, or HELO if EHLO is refused (RFC 5321 4.1.1.1).
    Smtp,
    /// LHLO (RFC 2033); after the content, one reply per accepted recipient.
    Lmtp,
}

/// Content is written to the upstream in pieces of about this size.
const WRITE_SIZE: usize = 64 * 1024;

/// The content on its way out: dot-stuffed, with a header line of ours (`X-Peer`) added at the
/// end of the headers, if there is one, and its `Received:` fields counted.
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    /// Encoded, not yet written.
    pub(super) pending: Vec<u8>,
    /// The header line to add, CRLF included; empty for none.
    added: String,
    stuffer: DotStuffer,
    /// The headers ended (and the line was added).
    past_headers: bool,
    /// The headers seen so far end inside a line.
    mid_line: bool,
    /// `Received:` fields in the headers so far (RFC 5321 6.3: a mail loop shows as many).
    pub(super) received: usize,
    /// How many octets of the header line being read match `received:`; `u8::MAX` once one
    /// does not.
    matched: u8,
}

/// The field name counted by [`Outgoing::received`], lower-cased.
const RECEIVED: &[u8] = b"received:";

impl Outgoing {
    /// Content that gets `added` (a header line with its CRLF) at the end of its headers.
    pub(super) fn adding(added: String) -> Self {
        Outgoing {
            added,
            ..Outgoing::default()
        }
    }

    /// Readies for a new message that starts with `trace` (a header line with its CRLF),
    /// keeping the buffers.
    pub(super) fn start(&mut self, trace: &str) {
        self.pending.clear();
        self.stuffer = DotStuffer::default();
        self.past_headers = false;
        self.mid_line = false;
        self.received = 0;
        self.stuff(trace.as_bytes());
    }

    pub(super) fn encode(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        if !self.past_headers {
            // The header section ends at the first empty line (RFC 5322 2.1).
            let mut end = None;
            for (i, &byte) in chunk.iter().enumerate() {
                if !self.mid_line {
                    if byte == b'\r' || byte == b'\n' {
                        end = Some(i);
                        break;
                    }
                    self.matched = 0;
                }
                if let Some(&want) = RECEIVED.get(usize::from(self.matched)) {
                    self.matched = if byte.to_ascii_lowercase() == want {
                        self.matched + 1
                    } else {
                        u8::MAX
                    };
                    if usize::from(self.matched) == RECEIVED.len() {
                        self.received += 1;
                    }
                }
                self.mid_line = byte != b'\n';
            }
            let Some(end) = end else {
                return self.stuff(chunk);
            };
            self.stuff(&chunk[..end]);
            self.add();
            rest = &chunk[end..];
        }
        self.stuff(rest);
    }

    /// Ends the content; the added line goes last when it had no empty line (as in Python).
    pub(super) fn finish(&mut self) {
        if !self.past_headers {
            if self.mid_line {
                self.stuff(b"\r\n");
            }
            self.add();
        }
        let pending = &mut self.pending;
        self.stuffer
            .finish(|octets| pending.extend_from_slice(octets));
    }

    fn add(&mut self) {
        let pending = &mut self.pending;
        self.stuffer.encode(self.added.as_bytes(), |octets| {
            pending.extend_from_slice(octets)
        });
        self.past_headers = true;
    }

    fn stuff(&mut self, content: &[u8]) {
        let pending = &mut self.pending;
        self.stuffer
            .encode(content, |octets| pending.extend_from_slice(octets));
    }
}

/// A session with the next hop.
#[derive(Debug)]
pub(super) struct NextHop {
    stream: TcpStream,
    /// Received, not yet read as replies.
    input: Vec<u8>,
    replies: ReplyReader<2048>,
    pub(super) offered: ServerExtensions,
    /// A MAIL was accepted and its transaction not ended.
    pub(super) in_transaction: bool,
}

impl NextHop {
    /// Connects, takes the greeting and greets as `protocol` says.
    pub(super) async fn open(upstream: &Upstream, protocol: Protocol) -> io::Result<NextHop> {
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
        let verb = match protocol {
            Protocol::Smtp => "EHLO",
            Protocol::Lmtp => "LHLO",
        };
        let hello = format!("{verb} {}\r\n", upstream.hostname);
        let reply = hop.command(hello.as_bytes(), patience::COMMAND).await?;
        if reply.code == 250 {
            hop.offered = ServerExtensions::from_ehlo(&reply.text);
            return Ok(hop);
        }
        if protocol == Protocol::Lmtp {
            return Err(refused("LHLO", &reply));
        }
        let helo = format!("HELO {}\r\n", upstream.hostname);
        let reply = hop.command(helo.as_bytes(), patience::COMMAND).await?;
        match reply.code {
            250 => Ok(hop),
            _ => Err(refused("HELO", &reply)),
        }
    }

    pub(super) async fn command(
        &mut self,
        line: &[u8],
        patience: Duration,
    ) -> io::Result<OwnedReply> {
        self.nothing_unasked()?;
        let (sent, _) = self.send(line.to_vec(), patience).await;
        sent?;
        self.reply(patience).await
    }

    /// Every reply is asked for: one that came unasked (read, or waiting on the socket)
    /// would be taken for the answer to what is sent next, putting the next hop's replies
    /// out of step. A closed connection shows here too.
    fn nothing_unasked(&self) -> io::Result<()> {
        let unasked = || io::Error::new(io::ErrorKind::InvalidData, "a reply nobody asked for");
        if !self.input.is_empty() {
            return Err(unasked());
        }
        let mut octet = 0u8;
        // SAFETY: a one-octet receive into a live local, on the stream's own descriptor;
        // MSG_PEEK leaves any data for `reply`, MSG_DONTWAIT never blocks.
        let waiting = unsafe {
            libc::recv(
                self.stream.as_raw_fd(),
                (&raw mut octet).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if waiting > 0 {
            return Err(unasked());
        }
        if waiting == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match io::Error::last_os_error() {
            error if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
            error => Err(error),
        }
    }

    /// Ends a transaction left open here (RSET), so that MAIL may follow; an error when the
    /// next hop failed or refused.
    pub(super) async fn ready_for_mail(&mut self) -> io::Result<()> {
        if self.in_transaction {
            let reply = self.command(b"RSET\r\n", patience::COURTESY).await?;
            if reply.code != 250 {
                return Err(refused("RSET", &reply));
            }
            self.in_transaction = false;
        }
        Ok(())
    }

    /// Sends DATA: `Ok(None)` when the next hop waits for the content (354), `Ok(Some(reply))`
    /// when it refused; an error when it failed or answered otherwise.
    pub(super) async fn start_data(&mut self) -> io::Result<Option<OwnedReply>> {
        let reply = self.command(b"DATA\r\n", patience::DATA_INIT).await?;
        match reply.code {
            // Octets after the 354 would pass for the reply to content not yet sent.
            354 if !self.input.is_empty() => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a reply nobody asked for",
            )),
            354 => Ok(None),
            400.. => Ok(Some(reply)),
            code => Err(io::Error::other(format!("DATA answered with {code}"))),
        }
    }

    /// Ends `message`'s content and returns the next hop's reply to it (from an LMTP
    /// server, its one recipient's, RFC 2033 4.2).
    pub(super) async fn end_data(&mut self, message: &mut Outgoing) -> io::Result<OwnedReply> {
        // A reply that came during the content would pass for the answer to the dot.
        self.nothing_unasked()?;
        message.finish();
        self.flush(message, true).await?;
        // Between messages a connection keeps only a small buffer.
        if message.pending.capacity() > 2 * WRITE_SIZE {
            message.pending = Vec::new();
        }
        let reply = completion(self.reply(patience::DATA_END).await?, "end of data")?;
        self.in_transaction = false;
        Ok(reply)
    }

    /// Writes what `message` has pending when `all`, or when a piece is full.
    pub(super) async fn flush(&mut self, message: &mut Outgoing, all: bool) -> io::Result<()> {
        if message.pending.is_empty() || (message.pending.len() < WRITE_SIZE && !all) {
            return Ok(());
        }
        let pending = std::mem::take(&mut message.pending);
        let (result, mut pending) = self.send(pending, patience::DATA_BLOCK).await;
        pending.clear();
        message.pending = pending;
        result
    }

    /// Writes `octets` whole, returning the buffer (an empty one after a timeout).
    async fn send(&mut self, octets: Vec<u8>, patience: Duration) -> (io::Result<()>, Vec<u8>) {
        match compio::time::timeout(patience, self.stream.write_all(octets)).await {
            Ok(BufResult(result, octets)) => (result, octets),
            Err(_) => (Err(io::ErrorKind::TimedOut.into()), Vec::new()),
        }
    }

    /// The next reply, waiting at most `patience` in all.
    pub(super) async fn reply(&mut self, patience: Duration) -> io::Result<OwnedReply> {
        compio::time::timeout(patience, async {
            loop {
                let (used, reply) = self.replies.read(&self.input);
                let reply = reply.map(|reply| reply.map(|reply| OwnedReply::from_reply(&reply)));
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

/// `reply` to `step` if it completes it (2xx) or refuses it (4xx, 5xx): that is what MAIL,
/// RCPT and the end of data get. Anything else (a 1xx, a 3xx) means the next hop is out of
/// step with us, and is an error.
pub(super) fn completion(reply: OwnedReply, step: &str) -> io::Result<OwnedReply> {
    match reply.code {
        200..=299 | 400..=599 => Ok(reply),
        code => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{step} answered with {code}"),
        )),
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
        let mut message = Outgoing::adding("X-Peer: ::1\r\n".into());
        message.start("");
        for piece in content.chunks(step) {
            message.encode(piece);
        }
        message.finish();
        message.pending
    }

    #[test]
    fn the_trace_goes_first_and_nothing_else_without_a_line_to_add() {
        let mut message = Outgoing::default();
        message.start("Received: from x\r\n");
        message.encode(b"A: 1\r\n\r\n.b");
        message.finish();
        assert_eq!(
            message.pending,
            b"Received: from x\r\nA: 1\r\n\r\n..b\r\n.\r\n"
        );
    }

    #[test]
    fn received_fields_are_counted_in_any_pieces() {
        let content = b"Received: a\r\nX: received: no\r\nRECEIVED:b\r\n folded\r\n\
                        Received-SPF: no\r\nreceived:c\r\n\r\nReceived: in the body\r\n";
        for step in 1..=content.len() {
            let mut message = Outgoing::default();
            message.start("Received: ours\r\n");
            for piece in content.chunks(step) {
                message.encode(piece);
            }
            assert_eq!(message.received, 3, "in pieces of {step}");
        }
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
