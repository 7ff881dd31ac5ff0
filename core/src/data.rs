//! Streaming DATA decoder: dot-unstuffing and end-of-data detection (RFC 5321 4.1.1.4, 4.5.2).
//!
//! The decoder is a byte-resumable state machine: input may be split anywhere and the
//! concatenation of the emitted body chunks is the same. Body chunks borrow from the input
//! (or are short static insertions), so the decoder never copies or stores the message.
//!
//! Invariants:
//! - The message ends only on `CRLF . CRLF` (or `. CRLF` as the first line). A bare CR or LF
//!   never starts a line, so `<LF>.<CR><LF>`, `<CR>.<CR>` and friends are content
//!   (CVE-2023-51764), under every [`BareNewline`] policy.
//! - A leading dot is removed from lines that start after a CRLF, and under
//!   [`BareNewline::Normalize`] also after a bare LF (a client that ends its lines in LF,
//!   such as Python's smtplib given LF text, dot-stuffs after them too); only a line after
//!   a CRLF can end the data.
//! - Once a [`DataError`] is found no further body is emitted; decoding goes on to the real
//!   end of data so that the session stays in sync. Every kind of error is noted and the one
//!   reported is the first by [`DataError`] order (of two bare newlines, the first in the
//!   input), so it does not depend on how the input was split.

use crate::config::BareNewline;

/// Why a message is refused at its end, in order of precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DataError {
    /// More octets than the message size limit.
    TooBig,
    /// A LF not preceded by CR, under [`BareNewline::Reject`].
    BareLf,
    /// A CR not followed by LF, under [`BareNewline::Reject`].
    BareCr,
    /// A text line longer than the configured limit.
    LineTooLong,
}

impl DataError {
    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// What [`DataDecoder::decode`] found next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Message octets to hand on.
    Body(&'a [u8]),
    /// `CRLF . CRLF` was consumed: the message is complete.
    End,
    /// All input was consumed; more is needed.
    NeedMore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum State {
    /// At the start of a line (after CRLF, or at the start of data).
    LineStart,
    /// A `.` at the start of a line was consumed and not emitted.
    Dot,
    /// `.` CR at the start of a line were consumed and not emitted.
    DotCr,
    /// Under [`BareNewline::Normalize`], at the start of a line after a bare LF: a leading
    /// dot is stuffing, but `. CRLF` here is no end of data.
    LfLineStart,
    /// Inside a line.
    Text,
    /// Inside a line, right after an emitted CR.
    Cr,
    /// Under [`BareNewline::Normalize`]: an emitted CR, then a CR withheld until the next
    /// octet shows whether it is the CR of a CRLF (then the withheld CR is dropped, so
    /// `CR CR LF` is one line end).
    CrCr,
}

/// The DATA decoder. See the module documentation for its invariants.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DataDecoder {
    state: State,
    policy: BareNewline,
    /// Octets of the current line as transmitted, without its CRLF.
    line_len: usize,
    /// Longest line content (limit minus CRLF).
    max_line: usize,
    /// Octets of content so far (emitted or not).
    size: u64,
    max_size: u64,
    /// Every [`DataError`] seen, one bit each.
    errors: u8,
}

impl DataDecoder {
    /// `text_line`: longest line including CRLF; `message_size`: most octets to emit.
    pub fn new(policy: BareNewline, text_line: Option<usize>, message_size: Option<u64>) -> Self {
        DataDecoder {
            state: State::LineStart,
            policy,
            line_len: 0,
            max_line: text_line.map_or(usize::MAX, |n| n.saturating_sub(2)),
            size: 0,
            max_size: message_size.unwrap_or(u64::MAX),
            errors: 0,
        }
    }

    /// The error to report (the first by precedence), if any.
    pub fn error(&self) -> Option<DataError> {
        [
            DataError::TooBig,
            DataError::BareLf,
            DataError::BareCr,
            DataError::LineTooLong,
        ]
        .into_iter()
        .find(|error| self.errors & error.bit() != 0)
    }

    /// Octets of message content so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Consumes input up to the next body chunk, the end of data, or the end of `input`.
    ///
    /// Returns how many octets of `input` were consumed. `End` is returned exactly once; what
    /// follows the terminator is left unconsumed.
    #[allow(unused_assignments)] // `run` is reset after every flush, read or not
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> (usize, Decoded<'a>) {
        let mut i = 0;
        let mut run = 0; // start of the pending body run in `input`
                         // Hands on `input[run..i]` (if non-empty and accepted), else restarts the run at `i`.
        macro_rules! flush_run {
            () => {
                if i > run {
                    if let Some(chunk) = self.accept(&input[run..i]) {
                        return (i, Decoded::Body(chunk));
                    }
                    run = i;
                }
            };
        }
        // Hands on a static replacement octet sequence.
        macro_rules! insert {
            ($bytes:expr) => {
                if let Some(chunk) = self.accept($bytes) {
                    return (i, Decoded::Body(chunk));
                }
            };
        }
        while i < input.len() {
            match self.state {
                State::Text => match memchr::memchr2(b'\r', b'\n', &input[i..]) {
                    None => {
                        self.line_len += input.len() - i;
                        i = input.len();
                        self.check_line_len();
                    }
                    Some(k) => {
                        self.line_len += k;
                        i += k;
                        self.check_line_len();
                        if input[i] == b'\r' && input.get(i + 1) == Some(&b'\n') {
                            // Fast path: a CRLF inside the run. The next line is text unless
                            // it starts with a dot (or is not here yet).
                            i += 2;
                            self.line_len = 0;
                            if input.get(i).is_none_or(|&b| b == b'.') {
                                self.state = State::LineStart;
                            }
                        } else if input[i] == b'\r' {
                            i += 1;
                            self.state = State::Cr;
                        } else {
                            // A LF not preceded by CR is handled on its own, so that
                            // Normalize can replace it.
                            flush_run!();
                            i += 1;
                            run = i;
                            if self.policy == BareNewline::Normalize {
                                self.state = State::LfLineStart;
                            } else {
                                // The LF stays inside the line.
                                self.line_len += 1;
                                self.check_line_len();
                            }
                            if let Some(bytes) = self.bare(DataError::BareLf, b"\n") {
                                insert!(bytes);
                            }
                        }
                    }
                },
                State::Cr => {
                    if input[i] == b'\n' {
                        i += 1;
                        self.state = State::LineStart;
                        self.line_len = 0;
                    } else if self.policy == BareNewline::Normalize && input[i] == b'\r' {
                        // The emitted CR goes out with the run; this one is withheld.
                        flush_run!();
                        i += 1;
                        run = i;
                        self.state = State::CrCr;
                    } else if self.policy == BareNewline::Normalize {
                        // The CR goes out with the run (the state stays Cr until it has);
                        // then a LF completes it.
                        flush_run!();
                        self.state = State::Text;
                        self.line_len = 0;
                        insert!(b"\n");
                    } else {
                        self.state = State::Text;
                        self.line_len += 1;
                        if self.policy == BareNewline::Reject {
                            self.fail(DataError::BareCr);
                        }
                    }
                }
                State::CrCr => {
                    self.line_len = 0;
                    if input[i] == b'\n' {
                        // The withheld CR is dropped; this LF completes the emitted CR.
                        run = i;
                        i += 1;
                        self.state = State::LineStart;
                    } else if input[i] == b'\r' {
                        // The emitted CR was bare (CRLF), the withheld one is emitted, and
                        // this one is withheld.
                        flush_run!();
                        i += 1;
                        run = i;
                        insert!(b"\n\r");
                    } else {
                        // Both CRs were bare.
                        flush_run!();
                        self.state = State::Text;
                        insert!(b"\n\r\n");
                    }
                }
                State::LineStart => {
                    if input[i] == b'.' {
                        flush_run!();
                        i += 1;
                        run = i;
                        // RFC 5321 4.5.3.1.6: the stuffed dot does not count.
                        self.line_len = 0;
                        self.state = State::Dot;
                    } else {
                        self.state = State::Text;
                    }
                }
                State::LfLineStart => {
                    if input[i] == b'.' {
                        // Stuffing, removed; the rest of the line is text, whatever it is.
                        flush_run!();
                        i += 1;
                        run = i;
                    }
                    self.state = State::Text;
                }
                State::Dot => {
                    if input[i] == b'\r' {
                        i += 1;
                        run = i;
                        self.state = State::DotCr;
                    } else {
                        // A stuffed dot: it stays removed; the rest of the line is text.
                        self.state = State::Text;
                    }
                }
                State::DotCr => {
                    if input[i] == b'\n' {
                        self.state = State::LineStart;
                        return (i + 1, Decoded::End);
                    }
                    if self.policy == BareNewline::Normalize && input[i] == b'\r' {
                        // ".<CR><CR>": the first CR is emitted, the second withheld.
                        i += 1;
                        run = i;
                        self.state = State::CrCr;
                        insert!(b"\r");
                        continue;
                    }
                    // ".<CR>x": the dot was stuffing and the CR, not yet emitted, is bare.
                    self.state = State::Text;
                    self.line_len += 1;
                    if let Some(bytes) = self.bare(DataError::BareCr, b"\r") {
                        insert!(bytes);
                    }
                }
            }
        }
        flush_run!();
        (i, Decoded::NeedMore)
    }

    /// Applies the policy to a bare CR or LF whose raw form is `raw`; returns what to emit in
    /// its place (Normalize: CRLF), or `None` when the message is refused.
    fn bare(&mut self, error: DataError, raw: &'static [u8]) -> Option<&'static [u8]> {
        match self.policy {
            BareNewline::Reject => {
                self.fail(error);
                // Still content for the size limit, like under the other policies.
                self.accept(raw)
            }
            BareNewline::Allow => Some(raw),
            BareNewline::Normalize => {
                self.line_len = 0;
                Some(b"\r\n")
            }
        }
    }

    /// Counts `chunk` as content; returns it to emit unless an error was found.
    fn accept<'a>(&mut self, chunk: &'a [u8]) -> Option<&'a [u8]> {
        self.size = self.size.saturating_add(chunk.len() as u64);
        if self.size > self.max_size {
            self.fail(DataError::TooBig);
        }
        (self.errors == 0).then_some(chunk)
    }

    fn check_line_len(&mut self) {
        if self.line_len > self.max_line {
            self.fail(DataError::LineTooLong);
        }
    }

    fn fail(&mut self, error: DataError) {
        let bare = DataError::BareLf.bit() | DataError::BareCr.bit();
        if error.bit() & bare != 0 && self.errors & bare != 0 {
            return; // the first bare CR or LF is the one reported
        }
        self.errors |= error.bit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` octets; returns (body, ended, unconsumed, error).
    fn run(
        policy: BareNewline,
        input: &[u8],
        step: usize,
    ) -> (std::vec::Vec<u8>, bool, usize, Option<DataError>) {
        let mut d = DataDecoder::new(policy, Some(1000), Some(1 << 20));
        let mut body = std::vec::Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + step).min(input.len());
            let piece = &input[pos..end];
            let mut at = 0;
            loop {
                let (n, out) = d.decode(&piece[at..]);
                at += n;
                match out {
                    Decoded::Body(b) => body.extend_from_slice(b),
                    Decoded::End => return (body, true, input.len() - pos - at, d.error()),
                    Decoded::NeedMore => break,
                }
            }
            pos = end;
        }
        (body, false, 0, d.error())
    }

    /// Decodes `input` whole and in pieces of 1 to 7 octets: the outcome must not depend on
    /// the split (the body only matters for messages without error).
    fn all_splits(
        policy: BareNewline,
        input: &[u8],
    ) -> (std::vec::Vec<u8>, bool, usize, Option<DataError>) {
        let whole = run(policy, input, input.len().max(1));
        for step in 1..8 {
            let split = run(policy, input, step);
            assert_eq!(
                (split.1, split.2, split.3),
                (whole.1, whole.2, whole.3),
                "step {step}"
            );
            if whole.3.is_none() {
                assert_eq!(split.0, whole.0, "step {step}");
            }
        }
        whole
    }

    #[test]
    fn plain_message_ends_on_crlf_dot_crlf() {
        let (body, end, rest, err) = all_splits(
            BareNewline::Reject,
            b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
        );
        assert_eq!(body, b"Subject: x\r\n\r\nbody\r\n");
        assert!(end);
        assert_eq!(rest, 6);
        assert_eq!(err, None);
    }

    #[test]
    fn empty_message() {
        let (body, end, _, _) = all_splits(BareNewline::Reject, b".\r\n");
        assert!(body.is_empty() && end);
    }

    #[test]
    fn leading_dots_are_unstuffed() {
        let (body, end, _, _) = all_splits(BareNewline::Reject, b"..\r\n...x\r\n.y\r\nz.\r\n.\r\n");
        assert_eq!(body, b".\r\n..x\r\ny\r\nz.\r\n");
        assert!(end);
    }

    #[test]
    fn smuggling_variants_never_end_data() {
        for fake in [
            &b"\n.\n"[..],
            b"\n.\r\n",
            b"\r.\r\n",
            b"\r.\r",
            b"\r\n.\r",
            b"\r\n.\n",
            b"\r\n.\rX",
        ] {
            for policy in [
                BareNewline::Reject,
                BareNewline::Normalize,
                BareNewline::Allow,
            ] {
                let mut input = b"a".to_vec();
                input.extend_from_slice(fake);
                input.extend_from_slice(b"MAIL FROM:<x@y>\r\n");
                let (_, end, _, _) = all_splits(policy, &input);
                assert!(!end, "{fake:?} ended data under {policy:?}");
                input.extend_from_slice(b"\r\n.\r\n");
                let (_, end, rest, err) = all_splits(policy, &input);
                assert!(end && rest == 0, "{fake:?} {policy:?}");
                assert_eq!(err.is_some(), policy == BareNewline::Reject, "{fake:?}");
            }
        }
    }

    #[test]
    fn bare_newline_policies() {
        let input = b"a\nb\rc\r\n.\r\n";
        let (body, _, _, err) = all_splits(BareNewline::Allow, input);
        assert_eq!((&body[..], err), (&b"a\nb\rc\r\n"[..], None));
        let (body, _, _, err) = all_splits(BareNewline::Normalize, input);
        assert_eq!((&body[..], err), (&b"a\r\nb\r\nc\r\n"[..], None));
        let (_, end, _, err) = all_splits(BareNewline::Reject, input);
        assert_eq!((end, err), (true, Some(DataError::BareLf)));
    }

    #[test]
    fn normalize_reads_a_cr_before_crlf_as_part_of_the_line_end() {
        for (input, expected) in [
            (
                &b"From: a\r\r\nTo: b\r\n.\r\n"[..],
                &b"From: a\r\nTo: b\r\n"[..],
            ),
            (b"a\r\r\r\nb\r\n.\r\n", b"a\r\n\r\nb\r\n"),
            (b"a\r\rb\r\n.\r\n", b"a\r\n\r\nb\r\n"),
            (b"a\r\r\r\r\rb\r\n.\r\n", b"a\r\n\r\n\r\n\r\n\r\nb\r\n"),
            (b"a\r\n.\r\r\nb\r\n.\r\n", b"a\r\n\r\nb\r\n"),
            (b"a\r\n.\r\rb\r\n.\r\n", b"a\r\n\r\n\r\nb\r\n"),
        ] {
            let (body, end, rest, err) = all_splits(BareNewline::Normalize, input);
            assert_eq!(
                (body.escape_ascii().to_string(), end, rest, err),
                (expected.escape_ascii().to_string(), true, 0, None),
                "{}",
                input.escape_ascii()
            );
        }
        // The raw CRLF after a withheld CR starts a line: CR CR LF . CR LF ends the data,
        // under every policy.
        for policy in [
            BareNewline::Normalize,
            BareNewline::Allow,
            BareNewline::Reject,
        ] {
            let (_, end, rest, _) = all_splits(policy, b"a\r\r\n.\r\nNOOP\r\n");
            assert!(end && rest == 6, "{policy:?}");
        }
    }

    #[test]
    fn long_lines_and_size_are_limited() {
        let mut long = vec![b'x'; 999];
        long.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(
            all_splits(BareNewline::Reject, &long).3,
            Some(DataError::LineTooLong)
        );
        long.remove(0);
        assert_eq!(all_splits(BareNewline::Reject, &long).3, None);

        let mut d = DataDecoder::new(BareNewline::Reject, None, Some(4));
        assert_eq!(d.decode(b"abcdef\r\n"), (8, Decoded::NeedMore));
        assert_eq!(d.error(), Some(DataError::TooBig));
        assert_eq!(d.decode(b".\r\n"), (3, Decoded::End));
    }
}
