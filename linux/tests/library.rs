//! The library API as an embedding program uses it: a `Server` built in-process with a
//! `ProcessMessage` handler, driven by Python's `smtplib`, then shut down.

mod common;

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::python;
use smtpd_linux::smtpd_core::handler::{Context, MailParams};
use smtpd_linux::smtpd_core::Config;
use smtpd_linux::{Buffered, Message, Options, OwnedReply, ProcessMessage, Server};

/// One stored message: reverse-path, forward-paths, content.
type Stored = (String, Vec<String>, Vec<u8>);

/// Refuses one domain's senders; knows two mailboxes; keeps every message; refuses to take
/// one about "later" now.
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<Vec<Stored>>>);

impl ProcessMessage for Inbox {
    async fn mail(
        &mut self,
        cx: &Context<'_>,
        from: &str,
        _: &MailParams,
    ) -> Result<(), OwnedReply> {
        assert!(cx.mailfrom.is_none(), "MAIL is decided before it is taken");
        match from.ends_with("@spam.example") {
            true => Err(OwnedReply::new(550, (5, 7, 1), "Not from you")),
            false => Ok(()),
        }
    }

    async fn rcpt(&mut self, cx: &Context<'_>, to: &str) -> Result<(), OwnedReply> {
        assert!(cx.mailfrom.is_some(), "RCPT is decided after MAIL");
        match to {
            "alice@example.com" | "bob@example.com" => Ok(()),
            "busy@example.com" => Err(OwnedReply::plain(450, "Mailbox busy")),
            _ => Err(OwnedReply::new(550, (5, 1, 1), "No such user here")),
        }
    }

    async fn process_message(&mut self, message: &Message<'_>) -> Result<(), OwnedReply> {
        if message.data.windows(5).any(|w| w == b"later") {
            return Err(OwnedReply::new(451, (4, 3, 0), "Try again later"));
        }
        let stored = (
            message.mailfrom.to_owned(),
            message.rcpttos.to_vec(),
            message.data.to_vec(),
        );
        self.0.lock().unwrap().push(stored);
        Ok(())
    }
}

const CLIENT: &str = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.example', timeout=30)
refused = s.sendmail('sender@example.net',
                     ['alice@example.com', 'nobody@example.com', 'busy@example.com', 'bob@example.com'],
                     b'Subject: hi\r\n\r\n.leading dot\r\nbody\r\n')
print(sorted((rcpt, code, text.decode()) for rcpt, (code, text) in refused.items()))
try:
    s.sendmail('sender@example.net', ['alice@example.com'], b'Subject: later\r\n\r\nx\r\n')
    print('accepted')
except smtplib.SMTPDataError as e:
    print(e.smtp_code, e.smtp_error.decode())
try:
    s.sendmail('sender@example.net', ['nobody@example.com'], b'x\r\n')
except smtplib.SMTPRecipientsRefused as e:
    print('all refused', sorted(e.recipients))
try:
    s.sendmail('someone@spam.example', ['alice@example.com'], b'x\r\n')
except smtplib.SMTPSenderRefused as e:
    print(e.smtp_code, e.smtp_error.decode())
print(s.ehlo()[1].decode().splitlines()[0])
s.quit()
"#;

#[test]
fn an_embedded_server_decides_per_sender_and_recipient_and_stores_whole_messages() {
    let inbox = Inbox::default();
    let handler = inbox.clone();
    // `bind` wins over the address in `Options`, whichever comes first.
    // A host name made at run time: the builder keeps its own copy.
    let hostname = format!("mx{}.example.com", 1);
    let server = Server::builder(Config::new(&hostname))
        .bind("127.0.0.1:0".parse().unwrap())
        .options(Options {
            threads: 2,
            shutdown_grace: Duration::from_secs(2),
            ..Options::default()
        })
        .build(move |_| Buffered::new(handler.clone()))
        .expect("bind an ephemeral port");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    assert_ne!(addr.port(), Options::default().bind.port());
    let shutdown = server.shutdown_handle().unwrap();
    let running = thread::spawn(move || server.run());

    let out = python(CLIENT, &[&addr.port().to_string()]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "[('busy@example.com', 450, '4.0.0 Mailbox busy'), \
             ('nobody@example.com', 550, '5.1.1 No such user here')]",
            "451 4.3.0 Try again later",
            "all refused ['nobody@example.com']",
            "550 5.7.1 Not from you",
            "mx1.example.com",
        ],
        "{out}"
    );
    let stored = inbox.0.lock().unwrap().clone();
    assert_eq!(
        stored,
        [(
            "sender@example.net".to_owned(),
            vec!["alice@example.com".to_owned(), "bob@example.com".to_owned()],
            b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n".to_vec(),
        )]
    );

    let asked = Instant::now();
    shutdown.shutdown();
    running
        .join()
        .unwrap()
        .expect("run returns Ok after shutdown");
    assert!(asked.elapsed() < Duration::from_secs(5));
}

/// Panics on one recipient: a bug in an application's handler.
#[derive(Clone, Default)]
struct Fragile;

impl ProcessMessage for Fragile {
    async fn rcpt(&mut self, _: &Context<'_>, to: &str) -> Result<(), OwnedReply> {
        assert_ne!(to, "panic@example.com", "a bug in the handler");
        Ok(())
    }

    async fn process_message(&mut self, _: &Message<'_>) -> Result<(), OwnedReply> {
        Ok(())
    }
}

#[test]
fn a_handler_that_panics_ends_its_session_with_421_and_the_server_serves_on() {
    let server = Server::builder(Config::new("mx.example.com"))
        .bind("127.0.0.1:0".parse().unwrap())
        .options(Options {
            threads: 1,
            ..Options::default()
        })
        .build(|_| Buffered::new(Fragile))
        .unwrap();
    let port = server.local_addr().port().to_string();
    let shutdown = server.shutdown_handle().unwrap();
    let running = thread::spawn(move || server.run());
    let out = python(
        r#"
import smtplib, socket, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
try:
    s.sendmail('a@example.net', ['panic@example.com'], b'x\r\n')
except smtplib.SMTPRecipientsRefused as e:
    print(e.recipients)
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
print(s.sendmail('a@example.net', ['ok@example.com'], b'x\r\n'))
s.quit()
# Replies made before the panic still go out: the 250 for a delivered message pipelined
# with the next transaction's panicking RCPT is not lost (the client would send it again).
c = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=30)
f = c.makefile('rb')
f.readline()
c.sendall(b'HELO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<ok@example.com>\r\nDATA\r\n')
print([f.readline()[:3] for _ in range(4)])
c.sendall(b'x\r\n.\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<panic@example.com>\r\n')
print(f.read())
"#,
        &[&port],
    );
    assert_eq!(
        out,
        "{'panic@example.com': (421, b'4.3.0 Error: session aborted, closing connection')}\n{}\n\
         [b'250', b'250', b'250', b'354']\n\
         b'250 2.0.0 OK\\r\\n250 2.1.0 OK\\r\\n\
         421 4.3.0 Error: session aborted, closing connection\\r\\n'\n"
    );
    shutdown.shutdown();
    running.join().unwrap().unwrap();
}
