//! End-to-end behaviour of a session driven through the recording handler.

mod support;

use smtpd_core::Reply;
use support::{block_on, codes, config, Client, Recorder};

#[test]
fn greeting_and_a_full_transaction() {
    let (mut c, greeting) = Client::connect(config());
    assert_eq!(greeting, "220 fqdn.example ESMTP smtpd-rs\r\n");
    let ehlo = c.cmd("EHLO client.example");
    assert_eq!(
        ehlo,
        "250-fqdn.example\r\n250-PIPELINING\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n\
         250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-BINARYMIME\r\n250 HELP\r\n"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 OK\r\n");
    assert_eq!(c.cmd("RCPT TO:<c@d.example>"), "250 2.1.5 OK\r\n");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_eq!(
        c.send(b"Subject: hi\r\n\r\n..body\r\n.\r\n"),
        "250 2.0.0 OK\r\n"
    );
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye\r\n");
    assert!(c.is_closed());
    let m = &c.delivered()[0];
    assert_eq!(m.mailfrom, "a@b.example");
    assert_eq!(m.rcpttos, ["c@d.example"]);
    assert_eq!(m.data, b"Subject: hi\r\n\r\n.body\r\n");
    assert_eq!(m.greeting.as_deref(), Some("client.example"));
}

#[test]
fn pipelined_group_is_answered_in_order_in_one_output() {
    let mut c = Client::ehlo();
    let out = c.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n");
    assert_eq!(codes(&out), [250, 250, 250, 354]);
    let out = c.send(b"x\r\n.\r\nMAIL FROM:<g@h>\r\nRCPT TO:<i@j>\r\nDATA\r\ny\r\n.\r\nQUIT\r\n");
    assert_eq!(codes(&out), [250, 250, 250, 354, 250, 221]);
    assert_eq!(c.delivered().len(), 2);
    assert_eq!(c.delivered()[1].data, b"y\r\n");
}

#[test]
fn the_handler_hears_when_input_runs_dry_mid_message() {
    let (mut c, _) = Client::connect_with(config(), Recorder::default());
    c.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    let pauses = |c: &Client| {
        let log = &c.handler().log;
        log.iter()
            .filter(|l| l.starts_with("pause"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(c.send(b"Subject: x\r\n\r\nfirst"), "");
    assert_eq!(c.send(b" line\r\n.."), "");
    assert_eq!(
        pauses(&c),
        ["pause after 19 octets", "pause after 27 octets"]
    );
    // The message ends in this input: no pause, nor in a following pipelined command.
    assert_eq!(codes(&c.send(b"end\r\n.\r\nNOOP\r\n")), [250, 250]);
    // A BDAT chunk that is not the last leaves the message open.
    assert_eq!(
        codes(&c.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 3\r\nabc")),
        [250, 250, 250]
    );
    assert_eq!(codes(&c.send(b"BDAT 2 LAST\r\nde")), [250]);
    assert_eq!(pauses(&c).len(), 3);
    assert_eq!(c.delivered()[1].data, b"abcde");
}

#[test]
fn a_refusal_at_a_pause_refuses_the_message() {
    let refusal = Reply::new(451, (4, 4, 2), "next hop lost");
    let (mut c, _) = Client::connect_with(
        config(),
        Recorder {
            pause: Some(refusal),
            ..Recorder::default()
        },
    );
    c.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    assert_eq!(c.send(b"part\r\n"), "");
    assert!(c.handler().log.iter().any(|l| l == "abort Refused"));
    assert_eq!(c.send(b"rest\r\n.\r\n"), "451 4.4.2 next hop lost\r\n");
    assert!(c.delivered().is_empty());
}

/// The hook calls from `closed` on: the session's last notifications.
fn closing_log(c: &Client) -> Vec<&str> {
    let log = &c.handler().log;
    let first = log
        .iter()
        .position(|l| l.starts_with("abort") || l.starts_with("closed"))
        .unwrap_or(log.len());
    log[first..].iter().map(String::as_str).collect()
}

#[test]
fn the_handler_hears_once_why_the_session_closed() {
    let mut c = Client::ehlo();
    c.cmd("QUIT");
    // The peer's FIN after QUIT changes nothing.
    c.disconnect();
    assert_eq!(closing_log(&c), ["closed Quit"]);
    assert_eq!(
        c.session.close_reason(),
        Some(smtpd_core::CloseReason::Quit)
    );

    // A message in progress is aborted first.
    let mut c = Client::ehlo();
    c.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\npart");
    c.disconnect();
    assert_eq!(
        closing_log(&c),
        ["abort Disconnected", "closed Disconnected"]
    );

    let mut c = Client::ehlo();
    assert!(c.wait(301_000).starts_with("421 4.4.2"));
    assert_eq!(closing_log(&c), ["closed Timeout"]);

    let mut c = Client::ehlo();
    block_on(c.session.handle_shutdown());
    block_on(c.session.handle_shutdown());
    assert_eq!(closing_log(&c), ["closed Shutdown"]);

    let mut c = Client::ehlo();
    let flood = "XYZZY\r\n".repeat(50);
    assert!(c
        .send(flood.as_bytes())
        .ends_with("bad commands, closing connection\r\n"));
    assert_eq!(closing_log(&c), ["closed TooManyErrors"]);

    let handler = Recorder {
        rcpt: Some(Reply::new(421, (4, 3, 0), "Upstream lost")),
        ..Recorder::default()
    };
    let (mut c, _) = Client::connect_with(config(), handler);
    c.cmd("EHLO client.example");
    c.cmd("MAIL FROM:<a@b.example>");
    assert!(c.cmd("RCPT TO:<c@d.example>").starts_with("421 4.3.0"));
    assert_eq!(closing_log(&c), ["closed Unavailable"]);
    assert!(c.is_closed());
}
