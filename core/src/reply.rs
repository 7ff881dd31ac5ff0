//! SMTP replies (RFC 5321 4.2) and their wire encoding.
//!
//! A [`Reply`] is a three-digit code, an optional enhanced status code (RFC 2034 / RFC 3463)
//! and a text that may span several lines (separated by `\n`). [`ReplyWriter`] encodes it into
//! the channel's output buffer as `code SP [enhanced SP] text CRLF`, using `code-` for every
//! line but the last (RFC 5321 4.2.1).
//!
//! Invariant: whatever the reply holds, the bytes written are well-formed reply lines: a code
//! outside 2xx-5xx is sent as `451 4.3.0`, an enhanced code agrees with the reply code
//! ([`EnhancedCode::for_reply`]), the text is printable US-ASCII (RFC 5321 4.2: control
//! characters and non-ASCII, such as a client's UTF-8 echoed back, become `?`), each line is at
//! most [`MAX_REPLY_LINE`] octets including CRLF (RFC 5321 4.5.3.1.5), and a reply that does
//! not fit the buffer is cut at a line boundary, never in the middle of a line.

use core::fmt;

/// Longest reply line including CRLF (RFC 5321 4.5.3.1.5).
pub const MAX_REPLY_LINE: usize = 512;

/// An enhanced mail system status code `class.subject.detail` (RFC 3463).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EnhancedCode(pub u8, pub u16, pub u16);

impl EnhancedCode {
    /// This code as it may follow the reply code `code`: with the reply's class (RFC 2034 4:
    /// they must agree), and `class.0.0` if the subject or detail has more than three digits
    /// (RFC 3463 2). None after a 3xx reply, which takes no enhanced code.
    pub const fn for_reply(self, code: u16) -> Option<Self> {
        let class = (code / 100) as u8;
        match (class, self) {
            (2 | 4 | 5, EnhancedCode(_, subject @ 0..=999, detail @ 0..=999)) => {
                Some(EnhancedCode(class, subject, detail))
            }
            (2 | 4 | 5, _) => Some(EnhancedCode(class, 0, 0)),
            _ => None,
        }
    }
}

/// One SMTP reply: code, optional enhanced code, text.
///
/// The enhanced code is written only when the ENHANCEDSTATUSCODES extension is enabled; it is
/// never written on the greeting or on HELO/EHLO replies (RFC 2034 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Reply<'a> {
    pub code: u16,
    pub enhanced: Option<EnhancedCode>,
    /// Reply text; `\n` (or CRLF) separates the lines of a multi-line reply, and one at the
    /// end is ignored.
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

    /// This reply with `class.0.0` ("other or undefined status", RFC 3463) as its enhanced
    /// code if it has none and is a 2xx, 4xx or 5xx reply, which must carry one once
    /// ENHANCEDSTATUSCODES is offered (RFC 2034 3). Replies passed on from another server
    /// often have none.
    pub const fn with_default_enhanced(self) -> Self {
        match (self.enhanced, self.code / 100) {
            (None, class @ (2 | 4 | 5)) => Reply {
                enhanced: Some(EnhancedCode(class as u8, 0, 0)),
                ..self
            },
            _ => self,
        }
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

    /// Writes `reply`, splitting its text into lines at `\n` (a line's final CR and the
    /// text's final newline are dropped).
    ///
    /// When the buffer cannot take every line, the last line that fits becomes the final line,
    /// so the output stays a complete reply.
    pub fn reply(&mut self, reply: &Reply<'_>) {
        let mut last_start = None;
        let text = reply.text.strip_suffix('\n').unwrap_or(reply.text);
        for text in text.split('\n') {
            let text = text.strip_suffix('\r').unwrap_or(text);
            let start = self.out.len();
            if !self.try_line(reply.code, reply.enhanced, |line| line.push_text(text)) {
                break;
            }
            last_start = Some(start);
        }
        if let Some(start) = last_start {
            self.out[start + 3] = b' ';
        }
    }

    /// Writes one reply line made of `parts`, after `code` and `-` (not last) or SP (last).
    ///
    /// The line is written whole or not at all; it is truncated to [`MAX_REPLY_LINE`].
    pub fn line(&mut self, code: u16, enhanced: Option<EnhancedCode>, last: bool, parts: &[&str]) {
        self.whole_line(code, enhanced, last, |line| {
            for part in parts {
                line.push_text(part);
            }
        });
    }

    /// Writes a single-line reply whose text is built from `args`.
    pub fn format(&mut self, code: u16, enhanced: Option<EnhancedCode>, args: fmt::Arguments) {
        self.whole_line(code, enhanced, true, |line| {
            let _ = fmt::write(line, args);
        });
    }

    /// [`try_line`](Self::try_line), then SP after the code if the line is the last.
    fn whole_line(
        &mut self,
        code: u16,
        enhanced: Option<EnhancedCode>,
        last: bool,
        text: impl FnOnce(&mut Line<'_, N>),
    ) {
        let start = self.out.len();
        if self.try_line(code, enhanced, text) && last {
            self.out[start + 3] = b' ';
        }
    }

    /// Appends `code-[enhanced ]text CRLF` and returns true, or leaves the buffer as it was
    /// and returns false when the line does not fit.
    fn try_line(
        &mut self,
        code: u16,
        enhanced: Option<EnhancedCode>,
        text: impl FnOnce(&mut Line<'_, N>),
    ) -> bool {
        // A code outside 2xx-5xx would not be a reply; report a local error instead.
        let (code, enhanced) = match code {
            200..=599 => (code, enhanced.and_then(|enhanced| enhanced.for_reply(code))),
            _ => (451, Some(EnhancedCode(4, 3, 0))),
        };
        let start = self.out.len();
        let mut line = Line {
            end: (start + MAX_REPLY_LINE - 2).min(N.saturating_sub(2)),
            limit: start + MAX_REPLY_LINE - 2,
            out: self.out,
            overflow: false,
        };
        line.push_number(code);
        line.push_bytes(b"-");
        if let (true, Some(EnhancedCode(class, subject, detail))) = (self.enhanced, enhanced) {
            line.push_number(class.into());
            line.push_bytes(b".");
            line.push_number(subject);
            line.push_bytes(b".");
            line.push_number(detail);
            line.push_bytes(b" ");
        }
        text(&mut line);
        if line.overflow {
            self.out.truncate(start);
            return false;
        }
        // `end` kept two octets free for CRLF.
        let _ = self.out.extend_from_slice(b"\r\n");
        true
    }
}

/// One reply line being appended to the output: text beyond `limit` (the line length) is
/// cut off; text beyond `end` that is not cut off (the buffer is full) fails the line.
struct Line<'o, const N: usize> {
    out: &'o mut heapless::Vec<u8, N>,
    /// Where the line's text must end: the line limit, or earlier when the buffer ends.
    end: usize,
    /// Where the line's text is cut (CRLF excluded).
    limit: usize,
    overflow: bool,
}

impl<const N: usize> Line<'_, N> {
    /// Appends bytes (printable ASCII, or one encoded character), cut at the line limit.
    fn push_bytes(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(self.limit.saturating_sub(self.out.len()));
        if self.out.len() + take > self.end {
            self.overflow = true;
            return;
        }
        let _ = self.out.extend_from_slice(&bytes[..take]);
    }

    fn push_number(&mut self, n: u16) {
        let mut digits = [0u8; 5];
        let mut at = digits.len();
        let mut n = n;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push_bytes(&digits[at..]);
    }

    /// Appends text, replacing each character that is not printable US-ASCII (CR, LF, NUL,
    /// but also UTF-8: RFC 5321 4.2's `textstring`) by `?`, and cutting at the line limit.
    fn push_text(&mut self, text: &str) {
        if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return self.push_bytes(text.as_bytes());
        }
        for ch in text.chars() {
            if self.overflow || self.out.len() >= self.limit {
                return;
            }
            let printable = ch.is_ascii() && !ch.is_ascii_control();
            self.push_bytes(&[if printable { ch as u8 } else { b'?' }]);
        }
    }
}

impl<const N: usize> fmt::Write for Line<'_, N> {
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
    fn default_enhanced_code_by_class() {
        let default = |code| Reply::plain(code, "x").with_default_enhanced().enhanced;
        assert_eq!(default(250), Some(EnhancedCode(2, 0, 0)));
        assert_eq!(default(451), Some(EnhancedCode(4, 0, 0)));
        assert_eq!(default(554), Some(EnhancedCode(5, 0, 0)));
        assert_eq!(default(354), None);
        let given = Reply::new(550, (5, 1, 1), "x");
        assert_eq!(given.with_default_enhanced(), given);
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

    #[test]
    fn ascii_text_is_cut_to_exactly_512_octets() {
        let text = "x".repeat(600);
        let out = encode(Reply::new(250, (2, 0, 0), &text), true);
        assert_eq!(out.len(), MAX_REPLY_LINE);
        assert!(out.starts_with(b"250 2.0.0 xxx"));
        assert!(out.ends_with(b"x\r\n"));
    }

    #[test]
    fn multi_digit_enhanced_codes_and_codes_outside_2xx_5xx() {
        let r = Reply::new(550, (5, 7, 26), "no");
        assert_eq!(&encode(r, true)[..], b"550 5.7.26 no\r\n");
        let bogus = Reply::new(199, (2, 0, 0), "odd");
        assert_eq!(&encode(bogus, true)[..], b"451 4.3.0 odd\r\n");
        assert_eq!(
            &encode(Reply::plain(1000, "odd"), false)[..],
            b"451 odd\r\n"
        );
    }

    #[test]
    fn enhanced_codes_agree_with_the_reply_code() {
        let mismatched = Reply::new(550, (2, 1, 5), "no");
        assert_eq!(&encode(mismatched, true)[..], b"550 5.1.5 no\r\n");
        let too_long = Reply::new(451, (4, 1000, 7), "later");
        assert_eq!(&encode(too_long, true)[..], b"451 4.0.0 later\r\n");
        let on_354 = Reply::new(354, (2, 0, 0), "go ahead");
        assert_eq!(&encode(on_354, true)[..], b"354 go ahead\r\n");
        let bad_class = Reply::new(250, (9, 9, 9), "fine");
        assert_eq!(&encode(bad_class, true)[..], b"250 2.9.9 fine\r\n");
    }

    #[test]
    fn crlf_separates_lines_and_a_final_newline_adds_none() {
        let r = Reply::new(550, (5, 1, 1), "first\r\nsecond\r\n");
        assert_eq!(
            &encode(r, true)[..],
            b"550-5.1.1 first\r\n550 5.1.1 second\r\n"
        );
        assert_eq!(
            &encode(Reply::plain(250, "one\n"), false)[..],
            b"250 one\r\n"
        );
        assert_eq!(&encode(Reply::plain(250, "\n"), false)[..], b"250 \r\n");
    }

    #[test]
    fn a_line_that_does_not_fit_leaves_the_buffer_as_it_was() {
        let mut out: heapless::Vec<u8, 16> = heapless::Vec::new();
        let mut writer = ReplyWriter::new(&mut out, true);
        writer.format(250, None, format_args!("{}", 7));
        writer.format(
            250,
            Some(EnhancedCode(2, 1, 0)),
            format_args!("{}", "too long"),
        );
        assert_eq!(&out[..], b"250 7\r\n");
    }
}
