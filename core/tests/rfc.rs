//! RFC conformance: one group of cases per RFC section, for every command, extension, limit
//! and error the core implements. Reply texts are the ones in `core/src/replies.rs`.

mod support;

use smtpd_core::handler::{AbortReason, Body};
use smtpd_core::{BareNewline, Config, Extensions, Instant, Reply, Session, Timeouts};
use support::{block_on, codes, config, lines, Client, Recorder};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The default configuration, modified by `f`.
fn with(f: impl FnOnce(&mut Config<'static>)) -> Config<'static> {
    let mut config = config();
    f(&mut config);
    config
}

/// Connects with `config` and sends `EHLO client.example`.
fn ehlo_with(config: Config<'static>) -> Client {
    let (mut c, _) = Client::connect(config);
    c.cmd("EHLO client.example");
    c
}

/// Connects with `handler` and sends `EHLO client.example`.
fn ehlo_handler(handler: Recorder) -> Client {
    let (mut c, _) = Client::connect_with(config(), handler);
    c.cmd("EHLO client.example");
    c
}

/// After EHLO: MAIL and RCPT, both accepted.
fn begin(c: &mut Client) {
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(c.cmd("RCPT TO:<c@d.example>"), "250 2.1.5 OK\r\n");
}

/// After EHLO: MAIL, RCPT and DATA, all accepted.
fn begin_data(c: &mut Client) {
    begin(c);
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
}

/// The EHLO reply for the host `fqdn.example` with these keywords.
fn ehlo_reply(keywords: &[&str]) -> String {
    let mut out = String::from("250-fqdn.example\r\n");
    for (i, keyword) in keywords.iter().enumerate() {
        let sep = if i + 1 == keywords.len() { ' ' } else { '-' };
        out.push_str(&format!("250{sep}{keyword}\r\n"));
    }
    out
}

const ALL_KEYWORDS: [&str; 8] = [
    "PIPELINING",
    "SIZE 33554432",
    "8BITMIME",
    "SMTPUTF8",
    "ENHANCEDSTATUSCODES",
    "CHUNKING",
    "BINARYMIME",
    "HELP",
];

/// A syntactically valid domain of exactly `len` octets (labels of 40 octets).
fn domain(len: usize) -> String {
    let d: String = (0..len)
        .map(|i| if i % 41 == 40 { '.' } else { 'd' })
        .collect();
    assert!(!d.ends_with('.') && !d.starts_with('.'), "bad length {len}");
    d
}

/// Checks that `out` is a sequence of well-formed reply lines (RFC 5321 4.2, 4.5.3.1.5):
/// three digits, SP or `-`, at most 512 octets including CRLF, continuation lines carrying
/// the code of their reply, the last reply complete; an enhanced code (RFC 3463) has the
/// class of its reply code.
fn assert_well_formed(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("replies are UTF-8");
    if text.is_empty() {
        return;
    }
    // RFC 5321 4.2: reply text is printable US-ASCII (`textstring`).
    assert!(
        text.bytes()
            .all(|b| matches!(b, b' '..=b'~' | b'\r' | b'\n')),
        "reply octets that are not printable US-ASCII: {text:?}"
    );
    assert!(text.ends_with("\r\n"), "output ends mid-line: {text:?}");
    let mut open: Option<&str> = None;
    for line in text.split_terminator("\r\n") {
        let b = line.as_bytes();
        assert!(!line.contains(['\r', '\n']), "bare CR/LF in {line:?}");
        assert!(b.len() + 2 <= 512, "reply line of {} octets", b.len() + 2);
        assert!(b.len() >= 3, "short reply line {line:?}");
        assert!(
            (b'2'..=b'5').contains(&b[0]) && (b'0'..=b'5').contains(&b[1]) && b[2].is_ascii_digit(),
            "bad reply code in {line:?}"
        );
        if let Some(code) = open {
            assert_eq!(&line[..3], code, "continuation code changed: {line:?}");
        }
        match b.get(3) {
            None | Some(b' ') => open = None,
            Some(b'-') => open = Some(&line[..3]),
            Some(_) => panic!("no SP or '-' after the code: {line:?}"),
        }
        if let Some(enhanced) = line.get(4..).and_then(enhanced_code) {
            assert_eq!(enhanced, b[0], "enhanced code class differs in {line:?}");
        }
    }
    assert_eq!(open, None, "the last reply is incomplete");
}

/// The class digit of an enhanced status code `d.ddd.ddd ` at the start of `text`.
fn enhanced_code(text: &str) -> Option<u8> {
    let (code, _) = text.split_once(' ')?;
    let mut parts = code.split('.');
    let class = parts.next()?;
    let ok = class.len() == 1
        && parts.clone().count() == 2
        && parts.all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    (ok && class.as_bytes()[0].is_ascii_digit()).then(|| class.as_bytes()[0])
}

/// A session with custom capacities, driven like a frontend: after every `handle_input` the
/// output is flushed and the unconsumed rest offered again.
struct Small<const OUT: usize, const ENVELOPE: usize> {
    session: Session<'static, Recorder, 548, OUT, [u8; ENVELOPE]>,
    /// `handle_input` calls made.
    calls: usize,
}

impl<const OUT: usize, const ENVELOPE: usize> Small<OUT, ENVELOPE> {
    fn connect(config: Config<'static>) -> (Self, String) {
        let config: &'static Config<'static> = Box::leak(Box::new(config));
        let mut small = Small {
            session: Session::new(config, None, Recorder::default()),
            calls: 0,
        };
        let greeting = small.send(b"");
        (small, greeting)
    }

    fn send(&mut self, bytes: &[u8]) -> String {
        let mut out = Vec::new();
        let mut pending = bytes;
        loop {
            let used = block_on(self.session.handle_input(pending, Instant::from_millis(0)));
            self.calls += 1;
            pending = &pending[used..];
            let output = self.session.output().to_vec();
            self.session.consume_output(output.len());
            out.extend_from_slice(&output);
            if pending.is_empty() || self.session.is_closed() {
                break;
            }
            assert!(used > 0 || !output.is_empty(), "session made no progress");
        }
        assert_well_formed(&out);
        String::from_utf8(out).unwrap()
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes())
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 5321 3.1, 4.3.1: the greeting
// ---------------------------------------------------------------------------------------------

#[test]
fn greeting_is_220_with_host_name_and_banner() {
    let (c, greeting) = Client::connect(config());
    assert_eq!(greeting, "220 fqdn.example ESMTP smtpd-rs\r\n");
    assert_eq!(c.handler().log, ["connect Some(192.0.2.7:40000)"]);
    let (_, greeting) = Client::connect(with(|c| c.banner = "ready"));
    assert_eq!(greeting, "220 fqdn.example ready\r\n");
}

// ---------------------------------------------------------------------------------------------
// RFC 5321 4.1.1.1: HELO / EHLO
// ---------------------------------------------------------------------------------------------

#[test]
fn helo_and_ehlo_require_an_argument() {
    // (Whether these carry an enhanced code is checked under RFC 2034 below.)
    let (mut c, _) = Client::connect(config());
    for (line, text) in [
        ("HELO", "Syntax: HELO hostname\r\n"),
        ("EHLO", "Syntax: EHLO hostname\r\n"),
        ("EHLO   ", "Syntax: EHLO hostname\r\n"),
    ] {
        let out = c.cmd(line);
        assert!(
            out.starts_with("501 ") && out.ends_with(text),
            "{line}: {out:?}"
        );
        assert_eq!(codes(&out), [501]);
    }
    assert_eq!(c.cmd("HELO client.example"), "250 fqdn.example\r\n");
    assert_eq!(c.cmd("EHLO client.example"), ehlo_reply(&ALL_KEYWORDS));
    assert_eq!(
        c.handler().log[1..],
        ["helo client.example", "ehlo client.example"]
    );
}

#[test]
fn helo_and_ehlo_verbs_are_case_insensitive() {
    let (mut c, _) = Client::connect(config());
    assert_eq!(c.cmd("helo a.example"), "250 fqdn.example\r\n");
    assert_eq!(c.cmd("eHlO b.example"), ehlo_reply(&ALL_KEYWORDS));
    assert_eq!(c.cmd("mail from:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(c.cmd("rcpt to:<c@d.example>"), "250 2.1.5 OK\r\n");
    assert_eq!(c.cmd("data"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].greeting.as_deref(), Some("b.example"));
}

#[test]
fn helo_argument_is_limited_to_255_octets() {
    let (mut c, _) = Client::connect(config());
    let ok = domain(255);
    assert_eq!(c.cmd(&format!("EHLO {ok}")), ehlo_reply(&ALL_KEYWORDS));
    let out = c.cmd(&format!("EHLO {}", domain(256)));
    assert!(out.starts_with("501 "), "{out:?}");
    assert!(
        out.ends_with(" Error: hostname longer than 255 octets\r\n"),
        "{out:?}"
    );
    assert_eq!(codes(&out), [501]);
    assert_eq!(c.handler().log.len(), 2);
}

#[test]
fn ehlo_again_resets_the_transaction() {
    // RFC 5321 4.1.4: EHLO/HELO in a transaction acts like RSET.
    let mut c = Client::ehlo();
    begin(&mut c);
    assert_eq!(c.cmd("EHLO other.example"), ehlo_reply(&ALL_KEYWORDS));
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example>"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command\r\n");
    begin(&mut c);
    assert_eq!(c.cmd("HELO third.example"), "250 fqdn.example\r\n");
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command\r\n");
    // The new greeting is the one a message is received with.
    assert_eq!(
        c.mail("a@b.example", &["c@d.example"], b"x"),
        "250 2.0.0 OK\r\n"
    );
    assert_eq!(c.delivered()[0].greeting.as_deref(), Some("third.example"));
    assert!(c.handler().aborts.is_empty());
}

#[test]
fn helo_after_ehlo_drops_the_extensions() {
    let mut c = Client::ehlo();
    assert_eq!(c.cmd("HELO client.example"), "250 fqdn.example\r\n");
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> SIZE=10"),
        "501 5.5.4 Syntax: MAIL FROM: <address>\r\n"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
}

#[test]
fn ehlo_keywords_follow_the_extension_switches() {
    type Switch = fn(&mut Extensions);
    let cases: [(Switch, &[&str]); 7] = [
        (
            |e| e.pipelining = false,
            &[1, 2, 3, 4, 5, 6, 7].map(|i| ALL_KEYWORDS[i]),
        ),
        (
            |e| e.size = false,
            &[0, 2, 3, 4, 5, 6, 7].map(|i| ALL_KEYWORDS[i]),
        ),
        (
            |e| e.eight_bit_mime = false,
            &[0, 1, 3, 4, 5, 6, 7].map(|i| ALL_KEYWORDS[i]),
        ),
        (
            |e| e.smtputf8 = false,
            &[0, 1, 2, 4, 5, 6, 7].map(|i| ALL_KEYWORDS[i]),
        ),
        (
            |e| e.enhanced_status_codes = false,
            &[0, 1, 2, 3, 5, 6, 7].map(|i| ALL_KEYWORDS[i]),
        ),
        // BINARYMIME is only offered with CHUNKING.
        (
            |e| e.chunking = false,
            &[0, 1, 2, 3, 4, 7].map(|i| ALL_KEYWORDS[i]),
        ),
        (
            |e| e.binarymime = false,
            &[0, 1, 2, 3, 4, 5, 7].map(|i| ALL_KEYWORDS[i]),
        ),
    ];
    for (switch, keywords) in cases {
        let (mut c, _) = Client::connect(with(|c| switch(&mut c.extensions)));
        assert_eq!(c.cmd("EHLO client.example"), ehlo_reply(keywords));
    }
    let (mut c, _) = Client::connect(with(|c| c.extensions = Extensions::NONE));
    assert_eq!(
        c.cmd("EHLO client.example"),
        "250-fqdn.example\r\n250 HELP\r\n"
    );
    // SIZE without a limit (RFC 1870 4: no size parameter).
    let (mut c, _) = Client::connect(with(|c| c.limits.message_size = None));
    let mut keywords = ALL_KEYWORDS;
    keywords[1] = "SIZE";
    assert_eq!(c.cmd("EHLO client.example"), ehlo_reply(&keywords));
    let (mut c, _) = Client::connect(with(|c| c.limits.message_size = Some(1000)));
    keywords[1] = "SIZE 1000";
    assert_eq!(c.cmd("EHLO client.example"), ehlo_reply(&keywords));
    // The largest limit there is, all 20 digits of it.
    let (mut c, _) = Client::connect(with(|c| c.limits.message_size = Some(u64::MAX)));
    keywords[1] = "SIZE 18446744073709551615";
    assert_eq!(c.cmd("EHLO client.example"), ehlo_reply(&keywords));
}

// ---------------------------------------------------------------------------------------------
// RFC 5321 4.1.1.2, 4.1.2, 4.5.3.1: MAIL and paths
// ---------------------------------------------------------------------------------------------

#[test]
fn mail_needs_a_greeting() {
    let (mut c, _) = Client::connect(config());
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example>"),
        "503 5.5.1 Error: send HELO first\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<a@b.example>"),
        "503 5.5.1 Error: send HELO first\r\n"
    );
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Error: send HELO first\r\n");
}

#[test]
fn null_reverse_path_is_accepted() {
    let mut c = Client::ehlo();
    assert_eq!(c.cmd("MAIL FROM:<>"), "250 2.1.0 OK\r\n");
    assert_eq!(c.cmd("RCPT TO:<c@d.example>"), "250 2.1.5 OK\r\n");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"bounce\r\n.\r\n"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].mailfrom, "");
    assert!(c.handler().log.contains(&"mail ".to_string()));
}

#[test]
fn mail_syntax_errors() {
    let mut c = ehlo_with(with(|c| c.limits.bad_commands = 100));
    let syntax = "501 5.1.7 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n";
    for bad in [
        "MAIL",
        "MAIL <a@b.example>",
        "MAIL TO:<a@b.example>",
        "MAIL FROM:",
        "MAIL FROM:<a@b.example",
        "MAIL FROM:a@b.example>",
        "MAIL FROM:<a b@c.example>",
        "MAIL FROM:<a..b@c.example>",
        "MAIL FROM:<a@-b.example>",
        "MAIL FROM:<a@b.example>x",
        "MAIL FROM:<postmaster>",
        "MAIL FROM:<a@>",
        "MAIL FROM:<@b.example>",
    ] {
        assert_eq!(c.cmd(bad), syntax, "{bad}");
    }
    let (mut c, _) = Client::connect(with(|c| c.limits.bad_commands = 100));
    c.cmd("HELO client.example");
    assert_eq!(
        c.cmd("MAIL <a@b.example>"),
        "501 5.1.7 Syntax: MAIL FROM: <address>\r\n"
    );
}

#[test]
fn lenient_mail_forms_are_accepted() {
    for (line, mailbox) in [
        ("MAIL FROM: <a@b.example>", "a@b.example"),
        ("MAIL FROM:a@b.example", "a@b.example"),
        ("MAIL FROM:   <a@b.example>", "a@b.example"),
        ("mail from:<a@b.example>", "a@b.example"),
        (
            "MAIL FROM:<a.b+tag@sub-1.b.example>",
            "a.b+tag@sub-1.b.example",
        ),
    ] {
        let mut c = Client::ehlo();
        assert_eq!(c.cmd(line), "250 2.1.0 OK\r\n", "{line}");
        assert_eq!(c.handler().log.last().unwrap(), &format!("mail {mailbox}"));
    }
}

#[test]
fn quoted_local_parts() {
    let mut c = Client::ehlo();
    assert_eq!(
        c.cmd("MAIL FROM:<\"john doe\"@example.com>"),
        "250 2.1.0 OK\r\n"
    );
    assert_eq!(c.cmd("RCPT TO:<\"a@b\"@example.com>"), "250 2.1.5 OK\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<\"x\\\"y\"@example.com>"),
        "250 2.1.5 OK\r\n"
    );
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 OK\r\n");
    let m = &c.delivered()[0];
    assert_eq!(m.mailfrom, "\"john doe\"@example.com");
    assert_eq!(m.rcpttos, ["\"a@b\"@example.com", "\"x\\\"y\"@example.com"]);
    // A quoted local part of 64 octets, quotes included, fits; 65 do not.
    let q64 = format!("\"{}\"", "q".repeat(62));
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{q64}@example.com>")),
        "250 2.1.0 OK\r\n"
    );
    c.cmd("RSET");
    let q65 = format!("\"{}\"", "q".repeat(63));
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{q65}@example.com>")),
        "501 5.5.4 Error: local part longer than 64 octets\r\n"
    );
}

#[test]
fn address_literals() {
    let mut c = ehlo_with(with(|c| c.limits.bad_commands = 100));
    assert_eq!(c.cmd("MAIL FROM:<u@[192.0.2.1]>"), "250 2.1.0 OK\r\n");
    let good = [
        "u@[192.0.2.1]",
        // Snum = 1*3DIGIT: leading zeros are allowed.
        "u@[010.0.2.001]",
        "u@[IPv6:2001:db8::1]",
        "u@[IPv6:::ffff:192.0.2.1]",
        "u@[x-tag:some-value]",
    ];
    for good in good {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<{good}>")),
            "250 2.1.5 OK\r\n",
            "{good}"
        );
    }
    let syntax = "501 5.1.3 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n";
    for bad in [
        "u@[300.1.1.1]",
        "u@[192.0.2]",
        "u@[192.0.2.1.5]",
        "u@[192.0.2.0001]",
        "u@[192.0..2]",
        "u@[192.0.2.+1]",
        "u@[IPv6:zz]",
        "u@[IPv6:1.2.3.4]",
        "u@[tag-:x]",
        "u@[:x]",
        "u@[x:]",
        "u@[]",
        "u@[a[b]",
    ] {
        assert_eq!(c.cmd(&format!("RCPT TO:<{bad}>")), syntax, "{bad}");
    }
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].rcpttos, good);
}

#[test]
fn general_address_literal_may_contain_an_at_sign() {
    // RFC 5321 4.1.3: dcontent = %d33-90 / %d94-126, which includes "@". The local part of
    // `u@[tag:...@...]` is `u`, one octet, however long the literal is.
    let mut c = Client::ehlo();
    let literal = format!("[x-tag:{}@b]", "a".repeat(70));
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<u@{literal}>")),
        "250 2.1.0 OK\r\n"
    );
    assert_eq!(c.cmd(&format!("RCPT TO:<v@{literal}>")), "250 2.1.5 OK\r\n");
}

#[test]
fn source_routes_are_accepted_and_dropped() {
    // RFC 5321 4.1.1.3 and appendix C.
    let mut c = Client::ehlo();
    assert_eq!(
        c.cmd("MAIL FROM:<@r1.example,@r2.example:a@b.example>"),
        "250 2.1.0 OK\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<@r3.example:c@d.example>"),
        "250 2.1.5 OK\r\n"
    );
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].mailfrom, "a@b.example");
    assert_eq!(c.delivered()[0].rcpttos, ["c@d.example"]);
}

#[test]
fn path_length_limits() {
    // RFC 5321 4.5.3.1.1-3: local part 64, domain 255, path 256 octets (brackets included).
    let mut c = Client::ehlo();
    let l64 = "l".repeat(64);
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{l64}@example.com>")),
        "250 2.1.0 OK\r\n"
    );
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{l64}@example.com>")),
        "250 2.1.5 OK\r\n"
    );
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{l64}x@example.com>")),
        "501 5.5.4 Error: local part longer than 64 octets\r\n"
    );
    c.cmd("RSET");
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{l64}x@example.com>")),
        "501 5.5.4 Error: local part longer than 64 octets\r\n"
    );
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<a@{}>", domain(256))),
        "501 5.5.4 Error: domain longer than 255 octets\r\n"
    );
    // `<a@` + 252 + `>` is 256 octets.
    let path256 = format!("<a@{}>", domain(252));
    assert_eq!(path256.len(), 256);
    assert_eq!(c.cmd(&format!("MAIL FROM:{path256}")), "250 2.1.0 OK\r\n");
    assert_eq!(c.cmd(&format!("RCPT TO:{path256}")), "250 2.1.5 OK\r\n");
    let path257 = format!("<a@{}>", domain(253));
    assert_eq!(
        c.cmd(&format!("RCPT TO:{path257}")),
        "501 5.5.4 Error: path longer than 256 octets\r\n"
    );
    c.cmd("RSET");
    assert_eq!(
        c.cmd(&format!("MAIL FROM:{path257}")),
        "501 5.5.4 Error: path longer than 256 octets\r\n"
    );
    // A source route counts towards the path ("including the punctuation").
    let route = format!("<@{}:a@b.example>", domain(250));
    assert_eq!(
        c.cmd(&format!("MAIL FROM:{route}")),
        "501 5.5.4 Error: path longer than 256 octets\r\n"
    );
}

#[test]
fn nested_mail_is_503() {
    let mut c = Client::ehlo();
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(
        c.cmd("MAIL FROM:<e@f.example>"),
        "503 5.5.1 Error: nested MAIL command\r\n"
    );
    assert_eq!(c.cmd("RCPT TO:<c@d.example>"), "250 2.1.5 OK\r\n");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].mailfrom, "a@b.example");
}

#[test]
fn mail_parameters_only_after_ehlo() {
    let mut c = Client::helo();
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> BODY=8BITMIME"),
        "501 5.5.4 Syntax: MAIL FROM: <address>\r\n"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example> NOTIFY=NEVER"),
        "501 5.5.4 Syntax: RCPT TO: <address>\r\n"
    );
    let mut c = Client::ehlo();
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> FOO=BAR"),
        "555 5.5.4 MAIL FROM parameters not recognized or not implemented\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> =x"),
        "501 5.5.4 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> SIZE=10  BODY=7BIT SMTPUTF8"),
        "250 2.1.0 OK\r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 1870: SIZE
// ---------------------------------------------------------------------------------------------

#[test]
fn declared_size_over_the_limit_is_552_at_mail() {
    let mut c = ehlo_with(with(|c| c.limits.message_size = Some(1000)));
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> SIZE=1001"),
        "552 5.3.4 Error: message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> SIZE=99999999999999999999999"),
        "552 5.3.4 Error: message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example>"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> SIZE=1000"),
        "250 2.1.0 OK\r\n"
    );
    assert_eq!(c.cmd("RCPT TO:<c@d.example>"), "250 2.1.5 OK\r\n");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].params.size, Some(1000));
}

#[test]
fn size_without_a_limit() {
    let mut c = ehlo_with(with(|c| c.limits.message_size = None));
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> SIZE=99999999999"),
        "250 2.1.0 OK\r\n"
    );
    assert_eq!(c.cmd("RCPT TO:<c@d.example>"), "250 2.1.5 OK\r\n");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    let body = "0123456789012345678901234567890123456789\r\n".repeat(2000);
    let mut data = body.clone().into_bytes();
    data.extend_from_slice(b".\r\n");
    assert_eq!(c.send(&data), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].data, body.as_bytes());
    assert_eq!(c.delivered()[0].params.size, Some(99_999_999_999));
}

#[test]
fn bad_size_values_are_501_with_the_parameters_code() {
    let mut c = Client::ehlo();
    let syntax = "501 5.5.4 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n";
    for bad in [
        "SIZE=abc", "SIZE=-1", "SIZE=1.5", "SIZE", "SIZE=", "SIZE=1x",
    ] {
        assert_eq!(
            c.cmd(&format!("MAIL FROM:<a@b.example> {bad}")),
            syntax,
            "{bad}"
        );
    }
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> SIZE=1 SIZE=2"),
        "501 5.5.4 Error: duplicate parameter\r\n"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@b.example> size=0"), "250 2.1.0 OK\r\n");
}

/// Python's smtpd understands `SIZE=` whether or not it advertised SIZE (its command line
/// advertises it only with `-s`); so do we, checking it against the limit all the same.
#[test]
fn size_parameter_is_understood_when_not_advertised() {
    let config = with(|c| {
        c.extensions.size = false;
        c.limits.message_size = Some(100);
    });
    let mut c = ehlo_with(config);
    assert_eq!(c.cmd("MAIL FROM:<a@b.example> SIZE=10"), "250 2.1.0 OK\r\n");
    c.cmd("RSET");
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> SIZE=101"),
        "552 5.3.4 Error: message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> SIZE=ten"),
        "501 5.5.4 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 6152 (8BITMIME), RFC 3030 (BINARYMIME): BODY
// ---------------------------------------------------------------------------------------------

#[test]
fn body_values() {
    for (value, body) in [
        ("7BIT", Body::SevenBit),
        ("8BITMIME", Body::EightBitMime),
        ("8bitmime", Body::EightBitMime),
    ] {
        let mut c = Client::ehlo();
        assert_eq!(
            c.cmd(&format!("MAIL FROM:<a@b.example> BODY={value}")),
            "250 2.1.0 OK\r\n"
        );
        assert_eq!(c.cmd("RCPT TO:<c@d.example>"), "250 2.1.5 OK\r\n");
        assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
        assert_eq!(c.send(b"caf\xc3\xa9 \xff\r\n.\r\n"), "250 2.0.0 OK\r\n");
        assert_eq!(c.delivered()[0].params.body, body);
        assert_eq!(c.delivered()[0].data, b"caf\xc3\xa9 \xff\r\n");
    }
    let mut c = Client::ehlo();
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> BODY=FOO"),
        "501 5.5.4 Error: BODY can only be one of 7BIT, 8BITMIME, BINARYMIME\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> BODY"),
        "501 5.5.4 Error: BODY can only be one of 7BIT, 8BITMIME, BINARYMIME\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> BODY=7BIT BODY=8BITMIME"),
        "501 5.5.4 Error: duplicate parameter\r\n"
    );
}

#[test]
fn binarymime_requires_bdat() {
    let mut c = Client::ehlo();
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> BODY=BINARYMIME"),
        "250 2.1.0 OK\r\n"
    );
    assert_eq!(c.cmd("RCPT TO:<c@d.example>"), "250 2.1.5 OK\r\n");
    assert_eq!(
        c.cmd("DATA"),
        "503 5.5.1 Error: BODY=BINARYMIME requires BDAT\r\n"
    );
    assert_eq!(c.send(b"BDAT 4 LAST\r\n\x00\x01\r\n"), "250 2.0.0 OK\r\n");
    let m = &c.delivered()[0];
    assert_eq!(m.params.body, Body::BinaryMime);
    assert_eq!(m.data, b"\x00\x01\r\n");
}

#[test]
fn body_switched_off() {
    let mut c = ehlo_with(with(|c| c.extensions.binarymime = false));
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> BODY=BINARYMIME"),
        "501 5.5.4 Error: BODY can only be one of 7BIT, 8BITMIME\r\n"
    );
    // BINARYMIME is not offered without CHUNKING either.
    let mut c = ehlo_with(with(|c| c.extensions.chunking = false));
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> BODY=BINARYMIME"),
        "501 5.5.4 Error: BODY can only be one of 7BIT, 8BITMIME\r\n"
    );
    let mut c = ehlo_with(with(|c| c.extensions.eight_bit_mime = false));
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> BODY=8BITMIME"),
        "555 5.5.4 MAIL FROM parameters not recognized or not implemented\r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 6531: SMTPUTF8
// ---------------------------------------------------------------------------------------------

#[test]
fn utf8_reverse_path_needs_smtputf8() {
    let mut c = Client::ehlo();
    assert_eq!(
        c.cmd("MAIL FROM:<jörg@bücher.example>"),
        "553 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<jörg@bücher.example> SMTPUTF8"),
        "250 2.1.0 OK\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>"),
        "250 2.1.5 OK\r\n"
    );
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 OK\r\n");
    let m = &c.delivered()[0];
    assert_eq!(m.mailfrom, "jörg@bücher.example");
    assert_eq!(m.rcpttos, ["δοκιμή@παράδειγμα.δοκιμή"]);
    assert!(m.params.smtputf8);
}

#[test]
fn utf8_forward_path_only_in_an_smtputf8_transaction() {
    let mut c = Client::ehlo();
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>"),
        "553 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n"
    );
    assert_eq!(c.cmd("RCPT TO:<c@d.example>"), "250 2.1.5 OK\r\n");
    assert_eq!(c.cmd("RSET"), "250 2.0.0 OK\r\n");
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> SMTPUTF8"),
        "250 2.1.0 OK\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>"),
        "250 2.1.5 OK\r\n"
    );
    // The permission ends with the transaction.
    assert_eq!(c.cmd("RSET"), "250 2.0.0 OK\r\n");
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>"),
        "553 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n"
    );
}

#[test]
fn smtputf8_takes_no_value() {
    let mut c = Client::ehlo();
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> SMTPUTF8=x"),
        "501 5.5.4 Error: SMTPUTF8 takes no arguments\r\n"
    );
    // Like SIZE and BODY, the parameter may be given once.
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> SMTPUTF8 smtputf8"),
        "501 5.5.4 Error: duplicate parameter\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> smtputf8"),
        "250 2.1.0 OK\r\n"
    );
}

#[test]
fn smtputf8_switched_off() {
    let mut c = ehlo_with(with(|c| c.extensions.smtputf8 = false));
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example> SMTPUTF8"),
        "555 5.5.4 MAIL FROM parameters not recognized or not implemented\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<jörg@bücher.example>"),
        "553 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 5321 4.1.1.3, 4.5.3.1.8: RCPT
// ---------------------------------------------------------------------------------------------

#[test]
fn rcpt_needs_mail() {
    let mut c = Client::ehlo();
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example>"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
}

#[test]
fn rcpt_forms() {
    let mut c = Client::ehlo();
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<>"),
        "501 5.1.3 Error: null address <> not allowed as recipient\r\n"
    );
    assert_eq!(c.cmd("RCPT TO:<Postmaster>"), "250 2.1.5 OK\r\n");
    assert_eq!(c.cmd("RCPT TO:<postmaster>"), "250 2.1.5 OK\r\n");
    assert_eq!(c.cmd("RCPT TO: <e@f.example>"), "250 2.1.5 OK\r\n");
    assert_eq!(c.cmd("RCPT TO:g@h.example"), "250 2.1.5 OK\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example> NOTIFY=NEVER"),
        "555 5.5.4 RCPT TO parameters not recognized or not implemented\r\n"
    );
    assert_eq!(
        c.cmd("RCPT <c@d.example>"),
        "501 5.1.3 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<postmaster@>"),
        "501 5.1.3 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n"
    );
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 OK\r\n");
    assert_eq!(
        c.delivered()[0].rcpttos,
        ["Postmaster", "postmaster", "e@f.example", "g@h.example"]
    );
}

#[test]
fn recipients_limit_is_452() {
    // RFC 5321 4.5.3.1.8 / 4.5.3.1.10: at least 100 recipients; more → 452 (4.5.3).
    let mut c = Client::ehlo();
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    for i in 0..100 {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<r{i}@example.com>")),
            "250 2.1.5 OK\r\n"
        );
    }
    assert_eq!(
        c.cmd("RCPT TO:<r100@example.com>"),
        "452 4.5.3 Error: too many recipients\r\n"
    );
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].rcpttos.len(), 100);

    let mut c = ehlo_with(with(|c| c.limits.recipients = 2));
    begin(&mut c);
    assert_eq!(c.cmd("RCPT TO:<e@f.example>"), "250 2.1.5 OK\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<g@h.example>"),
        "452 4.5.3 Error: too many recipients\r\n"
    );
    // The limit is per transaction.
    c.cmd("RSET");
    begin(&mut c);
}

#[test]
fn full_envelope_arena_is_452() {
    // 64 octets: "client.example" (14) + "a@b.example" (11) + two 14-octet recipients with
    // their 2-octet lengths (32).
    let (mut c, _) = Small::<1024, 64>::connect(config());
    c.cmd("EHLO client.example");
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(c.cmd("RCPT TO:<r1@example.com>"), "250 2.1.5 OK\r\n");
    assert_eq!(c.cmd("RCPT TO:<r2@example.com>"), "250 2.1.5 OK\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<r3@example.com>"),
        "452 4.5.3 Error: too many recipients\r\n"
    );
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 OK\r\n");
    let delivered = &c.session.handler().delivered;
    assert_eq!(delivered[0].rcpttos, ["r1@example.com", "r2@example.com"]);

    // A reverse-path that does not fit: 452 4.3.1, and the session goes on.
    let (mut c, _) = Small::<1024, 32>::connect(config());
    c.cmd("EHLO client.example");
    assert_eq!(
        c.cmd("MAIL FROM:<a-long-sender@b.example>"),
        "452 4.3.1 Error: insufficient system storage\r\n"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
}

#[test]
fn the_large_arena_holds_100_of_the_longest_paths() {
    // RFC 5321 4.5.3.1.8: 100 recipients must be buffered; 4.5.3.1.3: a path may take 256
    // octets with its brackets.
    const ENVELOPE: usize = smtpd_core::channel::capacity::ENVELOPE_FOR_100_LONGEST;
    let (mut c, _) = Small::<1024, ENVELOPE>::connect(config());
    let domain = format!("{}.{}.{}", "d".repeat(63), "e".repeat(63), "f".repeat(61));
    let long = |i: usize| format!("{i:03}{}@{domain}", "l".repeat(61));
    assert_eq!(long(0).len(), 254);
    // The longest EHLO domain (255 octets) and a MAIL line with parameters, too.
    assert_eq!(
        c.cmd(&format!("EHLO {}", "h".repeat(255))).get(..4),
        Some("250-")
    );
    assert_eq!(
        c.cmd(&format!(
            "MAIL FROM:<{}> SIZE=1000 BODY=8BITMIME  SMTPUTF8",
            long(999)
        )),
        "250 2.1.0 OK\r\n"
    );
    for i in 0..100 {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<{}>", long(i))),
            "250 2.1.5 OK\r\n",
            "recipient {i}"
        );
    }
    assert_eq!(
        c.cmd("RCPT TO:<one-more@example.com>"),
        "452 4.5.3 Error: too many recipients\r\n"
    );
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 OK\r\n");
    let delivered = &c.session.handler().delivered;
    assert!(delivered[0].rcpttos.iter().cloned().eq((0..100).map(long)));
}

#[test]
fn handler_refuses_a_recipient() {
    let mut c = ehlo_handler(Recorder {
        refuse_rcpt: Some("bad"),
        ..Recorder::default()
    });
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<bad@d.example>"),
        "550 5.1.1 No such user here\r\n"
    );
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command\r\n");
    assert_eq!(c.cmd("RCPT TO:<good@d.example>"), "250 2.1.5 OK\r\n");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].rcpttos, ["good@d.example"]);
}

// ---------------------------------------------------------------------------------------------
// RFC 5321 4.1.1.4, 4.5.2: DATA and transparency
// ---------------------------------------------------------------------------------------------

#[test]
fn data_needs_recipients() {
    let mut c = Client::ehlo();
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command\r\n");
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command\r\n");
    assert_eq!(c.cmd("RCPT TO:<c@d.example>"), "250 2.1.5 OK\r\n");
    assert_eq!(c.cmd("DATA x"), "501 5.5.4 Syntax: DATA\r\n");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 OK\r\n");
}

#[test]
fn dot_unstuffing() {
    let mut c = Client::ehlo();
    begin_data(&mut c);
    assert_eq!(
        c.send(b"..\r\n...x\r\n.y\r\nz.\r\n. \r\n\r\n.\r\n"),
        "250 2.0.0 OK\r\n"
    );
    assert_eq!(c.delivered()[0].data, b".\r\n..x\r\ny\r\nz.\r\n \r\n\r\n");
    // Fed one octet at a time, the outcome is the same.
    begin_data(&mut c);
    assert_eq!(
        c.send_in_pieces(b"..\r\n...x\r\n.y\r\nz.\r\n. \r\n\r\n.\r\n", 1),
        "250 2.0.0 OK\r\n"
    );
    assert_eq!(c.delivered()[1].data, c.delivered()[0].data);
}

#[test]
fn empty_message_is_accepted() {
    let mut c = Client::ehlo();
    begin_data(&mut c);
    assert_eq!(c.send(b".\r\n"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].data, b"");
    assert_eq!(
        c.handler().log[c.handler().log.len() - 2..],
        ["data_start", "data_end"]
    );
}

#[test]
fn an_aborted_message_is_reported_with_its_envelope() {
    let mut c = ehlo_with(with(|c| c.limits.message_size = Some(10)));
    begin_data(&mut c);
    assert_eq!(
        c.send(b"0123456789abc\r\n.\r\nMAIL FROM:<next@b.example>\r\n"),
        "552 5.3.4 Error: Too much mail data\r\n250 2.1.0 OK\r\n"
    );
    let handler = c.handler();
    assert_eq!(handler.aborts, [AbortReason::TooBig]);
    assert_eq!(
        handler.aborted_envelopes,
        [(Some("a@b.example".into()), vec!["c@d.example".into()])]
    );
    // A RSET in the middle of BDAT, too; the next transaction starts clean.
    assert_eq!(c.cmd("RSET"), "250 2.0.0 OK\r\n");
    begin(&mut c);
    c.send(b"BDAT 2\r\nab");
    assert_eq!(c.cmd("RSET"), "250 2.0.0 OK\r\n");
    assert_eq!(c.cmd("MAIL FROM:<x@b.example>"), "250 2.1.0 OK\r\n");
    let handler = c.handler();
    assert_eq!(handler.aborts[1], AbortReason::Reset);
    assert_eq!(handler.aborted_envelopes[1].1, ["c@d.example"]);
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command\r\n");
}

#[test]
fn message_over_the_size_limit_is_552_after_its_end() {
    let mut c = ehlo_with(with(|c| c.limits.message_size = Some(10)));
    begin_data(&mut c);
    // Exactly 10 octets (after unstuffing) fit.
    assert_eq!(c.send(b"..1234567\r\n.\r\n"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].data, b".1234567\r\n");
    begin_data(&mut c);
    assert_eq!(c.send(b"0123456789"), "");
    assert_eq!(c.send(b"\r\nQUIT\r\n"), "");
    assert_eq!(c.send(b".\r\n"), "552 5.3.4 Error: Too much mail data\r\n");
    assert_eq!(c.delivered().len(), 1);
    assert_eq!(c.handler().aborts, [AbortReason::TooBig]);
    let log = &c.handler().log;
    assert_eq!(
        log[log.len() - 3..],
        ["data_start", "pause after 10 octets", "abort TooBig"]
    );
    // The transaction was reset; the session goes on.
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example>"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    assert_eq!(
        c.mail("a@b.example", &["c@d.example"], b"ok"),
        "250 2.0.0 OK\r\n"
    );
    assert_eq!(c.delivered()[1].data, b"ok\r\n");
}

#[test]
fn text_line_limit_is_1000_octets() {
    // RFC 5321 4.5.3.1.6: 1000 octets including CRLF.
    let mut c = Client::ehlo();
    begin_data(&mut c);
    let mut body = vec![b'x'; 998];
    body.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(c.send(&body), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].data.len(), 1000);
    begin_data(&mut c);
    let mut body = vec![b'x'; 999];
    body.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(
        c.send(&body),
        "500 5.5.2 Error: line too long (RFC 5321 4.5.3.1.6)\r\n"
    );
    assert_eq!(c.delivered().len(), 1);
    assert_eq!(c.handler().aborts, [AbortReason::LineTooLong]);
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example>"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    // No limit configured.
    let mut c = ehlo_with(with(|c| c.limits.text_line = None));
    begin_data(&mut c);
    let mut body = vec![b'x'; 5000];
    body.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(c.send(&body), "250 2.0.0 OK\r\n");
}

#[test]
fn text_line_limit_does_not_count_the_stuffed_dot() {
    // RFC 5321 4.5.3.1.6: "The maximum total length of a text line including the <CRLF> is
    // 1000 octets (not counting the leading dot duplicated for transparency)."
    let mut c = Client::ehlo();
    begin_data(&mut c);
    let mut body = b".".to_vec();
    body.extend_from_slice(&[b'.'; 998]); // the text line is 998 dots + CRLF
    body.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(c.send(&body), "250 2.0.0 OK\r\n");
    let mut expected = vec![b'.'; 998];
    expected.extend_from_slice(b"\r\n");
    assert_eq!(c.delivered()[0].data, expected);
}

#[test]
fn text_line_limit_counts_every_octet_of_the_line() {
    // Under BareNewline::Allow a bare LF is content, not a line end: the CRLF-delimited line
    // below is 1001 octets including CRLF and must be refused like any other long line.
    let mut c = ehlo_with(with(|c| c.bare_newline = BareNewline::Allow));
    begin_data(&mut c);
    let mut body = vec![b'x'; 500];
    body.push(b'\n');
    body.extend_from_slice(&[b'y'; 498]);
    body.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(
        c.send(&body),
        "500 5.5.2 Error: line too long (RFC 5321 4.5.3.1.6)\r\n"
    );
    assert_eq!(c.delivered().len(), 0);
    // The same with a bare CR is refused (the core counts the CR).
    begin_data(&mut c);
    let mut body = vec![b'x'; 500];
    body.push(b'\r');
    body.extend_from_slice(&[b'y'; 498]);
    body.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(
        c.send(&body),
        "500 5.5.2 Error: line too long (RFC 5321 4.5.3.1.6)\r\n"
    );
}

#[test]
fn handler_refuses_content() {
    let mut c = ehlo_handler(Recorder {
        capacity: Some(5),
        ..Recorder::default()
    });
    begin_data(&mut c);
    assert_eq!(c.send(b"0123456789\r\n"), "");
    assert_eq!(c.send(b"more\r\n"), "");
    assert_eq!(
        c.send(b".\r\n"),
        "452 4.3.1 Insufficient system storage\r\n"
    );
    assert!(c.delivered().is_empty());
    assert_eq!(c.handler().aborts, [AbortReason::Refused]);
    assert!(!c.handler().log.contains(&"data_end".to_string()));
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example>"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK\r\n");
}

#[test]
fn handler_refuses_at_the_end() {
    let mut c = ehlo_handler(Recorder {
        data_end: Some(Reply::new(554, (5, 7, 1), "Message rejected")),
        ..Recorder::default()
    });
    begin_data(&mut c);
    assert_eq!(c.send(b"x\r\n.\r\n"), "554 5.7.1 Message rejected\r\n");
    assert!(c.delivered().is_empty());
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example>"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
}

#[test]
fn an_accepting_reply_takes_the_code_the_step_allows() {
    // RFC 5321 4.3.2: RCPT succeeds with 250 or 251 only; most clients read a 200 or 354
    // as a refusal, while the recipient was taken.
    for (given, sent) in [
        (Reply::new(200, (2, 1, 5), "fine"), "250 2.1.5 fine\r\n"),
        (Reply::plain(354, "weird"), "250 2.0.0 weird\r\n"),
        (
            Reply::new(251, (2, 1, 5), "will forward"),
            "251 2.1.5 will forward\r\n",
        ),
        (
            Reply::new(252, (5, 1, 1), "odd class"),
            "250 2.1.1 odd class\r\n",
        ),
    ] {
        let mut c = ehlo_handler(Recorder {
            rcpt: Some(given),
            ..Recorder::default()
        });
        c.cmd("MAIL FROM:<a@b.example>");
        assert_eq!(c.cmd("RCPT TO:<c@d.example>"), sent);
        assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    }
    // End of data succeeds with 250 only, and only a 2xx acknowledges a message: a 3xx is
    // no verdict, so the client keeps the message and tries again later.
    let mut c = ehlo_handler(Recorder {
        data_end: Some(Reply::new(220, (2, 0, 0), "handed on")),
        ..Recorder::default()
    });
    begin_data(&mut c);
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 handed on\r\n");
    let mut c = ehlo_handler(Recorder {
        data_end: Some(Reply::plain(354, "more please?")),
        ..Recorder::default()
    });
    begin_data(&mut c);
    assert_eq!(c.send(b"x\r\n.\r\n"), "451 4.3.0 more please?\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example>"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    // A refusal keeps its code; its enhanced code takes the reply's class.
    let mut c = ehlo_handler(Recorder {
        rcpt: Some(Reply::new(550, (2, 0, 0), "mismatched class")),
        ..Recorder::default()
    });
    c.cmd("MAIL FROM:<a@b.example>");
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example>"),
        "550 5.0.0 mismatched class\r\n"
    );
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command\r\n");
}

#[test]
fn a_refused_session_waits_for_quit() {
    // RFC 5321 3.1: after a 554 greeting the server MUST wait for QUIT and SHOULD answer
    // anything else with 503.
    let (mut c, greeting) = Client::connect_with(
        config(),
        Recorder {
            greeting: Some(Reply::plain(554, "No SMTP service here")),
            ..Recorder::default()
        },
    );
    assert_eq!(greeting, "554 No SMTP service here\r\n");
    let refused = "503 5.5.1 Error: this session was refused, only QUIT is accepted\r\n";
    for command in ["MAIL FROM:<a@b.example>", "NOOP", "XFOO"] {
        assert_eq!(c.cmd(command), refused);
    }
    // A BDAT chunk is skipped, and answered once read (RFC 3030 2).
    assert_eq!(c.cmd("BDAT 6"), "");
    assert_eq!(c.send(b"ab"), "");
    assert_eq!(c.send(b"cdef"), refused);
    // Lines refused before they are parsed get the same 503.
    assert_eq!(c.send(b"NO\nOP\r\n"), refused);
    assert_eq!(
        c.send(format!("{}\r\n", "x".repeat(600)).as_bytes()),
        refused
    );
    assert_eq!(c.send(b"\xff\r\n"), refused);
    assert_eq!(
        c.cmd("EHLO client.example"),
        "503 Error: this session was refused, only QUIT is accepted\r\n"
    );
    assert!(!c.is_closed());
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye\r\n");
    assert!(c.is_closed());
    assert!(c.delivered().is_empty());

    // The refused commands count as bad ones: a client that goes on is cut off.
    let (mut c, _) = Client::connect_with(
        config(),
        Recorder {
            greeting: Some(Reply::plain(554, "go away")),
            ..Recorder::default()
        },
    );
    let limit = config().limits.bad_commands as usize;
    let replies = c.send("NOOP\r\n".repeat(limit + 5).as_bytes());
    assert_eq!(lines(&replies).len(), limit + 1);
    assert!(replies
        .ends_with("421 4.7.0 fqdn.example Error: too many bad commands, closing connection\r\n"));
    assert!(c.is_closed());

    // 421 closes at once; an accepting reply replaces the greeting with a 220.
    let (c, greeting) = Client::connect_with(
        config(),
        Recorder {
            greeting: Some(Reply::new(421, (4, 3, 2), "busy")),
            ..Recorder::default()
        },
    );
    assert_eq!(greeting, "421 4.3.2 busy\r\n");
    assert!(c.is_closed());
    // A greeting refusal is 554 or 421 (RFC 5321 4.3.2): other codes are made one of them.
    for (given, sent, closed) in [
        (Reply::new(550, (5, 7, 1), "no"), "554 5.7.1 no\r\n", false),
        (Reply::plain(450, "later"), "421 later\r\n", true),
        (Reply::plain(99, "odd"), "421 odd\r\n", true),
    ] {
        let (c, greeting) = Client::connect_with(
            config(),
            Recorder {
                greeting: Some(given),
                ..Recorder::default()
            },
        );
        assert_eq!(greeting, sent);
        assert_eq!(c.is_closed(), closed, "{sent}");
    }
    // With CHUNKING off, BDAT is no command: its "size" swallows nothing.
    let (mut c, _) = Client::connect_with(
        with(|c| c.extensions.chunking = false),
        Recorder {
            greeting: Some(Reply::plain(554, "go away")),
            ..Recorder::default()
        },
    );
    assert_eq!(
        c.send(b"BDAT 6\r\nQUIT\r\n"),
        format!("{refused}221 2.0.0 Bye\r\n")
    );
    let (_, greeting) = Client::connect_with(
        config(),
        Recorder {
            greeting: Some(Reply::plain(250, "hello there")),
            ..Recorder::default()
        },
    );
    assert_eq!(greeting, "220 hello there\r\n");
}

#[test]
fn bare_newlines_in_content_by_policy() {
    let body = b"a\nb\rc\r\n.\r\n";
    let mut c = Client::ehlo();
    begin_data(&mut c);
    assert_eq!(c.send(body), "550 5.5.2 Error: bare <LF> received\r\n");
    assert_eq!(c.handler().aborts, [AbortReason::BareNewline]);
    begin_data(&mut c);
    assert_eq!(
        c.send(b"a\rb\nc\r\n.\r\n"),
        "550 5.5.2 Error: bare <CR> received\r\n"
    );
    assert!(c.delivered().is_empty());

    let mut c = ehlo_with(with(|c| c.bare_newline = BareNewline::Normalize));
    begin_data(&mut c);
    assert_eq!(c.send(body), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].data, b"a\r\nb\r\nc\r\n");

    let mut c = ehlo_with(with(|c| c.bare_newline = BareNewline::Allow));
    begin_data(&mut c);
    assert_eq!(c.send(body), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].data, b"a\nb\rc\r\n");
}

// ---------------------------------------------------------------------------------------------
// CVE-2023-51764 (SMTP smuggling): only CRLF . CRLF ends DATA
// ---------------------------------------------------------------------------------------------

/// What follows each fake end of data: a complete second transaction.
const SMUGGLED: &[u8] = b"MAIL FROM:<x@y.example>\r\nRCPT TO:<z@w.example>\r\nDATA\r\nsmuggled\r\n";

/// (content before `SMUGGLED`, reply under Reject, delivered prefix under Normalize, under
/// Allow).
/// A fake end of data: content, bare character named in the 550, Normalize and Allow bodies.
type FakeEnd = (&'static [u8], &'static str, &'static [u8], &'static [u8]);

const FAKE_ENDS: [FakeEnd; 8] = [
    // Under Normalize a dot after a bare LF is stuffing (removed), and what follows is no end.
    (b"a\n.\n", "bare <LF>", b"a\r\n\r\n", b"a\n.\n"),
    (b"a\n.\r\n", "bare <LF>", b"a\r\n\r\n", b"a\n.\r\n"),
    (b"a\r.\r\n", "bare <CR>", b"a\r\n.\r\n", b"a\r.\r\n"),
    (b"a\r.\r", "bare <CR>", b"a\r\n.\r\n", b"a\r.\r"),
    // A dot after CRLF starts a line: it is unstuffed, and what follows is no end.
    (b"a\r\n.\r", "bare <CR>", b"a\r\n\r\n", b"a\r\n\r"),
    (b"a\r\n.\n", "bare <LF>", b"a\r\n\r\n", b"a\r\n\n"),
    // Normalize drops the CR right before a CRLF.
    (b"a\r\n.\r\r\n", "bare <CR>", b"a\r\n\r\n", b"a\r\n\r\r\n"),
    // `.<CR>` as the very first line.
    (b".\r", "bare <CR>", b"\r\n", b"\r"),
];

#[test]
fn smuggling_variants_never_end_data() {
    for (fake, bare, normalized, allowed) in FAKE_ENDS {
        for policy in [
            BareNewline::Reject,
            BareNewline::Normalize,
            BareNewline::Allow,
        ] {
            for step in [usize::MAX, 1, 2, 5] {
                let what = format!("{fake:?} {policy:?} step {step}");
                let mut c = ehlo_with(with(|c| c.bare_newline = policy));
                begin_data(&mut c);
                let mut input = fake.to_vec();
                input.extend_from_slice(SMUGGLED);
                // Nothing answers the smuggled commands: they are content.
                assert_eq!(
                    c.send_in_pieces(&input, step.min(input.len())),
                    "",
                    "{what}"
                );
                let out = c.send(b".\r\n");
                let log = &c.handler().log;
                assert!(!log.iter().any(|l| l.contains("x@y.example")), "{what}");
                match policy {
                    BareNewline::Reject => {
                        assert_eq!(
                            out,
                            format!("550 5.5.2 Error: {bare} received\r\n"),
                            "{what}"
                        );
                        assert!(c.delivered().is_empty(), "{what}");
                        assert_eq!(c.handler().aborts, [AbortReason::BareNewline], "{what}");
                        assert_eq!(
                            c.cmd("RCPT TO:<c@d.example>"),
                            "503 5.5.1 Error: need MAIL command\r\n"
                        );
                    }
                    BareNewline::Normalize | BareNewline::Allow => {
                        assert_eq!(out, "250 2.0.0 OK\r\n", "{what}");
                        let prefix = if policy == BareNewline::Allow {
                            allowed
                        } else {
                            normalized
                        };
                        let mut expected = prefix.to_vec();
                        expected.extend_from_slice(SMUGGLED);
                        assert_eq!(c.delivered().len(), 1, "{what}");
                        let m = &c.delivered()[0];
                        assert_eq!(m.data, expected, "{what}");
                        assert_eq!(m.mailfrom, "a@b.example", "{what}");
                        assert_eq!(m.rcpttos, ["c@d.example"], "{what}");
                    }
                }
            }
        }
    }
}

#[test]
fn smuggling_in_one_write_with_the_real_end() {
    // The whole attack in one segment: exactly one reply, for the one real message.
    for policy in [
        BareNewline::Reject,
        BareNewline::Normalize,
        BareNewline::Allow,
    ] {
        let mut c = ehlo_with(with(|c| c.bare_newline = policy));
        let mut input =
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nhi\n.\r\n".to_vec();
        input.extend_from_slice(SMUGGLED);
        input.extend_from_slice(b".\r\nNOOP\r\n");
        let out = c.send(&input);
        let last = match policy {
            BareNewline::Reject => "550 5.5.2 Error: bare <LF> received\r\n",
            _ => "250 2.0.0 OK\r\n",
        };
        assert_eq!(
            out,
            format!(
                "250 2.1.0 OK\r\n250 2.1.5 OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n\
                 {last}250 2.0.0 OK\r\n"
            ),
            "{policy:?}"
        );
        assert!(c.delivered().len() <= 1);
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 3030: CHUNKING (BDAT)
// ---------------------------------------------------------------------------------------------

#[test]
fn bdat_multiple_chunks() {
    let mut c = Client::ehlo();
    begin(&mut c);
    assert_eq!(
        c.send(b"BDAT 5\r\nhello"),
        "250 2.0.0 5 octets received\r\n"
    );
    // A chunk may arrive in pieces; its reply comes once all its octets are in.
    assert_eq!(c.send(b"BDAT 6\r\n wo"), "");
    assert_eq!(c.send(b"rld"), "250 2.0.0 6 octets received\r\n");
    assert_eq!(c.send(b"BDAT 2 LAST\r\n!\n"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].data, b"hello world!\n");
    assert_eq!(
        c.handler()
            .log
            .iter()
            .filter(|l| *l == "data_start")
            .count(),
        1
    );
}

#[test]
fn bdat_zero_last() {
    let mut c = Client::ehlo();
    begin(&mut c);
    assert_eq!(
        c.send(b"BDAT 3\r\nabcBDAT 0 LAST\r\n"),
        "250 2.0.0 3 octets received\r\n250 2.0.0 OK\r\n"
    );
    assert_eq!(c.delivered()[0].data, b"abc");
    begin(&mut c);
    assert_eq!(c.cmd("BDAT 0 LAST"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[1].data, b"");
}

#[test]
fn bdat_content_is_not_dot_stuffed_and_has_no_end_marker() {
    let mut c = Client::ehlo();
    begin(&mut c);
    let payload = b"a\r\n.\r\n..b\r\nQUIT\r\n\n.\n";
    let mut input = format!("BDAT {} LAST\r\n", payload.len()).into_bytes();
    input.extend_from_slice(payload);
    assert_eq!(c.send(&input), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].data, payload);
    assert!(!c.is_closed());
}

#[test]
fn bdat_out_of_sequence_still_consumes_the_chunk() {
    let (mut c, _) = Client::connect(config());
    assert_eq!(
        c.send(b"BDAT 6\r\nQUIT\r\nNOOP\r\n"),
        "503 5.5.1 Error: send HELO first\r\n250 2.0.0 OK\r\n"
    );
    c.cmd("EHLO client.example");
    assert_eq!(
        c.send(b"BDAT 6\r\nQUIT\r\nNOOP\r\n"),
        "503 5.5.1 Error: need MAIL command\r\n250 2.0.0 OK\r\n"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(
        c.send(b"BDAT 6 LAST\r\nQUIT\r\n"),
        "503 5.5.1 Error: need RCPT command\r\n"
    );
    // Split anywhere, the octets are still skipped.
    assert_eq!(
        c.send_in_pieces(b"BDAT 6\r\nRSET\r\nNOOP\r\n", 1),
        "503 5.5.1 Error: need RCPT command\r\n250 2.0.0 OK\r\n"
    );
    assert!(!c.is_closed());
    assert_eq!(c.cmd("RCPT TO:<c@d.example>"), "250 2.1.5 OK\r\n");
    assert!(c.delivered().is_empty());
}

#[test]
fn bdat_needs_an_ehlo_session() {
    // RFC 3030 2: CHUNKING is an EHLO keyword; after HELO a BDAT is refused (as MAIL's
    // parameters are) and its chunk skipped, never run as commands.
    let (mut c, _) = Client::connect(config());
    c.cmd("HELO client.example");
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(c.cmd("RCPT TO:<c@d.example>"), "250 2.1.5 OK\r\n");
    assert_eq!(
        c.send(b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n"),
        "503 5.5.1 Error: BDAT requires EHLO\r\n250 2.0.0 OK\r\n"
    );
    assert!(c.delivered().is_empty());
    assert_eq!(
        c.send(b"DATA\r\nx\r\n.\r\n"),
        "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 OK\r\n"
    );
    assert_eq!(c.delivered().len(), 1);
}

#[test]
fn a_refused_chunk_is_answered_once_its_octets_were_read() {
    // RFC 3030 2: "the receiver-SMTP MUST accept and discard the associated message data
    // before sending the appropriate 5XX or 4XX code".
    let mut c = ehlo_with(with(|c| c.limits.message_size = Some(10)));
    assert_eq!(c.send(b"BDAT 6 LAST\r\n"), "");
    assert_eq!(c.send(b"012"), "");
    assert_eq!(
        c.send(b"345NOOP\r\n"),
        "503 5.5.1 Error: need MAIL command\r\n250 2.0.0 OK\r\n"
    );
    begin(&mut c);
    assert_eq!(c.send(b"BDAT 12 LAST\r\n0123456789"), "");
    assert_eq!(c.send(b"ab"), "552 5.3.4 Error: Too much mail data\r\n");
    // A session that ends before the chunk arrived never gets the held reply.
    assert_eq!(c.send(b"BDAT 5 LAST\r\n"), "");
    assert_eq!(
        c.wait(180_000),
        "421 4.4.2 fqdn.example Error: timeout exceeded\r\n"
    );
    assert!(c.is_closed());
}

#[test]
fn bdat_over_the_size_limit_is_552_and_skipped() {
    let mut c = ehlo_with(with(|c| c.limits.message_size = Some(10)));
    begin(&mut c);
    assert_eq!(
        c.send(b"BDAT 12 LAST\r\nRSET\r\nQUIT\r\nNOOP\r\n"),
        "552 5.3.4 Error: Too much mail data\r\n250 2.0.0 OK\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example>"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    // Over the limit with the second chunk: the open message is aborted.
    begin(&mut c);
    assert_eq!(
        c.send(b"BDAT 6\r\n012345"),
        "250 2.0.0 6 octets received\r\n"
    );
    assert_eq!(
        c.send(b"BDAT 5 LAST\r\n6789a"),
        "552 5.3.4 Error: Too much mail data\r\n"
    );
    assert_eq!(c.handler().aborts, [AbortReason::TooBig]);
    assert!(c.delivered().is_empty());
    // Exactly the limit fits.
    begin(&mut c);
    assert_eq!(c.send(b"BDAT 10 LAST\r\n0123456789"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].data, b"0123456789");
}

#[test]
fn rcpt_after_bdat_is_503_and_the_message_keeps_its_recipients() {
    let mut c = Client::ehlo();
    begin(&mut c);
    assert_eq!(c.send(b"BDAT 3\r\nabc"), "250 2.0.0 3 octets received\r\n");
    assert_eq!(
        c.send(b"RCPT TO:<late@d.example>\r\nBDAT 3 LAST\r\ndef"),
        "503 5.5.1 Error: RCPT not allowed after BDAT in a transaction\r\n250 2.0.0 OK\r\n"
    );
    let delivered = &c.delivered()[0];
    assert_eq!(delivered.rcpttos, ["c@d.example"]);
    assert_eq!(delivered.data, b"abcdef");
    // The next transaction takes recipients again.
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(c.cmd("RCPT TO:<late@d.example>"), "250 2.1.5 OK\r\n");
}

#[test]
fn data_after_bdat_is_503() {
    let mut c = Client::ehlo();
    begin(&mut c);
    assert_eq!(c.send(b"BDAT 3\r\nabc"), "250 2.0.0 3 octets received\r\n");
    assert_eq!(
        c.cmd("DATA"),
        "503 5.5.1 Error: DATA not allowed after BDAT in a transaction\r\n"
    );
    assert_eq!(c.send(b"BDAT 3 LAST\r\ndef"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].data, b"abcdef");
    // A new transaction may use DATA again.
    assert_eq!(
        c.mail("a@b.example", &["c@d.example"], b"x"),
        "250 2.0.0 OK\r\n"
    );
}

#[test]
fn rset_between_bdat_chunks_aborts_the_message() {
    let mut c = Client::ehlo();
    begin(&mut c);
    assert_eq!(c.send(b"BDAT 3\r\nabc"), "250 2.0.0 3 octets received\r\n");
    assert_eq!(c.cmd("RSET"), "250 2.0.0 OK\r\n");
    assert_eq!(c.handler().aborts, [AbortReason::Reset]);
    let log = &c.handler().log;
    assert_eq!(log[log.len() - 2..], ["abort Reset", "rset"]);
    assert_eq!(
        c.cmd("BDAT 0 LAST"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    begin(&mut c);
    assert_eq!(c.send(b"BDAT 3 LAST\r\nxyz"), "250 2.0.0 OK\r\n");
    assert_eq!(c.delivered()[0].data, b"xyz");
}

#[test]
fn ehlo_between_bdat_chunks_aborts_the_message() {
    let mut c = Client::ehlo();
    begin(&mut c);
    assert_eq!(c.send(b"BDAT 3\r\nabc"), "250 2.0.0 3 octets received\r\n");
    assert_eq!(c.cmd("EHLO client.example"), ehlo_reply(&ALL_KEYWORDS));
    assert_eq!(c.handler().aborts, [AbortReason::Reset]);
    assert!(c.delivered().is_empty());
}

#[test]
fn quit_between_bdat_chunks_aborts_the_message() {
    // handler.rs: `data_start` is followed by exactly one of `data_end` / `data_abort`.
    let mut c = Client::ehlo();
    begin(&mut c);
    assert_eq!(c.send(b"BDAT 3\r\nabc"), "250 2.0.0 3 octets received\r\n");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye\r\n");
    assert!(c.is_closed());
    assert!(
        matches!(
            c.handler().aborts[..],
            [AbortReason::Reset | AbortReason::Disconnected]
        ),
        "QUIT left the started message without data_abort: {:?}",
        c.handler().log
    );
}

#[test]
fn bdat_handler_refusal_and_syntax() {
    let mut c = ehlo_handler(Recorder {
        capacity: Some(4),
        ..Recorder::default()
    });
    begin(&mut c);
    assert_eq!(
        c.send(b"BDAT 6\r\n012345"),
        "452 4.3.1 Insufficient system storage\r\n"
    );
    assert_eq!(c.handler().aborts, [AbortReason::Refused]);
    // The transaction is over; further chunks are refused and skipped.
    assert_eq!(
        c.send(b"BDAT 4 LAST\r\nNOOP"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    assert!(c.delivered().is_empty());
    begin(&mut c);
    let syntax = "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n";
    for bad in ["BDAT", "BDAT x", "BDAT -1", "BDAT +4"] {
        assert_eq!(c.cmd(bad), syntax, "{bad}");
    }
    // A malformed BDAT whose size is readable: its chunk is skipped, never run as commands,
    // and the reply waits for it (RFC 3030 2).
    assert_eq!(c.send(b"BDAT 4 FIRST\r\nNO"), "");
    assert_eq!(c.send(b"OP"), syntax);
    assert_eq!(c.send(b"BDAT 6 last now\r\nQUIT\r\n"), syntax);
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK\r\n");
    assert!(c.delivered().is_empty());
}

#[test]
fn a_refused_first_bdat_chunk_fails_the_transaction() {
    // RFC 3030 2: after a 4xx/5xx to a BDAT the transaction has failed; a chunk pipelined
    // after it is refused (503) and skipped, never delivered as a message of its own.
    let mut c = ehlo_handler(Recorder {
        data_start: Some(Reply::new(451, (4, 3, 0), "Not now")),
        ..Recorder::default()
    });
    begin(&mut c);
    assert_eq!(
        c.send(b"BDAT 5\r\nfirstBDAT 11 LAST\r\nsecond part"),
        "451 4.3.0 Not now\r\n503 5.5.1 Error: need MAIL command\r\n"
    );
    let starts = c
        .handler()
        .log
        .iter()
        .filter(|l| *l == "data_start")
        .count();
    assert_eq!(starts, 1, "{:?}", c.handler().log);
    assert!(c.delivered().is_empty());
    // The same refusal to DATA leaves the transaction to the client (RSET or DATA again).
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(c.cmd("RCPT TO:<c@d.example>"), "250 2.1.5 OK\r\n");
    assert_eq!(c.cmd("DATA"), "451 4.3.0 Not now\r\n");
    assert_eq!(c.cmd("RCPT TO:<e@d.example>"), "250 2.1.5 OK\r\n");
}

#[test]
fn bdat_without_chunking_is_unknown() {
    let mut c = ehlo_with(with(|c| c.extensions.chunking = false));
    begin(&mut c);
    assert_eq!(
        c.cmd("BDAT 0 LAST"),
        "500 5.5.1 Error: command \"BDAT\" not recognized\r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 5321 4.1.1.5-4.1.1.10: RSET, VRFY, EXPN, HELP, NOOP, QUIT
// ---------------------------------------------------------------------------------------------

#[test]
fn rset() {
    let mut c = Client::ehlo();
    assert_eq!(c.cmd("RSET"), "250 2.0.0 OK\r\n");
    begin(&mut c);
    assert_eq!(c.cmd("RSET x"), "501 5.5.4 Syntax: RSET\r\n");
    assert_eq!(c.cmd("RSET"), "250 2.0.0 OK\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example>"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    // The greeting survives RSET.
    assert_eq!(c.cmd("MAIL FROM:<a@b.example> SIZE=1"), "250 2.1.0 OK\r\n");
    assert_eq!(c.handler().log.iter().filter(|l| *l == "rset").count(), 2);
    assert!(c.handler().aborts.is_empty());
}

#[test]
fn noop() {
    let (mut c, _) = Client::connect(config());
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK\r\n");
    // RFC 5321 4.1.1.9: a parameter is ignored.
    assert_eq!(c.cmd("NOOP anything at all"), "250 2.0.0 OK\r\n");
}

#[test]
fn quit_closes() {
    let mut c = Client::ehlo();
    begin(&mut c);
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye\r\n");
    assert!(c.is_closed());
    assert_eq!(c.handler().log.last().unwrap(), "closed Quit");
    assert_eq!(c.send(b"NOOP\r\n"), "");
    assert_eq!(c.session.poll_timeout(), None);
}

#[test]
fn vrfy_and_expn() {
    let mut c = Client::ehlo();
    let cannot = "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n";
    assert_eq!(c.cmd("VRFY <a@b.example>"), cannot);
    assert_eq!(c.cmd("VRFY a@b.example"), cannot);
    assert_eq!(c.cmd("VRFY smith"), cannot);
    assert_eq!(c.cmd("VRFY"), "501 5.5.4 Syntax: VRFY <address>\r\n");
    assert_eq!(c.cmd("VRFY <bad"), "501 5.1.3 Could not VRFY <bad\r\n");
    // Echoed client text stays US-ASCII (RFC 5321 4.2 `textstring`).
    assert_eq!(c.cmd("VRFY jö<rg"), "501 5.1.3 Could not VRFY j?<rg\r\n");
    let unknown = c.cmd("FÖÖ bar");
    assert!(unknown.starts_with("500 "), "{unknown:?}");
    assert_well_formed(unknown.as_bytes());
    assert_eq!(c.cmd("EXPN staff"), "502 5.5.1 EXPN not implemented\r\n");
    assert_eq!(c.cmd("EXPN"), "502 5.5.1 EXPN not implemented\r\n");
    // RFC 6531 3.7.4.2: VRFY may carry SMTPUTF8 (curl sends it whenever it is offered).
    assert_eq!(c.cmd("VRFY jösé@example.com SMTPUTF8"), cannot);
    assert_eq!(c.cmd("VRFY <a@b.example> smtputf8"), cannot);
    let mut c = ehlo_with(with(|c| c.extensions.smtputf8 = false));
    assert_eq!(
        c.cmd("VRFY a@b.example SMTPUTF8"),
        "501 5.1.3 Could not VRFY a@b.example SMTPUTF8\r\n"
    );
}

#[test]
fn help() {
    let (mut c, _) = Client::connect(config());
    let all = "Supported commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY";
    assert_eq!(c.cmd("HELP"), format!("214 2.0.0 {all}\r\n"));
    assert_eq!(
        c.cmd("HELP MAIL"),
        "214 2.0.0 Syntax: MAIL FROM: <address>\r\n"
    );
    assert_eq!(c.cmd("HELP nope"), format!("501 5.5.4 {all}\r\n"));
    c.cmd("EHLO client.example");
    assert_eq!(
        c.cmd("HELP mail"),
        "214 2.0.0 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n"
    );
    assert_eq!(
        c.cmd("HELP RCPT"),
        "214 2.0.0 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n"
    );
    assert_eq!(
        c.cmd("HELP BDAT"),
        "214 2.0.0 Syntax: BDAT chunk-size [LAST]\r\n"
    );
    assert_eq!(c.cmd("HELP EXPN"), "214 2.0.0 Syntax: EXPN <list>\r\n");
    let mut c = ehlo_with(with(|c| c.extensions.chunking = false));
    assert_eq!(
        c.cmd("HELP"),
        "214 2.0.0 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY\r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 5321 4.2.4, 4.3.2: unknown and malformed commands
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_verbs_are_500() {
    let mut c = Client::ehlo();
    assert_eq!(
        c.cmd("XFOO bar"),
        "500 5.5.1 Error: command \"XFOO\" not recognized\r\n"
    );
    assert_eq!(
        c.cmd("xfoo"),
        "500 5.5.1 Error: command \"XFOO\" not recognized\r\n"
    );
    // Any printable ASCII verb reaches the handler's `unknown` hook.
    assert_eq!(
        c.cmd("NO-OP"),
        "500 5.5.1 Error: command \"NO-OP\" not recognized\r\n"
    );
    // Control characters, TAB or non-ASCII in the verb: bad syntax.
    assert_eq!(c.cmd("NOOP\targ"), "500 5.5.2 Error: bad syntax\r\n");
    assert_eq!(c.cmd("É"), "500 5.5.2 Error: bad syntax\r\n");
    assert_eq!(c.cmd(""), "500 5.5.2 Error: bad syntax\r\n");
    assert_eq!(c.cmd("   "), "500 5.5.2 Error: bad syntax\r\n");
    let log = &c.handler().log;
    assert_eq!(
        log[log.len() - 3..],
        [
            "unknown XFOO Some(\"bar\")",
            "unknown xfoo None",
            "unknown NO-OP None"
        ]
    );
}

#[test]
fn handler_answers_custom_verbs() {
    let (mut c, _) = Client::connect_with(
        config(),
        Recorder {
            verbs: vec![
                ("XHELLO", Reply::new(250, (2, 0, 0), "Hello to you")),
                ("XMULTI", Reply::new(250, (2, 0, 0), "one\ntwo\nthree")),
            ],
            ..Recorder::default()
        },
    );
    assert_eq!(c.cmd("XHELLO world"), "250 2.0.0 Hello to you\r\n");
    assert_eq!(
        c.handler().log.last().unwrap(),
        "unknown XHELLO Some(\"world\")"
    );
    assert_eq!(
        c.cmd("xmulti"),
        "250-2.0.0 one\r\n250-2.0.0 two\r\n250 2.0.0 three\r\n"
    );
    // Answered verbs are not bad commands.
    for _ in 0..20 {
        assert_eq!(c.cmd("XHELLO"), "250 2.0.0 Hello to you\r\n");
    }
    assert!(!c.is_closed());
}

// ---------------------------------------------------------------------------------------------
// RFC 2034: ENHANCEDSTATUSCODES
// ---------------------------------------------------------------------------------------------

#[test]
fn enhanced_status_codes_on() {
    let (mut c, greeting) = Client::connect(config());
    assert_eq!(greeting, "220 fqdn.example ESMTP smtpd-rs\r\n");
    assert_eq!(c.cmd("HELO client.example"), "250 fqdn.example\r\n");
    let ehlo = c.cmd("EHLO client.example");
    for line in lines(&ehlo) {
        assert!(enhanced_code(&line[4..]).is_none(), "{line}");
    }
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK\r\n");
}

#[test]
fn handler_replies_without_enhanced_code_get_a_default() {
    // RFC 2034 3: once offered, every 2xx/4xx/5xx reply carries a code, also the replies a
    // handler passes on from a server that gives none (RFC 3463 X.0.0: other or undefined).
    let recorder = || Recorder {
        data_end: Some(Reply::plain(250, "queued as 1234")),
        verbs: vec![("XLATER", Reply::plain(451, "later"))],
        ..Recorder::default()
    };
    let mut c = ehlo_handler(recorder());
    assert_eq!(c.cmd("XLATER"), "451 4.0.0 later\r\n");
    begin_data(&mut c);
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 queued as 1234\r\n");

    let (mut c, _) = Client::connect_with(
        with(|c| c.extensions.enhanced_status_codes = false),
        recorder(),
    );
    c.cmd("EHLO client.example");
    assert_eq!(c.cmd("XLATER"), "451 later\r\n");
}

#[test]
fn no_enhanced_code_on_any_reply_to_helo_or_ehlo() {
    // RFC 2034 3: status codes appear in all 2xx, 4xx and 5xx response lines "other than
    // initial greeting and any response to HELO or EHLO".
    let (mut c, _) = Client::connect(config());
    assert_eq!(c.cmd("HELO"), "501 Syntax: HELO hostname\r\n");
    assert_eq!(c.cmd("EHLO"), "501 Syntax: EHLO hostname\r\n");
    assert_eq!(
        c.cmd(&format!("HELO {}", domain(256))),
        "501 Error: hostname longer than 255 octets\r\n"
    );
}

#[test]
fn enhanced_status_codes_off() {
    let (mut c, greeting) = Client::connect(with(|c| c.extensions.enhanced_status_codes = false));
    assert_eq!(greeting, "220 fqdn.example ESMTP smtpd-rs\r\n");
    assert_eq!(c.cmd("HELO"), "501 Syntax: HELO hostname\r\n");
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.example>"),
        "503 Error: send HELO first\r\n"
    );
    c.cmd("EHLO client.example");
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example>"),
        "503 Error: need MAIL command\r\n"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 OK\r\n");
    assert_eq!(c.cmd("RCPT TO:<c@d.example>"), "250 OK\r\n");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 OK\r\n");
    assert_eq!(
        c.cmd("XFOO"),
        "500 Error: command \"XFOO\" not recognized\r\n"
    );
    assert_eq!(
        c.cmd("VRFY a@b"),
        "252 Cannot VRFY user, but will accept message and attempt delivery\r\n"
    );
    assert_eq!(c.cmd("QUIT"), "221 Bye\r\n");
    for line in lines(&String::from_utf8_lossy(&c.transcript)) {
        assert!(enhanced_code(&line[4..]).is_none(), "{line}");
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 2920: PIPELINING
// ---------------------------------------------------------------------------------------------

#[test]
fn pipelined_group_gets_every_reply_in_order() {
    let mut c = ehlo_handler(Recorder {
        refuse_rcpt: Some("bad"),
        ..Recorder::default()
    });
    let out = c.send(
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bad@d.example>\r\nRCPT TO:<c@d.example>\r\n\
          XFOO\r\nNOOP\r\nDATA\r\n",
    );
    assert_eq!(
        out,
        "250 2.1.0 OK\r\n550 5.1.1 No such user here\r\n250 2.1.5 OK\r\n\
         500 5.5.1 Error: command \"XFOO\" not recognized\r\n250 2.0.0 OK\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    let out = c.send(
        b"body\r\n.\r\nRSET\r\nMAIL FROM:<>\r\nRCPT TO:<c@d.example>\r\nBDAT 2 LAST\r\nhiQUIT\r\n",
    );
    assert_eq!(codes(&out), [250, 250, 250, 250, 250, 221]);
    assert_eq!(c.delivered().len(), 2);
    assert_eq!(c.delivered()[1].data, b"hi");
}

#[test]
fn pipelining_with_a_small_output_buffer() {
    // OUT = 512: one reply at a time fits; the frontend flushes and offers the rest again.
    let (mut c, greeting) = Small::<512, 3072>::connect(config());
    assert_eq!(greeting, "220 fqdn.example ESMTP smtpd-rs\r\n");
    let mut input = b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n".to_vec();
    for i in 0..60 {
        input.extend_from_slice(format!("RCPT TO:<r{i}@example.com>\r\n").as_bytes());
    }
    for _ in 0..40 {
        input.extend_from_slice(b"NOOP\r\n");
    }
    input.extend_from_slice(b"DATA\r\nx\r\n.\r\nQUIT\r\n");
    let calls = c.calls;
    let out = c.send(&input);
    let mut expected = ehlo_reply(&ALL_KEYWORDS);
    expected.push_str("250 2.1.0 OK\r\n");
    expected.push_str(&"250 2.1.5 OK\r\n".repeat(60));
    expected.push_str(&"250 2.0.0 OK\r\n".repeat(40));
    expected.push_str("354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 OK\r\n221 2.0.0 Bye\r\n");
    assert_eq!(out, expected);
    assert!(c.calls - calls > 100, "backpressure was not exercised");
    assert_eq!(c.session.handler().delivered[0].rcpttos.len(), 60);
}

// ---------------------------------------------------------------------------------------------
// RFC 5321 2.3.8: lines end with CRLF only
// ---------------------------------------------------------------------------------------------

#[test]
fn bare_lf_or_cr_in_a_command_is_one_500() {
    let bare = "500 5.5.2 Error: bare <CR> or <LF> in command line\r\n";
    let mut c = ehlo_with(with(|c| c.limits.bad_commands = 100));
    for input in [
        &b"NOOP\nNOOP\r\n"[..],
        b"NO\rOP\r\n",
        b"NOOP\r\r\n",
        b"\nNOOP\r\n",
        b"MAIL FROM:<a@b.example>\nRCPT TO:<c@d.example>\r\n",
    ] {
        assert_eq!(c.send(input), bare, "{input:?}");
        assert_eq!(c.send_in_pieces(input, 1), bare, "{input:?}");
    }
    // Nothing of it was executed.
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example>"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
    // A bare LF alone waits for the CRLF that ends the line.
    assert_eq!(c.send(b"NOOP\n"), "");
    assert_eq!(c.send(b"\r\n"), bare);
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK\r\n");
}

#[test]
fn non_utf8_and_nul_in_commands_are_500() {
    let mut c = Client::ehlo();
    assert_eq!(
        c.cmd_bytes(b"NOOP \xff\xfe"),
        "500 5.5.2 Error: bad UTF-8 syntax\r\n"
    );
    assert_eq!(
        c.cmd_bytes(b"MAIL FROM:<\xe9@b.example>"),
        "500 5.5.2 Error: bad UTF-8 syntax\r\n"
    );
    assert_eq!(c.cmd_bytes(b"NO\0OP"), "500 5.5.2 Error: bad syntax\r\n");
    assert_eq!(c.cmd_bytes(b"NOOP\0"), "500 5.5.2 Error: bad syntax\r\n");
    assert_eq!(c.cmd_bytes(b"\0"), "500 5.5.2 Error: bad syntax\r\n");
    // A control character anywhere in the line makes it no command at all.
    assert_eq!(
        c.cmd_bytes(b"MAIL FROM:<a\0b@c.example>"),
        "500 5.5.2 Error: bad syntax\r\n"
    );
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK\r\n");
    assert!(!c.is_closed());
}

#[test]
fn nul_in_a_command_argument_is_refused() {
    // No SMTP command argument may hold a NUL (RFC 5321 4.1.2 grammar); accepting one hands
    // it on to the handler (HELO name, logs, Received: header).
    let mut c = Client::ehlo();
    let out = c.cmd_bytes(b"HELO evil\0.example");
    assert!(out.starts_with("50") && codes(&out).len() == 1, "{out:?}");
    assert!(
        !c.handler().log.iter().any(|l| l.contains('\0')),
        "{:?}",
        c.handler().log
    );
    let out = c.cmd_bytes(b"NOOP \0");
    assert!(out.starts_with("50") && codes(&out).len() == 1, "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// RFC 5321 4.5.3.1.4: command line length (512 with CRLF; RFC 1870 +26, RFC 6531 +10 for MAIL)
// ---------------------------------------------------------------------------------------------

/// A valid MAIL line of exactly `len` octets without CRLF (padded with trailing blanks).
fn mail_line(len: usize) -> String {
    let line = "MAIL FROM:<a@b.example>";
    format!("{line}{}", " ".repeat(len - line.len()))
}

#[test]
fn command_line_of_512_octets_is_accepted() {
    let mut c = Client::ehlo();
    let noop = format!("NOOP {}", "x".repeat(505));
    assert_eq!(noop.len() + 2, 512);
    assert_eq!(c.cmd(&noop), "250 2.0.0 OK\r\n");
    assert_eq!(
        c.cmd(&format!("{noop}x")),
        "500 5.5.2 Error: line too long\r\n"
    );
    // RCPT gets no allowance.
    c.cmd("MAIL FROM:<a@b.example>");
    let rcpt = format!("RCPT TO:<c@d.example>{}", " ".repeat(511 - 21));
    assert_eq!(rcpt.len(), 511);
    assert_eq!(c.cmd(&rcpt), "500 5.5.2 Error: line too long\r\n");
    assert_eq!(c.cmd(&rcpt[..510]), "250 2.1.5 OK\r\n");
}

#[test]
fn overlong_lines_are_discarded_to_their_crlf() {
    let mut c = Client::ehlo();
    let mut long = b"MAIL FROM:<a@b.example> ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 10_000));
    long.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(
        c.send(&long),
        "500 5.5.2 Error: line too long\r\n250 2.0.0 OK\r\n"
    );
    assert_eq!(
        c.send_in_pieces(&long, 100),
        "500 5.5.2 Error: line too long\r\n250 2.0.0 OK\r\n"
    );
    assert_eq!(
        c.send_in_pieces(&long, 1),
        "500 5.5.2 Error: line too long\r\n250 2.0.0 OK\r\n"
    );
    // With bare LFs and CRs inside: still one reply.
    let mut long = vec![b'x'; 3000];
    long.extend_from_slice(b"\n\r\rNOOP\r\n");
    assert_eq!(c.send(&long), "500 5.5.2 Error: line too long\r\n");
    // The MAIL was not executed.
    assert_eq!(
        c.cmd("RCPT TO:<c@d.example>"),
        "503 5.5.1 Error: need MAIL command\r\n"
    );
}

#[test]
fn mail_line_allowance() {
    type Setup = fn(&mut Config<'static>);
    let cases: [(Setup, bool, usize); 5] = [
        (|_| {}, true, 510 + 26 + 10),
        (|c| c.extensions.size = false, true, 510 + 10),
        (|c| c.extensions.smtputf8 = false, true, 510 + 26),
        (
            |c| {
                c.extensions.size = false;
                c.extensions.smtputf8 = false
            },
            true,
            510,
        ),
        // No allowance after HELO: no MAIL parameters.
        (|_| {}, false, 510),
    ];
    for (i, (f, ehlo, max)) in cases.into_iter().enumerate() {
        let (mut c, _) = Client::connect(with(f));
        c.cmd(if ehlo {
            "EHLO client.example"
        } else {
            "HELO client.example"
        });
        assert_eq!(
            c.cmd(&mail_line(max + 1)),
            "500 5.5.2 Error: line too long\r\n",
            "{i}"
        );
        assert_eq!(c.cmd(&mail_line(max)), "250 2.1.0 OK\r\n", "{i}");
    }
    // A long SIZE value with all extensions: 546 octets + CRLF.
    let mut c = Client::ehlo();
    let head = "MAIL FROM:<a@b.example> BODY=8BITMIME SMTPUTF8 SIZE=";
    let line = format!("{head}{}1", "0".repeat(546 - head.len() - 1));
    assert_eq!(line.len(), 546);
    assert_eq!(c.cmd(&line), "250 2.1.0 OK\r\n");
}

// ---------------------------------------------------------------------------------------------
// Bad-command limit (Postfix smtpd_hard_error_limit)
// ---------------------------------------------------------------------------------------------

#[test]
fn eleventh_bad_command_closes_with_421() {
    let mut c = Client::ehlo();
    for _ in 0..10 {
        assert_eq!(
            c.cmd("XFOO"),
            "500 5.5.1 Error: command \"XFOO\" not recognized\r\n"
        );
    }
    assert!(!c.is_closed());
    assert_eq!(
        c.cmd("XFOO"),
        "421 4.7.0 fqdn.example Error: too many bad commands, closing connection\r\n"
    );
    assert!(c.is_closed());
    assert_eq!(c.send(b"NOOP\r\n"), "");
}

#[test]
fn every_kind_of_bad_command_counts_but_sequence_errors_do_not() {
    let mut c = Client::ehlo();
    for _ in 0..20 {
        assert_eq!(
            c.cmd("RCPT TO:<c@d.example>"),
            "503 5.5.1 Error: need MAIL command\r\n"
        );
    }
    // RSET does not clear the count.
    let bad: [&[u8]; 10] = [
        b"XFOO\r\n",
        b"\r\n",
        b"MAIL FROM:<\r\n",
        b"NO\nOP\r\n",
        b"NOOP \xff\r\n",
        b"RSET\r\nHELO\r\n",
        b"VRFY <\r\n",
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<>\r\n",
        b"RSET\r\nRSET x\r\n",
        b"MAIL FROM:<a@b.example> SIZE=\r\n",
    ];
    for bad in bad {
        c.send(bad);
        assert!(!c.is_closed());
    }
    let mut long = vec![b'x'; 600];
    long.extend_from_slice(b"\r\n");
    assert_eq!(
        c.send(&long),
        "421 4.7.0 fqdn.example Error: too many bad commands, closing connection\r\n"
    );
    assert!(c.is_closed());
}

#[test]
fn refused_parameters_topics_and_expn_count_as_bad_commands() {
    let kinds = [
        "MAIL FROM:<a@b.example> SIZE=999999999999",
        "MAIL FROM:<a@b.example> FOO=BAR",
        "MAIL FROM:<jörg@b.example>",
        "HELP XYZZY",
        "EXPN list",
    ];
    for kind in kinds {
        let mut c = Client::ehlo();
        for _ in 0..10 {
            assert_eq!(c.cmd(kind).get(..1), Some("5"), "{kind}");
        }
        assert_eq!(c.cmd(kind).get(..3), Some("421"), "{kind}");
        assert!(c.is_closed());
    }
    let mut c = Client::ehlo();
    c.cmd("MAIL FROM:<a@b.example>");
    for _ in 0..10 {
        assert_eq!(
            c.cmd("RCPT TO:<c@d.example> NOTIFY=NEVER").get(..3),
            Some("555")
        );
    }
    assert_eq!(c.cmd("RCPT TO:<c@d.example>").get(..3), Some("250"));
    assert_eq!(c.cmd("RCPT TO:<c@d.example> X=Y").get(..3), Some("421"));
}

#[test]
fn an_accepted_message_clears_the_bad_command_count() {
    let mut c = Client::ehlo();
    for _ in 0..10 {
        assert_eq!(c.cmd("RCPT TO:<>").get(..3), Some("503"));
        c.cmd("MAIL FROM:<a@b.example>");
        assert_eq!(c.cmd("RCPT TO:<>").get(..3), Some("501"));
        c.cmd("RSET");
    }
    // Ten bad commands so far: the next would close, but a message is delivered first.
    assert_eq!(
        c.mail("a@b.example", &["c@d.example"], b"x"),
        "250 2.0.0 OK\r\n"
    );
    for _ in 0..10 {
        assert_eq!(c.cmd("XFOO").get(..3), Some("500"));
    }
    assert!(!c.is_closed());
    assert_eq!(c.cmd("XFOO").get(..3), Some("421"));
    assert!(c.is_closed());
}

#[test]
fn bad_command_limit_is_configurable_and_aborts_an_open_message() {
    let mut c = ehlo_with(with(|c| c.limits.bad_commands = 0));
    begin(&mut c);
    assert_eq!(c.send(b"BDAT 1\r\nx"), "250 2.0.0 1 octets received\r\n");
    assert_eq!(
        c.cmd("XFOO"),
        "421 4.7.0 fqdn.example Error: too many bad commands, closing connection\r\n"
    );
    assert_eq!(c.handler().aborts, [AbortReason::Disconnected]);
    assert!(c.delivered().is_empty());
}

// ---------------------------------------------------------------------------------------------
// RFC 5321 4.5.3.2: timeouts
// ---------------------------------------------------------------------------------------------

#[test]
fn default_timeouts_are_rfc5321() {
    assert_eq!(config().timeouts, Timeouts::RFC5321);
    assert_eq!(Timeouts::RFC5321.command.as_secs(), 300);
    assert_eq!(Timeouts::RFC5321.data_block.as_secs(), 180);
}

#[test]
fn command_timeout_is_421() {
    let (mut c, _) = Client::connect(config());
    assert_eq!(
        c.session.poll_timeout(),
        Some(Instant::from_millis(300_000))
    );
    assert_eq!(c.wait(299_999), "");
    assert_eq!(c.cmd("EHLO client.example"), ehlo_reply(&ALL_KEYWORDS));
    // Measured from the last reply.
    assert_eq!(
        c.session.poll_timeout(),
        Some(Instant::from_millis(599_999))
    );
    assert_eq!(c.wait(299_999), "");
    assert!(!c.is_closed());
    assert_eq!(
        c.wait(1),
        "421 4.4.2 fqdn.example Error: timeout exceeded\r\n"
    );
    assert!(c.is_closed());
    assert_eq!(c.session.poll_timeout(), None);
    assert_eq!(c.send(b"NOOP\r\n"), "");
    assert!(c.handler().aborts.is_empty());
}

#[test]
fn partial_lines_do_not_extend_the_command_timeout() {
    let mut c = Client::ehlo();
    assert_eq!(c.wait(200_000), "");
    assert_eq!(c.send(b"NO"), "");
    assert_eq!(c.wait(50_000), "");
    assert_eq!(c.send(b"O"), "");
    assert_eq!(
        c.session.poll_timeout(),
        Some(Instant::from_millis(300_000))
    );
    assert_eq!(
        c.wait(50_000),
        "421 4.4.2 fqdn.example Error: timeout exceeded\r\n"
    );
    // A complete command does extend it.
    let mut c = Client::ehlo();
    c.wait(200_000);
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK\r\n");
    assert_eq!(
        c.session.poll_timeout(),
        Some(Instant::from_millis(500_000))
    );
    assert_eq!(c.wait(299_999), "");
    assert_eq!(
        c.wait(1),
        "421 4.4.2 fqdn.example Error: timeout exceeded\r\n"
    );
}

#[test]
fn data_block_timeout_and_abort() {
    let mut c = Client::ehlo();
    begin_data(&mut c);
    assert_eq!(
        c.session.poll_timeout(),
        Some(Instant::from_millis(180_000))
    );
    assert_eq!(c.wait(100_000), "");
    // Every block of content restarts the data timer, partial lines included.
    assert_eq!(c.send(b"partial li"), "");
    assert_eq!(
        c.session.poll_timeout(),
        Some(Instant::from_millis(280_000))
    );
    assert_eq!(c.wait(179_999), "");
    assert_eq!(
        c.wait(1),
        "421 4.4.2 fqdn.example Error: timeout exceeded\r\n"
    );
    assert!(c.is_closed());
    assert_eq!(c.handler().aborts, [AbortReason::Timeout]);
    assert!(c.delivered().is_empty());
    assert!(!c.handler().log.contains(&"data_end".to_string()));
    // After the message, the command timeout applies again.
    let mut c = Client::ehlo();
    begin_data(&mut c);
    c.wait(1000);
    assert_eq!(c.send(b"x\r\n.\r\n"), "250 2.0.0 OK\r\n");
    assert_eq!(
        c.session.poll_timeout(),
        Some(Instant::from_millis(301_000))
    );
}

#[test]
fn bdat_timeout_aborts() {
    let mut c = Client::ehlo();
    begin(&mut c);
    assert_eq!(c.send(b"BDAT 10\r\nabc"), "");
    assert_eq!(
        c.session.poll_timeout(),
        Some(Instant::from_millis(180_000))
    );
    assert_eq!(
        c.wait(180_000),
        "421 4.4.2 fqdn.example Error: timeout exceeded\r\n"
    );
    assert_eq!(c.handler().aborts, [AbortReason::Timeout]);
    assert!(c.delivered().is_empty());
}

#[test]
fn configured_timeouts() {
    let timeouts = Timeouts {
        command: std::time::Duration::from_secs(10),
        data_block: std::time::Duration::from_secs(5),
    };
    let mut c = ehlo_with(with(|c| c.timeouts = timeouts));
    assert_eq!(c.session.poll_timeout(), Some(Instant::from_millis(10_000)));
    begin_data(&mut c);
    assert_eq!(c.session.poll_timeout(), Some(Instant::from_millis(5_000)));
    assert_eq!(
        c.wait(5_000),
        "421 4.4.2 fqdn.example Error: timeout exceeded\r\n"
    );
    let mut c = ehlo_with(with(|c| {
        c.timeouts = timeouts;
        c.extensions.enhanced_status_codes = false;
    }));
    assert_eq!(
        c.wait(10_000),
        "421 fqdn.example Error: timeout exceeded\r\n"
    );
}

#[test]
fn shutdown_is_421_and_aborts_an_open_message() {
    // RFC 5321 3.8: a server that must shut down answers 421 and closes.
    let mut c = Client::ehlo();
    assert!(c.session.is_idle());
    begin_data(&mut c);
    assert!(!c.session.is_idle());
    c.send(b"partial");
    block_on(c.session.handle_shutdown());
    let out = c.session.output().to_vec();
    assert_eq!(
        out,
        b"421 4.3.2 fqdn.example Service shutting down, closing connection\r\n"
    );
    assert!(c.is_closed());
    assert_eq!(c.handler().aborts, [AbortReason::Shutdown]);
    assert!(c.delivered().is_empty());
    // A partial command line is not idle either.
    let mut c = Client::ehlo();
    c.send(b"NOO");
    assert!(!c.session.is_idle());
    c.send(b"P\r\n");
    assert!(c.session.is_idle());
}

#[test]
fn disconnect_mid_message_aborts() {
    let mut c = Client::ehlo();
    begin_data(&mut c);
    c.send(b"some content\r\n.");
    c.disconnect();
    assert!(c.is_closed());
    assert_eq!(c.handler().aborts, [AbortReason::Disconnected]);
    assert!(c.delivered().is_empty());

    let mut c = Client::ehlo();
    begin(&mut c);
    c.send(b"BDAT 3\r\nabcBDAT 10 LAST\r\nxy");
    c.disconnect();
    assert_eq!(c.handler().aborts, [AbortReason::Disconnected]);
    assert!(c.delivered().is_empty());

    // Outside a message there is nothing to abort.
    let mut c = Client::ehlo();
    begin(&mut c);
    c.disconnect();
    assert!(c.is_closed());
    assert!(c.handler().aborts.is_empty());
}

// ---------------------------------------------------------------------------------------------
// RFC 5321 4.2, 4.5.3.1.5: reply syntax
// ---------------------------------------------------------------------------------------------

#[test]
fn every_reply_line_is_well_formed() {
    let (mut c, _) = Client::connect_with(
        config(),
        Recorder {
            verbs: vec![("XMULTI", Reply::new(250, (2, 0, 0), "a\nb\r\nc\0"))],
            refuse_rcpt: Some("bad"),
            ..Recorder::default()
        },
    );
    let long_verb = "X".repeat(500);
    let long_vrfy = format!("VRFY <{}", "v".repeat(500));
    let script: Vec<Vec<u8>> = vec![
        b"HELP\r\n".to_vec(),
        b"EHLO client.example\r\n".to_vec(),
        format!("{long_verb}\r\n").into_bytes(),
        format!("{long_vrfy}\r\n").into_bytes(),
        b"XMULTI\r\n".to_vec(),
        b"MAIL FROM:<a@b.example> SIZE=1 BODY=8BITMIME\r\nRCPT TO:<bad@x>\r\n".to_vec(),
        b"RCPT TO:<c@d>\r\nDATA\r\nx\n\r\n.\r\n".to_vec(),
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d>\r\nBDAT 2\r\nabBDAT 0 LAST\r\n".to_vec(),
        b"HELP BDAT\r\nVRFY x\r\nEXPN y\r\nNO\rOP\r\n\xff\r\n".to_vec(),
    ];
    for piece in &script {
        c.send(piece);
    }
    c.wait(300_000);
    let transcript = c.transcript.clone();
    assert_well_formed(&transcript);
    let text = String::from_utf8(transcript).unwrap();
    assert!(
        text.contains("250-2.0.0 a\r\n250-2.0.0 b\r\n250 2.0.0 c?\r\n"),
        "{text}"
    );
    assert!(text.ends_with("421 4.4.2 fqdn.example Error: timeout exceeded\r\n"));
    // The long verb's reply was cut to 512 octets.
    assert!(lines(&text)
        .iter()
        .any(|l| l.len() == 510 && l.starts_with("500 5.5.1")));
}
