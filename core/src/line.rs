//! Command line assembly (RFC 5321 2.3.8, 4.5.3.1.4).
//!
//! Only CRLF ends a command line. A bare CR or LF inside it is remembered (the line is
//! refused as a whole, never split). A line longer than the buffer is discarded up to its CRLF
//! and reported as too long; it is never buffered beyond `N` octets.

/// How a completed line arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LineStatus {
    /// The line is in the buffer (without its CRLF).
    Complete,
    /// The line did not fit into the buffer and was discarded.
    TooLong,
    /// The line holds a CR or LF that is not its terminating CRLF.
    BareNewline,
}

/// A buffer of `N` octets that collects one command line.
#[derive(Clone, Debug)]
pub struct LineBuffer<const N: usize> {
    buf: heapless::Vec<u8, N>,
    /// Octets were dropped because the line exceeded `N`.
    overflow: bool,
    /// The last octet received was a CR, not yet stored: it may start the CRLF.
    after_cr: bool,
    /// A LF not preceded by CR was seen.
    bare_lf: bool,
}

impl<const N: usize> Default for LineBuffer<N> {
    fn default() -> Self {
        LineBuffer {
            buf: heapless::Vec::new(),
            overflow: false,
            after_cr: false,
            bare_lf: false,
        }
    }
}

impl<const N: usize> LineBuffer<N> {
    /// Consumes octets up to and including the next CRLF.
    ///
    /// Returns how many octets were consumed and, when a line ended, its status. After a
    /// completed line, read it with [`line`](Self::line) and then call [`clear`](Self::clear).
    pub fn push(&mut self, input: &[u8]) -> (usize, Option<LineStatus>) {
        let mut from = 0;
        while let Some(k) = memchr::memchr(b'\n', &input[from..]) {
            let lf = from + k;
            let segment = &input[from..lf];
            from = lf + 1;
            match segment.split_last() {
                None if self.after_cr => {
                    self.after_cr = false;
                    return (from, Some(self.status()));
                }
                Some((&b'\r', text)) => {
                    self.store_pending_cr();
                    self.store(text);
                    return (from, Some(self.status()));
                }
                _ => {
                    self.store_pending_cr();
                    self.store(segment);
                    self.store(b"\n");
                    self.bare_lf = true;
                }
            }
        }
        if let Some((&last, text)) = input[from..].split_last() {
            self.store_pending_cr();
            if last == b'\r' {
                self.store(text);
                self.after_cr = true;
            } else {
                self.store(&input[from..]);
            }
        }
        (input.len(), None)
    }

    /// The completed line, without CRLF.
    pub fn line(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets the line, ready for the next one.
    pub fn clear(&mut self) {
        // Field by field: rebuilding the value would copy the whole buffer.
        self.buf.clear();
        self.overflow = false;
        self.after_cr = false;
        self.bare_lf = false;
    }

    /// A CR that ended the previous input and turned out not to start a CRLF.
    fn store_pending_cr(&mut self) {
        if self.after_cr {
            self.after_cr = false;
            self.store(b"\r");
        }
    }

    fn store(&mut self, bytes: &[u8]) {
        if self.overflow || self.buf.extend_from_slice(bytes).is_err() {
            self.overflow = true;
        }
    }

    fn status(&self) -> LineStatus {
        if self.overflow {
            LineStatus::TooLong
        } else if self.bare_lf || self.buf.contains(&b'\r') {
            LineStatus::BareNewline
        } else {
            LineStatus::Complete
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_only_on_crlf_at_any_split() {
        let input = b"NOOP\r\nNO\nOP\r\nA\rB\r\n";
        for step in 1..=input.len() {
            let mut lb = LineBuffer::<64>::default();
            let mut lines = std::vec::Vec::new();
            for piece in input.chunks(step) {
                let mut at = 0;
                while at < piece.len() {
                    let (n, done) = lb.push(&piece[at..]);
                    at += n;
                    if let Some(status) = done {
                        lines.push((lb.line().to_vec(), status));
                        lb.clear();
                    }
                }
            }
            assert_eq!(
                lines,
                [
                    (b"NOOP".to_vec(), LineStatus::Complete),
                    (b"NO\nOP".to_vec(), LineStatus::BareNewline),
                    (b"A\rB".to_vec(), LineStatus::BareNewline),
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn overlong_lines_are_dropped_to_their_end() {
        let mut lb = LineBuffer::<8>::default();
        assert_eq!(lb.push(b"0123456789"), (10, None));
        assert_eq!(lb.push(b"abc\r"), (4, None));
        assert_eq!(lb.push(b"\nNOOP\r\n"), (1, Some(LineStatus::TooLong)));
        lb.clear();
        assert_eq!(lb.push(b"NOOP\r\n"), (6, Some(LineStatus::Complete)));
        assert_eq!(lb.line(), b"NOOP");
    }

    #[test]
    fn a_line_of_exactly_the_capacity_fits() {
        let mut lb = LineBuffer::<4>::default();
        assert_eq!(lb.push(b"NOOP\r\n"), (6, Some(LineStatus::Complete)));
        assert_eq!(lb.line(), b"NOOP");
    }
}
