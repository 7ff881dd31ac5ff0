//! CPython 3.11 `Lib/test/test_smtpd.py`, channel-level tests, ported 1:1.
//!
//! One `#[test]` per Python test, named `<class>_<test>` in snake case:
//! `SMTPDChannelTest` → `channel_test_*`, `SMTPDChannelWithDataSizeLimitTest` →
//! `channel_with_data_size_limit_test_*`, `SMTPDChannelWithDecodeDataFalse` →
//! `channel_with_decode_data_false_*`, `SMTPDChannelWithDecodeDataTrue` →
//! `channel_with_decode_data_true_*`, `SMTPDChannelTestWithEnableSMTPUTF8True` →
//! `channel_test_with_enable_smtputf8_true_*`, `TestRcptOptionParsing` → `rcpt_option_parsing_*`,
//! `TestMailOptionParsing` → `mail_option_parsing_*`, `DebuggingServerTest` →
//! `debugging_server_test_*`, `SMTPDServerTest` → `server_test_*`.
//!
//! Python's test harness appends CRLF to every `write_line`; so does [`Client::cmd`]. Python's
//! mock `getfqdn()` is empty; ours is `fqdn.example`. Each Python channel configuration is
//! mirrored by [`python_config`]: only the extensions Python smtpd offers, no enhanced status
//! codes, its `data_size_limit`. `decode_data=True` only changes what Python hands to
//! `process_message` (text instead of bytes) and switches 8BITMIME off; we always deliver bytes.
//!
//! Not ported (no SMTP dialogue to port):
//! - `SMTPDChannelTest.test_broken_connect`: asyncore plumbing (a `listen()` that raises makes
//!   the server constructor raise).
//! - `SMTPDChannelTest.test_server_accept`: asyncore plumbing (`handle_accept` builds a channel).
//! - `SMTPDChannelTest.test_decode_data_and_enable_SMTPUTF8_raises` and
//!   `SMTPDServerTest.test_decode_data_and_enable_SMTPUTF8_raises`: constructor argument
//!   validation; our `Config` has no `decode_data` (content is always bytes), so the conflicting
//!   combination cannot be expressed.
//! - `SMTPDChannelTest.test_attribute_deprecations`: Python-only deprecated name-mangled
//!   attributes.
//! - `SMTPDChannelTest.test_bad_state`: assigns `smtp_state = 'BAD STATE'` to get
//!   `451 Internal confusion`; our `SmtpState` is an enum, that state cannot exist.
//! - `SMTPDChannelIPv6Test` (the 64 `SMTPDChannelTest` tests again): only the listening socket
//!   is on `::1`; the channel never sees it and the transcripts are byte-identical, so the
//!   `channel_test_*` tests cover them.
//! - `TestFamilyDetection` (2 tests): socket family detection, no channel.
//! - `MiscTestCase.test__all__`: Python module exports.

mod support;

use smtpd_core::config::BareNewline;
use smtpd_core::handler::{AbortReason, Body, Handler, MailParams, SmtpState};
use smtpd_core::{Config, Extensions, Instant, Reply, Session};
use support::{Client, Delivered};

const OK: &str = "250 OK\r\n";
const HELO_OK: &str = "250 fqdn.example\r\n";
const START_DATA: &str = "354 End data with <CR><LF>.<CR><LF>\r\n";
/// EHLO of `SMTPChannel(..., decode_data=True)`: no 8BITMIME, no SMTPUTF8.
const EHLO_DECODE_DATA: &str = "250-fqdn.example\r\n250-SIZE 33554432\r\n250 HELP\r\n";
/// EHLO of `SMTPChannel(...)` (decode_data=False).
const EHLO_BYTES: &str = "250-fqdn.example\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250 HELP\r\n";
/// EHLO of `SMTPChannel(..., enable_SMTPUTF8=True)`.
const EHLO_SMTPUTF8: &str =
    "250-fqdn.example\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 HELP\r\n";
const HELP_COMMANDS: &str = "Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY";
const MAIL_PARAMS_555: &str = "555 MAIL FROM parameters not recognized or not implemented\r\n";
const RCPT_PARAMS_555: &str = "555 RCPT TO parameters not recognized or not implemented\r\n";
const TOO_MUCH_DATA: &str = "552 Error: Too much mail data\r\n";
const LINE_TOO_LONG: &str = "500 Error: line too long\r\n";
const PEER: &str = "192.0.2.7:40000";

/// Python's `DATA_SIZE_DEFAULT`.
const DATA_SIZE_DEFAULT: u64 = 33_554_432;

/// `SMTPChannel(server, conn, addr, data_size_limit, enable_SMTPUTF8=..., decode_data=...)`:
/// the extensions Python smtpd offers (SIZE; 8BITMIME unless `decode_data`; SMTPUTF8 when
/// enabled) and none of ours it lacks (PIPELINING, ENHANCEDSTATUSCODES, CHUNKING, BINARYMIME).
fn python_config(
    data_size_limit: u64,
    decode_data: bool,
    enable_smtputf8: bool,
) -> Config<'static> {
    let mut cfg = support::config();
    cfg.extensions = Extensions::NONE;
    cfg.extensions.enhanced_status_codes = false;
    cfg.extensions.size = true;
    cfg.extensions.eight_bit_mime = !decode_data;
    cfg.extensions.smtputf8 = enable_smtputf8;
    cfg.limits.message_size = Some(data_size_limit);
    cfg
}

/// Connects with `cfg`; checks the banner Python pushes (and never asserts) on construction.
fn open(cfg: Config<'static>) -> Client {
    let (c, greeting) = Client::connect(cfg);
    // deviation: our banner is `<fqdn> ESMTP smtpd-rs`, Python's `<fqdn> Python SMTP proxy version 0.3` (RFC 5321 4.3.1)
    assert_eq!(greeting, "220 fqdn.example ESMTP smtpd-rs\r\n");
    c
}

/// `SMTPDChannelTest`, `SMTPDChannelWithDecodeDataTrue`: `decode_data=True`.
fn decode_data_channel() -> Client {
    open(python_config(DATA_SIZE_DEFAULT, true, false))
}

/// `SMTPDChannelWithDecodeDataFalse`, `TestRcptOptionParsing`: the defaults.
fn bytes_channel() -> Client {
    open(python_config(DATA_SIZE_DEFAULT, false, false))
}

/// `SMTPDChannelTestWithEnableSMTPUTF8True`: `enable_SMTPUTF8=True`.
fn smtputf8_channel() -> Client {
    open(python_config(DATA_SIZE_DEFAULT, false, true))
}

/// Python's channel attributes `seen_greeting` (`''` is `None`), `mailfrom`, `rcpttos`,
/// `smtp_state`.
#[track_caller]
fn assert_state(
    c: &Client,
    seen_greeting: Option<&str>,
    mailfrom: Option<&str>,
    rcpttos: &[&str],
    smtp_state: SmtpState,
) {
    let cx = c.session.context();
    assert_eq!(cx.seen_greeting, seen_greeting, "seen_greeting");
    assert_eq!(cx.mailfrom, mailfrom, "mailfrom");
    assert_eq!(cx.rcpttos.collect::<Vec<_>>(), rcpttos, "rcpttos");
    assert_eq!(cx.smtp_state, smtp_state, "smtp_state");
}

/// One entry of Python's `server.messages`: `(peer, mailfrom, rcpttos, data)`.
type Message<'a> = (Option<String>, &'a str, Vec<&'a str>, &'a [u8]);

/// Python's `server.messages`: `(peer, mailfrom, rcpttos, data)` for each message.
#[track_caller]
fn assert_messages(c: &Client, expected: &[(&str, &[&str], &[u8])]) {
    let got: Vec<Message> = c
        .delivered()
        .iter()
        .map(|m: &Delivered| {
            (
                m.peer.map(|p| p.to_string()),
                m.mailfrom.as_str(),
                m.rcpttos.iter().map(String::as_str).collect(),
                m.data.as_slice(),
            )
        })
        .collect();
    let want: Vec<Message> = expected
        .iter()
        .map(|&(from, to, data)| (Some(PEER.to_owned()), from, to.to_vec(), data))
        .collect();
    assert_eq!(got, want, "server.messages");
}

/// `HELO example`, `MAIL From:eggs@example`, `RCPT To:spam@example`, `DATA`.
fn helo_mail_rcpt_data(c: &mut Client) {
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(c.cmd("MAIL From:eggs@example"), OK);
    assert_eq!(c.cmd("RCPT To:spam@example"), OK);
    assert_eq!(c.cmd("DATA"), START_DATA);
}

/// `MAIL from:`, blanks, then `tail`: a MAIL line of exactly `len` octets without CRLF.
///
/// Python's tests reach the length limit with local parts of hundreds of octets; ours are
/// limited to 64 (RFC 5321 4.5.3.1.1), so the filler goes between the colon and the path.
fn padded_mail(len: usize, tail: &str) -> String {
    let head = "MAIL from:";
    let line = format!("{head}{}{tail}", " ".repeat(len - head.len() - tail.len()));
    assert_eq!(line.len(), len);
    line
}

/// Python's `DummyServer.process_message` answers `250 SMTPUTF8 message okish` when the MAIL
/// options hold SMTPUTF8; script the recorder the same way before the end of the message.
fn dummy_server_smtputf8_status(c: &mut Client) {
    if c.session.context().mail_params.smtputf8 {
        c.handler_mut().data_end = Some(Reply::plain(250, "SMTPUTF8 message okish"));
    }
}

// ---------------------------------------------------------------------------------------------
// SMTPDChannelTest: SMTPChannel(server, conn, addr, decode_data=True)
// ---------------------------------------------------------------------------------------------

#[test]
fn channel_test_missing_data() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd(""), "500 Error: bad syntax\r\n");
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_ehlo() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
    assert!(c.session.context().extended_smtp);
}

#[test]
fn channel_test_ehlo_bad_syntax() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO"), "501 Syntax: EHLO hostname\r\n");
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_ehlo_duplicate() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    // deviation: a second EHLO is accepted and resets the transaction (RFC 5321 4.1.4), not `503 Duplicate HELO/EHLO`
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
    assert!(c.session.context().extended_smtp);
    assert_eq!(
        c.handler().log,
        [
            "connect Some(192.0.2.7:40000)",
            "ehlo example",
            "ehlo example"
        ]
    );
}

#[test]
fn channel_test_ehlo_helo_duplicate() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    // deviation: HELO after EHLO is accepted and starts a new (non-extended) session (RFC 5321 4.1.4)
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
    assert!(!c.session.context().extended_smtp);
}

#[test]
fn channel_test_helo() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
    assert!(!c.session.context().extended_smtp);
}

#[test]
fn channel_test_helo_ehlo_duplicate() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    // deviation: EHLO after HELO is accepted and resets the transaction (RFC 5321 4.1.4)
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
    assert!(c.session.context().extended_smtp);
}

#[test]
fn channel_test_help() {
    let mut c = decode_data_channel();
    // deviation: HELP answers 214 (RFC 5321 4.2.2), not 250
    assert_eq!(c.cmd("HELP"), format!("214 {HELP_COMMANDS}\r\n"));
    assert_state(&c, None, None, &[], SmtpState::Command);

    // deviation: with CHUNKING on, HELP lists BDAT too (RFC 3030)
    let mut cfg = python_config(DATA_SIZE_DEFAULT, true, false);
    cfg.extensions.chunking = true;
    let mut c = open(cfg);
    assert_eq!(
        c.cmd("HELP"),
        "214 Supported commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY\r\n"
    );
}

#[test]
fn channel_test_help_command() {
    let mut c = decode_data_channel();
    // deviation: HELP answers 214 (RFC 5321 4.2.2), not 250
    assert_eq!(c.cmd("HELP MAIL"), "214 Syntax: MAIL FROM: <address>\r\n");
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_help_command_unknown() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELP SPAM"), format!("501 {HELP_COMMANDS}\r\n"));
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_helo_bad_syntax() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO"), "501 Syntax: HELO hostname\r\n");
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_helo_duplicate() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    // deviation: a second HELO is accepted and resets the transaction (RFC 5321 4.1.4), not `503 Duplicate HELO/EHLO`
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_helo_parameter_rejected_when_extensions_not_enabled() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(
        c.cmd("MAIL from:<foo@example.com> SIZE=1234"),
        "501 Syntax: MAIL FROM: <address>\r\n"
    );
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_mail_allows_space_after_colon() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(c.cmd("MAIL from:   <foo@example.com>"), OK);
    assert_state(
        &c,
        Some("example"),
        Some("foo@example.com"),
        &[],
        SmtpState::Command,
    );
}

#[test]
fn channel_test_extended_mail_allows_space_after_colon() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_eq!(c.cmd("MAIL from:   <foo@example.com> size=20"), OK);
    assert_state(
        &c,
        Some("example"),
        Some("foo@example.com"),
        &[],
        SmtpState::Command,
    );
    assert_eq!(c.session.context().mail_params.size, Some(20));
}

#[test]
fn channel_test_noop() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("NOOP"), OK);
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_helo_noop() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(c.cmd("NOOP"), OK);
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_noop_bad_syntax() {
    let mut c = decode_data_channel();
    // deviation: a NOOP argument is ignored (RFC 5321 4.1.1.9), not `501 Syntax: NOOP`
    assert_eq!(c.cmd("NOOP hi"), OK);
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_quit() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("QUIT"), "221 Bye\r\n");
    assert!(c.is_closed());
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_helo_quit() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(c.cmd("QUIT"), "221 Bye\r\n");
    assert!(c.is_closed());
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_quit_arg_ignored() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("QUIT bye bye"), "221 Bye\r\n");
    assert!(c.is_closed());
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_command_too_long() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    let line = format!("MAIL from: {}@example", "a".repeat(512));
    assert_eq!(line.len(), 531);
    assert_eq!(c.cmd(&line), LINE_TOO_LONG);
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);

    // deviation: the limit is 512 octets including CRLF, 510 of content (RFC 5321 4.5.3.1.4); Python allowed 512 without CRLF
    assert_eq!(c.cmd(&padded_mail(511, "<eggs@example>")), LINE_TOO_LONG);
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
    assert_eq!(c.cmd(&padded_mail(510, "<eggs@example>")), OK);
    assert_state(
        &c,
        Some("example"),
        Some("eggs@example"),
        &[],
        SmtpState::Command,
    );
}

#[test]
fn channel_test_mail_command_limit_extended_with_size() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    let fill_len = 512 - "MAIL from:<@example>".len();
    let line = format!("MAIL from:<{}@example> SIZE=1234", "a".repeat(fill_len));
    assert_eq!(line.len(), 522);
    // deviation: a local part over 64 octets is refused (RFC 5321 4.5.3.1.1); Python accepted this line
    assert_eq!(
        c.cmd(&line),
        "501 Error: local part longer than 64 octets\r\n"
    );
    // The same check at our limits: 510 + 26 (SIZE advertised, RFC 1870) octets of content.
    // deviation: the limit is 512 octets including CRLF (RFC 5321 4.5.3.1.4), plus 26 for SIZE
    assert_eq!(c.cmd(&padded_mail(536, "<eggs@example> SIZE=1234")), OK);
    assert_state(
        &c,
        Some("example"),
        Some("eggs@example"),
        &[],
        SmtpState::Command,
    );

    let line = format!(
        "MAIL from:<{}@example> SIZE=1234",
        "a".repeat(fill_len + 26)
    );
    assert_eq!(line.len(), 548);
    // Refused for its length before the nested-MAIL check.
    assert_eq!(c.cmd(&line), LINE_TOO_LONG);
    assert_eq!(
        c.cmd(&padded_mail(537, "<eggs@example> SIZE=1234")),
        LINE_TOO_LONG
    );
    assert_state(
        &c,
        Some("example"),
        Some("eggs@example"),
        &[],
        SmtpState::Command,
    );
}

#[test]
fn channel_test_mail_command_rejects_smtputf8_by_default() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_eq!(
        c.cmd("MAIL from: <naive@example.com> BODY=8BITMIME SMTPUTF8"),
        MAIL_PARAMS_555
    );
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_data_longer_than_default_data_size_limit() {
    // `self.channel.data_size_limit = 1048` before the dialogue.
    let mut cfg = python_config(1048, true, false);
    // Python has no text line limit; lift ours (RFC 5321 4.5.3.1.6) so that the 1049-octet
    // line tests the size limit.
    cfg.limits.text_line = None;
    let mut c = open(cfg);
    helo_mail_rcpt_data(&mut c);
    let mut body = b"A".repeat(1048);
    body.extend_from_slice(b"A\r\n.\r\n");
    assert_eq!(c.send(&body), TOO_MUCH_DATA);
    // deviation: after 552 the session is back in command state with the transaction reset (RFC 5321 4.1.1.4, 4.1.4); Python stayed in DATA
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
    assert_eq!(c.handler().aborts, [AbortReason::TooBig]);
    assert_messages(&c, &[]);
}

#[test]
fn channel_test_mail_size_parameter() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_eq!(c.cmd("MAIL FROM:<eggs@example> SIZE=512"), OK);
    assert_state(
        &c,
        Some("example"),
        Some("eggs@example"),
        &[],
        SmtpState::Command,
    );
    assert_eq!(c.session.context().mail_params.size, Some(512));
}

#[test]
fn channel_test_mail_invalid_size_parameter() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_eq!(
        c.cmd("MAIL FROM:<eggs@example> SIZE=invalid"),
        "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n"
    );
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_mail_rcpt_unknown_parameters() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_eq!(c.cmd("MAIL FROM:<eggs@example> ham=green"), MAIL_PARAMS_555);
    assert_eq!(c.cmd("MAIL FROM:<eggs@example>"), OK);
    assert_eq!(c.cmd("RCPT TO:<eggs@example> ham=green"), RCPT_PARAMS_555);
    assert_state(
        &c,
        Some("example"),
        Some("eggs@example"),
        &[],
        SmtpState::Command,
    );
}

#[test]
fn channel_test_mail_size_parameter_larger_than_default_data_size_limit() {
    // `self.channel.data_size_limit = 1048` before the dialogue.
    let mut c = open(python_config(1048, true, false));
    assert_eq!(
        c.cmd("EHLO example"),
        "250-fqdn.example\r\n250-SIZE 1048\r\n250 HELP\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<eggs@example> SIZE=2096"),
        "552 Error: message size exceeds fixed maximum message size\r\n"
    );
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_need_mail() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(
        c.cmd("RCPT to:spam@example"),
        "503 Error: need MAIL command\r\n"
    );
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_mail_syntax_helo() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(
        c.cmd("MAIL from eggs@example"),
        "501 Syntax: MAIL FROM: <address>\r\n"
    );
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_mail_syntax_ehlo() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_eq!(
        c.cmd("MAIL from eggs@example"),
        "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n"
    );
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_mail_missing_address() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(c.cmd("MAIL from:"), "501 Syntax: MAIL FROM: <address>\r\n");
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_mail_chevrons() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(c.cmd("MAIL from:<eggs@example>"), OK);
    assert_state(
        &c,
        Some("example"),
        Some("eggs@example"),
        &[],
        SmtpState::Command,
    );
}

#[test]
fn channel_test_mail_empty_chevrons() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_eq!(c.cmd("MAIL from:<>"), OK);
    // deviation: the null reverse-path is exposed as "" (Context::mailfrom docs, RFC 5321 4.1.2 `"<>"`); Python stored the literal '<>'
    assert_state(&c, Some("example"), Some(""), &[], SmtpState::Command);
    assert_eq!(c.handler().log.last().map(String::as_str), Some("mail "));
}

#[test]
fn channel_test_mail_quoted_localpart() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_eq!(c.cmd("MAIL from: <\"Fred Blogs\"@example.com>"), OK);
    assert_state(
        &c,
        Some("example"),
        Some("\"Fred Blogs\"@example.com"),
        &[],
        SmtpState::Command,
    );
}

#[test]
fn channel_test_mail_quoted_localpart_no_angles() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_eq!(c.cmd("MAIL from: \"Fred Blogs\"@example.com"), OK);
    assert_state(
        &c,
        Some("example"),
        Some("\"Fred Blogs\"@example.com"),
        &[],
        SmtpState::Command,
    );
}

#[test]
fn channel_test_mail_quoted_localpart_with_size() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_eq!(
        c.cmd("MAIL from: <\"Fred Blogs\"@example.com> SIZE=1000"),
        OK
    );
    assert_state(
        &c,
        Some("example"),
        Some("\"Fred Blogs\"@example.com"),
        &[],
        SmtpState::Command,
    );
    assert_eq!(c.session.context().mail_params.size, Some(1000));
}

#[test]
fn channel_test_mail_quoted_localpart_with_size_no_angles() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_eq!(c.cmd("MAIL from: \"Fred Blogs\"@example.com SIZE=1000"), OK);
    assert_state(
        &c,
        Some("example"),
        Some("\"Fred Blogs\"@example.com"),
        &[],
        SmtpState::Command,
    );
    assert_eq!(c.session.context().mail_params.size, Some(1000));
}

#[test]
fn channel_test_nested_mail() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(c.cmd("MAIL from:eggs@example"), OK);
    assert_eq!(
        c.cmd("MAIL from:spam@example"),
        "503 Error: nested MAIL command\r\n"
    );
    assert_state(
        &c,
        Some("example"),
        Some("eggs@example"),
        &[],
        SmtpState::Command,
    );
}

#[test]
fn channel_test_vrfy() {
    let mut c = decode_data_channel();
    assert_eq!(
        c.cmd("VRFY eggs@example"),
        "252 Cannot VRFY user, but will accept message and attempt delivery\r\n"
    );
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_vrfy_syntax() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("VRFY"), "501 Syntax: VRFY <address>\r\n");
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_expn_not_implemented() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EXPN"), "502 EXPN not implemented\r\n");
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_no_helo_mail() {
    let mut c = decode_data_channel();
    assert_eq!(
        c.cmd("MAIL from:<foo@example.com>"),
        "503 Error: send HELO first\r\n"
    );
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_need_rcpt() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(c.cmd("MAIL From:eggs@example"), OK);
    assert_eq!(c.cmd("DATA"), "503 Error: need RCPT command\r\n");
    assert_state(
        &c,
        Some("example"),
        Some("eggs@example"),
        &[],
        SmtpState::Command,
    );
}

#[test]
fn channel_test_rcpt_syntax_helo() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(c.cmd("MAIL From: eggs@example"), OK);
    assert_eq!(
        c.cmd("RCPT to eggs@example"),
        "501 Syntax: RCPT TO: <address>\r\n"
    );
    assert_state(
        &c,
        Some("example"),
        Some("eggs@example"),
        &[],
        SmtpState::Command,
    );
}

#[test]
fn channel_test_rcpt_syntax_ehlo() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    assert_eq!(c.cmd("MAIL From: eggs@example"), OK);
    assert_eq!(
        c.cmd("RCPT to eggs@example"),
        "501 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n"
    );
    assert_state(
        &c,
        Some("example"),
        Some("eggs@example"),
        &[],
        SmtpState::Command,
    );
}

#[test]
fn channel_test_rcpt_lowercase_to_ok() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(c.cmd("MAIL From: eggs@example"), OK);
    assert_eq!(c.cmd("RCPT to: <eggs@example>"), OK);
    assert_state(
        &c,
        Some("example"),
        Some("eggs@example"),
        &["eggs@example"],
        SmtpState::Command,
    );
}

#[test]
fn channel_test_no_helo_rcpt() {
    let mut c = decode_data_channel();
    assert_eq!(
        c.cmd("RCPT to eggs@example"),
        "503 Error: send HELO first\r\n"
    );
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_data_dialog() {
    let mut c = decode_data_channel();
    helo_mail_rcpt_data(&mut c);
    assert_state(
        &c,
        Some("example"),
        Some("eggs@example"),
        &["spam@example"],
        SmtpState::Data,
    );
    assert_eq!(c.send(b"data\r\nmore\r\n.\r\n"), OK);
    // deviation: data is delivered as received, CRLF line ends and final CRLF included (RFC 5321 4.1.1.4); Python passed 'data\nmore'
    assert_messages(
        &c,
        &[("eggs@example", &["spam@example"], b"data\r\nmore\r\n")],
    );
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_data_syntax() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(c.cmd("MAIL From:eggs@example"), OK);
    assert_eq!(c.cmd("RCPT To:spam@example"), OK);
    assert_eq!(c.cmd("DATA spam"), "501 Syntax: DATA\r\n");
    assert_state(
        &c,
        Some("example"),
        Some("eggs@example"),
        &["spam@example"],
        SmtpState::Command,
    );
}

#[test]
fn channel_test_no_helo_data() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("DATA spam"), "503 Error: send HELO first\r\n");
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_data_transparency_section_4_5_2() {
    let mut c = decode_data_channel();
    helo_mail_rcpt_data(&mut c);
    // Python's write_line adds a CRLF after the terminator: an empty command line follows.
    assert_eq!(
        c.send(b"..\r\n.\r\n\r\n"),
        "250 OK\r\n500 Error: bad syntax\r\n"
    );
    // deviation: data is delivered with its CRLF line ends (RFC 5321 4.1.1.4); Python's received_data was '.'
    assert_messages(&c, &[("eggs@example", &["spam@example"], b".\r\n")]);
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_multiple_rcpt() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(c.cmd("MAIL From:eggs@example"), OK);
    assert_eq!(c.cmd("RCPT To:spam@example"), OK);
    assert_eq!(c.cmd("RCPT To:ham@example"), OK);
    assert_eq!(c.cmd("DATA"), START_DATA);
    assert_eq!(c.send(b"data\r\n.\r\n"), OK);
    // deviation: data is delivered with its CRLF line ends (RFC 5321 4.1.1.4); Python passed 'data'
    assert_messages(
        &c,
        &[(
            "eggs@example",
            &["spam@example", "ham@example"],
            b"data\r\n",
        )],
    );
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_manual_status() {
    let mut c = decode_data_channel();
    helo_mail_rcpt_data(&mut c);
    // DummyServer.process_message returns '250 Okish' for this message.
    c.handler_mut().data_end = Some(Reply::plain(250, "Okish"));
    assert_eq!(c.send(b"return status\r\n.\r\n"), "250 Okish\r\n");
    assert_eq!(c.handler().current, b"return status\r\n");
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_rset() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(c.cmd("MAIL From:eggs@example"), OK);
    assert_eq!(c.cmd("RCPT To:spam@example"), OK);
    assert_eq!(c.cmd("RSET"), OK);
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
    assert_eq!(c.cmd("MAIL From:foo@example"), OK);
    assert_eq!(c.cmd("RCPT To:eggs@example"), OK);
    assert_eq!(c.cmd("DATA"), START_DATA);
    assert_eq!(c.send(b"data\r\n.\r\n"), OK);
    // deviation: data is delivered with its CRLF line ends (RFC 5321 4.1.1.4); Python passed 'data'
    assert_messages(&c, &[("foo@example", &["eggs@example"], b"data\r\n")]);
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_helo_rset() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("HELO example"), HELO_OK);
    assert_eq!(c.cmd("RSET"), OK);
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_rset_syntax() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("RSET hi"), "501 Syntax: RSET\r\n");
    assert_state(&c, None, None, &[], SmtpState::Command);
}

#[test]
fn channel_test_unknown_command() {
    let mut c = decode_data_channel();
    assert_eq!(
        c.cmd("UNKNOWN_CMD"),
        "500 Error: command \"UNKNOWN_CMD\" not recognized\r\n"
    );
    assert_eq!(
        c.handler().log.last().map(String::as_str),
        Some("unknown UNKNOWN_CMD None")
    );
    assert_state(&c, None, None, &[], SmtpState::Command);
}

// ---------------------------------------------------------------------------------------------
// SMTPDChannelWithDataSizeLimitTest: SMTPChannel(server, conn, addr, 32, decode_data=True)
// ---------------------------------------------------------------------------------------------

#[test]
fn channel_with_data_size_limit_test_data_limit_dialog() {
    let mut c = open(python_config(32, true, false));
    helo_mail_rcpt_data(&mut c);
    assert_eq!(c.send(b"data\r\nmore\r\n.\r\n"), OK);
    // deviation: data is delivered with its CRLF line ends (RFC 5321 4.1.1.4); Python passed 'data\nmore'
    assert_messages(
        &c,
        &[("eggs@example", &["spam@example"], b"data\r\nmore\r\n")],
    );
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_with_data_size_limit_test_data_limit_dialog_too_much_data() {
    let mut c = open(python_config(32, true, false));
    helo_mail_rcpt_data(&mut c);
    assert_eq!(
        c.send(b"This message is longer than 32 bytes\r\n.\r\n"),
        TOO_MUCH_DATA
    );
    // deviation: after 552 the session is back in command state with the transaction reset (RFC 5321 4.1.1.4, 4.1.4); Python stayed in DATA
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
    assert_eq!(c.handler().aborts, [AbortReason::TooBig]);
    assert_messages(&c, &[]);
}

// ---------------------------------------------------------------------------------------------
// SMTPDChannelWithDecodeDataFalse: SMTPChannel(server, conn, addr)
// ---------------------------------------------------------------------------------------------

#[test]
fn channel_with_decode_data_false_ascii_data() {
    let mut c = bytes_channel();
    helo_mail_rcpt_data(&mut c);
    assert_eq!(c.cmd("plain ascii text"), "");
    assert_eq!(c.cmd("."), OK);
    // deviation: data is delivered with its final CRLF (RFC 5321 4.1.1.4); Python passed b'plain ascii text'
    assert_messages(
        &c,
        &[("eggs@example", &["spam@example"], b"plain ascii text\r\n")],
    );
}

#[test]
fn channel_with_decode_data_false_utf8_data() {
    let mut c = bytes_channel();
    helo_mail_rcpt_data(&mut c);
    assert_eq!(
        c.cmd_bytes(b"utf8 enriched text: \xc5\xbc\xc5\xba\xc4\x87"),
        ""
    );
    assert_eq!(c.cmd("and some plain ascii"), "");
    assert_eq!(c.cmd("."), OK);
    // deviation: data is delivered with its CRLF line ends (RFC 5321 4.1.1.4); Python joined the lines with LF
    assert_messages(
        &c,
        &[(
            "eggs@example",
            &["spam@example"],
            b"utf8 enriched text: \xc5\xbc\xc5\xba\xc4\x87\r\nand some plain ascii\r\n",
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// SMTPDChannelWithDecodeDataTrue: SMTPChannel(server, conn, addr, decode_data=True)
// ---------------------------------------------------------------------------------------------

#[test]
fn channel_with_decode_data_true_ascii_data() {
    let mut c = decode_data_channel();
    helo_mail_rcpt_data(&mut c);
    assert_eq!(c.cmd("plain ascii text"), "");
    assert_eq!(c.cmd("."), OK);
    // deviation: data is delivered as bytes with its final CRLF (RFC 5321 4.1.1.4); Python passed the str 'plain ascii text'
    let data = &c.delivered()[0].data;
    assert_eq!(std::str::from_utf8(data), Ok("plain ascii text\r\n"));
    assert_messages(
        &c,
        &[("eggs@example", &["spam@example"], b"plain ascii text\r\n")],
    );
}

#[test]
fn channel_with_decode_data_true_utf8_data() {
    let mut c = decode_data_channel();
    helo_mail_rcpt_data(&mut c);
    assert_eq!(
        c.cmd_bytes(b"utf8 enriched text: \xc5\xbc\xc5\xba\xc4\x87"),
        ""
    );
    assert_eq!(c.cmd("and some plain ascii"), "");
    assert_eq!(c.cmd("."), OK);
    // deviation: data is delivered as bytes with CRLF line ends (RFC 5321 4.1.1.4); Python passed LF-joined str
    let data = &c.delivered()[0].data;
    assert_eq!(
        std::str::from_utf8(data),
        Ok("utf8 enriched text: żźć\r\nand some plain ascii\r\n")
    );
    assert_eq!(c.delivered().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// SMTPDChannelTestWithEnableSMTPUTF8True: SMTPChannel(server, conn, addr, enable_SMTPUTF8=True)
// ---------------------------------------------------------------------------------------------

#[test]
fn channel_test_with_enable_smtputf8_true_mail_command_accepts_smtputf8_when_announced() {
    let mut c = smtputf8_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_SMTPUTF8);
    assert_eq!(
        c.cmd_bytes(b"MAIL from: <nai\xcc\x88ve@example.com> BODY=8BITMIME SMTPUTF8"),
        OK
    );
    assert_state(
        &c,
        Some("example"),
        Some("nai\u{308}ve@example.com"),
        &[],
        SmtpState::Command,
    );
    // Python's require_SMTPUTF8.
    assert!(c.session.context().mail_params.smtputf8);
}

#[test]
fn channel_test_with_enable_smtputf8_true_process_smtputf8_message() {
    let mut c = smtputf8_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_SMTPUTF8);
    for (mail_parameters, status) in [
        ("", OK),
        ("BODY=8BITMIME SMTPUTF8", "250 SMTPUTF8 message okish\r\n"),
    ] {
        assert_eq!(
            c.cmd(&format!("MAIL from: <a@example> {mail_parameters}")),
            OK
        );
        assert_eq!(c.cmd("rcpt to:<b@example.com>"), OK);
        assert_eq!(c.cmd("data"), START_DATA);
        dummy_server_smtputf8_status(&mut c);
        assert_eq!(c.send(b"c\r\n.\r\n"), status);
        assert_state(&c, Some("example"), None, &[], SmtpState::Command);
    }
    assert_eq!(c.delivered().len(), 1);
    assert_eq!(c.delivered()[0].params, MailParams::default());
    assert_eq!(c.handler().current, b"c\r\n");
}

#[test]
fn channel_test_with_enable_smtputf8_true_utf8_data() {
    let mut c = smtputf8_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_SMTPUTF8);
    assert_eq!(
        c.cmd_bytes(b"MAIL From: nai\xcc\x88ve@exampl\xc3\xa9 BODY=8BITMIME SMTPUTF8"),
        OK
    );
    assert_eq!(c.cmd_bytes(b"RCPT To:sp\xc3\xa4m@exampl\xc3\xa9"), OK);
    assert_eq!(c.cmd("DATA"), START_DATA);
    assert_eq!(
        c.cmd_bytes(b"utf8 enriched text: \xc5\xbc\xc5\xba\xc4\x87"),
        ""
    );
    assert_state(
        &c,
        Some("example"),
        Some("nai\u{308}ve@examplé"),
        &["späm@examplé"],
        SmtpState::Data,
    );
    dummy_server_smtputf8_status(&mut c);
    assert_eq!(c.cmd("."), "250 SMTPUTF8 message okish\r\n");
    // deviation: data is delivered with its final CRLF (RFC 5321 4.1.1.4)
    assert_eq!(
        c.handler().current,
        b"utf8 enriched text: \xc5\xbc\xc5\xba\xc4\x87\r\n"
    );
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
}

#[test]
fn channel_test_with_enable_smtputf8_true_mail_command_limit_extended_with_size_and_smtputf8() {
    let mut c = smtputf8_channel();
    assert_eq!(c.cmd("ehlo example"), EHLO_SMTPUTF8);
    let fill_len = (512 + 26 + 10) - "mail from:<@example>".len();
    let too_long = format!("MAIL from:<{}@example>", "a".repeat(fill_len + 1));
    assert_eq!(too_long.len(), 549);
    assert_eq!(c.cmd(&too_long), LINE_TOO_LONG);
    let python_max = format!("MAIL from:<{}@example>", "a".repeat(fill_len));
    assert_eq!(python_max.len(), 548);
    // deviation: the limit is 512 octets including CRLF plus 26 (SIZE) + 10 (SMTPUTF8), so 546 of content (RFC 5321 4.5.3.1.4, RFC 1870, RFC 6531 3.4)
    assert_eq!(c.cmd(&python_max), LINE_TOO_LONG);
    assert_eq!(c.cmd(&padded_mail(547, "<a@example>")), LINE_TOO_LONG);
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
    assert_eq!(c.cmd(&padded_mail(546, "<a@example>")), OK);
    assert_state(
        &c,
        Some("example"),
        Some("a@example"),
        &[],
        SmtpState::Command,
    );
}

#[test]
fn channel_test_with_enable_smtputf8_true_multiple_emails_with_extended_command_length() {
    let mut c = smtputf8_channel();
    assert_eq!(c.cmd("ehlo example"), EHLO_SMTPUTF8);
    let fill_len = (512 + 26 + 10) - "mail from:<@example>".len();
    for char in ["a", "b", "c"] {
        let too_long = format!("MAIL from:<{}a@example>", char.repeat(fill_len));
        assert_eq!(too_long.len(), 549);
        assert_eq!(c.cmd(&too_long), LINE_TOO_LONG);
        let python_max = format!("MAIL from:<{}@example>", char.repeat(fill_len));
        // deviation: the limit is 512 octets including CRLF plus 26 (SIZE) + 10 (SMTPUTF8), so 546 of content (RFC 5321 4.5.3.1.4, RFC 1870, RFC 6531 3.4)
        assert_eq!(c.cmd(&python_max), LINE_TOO_LONG);
        let from = format!("{char}@example");
        assert_eq!(c.cmd(&padded_mail(546, &format!("<{from}>"))), OK);
        assert_eq!(c.cmd("rcpt to:<hans@example.com>"), OK);
        assert_eq!(c.cmd("data"), START_DATA);
        assert_eq!(c.send(b"test\r\n.\r\n"), OK);
        assert_state(&c, Some("example"), None, &[], SmtpState::Command);
        assert_eq!(
            c.delivered().last().map(|m| m.mailfrom.as_str()),
            Some(from.as_str())
        );
    }
    // deviation: data is delivered with its final CRLF (RFC 5321 4.1.1.4); Python passed b'test'
    assert_messages(
        &c,
        &[
            ("a@example", &["hans@example.com"], b"test\r\n"),
            ("b@example", &["hans@example.com"], b"test\r\n"),
            ("c@example", &["hans@example.com"], b"test\r\n"),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// TestRcptOptionParsing: SMTPChannel(server, conn, addr)
// ---------------------------------------------------------------------------------------------

#[test]
fn rcpt_option_parsing_params_rejected() {
    let mut c = bytes_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_BYTES);
    assert_eq!(c.cmd("MAIL from: <foo@example.com> size=20"), OK);
    assert_eq!(c.cmd("RCPT to: <foo@example.com> foo=bar"), RCPT_PARAMS_555);
    assert_state(
        &c,
        Some("example"),
        Some("foo@example.com"),
        &[],
        SmtpState::Command,
    );
}

#[test]
fn rcpt_option_parsing_nothing_accepted() {
    let mut c = bytes_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_BYTES);
    assert_eq!(c.cmd("MAIL from: <foo@example.com> size=20"), OK);
    assert_eq!(c.cmd("RCPT to: <foo@example.com>"), OK);
    assert_state(
        &c,
        Some("example"),
        Some("foo@example.com"),
        &["foo@example.com"],
        SmtpState::Command,
    );
}

// ---------------------------------------------------------------------------------------------
// TestMailOptionParsing: configuration per test
// ---------------------------------------------------------------------------------------------

#[test]
fn mail_option_parsing_with_decode_data_true() {
    let mut c = decode_data_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_DECODE_DATA);
    for line in [
        "MAIL from: <foo@example.com> size=20 SMTPUTF8",
        "MAIL from: <foo@example.com> size=20 SMTPUTF8 BODY=8BITMIME",
        "MAIL from: <foo@example.com> size=20 BODY=UNKNOWN",
        "MAIL from: <foo@example.com> size=20 body=8bitmime",
    ] {
        assert_eq!(c.cmd(line), MAIL_PARAMS_555, "{line}");
        assert_state(&c, Some("example"), None, &[], SmtpState::Command);
    }
    assert_eq!(c.cmd("MAIL from: <foo@example.com> size=20"), OK);
    assert_state(
        &c,
        Some("example"),
        Some("foo@example.com"),
        &[],
        SmtpState::Command,
    );
}

#[test]
fn mail_option_parsing_with_decode_data_false() {
    let mut c = bytes_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_BYTES);
    for line in [
        "MAIL from: <foo@example.com> size=20 SMTPUTF8",
        "MAIL from: <foo@example.com> size=20 SMTPUTF8 BODY=8BITMIME",
    ] {
        assert_eq!(c.cmd(line), MAIL_PARAMS_555, "{line}");
    }
    // Python validates BODY before reporting unknown parameters.
    assert_eq!(
        c.cmd("MAIL from: <foo@example.com> size=20 SMTPUTF8 BODY=UNKNOWN"),
        "501 Error: BODY can only be one of 7BIT, 8BITMIME\r\n"
    );
    assert_state(&c, Some("example"), None, &[], SmtpState::Command);
    assert_eq!(
        c.cmd("MAIL from: <foo@example.com> size=20 body=8bitmime"),
        OK
    );
    assert_state(
        &c,
        Some("example"),
        Some("foo@example.com"),
        &[],
        SmtpState::Command,
    );
    assert_eq!(c.session.context().mail_params.body, Body::EightBitMime);
}

#[test]
fn mail_option_parsing_with_enable_smtputf8_true() {
    let mut c = smtputf8_channel();
    assert_eq!(c.cmd("EHLO example"), EHLO_SMTPUTF8);
    assert_eq!(
        c.cmd("MAIL from: <foo@example.com> size=20 body=8bitmime smtputf8"),
        OK
    );
    assert_state(
        &c,
        Some("example"),
        Some("foo@example.com"),
        &[],
        SmtpState::Command,
    );
    assert_eq!(
        c.session.context().mail_params,
        MailParams {
            size: Some(20),
            body: Body::EightBitMime,
            smtputf8: true,
        }
    );
}

// ---------------------------------------------------------------------------------------------
// DebuggingServerTest: the delivered message (Python asserts what DebuggingServer prints of it)
// ---------------------------------------------------------------------------------------------

/// Python's `send_data`: EHLO, MAIL, RCPT, DATA, one body line, `.`; returns the final reply.
fn debugging_server_send_data(c: &mut Client, ehlo: &str, mail: &str, body: &[u8]) -> String {
    assert_eq!(c.cmd("EHLO example"), ehlo);
    assert_eq!(c.cmd(mail), OK);
    assert_eq!(c.cmd("RCPT To:spam@example"), OK);
    assert_eq!(c.cmd("DATA"), START_DATA);
    assert_eq!(c.cmd_bytes(body), "");
    c.cmd(".")
}

/// Python smtpd delivers bare LFs; ours refuses them by default (RFC 5321 2.3.8), so the
/// DebuggingServer ports opt into delivering them as received.
fn allow_bare_lf(mut cfg: Config<'static>) -> Config<'static> {
    cfg.bare_newline = BareNewline::Allow;
    cfg
}

#[track_caller]
fn assert_debugging_output(c: &Client, data: &[u8], params: MailParams) {
    let m = c.delivered();
    assert_eq!(m.len(), 1);
    // `X-Peer: peer-address`: the peer the frontend gave.
    assert_eq!(
        m[0].peer.map(|p| p.ip().to_string()).as_deref(),
        Some("192.0.2.7")
    );
    assert_eq!(m[0].mailfrom, "eggs@example");
    assert_eq!(m[0].rcpttos, ["spam@example"]);
    // `mail options: [...]`.
    assert_eq!(m[0].params, params);
    assert_eq!(m[0].data, data);
}

#[test]
fn debugging_server_test_process_message_with_decode_data_true() {
    let mut c = open(allow_bare_lf(python_config(DATA_SIZE_DEFAULT, true, false)));
    let reply = debugging_server_send_data(
        &mut c,
        EHLO_DECODE_DATA,
        "MAIL From:eggs@example",
        b"From: test\n\nhello\n",
    );
    assert_eq!(reply, OK);
    // deviation: the final CRLF is part of the data (RFC 5321 4.1.1.4)
    assert_debugging_output(&c, b"From: test\n\nhello\n\r\n", MailParams::default());
    assert_eq!(
        std::str::from_utf8(&c.delivered()[0].data),
        Ok("From: test\n\nhello\n\r\n")
    );

    // deviation: under the default policy a bare LF refuses the message (RFC 5321 2.3.8, CVE-2023-51764)
    let mut c = open(python_config(DATA_SIZE_DEFAULT, true, false));
    let reply = debugging_server_send_data(
        &mut c,
        EHLO_DECODE_DATA,
        "MAIL From:eggs@example",
        b"From: test\n\nhello\n",
    );
    assert_eq!(reply, "550 Error: bare <LF> received\r\n");
    assert_eq!(c.handler().aborts, [AbortReason::BareNewline]);
    assert_messages(&c, &[]);
}

#[test]
fn debugging_server_test_process_message_with_decode_data_false() {
    let mut c = open(allow_bare_lf(python_config(
        DATA_SIZE_DEFAULT,
        false,
        false,
    )));
    let reply = debugging_server_send_data(
        &mut c,
        EHLO_BYTES,
        "MAIL From:eggs@example",
        b"From: test\n\nh\xc3\xa9llo\xff\n",
    );
    assert_eq!(reply, OK);
    // deviation: the final CRLF is part of the data (RFC 5321 4.1.1.4)
    assert_debugging_output(
        &c,
        b"From: test\n\nh\xc3\xa9llo\xff\n\r\n",
        MailParams::default(),
    );
}

#[test]
fn debugging_server_test_process_message_with_enable_smtputf8_true() {
    let mut c = open(allow_bare_lf(python_config(DATA_SIZE_DEFAULT, false, true)));
    let reply = debugging_server_send_data(
        &mut c,
        EHLO_SMTPUTF8,
        "MAIL From:eggs@example",
        b"From: test\n\nh\xc3\xa9llo\xff\n",
    );
    assert_eq!(reply, OK);
    // No `mail options:` line: the MAIL had no parameters.
    // deviation: the final CRLF is part of the data (RFC 5321 4.1.1.4)
    assert_debugging_output(
        &c,
        b"From: test\n\nh\xc3\xa9llo\xff\n\r\n",
        MailParams::default(),
    );
}

#[test]
fn debugging_server_test_process_smtputf8_message_with_enable_smtputf8_true() {
    let mut c = open(allow_bare_lf(python_config(DATA_SIZE_DEFAULT, false, true)));
    let reply = debugging_server_send_data(
        &mut c,
        EHLO_SMTPUTF8,
        "MAIL From:eggs@example BODY=8BITMIME SMTPUTF8",
        b"From: test\n\nh\xc3\xa9llo\xff\n",
    );
    assert_eq!(reply, OK);
    // `mail options: ['BODY=8BITMIME', 'SMTPUTF8']`.
    // deviation: the final CRLF is part of the data (RFC 5321 4.1.1.4)
    assert_debugging_output(
        &c,
        b"From: test\n\nh\xc3\xa9llo\xff\n\r\n",
        MailParams {
            size: None,
            body: Body::EightBitMime,
            smtputf8: true,
        },
    );
}

// ---------------------------------------------------------------------------------------------
// SMTPDServerTest
// ---------------------------------------------------------------------------------------------

/// A handler that implements no hook: Python's base `SMTPServer` without `process_message`.
struct Unimplemented;

impl Handler for Unimplemented {}

/// Feeds `bytes` to `session` like [`Client::send`] does; returns what the server wrote.
fn drive<H: Handler>(session: &mut Session<'static, H>, bytes: &[u8]) -> String {
    let mut out = Vec::new();
    let mut pending = bytes;
    loop {
        let used = support::block_on(session.handle_input(pending, Instant::from_millis(0)));
        pending = &pending[used..];
        let n = session.output().len();
        out.extend_from_slice(session.output());
        session.consume_output(n);
        if pending.is_empty() || session.is_closed() {
            break;
        }
        assert!(used > 0 || n > 0, "session made no progress");
    }
    String::from_utf8(out).expect("replies are ASCII")
}

#[test]
fn server_test_process_message_unimplemented() {
    let config: &'static Config<'static> =
        Box::leak(Box::new(python_config(DATA_SIZE_DEFAULT, true, false)));
    let mut s = Session::new(config, PEER.parse().ok(), Unimplemented);
    assert_eq!(drive(&mut s, b""), "220 fqdn.example ESMTP smtpd-rs\r\n");
    assert_eq!(drive(&mut s, b"HELO example\r\n"), HELO_OK);
    assert_eq!(drive(&mut s, b"MAIL From:eggs@example\r\n"), OK);
    assert_eq!(drive(&mut s, b"RCPT To:spam@example\r\n"), OK);
    assert_eq!(drive(&mut s, b"DATA\r\n"), START_DATA);
    // deviation: every Handler hook has an accepting default (handler.rs), so a handler without
    // `data_end` accepts and discards the message; Python's base process_message raised
    // NotImplementedError. The trailing CRLF of write_line is an empty command line.
    assert_eq!(
        drive(&mut s, b"spam\r\n.\r\n\r\n"),
        "250 OK\r\n500 Error: bad syntax\r\n"
    );
    let cx = s.context();
    assert_eq!(cx.seen_greeting, Some("example"));
    assert_eq!((cx.mailfrom, cx.rcpttos.len()), (None, 0));
    assert_eq!(cx.smtp_state, SmtpState::Command);
}
