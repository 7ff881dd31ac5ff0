//! Differential fuzzing of `DataDecoder` against a whole-input reference decoder.
//!
//! Input layout: 7 header octets, then the DATA stream.
//! - `h[0]`: how the stream is cut into pieces: longest piece `(h[0] & 0x3f) + 1`; bit 6 also
//!   allows empty pieces; bit 7 makes every piece as long as possible.
//! - `h[1..5]`: seed of the piece lengths.
//! - `h[5]`: text line limit for the limits run: `h[5] % 67` octets (including CRLF).
//! - `h[6]`: message size limit for the limits run: `h[6]` octets.
//!
//! The reference (`reference`) reads the whole input with lookahead instead of a streaming
//! state machine, following the documented semantics of `smtpd_core::data`:
//! - the message ends at the first `CRLF . CRLF`, or at `. CRLF` at the very start; what
//!   follows stays unconsumed; the content is what precedes the `. CRLF` line (its last CRLF
//!   included);
//! - lines start at the start of data and after a CRLF, and under `Normalize` (for
//!   unstuffing only) after a bare LF; a `.` starting a line is removed;
//! - a CR not followed by LF, or a LF not preceded by CR, is bare: `Allow` delivers it as is,
//!   `Normalize` as CRLF (but drops a CR right before a CRLF), `Reject` notes `BareCr`/`BareLf` (the first one by position);
//! - `LineTooLong`: a line longer than the text line limit minus 2, counting its octets as
//!   sent without the CRLF and without a stuffed dot (RFC 5321 4.5.3.1.6); a bare CR or LF
//!   is inside the line, except under `Normalize`, which delivers it as CRLF (a line end);
//! - `TooBig`: more content octets than the size limit: the delivered octets, or under
//!   `Reject` the unstuffed octets as sent (`size()`: "octets of content, emitted or not");
//! - the error reported is the first by `DataError` precedence (TooBig, then the first bare
//!   CR/LF, then LineTooLong), whatever the split; once there is one, no body is emitted.
//!
//! Checks, with the stream fed in fuzz-chosen pieces:
//! 1. Without limits, all three policies: the end position (hence the unconsumed rest) is the
//!    reference's; `Allow` and `Normalize` deliver exactly the reference body and record no
//!    error; `Reject` records an error iff the content has a bare CR or LF, and then the kind
//!    of the first one; without error its body is the `Allow` body, with an error what it
//!    emitted is a prefix of it. `size()` is the body length, or with an error the content
//!    length. For a stream without end, only a trailing CR may still be undecided (its octets
//!    may be held back).
//! 2. With the header's limits, fed in pieces and whole: same end positions; exactly the
//!    expected error; the body is a prefix of the unlimited one, and equal to it without
//!    error.
//! 3. The decoder contract itself: `NeedMore` consumes everything; a `Body` chunk is non-empty
//!    and is either part of the consumed input or one of the static insertions; the decoder
//!    never stalls (a call consuming nothing must produce a chunk, and not repeatedly).

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd_core::data::{DataDecoder, DataError, Decoded};
use smtpd_core::BareNewline;

const POLICIES: [BareNewline; 3] = [
    BareNewline::Allow,
    BareNewline::Normalize,
    BareNewline::Reject,
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 7 {
        return;
    }
    let (h, input) = data.split_at(7);
    let cuts = cuts(
        h[0],
        u32::from_le_bytes([h[1], h[2], h[3], h[4]]),
        input.len(),
    );
    let whole = [input.len()];
    let text_line = usize::from(h[5] % 67);
    let message_size = u64::from(h[6]);

    let (end, content) = find_end(input);
    let decided = match end {
        Some(_) => content,
        // Without the end, a trailing CR may still turn out to start a CRLF.
        None => content.strip_suffix(b"\r").unwrap_or(content),
    };
    let allow_body = reference(content, BareNewline::Allow).body;

    // 1. No limits: exact differential check.
    let mut unlimited_body = [Vec::new(), Vec::new(), Vec::new()];
    for (k, policy) in POLICIES.into_iter().enumerate() {
        let got = run(policy, None, None, input, &cuts);
        let want = reference(content, policy);
        assert_eq!(got.end, end, "{policy:?}: end of data");
        if policy == BareNewline::Reject {
            let bare = reference(decided, policy).first_bare;
            assert_eq!(got.error, bare, "Reject: error vs first bare CR/LF");
            if bare.is_none() {
                assert_same_body(&got.body, &allow_body, end);
            }
        } else {
            assert_eq!(got.error, None, "{policy:?}: error without limits");
            assert_same_body(&got.body, &want.body, end);
        }
        if got.error.is_none() {
            assert_eq!(got.size, got.body.len() as u64, "{policy:?}: size()");
        } else if end.is_some() {
            // `size()`: octets of content, emitted or not.
            assert_eq!(
                got.size,
                allow_body.len() as u64,
                "{policy:?}: size() is not the content length (content {content:?})"
            );
        }
        unlimited_body[k] = got.body;
    }
    // What Reject emits before its error is raw content: a prefix of the Allow body.
    assert!(
        unlimited_body[0].starts_with(&unlimited_body[2]),
        "Reject body is not a prefix of the Allow body"
    );

    // 2. Limits. Only a message that ended is judged: a partial one may still hold octets back.
    if end.is_none() {
        return;
    }
    for (k, policy) in POLICIES.into_iter().enumerate() {
        let want = reference(content, policy);
        // The error reported is the first by precedence: TooBig, the first bare CR/LF,
        // LineTooLong. Content size: the delivered octets (Reject: the octets as sent).
        let size = match policy {
            BareNewline::Normalize => want.body.len(),
            _ => allow_body.len(),
        };
        let expected = if size as u64 > message_size {
            Some(DataError::TooBig)
        } else if policy == BareNewline::Reject && want.first_bare.is_some() {
            want.first_bare
        } else if want.longest_line > text_line.saturating_sub(2) {
            Some(DataError::LineTooLong)
        } else {
            None
        };
        for (cut, how) in [(&cuts[..], "in pieces"), (&whole[..], "whole")] {
            let got = run(policy, Some(text_line), Some(message_size), input, cut);
            assert_eq!(got.end, end, "{policy:?}: end of data with limits");
            assert!(
                got.error == expected,
                "{policy:?} fed {how}: error {:?}, expected {expected:?} (text_line {text_line}, \
                 message_size {message_size}, content size {size}, longest line {}, first \
                 bare {:?})",
                got.error,
                want.longest_line,
                want.first_bare
            );
            assert!(
                unlimited_body[k].starts_with(&got.body),
                "{policy:?}: body with limits is not a prefix of the unlimited body"
            );
            if expected.is_none() {
                assert_eq!(got.body, unlimited_body[k], "{policy:?}: body with limits");
            }
        }
    }
});

/// Body equality; for a stream without end, the decoder may still hold back the octets that a
/// trailing CR stands for (under Normalize, two trailing CRs: it withholds the last).
fn assert_same_body(got: &[u8], want: &[u8], end: Option<usize>) {
    if end.is_some() || got == want {
        assert_eq!(got, want, "body");
        return;
    }
    let held = want
        .strip_prefix(got)
        .unwrap_or_else(|| panic!("body {got:?} is not a prefix of the reference {want:?}"));
    assert!(
        [&b"\r"[..], b"\n", b"\r\n", b"\n\r\n"].contains(&held),
        "body {got:?} lags the reference {want:?} by more than a trailing CR"
    );
}

/// Where the message ends (index after the terminator) and its content (the input before the
/// terminating `. CRLF` line, or all of it without end).
fn find_end(input: &[u8]) -> (Option<usize>, &[u8]) {
    if input.starts_with(b".\r\n") {
        return (Some(3), &input[..0]);
    }
    match input.windows(5).position(|w| w == b"\r\n.\r\n") {
        Some(p) => (Some(p + 5), &input[..p + 2]),
        None => (None, input),
    }
}

struct Reference {
    body: Vec<u8>,
    first_bare: Option<DataError>,
    longest_line: usize,
}

/// Decodes `content` (which holds no terminator) with lookahead. A trailing CR counts as bare.
fn reference(content: &[u8], policy: BareNewline) -> Reference {
    let mut body = Vec::with_capacity(content.len() + 16);
    let mut first_bare = None;
    let (mut line, mut longest) = (0usize, 0usize);
    let mut line_start = true;
    let mut i = 0;
    while i < content.len() {
        let b = content[i];
        if line_start && b == b'.' {
            // A stuffed dot: removed, and not counted (RFC 5321 4.5.3.1.6).
            line_start = false;
            i += 1;
            continue;
        }
        line_start = false;
        let crlf = b == b'\r' && content.get(i + 1) == Some(&b'\n');
        if crlf {
            body.extend_from_slice(b"\r\n");
            longest = longest.max(line);
            line = 0;
            line_start = true;
            i += 2;
            continue;
        }
        if b == b'\r' || b == b'\n' {
            let kind = if b == b'\r' {
                DataError::BareCr
            } else {
                DataError::BareLf
            };
            first_bare.get_or_insert(kind);
            match policy {
                BareNewline::Normalize if b == b'\r' && content[i + 1..].starts_with(b"\r\n") => {}
                BareNewline::Normalize => {
                    body.extend_from_slice(b"\r\n");
                    longest = longest.max(line);
                    line = 0;
                    // A client ending lines in LF stuffs after them too.
                    line_start = b == b'\n';
                }
                BareNewline::Allow | BareNewline::Reject => {
                    body.push(b);
                    line += 1;
                }
            }
        } else {
            body.push(b);
            line += 1;
        }
        i += 1;
    }
    Reference {
        body,
        first_bare,
        longest_line: longest.max(line),
    }
}

/// Piece boundaries (cumulative ends) for a stream of `len` octets.
fn cuts(mode: u8, seed: u32, len: usize) -> Vec<usize> {
    let max = usize::from(mode & 0x3f) + 1;
    let min = if mode & 0x40 != 0 { 0 } else { 1 };
    let mut state = seed | 1;
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let step = if mode & 0x80 != 0 {
            len
        } else {
            // xorshift32
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            min + state as usize % (max - min + 1)
        };
        at = (at + step).min(len);
        out.push(at);
    }
    out
}

struct Run {
    body: Vec<u8>,
    /// Absolute index after the terminator.
    end: Option<usize>,
    error: Option<DataError>,
    size: u64,
}

fn run(
    policy: BareNewline,
    text_line: Option<usize>,
    message_size: Option<u64>,
    input: &[u8],
    cuts: &[usize],
) -> Run {
    let mut d = DataDecoder::new(policy, text_line, message_size);
    let mut body = Vec::new();
    let mut start = 0;
    let mut end = None;
    'pieces: for &cut in cuts {
        let piece = &input[start..cut];
        let mut at = 0;
        let mut stalls = 0;
        loop {
            let offered = &piece[at..];
            let (n, decoded) = d.decode(offered);
            assert!(n <= offered.len(), "consumed {n} of {}", offered.len());
            match decoded {
                Decoded::Body(chunk) => {
                    assert!(!chunk.is_empty(), "empty Body chunk");
                    check_chunk_origin(offered, n, chunk);
                    body.extend_from_slice(chunk);
                }
                Decoded::End => {
                    assert!(n > 0, "End without consuming the terminator");
                    end = Some(start + at + n);
                    break 'pieces;
                }
                Decoded::NeedMore => {
                    assert_eq!(n, offered.len(), "NeedMore without consuming all input");
                    break;
                }
            }
            stalls = if n == 0 { stalls + 1 } else { 0 };
            assert!(
                stalls < 2,
                "decoder stalled: two chunks in a row without consuming"
            );
            at += n;
        }
        start = cut;
    }
    if cuts.is_empty() {
        // Empty stream: one call with nothing must not end or emit.
        assert_eq!(d.decode(&[]), (0, Decoded::NeedMore));
    }
    Run {
        body,
        end,
        error: d.error(),
        size: d.size(),
    }
}

/// A chunk is either a slice of the input consumed by this call, or a static insertion.
fn check_chunk_origin(offered: &[u8], consumed: usize, chunk: &[u8]) {
    let (o, c) = (offered.as_ptr() as usize, chunk.as_ptr() as usize);
    if c >= o && c <= o + offered.len() {
        assert!(
            c + chunk.len() <= o + consumed,
            "chunk reaches past the consumed input ({consumed} of {})",
            offered.len()
        );
    } else {
        assert!(
            [&b"\r"[..], b"\n", b"\r\n", b"\n\r", b"\n\r\n"].contains(&chunk),
            "chunk {chunk:?} is neither input nor an insertion"
        );
    }
}
