//! Logs: one line per session (in the server) and one per message (this wrapper), written
//! by [`TextLayer`] (or `tracing-subscriber`'s JSON format) through [`BatchedStderr`].
#![allow(async_fn_in_trait)]

use std::cell::RefCell;
use std::fmt::{Debug, Write as _};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::Level;

use smtpd_core::handler::{AbortReason, CloseReason, Context, Handler, MailParams, Verdict};
use smtpd_core::Reply;

use crate::date::civil_from_days;

/// Wraps a handler, logging each message with peer, sender, recipients, size, outcome and
/// duration. All hooks are delegated unchanged.
pub struct Logged<H> {
    inner: H,
    peer: SocketAddr,
    size: u64,
    started: Option<Instant>,
    messages: usize,
}

impl<H> Logged<H> {
    pub fn new(inner: H, peer: SocketAddr) -> Self {
        Logged {
            inner,
            peer,
            size: 0,
            started: None,
            messages: 0,
        }
    }

    /// Messages accepted in this session.
    pub fn messages(&self) -> usize {
        self.messages
    }
}

/// One log line for a message that ended with `outcome`.
fn log_message(
    peer: SocketAddr,
    size: u64,
    started: Option<Instant>,
    cx: &Context<'_>,
    outcome: &dyn std::fmt::Display,
) {
    tracing::info!(
        peer = %peer,
        from = cx.mailfrom.unwrap_or_default(),
        to = %Recipients(cx),
        size,
        outcome = %outcome,
        ms = started.map_or(0, |t| t.elapsed().as_millis() as u64),
        "message"
    );
}

/// The recipients as `a@b,c@d`, formatted without collecting them.
struct Recipients<'a, 'c>(&'a Context<'c>);

impl std::fmt::Display for Recipients<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, rcpt) in self.0.rcpttos.clone().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(rcpt)?;
        }
        Ok(())
    }
}

impl<H: Handler> Handler for Logged<H> {
    async fn connect(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        self.inner.connect(cx).await
    }

    async fn hello(&mut self, cx: &Context<'_>, domain: &str, extended: bool) -> Verdict<'_> {
        self.inner.hello(cx, domain, extended).await
    }

    async fn mail(&mut self, cx: &Context<'_>, from: &str, params: &MailParams) -> Verdict<'_> {
        self.inner.mail(cx, from, params).await
    }

    async fn rcpt(&mut self, cx: &Context<'_>, to: &str) -> Verdict<'_> {
        self.inner.rcpt(cx, to).await
    }

    async fn data_start(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        self.size = 0;
        self.started = Some(Instant::now());
        let verdict = self.inner.data_start(cx).await;
        if let Verdict::Reply(reply) = verdict {
            if !verdict.is_accept() {
                log_message(self.peer, 0, self.started, cx, &reply.code);
            }
        }
        verdict
    }

    async fn data_chunk(&mut self, cx: &Context<'_>, chunk: &[u8]) -> Result<(), Reply<'static>> {
        self.size += chunk.len() as u64;
        self.inner.data_chunk(cx, chunk).await
    }

    async fn data_pause(&mut self, cx: &Context<'_>) -> Result<(), Reply<'static>> {
        self.inner.data_pause(cx).await
    }

    async fn data_end(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        let verdict = self.inner.data_end(cx).await;
        let code = match verdict {
            Verdict::Accept => 250,
            Verdict::Reply(reply) => reply.code,
        };
        if verdict.acknowledges_message() {
            self.messages += 1;
        }
        log_message(self.peer, self.size, self.started, cx, &code);
        verdict
    }

    async fn data_abort(&mut self, cx: &Context<'_>, reason: AbortReason) {
        let outcome = format_args!("aborted: {reason:?}");
        log_message(self.peer, self.size, self.started, cx, &outcome);
        self.inner.data_abort(cx, reason).await
    }

    async fn rset(&mut self, cx: &Context<'_>) {
        self.inner.rset(cx).await
    }

    async fn quit(&mut self, cx: &Context<'_>) {
        self.inner.quit(cx).await
    }

    async fn closed(&mut self, cx: &Context<'_>, reason: CloseReason) {
        self.inner.closed(cx, reason).await
    }

    async fn unknown(
        &mut self,
        cx: &Context<'_>,
        verb: &str,
        arg: Option<&str>,
    ) -> Option<Reply<'_>> {
        self.inner.unknown(cx, verb, arg).await
    }
}

/// Octets received or sent, for debug logs: escaped, and cut after 200 of them.
pub(crate) struct Traffic<'a>(pub &'a [u8]);

impl std::fmt::Display for Traffic<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 200;
        let shown = &self.0[..self.0.len().min(SHOWN)];
        write!(f, "{} octets: \"{}\"", self.0.len(), shown.escape_ascii())?;
        if shown.len() < self.0.len() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// Log output for busy servers: serving threads append each line to a shared buffer, and a
/// flusher thread writes it to stderr 50 ms after the first line (sooner past 64 KiB). So
/// logging costs the serving threads at most one wake-up of the flusher per batch, never a
/// write, and can never block them: when stderr does not keep up (a full pipe nobody
/// reads), lines beyond 1 MiB are dropped and counted, and the count is logged once stderr
/// drains. With nothing to write the flusher sleeps: an idle server wakes no thread.
#[derive(Clone, Debug)]
pub struct BatchedStderr {
    shared: Arc<(Mutex<Pending>, Condvar)>,
}

/// Log bytes not yet written.
#[derive(Debug, Default)]
struct Pending {
    buffer: Vec<u8>,
    dropped: u64,
}

impl BatchedStderr {
    const LIMIT: usize = 64 * 1024;
    const MAX_PENDING: usize = 1024 * 1024;
    const PERIOD: Duration = Duration::from_millis(50);
    /// How long the last flush at exit may wait for stderr.
    const EXIT_PATIENCE: Duration = Duration::from_secs(1);

    /// Starts the flusher thread.
    pub fn start() -> Self {
        let log = BatchedStderr {
            shared: Default::default(),
        };
        let flusher = log.clone();
        std::thread::Builder::new()
            .name("smtpd-log".into())
            .spawn(move || {
                let mut spare = Vec::new();
                loop {
                    spare = flusher.write_pending(spare, true);
                }
            })
            .expect("spawn the log flusher thread");
        log
    }

    /// Takes what is pending (after up to one period, when `wait`), writes it to stderr
    /// and returns the emptied buffer for reuse.
    fn write_pending(&self, spare: Vec<u8>, wait: bool) -> Vec<u8> {
        let (lock, wake) = &*self.shared;
        let mut pending = lock.lock().unwrap_or_else(|e| e.into_inner());
        if wait {
            while pending.buffer.is_empty() {
                pending = wake.wait(pending).unwrap_or_else(|e| e.into_inner());
            }
            if pending.buffer.len() < Self::LIMIT {
                pending = wake
                    .wait_timeout(pending, Self::PERIOD)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        let mut out = std::mem::replace(&mut pending.buffer, spare);
        let dropped = std::mem::take(&mut pending.dropped);
        drop(pending);
        let _ = std::io::stderr().lock().write_all(&out);
        out.clear();
        if dropped > 0 {
            // A log line like any other (JSON too), after the lines logged before the drops.
            tracing::warn!(
                dropped,
                "log lines dropped: stderr was not read fast enough"
            );
        }
        out
    }

    /// Writes out everything pending, waiting at most a second for stderr (at exit).
    pub fn flush_now(&self) {
        let log = self.clone();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Twice: the first write may log that lines were dropped.
            let spare = log.write_pending(Vec::new(), false);
            log.write_pending(spare, false);
            let _ = done.send(());
        });
        let _ = finished.recv_timeout(Self::EXIT_PATIENCE);
    }

    /// Queues log bytes (one or more whole lines); drops them if too much is pending.
    pub fn append(&self, bytes: &[u8]) {
        let (lock, wake) = &*self.shared;
        let mut pending = lock.lock().unwrap_or_else(|e| e.into_inner());
        if pending.buffer.len() + bytes.len() > Self::MAX_PENDING {
            pending.dropped += 1;
            return;
        }
        let was_empty = pending.buffer.is_empty();
        pending.buffer.extend_from_slice(bytes);
        if was_empty || pending.buffer.len() >= Self::LIMIT {
            wake.notify_one();
        }
    }
}

impl std::io::Write for BatchedStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.append(bytes);
        Ok(bytes.len())
    }

    /// The flusher thread writes; nothing to do here.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedStderr {
    type Writer = BatchedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Text log lines in `tracing-subscriber`'s default layout, without colours:
/// `2026-11-28T20:19:04.104659Z  INFO smtpd_linux::logging: message peer=… size=1024 …`.
/// Each line is formatted into a reused thread-local buffer and appended to the batched
/// writer whole, so lines from several threads never interleave.
pub struct TextLayer {
    out: BatchedStderr,
}

impl TextLayer {
    pub fn new(out: BatchedStderr) -> Self {
        TextLayer { out }
    }
}

thread_local! {
    static LINE: RefCell<Line> = RefCell::new(Line::default());
}

/// A thread's reused line buffer, and the second its timestamp prefix was formatted for.
#[derive(Default)]
struct Line {
    text: String,
    stamp: Stamp,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TextLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        LINE.with(|line| {
            let Line { text, stamp } = &mut *line.borrow_mut();
            text.clear();
            format_line(text, stamp, event, SystemTime::now());
            self.out.append(text.as_bytes());
        });
    }
}

/// Appends `event`'s line, newline included.
fn format_line(text: &mut String, stamp: &mut Stamp, event: &tracing::Event<'_>, now: SystemTime) {
    stamp.write(text, now);
    let meta = event.metadata();
    text.push_str(match *meta.level() {
        Level::ERROR => " ERROR ",
        Level::WARN => "  WARN ",
        Level::INFO => "  INFO ",
        Level::DEBUG => " DEBUG ",
        Level::TRACE => " TRACE ",
    });
    text.push_str(meta.target());
    text.push(':');
    event.record(&mut Fields(text));
    text.push('\n');
}

/// Writes an event's fields as ` message key=value …` (strings quoted, as `Debug` does).
/// Numbers and plain strings, most of a line, are written without `core::fmt`.
struct Fields<'a>(&'a mut String);

impl Fields<'_> {
    fn key(&mut self, field: &Field) {
        self.0.push(' ');
        self.0.push_str(field.name());
        self.0.push('=');
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push(' ');
            self.0.push_str(value);
            return;
        }
        self.key(field);
        push_quoted(self.0, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        push_decimal(self.0, value, 1);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        if value < 0 {
            self.0.push('-');
        }
        push_decimal(self.0, value.unsigned_abs(), 1);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.0.push_str(if value { "true" } else { "false" });
    }

    /// Values shown with `%` or `?` are written as they format, unless that could be read
    /// as more than one value or line (a blank, a quote, `=`, a control character: a
    /// recipient like `"a outcome=250"@b` must not forge a field) or hold non-ASCII (which
    /// may be a line separator, a C1 control or a bidi override); then they are quoted like
    /// strings, which escapes all of those.
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
            return;
        }
        self.key(field);
        let start = self.0.len();
        let _ = write!(self.0, "{value:?}");
        if self.0[start..]
            .bytes()
            .any(|b| matches!(b, b'"' | b'=' | b'\\') || !matches!(b, b'!'..=b'~'))
        {
            let written = self.0.split_off(start);
            push_quoted(self.0, &written);
        }
    }
}

/// Appends `value` quoted as `Debug` does, without `core::fmt` when it needs no escapes.
fn push_quoted(text: &mut String, value: &str) {
    // What `Debug` leaves as it is: printable ASCII but the quote and the backslash.
    if value
        .bytes()
        .all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\')
    {
        text.push('"');
        text.push_str(value);
        text.push('"');
    } else {
        let _ = write!(text, "{value:?}");
    }
}

/// Appends `value` in decimal, zero-padded to at least `width` digits (at most 20).
fn push_decimal(text: &mut String, mut value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while value > 0 || start > digits.len() - width {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    // ASCII digits only.
    text.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

/// The timestamp of a line, `YYYY-MM-DDTHH:MM:SS.ffffffZ` (RFC 3339, UTC). The part up to
/// the seconds is formatted once per second and kept.
#[derive(Default)]
struct Stamp {
    second: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS.` of `second`.
    prefix: String,
}

impl Stamp {
    fn write(&mut self, text: &mut String, now: SystemTime) {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        if self.second != Some(secs) {
            let (year, month, day) = civil_from_days((secs / 86_400) as i64);
            let time = secs % 86_400;
            self.prefix.clear();
            let _ = write!(
                self.prefix,
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.",
                time / 3600,
                time / 60 % 60,
                time % 60,
            );
            self.second = Some(secs);
        }
        text.push_str(&self.prefix);
        push_decimal(text, since.subsec_micros().into(), 6);
        text.push('Z');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, "2000-02-29T00:00:00.000000Z"),
            (1_795_892_405, "2026-11-28T19:00:05.000000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000000Z"),
            (1_795_892_405, "2026-11-28T19:00:05.000000Z"),
        ];
        // One stamp throughout: its kept prefix must follow every change of second.
        let mut stamp = Stamp::default();
        for (secs, expected) in cases {
            let mut line = String::new();
            stamp.write(&mut line, UNIX_EPOCH + Duration::from_secs(secs));
            assert_eq!(line, expected);
        }
        for (micros, expected) in [
            (1_500_042, "1970-01-01T00:00:01.500042Z"),
            (1_000_007, "1970-01-01T00:00:01.000007Z"),
            (1_999_999, "1970-01-01T00:00:01.999999Z"),
        ] {
            let mut line = String::new();
            stamp.write(&mut line, UNIX_EPOCH + Duration::from_micros(micros));
            assert_eq!(line, expected);
        }
    }

    /// Formats each event with [`format_line`] at a fixed time.
    struct Collect(Arc<Mutex<String>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Collect {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let now = UNIX_EPOCH + Duration::from_micros(1_795_892_405_000_123);
            format_line(
                &mut self.0.lock().unwrap(),
                &mut Stamp::default(),
                event,
                now,
            );
        }
    }

    #[test]
    fn lines_have_the_default_layout_and_debug_quoting() {
        use tracing_subscriber::layer::SubscriberExt;
        let lines = Arc::new(Mutex::new(String::new()));
        let subscriber = tracing_subscriber::registry().with(Collect(lines.clone()));
        let peer: SocketAddr = "[::1]:2525".parse().unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(peer = %peer, from = "a@b.example", size = 1024u64, ms = 0u64, "message");
            tracing::warn!(delta = -42i64, ok = true, "odd {}", 7);
            for odd in ["quote\"", "back\\slash", "é", "\u{7f}\ttab"] {
                tracing::error!(from = odd, "x");
            }
            tracing::debug!(max = u64::MAX, zero = 0u64, "");
            let forged = "\"a outcome=250\"@b";
            tracing::info!(to = %forged, outcome = %"aborted: Disconnected", plain = %"a@b,c@d");
            // U+2028 and U+0085 end lines for some readers, U+009B is a terminal's CSI.
            tracing::info!(to = %"x\u{2028}ERROR@b,y\u{85}z@b,\u{9b}2J@b,é@b");
        });
        let expected = [
            r#"2026-11-28T19:00:05.000123Z  INFO smtpd_linux::logging::tests: message peer=[::1]:2525 from="a@b.example" size=1024 ms=0"#,
            r#"2026-11-28T19:00:05.000123Z  WARN smtpd_linux::logging::tests: odd 7 delta=-42 ok=true"#,
            r#"2026-11-28T19:00:05.000123Z ERROR smtpd_linux::logging::tests: x from="quote\"""#,
            r#"2026-11-28T19:00:05.000123Z ERROR smtpd_linux::logging::tests: x from="back\\slash""#,
            r#"2026-11-28T19:00:05.000123Z ERROR smtpd_linux::logging::tests: x from="é""#,
            r#"2026-11-28T19:00:05.000123Z ERROR smtpd_linux::logging::tests: x from="\u{7f}\ttab""#,
            r#"2026-11-28T19:00:05.000123Z DEBUG smtpd_linux::logging::tests:  max=18446744073709551615 zero=0"#,
            r#"2026-11-28T19:00:05.000123Z  INFO smtpd_linux::logging::tests: to="\"a outcome=250\"@b" outcome="aborted: Disconnected" plain=a@b,c@d"#,
            r#"2026-11-28T19:00:05.000123Z  INFO smtpd_linux::logging::tests: to="x\u{2028}ERROR@b,y\u{85}z@b,\u{9b}2J@b,é@b""#,
        ];
        assert_eq!(lines.lock().unwrap().lines().collect::<Vec<_>>(), expected);
    }
}
