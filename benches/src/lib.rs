//! Shared pieces of the smtpd-core benchmarks and the zero-allocation test: the corpus, a
//! no-op-waker executor, a sink handler and the session driver. Nothing here allocates on
//! the measured paths (the corpus is built once, before measuring).

pub mod corpus;

use std::future::Future;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll, Waker};

use smtpd_core::data::{DataDecoder, Decoded};
use smtpd_core::handler::{Context, Handler, Verdict};
use smtpd_core::{Config, Instant, Limits, Reply, Session};

/// Runs a future that never waits (the handlers here answer at once).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = TaskContext::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("the benchmark handler must not wait"),
    }
}

/// A handler that accepts everything and only counts what it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sink {
    pub messages: u32,
    pub content_bytes: u64,
}

impl Handler for Sink {
    async fn data_chunk(&mut self, _: &Context<'_>, chunk: &[u8]) -> Result<(), Reply<'static>> {
        self.content_bytes += chunk.len() as u64;
        Ok(())
    }

    async fn data_end(&mut self, _: &Context<'_>) -> Verdict<'_> {
        self.messages += 1;
        Verdict::Accept
    }
}

/// The server configuration of the benchmarks: the defaults.
pub fn config() -> Config<'static> {
    Config::new("mx.example.org")
}

/// A decoder configured like a session with the default limits.
pub fn data_decoder() -> DataDecoder {
    let limits = Limits::DEFAULT;
    DataDecoder::new(config().bare_newline, limits.text_line, limits.message_size)
}

/// Decodes one message from `wire` with smtpd-core, calling `sink` on each body chunk.
/// Returns the octets consumed (through the terminator), or `None` if it did not end.
#[inline]
pub fn decode_with(wire: &[u8], mut sink: impl FnMut(&[u8])) -> Option<usize> {
    let mut decoder = data_decoder();
    let mut pos = 0;
    loop {
        let (n, decoded) = decoder.decode(&wire[pos..]);
        pos += n;
        match decoded {
            Decoded::Body(chunk) => sink(chunk),
            Decoded::End => return Some(pos),
            Decoded::NeedMore => return None,
        }
    }
}

/// Like [`decode_with`], the input arriving in reads of `read` octets.
#[inline]
pub fn decode_chunked_with(wire: &[u8], read: usize, mut sink: impl FnMut(&[u8])) -> bool {
    let mut decoder = data_decoder();
    for piece in wire.chunks(read) {
        let mut pos = 0;
        while pos < piece.len() {
            let (n, decoded) = decoder.decode(&piece[pos..]);
            pos += n;
            match decoded {
                Decoded::Body(chunk) => sink(chunk),
                Decoded::End => return true,
                Decoded::NeedMore => {}
            }
        }
    }
    false
}

/// Runs a whole session over `script`, delivered in reads of `read` octets, writing every
/// reply to `on_output` like a frontend would. Returns the handler's counts.
pub fn run_session(
    config: &Config<'_>,
    script: &[u8],
    read: usize,
    mut on_output: impl FnMut(&[u8]),
) -> Sink {
    let now = Instant::from_millis(0);
    let mut session: Session<'_, Sink> = Session::new(config, None, Sink::default());
    block_on(session.handle_input(&[], now));
    for piece in script.chunks(read) {
        let mut pending = piece;
        loop {
            let used = block_on(session.handle_input(pending, now));
            pending = &pending[used..];
            let output = session.output();
            let written = output.len();
            on_output(output);
            session.consume_output(written);
            if pending.is_empty() || session.is_closed() {
                break;
            }
        }
    }
    assert!(session.is_closed(), "the script ends with QUIT");
    *session.handler()
}
