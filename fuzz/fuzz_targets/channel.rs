//! A `Channel` (default capacities) driven like a frontend would, by fuzz-chosen input pieces,
//! verdicts, output flushes and clock jumps.
//!
//! Input layout: `[ext] [cfg] [n] [n control octets] [client stream...]`.
//! - `ext`: one bit per extension (pipelining, size, 8bitmime, smtputf8, enhanced status
//!   codes, chunking, binarymime); bit 7: the peer address is known.
//! - `cfg`: bits 0-1 bare-newline policy; bit 2 small limits (text line 40, message 200);
//!   bit 3 at most 2 recipients; bit 4 unlimited bad commands; bit 5 no text line / size
//!   limit; bit 6 command line limit 64; bit 7 one-second timeouts.
//! - control octets, read in order and then defaulting (whole pieces, accept, full flush):
//!   piece lengths, clock steps, verdicts (accept, or a reply with a fuzz-chosen code, with or
//!   without enhanced code, and a text of fuzz-chosen characters including CR, LF, NUL, DEL,
//!   C1 controls, U+2028 and long runs), partial output flushes, `refuse_data` on chunks, and
//!   how the session ends (input end, disconnect, timeout, or server shutdown).
//!
//! Checks:
//! - no panic, no livelock (bounded number of driver steps);
//! - the output is a sequence of well-formed reply lines: 3 digits in 200..=599, ' ' or '-',
//!   printable US-ASCII text (so no CR/LF), CRLF, at most 512 octets; a '-'
//!   line is followed by a line of the same code; when the driver is done, the output ends
//!   with a complete reply;
//! - `receive` keeps its contract: it stops without a chunk only when an event is pending,
//!   the output needs flushing (less than `OUTPUT_RESERVE` free) or the input is used up, so
//!   the session never makes zero progress with input left, output empty and no event; a
//!   chunk is non-empty and lies inside the consumed input (or is one of the DATA decoder's
//!   static CR/LF/CRLF (and Normalize's LF CR, LF CRLF) insertions); while an event is pending nothing is consumed and
//!   nothing is written; after `is_closed()` all input is consumed and nothing more is
//!   written;
//! - `event()` is stable until `resolve`; events are well-formed (HELO/EHLO domain 1-255
//!   octets, RCPT non-empty, unknown verbs printable ASCII);
//! - the handler ordering contract: content chunks and `DataEnd`/`DataAbort` only for an
//!   accepted `DataStart`, exactly one of them ends each message, RSET and QUIT come after
//!   the open message's `DataAbort`, and once closed no message is left open; a closed
//!   session raises `Closed` exactly once, with its `close_reason()`, and no event after it;
//! - `consume_output(n)` drops exactly the first `n` octets; `handle_timeout` closes the
//!   session iff its deadline has passed; `handle_disconnect` and `shutdown` always close it
//!   (and `shutdown` of a closed session writes nothing); `is_idle()` never holds while a
//!   message is open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd_core::channel::{capacity, OUTPUT_RESERVE};
use smtpd_core::reply::{EnhancedCode, MAX_REPLY_LINE};
use smtpd_core::{BareNewline, Channel, Config, Event, Extensions, Instant, Reply, Verdict};

/// Control octets, then defaults.
struct Ctl<'a> {
    bytes: &'a [u8],
}

impl Ctl<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(b)
    }
}

const CODES: [u16; 20] = [
    220, 221, 250, 251, 252, 354, 421, 450, 451, 452, 500, 501, 502, 503, 550, 552, 553, 554, 214,
    334,
];

/// Characters a reply text is made of: ASCII (controls included) plus these for high octets.
const WIDE: [char; 8] = [
    'é',
    '\u{85}',
    '\u{2028}',
    '€',
    '\u{1F600}',
    '\u{9F}',
    '\u{FEFF}',
    'ß',
];

/// `refuse_data` replies (they must be `'static`).
const REFUSALS: [Reply<'static>; 4] = [
    Reply::new(452, (4, 3, 1), "Insufficient system storage"),
    Reply::new(554, (5, 7, 1), "spam\r\n250 smuggled\0"),
    Reply::plain(421, "closing\nnow"),
    Reply::plain(99, "bad code\u{85}"),
];

fn text(ctl: &mut Ctl<'_>) -> String {
    match ctl.next() {
        None => String::new(),
        Some(0xff) => "x".repeat(600),
        Some(0xfe) => "é".repeat(300),
        Some(0xfd) => "line\n".repeat(150),
        Some(n) => (0..n % 40)
            .map_while(|_| ctl.next())
            .map(|b| {
                if b < 0x80 {
                    char::from(b)
                } else {
                    WIDE[usize::from(b) % WIDE.len()]
                }
            })
            .collect(),
    }
}

fn code(ctl: &mut Ctl<'_>) -> u16 {
    match ctl.next() {
        None => 250,
        Some(c) if c & 0x80 != 0 => u16::from_le_bytes([c & 0x7f, ctl.next().unwrap_or(0)]) % 1000,
        Some(c) => CODES[usize::from(c) % CODES.len()],
    }
}

fn config(ext: u8, cfg: u8) -> Config<'static> {
    let bit = |b: u8, n: u8| b & (1 << n) != 0;
    let mut config = Config::new("fqdn.example");
    config.extensions = Extensions {
        pipelining: bit(ext, 0),
        size: bit(ext, 1),
        eight_bit_mime: bit(ext, 2),
        smtputf8: bit(ext, 3),
        enhanced_status_codes: bit(ext, 4),
        chunking: bit(ext, 5),
        binarymime: bit(ext, 6),
    };
    config.bare_newline = match cfg & 3 {
        1 => BareNewline::Normalize,
        2 => BareNewline::Allow,
        _ => BareNewline::Reject,
    };
    if bit(cfg, 2) {
        config.limits.text_line = Some(40);
        config.limits.message_size = Some(200);
    }
    if bit(cfg, 3) {
        config.limits.recipients = 2;
    }
    if bit(cfg, 4) {
        config.limits.bad_commands = u32::MAX;
    }
    if bit(cfg, 5) {
        config.limits.text_line = None;
        config.limits.message_size = None;
    }
    if bit(cfg, 6) {
        config.limits.command_line = 64;
    }
    if bit(cfg, 7) {
        config.timeouts.command = core::time::Duration::from_secs(1);
        config.timeouts.data_block = core::time::Duration::from_secs(1);
    }
    config
}

type Chan<'c> = Channel<'c>;

struct Driver<'c> {
    ch: Chan<'c>,
    /// Everything written so far (consumed output).
    transcript: Vec<u8>,
    /// Total output octets (transcript plus buffered) when the session was seen closed.
    closed_at: Option<usize>,
    /// A `DataStart` was accepted and neither `DataEnd` nor `DataAbort` was seen.
    message_open: bool,
    /// `Closed` was raised: no event may follow.
    closed_heard: bool,
    now: u64,
}

impl Driver<'_> {
    fn total_output(&self) -> usize {
        self.transcript.len() + self.ch.output().len()
    }

    /// Called after every operation: once closed, the output must not grow.
    fn observe(&mut self) {
        if self.ch.is_idle() {
            assert!(!self.message_open, "is_idle() with a message open");
        }
        let total = self.total_output();
        match self.closed_at {
            Some(at) => assert_eq!(total, at, "output written after the session closed"),
            None if self.ch.is_closed() => self.closed_at = Some(total),
            None => {}
        }
    }

    /// After `shutdown`: its 421 is the one reply allowed to follow a close it caused.
    fn observe_shutdown(&mut self) {
        if self.closed_at.is_none() {
            self.closed_at = Some(self.total_output());
        }
        self.observe();
    }

    /// Resolves the pending event, if any; returns whether there was one.
    fn resolve_event(&mut self, ctl: &mut Ctl<'_>, offered: &[u8]) -> bool {
        let Some(event) = self.ch.event() else {
            return false;
        };
        assert_eq!(
            self.ch.event(),
            Some(event),
            "event() changed without resolve"
        );
        check_event(&event);
        assert!(!self.closed_heard, "{event:?} after Closed");
        let shown = format!("{event:?}");
        let is_data_start = event == Event::DataStart;
        match event {
            Event::DataStart => assert!(!self.message_open, "DataStart inside a message"),
            // RSET and QUIT end the transaction: the open message is aborted first.
            Event::Rset | Event::Quit => assert!(
                !self.message_open,
                "{event:?} while a message is open (no DataAbort first)"
            ),
            Event::DataEnd | Event::DataAbort(_) => {
                assert!(self.message_open, "{event:?} without an accepted DataStart");
                self.message_open = false;
            }
            Event::Closed(reason) => {
                assert!(self.ch.is_closed(), "Closed while the session is open");
                assert_eq!(self.ch.close_reason(), Some(reason));
                assert!(!self.message_open, "Closed while a message is open");
                self.closed_heard = true;
            }
            _ => {}
        }
        // While an event is pending, no input is consumed and nothing is written.
        let before = self.ch.output().to_vec();
        let (n, chunk) = self.ch.receive(offered, Instant::from_millis(self.now));
        assert_eq!(
            (n, chunk),
            (0, None),
            "input consumed while an event was pending"
        );
        assert_eq!(
            self.ch.output(),
            &before[..],
            "output written while an event was pending"
        );
        let after = self.ch.event().map(|e| format!("{e:?}"));
        assert_eq!(
            after.as_deref(),
            Some(&*shown),
            "receive changed the pending event"
        );

        let text = match ctl.next() {
            Some(v) if v % 4 == 3 => Some((code(ctl), v & 0x10 != 0, text(ctl))),
            _ => None,
        };
        let verdict = match &text {
            None => Verdict::Accept,
            Some((code, enhanced, text)) => Verdict::Reply(Reply {
                code: *code,
                enhanced: enhanced.then_some(EnhancedCode(5, 7, 1)),
                text,
            }),
        };
        if is_data_start && verdict.is_accept() {
            self.message_open = true;
        }
        self.ch.resolve(verdict);
        self.observe();
        true
    }

    /// Writes out the first `n` octets of output (all when `None`).
    fn flush(&mut self, n: Option<usize>) {
        let output = self.ch.output().to_vec();
        let n = n.map_or(output.len(), |n| n.min(output.len()));
        self.ch.consume_output(n);
        assert_eq!(self.ch.output(), &output[n..], "consume_output({n})");
        self.transcript.extend_from_slice(&output[..n]);
        self.observe();
    }

    fn timeout(&mut self) {
        let deadline = self.ch.poll_timeout();
        let was_closed = self.ch.is_closed();
        let before = self.ch.output().to_vec();
        let now = Instant::from_millis(self.now);
        self.ch.handle_timeout(now);
        let due = deadline.is_some_and(|d| now >= d);
        if due && !was_closed {
            assert!(self.ch.is_closed(), "deadline passed, session not closed");
        } else {
            assert_eq!(
                self.ch.is_closed(),
                was_closed,
                "timeout before the deadline"
            );
            assert_eq!(
                self.ch.output(),
                &before[..],
                "timeout wrote before the deadline"
            );
        }
        self.observe();
    }
}

fn check_event(event: &Event<'_>) {
    match *event {
        Event::Hello { domain, .. } => {
            assert!(
                !domain.is_empty() && domain.len() <= 255,
                "HELO domain {domain:?}"
            )
        }
        Event::Rcpt { to } => assert!(!to.is_empty(), "empty RCPT"),
        Event::Unknown { verb, arg } => {
            assert!(
                !verb.is_empty() && verb.bytes().all(|b| b.is_ascii_graphic()),
                "unknown verb {verb:?}"
            );
            assert!(arg.is_none_or(|a| !a.is_empty()), "empty argument");
        }
        _ => {}
    }
}

/// The output must be well-formed reply lines, ending with a whole reply.
fn check_transcript(out: &[u8]) {
    let mut rest = out;
    let mut open: Option<u16> = None;
    while let Some(k) = rest.windows(2).position(|w| w == b"\r\n") {
        let line = &rest[..k];
        let shown = String::from_utf8_lossy(line);
        assert!(
            k + 2 <= MAX_REPLY_LINE,
            "reply line over 512 octets: {shown:?}"
        );
        assert!(line.len() >= 4, "short reply line {shown:?}");
        assert!(
            line[..3].iter().all(u8::is_ascii_digit),
            "reply code {shown:?}"
        );
        let code = line[..3]
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        assert!(
            (200..=599).contains(&code),
            "reply code out of range: {shown:?}"
        );
        assert!(line[3] == b' ' || line[3] == b'-', "separator in {shown:?}");
        // RFC 5321 4.2: reply text is printable US-ASCII (`textstring`).
        assert!(
            line[4..].iter().all(|b| matches!(b, b' '..=b'~')),
            "reply text not printable US-ASCII: {shown:?}"
        );
        if let Some(open) = open {
            assert_eq!(code, open, "continuation of a {open} reply: {shown:?}");
        }
        open = (line[3] == b'-').then_some(code);
        rest = &rest[k + 2..];
    }
    assert!(
        rest.is_empty(),
        "output ends in a partial line {:?}",
        String::from_utf8_lossy(rest)
    );
    assert_eq!(open, None, "output ends inside a multi-line reply");
}

fuzz_target!(|data: &[u8]| {
    let [ext, cfg, n, tail @ ..] = data else {
        return;
    };
    let (ctl, stream) = tail.split_at(usize::from(*n).min(tail.len()));
    let mut ctl = Ctl { bytes: ctl };
    let config = config(*ext, *cfg);
    let peer = (ext & 0x80 != 0).then(|| "192.0.2.7:40000".parse().unwrap());
    let mut d = Driver {
        ch: Channel::new(&config, peer),
        transcript: Vec::new(),
        closed_at: None,
        message_open: false,
        closed_heard: false,
        now: 0,
    };

    let mut pos = 0; // consumed
    let mut avail = 0; // received so far
    let mut steps = 0usize;
    let max_steps = 16 * (data.len() + 64);
    loop {
        steps += 1;
        assert!(steps < max_steps, "livelock: {steps} driver steps");
        if d.resolve_event(&mut ctl, &stream[pos..avail]) {
            continue;
        }
        let offered = &stream[pos..avail];
        let was_closed = d.ch.is_closed();
        let (n, chunk) = d.ch.receive(offered, Instant::from_millis(d.now));
        assert!(n <= offered.len(), "consumed {n} of {}", offered.len());
        pos += n;
        d.observe();
        if let Some(chunk) = chunk {
            assert!(!was_closed, "content chunk after the close");
            assert!(d.message_open, "content chunk outside an accepted message");
            // Borrowed from the consumed input, or one of the DATA decoder's static
            // insertions (a bare CR/LF under Allow, CRLF under Normalize: smtpd_core::data).
            let (o, c) = (offered.as_ptr() as usize, chunk.as_ptr() as usize);
            assert!(
                (c >= o && c + chunk.len() <= o + n)
                    || (!(o..=o + offered.len()).contains(&c)
                        && [&b"\r"[..], b"\n", b"\r\n", b"\n\r", b"\n\r\n"].contains(&chunk)),
                "chunk {chunk:?} is neither consumed input nor a DATA insertion"
            );
            assert!(!chunk.is_empty(), "empty content chunk");
            if ctl.next().is_some_and(|r| r % 16 == 15) {
                let refusal = REFUSALS[usize::from(ctl.next().unwrap_or(0)) % REFUSALS.len()];
                d.ch.refuse_data(refusal);
                d.observe();
            }
            continue;
        }
        // No chunk: an event is pending, the output needs flushing, or the input is used up.
        let tight = capacity::OUT - d.ch.output().len() < OUTPUT_RESERVE;
        let event = d.ch.event().is_some();
        assert!(
            event || tight || n == offered.len(),
            "receive stopped at {n} of {} octets with no event and {} octets of output",
            offered.len(),
            d.ch.output().len()
        );
        if d.ch.is_closed() && !event && !tight {
            assert_eq!(n, offered.len(), "closed session left input unconsumed");
        }
        if event {
            continue;
        }
        // Write out the output, sometimes only part of it.
        let out_len = d.ch.output().len();
        if out_len > 0 {
            let part = match ctl.next() {
                Some(f) if f % 4 == 0 => Some(1 + usize::from(f) * 7 % out_len),
                _ => None,
            };
            d.flush(part);
            continue;
        }
        if pos < avail {
            continue; // receive stopped on tight output, now flushed
        }
        if avail == stream.len() {
            break;
        }
        // Read the next piece, possibly later.
        let piece = match ctl.next() {
            None | Some(0xff) => stream.len() - avail,
            Some(len) => usize::from(len),
        };
        avail = (avail + piece).min(stream.len());
        if let Some(step) = ctl.next() {
            d.now += match step {
                0..=199 => u64::from(step) * 10,
                _ => u64::from(step - 199) * 10_000,
            };
            d.timeout();
        }
    }

    // End of the stream: the client stays, goes away, falls silent, or the server stops.
    match ctl.next().map(|e| e % 4) {
        Some(1) => {
            d.ch.handle_disconnect();
            assert!(d.ch.is_closed(), "handle_disconnect did not close");
            d.observe();
        }
        Some(2) => {
            d.now += 86_400_000;
            d.timeout();
        }
        Some(3) => {
            d.ch.shutdown();
            assert!(d.ch.is_closed(), "shutdown did not close");
            d.observe_shutdown();
        }
        _ => {}
    }
    while d.resolve_event(&mut ctl, &[]) {}
    d.flush(None);
    if d.ch.is_closed() {
        assert!(
            !d.message_open,
            "session closed with a message neither ended nor aborted"
        );
        assert!(d.closed_heard, "session closed without its Closed event");
        let (n, chunk) = d.ch.receive(b"NOOP\r\n", Instant::from_millis(d.now));
        assert_eq!(
            (n, chunk),
            (6, None),
            "closed session did not discard input"
        );
        d.observe();
    }
    check_transcript(&d.transcript);
});
