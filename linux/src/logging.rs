//! Logs: one line per session (in the server) and one per message (this wrapper).
#![allow(async_fn_in_trait)]

use std::net::SocketAddr;
use std::time::Instant;

use smtpd_core::handler::{AbortReason, Context, Handler, MailParams, Verdict};
use smtpd_core::Reply;

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
        self.inner.data_start(cx).await
    }

    async fn data_chunk(&mut self, cx: &Context<'_>, chunk: &[u8]) -> Result<(), Reply<'static>> {
        self.size += chunk.len() as u64;
        self.inner.data_chunk(cx, chunk).await
    }

    async fn data_end(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        let verdict = self.inner.data_end(cx).await;
        let code = match verdict {
            Verdict::Accept => 250,
            Verdict::Reply(reply) => reply.code,
        };
        if verdict.is_accept() {
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

    async fn unknown(
        &mut self,
        cx: &Context<'_>,
        verb: &str,
        arg: Option<&str>,
    ) -> Option<Reply<'_>> {
        self.inner.unknown(cx, verb, arg).await
    }
}

/// Log output for busy servers: serving threads append each line to a shared buffer, and a
/// flusher thread writes it to stderr every 50 ms (or at once past 64 KiB), so logging a
/// message costs no system call on the serving threads.
#[derive(Clone, Debug)]
pub struct BatchedStderr {
    buffer: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl BatchedStderr {
    const LIMIT: usize = 64 * 1024;
    const PERIOD: std::time::Duration = std::time::Duration::from_millis(50);

    /// Starts the flusher thread.
    pub fn start() -> Self {
        let log = BatchedStderr {
            buffer: Default::default(),
        };
        let flusher = log.clone();
        std::thread::Builder::new()
            .name("smtpd-log".into())
            .spawn(move || loop {
                std::thread::sleep(Self::PERIOD);
                flusher.flush_now();
            })
            .expect("spawn the log flusher thread");
        log
    }

    /// Writes out everything buffered.
    pub fn flush_now(&self) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if !buffer.is_empty() {
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), &buffer);
            buffer.clear();
        }
    }
}

impl std::io::Write for BatchedStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.extend_from_slice(bytes);
        if buffer.len() >= Self::LIMIT {
            std::io::stderr().lock().write_all(&buffer)?;
            buffer.clear();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_now();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedStderr {
    type Writer = BatchedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
