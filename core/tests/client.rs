//! The client side: reading replies and EHLO keywords, writing MAIL/RCPT, and encoding content
//! so that the next hop sees exactly one end of data.

use proptest::prelude::*;
use smtpd_core::client::{
    write_mail, write_rcpt, DotStuffer, ReplyError, ReplyReader, ServerExtensions,
};
use smtpd_core::data::{DataDecoder, Decoded};
use smtpd_core::handler::{Body, MailParams};
use smtpd_core::reply::EnhancedCode;
use smtpd_core::{BareNewline, Reply};

/// A reply read, owned.
type Read = Result<(u16, Option<EnhancedCode>, String), ReplyError>;

/// Every reply in `input`, read in pieces of `step` octets as a socket would deliver them.
fn replies(input: &[u8], step: usize) -> Vec<Read> {
    let mut reader = ReplyReader::<512>::new();
    let (mut pending, mut out) = (Vec::new(), Vec::new());
    for piece in input.chunks(step) {
        pending.extend_from_slice(piece);
        loop {
            let (used, reply) = reader.read(&pending);
            let reply = reply.map(|r| {
                r.map(
                    |Reply {
                         code,
                         enhanced,
                         text,
                     }| (code, enhanced, text.to_owned()),
                )
            });
            pending.drain(..used);
            match reply {
                Some(reply) => out.push(reply),
                None => break,
            }
        }
    }
    assert!(pending.is_empty(), "left over: {pending:?}");
    out
}

#[test]
fn replies_are_read_whole_in_any_pieces() {
    let wire = b"220 mx.example ESMTP\r\n250-mx.example\r\n250-SIZE 1000\r\n250 8BITMIME\r\n\
        550 5.1.1 <x@y>: no such user\r\n354 go ahead\n250-2.0.0 first\r\n250 2.0.0 second\r\n";
    let expected = vec![
        Ok((220, None, "mx.example ESMTP".to_owned())),
        Ok((250, None, "mx.example\nSIZE 1000\n8BITMIME".to_owned())),
        Ok((
            550,
            Some(EnhancedCode(5, 1, 1)),
            "<x@y>: no such user".to_owned(),
        )),
        Ok((354, None, "go ahead".to_owned())),
        Ok((250, Some(EnhancedCode(2, 0, 0)), "first\nsecond".to_owned())),
    ];
    for step in [1, 2, 7, wire.len()] {
        assert_eq!(replies(wire, step), expected, "pieces of {step}");
    }
}

#[test]
fn enhanced_codes_are_taken_only_when_they_are_one() {
    let cases: [(&[u8], u16, Option<EnhancedCode>, &str); 6] = [
        (b"250 2.1.5\r\n", 250, Some(EnhancedCode(2, 1, 5)), ""),
        (
            b"452 4.5.3 too many\r\n",
            452,
            Some(EnhancedCode(4, 5, 3)),
            "too many",
        ),
        // A class other than the reply's, or not the x.y.z form: text.
        (b"250 5.1.1 odd\r\n", 250, None, "5.1.1 odd"),
        (b"250 2.1 short\r\n", 250, None, "2.1 short"),
        (b"250 2.1.1000 long\r\n", 250, None, "2.1.1000 long"),
        (b"250 2.0.0x\r\n", 250, None, "2.0.0x"),
    ];
    for (wire, code, enhanced, text) in cases {
        assert_eq!(
            replies(wire, wire.len()),
            vec![Ok((code, enhanced, text.to_owned()))]
        );
    }
}

#[test]
fn bad_replies_are_errors_and_reading_goes_on() {
    let wire = b"hello\r\n250-a\r\n550 b\r\n2500 x\r\n199 low\r\n250\r\n";
    assert_eq!(
        replies(wire, 3),
        vec![
            Err(ReplyError::Malformed),
            Err(ReplyError::MixedCodes),
            Err(ReplyError::Malformed),
            Err(ReplyError::Malformed),
            Ok((250, None, String::new())),
        ]
    );
}

#[test]
fn long_texts_are_cut_and_non_ascii_replaced() {
    let mut reader = ReplyReader::<8>::new();
    let (used, reply) = reader.read(b"250-abcdef\r\n250 ghijkl\r\n");
    assert_eq!(used, 24);
    assert_eq!(reply, Some(Ok(Reply::plain(250, "abcdef\ng"))));
    let (_, reply) = reader.read("250 \u{e9}t\u{e9}\r\n".as_bytes());
    assert_eq!(reply, Some(Ok(Reply::plain(250, "??t??"))));
    let (_, reply) = reader.read(b"250 a\rb\x01\tc\r\n");
    assert_eq!(reply, Some(Ok(Reply::plain(250, "a?b?\tc"))));
}

#[test]
fn ehlo_keywords() {
    let offered = ServerExtensions::from_ehlo(
        "mx.example greets you\nsize 35882577\n8BITMIME\nPIPELINING\nSMTPUTF8\nENHANCEDSTATUSCODES\nAUTH PLAIN",
    );
    assert_eq!(
        offered,
        ServerExtensions {
            size: Some(35_882_577),
            eight_bit_mime: true,
            smtputf8: true,
            pipelining: true,
            enhanced_status_codes: true,
        }
    );
    assert_eq!(
        ServerExtensions::from_ehlo("SIZE mx\nSIZE"),
        ServerExtensions {
            size: Some(0),
            ..Default::default()
        }
    );
    assert_eq!(
        ServerExtensions::from_ehlo("mx.example"),
        ServerExtensions::default()
    );
}

#[test]
fn mail_carries_what_the_message_needs_and_the_server_offers() {
    let params = MailParams {
        size: Some(1234),
        body: Body::EightBitMime,
        smtputf8: true,
    };
    let all = ServerExtensions {
        size: Some(0),
        eight_bit_mime: true,
        smtputf8: true,
        ..Default::default()
    };
    let mut line = String::new();
    write_mail(&mut line, "a@b.example", &params, &all).unwrap();
    assert_eq!(
        line,
        "MAIL FROM:<a@b.example> SIZE=1234 BODY=8BITMIME SMTPUTF8\r\n"
    );
    line.clear();
    write_mail(
        &mut line,
        "",
        &MailParams {
            size: Some(9),
            ..Default::default()
        },
        &ServerExtensions::default(),
    )
    .unwrap();
    assert_eq!(line, "MAIL FROM:<>\r\n");
    line.clear();
    write_rcpt(&mut line, "x@y.example").unwrap();
    assert_eq!(line, "RCPT TO:<x@y.example>\r\n");
}

/// `content` encoded in pieces of `step`, ended.
fn stuffed(content: &[u8], step: usize) -> Vec<u8> {
    let mut stuffer = DotStuffer::default();
    let mut wire = Vec::new();
    for piece in content.chunks(step.max(1)) {
        stuffer.encode(piece, |octets| wire.extend_from_slice(octets));
    }
    stuffer.finish(|octets| wire.extend_from_slice(octets));
    wire
}

#[test]
fn content_is_stuffed_and_ended() {
    let cases: [(&[u8], &[u8]); 9] = [
        (b"", b".\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"x\r\n.y\r\n..\r\n", b"x\r\n..y\r\n...\r\n.\r\n"),
        (b"bare\n.\nlf", b"bare\r\n..\r\nlf\r\n.\r\n"),
        (b"bare\r.\rcr\r", b"bare\r\n..\r\ncr\r\n.\r\n"),
        (b"mixed\n\r.\r\n", b"mixed\r\n\r\n..\r\n.\r\n"),
        (b"\r\r\n\n", b"\r\n\r\n\r\n.\r\n"),
    ];
    for (content, wire) in cases {
        for step in [1, 2, 3, content.len()] {
            assert_eq!(
                stuffed(content, step),
                wire,
                "{content:?} in pieces of {step}"
            );
        }
    }
}

/// What the next hop stores: `wire` through our own DATA decoder.
fn received(wire: &[u8]) -> (Vec<u8>, usize) {
    let mut decoder = DataDecoder::new(BareNewline::Reject, None, None);
    let (mut body, mut at) = (Vec::new(), 0);
    loop {
        let (used, out) = decoder.decode(&wire[at..]);
        at += used;
        match out {
            Decoded::Body(chunk) => body.extend_from_slice(chunk),
            Decoded::End => return (body, at),
            Decoded::NeedMore => panic!("no end of data in {wire:?}"),
        }
    }
}

/// The content with every bare CR or LF made a CRLF, and a CRLF at its end.
fn normalized(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < content.len() {
        match content[i] {
            b'\r' if content.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            byte => out.push(byte),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

proptest! {
    /// Any content, in any pieces: the next hop finds the end of data exactly at the end,
    /// takes no bare newline, and stores the content with normalized line ends.
    #[test]
    fn the_only_end_of_data_is_the_last(
        content in proptest::collection::vec(prop_oneof![
            Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a'), any::<u8>()
        ], 0..300),
        step in 1usize..40,
    ) {
        let wire = stuffed(&content, step);
        let (body, used) = received(&wire);
        prop_assert_eq!(used, wire.len());
        prop_assert_eq!(body, normalized(&content));
    }
}
