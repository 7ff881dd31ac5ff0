//! `DebuggingServer`: prints each message to stdout exactly like Python 3.11's.
//!
//! Python's command line runs it with `decode_data=False`, so every line is printed as a
//! bytes literal (`b'Subject: hi'`), with `b'X-Peer: <ip>'` before the first empty line.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::sync::{mpsc, OnceLock};

use tokio::sync::oneshot;

use crate::message::{Message, OwnedReply, ProcessMessage};

/// Prints every message between `---------- MESSAGE FOLLOWS ----------` and
/// `------------ END MESSAGE ------------`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DebuggingServer {
    /// Also print the envelope (`-d`).
    pub envelope: bool,
}

impl DebuggingServer {
    /// The text printed for `message`.
    pub fn render(&self, message: &Message<'_>) -> String {
        let mut out = String::new();
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
        let mut in_headers = true;
        let data = python_received_data(message.data);
        for line in split_lines(&data) {
            if in_headers && line.is_empty() {
                let ip = message.peer.map(|p| p.ip().to_string()).unwrap_or_default();
                let peer = format!("X-Peer: {ip}");
                let _ = writeln!(out, "{}", python_bytes_repr(peer.as_bytes()));
                in_headers = false;
            }
            let _ = writeln!(out, "{}", python_bytes_repr(line));
        }
        out.push_str("------------ END MESSAGE ------------\n");
        out
    }
}

impl ProcessMessage for DebuggingServer {
    async fn process_message(&mut self, message: &Message<'_>) -> Result<(), OwnedReply> {
        print(self.render(message))
            .await
            .map_err(|_| OwnedReply::new(451, (4, 3, 0), "Error: could not print message"))
    }
}

/// A message's text and who waits for it to be printed.
type PrintJob = (String, oneshot::Sender<io::Result<()>>);

/// Prints `text` to stdout from one printer thread, whole and in arrival order. A stdout
/// nobody reads holds up only the sessions whose messages wait to be printed, never a
/// serving thread.
async fn print(text: String) -> io::Result<()> {
    static PRINTER: OnceLock<mpsc::Sender<PrintJob>> = OnceLock::new();
    let printer = PRINTER.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<PrintJob>();
        std::thread::Builder::new()
            .name("smtpd-stdout".into())
            .spawn(move || {
                for (text, printed) in queue {
                    let mut stdout = io::stdout().lock();
                    let result = stdout
                        .write_all(text.as_bytes())
                        .and_then(|()| stdout.flush());
                    let _ = printed.send(result);
                }
            })
            .expect("spawn the stdout printer thread");
        jobs
    });
    let (printed, done) = oneshot::channel();
    printer
        .send((text, printed))
        .map_err(|_| io::Error::other("printer thread gone"))?;
    done.await
        .unwrap_or_else(|_| Err(io::Error::other("printer thread gone")))
}

/// The data as Python's `SMTPChannel` hands it on: without the CRLF that ends the last
/// line (Python counts it as part of the `CRLF.CRLF` terminator), and with every other
/// CRLF turned into LF.
fn python_received_data(data: &[u8]) -> Vec<u8> {
    let data = data.strip_suffix(b"\r\n").unwrap_or(data);
    let mut received = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(at) = rest.windows(2).position(|pair| pair == b"\r\n") {
        received.extend_from_slice(&rest[..at]);
        received.push(b'\n');
        rest = &rest[at + 2..];
    }
    received.extend_from_slice(rest);
    received
}

/// Python's `bytes.splitlines()`: lines end at LF, CR or CRLF; no empty last line.
fn split_lines(data: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\n' => {
                lines.push(&data[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&data[start..i]);
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < data.len() {
        lines.push(&data[start..]);
    }
    lines
}

/// Python's `repr(bytes)`: `b'...'`, double quotes when the bytes hold `'` but no `"`.
pub fn python_bytes_repr(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push('b');
    out.push(quote);
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
    out.push(quote);
    out
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
        let with_envelope = DebuggingServer { envelope: true }.render(&message);
        assert!(with_envelope.starts_with("X-Envelope-From: <a@b>\nX-Envelope-To: <c@d>\n---"));
    }
}
