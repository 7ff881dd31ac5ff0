//! smtpd-core against smtp-proto 0.2.5, in the same run, on the same corpus.
//!
//! - `commands`: one command line per call. Ours: `Command::parse` on the line without CRLF
//!   (framing is the line buffer's job). Theirs: `Request::parse` on the line with CRLF. Both
//!   return borrowed results; nothing is converted to owned data.
//! - `commands_pipelined`: the 20 lines in one buffer, framing included. Ours: the channel's
//!   `LineBuffer` (copies each line into its fixed buffer), UTF-8 check, `Command::parse`.
//!   Theirs: `Request::parse` until the buffer is used up.
//! - `command_kinds`: single lines, to see where the time goes.
//! - `data`: one message per iteration, wire bytes (dot-stuffed, with the terminator) in one
//!   slice. `copy`: content appended to a reused, pre-sized `Vec` (what smtp-proto's
//!   `DataReceiver` does). `nocopy`: ours only, the borrowed chunks are just counted.
//! - `data_16KiB_reads`: the same, input delivered in 16 KiB reads.
//! - `session`: a whole sans-io session (ours only; smtp-proto has no session layer).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smtp_proto::request::receiver::DataReceiver;
use smtp_proto::Request;
use smtpd_benches::corpus::{self, Body, COMMANDS};
use smtpd_benches::{decode_chunked_with, decode_with, run_session};
use smtpd_core::command::Command;
use smtpd_core::line::{LineBuffer, LineStatus};

const OURS: &str = "smtpd-core";
const THEIRS: &str = "smtp-proto";

/// smtp-proto's DATA receiver on one message in one slice.
#[inline]
fn proto_decode(wire: &[u8], out: &mut Vec<u8>) -> bool {
    let mut receiver = DataReceiver::new();
    receiver.ingest(&mut wire.iter(), out)
}

/// smtp-proto's DATA receiver, input in reads of `read` octets.
#[inline]
fn proto_decode_chunked(wire: &[u8], read: usize, out: &mut Vec<u8>) -> bool {
    let mut receiver = DataReceiver::new();
    wire.chunks(read)
        .any(|piece| receiver.ingest(&mut piece.iter(), out))
}

/// Ours over a pipelined buffer: frame with the channel's line buffer, then parse.
#[inline]
fn ours_pipelined(input: &[u8], line: &mut LineBuffer<548>) -> usize {
    let mut pos = 0;
    let mut parsed = 0;
    while pos < input.len() {
        let (n, status) = line.push(&input[pos..]);
        pos += n;
        if status == Some(LineStatus::Complete) {
            if let Ok(text) = std::str::from_utf8(line.line()) {
                black_box(Command::parse(text)).ok();
                parsed += 1;
            }
        }
        line.clear();
    }
    parsed
}

/// Both sides must accept every corpus line, and agree on what they parsed.
fn check_commands() {
    for (line, crlf) in COMMANDS.iter().zip(corpus::commands_crlf()) {
        let ours = Command::parse(line).unwrap_or_else(|e| panic!("ours: {line}: {e:?}"));
        let mut it = crlf.iter();
        let theirs = Request::parse(&mut it).unwrap_or_else(|e| panic!("theirs: {line}: {e:?}"));
        assert_eq!(it.len(), 0, "{line}");
        let same = match (&ours, &theirs) {
            (Command::Ehlo(a), Request::Ehlo { host })
            | (Command::Helo(a), Request::Helo { host }) => a == host,
            // smtp-proto unquotes local parts and maps Postmaster to "".
            (Command::Mail { from, .. }, Request::Mail { from: theirs }) => {
                from.mailbox == theirs.address || from.mailbox.contains('"')
            }
            (Command::Rcpt { to, .. }, Request::Rcpt { to: theirs }) => {
                to.mailbox == theirs.address || theirs.address.is_empty()
            }
            (
                Command::Bdat { size, last },
                Request::Bdat {
                    chunk_size,
                    is_last,
                },
            ) => *size == *chunk_size as u64 && last == is_last,
            (Command::Data, Request::Data)
            | (Command::Rset, Request::Rset)
            | (Command::Noop, Request::Noop { .. })
            | (Command::Quit, Request::Quit) => true,
            _ => false,
        };
        assert!(same, "{line}: {ours:?} vs {theirs:?}");
    }
    let pipelined = corpus::commands_pipelined();
    assert_eq!(
        ours_pipelined(&pipelined, &mut LineBuffer::default()),
        COMMANDS.len()
    );
}

fn check_body(body: &Body) {
    let mut out = Vec::new();
    assert_eq!(
        decode_with(&body.wire, |c| out.extend_from_slice(c)),
        Some(body.wire.len())
    );
    assert!(out == body.content, "ours: {}", body.name);
    out.clear();
    assert!(proto_decode(&body.wire, &mut out));
    assert!(out == body.content, "theirs: {}", body.name);
    for read in [16 * 1024, 1000] {
        out.clear();
        assert!(decode_chunked_with(&body.wire, read, |c| out.extend_from_slice(c)));
        assert!(out == body.content, "ours, reads of {read}: {}", body.name);
        out.clear();
        assert!(proto_decode_chunked(&body.wire, read, &mut out));
        assert!(
            out == body.content,
            "theirs, reads of {read}: {}",
            body.name
        );
    }
}

fn commands(c: &mut Criterion) {
    check_commands();
    let crlf = corpus::commands_crlf();
    let crlf: Vec<&[u8]> = crlf.iter().map(Vec::as_slice).collect();

    let mut group = c.benchmark_group("commands");
    group.throughput(Throughput::Elements(COMMANDS.len() as u64));
    group.bench_function(OURS, |b| {
        b.iter(|| {
            for line in black_box(&COMMANDS) {
                black_box(Command::parse(black_box(line))).ok();
            }
        })
    });
    group.bench_function(THEIRS, |b| {
        b.iter(|| {
            for line in black_box(&crlf) {
                let mut it = black_box(*line).iter();
                black_box(Request::parse(&mut it)).ok();
            }
        })
    });
    group.finish();

    let pipelined = corpus::commands_pipelined();
    let mut group = c.benchmark_group("commands_pipelined");
    group.throughput(Throughput::Elements(COMMANDS.len() as u64));
    group.bench_function(OURS, |b| {
        let mut line = LineBuffer::<548>::default();
        b.iter(|| ours_pipelined(black_box(&pipelined), &mut line))
    });
    group.bench_function(THEIRS, |b| {
        b.iter(|| {
            let mut it = black_box(pipelined.as_slice()).iter();
            while it.len() > 0 {
                black_box(Request::parse(&mut it)).ok();
            }
        })
    });
    group.finish();

    let kinds = [
        ("quit", 19),
        ("ehlo", 0),
        ("mail_size_body", 3),
        ("mail_quoted", 6),
        ("rcpt_short", 9),
        ("rcpt_long", 11),
    ];
    let mut group = c.benchmark_group("command_kinds");
    group.throughput(Throughput::Elements(1));
    for (kind, index) in kinds {
        let ours = COMMANDS[index];
        let theirs = crlf[index];
        group.bench_with_input(BenchmarkId::new(OURS, kind), ours, |b, line| {
            b.iter(|| black_box(Command::parse(black_box(line))).ok())
        });
        group.bench_with_input(BenchmarkId::new(THEIRS, kind), theirs, |b, line| {
            b.iter(|| {
                let mut it = black_box(line).iter();
                black_box(Request::parse(&mut it)).ok()
            })
        });
    }
    group.finish();
}

fn data(c: &mut Criterion) {
    let bodies = corpus::bodies();
    for body in &bodies {
        check_body(body);
    }

    // One slice per message (`read` = the whole message), then 16 KiB reads.
    bench_bodies(c, "data", bodies.iter(), None);
    const READ: usize = 16 * 1024;
    let long = bodies.iter().filter(|b| b.wire.len() > READ);
    bench_bodies(c, "data_16KiB_reads", long, Some(READ));
}

/// Ours (copying and not) beside smtp-proto on each body, fed in reads of `read` octets
/// (`None`: the whole message at once).
fn bench_bodies<'a>(
    c: &mut Criterion,
    name: &str,
    bodies: impl Iterator<Item = &'a corpus::Body>,
    read: Option<usize>,
) {
    let mut group = c.benchmark_group(name);
    for body in bodies {
        let wire = body.wire.as_slice();
        let read = read.unwrap_or(wire.len());
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("smtpd-core/copy", body.name),
            wire,
            |b, wire| {
                let mut out = Vec::with_capacity(wire.len());
                b.iter(|| {
                    out.clear();
                    decode_chunked_with(black_box(wire), read, |chunk| {
                        out.extend_from_slice(chunk)
                    });
                    black_box(out.len())
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("smtpd-core/nocopy", body.name),
            wire,
            |b, wire| {
                b.iter(|| {
                    let mut total = 0;
                    decode_chunked_with(black_box(wire), read, |chunk| {
                        total += black_box(chunk).len()
                    });
                    total
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("smtp-proto/copy", body.name),
            wire,
            |b, wire| {
                let mut out = Vec::with_capacity(wire.len());
                b.iter(|| {
                    out.clear();
                    proto_decode_chunked(black_box(wire), read, &mut out);
                    black_box(out.len())
                })
            },
        );
    }
    group.finish();
}

fn session(c: &mut Criterion) {
    let bodies = corpus::bodies();
    let expected = corpus::session_script(&bodies);
    let config = smtpd_benches::config();
    let script = expected.script.as_slice();

    // Check once what the server makes of the script.
    let mut transcript = Vec::new();
    let sink = run_session(&config, script, script.len(), |out| {
        transcript.extend_from_slice(out)
    });
    let transcript = String::from_utf8(transcript).unwrap();
    let replies = transcript
        .split_terminator("\r\n")
        .filter(|line| line.as_bytes().get(3) != Some(&b'-'))
        .count();
    assert_eq!(sink.messages, expected.messages, "{transcript}");
    assert_eq!(sink.content_bytes, expected.content_bytes);
    assert_eq!(replies, expected.replies, "{transcript}");
    assert!(
        !transcript.contains("\r\n4") && !transcript.contains("\r\n5"),
        "{transcript}"
    );

    let mut group = c.benchmark_group("session");
    group.throughput(Throughput::Bytes(script.len() as u64));
    for (name, read) in [("one_read", script.len()), ("16KiB_reads", 16 * 1024)] {
        group.bench_with_input(BenchmarkId::new(OURS, name), script, |b, script| {
            b.iter(|| {
                run_session(&config, black_box(script), read, |out| {
                    black_box(out);
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, commands, data, session);
criterion_main!(benches);
