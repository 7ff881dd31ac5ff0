//! Properties of the session and of the DATA decoder, checked with proptest.
//!
//! - Split independence: a session script fed in one piece, in random pieces (with a
//!   512-octet output buffer) or one octet at a time gives the same output and deliveries.
//! - Robustness: arbitrary bytes never panic and every output octet is a well-formed reply.
//! - Handler contract: every accepted `data_start` gets exactly one `data_end` / `data_abort`.
//! - The DATA decoder matches a simple line-oriented reference decoder.

mod support;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;
use smtpd_core::data::{DataDecoder, DataError, Decoded};
use smtpd_core::envelope::Envelope;
use smtpd_core::handler::AbortReason;
use smtpd_core::{BareNewline, Config, Instant, Reply, Session};
use support::{block_on, config, Delivered, Recorder};

// ---------------------------------------------------------------------------------------------
// Driving a session
// ---------------------------------------------------------------------------------------------

/// Everything observable of a session run.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    transcript: Vec<u8>,
    log: Vec<String>,
    delivered: Vec<Delivered>,
    aborts: Vec<AbortReason>,
    closed: bool,
    /// The handler log when the session closed (before any disconnect call), if it did.
    log_at_close: Option<Vec<String>>,
}

fn recorder() -> Recorder {
    Recorder {
        refuse_rcpt: Some("bad"),
        verbs: vec![("XHELLO", Reply::new(250, (2, 0, 0), "Hello"))],
        ..Recorder::default()
    }
}

type Sess<const OUT: usize> = Session<'static, Recorder, 548, OUT>;

/// Offers `piece` until it is consumed, flushing the output after every call.
fn feed<const OUT: usize>(session: &mut Sess<OUT>, piece: &[u8], transcript: &mut Vec<u8>) {
    let mut pending = piece;
    loop {
        let used = block_on(session.handle_input(pending, Instant::from_millis(0)));
        pending = &pending[used..];
        let output = session.output().to_vec();
        session.consume_output(output.len());
        transcript.extend_from_slice(&output);
        if pending.is_empty() || session.is_closed() {
            return;
        }
        assert!(used > 0 || !output.is_empty(), "session made no progress");
    }
}

fn flush<const OUT: usize>(session: &mut Sess<OUT>, transcript: &mut Vec<u8>) {
    let output = session.output().to_vec();
    session.consume_output(output.len());
    transcript.extend_from_slice(&output);
}

/// Runs `input` split at `cuts` through a session with an `OUT`-octet output buffer; then lets
/// the command timeout expire and disconnects.
fn run<const OUT: usize>(config: &Config<'static>, input: &[u8], cuts: &[usize]) -> Outcome {
    let config: &'static Config<'static> = Box::leak(Box::new(config.clone()));
    let mut session = Sess::<OUT>::new(config, None, recorder());
    let mut transcript = Vec::new();
    feed(&mut session, b"", &mut transcript);
    let mut start = 0;
    let mut log_at_close = None;
    for &cut in cuts.iter().chain([input.len()].iter()) {
        if cut > start {
            feed(&mut session, &input[start..cut], &mut transcript);
            start = cut;
        }
        if session.is_closed() && log_at_close.is_none() {
            log_at_close = Some(session.handler().log.clone());
        }
    }
    block_on(session.handle_timeout(Instant::from_millis(1 << 40)));
    flush(&mut session, &mut transcript);
    if session.is_closed() && log_at_close.is_none() {
        log_at_close = Some(session.handler().log.clone());
    }
    block_on(session.handle_disconnect());
    flush(&mut session, &mut transcript);
    let closed = session.is_closed();
    let handler = session.into_handler();
    check_contract(&handler.log, true).unwrap();
    // Where the input ran dry depends on how it was split; nothing else may.
    let without_pauses = |log: Vec<String>| {
        log.into_iter()
            .filter(|entry| !entry.starts_with("pause"))
            .collect()
    };
    Outcome {
        transcript,
        log: without_pauses(handler.log),
        delivered: handler.delivered,
        aborts: handler.aborts,
        closed,
        log_at_close: log_at_close.map(without_pauses),
    }
}

/// Sorted, distinct cut positions in `0..=len`.
fn positions(len: usize, cuts: &[Index]) -> Vec<usize> {
    let mut positions: Vec<usize> = cuts.iter().map(|i| i.index(len + 1)).collect();
    positions.sort_unstable();
    positions.dedup();
    positions
}

/// Checks that `out` is a sequence of well-formed, complete reply lines (RFC 5321 4.2,
/// 4.5.3.1.5).
fn check_replies(out: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(out).map_err(|e| format!("not UTF-8: {e}"))?;
    if text.is_empty() {
        return Ok(());
    }
    if !text.ends_with("\r\n") {
        return Err(format!("output ends mid-line: {text:?}"));
    }
    let mut open: Option<&str> = None;
    for line in text.split_terminator("\r\n") {
        let b = line.as_bytes();
        if line.contains(['\r', '\n']) {
            return Err(format!("bare CR/LF in {line:?}"));
        }
        // RFC 5321 4.2: reply text is printable US-ASCII (`textstring`).
        if !line.bytes().all(|b| matches!(b, b' '..=b'~')) {
            return Err(format!("not printable US-ASCII: {line:?}"));
        }
        if b.len() + 2 > 512 {
            return Err(format!("reply line of {} octets", b.len() + 2));
        }
        let code_ok = b.len() >= 3
            && (b'2'..=b'5').contains(&b[0])
            && (b'0'..=b'5').contains(&b[1])
            && b[2].is_ascii_digit();
        if !code_ok {
            return Err(format!("bad reply code in {line:?}"));
        }
        if let Some(code) = open {
            if &line[..3] != code {
                return Err(format!("continuation code changed: {line:?}"));
            }
        }
        open = match b.get(3) {
            None | Some(b' ') => None,
            Some(b'-') => Some(&line[..3]),
            Some(_) => return Err(format!("no SP or '-' after the code: {line:?}")),
        };
    }
    match open {
        Some(_) => Err("the last reply is incomplete".into()),
        None => Ok(()),
    }
}

/// `data_start` is followed by exactly one `data_end` or `abort ...` before the next one, and
/// pauses come only in between.
/// With `finished`, no message may be left open.
fn check_contract(log: &[String], finished: bool) -> Result<(), String> {
    let mut open = false;
    for (i, entry) in log.iter().enumerate() {
        if entry == "data_start" {
            if open {
                return Err(format!("data_start #{i} while a message is open: {log:?}"));
            }
            open = true;
        } else if entry.starts_with("pause") {
            if !open {
                return Err(format!("{entry} #{i} outside a message: {log:?}"));
            }
        } else if entry == "data_end" || entry.starts_with("abort ") {
            if !open {
                return Err(format!("{entry} #{i} without data_start: {log:?}"));
            }
            open = false;
        }
    }
    if finished && open {
        return Err(format!("a started message was never ended: {log:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Valid and invalid command lines.
const COMMANDS: &[&[u8]] = &[
    b"EHLO client.example\r\n",
    b"HELO client.example\r\n",
    b"EHLO\r\n",
    b"MAIL FROM:<a@b.example>\r\n",
    b"MAIL FROM:<> SIZE=100 BODY=8BITMIME\r\n",
    b"MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n",
    "MAIL FROM:<jörg@b.example> SMTPUTF8\r\n".as_bytes(),
    "MAIL FROM:<jörg@b.example>\r\n".as_bytes(),
    b"MAIL FROM:<a@b.example> SIZE=x\r\n",
    b"MAIL FROM:a@b.example\r\n",
    b"MAIL FROM:<a@b.example> FOO=BAR\r\n",
    b"RCPT TO:<c@d.example>\r\n",
    b"RCPT TO:<e@f.example>\r\n",
    b"RCPT TO:<bad@d.example>\r\n",
    b"RCPT TO:<>\r\n",
    b"RCPT TO:<Postmaster>\r\n",
    "RCPT TO:<δ@παράδειγμα.example>\r\n".as_bytes(),
    b"RCPT TO:<c@d.example> NOTIFY=NEVER\r\n",
    b"DATA\r\n",
    b"DATA\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY a@b.example\r\n",
    b"VRFY <\r\n",
    b"EXPN list\r\n",
    b"HELP\r\n",
    b"HELP MAIL\r\n",
    b"XHELLO there\r\n",
    b"XFOO\r\n",
    b"\r\n",
    b"NO\nOP\r\n",
    b"NO\rOP\r\n",
    b"NOOP \xff\r\n",
    b"NO\0OP\r\n",
    b"BDAT x\r\n",
    b"BDAT 0 LAST\r\n",
    b"NOOP",
    b"\r",
    b"\n",
];

/// Pieces of message content: dots, line ends, bare CR and LF, text.
const BODY_PIECES: &[&[u8]] = &[
    b".",
    b"..",
    b"\r\n",
    b"\n",
    b"\r",
    b"x",
    b"hello",
    b".\r\n",
    b"\r\n.",
    b" ",
    b"\0",
    b"\xc3\xa9",
    b"\r\n.\r",
    b"\n.\n",
    b"QUIT\r\n",
];

fn body_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(BODY_PIECES).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 1..6),
    ]
}

/// DATA content with its terminator.
fn data_body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(body_piece(), 0..16).prop_map(|pieces| {
        let mut body = pieces.concat();
        body.extend_from_slice(b"\r\n.\r\n");
        body
    })
}

/// A BDAT command with its chunk.
fn bdat_chunk() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(body_piece(), 0..8), any::<bool>()).prop_map(|(pieces, last)| {
        let payload = pieces.concat();
        let last = if last { " LAST" } else { "" };
        let mut bytes = format!("BDAT {}{last}\r\n", payload.len()).into_bytes();
        bytes.extend_from_slice(&payload);
        bytes
    })
}

fn segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => prop::sample::select(COMMANDS).prop_map(<[u8]>::to_vec),
        3 => data_body(),
        3 => data_body().prop_map(|body| {
            let mut bytes =
                b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n".to_vec();
            bytes.extend_from_slice(&body);
            bytes
        }),
        3 => bdat_chunk(),
        1 => Just({
            let mut line = vec![b'x'; 600];
            line.extend_from_slice(b"\r\n");
            line
        }),
        1 => Just(b"QUIT\r\n".to_vec()),
    ]
}

/// A session script, usually starting with EHLO.
fn script() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::bool::weighted(0.85),
        prop::collection::vec(segment(), 0..30),
    )
        .prop_map(|(ehlo, segments)| {
            let mut bytes = if ehlo {
                b"EHLO client.example\r\n".to_vec()
            } else {
                Vec::new()
            };
            bytes.extend(segments.concat());
            bytes
        })
}

/// A script made of whole transactions (DATA or BDAT), to reach the content limits often.
fn data_script() -> impl Strategy<Value = Vec<u8>> {
    let transaction = prop_oneof![
        data_body().prop_map(|body| [
            &b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"[..],
            &body,
        ]
        .concat()),
        prop::collection::vec(bdat_chunk(), 1..4).prop_map(|chunks| [
            &b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"[..],
            &chunks.concat(),
            b"RSET\r\n",
        ]
        .concat()),
    ];
    prop::collection::vec(transaction, 1..6)
        .prop_map(|t| [&b"EHLO client.example\r\n"[..], &t.concat()].concat())
}

/// Transactions interleaved with the commands that end them early.
fn contract_script() -> impl Strategy<Value = Vec<u8>> {
    let step = prop_oneof![
        3 => Just(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n".to_vec()),
        3 => bdat_chunk(),
        2 => data_body().prop_map(|body| [&b"DATA\r\n"[..], &body].concat()),
        2 => Just(b"QUIT\r\n".to_vec()),
        1 => Just(b"RSET\r\n".to_vec()),
        1 => Just(b"EHLO client.example\r\n".to_vec()),
        1 => Just(b"XFOO\r\n".to_vec()),
    ];
    prop::collection::vec(step, 1..16)
        .prop_map(|steps| [&b"EHLO client.example\r\n"[..], &steps.concat()].concat())
}

fn policy() -> impl Strategy<Value = BareNewline> {
    prop::sample::select(vec![
        BareNewline::Reject,
        BareNewline::Normalize,
        BareNewline::Allow,
    ])
}

/// Configurations with ordinary limits (no message size or line limit reachable by scripts).
fn session_config() -> impl Strategy<Value = Config<'static>> {
    (
        policy(),
        prop::array::uniform7(prop::bool::weighted(0.8)),
        prop::sample::select(vec![1usize, 2, 100]),
        prop::sample::select(vec![10u32, u32::MAX]),
        any::<bool>(),
    )
        .prop_map(|(policy, ext, recipients, bad_commands, unlimited)| {
            let mut c = config();
            c.bare_newline = policy;
            c.extensions.pipelining = ext[0];
            c.extensions.size = ext[1];
            c.extensions.eight_bit_mime = ext[2];
            c.extensions.smtputf8 = ext[3];
            c.extensions.enhanced_status_codes = ext[4];
            c.extensions.chunking = ext[5];
            c.extensions.binarymime = ext[6];
            c.limits.recipients = recipients;
            c.limits.bad_commands = bad_commands;
            if unlimited {
                c.limits.message_size = None;
                c.limits.text_line = None;
            }
            c
        })
}

/// Configurations with message size and text line limits that scripts do reach.
fn tight_config() -> impl Strategy<Value = Config<'static>> {
    (session_config(), 0u64..64, 3usize..40).prop_map(|(mut c, size, line)| {
        c.limits.message_size = Some(size);
        c.limits.text_line = Some(line);
        c.limits.bad_commands = u32::MAX;
        c
    })
}

fn cuts() -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..32)
}

/// Arbitrary bytes, or a soup of command and content fragments.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(COMMANDS).prop_map(<[u8]>::to_vec),
                body_piece(),
                bdat_chunk(),
                prop::collection::vec(any::<u8>(), 1..16),
            ],
            0..64
        )
        .prop_map(|pieces| pieces.concat()),
    ]
}

/// Ways into the session before the noise starts.
const PREFIXES: &[&[u8]] = &[
    b"EHLO client.example\r\n",
    b"HELO client.example\r\n",
    b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
    b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 300\r\n",
    b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n",
];

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Session properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(proptest_config(256))]

    /// The same script gives the same output and deliveries however it is split, and however
    /// small the output buffer is.
    #[test]
    fn splitting_the_input_changes_nothing(
        config in session_config(),
        input in script(),
        cuts in cuts(),
    ) {
        let whole = run::<1024>(&config, &input, &[]);
        check_replies(&whole.transcript).map_err(TestCaseError::fail)?;
        let split = run::<512>(&config, &input, &positions(input.len(), &cuts));
        prop_assert_eq!(&split, &whole, "random cuts");
        let bytewise: Vec<usize> = (1..input.len()).collect();
        let bytewise = run::<1024>(&config, &input, &bytewise);
        prop_assert_eq!(&bytewise, &whole, "one octet at a time");
    }

    /// The same with message size and text line limits within reach: which error refuses a
    /// message must not depend on how its octets were segmented.
    #[test]
    fn splitting_the_input_changes_nothing_under_tight_limits(
        config in tight_config(),
        input in prop_oneof![script(), data_script()],
        cuts in cuts(),
    ) {
        let whole = run::<1024>(&config, &input, &[]);
        let split = run::<1024>(&config, &input, &positions(input.len(), &cuts));
        prop_assert_eq!(
            String::from_utf8_lossy(&split.transcript),
            String::from_utf8_lossy(&whole.transcript),
            "random cuts"
        );
        prop_assert_eq!(&split, &whole, "random cuts");
        let bytewise: Vec<usize> = (1..input.len()).collect();
        let bytewise = run::<1024>(&config, &input, &bytewise);
        prop_assert_eq!(
            String::from_utf8_lossy(&bytewise.transcript),
            String::from_utf8_lossy(&whole.transcript),
            "one octet at a time"
        );
        prop_assert_eq!(&bytewise, &whole, "one octet at a time");
    }

    /// Every `data_start` is answered by exactly one `data_end` or `data_abort`, by the time
    /// the session closes (a frontend stops calling the session once it is closed).
    #[test]
    fn every_started_message_is_ended_or_aborted(
        config in session_config(),
        input in prop_oneof![1 => script(), 3 => contract_script()],
    ) {
        let outcome = run::<1024>(&config, &input, &[]);
        check_contract(&outcome.log, true).map_err(TestCaseError::fail)?;
        if let Some(log) = &outcome.log_at_close {
            check_contract(log, true).map_err(TestCaseError::fail)?;
        }
    }

    /// Arbitrary bytes from the very start: no panic, well-formed output.
    #[test]
    fn arbitrary_bytes_from_the_start(
        config in session_config(),
        input in noise(),
        cuts in cuts(),
        small in any::<bool>(),
    ) {
        let cuts = positions(input.len(), &cuts);
        let outcome = if small {
            run::<512>(&config, &input, &cuts)
        } else {
            run::<1024>(&config, &input, &cuts)
        };
        check_replies(&outcome.transcript).map_err(TestCaseError::fail)?;
        prop_assert!(outcome.closed);
        check_contract(&outcome.log, true).map_err(TestCaseError::fail)?;
    }

    /// Arbitrary bytes after a greeting (and inside DATA or BDAT): no panic, well-formed
    /// output.
    #[test]
    fn arbitrary_bytes_after_a_greeting(
        config in session_config(),
        prefix in prop::sample::select(PREFIXES),
        noise in noise(),
        cuts in cuts(),
        small in any::<bool>(),
    ) {
        let mut input = prefix.to_vec();
        input.extend_from_slice(&noise);
        let cuts = positions(input.len(), &cuts);
        let outcome = if small {
            run::<512>(&config, &input, &cuts)
        } else {
            run::<1024>(&config, &input, &cuts)
        };
        check_replies(&outcome.transcript).map_err(TestCaseError::fail)?;
        prop_assert!(outcome.closed);
    }
}

// ---------------------------------------------------------------------------------------------
// DATA decoder
// ---------------------------------------------------------------------------------------------

/// The content as a line-oriented reader sees it: lines split on CRLF only, ending at the
/// first line that is exactly ".".
struct Reference<'a> {
    /// Complete lines before the end, without their CRLF (still dot-stuffed).
    lines: Vec<&'a [u8]>,
    /// An incomplete last line, when there is no end.
    partial: &'a [u8],
    /// Octets up to and including the terminating `.` CRLF.
    end: Option<usize>,
}

fn reference(input: &[u8]) -> Reference<'_> {
    let mut lines = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &input[pos..];
        match rest.windows(2).position(|w| w == b"\r\n") {
            Some(k) => {
                let line = &rest[..k];
                pos += k + 2;
                if line == b"." {
                    return Reference {
                        lines,
                        partial: &[],
                        end: Some(pos),
                    };
                }
                lines.push(line);
            }
            None => {
                return Reference {
                    lines,
                    partial: rest,
                    end: None,
                }
            }
        }
    }
}

/// A line without its leading (stuffing) dot.
fn unstuff(line: &[u8]) -> &[u8] {
    line.strip_prefix(b".").unwrap_or(line)
}

/// Whether an incomplete last line is still undecided as a whole (`.` or `.` CR may yet
/// become the terminator), so nothing of it can have been handed on.
fn undecided(partial: &[u8]) -> bool {
    partial == b"." || partial == b".\r"
}

/// The body under `BareNewline::Allow`: unstuffed lines, octets as received.
fn allow_body(r: &Reference) -> Vec<u8> {
    let mut body = Vec::new();
    for line in &r.lines {
        body.extend_from_slice(unstuff(line));
        body.extend_from_slice(b"\r\n");
    }
    if !undecided(r.partial) {
        body.extend_from_slice(unstuff(r.partial));
    }
    body
}

/// Every CR and LF inside a CRLF-delimited line is bare: Normalize makes each a CRLF, and
/// a dot right after a bare LF is stuffing (removed).
fn normalize(text: &[u8], body: &mut Vec<u8>) {
    let mut after_lf = false;
    for &b in text {
        if after_lf && b == b'.' {
            after_lf = false;
            continue;
        }
        after_lf = b == b'\n';
        if b == b'\r' || b == b'\n' {
            body.extend_from_slice(b"\r\n");
        } else {
            body.push(b);
        }
    }
}

/// The body under `BareNewline::Normalize`: a CR right before a line's CRLF is dropped.
/// A CR ending an incomplete line may still be the start of a CRLF: it is passed on as it
/// is, and of two such CRs the last is withheld (it may be the one dropped).
fn normalize_body(r: &Reference) -> Vec<u8> {
    let mut body = Vec::new();
    for line in &r.lines {
        let text = unstuff(line);
        normalize(text.strip_suffix(b"\r").unwrap_or(text), &mut body);
        body.extend_from_slice(b"\r\n");
    }
    if !undecided(r.partial) {
        let partial = unstuff(r.partial);
        match partial.strip_suffix(b"\r") {
            Some(text) => {
                normalize(text.strip_suffix(b"\r").unwrap_or(text), &mut body);
                body.push(b'\r');
            }
            None => normalize(partial, &mut body),
        }
    }
    body
}

/// The first bare CR or LF, as `BareNewline::Reject` reports it.
fn first_bare(r: &Reference) -> Option<DataError> {
    let partial = if undecided(r.partial) {
        &[][..]
    } else {
        r.partial.strip_suffix(b"\r").unwrap_or(r.partial)
    };
    r.lines
        .iter()
        .copied()
        .chain([partial])
        .flat_map(|line| line.iter())
        .find_map(|&b| match b {
            b'\r' => Some(DataError::BareCr),
            b'\n' => Some(DataError::BareLf),
            _ => None,
        })
}

/// What the decoder produced: body, octets consumed up to the end (if it ended), error.
type Decodes = (Vec<u8>, Option<usize>, Option<DataError>);

/// Decodes `input` split at `cuts`; stops at the end of data.
fn decode(
    policy: BareNewline,
    text_line: Option<usize>,
    message_size: Option<u64>,
    input: &[u8],
    cuts: &[usize],
) -> Decodes {
    let mut decoder = DataDecoder::new(policy, text_line, message_size);
    let mut body = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain([input.len()].iter()) {
        if cut <= start {
            continue;
        }
        let piece = &input[start..cut];
        let mut at = 0;
        let mut calls = 0;
        loop {
            calls += 1;
            assert!(calls <= 4 * piece.len() + 4, "decoder makes no progress");
            let (n, decoded) = decoder.decode(&piece[at..]);
            at += n;
            match decoded {
                Decoded::Body(chunk) => body.extend_from_slice(chunk),
                Decoded::End => {
                    let consumed = start + at;
                    if decoder.error().is_none() {
                        assert_eq!(decoder.size(), body.len() as u64);
                    }
                    return (body, Some(consumed), decoder.error());
                }
                Decoded::NeedMore => break,
            }
        }
        assert_eq!(at, piece.len(), "NeedMore before the piece was consumed");
        start = cut;
    }
    if decoder.error().is_none() {
        assert_eq!(decoder.size(), body.len() as u64);
    }
    (body, None, decoder.error())
}

/// Message content: dots, CRs and LFs in every combination, and the odd arbitrary octet.
const CONTENT_PIECES: &[&[u8]] = &[
    b".",
    b"\r",
    b"\n",
    b"\r\n",
    b"x",
    b"ab",
    b"\r\n.\r\n",
    b".\r\n",
    b"..",
    b"\r\n.",
    b".\r",
    b"\r\n.\n",
];

fn content() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        6 => prop::sample::select(CONTENT_PIECES).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 1..4),
    ];
    prop::collection::vec(piece, 0..48).prop_map(|pieces| pieces.concat())
}

/// Whether `consumed` octets of `input` end with the terminator.
fn ends_with_terminator(input: &[u8], consumed: usize) -> bool {
    let head = &input[..consumed];
    head.ends_with(b"\r\n.\r\n") || head == b".\r\n"
}

proptest! {
    #![proptest_config(proptest_config(512))]

    /// Allow: the body is the reference's unstuffed lines, octets as received.
    #[test]
    fn decoder_matches_the_reference_under_allow(input in content(), cuts in cuts()) {
        let r = reference(&input);
        let (body, end, error) =
            decode(BareNewline::Allow, None, None, &input, &positions(input.len(), &cuts));
        prop_assert_eq!(end, r.end);
        prop_assert_eq!(error, None);
        prop_assert_eq!(body, allow_body(&r));
    }

    /// Normalize: every bare CR and LF becomes a CRLF (a CR right before a CRLF is dropped),
    /// and a dot after a bare LF is stuffing; only a line after a real CRLF ends the data.
    #[test]
    fn decoder_matches_the_reference_under_normalize(input in content(), cuts in cuts()) {
        let r = reference(&input);
        let (body, end, error) =
            decode(BareNewline::Normalize, None, None, &input, &positions(input.len(), &cuts));
        prop_assert_eq!(end, r.end);
        prop_assert_eq!(error, None);
        prop_assert_eq!(body, normalize_body(&r));
    }

    /// Reject: the first bare CR or LF is the error; without one the body is Allow's, with
    /// one whatever was handed on before is a prefix of it.
    #[test]
    fn decoder_matches_the_reference_under_reject(input in content(), cuts in cuts()) {
        let r = reference(&input);
        let (body, end, error) =
            decode(BareNewline::Reject, None, None, &input, &positions(input.len(), &cuts));
        prop_assert_eq!(end, r.end);
        prop_assert_eq!(error, first_bare(&r));
        let expected = allow_body(&r);
        if error.is_none() {
            prop_assert_eq!(body, expected);
        } else {
            prop_assert!(expected.starts_with(&body), "{:?} not a prefix of {:?}", body, expected);
        }
    }

    /// Whatever the policy and limits, DATA ends only on CRLF . CRLF (or `.` CRLF first), at
    /// the first one.
    #[test]
    fn decoder_ends_only_on_crlf_dot_crlf(
        input in content(),
        cuts in cuts(),
        policy in policy(),
        text_line in prop::option::of(3usize..20),
        size in prop::option::of(0u64..40),
    ) {
        let r = reference(&input);
        let (_, end, _) = decode(policy, text_line, size, &input, &positions(input.len(), &cuts));
        prop_assert_eq!(end, r.end);
        if let Some(end) = end {
            prop_assert!(ends_with_terminator(&input, end));
        }
    }

    /// Under the size limit the body is complete; over it, TooBig (without other limits).
    #[test]
    fn decoder_size_limit(
        input in content(),
        cuts in cuts(),
        policy in prop::sample::select(vec![BareNewline::Allow, BareNewline::Normalize]),
        size in 0u64..60,
    ) {
        let r = reference(&input);
        let expected = match policy {
            BareNewline::Allow => allow_body(&r),
            _ => normalize_body(&r),
        };
        let (body, end, error) =
            decode(policy, None, Some(size), &input, &positions(input.len(), &cuts));
        prop_assert_eq!(end, r.end);
        if expected.len() as u64 <= size {
            prop_assert_eq!(error, None);
            prop_assert_eq!(body, expected);
        } else {
            prop_assert_eq!(error, Some(DataError::TooBig));
            prop_assert!(body.len() as u64 <= size && expected.starts_with(&body));
        }
    }

    /// Which error a message gets, and its body when it has none, do not depend on how the
    /// content was segmented, under any policy and limits.
    #[test]
    fn decoder_outcome_does_not_depend_on_segmentation(
        input in content(),
        cuts in cuts(),
        policy in policy(),
        text_line in prop::option::of(3usize..20),
        size in prop::option::of(0u64..40),
    ) {
        let whole = decode(policy, text_line, size, &input, &[]);
        let bytewise: Vec<usize> = (1..input.len()).collect();
        for cuts in [positions(input.len(), &cuts), bytewise] {
            let split = decode(policy, text_line, size, &input, &cuts);
            prop_assert_eq!(split.1, whole.1, "end");
            prop_assert_eq!(split.2, whole.2, "error");
            if whole.2.is_none() {
                prop_assert_eq!(&split.0, &whole.0, "body");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Self-checks of the reference and the helpers (so the properties cannot pass vacuously)
// ---------------------------------------------------------------------------------------------

#[test]
fn reference_decoder_examples() {
    let r = reference(b"..a\r\nb\nc\r\n.\r\nrest");
    assert_eq!(r.lines, [&b"..a"[..], b"b\nc"]);
    assert_eq!(r.end, Some(13));
    assert_eq!(allow_body(&r), b".a\r\nb\nc\r\n");
    assert_eq!(normalize_body(&r), b".a\r\nb\r\nc\r\n");
    assert_eq!(first_bare(&r), Some(DataError::BareLf));
    let r = reference(b"a\n.\r\n.\r");
    assert_eq!(r.end, None);
    assert_eq!(allow_body(&r), b"a\n.\r\n");
    assert_eq!(first_bare(&r), Some(DataError::BareLf));
    // What smtplib sends for LF text: stuffed after each LF.
    let r = reference(b"a\n..b\n.\r\n.\r\n");
    assert_eq!(r.end, Some(12));
    assert_eq!(normalize_body(&r), b"a\r\n.b\r\n\r\n");
    let r = reference(b".\r\n");
    assert_eq!((r.lines.len(), r.end), (0, Some(3)));
    assert!(check_replies(b"250-a\r\n250 b\r\n").is_ok());
    assert!(check_replies(b"250-a\r\n").is_err());
    assert!(check_replies(b"250-a\r\n251 b\r\n").is_err());
    assert!(check_replies(b"250 a\nb\r\n").is_err());
    assert!(check_replies(b"25 a\r\n").is_err());
    assert!(check_contract(&["data_start".into()], true).is_err());
    assert!(check_contract(&["data_start".into(), "abort Reset".into()], true).is_ok());
}

#[test]
fn runner_sees_a_delivery() {
    let input = b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n..hi\r\n.\r\nQUIT\r\n";
    let outcome = run::<512>(&config(), input, &[3, 20, 21, 60]);
    assert_eq!(outcome.delivered.len(), 1);
    assert_eq!(outcome.delivered[0].data, b".hi\r\n");
    assert!(outcome.closed);
    assert_eq!(outcome, run::<1024>(&config(), input, &[]));
}

/// A deterministic instance of the segmentation dependence: a first line over the size
/// limit, then a line over the text line limit. Fed whole, the decoder records LineTooLong
/// (it scans past the first line before handing anything on); fed line by line, TooBig.
#[test]
fn error_precedence_does_not_depend_on_segmentation() {
    let input = b"abcdefghijkl\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n.\r\n";
    let whole = decode(BareNewline::Reject, Some(22), Some(10), input, &[]);
    let split = decode(BareNewline::Reject, Some(22), Some(10), input, &[14]);
    assert_eq!(whole.1, split.1);
    assert_eq!(
        whole.2, split.2,
        "error fed whole vs split after the first line"
    );
    // The same with a bare CR after octets over the size limit.
    let input = b"ab\rc\r\n.\r\n";
    let whole = decode(BareNewline::Reject, None, Some(1), input, &[]);
    let split = decode(BareNewline::Reject, None, Some(1), input, &[2]);
    assert_eq!(whole.2, split.2, "error fed whole vs split after \"ab\"");
}

// ---------------------------------------------------------------------------------------------
// The envelope arena against a model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum EnvelopeOp {
    Greet(String),
    Mail(String, String),
    Rcpt(String),
    Reset,
}

fn envelope_op() -> impl Strategy<Value = EnvelopeOp> {
    let text = || "[a-zé@.]{0,12}";
    prop_oneof![
        1 => text().prop_map(EnvelopeOp::Greet),
        1 => (text(), "[A-Z=0-9 ]{0,10}").prop_map(|(from, params)| EnvelopeOp::Mail(from, params)),
        3 => text().prop_map(EnvelopeOp::Rcpt),
        1 => Just(EnvelopeOp::Reset),
    ]
}

/// What the envelope should hold: its octet count follows the documented layout.
#[derive(Default)]
struct EnvelopeModel {
    greeting: Option<String>,
    mail: Option<(String, String)>,
    rcpts: Vec<String>,
}

impl EnvelopeModel {
    fn used(&self) -> usize {
        let greeting = self.greeting.as_ref().map_or(0, String::len);
        let mail = self
            .mail
            .as_ref()
            .map_or(0, |(from, params)| from.len() + params.len());
        greeting + mail + self.rcpts.iter().map(|r| 2 + r.len()).sum::<usize>()
    }
}

proptest! {
    #![proptest_config(proptest_config(512))]

    /// Whatever the sequence of operations on a small arena, the envelope reads back what
    /// was stored, and refuses exactly what does not fit, without disturbing the rest.
    #[test]
    fn the_envelope_matches_its_model(ops in prop::collection::vec(envelope_op(), 0..40)) {
        const CAPACITY: usize = 32;
        let mut envelope = Envelope::new([0u8; CAPACITY]);
        let mut model = EnvelopeModel::default();
        for op in ops {
            match op {
                EnvelopeOp::Greet(greeting) => {
                    model.mail = None;
                    model.rcpts.clear();
                    let fits = greeting.len() <= CAPACITY;
                    model.greeting = fits.then(|| greeting.clone());
                    prop_assert_eq!(envelope.set_greeting(&greeting).is_ok(), fits);
                }
                EnvelopeOp::Mail(from, params) => {
                    model.mail = None;
                    model.rcpts.clear();
                    let fits = model.used() + from.len() + params.len() <= CAPACITY;
                    if fits {
                        model.mail = Some((from.clone(), params.clone()));
                    }
                    prop_assert_eq!(envelope.set_mailfrom(&from, &params).is_ok(), fits);
                }
                EnvelopeOp::Rcpt(rcpt) => {
                    let fits = model.used() + 2 + rcpt.len() <= CAPACITY;
                    prop_assert_eq!(envelope.has_room_for(&rcpt), fits);
                    if fits {
                        model.rcpts.push(rcpt.clone());
                    }
                    prop_assert_eq!(envelope.add_rcpt(&rcpt).is_ok(), fits);
                }
                EnvelopeOp::Reset => {
                    model.mail = None;
                    model.rcpts.clear();
                    envelope.reset();
                }
            }
            prop_assert_eq!(envelope.greeting(), model.greeting.as_deref());
            prop_assert_eq!(
                envelope.mailfrom(),
                model.mail.as_ref().map(|(from, _)| from.as_str())
            );
            prop_assert_eq!(
                envelope.mail_parameters(),
                model.mail.as_ref().map_or("", |(_, params)| params.as_str())
            );
            prop_assert_eq!(envelope.rcpt_count(), model.rcpts.len());
            prop_assert!(envelope.rcpttos().eq(model.rcpts.iter().map(String::as_str)));
        }
    }
}
