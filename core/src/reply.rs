//! SMTP replies (RFC 5321 4.2) and their wire encoding.
//!
//! A [`Reply`] is a three-digit code, an optional enhanced status code (RFC 2034 / RFC 3463)
//! and a text that may span several lines (separated by `\n`). [`ReplyWriter`] encodes it into
//! the channel's output buffer as `code SP [enhanced SP] text CRLF`, using `code-` for every
//! line but the last (RFC 5321 4.2.1).
//!
//! Invariant: whatever the text holds, the bytes written are well-formed reply lines: control
//! characters are replaced by `?`, each line is at most [`MAX_REPLY_LINE`] octets including
//! CRLF (RFC 5321 4.5.3.1.5), and a reply that does not fit the buffer is cut at a line
//! boundary, never in the middle of a line.

use core::fmt;

/// Longest reply line including CRLF (RFC 5321 4.5.3.1.5).
pub const MAX_REPLY_LINE: usize = 512;

/// An enhanced mail system status code `class.subject.detail` (RFC 3463).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EnhancedCode(pub u8, pub u16, pub u16);

/// One SMTP reply: code, optional enhanced code, text.
///
/// The enhanced code is written only when the ENHANCEDSTATUSCODES extension is enabled; it is
/// never written on the greeting or on HELO/EHLO replies (RFC 2034 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Reply<'a> {
    pub code: u16,
    pub enhanced: Option<EnhancedCode>,
    /// Reply text; `\n` separates the lines of a multi-line reply.
    pub text: &'a str,
}

impl<'a> Reply<'a> {
    /// A reply with an enhanced status code `class.subject.detail`.
    pub const fn new(code: u16, enhanced: (u8, u16, u16), text: &'a str) -> Self {
        Reply {
            code,
            enhanced: Some(EnhancedCode(enhanced.0, enhanced.1, enhanced.2)),
            text,
        }
    }

    /// A reply without an enhanced status code.
    pub const fn plain(code: u16, text: &'a str) -> Self {
        Reply {
            code,
            enhanced: None,
            text,
        }
    }

    /// True for 2xx and 3xx replies: the command was accepted. (A code outside 2xx-5xx is
    /// sent as `451`, so it is not positive either.)
    pub const fn is_positive(&self) -> bool {
        self.code >= 200 && self.code < 400
    }

    /// Whether this reply ends the session (421, RFC 5321 3.8).
    pub const fn closes(&self) -> bool {
        self.code == 421
    }
}

/// Appends encoded replies to an output buffer of `N` octets.
pub struct ReplyWriter<'b, const N: usize> {
    out: &'b mut heapless::Vec<u8, N>,
    enhanced: bool,
}

impl<'b, const N: usize> ReplyWriter<'b, N> {
    /// `enhanced`: whether enhanced status codes are shown (ENHANCEDSTATUSCODES enabled).
    pub fn new(out: &'b mut heapless::Vec<u8, N>, enhanced: bool) -> Self {
        ReplyWriter { out, enhanced }
    }

    /// Writes `reply`, splitting its text into lines at `\n`.
    ///
    /// When the buffer cannot take every line, the last line that fits becomes the final line,
    /// so the output stays a complete reply.
    pub fn reply(&mut self, reply: &Reply<'_>) {
        let mut pending: Option<LineBuf> = None;
        for text in reply.text.split('\n') {
            let line = self.build(reply.code, reply.enhanced, &[text]);
            if let Some(previous) = pending.take() {
                if self.free() < previous.len + line.len {
                    self.push_final(previous);
                    return;
                }
                let _ = self.out.extend_from_slice(previous.as_bytes());
            }
            pending = Some(line);
        }
        if let Some(last) = pending {
            self.push_final(last);
        }
    }

    /// Writes one reply line made of `parts`, after `code` and `-` (not last) or SP (last).
    ///
    /// The line is written whole or not at all; it is truncated to [`MAX_REPLY_LINE`].
    pub fn line(&mut self, code: u16, enhanced: Option<EnhancedCode>, last: bool, parts: &[&str]) {
        let line = self.build(code, enhanced, parts);
        if last {
            self.push_final(line);
        } else {
            let _ = self.out.extend_from_slice(line.as_bytes());
        }
    }

    fn build(&self, code: u16, enhanced: Option<EnhancedCode>, parts: &[&str]) -> LineBuf {
        // A code outside 2xx-5xx would not be a reply; report a local error instead.
        let (code, enhanced) = match code {
            200..=599 => (code, enhanced),
            _ => (451, Some(EnhancedCode(4, 3, 0))),
        };
        let mut line = LineBuf::new();
        let _ = fmt::write(&mut line, format_args!("{code:03}-"));
        if let (true, Some(EnhancedCode(class, subject, detail))) = (self.enhanced, enhanced) {
            let _ = fmt::write(&mut line, format_args!("{class}.{subject}.{detail} "));
        }
        for part in parts {
            line.push_text(part);
        }
        line.finish();
        line
    }

    fn push_final(&mut self, mut line: LineBuf) {
        line.buf[3] = b' ';
        // A line that does not fit is dropped whole; the channel reserves room beforehand.
        let _ = self.out.extend_from_slice(line.as_bytes());
    }

    fn free(&self) -> usize {
        N - self.out.len()
    }

    /// Writes a single-line reply whose text is built from `args`.
    pub fn format(&mut self, code: u16, enhanced: Option<EnhancedCode>, args: fmt::Arguments) {
        let mut text = LineBuf::new();
        let _ = fmt::write(&mut text, args);
        let text = core::str::from_utf8(text.as_bytes()).unwrap_or("");
        self.line(code, enhanced, true, &[text]);
    }
}

/// One reply line under construction: at most [`MAX_REPLY_LINE`] octets, CRLF included.
struct LineBuf {
    buf: [u8; MAX_REPLY_LINE],
    len: usize,
}

impl LineBuf {
    fn new() -> Self {
        LineBuf {
            buf: [0; MAX_REPLY_LINE],
            len: 0,
        }
    }

    /// Appends text, replacing control characters (CR, LF, NUL, ...) by `?` and truncating at
    /// a character boundary so that CRLF still fits.
    fn push_text(&mut self, text: &str) {
        for ch in text.chars() {
            let ch = if ch.is_control() { '?' } else { ch };
            let mut utf8 = [0; 4];
            let encoded = ch.encode_utf8(&mut utf8).as_bytes();
            if self.len + encoded.len() > MAX_REPLY_LINE - 2 {
                return;
            }
            self.buf[self.len..self.len + encoded.len()].copy_from_slice(encoded);
            self.len += encoded.len();
        }
    }

    fn finish(&mut self) {
        self.buf[self.len] = b'\r';
        self.buf[self.len + 1] = b'\n';
        self.len += 2;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_text(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(reply: Reply, enhanced: bool) -> heapless::Vec<u8, 2048> {
        let mut out = heapless::Vec::new();
        ReplyWriter::new(&mut out, enhanced).reply(&reply);
        out
    }

    #[test]
    fn single_line_with_and_without_enhanced_code() {
        let ok = Reply::new(250, (2, 1, 0), "OK");
        assert_eq!(&encode(ok, true)[..], b"250 2.1.0 OK\r\n");
        assert_eq!(&encode(ok, false)[..], b"250 OK\r\n");
        assert_eq!(&encode(Reply::plain(354, "go"), true)[..], b"354 go\r\n");
    }

    #[test]
    fn multi_line_uses_dash_continuations() {
        let r = Reply::new(550, (5, 1, 1), "first\nsecond\nthird");
        assert_eq!(
            &encode(r, true)[..],
            b"550-5.1.1 first\r\n550-5.1.1 second\r\n550 5.1.1 third\r\n"
        );
    }

    #[test]
    fn control_characters_never_reach_the_wire() {
        let r = Reply::plain(250, "a\rb\0c");
        assert_eq!(&encode(r, false)[..], b"250 a?b?c\r\n");
    }

    #[test]
    fn long_text_is_truncated_to_512_octets() {
        let text = "é".repeat(400);
        let out = encode(Reply::plain(250, &text), false);
        assert!(out.len() <= MAX_REPLY_LINE);
        assert!(out.ends_with(b"\r\n"));
        assert!(core::str::from_utf8(&out).is_ok());
    }

    #[test]
    fn a_reply_that_does_not_fit_is_cut_at_a_line_boundary() {
        let mut out: heapless::Vec<u8, 24> = heapless::Vec::new();
        ReplyWriter::new(&mut out, false).reply(&Reply::plain(250, "0123456789\nabcdefghijk"));
        assert_eq!(&out[..], b"250 0123456789\r\n");
    }
}
