//! `DebuggingServer`: prints each message to stdout exactly like Python 3.11's.
//!
//! Python's command line runs it with `decode_data=False`, so every line is printed as a
//! bytes literal (`b'Subject: hi'`), with `b'X-Peer: <ip>'` before the first empty line.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::sync::{mpsc, Arc, LazyLock};
use std::time::Duration;

use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use crate::message::{Message, OwnedReply, ProcessMessage};

/// Prints every message between `---------- MESSAGE FOLLOWS ----------` and
/// `------------ END MESSAGE ------------`.
///
/// Messages are printed whole and in order, about 64 KiB of text at a time (a long line
/// too), so a session holds no more than its message and one piece of text. A message that
/// cannot be printed within `patience` (stdout nobody reads) gets `451`; one given up on
/// before its turn is never printed.
#[derive(Clone, Copy, Debug)]
pub struct DebuggingServer {
    /// Also print the envelope (`-d`).
    pub envelope: bool,
    /// How long a message may wait for its turn and for stdout (the binary uses the data
    /// timeout).
    pub patience: Duration,
}

impl Default for DebuggingServer {
    fn default() -> Self {
        DebuggingServer {
            envelope: false,
            patience: Duration::from_secs(180),
        }
    }
}

impl DebuggingServer {
    /// The text printed for `message`.
    pub fn render(&self, message: &Message<'_>) -> String {
        let mut out = String::new();
        let mut rendering = Rendering::new(self.envelope, message);
        while rendering.fill(&mut out) {}
        out
    }
}

impl ProcessMessage for DebuggingServer {
    async fn process_message(&mut self, message: &Message<'_>) -> Result<(), OwnedReply> {
        let printing = print(Rendering::new(self.envelope, message));
        match compio::time::timeout(self.patience, printing).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(OwnedReply::new(
                451,
                (4, 3, 0),
                "Error: could not print message",
            )),
        }
    }
}

/// Octets of text rendered and handed to the printer thread at a time.
const PIECE: usize = 64 * 1024;

/// The printed text of one message, produced a piece at a time.
struct Rendering<'a> {
    envelope: bool,
    message: &'a Message<'a>,
    lines: PythonLines<'a>,
    started: bool,
    in_headers: bool,
    /// The rest of a line whose bytes literal is being printed, and its quote.
    line: Option<(&'a [u8], char)>,
}

impl<'a> Rendering<'a> {
    fn new(envelope: bool, message: &'a Message<'a>) -> Self {
        Rendering {
            envelope,
            message,
            lines: PythonLines::new(message.data),
            started: false,
            in_headers: true,
            line: None,
        }
    }

    /// Appends the next part of the text to `out`, about [`PIECE`] octets; false once the
    /// text is complete.
    fn fill(&mut self, out: &mut String) -> bool {
        let full = out.len() + PIECE;
        if !self.started {
            self.started = true;
            self.start(out);
        }
        while out.len() < full {
            if let Some((rest, quote)) = self.line {
                let (now, later) = rest.split_at(rest.len().min(PIECE / 4));
                push_escaped(out, now, quote);
                self.line = if later.is_empty() {
                    out.push(quote);
                    out.push('\n');
                    None
                } else {
                    Some((later, quote))
                };
                continue;
            }
            let Some(line) = self.lines.next() else {
                out.push_str("------------ END MESSAGE ------------\n");
                return false;
            };
            if self.in_headers && line.is_empty() {
                let ip = self.message.peer.map(|p| p.ip().to_string());
                let peer = format!("X-Peer: {}", ip.unwrap_or_default());
                let _ = writeln!(out, "{}", python_bytes_repr(peer.as_bytes()));
                self.in_headers = false;
            }
            let quote = python_quote(line);
            out.push('b');
            out.push(quote);
            self.line = Some((line, quote));
        }
        true
    }

    fn start(&self, out: &mut String) {
        let message = self.message;
        if self.envelope {
            let _ = writeln!(out, "X-Envelope-From: <{}>", message.mailfrom);
            for rcpt in message.rcpttos {
                let _ = writeln!(out, "X-Envelope-To: <{rcpt}>");
            }
        }
        out.push_str("---------- MESSAGE FOLLOWS ----------\n");
        // Python's `mail_options`: the parameters as written, upper-cased.
        let options: Vec<String> = message
            .mail_parameters
            .split_ascii_whitespace()
            .map(|option| format!("'{}'", option.to_uppercase()))
            .collect();
        if !options.is_empty() {
            let _ = writeln!(out, "mail options: [{}]", options.join(", "));
        }
    }
}

/// A piece of text for the printer thread, with the print turn it holds while writing and
/// where to hand both back.
type Piece = (
    String,
    Turn,
    oneshot::Sender<(io::Result<()>, String, Turn)>,
);

/// The right to print: one message at a time, in the order sessions asked for it.
type Turn = OwnedMutexGuard<()>;

/// Prints `rendering` to stdout from one printer thread. A session waits for its turn, then
/// hands over one piece at a time together with the turn: the thread gives the turn back
/// only once the piece is written, so at most one piece is ever queued, and a stdout
/// nobody reads holds up only the sessions waiting to print, never a serving thread.
async fn print(mut rendering: Rendering<'_>) -> io::Result<()> {
    static TURNS: LazyLock<Arc<Mutex<()>>> = LazyLock::new(Default::default);
    static PRINTER: LazyLock<mpsc::Sender<Piece>> = LazyLock::new(|| {
        let (pieces, queue) = mpsc::channel::<Piece>();
        std::thread::Builder::new()
            .name("smtpd-stdout".into())
            .spawn(move || {
                for (text, turn, printed) in queue {
                    let mut stdout = io::stdout().lock();
                    let result = stdout
                        .write_all(text.as_bytes())
                        .and_then(|()| stdout.flush());
                    // A session that has gone drops the turn here: the next one goes on.
                    let _ = printed.send((result, text, turn));
                }
            })
            .expect("spawn the stdout printer thread");
        pieces
    });
    let gone = || io::Error::other("printer thread gone");
    let mut turn = TURNS.clone().lock_owned().await;
    let mut text = String::with_capacity(PIECE + 1024);
    loop {
        text.clear();
        let more = rendering.fill(&mut text);
        let (printed, done) = oneshot::channel();
        PRINTER.send((text, turn, printed)).map_err(|_| gone())?;
        let result;
        (result, text, turn) = done.await.map_err(|_| gone())?;
        result?;
        if !more {
            return Ok(());
        }
    }
}

/// The lines Python's `DebuggingServer` prints: the data as `SMTPChannel` hands it on
/// (without the CRLF that ends the last line, which Python counts as part of the
/// `CRLF.CRLF` terminator; every other CRLF turned into LF), split by `bytes.splitlines()`
/// (at LF, CR or CRLF; no empty last line). Borrowed from the data, nothing copied.
struct PythonLines<'a> {
    rest: &'a [u8],
}

impl<'a> PythonLines<'a> {
    fn new(data: &'a [u8]) -> Self {
        PythonLines {
            rest: data.strip_suffix(b"\r\n").unwrap_or(data),
        }
    }
}

impl<'a> Iterator for PythonLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = self.rest;
        let Some(at) = rest.iter().position(|&b| b == b'\r' || b == b'\n') else {
            self.rest = &[];
            return Some(rest);
        };
        let after = &rest[at + 1..];
        // CRLF is Python's LF; so is LF; a CR before either is one line end with it.
        let skip = match (rest[at], after) {
            (b'\r', [b'\n', ..]) => 1,
            (b'\r', [b'\r', b'\n', ..]) => 2,
            _ => 0,
        };
        self.rest = &after[skip..];
        Some(&rest[..at])
    }
}

/// Python's `repr(bytes)`: `b'...'`, double quotes when the bytes hold `'` but no `"`.
pub fn python_bytes_repr(bytes: &[u8]) -> String {
    let quote = python_quote(bytes);
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push('b');
    out.push(quote);
    push_escaped(&mut out, bytes, quote);
    out.push(quote);
    out
}

/// The quote `repr(bytes)` puts around `bytes`.
fn python_quote(bytes: &[u8]) -> char {
    if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        '"'
    } else {
        '\''
    }
}

/// `bytes` as they stand between the quotes of their `repr`.
fn push_escaped(out: &mut String, bytes: &[u8], quote: char) {
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if b as char == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtpd_core::handler::{Body, MailParams};

    #[test]
    fn bytes_repr_matches_python() {
        assert_eq!(python_bytes_repr(b"Subject: hi"), "b'Subject: hi'");
        assert_eq!(python_bytes_repr(b"it's"), "b\"it's\"");
        assert_eq!(python_bytes_repr(b"'\""), "b'\\'\"'");
        assert_eq!(
            python_bytes_repr(b"a\\b\t\x00\xff\x7f"),
            "b'a\\\\b\\t\\x00\\xff\\x7f'"
        );
    }

    #[test]
    fn renders_like_python_debugging_server() {
        let rcpts = vec!["c@d".to_string()];
        let message = Message {
            peer: "127.0.0.1:4000".parse().ok(),
            mailfrom: "a@b",
            rcpttos: &rcpts,
            data: b"Subject: x\r\nFrom: a@b\r\n\r\nbody\r\n",
            helo: Some("client"),
            params: MailParams {
                size: Some(12),
                body: Body::EightBitMime,
                ..MailParams::default()
            },
            mail_parameters: "body=8bitmime  size=12",
        };
        assert_eq!(
            DebuggingServer::default().render(&message),
            "---------- MESSAGE FOLLOWS ----------\nmail options: ['BODY=8BITMIME', 'SIZE=12']\n\
             b'Subject: x'\nb'From: a@b'\nb'X-Peer: 127.0.0.1'\nb''\nb'body'\n\
             ------------ END MESSAGE ------------\n"
        );
        // Python drops the CRLF before the final dot: no empty last line, and no X-Peer
        // when only that CRLF followed the headers.
        for (data, lines) in [
            (&b"Subject: a\r\n\r\n"[..], "b'Subject: a'\n"),
            (b"\r\n", ""),
            (b"", ""),
            (
                b"S: a\r\n\r\nx\r\n\r\n",
                "b'S: a'\nb'X-Peer: 127.0.0.1'\nb''\nb'x'\n",
            ),
            (b"a\r\r\nb\r\n", "b'a'\nb'b'\n"),
        ] {
            let rendered = DebuggingServer::default().render(&Message { data, ..message });
            assert_eq!(
                rendered,
                format!(
                    "---------- MESSAGE FOLLOWS ----------\nmail options: ['BODY=8BITMIME', \
                     'SIZE=12']\n{lines}------------ END MESSAGE ------------\n"
                ),
                "{data:?}"
            );
        }
        // A long line is printed a piece at a time too, and reads the same.
        let long: Vec<u8> = [b"S: a\r\n\r\n".as_slice(), &[0x80; 300_000], b"'\r\n"].concat();
        let message = Message {
            data: &long,
            ..message
        };
        let mut rendering = Rendering::new(false, &message);
        let (mut whole, mut piece) = (String::new(), String::new());
        while {
            piece.clear();
            let more = rendering.fill(&mut piece);
            assert!(piece.len() <= 2 * PIECE + 1024, "{}", piece.len());
            whole.push_str(&piece);
            more
        } {}
        let line = python_bytes_repr(&long[8..long.len() - 2]);
        assert!(line.starts_with("b\"\\x80") && line.ends_with("\\x80'\""));
        assert!(whole.ends_with(&format!(
            "b''\n{line}\n------------ END MESSAGE ------------\n"
        )));
        assert_eq!(whole, DebuggingServer::default().render(&message));
        let with_envelope = DebuggingServer {
            envelope: true,
            ..DebuggingServer::default()
        }
        .render(&message);
        assert!(with_envelope.starts_with("X-Envelope-From: <a@b>\nX-Envelope-To: <c@d>\n---"));
    }
}
