//! The SMTP state machine (RFC 5321 4.1.4, 4.3.2): Python's `SMTPChannel`, sans-io.
//!
//! A [`Channel`] takes bytes with [`receive`](Channel::receive) and produces three things:
//! reply bytes in its output buffer, message content chunks (borrowed from the input), and
//! [`Event`]s that need the application's [`Verdict`], handed back with
//! [`resolve`](Channel::resolve). [`Session`](crate::session::Session) drives it with a
//! [`Handler`](crate::handler::Handler); tests and fuzzers drive it directly.
//!
//! Invariants:
//! - Every complete command line gets exactly one reply, in order (RFC 2920 3.1); a BDAT
//!   chunk gets its reply once its octets were consumed.
//! - Memory is fixed: `LINE` octets of command line, `OUT` of replies, and the envelope
//!   arena `A` the frontend chose. Nothing grows with the input.
//! - While an event awaits its verdict, no input is consumed.
//! - A closed session raises [`Event::Closed`] once, as its last event.
//! - A new command is only processed with at least [`OUTPUT_RESERVE`] octets free, so its
//!   reply always fits; otherwise `receive` stops and the driver must flush the output.

use core::fmt;
use core::net::SocketAddr;

use crate::address::{parse_user, AddressError};
use crate::command::{self, split_verb, Command, CommandError, Params, Verb};
#[cfg(doc)]
use crate::config::BareNewline;
use crate::config::Config;
use crate::data::{DataDecoder, DataError, Decoded};
use crate::envelope::{Arena, Envelope};
use crate::handler::{AbortReason, Body, CloseReason, Context, MailParams, SmtpState, Verdict};
use crate::line::{LineBuffer, LineStatus};
use crate::replies;
use crate::reply::{EnhancedCode, Reply, ReplyWriter};
use crate::timeout::Instant;

/// Free output space needed before a command is processed: the longest reply line
/// (RFC 5321 4.5.3.1.5), which also bounds the EHLO reply.
pub const OUTPUT_RESERVE: usize = 512;

/// Default capacities: a 512-octet command line plus the RFC 1870 (26) and RFC 6531 (10)
/// MAIL allowances; 1 KiB of replies; an inline envelope arena for 100 recipients of
/// ordinary length.
pub mod capacity {
    pub const LINE: usize = 512 + 26 + 10;
    pub const OUT: usize = 1024;
    pub const ENVELOPE: usize = 3072;
    /// An envelope arena that holds 100 forward-paths of the longest kind (256 octets with
    /// their brackets, RFC 5321 4.5.3.1.3), plus the HELO argument and the MAIL line's
    /// reverse-path and parameters (at most 505 + 536 octets).
    pub const ENVELOPE_FOR_100_LONGEST: usize = 100 * 256 + 1536;
}

/// Something the application must decide on (or be told about).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event<'a> {
    Connect,
    Hello {
        domain: &'a str,
        extended: bool,
    },
    Mail {
        from: &'a str,
        params: MailParams,
    },
    Rcpt {
        to: &'a str,
    },
    DataStart,
    DataEnd,
    DataAbort(AbortReason),
    Rset,
    Quit,
    Unknown {
        verb: &'a str,
        arg: Option<&'a str>,
    },
    /// The session ended: the last event, once.
    Closed(CloseReason),
}

/// The SMTP channel. See the module documentation.
pub struct Channel<
    'c,
    const LINE: usize = { capacity::LINE },
    const OUT: usize = { capacity::OUT },
    A = [u8; capacity::ENVELOPE],
> {
    line: LineBuffer<LINE>,
    state: State<'c, OUT, A>,
}

/// A span of the command line, for events that outlive the parse.
#[derive(Clone, Copy, Debug)]
struct Span(u16, u16);

impl Span {
    /// `part` must be a slice of `line`.
    fn of(line: &str, part: &str) -> Span {
        let start = part.as_ptr() as usize - line.as_ptr() as usize;
        Span(start as u16, (start + part.len()) as u16)
    }

    fn get(self, line: &str) -> &str {
        line.get(self.0 as usize..self.1 as usize)
            .unwrap_or_default()
    }
}

/// An event awaiting its verdict.
#[derive(Clone, Copy, Debug)]
enum Pending {
    Connect,
    Hello {
        domain: Span,
        extended: bool,
    },
    Mail {
        from: Span,
        params: MailParams,
        /// The parameters as written.
        written: Span,
    },
    Rcpt {
        to: Span,
    },
    /// DATA (`None`) or the first BDAT of a transaction (size, last).
    DataStart {
        bdat: Option<(u64, bool)>,
    },
    DataEnd,
    Rset,
    Quit,
    Unknown {
        verb: Span,
        arg: Option<Span>,
    },
    /// The session ended; a notification.
    Closed(CloseReason),
}

#[derive(Clone, Debug)]
enum Mode {
    Command,
    Data(DataDecoder),
    /// Receiving a BDAT chunk of `size` octets for the message.
    Bdat {
        size: u64,
        remaining: u64,
        last: bool,
    },
    /// Skipping a refused BDAT chunk; its reply was sent.
    Discard {
        remaining: u64,
    },
    Closed,
}

/// Why an open message will be refused at its end.
#[derive(Clone, Copy, Debug)]
enum Failure {
    Data(DataError),
    Refused(Reply<'static>),
}

/// Everything but the line buffer, so that handlers can borrow the line while mutating this.
struct State<'c, const OUT: usize, A> {
    config: &'c Config<'c>,
    peer: Option<SocketAddr>,
    output: heapless::Vec<u8, OUT>,
    envelope: Envelope<A>,
    mode: Mode,
    pending: Option<Pending>,
    /// A `DataAbort` notification to deliver before anything else.
    abort: Option<AbortReason>,
    /// The transaction was reset, but its envelope stays for the pending `DataAbort`.
    envelope_stale: bool,
    extended: bool,
    mail: MailParams,
    /// `data_start` was accepted and neither `data_end` nor `data_abort` was raised yet.
    message_open: bool,
    /// The transaction used BDAT (DATA is then refused, RFC 3030 2).
    bdat_used: bool,
    /// BDAT octets received in this transaction.
    bdat_total: u64,
    failure: Option<Failure>,
    bad_commands: u32,
    /// Octets at the end of `output` not shown yet: the reply to a refused BDAT chunk,
    /// held until the chunk has been read ([`Mode::Discard`]).
    held: usize,
    /// The greeting refused the session: only QUIT is served (RFC 5321 3.1).
    refused: bool,
    deadline: Option<Instant>,
    /// Arm the timer at the next `receive` (a verdict was just given).
    rearm: bool,
    /// Why the session closed (the first reason wins).
    ended: Option<CloseReason>,
}

impl<'c, const LINE: usize, const OUT: usize, const ENVELOPE: usize>
    Channel<'c, LINE, OUT, [u8; ENVELOPE]>
{
    /// A channel for a new connection from `peer`, with an inline envelope arena. The
    /// first event is [`Event::Connect`].
    pub fn new(config: &'c Config<'c>, peer: Option<SocketAddr>) -> Self {
        Self::with_arena(config, peer, [0; ENVELOPE])
    }
}

impl<'c, const LINE: usize, const OUT: usize, A: Arena> Channel<'c, LINE, OUT, A> {
    const OUT_HOLDS_A_REPLY: () = assert!(OUT >= OUTPUT_RESERVE, "OUT must be >= 512");
    /// A [`Span`] counts offsets into the line in `u16`.
    const SPANS_REACH_THE_LINE_END: () =
        assert!(LINE <= u16::MAX as usize, "LINE must be <= 65535");

    /// A channel for a new connection from `peer` that keeps its envelope in `arena`.
    pub fn with_arena(config: &'c Config<'c>, peer: Option<SocketAddr>, arena: A) -> Self {
        let () = Self::OUT_HOLDS_A_REPLY;
        let () = Self::SPANS_REACH_THE_LINE_END;
        Channel {
            line: LineBuffer::default(),
            state: State {
                config,
                peer,
                output: heapless::Vec::new(),
                envelope: Envelope::new(arena),
                mode: Mode::Command,
                pending: Some(Pending::Connect),
                abort: None,
                envelope_stale: false,
                extended: false,
                mail: MailParams::default(),
                message_open: false,
                bdat_used: false,
                bdat_total: 0,
                failure: None,
                bad_commands: 0,
                held: 0,
                refused: false,
                deadline: None,
                rearm: true,
                ended: None,
            },
        }
    }

    /// Consumes input until an event needs a verdict, a content chunk is ready, the output
    /// needs flushing, or the input is used up.
    ///
    /// Returns the octets consumed and, possibly, a chunk of message content to hand on
    /// (borrowed from `input`, or a few static CR/LF octets inserted by [`BareNewline::Normalize`]). Unconsumed input must be offered again (after flushing the
    /// output, or resolving the event). After the session closed, all input is discarded.
    pub fn receive<'i>(&mut self, input: &'i [u8], now: Instant) -> (usize, Option<&'i [u8]>) {
        let s = &mut self.state;
        if s.rearm && s.pending.is_none() {
            s.rearm = false;
            s.arm(now);
        }
        let mut pos = 0;
        loop {
            let s = &mut self.state;
            // Discarding a chunk writes nothing, whatever reply is held.
            let discarding = matches!(s.mode, Mode::Discard { .. });
            if s.pending.is_some()
                || s.abort.is_some()
                || (OUT - s.output.len() < OUTPUT_RESERVE && !discarding)
            {
                return (pos, None);
            }
            let rest = &input[pos..];
            match &mut s.mode {
                Mode::Closed => return (input.len(), None),
                Mode::Command => {
                    if rest.is_empty() {
                        return (pos, None);
                    }
                    let (n, status) = self.line.push(rest);
                    pos += n;
                    if let Some(status) = status {
                        self.on_line(status);
                        let s = &mut self.state;
                        if s.pending.is_none() {
                            self.line.clear();
                            s.arm(now);
                        } else {
                            s.deadline = None;
                        }
                    }
                }
                Mode::Data(decoder) => {
                    if rest.is_empty() {
                        return (pos, None);
                    }
                    let had_error = decoder.error().is_some();
                    let (n, decoded) = decoder.decode(rest);
                    let error = decoder.error();
                    pos += n;
                    if let (false, Some(error)) = (had_error, error) {
                        s.fail(Failure::Data(error));
                    }
                    match decoded {
                        Decoded::Body(chunk) if s.failure.is_none() => {
                            s.deadline = Some(now.after(s.config.timeouts.data_block));
                            return (pos, Some(chunk));
                        }
                        Decoded::End => {
                            // Report the decoder's error by precedence, not by arrival.
                            if let (Some(Failure::Data(_)), Some(error)) = (s.failure, error) {
                                s.failure = Some(Failure::Data(error));
                            }
                            s.mode = Mode::Command;
                            s.end_of_message(None);
                            s.arm_unless_pending(now);
                        }
                        _ => s.deadline = Some(now.after(s.config.timeouts.data_block)),
                    }
                }
                Mode::Bdat {
                    size,
                    remaining,
                    last,
                } => {
                    if *remaining == 0 {
                        let (size, last) = (*size, *last);
                        s.mode = Mode::Command;
                        s.end_of_message(Some((size, last)));
                        s.arm_unless_pending(now);
                        continue;
                    }
                    if rest.is_empty() {
                        return (pos, None);
                    }
                    let take = take_octets(remaining, rest);
                    pos += take;
                    s.deadline = Some(now.after(s.config.timeouts.data_block));
                    if s.failure.is_none() {
                        return (pos, Some(&rest[..take]));
                    }
                }
                Mode::Discard { remaining } => {
                    if *remaining == 0 {
                        s.mode = Mode::Command;
                        s.held = 0;
                        s.arm(now);
                        continue;
                    }
                    if rest.is_empty() {
                        return (pos, None);
                    }
                    pos += take_octets(remaining, rest);
                    s.deadline = Some(now.after(s.config.timeouts.data_block));
                }
            }
        }
    }

    /// The event awaiting a verdict, if any. It stays the same until [`resolve`](Self::resolve).
    pub fn event(&self) -> Option<Event<'_>> {
        let s = &self.state;
        if let Some(reason) = s.abort {
            return Some(Event::DataAbort(reason));
        }
        let line = self.line_str();
        Some(match s.pending? {
            Pending::Connect => Event::Connect,
            Pending::Hello { domain, extended } => Event::Hello {
                domain: domain.get(line),
                extended,
            },
            Pending::Mail { from, params, .. } => Event::Mail {
                from: from.get(line),
                params,
            },
            Pending::Rcpt { to } => Event::Rcpt { to: to.get(line) },
            Pending::DataStart { .. } => Event::DataStart,
            Pending::DataEnd => Event::DataEnd,
            Pending::Rset => Event::Rset,
            Pending::Quit => Event::Quit,
            Pending::Unknown { verb, arg } => Event::Unknown {
                verb: verb.get(line),
                arg: arg.map(|arg| arg.get(line)),
            },
            Pending::Closed(reason) => Event::Closed(reason),
        })
    }

    /// Applies the application's verdict on the current [`event`](Self::event).
    /// For notifications (`DataAbort`, `Rset`, `Quit`, `Closed`) the verdict is ignored.
    /// Call [`receive`](Self::receive) next (with `&[]` if no input is left): it goes on
    /// with the input and arms the next deadline.
    pub fn resolve(&mut self, verdict: Verdict<'_>) {
        let s = &mut self.state;
        if s.abort.take().is_some() {
            if s.envelope_stale {
                s.clear_envelope();
            }
            return;
        }
        let Some(pending) = s.pending.take() else {
            return;
        };
        s.rearm = true;
        let line = core::str::from_utf8(self.line.line()).unwrap_or_default();
        self.state.apply(pending, line, verdict);
        self.line.clear();
    }

    /// The handler refused the message content: drop the rest and answer `reply` at its end.
    pub fn refuse_data(&mut self, reply: Reply<'static>) {
        self.state
            .fail(Failure::Refused(reply.with_default_enhanced()));
    }

    /// Reply bytes waiting to be written.
    pub fn output(&self) -> &[u8] {
        let s = &self.state;
        &s.output[..s.output.len() - s.held]
    }

    /// Drops the first `n` octets of output (they were written).
    pub fn consume_output(&mut self, n: usize) {
        let shown = self.output().len();
        let output = &mut self.state.output;
        let n = n.min(shown);
        output.copy_within(n.., 0);
        output.truncate(output.len() - n);
    }

    /// The session is over: flush the output, then close the connection.
    pub fn is_closed(&self) -> bool {
        matches!(self.state.mode, Mode::Closed)
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.state.ended
    }

    /// No transaction is in progress: the session can be ended now without losing anything
    /// (used for graceful shutdown).
    pub fn is_idle(&self) -> bool {
        let s = &self.state;
        matches!(s.mode, Mode::Command)
            && s.pending.is_none()
            && s.abort.is_none()
            && s.envelope.mailfrom().is_none()
            && self.line.line().is_empty()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called, if ever. `None` while
    /// an event awaits its verdict; after [`resolve`](Self::resolve), the next
    /// [`receive`](Self::receive) arms the deadline (with its `now`), so a driver calls it,
    /// with the input left over or `&[]`, before it waits.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.state.deadline
    }

    /// Ends the session with `421` if the current phase's deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let s = &mut self.state;
        if matches!(s.mode, Mode::Closed) || s.deadline.is_none_or(|deadline| now < deadline) {
            return;
        }
        s.drop_held();
        s.abort_message(AbortReason::Timeout);
        let hostname = s.config.hostname;
        s.writer().format(
            421,
            Some(EnhancedCode(4, 4, 2)),
            format_args!("{hostname} Error: timeout exceeded"),
        );
        s.close(CloseReason::Timeout);
    }

    /// The server is stopping: ends the session with `421 4.3.2` (an open message is aborted,
    /// RFC 5321 3.8).
    pub fn shutdown(&mut self) {
        let s = &mut self.state;
        if matches!(s.mode, Mode::Closed) {
            return;
        }
        s.pending = None;
        s.drop_held();
        s.abort_message(AbortReason::Shutdown);
        let hostname = s.config.hostname;
        s.writer().format(
            421,
            Some(EnhancedCode(4, 3, 2)),
            format_args!("{hostname} Service shutting down, closing connection"),
        );
        s.close(CloseReason::Shutdown);
    }

    /// The connection is gone: ends the session (an open message is aborted).
    pub fn handle_disconnect(&mut self) {
        let s = &mut self.state;
        s.pending = None;
        s.drop_held();
        s.abort_message(AbortReason::Disconnected);
        s.close(CloseReason::Disconnected);
    }

    /// The session as Python's `SMTPChannel` attributes show it.
    pub fn context(&self) -> Context<'_> {
        let s = &self.state;
        Context {
            fqdn: s.config.hostname,
            peer: s.peer,
            smtp_state: match s.mode {
                Mode::Data(_) | Mode::Bdat { .. } => SmtpState::Data,
                _ => SmtpState::Command,
            },
            seen_greeting: s.envelope.greeting(),
            extended_smtp: s.extended,
            mailfrom: s.envelope.mailfrom(),
            mail_parameters: s.envelope.mail_parameters(),
            rcpttos: s.envelope.rcpttos(),
            mail_params: s.mail,
        }
    }

    fn line_str(&self) -> &str {
        core::str::from_utf8(self.line.line()).unwrap_or_default()
    }

    fn on_line(&mut self, status: LineStatus) {
        let s = &mut self.state;
        match status {
            LineStatus::TooLong => return s.bad_command(&replies::LINE_TOO_LONG),
            LineStatus::BareNewline => return s.bad_command(&replies::BARE_NEWLINE_IN_COMMAND),
            LineStatus::Complete => {}
        }
        let Ok(line) = core::str::from_utf8(self.line.line()) else {
            return s.bad_command(&replies::BAD_UTF8);
        };
        if line.len() > s.max_line_len(line) {
            return s.bad_command(&replies::LINE_TOO_LONG);
        }
        s.on_command(line, Command::parse(line));
    }
}

impl<'c, const OUT: usize, A: Arena> State<'c, OUT, A> {
    fn writer(&mut self) -> ReplyWriter<'_, OUT> {
        ReplyWriter::new(
            &mut self.output,
            self.config.extensions.enhanced_status_codes,
        )
    }

    fn reply(&mut self, reply: &Reply<'_>) {
        self.writer().reply(reply);
        if reply.closes() {
            self.abort_message(AbortReason::Disconnected);
            self.close(CloseReason::Unavailable);
        }
    }

    /// A reply without enhanced code (greeting, HELO/EHLO: RFC 2034 3).
    fn reply_plain(&mut self, reply: &Reply<'_>) {
        self.reply(&without_enhanced(*reply));
    }

    /// Counts a bad command; answers `reply` (in a refused session, the `503` every command
    /// but QUIT gets, RFC 5321 3.1), or `421` once over the limit.
    fn bad_command(&mut self, reply: &Reply<'_>) {
        if self.count_bad_command() {
            self.reply(if self.refused {
                &replies::SESSION_REFUSED
            } else {
                reply
            });
        }
    }

    /// Counts a bad command; past the limit, answers `421`, closes and returns false.
    fn count_bad_command(&mut self) -> bool {
        self.bad_commands += 1;
        if self.bad_commands <= self.config.limits.bad_commands {
            return true;
        }
        let hostname = self.config.hostname;
        self.abort_message(AbortReason::Disconnected);
        self.writer().format(
            421,
            Some(EnhancedCode(4, 7, 0)),
            format_args!("{hostname} Error: too many bad commands, closing connection"),
        );
        self.close(CloseReason::TooManyErrors);
        false
    }

    fn close(&mut self, reason: CloseReason) {
        if self.ended.is_none() {
            self.ended = Some(reason);
            self.pending = Some(Pending::Closed(reason));
        }
        self.mode = Mode::Closed;
        self.deadline = None;
    }

    /// Answers a refused command; a BDAT chunk's octets are read and discarded first, with
    /// the reply held back until then (RFC 3030 2: the server "MUST accept and discard the
    /// associated message data before sending the appropriate 5XX or 4XX code").
    fn refuse(&mut self, reply: &Reply<'_>, chunk: Option<u64>) {
        match chunk {
            Some(size) if size > 0 && !reply.closes() => {
                let start = self.output.len();
                self.writer().reply(reply);
                self.held = self.output.len() - start;
                self.mode = Mode::Discard { remaining: size };
            }
            _ => self.reply(reply),
        }
    }

    /// The session ends before a refused chunk was read: its held reply is never sent.
    fn drop_held(&mut self) {
        let shown = self.output.len() - self.held;
        self.output.truncate(shown);
        self.held = 0;
    }

    fn arm(&mut self, now: Instant) {
        let timeouts = self.config.timeouts;
        self.deadline = match self.mode {
            Mode::Command => Some(now.after(timeouts.command)),
            Mode::Closed => None,
            _ => Some(now.after(timeouts.data_block)),
        };
    }

    fn arm_unless_pending(&mut self, now: Instant) {
        if self.pending.is_none() {
            self.arm(now);
        } else {
            self.deadline = None;
        }
    }

    /// Longest command line content (without CRLF) allowed for `line`.
    fn max_line_len(&self, line: &str) -> usize {
        let ext = self.config.extensions;
        let mut max = self.config.limits.command_line.saturating_sub(2);
        let is_mail = line
            .get(..4)
            .is_some_and(|verb| verb.eq_ignore_ascii_case("MAIL"));
        if self.extended && is_mail {
            max += if ext.size { 26 } else { 0 } + if ext.smtputf8 { 10 } else { 0 };
        }
        max
    }

    /// If the open message is still to be delivered, it never will: tell the handler.
    fn abort_message(&mut self, reason: AbortReason) {
        if self.message_open {
            self.message_open = false;
            self.abort = Some(reason);
        }
    }

    /// Records why the open message will be refused (the first reason wins). A handler's
    /// refusal aborts the message at once; a decoder error at the end of data, with the
    /// decoder's final verdict (which does not depend on how the input was split).
    fn fail(&mut self, failure: Failure) {
        if self.failure.is_some() {
            return;
        }
        self.failure = Some(failure);
        if let Failure::Refused(_) = failure {
            self.abort_message(AbortReason::Refused);
        }
    }

    fn reset_transaction(&mut self) {
        self.abort_message(AbortReason::Reset);
        if self.abort.is_some() {
            // The `DataAbort` notification still shows the aborted transaction.
            self.envelope_stale = true;
        } else {
            self.clear_envelope();
        }
        self.bdat_used = false;
        self.bdat_total = 0;
        self.failure = None;
    }

    fn clear_envelope(&mut self) {
        self.envelope.reset();
        self.mail = MailParams::default();
        self.envelope_stale = false;
    }

    /// The end of DATA (`bdat == None`) or of a BDAT chunk.
    fn end_of_message(&mut self, bdat: Option<(u64, bool)>) {
        if let Some(failure) = self.failure.take() {
            self.abort_message(match failure {
                Failure::Data(DataError::TooBig) => AbortReason::TooBig,
                Failure::Data(DataError::BareLf | DataError::BareCr) => AbortReason::BareNewline,
                Failure::Data(DataError::LineTooLong) => AbortReason::LineTooLong,
                Failure::Refused(_) => AbortReason::Refused,
            });
            let reply = match failure {
                Failure::Data(DataError::TooBig) => replies::TOO_MUCH_DATA,
                Failure::Data(DataError::BareLf) => replies::BARE_LF,
                Failure::Data(DataError::BareCr) => replies::BARE_CR,
                Failure::Data(DataError::LineTooLong) => replies::TEXT_LINE_TOO_LONG,
                Failure::Refused(reply) => reply,
            };
            self.reply(&reply);
            self.reset_transaction();
            return;
        }
        match bdat {
            None | Some((_, true)) => self.pending = Some(Pending::DataEnd),
            Some((size, false)) => self.writer().format(
                250,
                Some(EnhancedCode(2, 0, 0)),
                format_args!("{size} octets received"),
            ),
        }
    }

    /// The checks made before looking at the arguments (Python smtpd's, and BDAT's).
    fn sequence_error(&self, verb: Verb) -> Option<Reply<'static>> {
        let greeted = self.envelope.greeting().is_some();
        let has_mail = self.envelope.mailfrom().is_some();
        let has_rcpt = self.envelope.rcpt_count() > 0;
        match verb {
            Verb::Mail | Verb::Rcpt | Verb::Data | Verb::Bdat if !greeted => {
                Some(replies::SEND_HELO_FIRST)
            }
            Verb::Bdat if !self.extended => Some(replies::BDAT_NEEDS_EHLO),
            Verb::Rcpt | Verb::Bdat if !has_mail => Some(replies::NEED_MAIL),
            Verb::Data | Verb::Bdat if !has_rcpt => Some(replies::NEED_RCPT),
            // Handlers may have recorded the recipients with the first chunk.
            Verb::Rcpt if self.bdat_used => Some(replies::RCPT_AFTER_BDAT),
            _ => None,
        }
    }

    fn on_command(&mut self, line: &str, parsed: Result<Command<'_>, CommandError>) {
        let verb = match parsed {
            Ok(Command::Bdat { .. }) if !self.config.extensions.chunking => None,
            Ok(command) => command_verb(&command),
            Err(
                CommandError::Syntax(verb)
                | CommandError::Address(verb, _)
                | CommandError::Parameters(verb),
            ) => Some(verb),
            Err(_) => None,
        };
        let chunk = match parsed {
            Ok(Command::Bdat { size, .. }) => Some(size),
            Err(CommandError::Syntax(Verb::Bdat)) => command::readable_chunk_size(line),
            _ => None,
        }
        .filter(|_| self.config.extensions.chunking);
        if self.refused && !matches!(parsed, Ok(Command::Quit)) {
            if self.count_bad_command() {
                let refused = match verb {
                    // RFC 2034 3: no enhanced code on a reply to HELO or EHLO.
                    Some(Verb::Helo | Verb::Ehlo) => without_enhanced(replies::SESSION_REFUSED),
                    _ => replies::SESSION_REFUSED,
                };
                self.refuse(&refused, chunk);
            }
            return;
        }
        if let Some(error) = verb.and_then(|verb| self.sequence_error(verb)) {
            return self.refuse(&error, chunk);
        }
        let extended = self.extended;
        match parsed {
            Err(CommandError::Empty | CommandError::BadVerb | CommandError::ControlCharacter) => {
                self.bad_command(&replies::BAD_SYNTAX)
            }
            Err(CommandError::Syntax(verb)) => {
                let reply = replies::syntax_error(verb, extended);
                match verb {
                    Verb::Helo | Verb::Ehlo => self.bad_command(&without_enhanced(reply)),
                    // A malformed BDAT with a readable size: its chunk is skipped first.
                    _ if self.count_bad_command() => self.refuse(&reply, chunk),
                    _ => {}
                }
            }
            Err(CommandError::Parameters(verb)) => {
                self.bad_command(&replies::parameters_error(verb, extended))
            }
            Err(CommandError::Address(verb, error)) => self.bad_command(&match error {
                AddressError::Syntax => replies::syntax_error(verb, extended),
                AddressError::LocalPartTooLong => replies::LOCAL_PART_TOO_LONG,
                AddressError::DomainTooLong => replies::DOMAIN_TOO_LONG,
                AddressError::PathTooLong => replies::PATH_TOO_LONG,
            }),
            Ok(command) => self.on_valid_command(line, command),
        }
    }

    fn on_valid_command(&mut self, line: &str, command: Command<'_>) {
        let extended = self.extended;
        match command {
            Command::Helo(domain) | Command::Ehlo(domain) if domain.len() > 255 => {
                self.bad_command(&without_enhanced(replies::HELO_TOO_LONG))
            }
            Command::Helo(domain) => self.raise(Pending::Hello {
                domain: Span::of(line, domain),
                extended: false,
            }),
            Command::Ehlo(domain) => self.raise(Pending::Hello {
                domain: Span::of(line, domain),
                extended: true,
            }),
            Command::Mail { params, .. } | Command::Rcpt { params, .. }
                if !extended && !params.is_empty() =>
            {
                // Python smtpd's reply, with the code for invalid arguments: the path was fine.
                let verb = command_verb(&command).unwrap_or(Verb::Mail);
                self.bad_command(&replies::parameters_error(verb, false))
            }
            Command::Mail { from, params } => {
                if self.envelope.mailfrom().is_some() {
                    return self.reply(&replies::NESTED_MAIL);
                }
                let written = Span::of(line, params.0);
                let params = match self.mail_params(params) {
                    Ok(params) => params,
                    Err(reply) => return self.bad_command(&reply),
                };
                if from.utf8 && !params.smtputf8 {
                    return self.bad_command(&replies::NEEDS_SMTPUTF8);
                }
                self.raise(Pending::Mail {
                    from: Span::of(line, from.mailbox),
                    params,
                    written,
                });
            }
            Command::Rcpt { to, params } => {
                if !params.is_empty() {
                    return self.bad_command(&replies::RCPT_PARAMS_UNKNOWN);
                }
                if to.is_null() {
                    return self.bad_command(&replies::NULL_RECIPIENT);
                }
                if to.utf8 && !self.mail.smtputf8 {
                    return self.bad_command(&replies::NEEDS_SMTPUTF8);
                }
                if self.envelope.rcpt_count() >= self.config.limits.recipients
                    || !self.envelope.has_room_for(to.mailbox)
                {
                    return self.reply(&replies::TOO_MANY_RECIPIENTS);
                }
                self.raise(Pending::Rcpt {
                    to: Span::of(line, to.mailbox),
                });
            }
            Command::Data if self.bdat_used => self.reply(&replies::DATA_AFTER_BDAT),
            Command::Data if self.mail.body == Body::BinaryMime => {
                self.reply(&replies::BINARYMIME_NEEDS_BDAT)
            }
            Command::Data => self.raise(Pending::DataStart { bdat: None }),
            Command::Bdat { size, last } if self.config.extensions.chunking => {
                self.on_bdat(size, last)
            }
            Command::Bdat { .. } => {
                let (verb, arg) = split_verb(line);
                self.unknown(line, verb, arg)
            }
            Command::Rset => {
                self.abort_message(AbortReason::Reset);
                self.raise(Pending::Rset);
            }
            Command::Noop => self.reply(&replies::OK),
            Command::Quit => {
                self.abort_message(AbortReason::Reset);
                self.raise(Pending::Quit);
            }
            Command::Help(topic) => self.help(topic),
            Command::Vrfy(user) => match parse_user(self.without_smtputf8(user)) {
                Ok(_) => self.reply(&replies::CANNOT_VRFY),
                Err(_) => {
                    if self.count_bad_command() {
                        self.writer().format(
                            501,
                            Some(EnhancedCode(5, 1, 3)),
                            format_args!("Could not VRFY {user}"),
                        );
                    }
                }
            },
            Command::Expn(_) => self.bad_command(&replies::EXPN_NOT_IMPLEMENTED),
            Command::Unknown { verb, arg } => self.unknown(line, verb, arg),
        }
    }

    /// A VRFY argument without its `SMTPUTF8` parameter (RFC 6531 3.7.4.2), when offered.
    fn without_smtputf8<'l>(&self, argument: &'l str) -> &'l str {
        match argument.rsplit_once(' ') {
            Some((user, keyword))
                if self.config.extensions.smtputf8 && keyword.eq_ignore_ascii_case("SMTPUTF8") =>
            {
                user.trim_end()
            }
            _ => argument,
        }
    }

    fn unknown(&mut self, line: &str, verb: &str, arg: Option<&str>) {
        self.raise(Pending::Unknown {
            verb: Span::of(line, verb),
            arg: arg.map(|arg| Span::of(line, arg)),
        });
    }

    fn raise(&mut self, pending: Pending) {
        self.pending = Some(pending);
    }

    fn on_bdat(&mut self, size: u64, last: bool) {
        let total = self.bdat_total.saturating_add(size);
        if self
            .config
            .limits
            .message_size
            .is_some_and(|max| total > max)
        {
            self.abort_message(AbortReason::TooBig);
            self.reset_transaction();
            return self.refuse(&replies::TOO_MUCH_DATA, Some(size));
        }
        if self.message_open {
            self.start_chunk(size, last);
        } else {
            self.raise(Pending::DataStart {
                bdat: Some((size, last)),
            });
        }
    }

    fn start_chunk(&mut self, size: u64, last: bool) {
        self.bdat_used = true;
        self.bdat_total += size;
        self.mode = Mode::Bdat {
            size,
            remaining: size,
            last,
        };
    }

    fn help(&mut self, topic: Option<&str>) {
        let extended = self.extended;
        match topic.map(Verb::from_name) {
            Some(Some(verb)) => {
                self.reply(&Reply::new(214, (2, 0, 0), replies::syntax(verb, extended)))
            }
            topic => {
                // An unknown topic is a bad command, like any syntax error.
                if topic.is_some() && !self.count_bad_command() {
                    return;
                }
                let code = if topic.is_none() { 214 } else { 501 };
                let enhanced = if topic.is_none() {
                    (2, 0, 0)
                } else {
                    (5, 5, 4)
                };
                let bdat = if self.config.extensions.chunking {
                    " BDAT"
                } else {
                    ""
                };
                self.writer().line(
                    code,
                    Some(EnhancedCode(enhanced.0, enhanced.1, enhanced.2)),
                    true,
                    &[
                        "Supported commands: EHLO HELO MAIL RCPT DATA",
                        bdat,
                        " RSET NOOP QUIT VRFY",
                    ],
                );
            }
        }
    }

    /// Validates MAIL parameters against the enabled extensions (RFC 1870, 6152, 6531, 3030).
    fn mail_params(&self, params: Params<'_>) -> Result<MailParams, Reply<'static>> {
        let ext = self.config.extensions;
        let syntax = replies::parameters_error(Verb::Mail, true);
        let mut mail = MailParams::default();
        let (mut size_seen, mut body_seen, mut unknown) = (false, false, false);
        for param in params.iter() {
            let param = param.map_err(|_| syntax)?;
            let keyword = param.keyword;
            if keyword.eq_ignore_ascii_case("SIZE") {
                let value = param.value.ok_or(syntax)?;
                if size_seen || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(if size_seen {
                        replies::DUPLICATE_PARAMETER
                    } else {
                        syntax
                    });
                }
                size_seen = true;
                let size = value.parse::<u64>().unwrap_or(u64::MAX);
                if self
                    .config
                    .limits
                    .message_size
                    .is_some_and(|max| size > max)
                {
                    return Err(replies::SIZE_EXCEEDS_LIMIT);
                }
                mail.size = Some(size);
            } else if ext.eight_bit_mime && keyword.eq_ignore_ascii_case("BODY") {
                if body_seen {
                    return Err(replies::DUPLICATE_PARAMETER);
                }
                body_seen = true;
                let binary = ext.binarymime && ext.chunking;
                let value = param.value.unwrap_or_default();
                mail.body = if value.eq_ignore_ascii_case("7BIT") {
                    Body::SevenBit
                } else if value.eq_ignore_ascii_case("8BITMIME") {
                    Body::EightBitMime
                } else if binary && value.eq_ignore_ascii_case("BINARYMIME") {
                    Body::BinaryMime
                } else if binary {
                    return Err(replies::BAD_BODY_BINARY);
                } else {
                    return Err(replies::BAD_BODY);
                };
            } else if ext.smtputf8 && keyword.eq_ignore_ascii_case("SMTPUTF8") {
                if param.value.is_some() {
                    return Err(replies::SMTPUTF8_TAKES_NO_ARGUMENTS);
                }
                if mail.smtputf8 {
                    return Err(replies::DUPLICATE_PARAMETER);
                }
                mail.smtputf8 = true;
            } else {
                unknown = true;
            }
        }
        // Like Python smtpd: errors in known parameters first, unknown ones last.
        if unknown {
            return Err(replies::MAIL_PARAMS_UNKNOWN);
        }
        Ok(mail)
    }

    /// Applies a verdict on `pending`, whose spans point into `line`.
    fn apply(&mut self, pending: Pending, line: &str, verdict: Verdict<'_>) {
        let custom = match verdict {
            // A handler's reply, often passed on from another server, gets a default enhanced
            // code (RFC 2034 3); the greeting's is written as given, HELO/EHLO's without.
            Verdict::Reply(reply) if matches!(pending, Pending::Connect) => {
                Some(step_code(pending, reply))
            }
            Verdict::Reply(reply) => Some(step_code(pending, reply).with_default_enhanced()),
            Verdict::Accept => None,
        };
        // As the reply goes out: `step_code` may have made an acceptance a refusal.
        let accepted = custom.is_none_or(|reply| reply.is_positive());
        match pending {
            Pending::Connect => match custom {
                Some(reply) if !accepted => {
                    // A 554 greeting: the session waits for QUIT (RFC 5321 3.1); 421 closes.
                    self.reply(&reply);
                    self.refused = true;
                }
                Some(reply) => self.reply_plain(&reply),
                None => {
                    let (hostname, banner) = (self.config.hostname, self.config.banner);
                    self.writer()
                        .line(220, None, true, &[hostname, " ", banner]);
                }
            },
            Pending::Hello { domain, extended } => {
                // RFC 2034 3: no enhanced code on any reply to HELO or EHLO.
                if !accepted {
                    return self.reply_plain(&custom.unwrap_or(replies::OK));
                }
                self.reset_transaction();
                if self.envelope.set_greeting(domain.get(line)).is_err() {
                    return self.reply_plain(&replies::INSUFFICIENT_STORAGE);
                }
                self.extended = extended;
                match custom {
                    Some(reply) if !extended => self.reply_plain(&reply),
                    _ if extended => self.ehlo_reply(),
                    _ => {
                        let hostname = self.config.hostname;
                        self.writer().line(250, None, true, &[hostname]);
                    }
                }
            }
            Pending::Mail {
                from,
                params,
                written,
            } => {
                if accepted {
                    if self
                        .envelope
                        .set_mailfrom(from.get(line), written.get(line))
                        .is_err()
                    {
                        return self.reply(&replies::INSUFFICIENT_STORAGE);
                    }
                    self.mail = params;
                }
                self.reply(&custom.unwrap_or(replies::MAIL_OK));
            }
            Pending::Rcpt { to } => {
                if accepted && self.envelope.add_rcpt(to.get(line)).is_err() {
                    return self.reply(&replies::TOO_MANY_RECIPIENTS);
                }
                self.reply(&custom.unwrap_or(replies::RCPT_OK));
            }
            Pending::DataStart { bdat } => {
                if !accepted {
                    let chunk = bdat.map(|(size, _)| size);
                    if chunk.is_some() {
                        // RFC 3030 2: a refused chunk fails the transaction, so chunks the
                        // client pipelined after it get 503 and are skipped, not taken for a
                        // message of their own (as after a refusal of a later chunk).
                        self.reset_transaction();
                    }
                    return self.refuse(&custom.unwrap_or(replies::OK), chunk);
                }
                self.message_open = true;
                self.failure = None;
                match bdat {
                    Some((size, last)) => self.start_chunk(size, last),
                    None => {
                        let limits = self.config.limits;
                        self.mode = Mode::Data(DataDecoder::new(
                            self.config.bare_newline,
                            limits.text_line,
                            limits.message_size,
                        ));
                        match custom {
                            Some(reply) if reply.code == 354 => self.reply(&reply),
                            _ => self.reply(&replies::START_DATA),
                        }
                    }
                }
            }
            Pending::DataEnd => {
                self.message_open = false;
                if accepted {
                    // A client that delivers is not an abuser (Postfix's hard error limit
                    // counts errors "without delivering mail" too).
                    self.bad_commands = 0;
                }
                self.reply(&custom.unwrap_or(replies::OK));
                self.reset_transaction();
            }
            Pending::Rset => {
                self.reset_transaction();
                self.reply(&replies::OK);
            }
            Pending::Quit => {
                self.reply(&replies::BYE);
                self.close(CloseReason::Quit);
            }
            Pending::Closed(_) => {}
            Pending::Unknown { verb, .. } => match custom {
                Some(reply) => self.reply(&reply),
                None => {
                    if self.count_bad_command() {
                        let verb = Uppercase(verb.get(line));
                        self.writer().format(
                            500,
                            Some(EnhancedCode(5, 5, 1)),
                            format_args!("Error: command \"{verb}\" not recognized"),
                        );
                    }
                }
            },
        }
    }

    /// The EHLO reply: host name, then one keyword per enabled extension (RFC 5321 4.1.1.1).
    fn ehlo_reply(&mut self) {
        let config = self.config;
        let ext = config.extensions;
        // "SIZE " and the 20 digits of the largest u64.
        let mut size = heapless::String::<25>::new();
        let _ = match config.limits.message_size {
            Some(limit) if ext.size => fmt::write(&mut size, format_args!("SIZE {limit}")),
            _ => fmt::write(&mut size, format_args!("SIZE")),
        };
        let keywords = [
            (ext.pipelining, "PIPELINING"),
            (ext.size, size.as_str()),
            (ext.eight_bit_mime, "8BITMIME"),
            (ext.smtputf8, "SMTPUTF8"),
            (ext.enhanced_status_codes, "ENHANCEDSTATUSCODES"),
            (ext.chunking, "CHUNKING"),
            (ext.chunking && ext.binarymime, "BINARYMIME"),
            (true, "HELP"),
        ];
        let mut writer = self.writer();
        writer.line(250, None, false, &[config.hostname]);
        let mut enabled = keywords.iter().filter(|(on, _)| *on).peekable();
        while let Some((_, keyword)) = enabled.next() {
            writer.line(250, None, enabled.peek().is_none(), &[keyword]);
        }
    }
}

/// Takes up to `remaining` octets of a BDAT chunk from `input`; returns how many.
fn take_octets(remaining: &mut u64, input: &[u8]) -> usize {
    let take = input
        .len()
        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
    *remaining -= take as u64;
    take
}

/// A handler's `reply` to `pending` with a code RFC 5321 4.3.2 allows at that step. An
/// accepting reply takes the step's success code: `220` greeting; `250` HELO/EHLO, MAIL and
/// end of data (where only a 2xx accepts: a 3xx there is a local error, `451 4.3.0`);
/// `250` or `251` RCPT. The handler accepted, so the client must read an
/// acceptance the step allows (a `200` or `354` to RCPT reads as a refusal to most clients,
/// though the recipient was taken). A refusing greeting is `554` (5xx) or `421` (anything
/// else, a code that is no reply at all included). Other refusals, the DATA reply and
/// replies to the handler's own commands are left alone.
fn step_code(pending: Pending, reply: Reply<'_>) -> Reply<'_> {
    if matches!(pending, Pending::DataEnd) && reply.code / 100 == 3 {
        // Only a 2xx says a message was handed on: a 3xx after the content is no verdict.
        return Reply {
            code: 451,
            enhanced: Some(EnhancedCode(4, 3, 0)),
            ..reply
        };
    }
    let positive = reply.is_positive();
    let code = match pending {
        Pending::Connect if !positive && reply.code / 100 == 5 => 554,
        Pending::Connect if !positive => 421,
        _ if !positive => reply.code,
        Pending::Connect => 220,
        Pending::Hello { .. } | Pending::Mail { .. } | Pending::DataEnd => 250,
        Pending::Rcpt { .. } if reply.code == 251 => 251,
        Pending::Rcpt { .. } => 250,
        Pending::DataStart { .. }
        | Pending::Rset
        | Pending::Quit
        | Pending::Unknown { .. }
        | Pending::Closed(_) => reply.code,
    };
    Reply { code, ..reply }
}

fn without_enhanced(reply: Reply<'_>) -> Reply<'_> {
    Reply {
        enhanced: None,
        ..reply
    }
}

fn command_verb(command: &Command<'_>) -> Option<Verb> {
    Some(match command {
        Command::Helo(_) => Verb::Helo,
        Command::Ehlo(_) => Verb::Ehlo,
        Command::Mail { .. } => Verb::Mail,
        Command::Rcpt { .. } => Verb::Rcpt,
        Command::Data => Verb::Data,
        Command::Bdat { .. } => Verb::Bdat,
        Command::Rset => Verb::Rset,
        Command::Noop => Verb::Noop,
        Command::Quit => Verb::Quit,
        Command::Help(_) => Verb::Help,
        Command::Vrfy(_) => Verb::Vrfy,
        Command::Expn(_) => Verb::Expn,
        Command::Unknown { .. } => return None,
    })
}

/// Displays ASCII text upper-cased (Python smtpd upper-cases unknown verbs).
struct Uppercase<'a>(&'a str);

impl fmt::Display for Uppercase<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .chars()
            .try_for_each(|c| fmt::Write::write_char(f, c.to_ascii_uppercase()))
    }
}
