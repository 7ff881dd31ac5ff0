//! `smtpd -c PureProxy`: real clients through the relay into real upstream servers (our own
//! `smtpd --maildir`, and Postfix's `smtp-sink`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    free_port, python, require_tool, scripted_server, with_peer, Client, Delivered, Server,
};

/// The upstream maildir's messages once `count` arrived (or after 5 s).
fn delivered(upstream: &Server, count: usize) -> Vec<Delivered> {
    upstream.wait_delivered(count, Duration::from_secs(5))
}

/// The relay's trace line at the top of a relayed message (RFC 5321 4.4), checked; returns
/// its first line and the content after it.
fn relayed(message: &Delivered) -> (&str, &[u8]) {
    let content = &message.content;
    let first = content.windows(2).position(|w| w == b"\r\n").unwrap();
    let end = first
        + 2
        + content[first + 2..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap();
    let trace = std::str::from_utf8(&content[..end]).unwrap();
    let (from, by) = trace
        .split_once("\r\n\tby ")
        .unwrap_or_else(|| panic!("{trace}"));
    let (host, date) = by
        .split_once(" (smtpd-rs) with ESMTP; ")
        .unwrap_or_else(|| panic!("{trace}"));
    assert!(
        from.starts_with("Received: from ") && from.ends_with(" ([127.0.0.1])"),
        "{trace}"
    );
    assert!(!host.is_empty() && date.ends_with(" +0000"), "{trace}");
    (from, &content[end + 2..])
}

#[test]
fn smtplib_through_the_relay_into_our_own_server() {
    let upstream = Server::maildir(&[]);
    let relay = Server::relay(&upstream.addr.to_string(), &[]);
    let big: Vec<u8> = [
        &b"Subject: big\r\n\r\n"[..],
        &b"0123456789abcdef.\r\n.leading dot\r\n".repeat(40_000),
    ]
    .concat();
    std::fs::write(upstream.maildir_path().join("big.eml"), &big).unwrap();
    let out = python(
        "import smtplib, sys\n\
         s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.example')\n\
         print(s.sendmail('a@b.example', ['x@y.example', 'w@y.example'], \
               b'Subject: hi\\r\\n\\r\\n.dot\\r\\n..two\\r\\n.\\r\\nend\\r\\n'))\n\
         print(s.sendmail('', ['x@y.example'], b'no header end'))\n\
         print(s.sendmail('b@b.example', ['x@y.example'], open(sys.argv[2], 'rb').read()))\n\
         s.quit()\n",
        &[
            &relay.addr.port().to_string(),
            &upstream
                .maildir_path()
                .join("big.eml")
                .display()
                .to_string(),
        ],
    );
    assert_eq!(out, "{}\n{}\n{}\n");
    let messages = delivered(&upstream, 3);
    assert_eq!(
        messages.len(),
        3,
        "upstream stderr:\n{}",
        upstream.stderr.text()
    );
    let mut by_sender: Vec<_> = messages.iter().map(|m| m.mail_from.as_str()).collect();
    by_sender.sort();
    assert_eq!(by_sender, ["", "a@b.example", "b@b.example"]);
    let find = |from: &str| messages.iter().find(|m| m.mail_from == from).unwrap();
    let first = find("a@b.example");
    assert_eq!(first.rcpt_to, ["x@y.example", "w@y.example"]);
    let (trace, content) = relayed(first);
    assert_eq!(trace, "Received: from client.example ([127.0.0.1])");
    assert_eq!(
        content,
        with_peer(b"Subject: hi\r\n\r\n.dot\r\n..two\r\n.\r\nend\r\n")
    );
    // No empty line: `X-Peer` goes last, as in Python.
    assert_eq!(
        relayed(find("")).1,
        b"no header end\r\nX-Peer: 127.0.0.1\r\n"
    );
    assert!(
        relayed(find("b@b.example")).1 == with_peer(&big),
        "1.3 MB message changed"
    );
    // One upstream session carried all three messages, and ended with the client's.
    assert!(upstream
        .stderr
        .wait_for(Duration::from_secs(5), |log| log.contains("session peer=")));
    let sessions: Vec<_> = upstream
        .stderr
        .text()
        .lines()
        .filter(|l| l.contains("session peer="))
        .map(str::to_owned)
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(
        sessions[0].contains("messages=3 outcome=Closed"),
        "{sessions:?}"
    );
}

#[test]
fn upstream_refusals_reach_the_client_unchanged() {
    let upstream = Server::maildir(&["--max-recipients", "2", "-s", "2000"]);
    let relay = Server::relay(&upstream.addr.to_string(), &[]);
    let mut client = relay.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example> SIZE=5000", "552 5.3.4");
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    client.expect("RCPT TO:<1@y.example>", "250 ");
    client.expect("RCPT TO:<2@y.example>", "250 ");
    client.expect("RCPT TO:<3@y.example>", "452 4.5.3");
    // Too big without SIZE: refused by the upstream after the content.
    let reply = client.data(&b"x".repeat(3000));
    assert!(reply.starts_with("552 "), "{reply}");
    // Then a message that fits goes through the same sessions.
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    client.expect("RCPT TO:<1@y.example>", "250 ");
    let reply = client.data(b"Subject: fits\r\n\r\nok\r\n");
    assert!(reply.starts_with("250 "), "{reply}");
    let messages = delivered(&upstream, 1);
    assert_eq!(messages.len(), 1);
    assert_eq!(
        relayed(&messages[0]).1,
        with_peer(b"Subject: fits\r\n\r\nok\r\n")
    );
}

#[test]
fn without_an_upstream_nothing_is_accepted() {
    let closed = format!("127.0.0.1:{}", free_port());
    let relay = Server::relay(&closed, &[]);
    let mut client = relay.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "451 4.4.1");
    client.expect("RCPT TO:<x@y.example>", "503 ");
    client.expect("QUIT", "221 ");
    assert!(relay.stderr.wait_for(Duration::from_secs(5), |log| log
        .contains("next hop unavailable")));
}

#[test]
fn a_client_vanishing_mid_message_delivers_nothing() {
    let upstream = Server::maildir(&[]);
    let relay = Server::relay(&upstream.addr.to_string(), &[]);
    let mut client = relay.client();
    client.envelope("a@b.example", &["x@y.example"]);
    client.expect("DATA", "354 ");
    client.send(b"Subject: cut\r\n\r\n");
    client.send(&b"y".repeat(200_000));
    client.shutdown();
    drop(client);
    // The relay drops its upstream session; the upstream discards the message.
    assert!(upstream.stderr.wait_for(Duration::from_secs(5), |log| {
        log.contains("outcome=\"aborted: Disconnected\"")
    }));
    assert!(delivered(&upstream, 1).is_empty());
    assert!(upstream.files_in("tmp").is_empty());
}

#[test]
fn content_reaches_the_upstream_while_the_client_pauses() {
    // The upstream gives each block of data 2 s; the client pauses 1.2 s between lines, 3.6 s
    // in all. Content held back until the final dot would time the upstream out.
    let upstream = Server::maildir(&["--data-timeout", "2"]);
    let relay = Server::relay(&upstream.addr.to_string(), &[]);
    let mut client = relay.client();
    client.envelope("a@b.example", &["x@y.example"]);
    client.expect("DATA", "354 ");
    for line in ["Subject: slow\r\n\r\n", "one\r\n", "two\r\n"] {
        client.send(line.as_bytes());
        std::thread::sleep(Duration::from_millis(1200));
    }
    client.expect(".", "250 ");
    let messages = delivered(&upstream, 1);
    assert_eq!(messages.len(), 1, "upstream: {}", upstream.stderr.text());
    assert_eq!(
        relayed(&messages[0]).1,
        with_peer(b"Subject: slow\r\n\r\none\r\ntwo\r\n")
    );
}

#[test]
fn a_message_with_too_many_hops_is_refused_as_a_loop() {
    let upstream = Server::maildir(&[]);
    let relay = Server::relay(&upstream.addr.to_string(), &[]);
    let mut client = relay.client();
    let hops = |n: usize| {
        let mut content = "Received: from a by b; Sun, 29 Nov 2026 05:30:00 +0000\r\n".repeat(n);
        content.push_str("Subject: loop\r\n\r\nReceived: in the body\r\n");
        content
    };
    client.envelope("a@b.example", &["x@y.example"]);
    let reply = client.data(hops(101).as_bytes());
    assert!(reply.starts_with("554 5.4.6 "), "{reply}");
    client.envelope("a@b.example", &["x@y.example"]);
    let reply = client.data(hops(100).as_bytes());
    assert!(reply.starts_with("250 "), "{reply}");
    // The refused message went first: had it reached the upstream, it would be there by now.
    let messages = delivered(&upstream, 1);
    assert_eq!(messages.len(), 1);
    assert_eq!(relayed(&messages[0]).1, with_peer(hops(100).as_bytes()));
}

#[test]
fn bare_line_ends_cannot_smuggle_a_message_through_the_relay() {
    let upstream = Server::maildir(&["--bare-newline", "allow"]);
    let relay = Server::relay(&upstream.addr.to_string(), &["--bare-newline", "allow"]);
    let smuggled = b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\n\
                     Subject: smuggled\r\n\r\nsmuggled\r\n";
    for fake_end in [
        &b"\n.\n"[..],
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r.\r",
        b"\r.\r\n",
        b"\r\n.\r",
    ] {
        let mut client = relay.client();
        client.envelope("a@b.example", &["x@y.example"]);
        client.expect("DATA", "354 ");
        client.send(b"Subject: outer\r\n\r\nline");
        client.send(fake_end);
        client.send(smuggled);
        client.send(b".\r\n");
        let reply = client.reply();
        assert!(reply.starts_with("250 "), "{fake_end:?}: {reply}");
        client.expect("QUIT", "221 ");
    }
    let messages = delivered(&upstream, 6);
    assert_eq!(messages.len(), 6);
    for message in &messages {
        assert_eq!(
            message.mail_from, "a@b.example",
            "a smuggled message arrived"
        );
        let text = String::from_utf8_lossy(&message.content);
        assert!(text.contains("Subject: smuggled"), "{text:?}");
        // Relayed with CRLF line ends only.
        assert!(!text.replace("\r\n", "").contains(['\r', '\n']), "{text:?}");
    }
}

#[test]
fn a_closed_upstream_session_is_opened_again() {
    // The upstream ends idle sessions after a second; the relay finds out at the next MAIL.
    let upstream = Server::maildir(&["--command-timeout", "1"]);
    let relay = Server::relay(&upstream.addr.to_string(), &[]);
    let mut client = relay.client();
    client.envelope("a@b.example", &["x@y.example"]);
    assert!(client.data(b"first\r\n").starts_with("250 "));
    std::thread::sleep(Duration::from_millis(2500));
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    client.expect("RCPT TO:<x@y.example>", "250 ");
    assert!(client.data(b"second\r\n").starts_with("250 "));
    assert_eq!(delivered(&upstream, 2).len(), 2);
}

/// Postfix's `smtp-sink`, dumping each transaction into `dir`; killed on drop.
struct SmtpSink {
    child: Child,
    addr: SocketAddr,
}

impl SmtpSink {
    fn start(dir: &Path) -> SmtpSink {
        require_tool("smtp-sink", "-V");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = Command::new("smtp-sink");
        // As root it must drop to a user, who then writes the dumps.
        if unsafe { libc::geteuid() } == 0 {
            command.args(["-u", "nobody"]);
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .unwrap();
        }
        let template = format!("{}/%S.", dir.display());
        let child = command
            .args(["-d", &template, &addr.to_string(), "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        assert!(common::wait_until_accepts(addr, Duration::from_secs(5)));
        SmtpSink { child, addr }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn relays_to_postfix_smtp_sink() {
    let dumps = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(dumps.path());
    let relay = Server::relay(&sink.addr.to_string(), &[]);
    let mut client = relay.client();
    client.envelope("a@b.example", &["x@y.example", "w@y.example"]);
    let reply = client.data(b"Subject: to postfix\r\n\r\n.dot\r\nbody\r\n");
    assert!(reply.starts_with("250 "), "{reply}");
    // smtp-sink offers no SMTPUTF8: refused before any recipient.
    client.expect("MAIL FROM:<a@b.example> SMTPUTF8", "550 5.6.7");
    client.expect("QUIT", "221 ");
    let deadline = Instant::now() + Duration::from_secs(5);
    let dump = loop {
        let files = common::list_dir(dumps.path());
        if let Some(name) = files.first() {
            let text = std::fs::read_to_string(dumps.path().join(name)).unwrap();
            if text.contains("body") {
                break text;
            }
        }
        assert!(Instant::now() < deadline, "no dump from smtp-sink");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(dump.contains("X-Mail-Args: <a@b.example>\n"), "{dump}");
    assert!(
        dump.contains("X-Rcpt-Args: <x@y.example>\nX-Rcpt-Args: <w@y.example>\n"),
        "{dump}"
    );
    assert!(
        dump.ends_with("Subject: to postfix\nX-Peer: 127.0.0.1\n\n.dot\nbody\n\n"),
        "{dump:?}"
    );
}

#[test]
fn an_upstream_that_stops_answering_is_given_up() {
    // A server that greets, then never answers: the relay must not hang its client forever,
    // and must not accept. (Its patience is the RFC's minutes; the client gives up first here.)
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mute = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(b"220 mute ESMTP\r\n").unwrap();
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    });
    let relay = Server::relay(&addr.to_string(), &[]);
    let stream = TcpStream::connect(relay.addr).unwrap();
    let mut client = Client::from_stream(stream);
    client.set_read_timeout(Duration::from_secs(2));
    assert!(client.reply().starts_with("220 "));
    client.expect("EHLO client.example", "250");
    client.send(b"MAIL FROM:<a@b.example>\r\n");
    assert!(
        client.try_reply().is_err(),
        "no reply can come before the upstream answers"
    );
    client.shutdown();
    drop(client);
    drop(relay);
    mute.join().unwrap();
}

#[test]
fn an_upstream_421_reaches_the_client_as_451_and_the_session_goes_on() {
    let (addr, script) = scripted_server(&[&[
        "250-scripted\r\n250 8BITMIME\r\n",
        "250 2.1.0 sender ok\r\n",
        "421 4.3.0 going down\r\n",
    ]]);
    let relay = Server::relay(&addr, &[]);
    let mut client = relay.client();
    client.expect("EHLO client.example", "250");
    client.expect(
        "MAIL FROM:<a@b.example> BODY=8BITMIME",
        "250 2.1.0 sender ok",
    );
    client.expect("RCPT TO:<x@y.example>", "451 4.3.0 going down");
    client.expect("NOOP", "250 ");
    assert_eq!(
        script.join().unwrap()[0],
        [
            format!("EHLO {}", relay_hostname(&relay)),
            "MAIL FROM:<a@b.example> BODY=8BITMIME".to_owned(),
            "RCPT TO:<x@y.example>".to_owned(),
        ]
    );
    // The upstream is gone: the next transaction finds none.
    client.expect("RSET", "250 ");
    client.expect("MAIL FROM:<a@b.example>", "451 4.4.1");
}

#[test]
fn a_malformed_upstream_reply_loses_the_transaction() {
    let (addr, script) = scripted_server(&[&["250 scripted\r\n", "hello there\r\n"]]);
    let relay = Server::relay(&addr, &[]);
    let mut client = relay.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "451 4.4.2");
    client.expect("RCPT TO:<x@y.example>", "503 ");
    assert_eq!(script.join().unwrap()[0].len(), 2);
}

/// An upstream for one connection that answers its first lines (EHLO...) with `replies`,
/// then reads on without answering; returns its address and the lines it got.
fn upstream_falling_silent(
    replies: &'static [&'static str],
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let upstream = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = std::io::BufReader::new(stream);
        writer.write_all(b"220 slow ESMTP\r\n").unwrap();
        let mut lines = Vec::new();
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) > 0 {
            if let Some(reply) = replies.get(lines.len()) {
                writer.write_all(reply.as_bytes()).unwrap();
            }
            lines.push(std::mem::take(&mut line).trim_end().to_owned());
        }
        lines
    });
    (addr, upstream)
}

#[test]
fn the_client_s_221_does_not_wait_for_the_upstream_s() {
    // An upstream that never answers QUIT: the relay waits up to 5 s for it, on the side.
    let (addr, upstream) = upstream_falling_silent(&["250 ok\r\n", "250 ok\r\n"]);
    let relay = Server::relay(&addr, &[]);
    let mut client = relay.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    let quit = Instant::now();
    client.expect("QUIT", "221 ");
    assert!(
        quit.elapsed() < Duration::from_secs(2),
        "{:?}",
        quit.elapsed()
    );
    // The upstream got its QUIT all the same.
    let lines = upstream.join().unwrap();
    assert_eq!(lines.last().map(String::as_str), Some("QUIT"), "{lines:?}");
}

#[test]
fn a_client_leaving_without_quit_still_ends_the_upstream_session_with_quit() {
    let (addr, upstream) = upstream_falling_silent(&["250 ok\r\n", "250 ok\r\n", "221 bye\r\n"]);
    let relay = Server::relay(&addr, &[]);
    let mut client = relay.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    drop(client);
    let lines = upstream.join().unwrap();
    assert_eq!(lines.last().map(String::as_str), Some("QUIT"), "{lines:?}");
}

#[test]
fn shutdown_ends_a_session_waiting_on_its_upstream_with_421() {
    let (addr, upstream) = upstream_falling_silent(&["250 ok\r\n", "250 ok\r\n"]);
    let mut relay = Server::relay(&addr, &["--shutdown-grace", "1"]);
    let mut client = relay.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    client.send(b"RCPT TO:<x@y.example>\r\n");
    std::thread::sleep(Duration::from_millis(300));
    relay.signal(libc::SIGTERM);
    let signalled = Instant::now();
    client.set_read_timeout(Duration::from_secs(10));
    let reply = client.reply();
    assert!(reply.starts_with("421 4.3.2 "), "{reply:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "{:?}",
        signalled.elapsed()
    );
    let status = relay
        .wait_exit(Duration::from_secs(5))
        .expect("smtpd did not exit");
    assert_eq!(status.code(), Some(0), "{}", relay.stderr.text());
    // The upstream's session was ended with QUIT as well.
    let lines = upstream.join().unwrap();
    assert_eq!(lines[lines.len() - 2..], ["RCPT TO:<x@y.example>", "QUIT"]);
}

#[test]
fn shutdown_ends_a_session_waiting_on_its_upstream_past_its_own_deadline() {
    // The upstream never answers the end of data. The shutdown starts while the session's
    // data timeout (1 s) is nearer than the grace period's end (3 s); the wait for the
    // upstream outlasts that timeout, and the grace period's end still ends it with 421.
    const OK: &str = "250 ok\r\n";
    let (addr, _upstream) = upstream_falling_silent(&[OK, OK, OK, "354 go\r\n"]);
    let mut relay = Server::relay(&addr, &["--data-timeout", "1", "--shutdown-grace", "3"]);
    let mut client = relay.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    client.expect("RCPT TO:<x@y.example>", "250 ");
    client.expect("DATA", "354 ");
    client.send(b"Subject: stuck upstream\r\n\r\nbody\r\n");
    relay.signal(libc::SIGTERM);
    let signalled = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    client.send(b".\r\n");
    client.set_read_timeout(Duration::from_secs(10));
    let reply = client.try_reply();
    assert!(
        reply.as_deref().is_ok_and(|r| r.starts_with("421 4.3.2 ")),
        "{reply:?} after {:?}",
        signalled.elapsed()
    );
    let waited = signalled.elapsed();
    assert!(
        (Duration::from_millis(2500)..Duration::from_millis(3900)).contains(&waited),
        "{waited:?}"
    );
    let status = relay
        .wait_exit(Duration::from_secs(5))
        .expect("smtpd did not exit");
    assert_eq!(status.code(), Some(0), "{}", relay.stderr.text());
}

#[test]
fn an_upstream_reply_nobody_asked_for_loses_the_transaction() {
    // Two replies to MAIL: the second would otherwise pass for the answer to RCPT.
    let (addr, script) =
        scripted_server(&[&["250 scripted\r\n", "250 2.1.0 ok\r\n250 2.1.5 stale\r\n"]]);
    let relay = Server::relay(&addr, &[]);
    let mut client = relay.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "250 2.1.0 ok");
    client.expect("RCPT TO:<x@y.example>", "451 4.4.2");
    assert_eq!(script.join().unwrap()[0].len(), 2);
}

#[test]
fn a_reply_riding_on_the_upstream_s_354_is_not_taken_for_the_end_of_data() {
    // The 250 would otherwise answer the final dot before the upstream has the content.
    let (addr, script) = scripted_server(&[&[
        "250 scripted\r\n",
        "250 2.1.0 ok\r\n",
        "250 2.1.5 ok\r\n",
        "354 go\r\n250 2.0.0 early\r\n",
    ]]);
    let relay = Server::relay(&addr, &[]);
    let mut client = relay.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    client.expect("RCPT TO:<x@y.example>", "250 ");
    client.expect("DATA", "451 4.4.2");
    assert_eq!(script.join().unwrap()[0].len(), 4);
}

/// The name the relay gives in EHLO: its greeting's.
fn relay_hostname(relay: &Server) -> String {
    let greeting = Client::connect(relay.addr).reply();
    greeting
        .trim_start_matches("220 ")
        .split(' ')
        .next()
        .unwrap()
        .to_owned()
}

/// An upstream for one connection that accepts EHLO, MAIL, RCPT and DATA, reads the content
/// without a word and answers its final dot with `end`, after `during` (if any) sent when
/// the content's first line came; returns its address.
fn upstream_ending_with(during: Option<&'static str>, end: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = std::io::BufReader::new(stream);
        writer.write_all(b"220 upstream ESMTP\r\n").unwrap();
        let replies = ["250 upstream\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n"];
        let mut lines = 0;
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) > 0 {
            lines += 1;
            let reply = match (lines, line.as_str()) {
                (1..=4, _) => Some(replies[lines - 1]),
                (5, _) => during,
                (_, ".\r\n") => Some(end),
                _ => None,
            };
            if let Some(reply) = reply {
                writer.write_all(reply.as_bytes()).unwrap();
            }
            line.clear();
        }
    });
    addr
}

#[test]
fn an_upstream_answering_the_dot_out_of_step_loses_the_transaction() {
    // Only a 2xx accepts a message: a 354 (or any 1xx/3xx) to the final dot is no
    // acceptance, and must not reach the client as one.
    let relay = Server::relay(&upstream_ending_with(None, "354 what, more?\r\n"), &[]);
    let mut client = relay.client();
    client.envelope("a@b.example", &["x@y.example"]);
    let reply = client.data(b"Subject: t\r\n\r\nhello\r\n");
    assert!(reply.starts_with("451 4.4.2 "), "{reply}");
}

#[test]
fn a_reply_that_came_during_the_content_is_not_taken_for_the_end_of_data() {
    // The upstream says something while the content streams: whatever it was, it would pass
    // for the answer to the dot, sent after it.
    let addr = upstream_ending_with(Some("250 2.0.0 early\r\n"), "554 5.7.1 rejected\r\n");
    let relay = Server::relay(&addr, &[]);
    let mut client = relay.client();
    client.envelope("a@b.example", &["x@y.example"]);
    client.expect("DATA", "354 ");
    // The client pauses: what it sent so far goes upstream, which answers at once.
    client.send(b"Subject: t\r\n");
    std::thread::sleep(Duration::from_millis(300));
    client.send(b"\r\nhello\r\n.\r\n");
    let reply = client.reply();
    assert!(reply.starts_with("451 4.4.2 "), "{reply}");
}

#[test]
fn a_mail_accepted_with_251_is_reset_upstream_before_the_next() {
    // Any 2xx to MAIL opens the upstream's transaction: after a refused DATA it must be
    // ended (RSET) before the next MAIL, or that gets 503.
    let (addr, script) = scripted_server(&[&[
        "250 scripted\r\n",
        "251 2.1.0 ok\r\n",
        "250 2.1.5 ok\r\n",
        "554 5.7.1 not now\r\n",
        "250 2.0.0 reset\r\n",
        "250 2.1.0 ok again\r\n",
    ]]);
    let relay = Server::relay(&addr, &[]);
    let mut client = relay.client();
    client.envelope("a@b.example", &["x@y.example"]);
    client.expect("DATA", "554 5.7.1 not now");
    client.expect("RSET", "250 ");
    client.expect("MAIL FROM:<c@b.example>", "250 2.1.0 ok again");
    drop(client);
    let lines = &script.join().unwrap()[0];
    assert_eq!(lines[4], "RSET", "{lines:?}");
    assert_eq!(lines[5], "MAIL FROM:<c@b.example>", "{lines:?}");
}

#[test]
fn only_clients_in_the_relay_networks_may_send_anywhere() {
    let upstream = Server::maildir(&[]);
    // 127.0.0.1 is outside these networks: an outsider, who may send only to the domains.
    let relay = Server::relay(
        &upstream.addr.to_string(),
        &[
            "--relay-networks",
            "10.0.0.0/8,::1",
            "--relay-domains",
            "example.org,.lists.example.net",
        ],
    );
    let mut client = relay.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    client.expect("RCPT TO:<x@elsewhere.example>", "550 5.7.1");
    client.expect("RCPT TO:<ant@Example.ORG>", "250 ");
    client.expect("RCPT TO:<x@sub.example.org>", "550 5.7.1");
    client.expect("RCPT TO:<x%elsewhere.example@example.org>", "550 5.7.1");
    client.expect("RCPT TO:<bee@a.lists.example.net>", "250 ");
    client.expect("RCPT TO:<x@lists.example.net>", "550 5.7.1");
    client.expect("RCPT TO:<Postmaster>", "250 ");
    let reply = client.data(b"Subject: in\r\n\r\nfor the domains\r\n");
    assert!(reply.starts_with("250 "), "{reply}");
    client.expect("QUIT", "221 ");
    let messages = delivered(&upstream, 1);
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].rcpt_to,
        ["ant@Example.ORG", "bee@a.lists.example.net", "Postmaster"]
    );

    // By default loopback clients relay anywhere (and no one else).
    let relay = Server::relay(&upstream.addr.to_string(), &[]);
    let mut client = relay.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    client.expect("RCPT TO:<x@elsewhere.example>", "250 ");
    let reply = client.data(b"Subject: out\r\n\r\nfrom loopback\r\n");
    assert!(reply.starts_with("250 "), "{reply}");
    assert_eq!(delivered(&upstream, 2).len(), 2);
    assert!(relay.stderr.text().contains("networks=127.0.0.0/8,::1/128"));
}

#[test]
fn an_open_relay_must_be_asked_for_and_is_warned_of() {
    let upstream = Server::maildir(&[]);
    let relay = Server::relay(
        &upstream.addr.to_string(),
        &["--relay-networks", "10.0.0.0/8,0.0.0.0/1,::/0"],
    );
    assert!(relay.stderr.wait_for(Duration::from_secs(5), |log| {
        let warnings = |network: &str| {
            log.lines()
                .filter(|line| line.contains("WARN") && line.contains(network))
                .filter(|line| line.contains("open relay"))
                .count()
        };
        warnings("0.0.0.0/1") == 1 && warnings("::/0") == 1 && warnings("10.0.0.0/8") == 0
    }));
    // ::/0 holds IPv4 clients too.
    let mut client = relay.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    client.expect("RCPT TO:<x@elsewhere.example>", "250 ");
    // Values that cannot be meant: one line, exit code 2.
    for (flag, bad) in [
        ("--relay-networks", "10.0.0.0/33"),
        ("--relay-networks", "example.com"),
        ("--relay-networks", "10.0.0.1/+8"),
        ("--relay-networks", "10.0.0.1/8"),
        ("--relay-networks", "[::1"),
        ("--relay-domains", ""),
        ("--relay-domains", "."),
        ("--relay-domains", "a@example.com"),
        ("--relay-domains", "..example.com"),
        ("--relay-domains", "example.com."),
        ("--relay-domains", "*.example.com"),
        ("--relay-domains", "a..example.com"),
        ("--proxy-protocol", "10.0.0.0/33"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_smtpd"))
            .args(["-c", "PureProxy", flag, bad])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {bad:?}");
        assert!(
            stderr.starts_with("smtpd: error: ") && stderr.lines().count() == 1,
            "{stderr}"
        );
    }
    for good in [
        "example.com",
        ".example.com",
        "bücher.example",
        "[192.0.2.1]",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_smtpd"))
            .args([
                "-c",
                "PureProxy",
                "--relay-domains",
                good,
                "--threads",
                "0x",
            ])
            .output()
            .unwrap();
        // Refused for --threads only.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--threads"), "{good}: {stderr}");
    }
}
