//! The client side of SMTP, for handing a message on to the next hop (RFC 5321 3.3, 4.1,
//! 4.2, 4.5.2): reading the server's replies and EHLO keywords, writing commands, and
//! encoding the content for DATA.
//!
//! Invariant of [`DotStuffer`]: whatever the content holds, the encoded octets contain exactly
//! one end of data, the one [`DotStuffer::finish`] writes. Every line ends in CRLF (a bare CR
//! or LF becomes CRLF) and every line starting with `.` gets a second one, so no next hop can
//! find an end of data the client did not send, whatever line ends it accepts (SMTP
//! smuggling, CVE-2023-51764).

use core::fmt;

use crate::handler::{Body, MailParams};
use crate::reply::{EnhancedCode, Reply};

/// Why a server's output is not a reply (RFC 5321 4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReplyError {
    /// A line does not start with a code of three digits, 2xx to 5xx, then SP, `-` or its end.
    Malformed,
    /// The lines of one reply carry different codes.
    MixedCodes,
}

/// Reads a server's replies, one at a time, from the octets it sent.
///
/// Lines end in CRLF (a bare LF is taken too). A reply's text lines are kept joined by `\n`,
/// octets other than printable ASCII and TAB replaced by `?`, with the enhanced status code
/// (RFC 3463) taken off when the first line starts with one of the reply's class; text
/// beyond `N` octets is dropped, the code is always kept.
#[derive(Debug)]
pub struct ReplyReader<const N: usize> {
    text: heapless::String<N>,
    code: Option<u16>,
    enhanced: Option<EnhancedCode>,
    /// The text is a reply already returned.
    done: bool,
}

impl<const N: usize> Default for ReplyReader<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ReplyReader<N> {
    pub const fn new() -> Self {
        ReplyReader {
            text: heapless::String::new(),
            code: None,
            enhanced: None,
            done: false,
        }
    }

    /// Reads complete lines from `input` up to the end of one reply. Returns the octets
    /// consumed and, when its last line was among them, the reply: `Some(Ok(..))`, after
    /// which the next call starts the next reply. Incomplete lines are left unconsumed.
    pub fn read(&mut self, input: &[u8]) -> (usize, Option<Result<Reply<'_>, ReplyError>>) {
        if self.done {
            self.clear();
        }
        let mut consumed = 0;
        while let Some(end) = input[consumed..].iter().position(|&b| b == b'\n') {
            let line = &input[consumed..consumed + end];
            consumed += end + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match self.line(line) {
                Ok(false) => {}
                Ok(true) => {
                    self.done = true;
                    let reply = Reply {
                        code: self.code.unwrap_or(451),
                        enhanced: self.enhanced,
                        text: &self.text,
                    };
                    return (consumed, Some(Ok(reply)));
                }
                Err(error) => {
                    self.clear();
                    return (consumed, Some(Err(error)));
                }
            }
        }
        (consumed, None)
    }

    /// Takes one line; true when it was the reply's last.
    fn line(&mut self, line: &[u8]) -> Result<bool, ReplyError> {
        let (code, last, text) = match line {
            [a @ b'2'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9', rest @ ..] => {
                let code =
                    u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
                match rest {
                    [] => (code, true, &[][..]),
                    [b' ', text @ ..] => (code, true, text),
                    [b'-', text @ ..] => (code, false, text),
                    _ => return Err(ReplyError::Malformed),
                }
            }
            _ => return Err(ReplyError::Malformed),
        };
        let first = self.code.is_none();
        match self.code {
            Some(reply_code) if reply_code != code => return Err(ReplyError::MixedCodes),
            Some(_) => {}
            None => {
                self.code = Some(code);
                self.enhanced = enhanced_code(text, code);
            }
        }
        let text = match self.enhanced {
            Some(_) => text.split_at(enhanced_len(text).unwrap_or(0)).1,
            None => text,
        };
        self.push_line(text, first);
        Ok(last)
    }

    fn push_line(&mut self, text: &[u8], first: bool) {
        let separator = usize::from(!first);
        let room = N - self.text.len();
        if room <= separator {
            return;
        }
        if separator == 1 {
            let _ = self.text.push('\n');
        }
        // Reply text is printable ASCII (RFC 5321 4.2): anything else, CR included, is a `?`.
        for &byte in text.iter().take(room - separator) {
            let printable = byte == b'\t' || (b' '..=b'~').contains(&byte);
            let _ = self.text.push(if printable { byte as char } else { '?' });
        }
    }

    fn clear(&mut self) {
        *self = Self::new();
    }
}

/// The length of `x.y.z` and the blank after it at the start of `text`, if there is one.
fn enhanced_len(text: &[u8]) -> Option<usize> {
    let digits = |from: usize, max: usize| {
        let count = text[from.min(text.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        (1..=max).contains(&count).then_some(from + count)
    };
    let class_end = digits(0, 1)?;
    (text.get(class_end) == Some(&b'.')).then_some(())?;
    let subject_end = digits(class_end + 1, 3)?;
    (text.get(subject_end) == Some(&b'.')).then_some(())?;
    let detail_end = digits(subject_end + 1, 3)?;
    match text.get(detail_end) {
        None => Some(detail_end),
        Some(b' ') => Some(detail_end + 1),
        Some(_) => None,
    }
}

/// The enhanced status code starting `text`, if its class is the reply code's (RFC 3463 2).
fn enhanced_code(text: &[u8], code: u16) -> Option<EnhancedCode> {
    let len = enhanced_len(text)?;
    let mut parts = text[..len]
        .trim_ascii_end()
        .split(|&b| b == b'.')
        .map(|part| {
            part.iter()
                .fold(0u16, |value, digit| value * 10 + u16::from(digit - b'0'))
        });
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    (class == code / 100).then_some(EnhancedCode(class as u8, subject, detail))
}

/// What a server's EHLO reply offers a client (RFC 5321 4.1.1.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerExtensions {
    /// `SIZE`, with its limit (0: none declared).
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub pipelining: bool,
    pub enhanced_status_codes: bool,
}

impl ServerExtensions {
    /// The keywords of an EHLO reply's text (its lines after the first).
    pub fn from_ehlo(text: &str) -> Self {
        let mut offered = ServerExtensions::default();
        for line in text.split('\n').skip(1) {
            let mut words = line.split_ascii_whitespace();
            let keyword = words.next().unwrap_or_default();
            let is = |name: &str| keyword.eq_ignore_ascii_case(name);
            if is("SIZE") {
                offered.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
            } else if is("8BITMIME") {
                offered.eight_bit_mime = true;
            } else if is("SMTPUTF8") {
                offered.smtputf8 = true;
            } else if is("PIPELINING") {
                offered.pipelining = true;
            } else if is("ENHANCEDSTATUSCODES") {
                offered.enhanced_status_codes = true;
            }
        }
        offered
    }
}

/// Writes `MAIL FROM:<from>` with the parameters the message needs and the server offers,
/// and CRLF. `from` is empty for the null reverse-path.
pub fn write_mail(
    out: &mut impl fmt::Write,
    from: &str,
    params: &MailParams,
    offered: &ServerExtensions,
) -> fmt::Result {
    write!(out, "MAIL FROM:<{from}>")?;
    if let (Some(size), Some(_)) = (params.size, offered.size) {
        write!(out, " SIZE={size}")?;
    }
    match params.body {
        Body::SevenBit => {}
        Body::EightBitMime => out.write_str(" BODY=8BITMIME")?,
        Body::BinaryMime => out.write_str(" BODY=BINARYMIME")?,
    }
    if params.smtputf8 {
        out.write_str(" SMTPUTF8")?;
    }
    out.write_str("\r\n")
}

/// Writes `RCPT TO:<to>` and CRLF.
pub fn write_rcpt(out: &mut impl fmt::Write, to: &str) -> fmt::Result {
    write!(out, "RCPT TO:<{to}>\r\n")
}

/// Encodes message content for DATA (RFC 5321 4.5.2); see the module's invariant.
#[derive(Clone, Copy, Debug)]
pub struct DotStuffer {
    line_start: bool,
    /// The last octet given was a CR, not yet known to be part of a CRLF.
    pending_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            line_start: true,
            pending_cr: false,
        }
    }
}

impl DotStuffer {
    /// Encodes `content`, handing the encoded octets to `emit` in order (runs of `content`
    /// itself, and the inserted `.` and CRLF).
    pub fn encode(&mut self, content: &[u8], mut emit: impl FnMut(&[u8])) {
        let mut emit = |octets: &[u8]| {
            if !octets.is_empty() {
                emit(octets)
            }
        };
        let mut run = 0;
        for (i, &byte) in content.iter().enumerate() {
            if self.pending_cr {
                self.pending_cr = false;
                emit(b"\r\n");
                self.line_start = true;
                if byte == b'\n' {
                    run = i + 1;
                    continue;
                }
                run = i;
            }
            if self.line_start && byte == b'.' {
                emit(&content[run..i]);
                emit(b".");
                run = i;
            }
            self.line_start = false;
            match byte {
                b'\r' => {
                    emit(&content[run..i]);
                    self.pending_cr = true;
                    run = i + 1;
                }
                b'\n' => {
                    emit(&content[run..i]);
                    emit(b"\r\n");
                    self.line_start = true;
                    run = i + 1;
                }
                _ => {}
            }
        }
        emit(&content[run..]);
    }

    /// Ends the content: a CRLF if its last line has none, then `.` CRLF. The stuffer is
    /// ready for the next message.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if self.pending_cr || !self.line_start {
            emit(b"\r\n");
        }
        emit(b".\r\n");
        *self = DotStuffer::default();
    }
}
