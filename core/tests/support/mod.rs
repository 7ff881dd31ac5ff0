//! Test harness: drives a [`Session`] with a recording handler, no I/O, no runtime.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll, Waker};

use smtpd_core::handler::{AbortReason, CloseReason, Context, Handler, MailParams, Verdict};
use smtpd_core::{Config, Instant, Reply, Session};

/// Runs a future that never waits (the test handlers answer at once).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = TaskContext::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("a test handler must not wait"),
    }
}

/// A message as the handler saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub peer: Option<SocketAddr>,
    pub greeting: Option<String>,
    pub mailfrom: String,
    pub rcpttos: Vec<String>,
    pub params: MailParams,
    pub data: Vec<u8>,
}

/// Records every hook call and what was delivered; verdicts can be scripted.
#[derive(Default, Debug)]
pub struct Recorder {
    /// One entry per hook call, e.g. `"rcpt spam@example"`.
    pub log: Vec<String>,
    pub delivered: Vec<Delivered>,
    /// Content of the message being received.
    pub current: Vec<u8>,
    /// Verdict for `connect` (default: accept).
    pub greeting: Option<Reply<'static>>,
    /// Recipients containing this string are refused with 550.
    pub refuse_rcpt: Option<&'static str>,
    /// Verdict for the recipients not refused (default: accept).
    pub rcpt: Option<Reply<'static>>,
    /// Verdict for `data_start` (default: accept).
    pub data_start: Option<Reply<'static>>,
    /// Verdict for `data_end` (default: accept).
    pub data_end: Option<Reply<'static>>,
    /// `data_chunk` fails once this many octets were received.
    pub capacity: Option<usize>,
    /// Verdict for `data_pause` (default: go on).
    pub pause: Option<Reply<'static>>,
    /// Answers for custom verbs: (verb, reply).
    pub verbs: Vec<(&'static str, Reply<'static>)>,
    pub aborts: Vec<AbortReason>,
    /// The envelope each aborted message had: reverse-path and recipients.
    pub aborted_envelopes: Vec<(Option<String>, Vec<String>)>,
}

impl Handler for Recorder {
    async fn connect(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        self.log.push(format!("connect {:?}", cx.peer));
        self.greeting.map_or(Verdict::Accept, Verdict::Reply)
    }

    async fn hello(&mut self, _: &Context<'_>, domain: &str, extended: bool) -> Verdict<'_> {
        self.log.push(format!(
            "{} {domain}",
            if extended { "ehlo" } else { "helo" }
        ));
        Verdict::Accept
    }

    async fn mail(&mut self, _: &Context<'_>, from: &str, _: &MailParams) -> Verdict<'_> {
        self.log.push(format!("mail {from}"));
        Verdict::Accept
    }

    async fn rcpt(&mut self, _: &Context<'_>, to: &str) -> Verdict<'_> {
        self.log.push(format!("rcpt {to}"));
        match self.refuse_rcpt {
            Some(bad) if to.contains(bad) => {
                Verdict::Reply(Reply::new(550, (5, 1, 1), "No such user here"))
            }
            _ => self.rcpt.map_or(Verdict::Accept, Verdict::Reply),
        }
    }

    async fn data_start(&mut self, _: &Context<'_>) -> Verdict<'_> {
        self.log.push("data_start".into());
        self.current.clear();
        self.data_start.map_or(Verdict::Accept, Verdict::Reply)
    }

    async fn data_chunk(&mut self, _: &Context<'_>, chunk: &[u8]) -> Result<(), Reply<'static>> {
        self.current.extend_from_slice(chunk);
        match self.capacity {
            Some(cap) if self.current.len() > cap => {
                Err(Reply::new(452, (4, 3, 1), "Insufficient system storage"))
            }
            _ => Ok(()),
        }
    }

    async fn data_pause(&mut self, _: &Context<'_>) -> Result<(), Reply<'static>> {
        self.log
            .push(format!("pause after {} octets", self.current.len()));
        self.pause.map_or(Ok(()), Err)
    }

    async fn data_end(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        self.log.push("data_end".into());
        if let Some(reply) = self.data_end {
            return Verdict::Reply(reply);
        }
        self.delivered.push(Delivered {
            peer: cx.peer,
            greeting: cx.seen_greeting.map(str::to_owned),
            mailfrom: cx.mailfrom.unwrap_or("?").to_owned(),
            rcpttos: cx.rcpttos.clone().map(str::to_owned).collect(),
            params: cx.mail_params,
            data: std::mem::take(&mut self.current),
        });
        Verdict::Accept
    }

    async fn data_abort(&mut self, cx: &Context<'_>, reason: AbortReason) {
        self.log.push(format!("abort {reason:?}"));
        self.aborts.push(reason);
        self.aborted_envelopes.push((
            cx.mailfrom.map(str::to_owned),
            cx.rcpttos.clone().map(str::to_owned).collect(),
        ));
        self.current.clear();
    }

    async fn rset(&mut self, _: &Context<'_>) {
        self.log.push("rset".into());
    }

    async fn quit(&mut self, _: &Context<'_>) {
        self.log.push("quit".into());
    }

    async fn closed(&mut self, _: &Context<'_>, reason: CloseReason) {
        self.log.push(format!("closed {reason:?}"));
    }

    async fn unknown(
        &mut self,
        _: &Context<'_>,
        verb: &str,
        arg: Option<&str>,
    ) -> Option<Reply<'_>> {
        self.log.push(format!("unknown {verb} {arg:?}"));
        self.verbs
            .iter()
            .find(|(v, _)| v.eq_ignore_ascii_case(verb))
            .map(|(_, reply)| *reply)
    }
}

/// The configuration the tests use unless they say otherwise: host name `fqdn.example`.
pub fn config() -> Config<'static> {
    Config::new("fqdn.example")
}

/// A client talking to a session over an imaginary connection; time is simulated.
pub struct Client {
    pub session: Session<'static, Recorder>,
    /// Current time in milliseconds.
    pub now: u64,
    /// Everything the server wrote.
    pub transcript: Vec<u8>,
}

impl Client {
    /// Connects to a server with `config` and reads the greeting.
    pub fn connect(config: Config<'static>) -> (Client, String) {
        Client::connect_with(config, Recorder::default())
    }

    pub fn connect_with(config: Config<'static>, handler: Recorder) -> (Client, String) {
        let config: &'static Config<'static> = Box::leak(Box::new(config));
        let peer = "192.0.2.7:40000".parse().ok();
        let mut client = Client {
            session: Session::new(config, peer, handler),
            now: 0,
            transcript: Vec::new(),
        };
        let greeting = client.send(b"");
        (client, greeting)
    }

    /// Connects with the default config and sends `EHLO client.example`.
    pub fn ehlo() -> Client {
        let (mut c, _) = Client::connect(config());
        c.cmd("EHLO client.example");
        c
    }

    /// Connects with the default config and sends `HELO client.example`.
    pub fn helo() -> Client {
        let (mut c, _) = Client::connect(config());
        c.cmd("HELO client.example");
        c
    }

    /// Sends raw bytes in one piece; returns everything the server wrote in response.
    pub fn send(&mut self, bytes: &[u8]) -> String {
        self.send_in_pieces(bytes, bytes.len().max(1))
    }

    /// Sends raw bytes in pieces of `step` octets, flushing output like a frontend would.
    pub fn send_in_pieces(&mut self, bytes: &[u8], step: usize) -> String {
        let mut out = Vec::new();
        if bytes.is_empty() {
            self.feed(b"", &mut out);
        }
        for piece in bytes.chunks(step) {
            self.feed(piece, &mut out);
        }
        self.transcript.extend_from_slice(&out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn feed(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        let now = Instant::from_millis(self.now);
        let mut pending = piece;
        loop {
            let used = block_on(self.session.handle_input(pending, now));
            pending = &pending[used..];
            let output = self.session.output().to_vec();
            self.session.consume_output(output.len());
            out.extend_from_slice(&output);
            if pending.is_empty() || self.session.is_closed() {
                break;
            }
            assert!(used > 0 || !output.is_empty(), "session made no progress");
        }
    }

    /// Sends one command line (CRLF added); returns the reply text.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes())
    }

    /// Sends raw bytes of a line (CRLF added).
    pub fn cmd_bytes(&mut self, line: &[u8]) -> String {
        let mut bytes = line.to_vec();
        bytes.extend_from_slice(b"\r\n");
        self.send(&bytes)
    }

    /// Advances the clock by `millis` and lets the session check its deadline.
    pub fn wait(&mut self, millis: u64) -> String {
        self.now += millis;
        block_on(self.session.handle_timeout(Instant::from_millis(self.now)));
        let output = self.session.output().to_vec();
        self.session.consume_output(output.len());
        self.transcript.extend_from_slice(&output);
        String::from_utf8_lossy(&output).into_owned()
    }

    pub fn disconnect(&mut self) {
        block_on(self.session.handle_disconnect());
    }

    pub fn handler(&self) -> &Recorder {
        self.session.handler()
    }

    pub fn handler_mut(&mut self) -> &mut Recorder {
        self.session.handler_mut()
    }

    pub fn delivered(&self) -> &[Delivered] {
        &self.handler().delivered
    }

    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// A full transaction with `body` (dot-stuffed by the caller); returns the final reply.
    pub fn mail(&mut self, from: &str, to: &[&str], body: &[u8]) -> String {
        self.cmd(&format!("MAIL FROM:<{from}>"));
        for rcpt in to {
            self.cmd(&format!("RCPT TO:<{rcpt}>"));
        }
        self.cmd("DATA");
        let mut data = body.to_vec();
        data.extend_from_slice(b"\r\n.\r\n");
        self.send(&data)
    }
}

/// Splits a server's output into reply lines without CRLF.
pub fn lines(output: &str) -> Vec<&str> {
    output.split_terminator("\r\n").collect()
}

/// The codes of the last line of each reply in `output`.
pub fn codes(output: &str) -> Vec<u16> {
    lines(output)
        .into_iter()
        .filter(|line| line.as_bytes().get(3) != Some(&b'-'))
        .map(|line| line[..3].parse().expect("reply code"))
        .collect()
}
