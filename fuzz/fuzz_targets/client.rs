//! The client side on arbitrary input: what an upstream server sends, and what content a
//! relay is given to send.
//!
//! Checks, besides "no panic":
//! - `ReplyReader` reads the same replies whatever the pieces the input arrives in (split at
//!   the first octet), consumes only whole lines, never consumes past the input, and every
//!   reply has a code in 200..=599, and text within its capacity made of printable ASCII, TAB
//!   and the `\n` between lines;
//! - `DotStuffer`: the encoded content, read by the core's own DATA decoder, ends exactly at
//!   its end, whatever the content and its pieces: a relay cannot be made to send two
//!   messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd_core::client::{DotStuffer, ReplyReader};
use smtpd_core::data::{DataDecoder, Decoded};
use smtpd_core::BareNewline;

const TEXT: usize = 64;

/// Replies as read: (code, text), or a malformed one.
type Replies = Vec<Result<(u16, String), ()>>;

/// Replies read from `input` in two pieces split at `split`, as (code, text) pairs, or the
/// error; and the octets left unconsumed.
fn read_all(input: &[u8], split: usize) -> (Replies, usize) {
    let mut reader = ReplyReader::<TEXT>::new();
    let mut replies = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for piece in [&input[..split], &input[split..]] {
        pending.extend_from_slice(piece);
        loop {
            let (used, reply) = reader.read(&pending);
            assert!(used <= pending.len());
            if used > 0 {
                assert_eq!(pending[used - 1], b'\n', "consumed a partial line");
            }
            let reply = reply.map(|reply| {
                reply
                    .map(|reply| {
                        assert!((200..=599).contains(&reply.code));
                        assert!(reply.text.len() <= TEXT);
                        assert!(reply
                            .text
                            .chars()
                            .all(|c| c == '\n' || c == '\t' || (' '..='~').contains(&c)));
                        (reply.code, reply.text.to_owned())
                    })
                    .map_err(|_| ())
            });
            pending.drain(..used);
            match reply {
                Some(reply) => replies.push(reply),
                None => break,
            }
        }
    }
    (replies, pending.len())
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let split = usize::from(split) % (input.len() + 1);

    let (whole, left) = read_all(input, input.len());
    let (pieces, left_too) = read_all(input, split);
    assert_eq!(whole, pieces, "replies depend on the pieces");
    assert_eq!(left, left_too);

    let mut wire = Vec::new();
    let mut stuffer = DotStuffer::default();
    stuffer.encode(&input[..split], |octets| wire.extend_from_slice(octets));
    stuffer.encode(&input[split..], |octets| wire.extend_from_slice(octets));
    stuffer.finish(|octets| wire.extend_from_slice(octets));
    let mut decoder = DataDecoder::new(BareNewline::Reject, None, None);
    let mut at = 0;
    loop {
        let (used, out) = decoder.decode(&wire[at..]);
        at += used;
        match out {
            Decoded::Body(_) => {}
            Decoded::End => break,
            Decoded::NeedMore => panic!("no end of data"),
        }
    }
    assert_eq!(at, wire.len(), "an end of data before the end");
    assert_eq!(decoder.error(), None, "a bare line end went out");
});
