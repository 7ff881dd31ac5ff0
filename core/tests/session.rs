//! End-to-end behaviour of a session driven through the recording handler.

mod support;

use support::{codes, config, Client};

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
