//! The client side of one SMTP connection: bounded I/O, reply parsing and checking, and the
//! bytes the generator sends.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::cli::Config;

/// A protocol step, for error reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    Connect,
    Greeting,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    /// The message content and its final dot.
    Body,
    Quit,
    Noop,
}

impl Step {
    /// The reply codes that count as success.
    pub fn expected(self) -> &'static [u16] {
        match self {
            Step::Connect | Step::Greeting => &[220],
            Step::Ehlo | Step::Mail | Step::Body | Step::Noop => &[250],
            Step::Rcpt => &[250, 251],
            Step::Data => &[354],
            Step::Quit => &[221],
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Step::Connect => "connect",
            Step::Greeting => "greeting",
            Step::Ehlo => "EHLO",
            Step::Mail => "MAIL",
            Step::Rcpt => "RCPT",
            Step::Data => "DATA",
            Step::Body => "end of data",
            Step::Quit => "QUIT",
            Step::Noop => "NOOP",
        };
        f.write_str(name)
    }
}

/// Why a step failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Fail {
    /// A reply with an unexpected code (and the text of its last line).
    Code(Step, u16, String),
    Io(Step, io::ErrorKind),
    /// The server closed the connection.
    Closed(Step),
    /// No reply within the reply timeout.
    Timeout(Step),
    /// Not a well-formed reply.
    Malformed(Step),
    /// The run's hard time bound passed (not an error of the server).
    Deadline,
}

impl Fail {
    /// A short class of the failure, for counting.
    pub fn class(&self) -> String {
        match self {
            Fail::Code(step, code, _) => format!("{step}: {code}"),
            Fail::Io(step, kind) => format!("{step}: {kind:?}"),
            Fail::Closed(step) => format!("{step}: connection closed"),
            Fail::Timeout(step) => format!("{step}: reply timeout"),
            Fail::Malformed(step) => format!("{step}: malformed reply"),
            Fail::Deadline => "run time bound".into(),
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Code(step, code, text) => write!(f, "{step}: got {code} {text}"),
            other => f.write_str(&other.class()),
        }
    }
}

/// The time bounds every I/O operation runs under.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// End of the whole run.
    pub deadline: Instant,
    pub reply_timeout: Duration,
}

impl Limits {
    /// Runs `op` bounded by the reply timeout and the run's deadline.
    pub async fn run<T>(
        self,
        step: Step,
        op: impl Future<Output = io::Result<T>>,
    ) -> Result<T, Fail> {
        let by_reply = Instant::now() + self.reply_timeout;
        let (until, is_deadline) = if self.deadline <= by_reply {
            (self.deadline, true)
        } else {
            (by_reply, false)
        };
        match tokio::time::timeout_at(until, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Fail::Io(step, e.kind())),
            Err(_) if is_deadline => Err(Fail::Deadline),
            Err(_) => Err(Fail::Timeout(step)),
        }
    }
}

/// Longest reply accepted (a multi-line EHLO reply is well below this).
const MAX_REPLY: usize = 64 * 1024;

/// One client connection with its receive buffer.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    head: usize,
    tail: usize,
    limits: Limits,
    /// The EHLO reply advertised PIPELINING.
    pub pipelining: bool,
}

impl Conn {
    /// Connects and reads the 220 greeting.
    pub async fn open(addr: SocketAddr, limits: Limits) -> Result<Conn, Fail> {
        let stream = limits.run(Step::Connect, TcpStream::connect(addr)).await?;
        stream
            .set_nodelay(true)
            .map_err(|e| Fail::Io(Step::Connect, e.kind()))?;
        let mut conn = Conn {
            stream,
            buf: vec![0; 4096],
            head: 0,
            tail: 0,
            limits,
            pipelining: false,
        };
        conn.reply(Step::Greeting, None).await?;
        Ok(conn)
    }

    /// Sends EHLO and records whether PIPELINING is offered.
    pub async fn ehlo(&mut self, command: &[u8]) -> Result<(), Fail> {
        self.send(Step::Ehlo, command).await?;
        let mut lines = Vec::new();
        self.reply(Step::Ehlo, Some(&mut lines)).await?;
        // The first line is the greeting text; keywords follow, one per line.
        self.pipelining = lines.iter().skip(1).any(|l| {
            l.split_ascii_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
        });
        Ok(())
    }

    pub async fn send(&mut self, step: Step, bytes: &[u8]) -> Result<(), Fail> {
        self.limits.run(step, self.stream.write_all(bytes)).await
    }

    /// Sends QUIT and waits for 221 (or the close).
    pub async fn quit(mut self, command: &[u8]) -> Result<(), Fail> {
        self.send(Step::Quit, command).await?;
        self.reply(Step::Quit, None).await
    }

    /// Reads one complete reply and checks its code against `step`'s expected codes.
    /// With `lines`, the text of every line is collected (for EHLO keywords).
    pub async fn reply(
        &mut self,
        step: Step,
        mut lines: Option<&mut Vec<String>>,
    ) -> Result<(), Fail> {
        let mut code = None;
        loop {
            while let Some(lf) = self.buf[self.head..self.tail]
                .iter()
                .position(|&b| b == b'\n')
            {
                let line = &self.buf[self.head..self.head + lf + 1];
                self.head += lf + 1;
                let (this, last, text) = parse_line(line).ok_or(Fail::Malformed(step))?;
                if code.is_some_and(|c| c != this) {
                    return Err(Fail::Malformed(step));
                }
                code = Some(this);
                if let Some(lines) = lines.as_deref_mut() {
                    lines.push(String::from_utf8_lossy(text).into_owned());
                }
                if last {
                    if !step.expected().contains(&this) {
                        let text = String::from_utf8_lossy(&text[..text.len().min(80)]);
                        return Err(Fail::Code(step, this, text.into_owned()));
                    }
                    return Ok(());
                }
            }
            if self.head == self.tail {
                self.head = 0;
                self.tail = 0;
            } else if self.tail == self.buf.len() {
                self.buf.copy_within(self.head..self.tail, 0);
                self.tail -= self.head;
                self.head = 0;
                if self.tail == self.buf.len() {
                    if self.buf.len() >= MAX_REPLY {
                        return Err(Fail::Malformed(step));
                    }
                    self.buf.resize(self.buf.len() * 2, 0);
                }
            }
            let n = self
                .limits
                .run(step, self.stream.read(&mut self.buf[self.tail..]))
                .await?;
            if n == 0 {
                return Err(Fail::Closed(step));
            }
            self.tail += n;
        }
    }
}

/// Splits a reply line into (code, is last line, text). `line` ends with LF.
pub fn parse_line(line: &[u8]) -> Option<(u16, bool, &[u8])> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None => Some((code, true, &[])),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        Some(_) => None,
    }
}

/// Everything a session sends, built once per run.
pub struct Script {
    pub ehlo: Vec<u8>,
    pub mail: Vec<u8>,
    pub rcpt: Vec<u8>,
    pub data: Vec<u8>,
    /// MAIL, RCPT and DATA in one buffer (one write when pipelining).
    pub group: Vec<u8>,
    /// The message content followed by the end-of-data line.
    pub message: Vec<u8>,
    pub quit: Vec<u8>,
    pub noop: Vec<u8>,
}

impl Script {
    pub fn new(cfg: &Config) -> Script {
        let mail = format!("MAIL FROM:<{}>\r\n", cfg.from).into_bytes();
        let rcpt = format!("RCPT TO:<{}>\r\n", cfg.to).into_bytes();
        let data = b"DATA\r\n".to_vec();
        let group = [mail.as_slice(), &rcpt, &data].concat();
        let mut message = build_message(cfg.size, &cfg.from, &cfg.to);
        message.extend_from_slice(b".\r\n");
        Script {
            ehlo: format!("EHLO {}\r\n", cfg.helo).into_bytes(),
            mail,
            rcpt,
            data,
            group,
            message,
            quit: b"QUIT\r\n".to_vec(),
            noop: b"NOOP\r\n".to_vec(),
        }
    }
}

/// A message of exactly `size` bytes (CRLF lines, none starting with a dot, ending in
/// CRLF): a few headers when they fit, then lines of base64-like text.
pub fn build_message(size: usize, from: &str, to: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const LINE: usize = 76;
    let mut m = Vec::with_capacity(size);
    let headers = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: smtp-load {size} bytes\r\n\
         Message-ID: <{size}.smtp-load@loadgen.invalid>\r\nMIME-Version: 1.0\r\n\r\n"
    );
    if headers.len() + 2 <= size {
        m.extend_from_slice(headers.as_bytes());
    }
    let mut k = 0usize;
    while m.len() < size {
        let left = size - m.len();
        // Text bytes of this line; leave either nothing or room for a full line after it.
        let text = if left <= LINE + 2 {
            left.saturating_sub(2)
        } else if left - (LINE + 2) < 3 {
            LINE - 3
        } else {
            LINE
        };
        if left < 2 {
            // Only when size < 2: no room for a line end.
            m.extend(std::iter::repeat_n(b'A', left));
            break;
        }
        for _ in 0..text {
            m.push(ALPHABET[k % ALPHABET.len()]);
            k += 1;
        }
        m.extend_from_slice(b"\r\n");
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_sizes_are_exact() {
        for size in (0..400).chain([1023, 1024, 1025, 4096, 1 << 20]) {
            let m = build_message(size, "a@b.example", "c@d.example");
            assert_eq!(m.len(), size, "size {size}");
            if size >= 2 {
                assert!(m.ends_with(b"\r\n"), "size {size}");
                // No line starts with a dot, and every LF ends a CRLF.
                assert!(m[0] != b'.' && !m.windows(2).any(|w| w == b"\n."));
                assert!(m[0] != b'\n' && m.windows(2).all(|w| w[1] != b'\n' || w[0] == b'\r'));
            }
        }
    }

    #[test]
    fn lines_stay_short() {
        let m = build_message(1 << 16, "a@b", "c@d");
        assert!(m.split(|&b| b == b'\n').all(|l| l.len() <= 100));
    }

    #[test]
    fn reply_lines() {
        assert_eq!(parse_line(b"250 OK\r\n"), Some((250, true, &b"OK"[..])));
        assert_eq!(
            parse_line(b"250-PIPELINING\r\n"),
            Some((250, false, &b"PIPELINING"[..]))
        );
        assert_eq!(parse_line(b"221\r\n"), Some((221, true, &b""[..])));
        assert_eq!(parse_line(b"25 OK\r\n"), None);
        assert_eq!(parse_line(b"650 OK\r\n"), None);
        assert_eq!(parse_line(b"250+OK\r\n"), None);
    }

    #[test]
    fn script_groups_the_envelope() {
        let cfg = Config::default();
        let s = Script::new(&cfg);
        assert_eq!(
            s.group,
            [s.mail.clone(), s.rcpt.clone(), s.data.clone()].concat()
        );
        assert!(s.message.ends_with(b"\r\n.\r\n"));
        assert_eq!(s.message.len(), cfg.size + 3);
    }
}
