//! `smtpd --proxy-protocol`: clients behind a real HAProxy (PROXY protocol versions 1 and 2)
//! are seen as themselves, and only trusted proxies may name a client.
//!
//! HAProxy comes from `$HAPROXY`, else `haproxy` on PATH or in /usr/sbin; `.ci/run` installs
//! Debian's package.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, python, Server};

/// A running HAProxy (in the foreground, killed on drop) with three frontends for one
/// server: one sends it the version 1 header, one version 2, and one, dual-stack, version 1
/// with IPv4 clients in the mixed IPv6 form (`PROXY TCP6 ::ffff:127.0.0.2 ...`).
struct HaProxy {
    child: Child,
    v1: u16,
    v2: u16,
    dual: u16,
    _dir: tempfile::TempDir,
}

impl HaProxy {
    fn start(server: &Server) -> HaProxy {
        let command = std::env::var_os("HAPROXY")
            .map(PathBuf::from)
            .or_else(|| {
                let installed = PathBuf::from("/usr/sbin/haproxy");
                installed.exists().then_some(installed)
            })
            .unwrap_or_else(|| PathBuf::from("haproxy"));
        let dir = tempfile::tempdir().unwrap();
        let (v1, v2, dual) = (free_port(), free_port(), free_port());
        let config = dir.path().join("haproxy.cfg");
        let mut text = String::from(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  \
             timeout server 30s\n",
        );
        for (port, bind, send) in [
            (v1, format!("127.0.0.1:{v1}"), "send-proxy"),
            (v2, format!("127.0.0.1:{v2}"), "send-proxy-v2"),
            (dual, format!(":::{dual} v4v6"), "send-proxy"),
        ] {
            text += &format!(
                "listen smtp{port}\n  bind {bind}\n  server smtpd {} {send}\n",
                server.addr
            );
        }
        std::fs::write(&config, text).unwrap();
        let child = Command::new(&command)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("HAProxy ({command:?}) must be installed: {e}"));
        for port in [v1, v2, dual] {
            assert!(
                common::wait_until_accepts(
                    format!("127.0.0.1:{port}").parse().unwrap(),
                    Duration::from_secs(10)
                ),
                "HAProxy did not start"
            );
        }
        HaProxy {
            child,
            v1,
            v2,
            dual,
            _dir: dir,
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a message with smtplib from `source` (a loopback address) to `port`; prints the
/// refused recipients, or the error.
fn send_from(source: &str, port: u16, to: &str) -> String {
    python(
        "import smtplib, sys\n\
         s = smtplib.SMTP('127.0.0.1', int(sys.argv[2]), local_hostname='client.example', \
                          source_address=(sys.argv[1], 0))\n\
         try: print(s.sendmail('a@b.example', [sys.argv[3]], b'Subject: via haproxy\\r\\n\\r\\nhi\\r\\n'))\n\
         except smtplib.SMTPRecipientsRefused as e: print(e.recipients)\n\
         s.quit()\n",
        &[source, &port.to_string(), to],
    )
}

#[test]
fn clients_behind_haproxy_are_seen_as_themselves() {
    let upstream = Server::maildir(&[]);
    // HAProxy connects from 127.0.0.1, which may not relay; the client 127.0.0.2 may.
    let relay = Server::relay(
        &upstream.addr.to_string(),
        &[
            "--proxy-protocol",
            "127.0.0.1",
            "--relay-networks",
            "127.0.0.2",
        ],
    );
    let haproxy = HaProxy::start(&relay);
    for port in [haproxy.v1, haproxy.v2, haproxy.dual] {
        assert_eq!(send_from("127.0.0.2", port, "x@y.example"), "{}\n");
        assert_eq!(
            send_from("127.0.0.3", port, "x@y.example"),
            "{'x@y.example': (550, b'5.7.1 Error: relaying denied')}\n"
        );
    }
    let messages = upstream.wait_delivered(3, Duration::from_secs(5));
    assert_eq!(messages.len(), 3);
    for message in &messages {
        let content = String::from_utf8_lossy(&message.content);
        assert!(
            content.contains("Received: from client.example ([127.0.0.2])"),
            "{content}"
        );
        assert!(content.contains("\r\nX-Peer: 127.0.0.2\r\n"), "{content}");
    }
    assert!(relay.stderr.wait_for(Duration::from_secs(5), |log| {
        let proxied = |client: &str| {
            log.lines()
                .filter(|line| {
                    line.contains(&format!("session peer={client}:"))
                        && line.contains(" proxy=127.0.0.1:")
                        && line.contains("outcome=Closed(Quit)")
                })
                .count()
        };
        proxied("127.0.0.2") == 3 && proxied("127.0.0.3") == 3
    }));
}

#[test]
fn a_trusted_proxy_must_send_a_header_and_no_one_else_may() {
    let trusting = Server::maildir(&["--proxy-protocol", "127.0.0.0/8"]);
    // A header and the conversation in one segment, version 2 by hand.
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend_from_slice(&[198, 51, 100, 9, 127, 0, 0, 1, 0xd4, 0x31, 0, 25]);
    let mut client = common::Client::connect(trusting.addr);
    client.send(&[&header[..], b"EHLO client.example\r\n"].concat());
    assert!(client.reply().starts_with("220 "));
    assert!(client.reply().starts_with("250"));
    client.expect("QUIT", "221 ");
    // No header, or a bad one, or none in time: closed without a word.
    for (sent, outcome) in [
        (&b"EHLO client.example\r\n"[..], "NoProxyHeader(Missing)"),
        (
            b"PROXY TCP4 198.51.100.9 127.0.0.1 99999 25\r\n",
            "NoProxyHeader(Malformed)",
        ),
        (b"PROXY TCP4 198.51.100.9", "TimedOut"),
    ] {
        let mut stream = TcpStream::connect(trusting.addr).unwrap();
        std::io::Write::write_all(&mut stream, sent).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = Instant::now();
        let mut received = Vec::new();
        stream.read_to_end(&mut received).unwrap();
        assert_eq!(received, b"", "{outcome}");
        assert!(started.elapsed() < Duration::from_secs(8));
        assert!(
            trusting
                .stderr
                .wait_for(Duration::from_secs(5), |log| log.contains(outcome)),
            "{outcome}"
        );
    }
    assert!(trusting
        .stderr
        .text()
        .contains("session peer=198.51.100.9:54321 proxy=127.0.0.1:"));
    // Every line of a trusted proxy's connection names the proxy, a late header's too.
    assert!(trusting
        .stderr
        .text()
        .lines()
        .any(|line| line.contains("outcome=TimedOut") && line.contains(" proxy=127.0.0.1:")));
    // The IPv4-mapped form of a proxy's address is that address.
    let mapped = Server::maildir(&["--proxy-protocol", "::ffff:127.0.0.1"]);
    let mut stream = TcpStream::connect(mapped.addr).unwrap();
    std::io::Write::write_all(&mut stream, b"EHLO client.example\r\n").unwrap();
    let mut received = Vec::new();
    stream.read_to_end(&mut received).unwrap();
    assert_eq!(received, b"");
    // A client that is no trusted proxy cannot name another: its header is a bad command.
    let other = Server::maildir(&["--proxy-protocol", "10.0.0.0/8"]);
    let mut client = other.client();
    client.expect("PROXY TCP4 198.51.100.9 127.0.0.1 54321 25", "500 ");
    client.expect("QUIT", "221 ");
    assert!(other.stderr.wait_for(Duration::from_secs(5), |log| log
        .contains("session peer=127.0.0.1:")
        && !log.contains("198.51.100.9")));
}

#[test]
fn a_client_its_proxy_does_not_name_is_unknown_and_may_not_relay() {
    let upstream = Server::maildir(&[]);
    // The proxy's own address, 127.0.0.1, may relay anywhere (the default networks).
    let relay = Server::relay(
        &upstream.addr.to_string(),
        &["--proxy-protocol", "127.0.0.1"],
    );
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    for (header, relayed) in [
        (&b"PROXY UNKNOWN\r\n"[..], "550 5.7.1"),
        (b"\r\n\r\n\0\r\nQUIT\n\x21\x31\x00\xd8", "550 5.7.1"),
        (local, "250 "),
    ] {
        let mut header = header.to_vec();
        if header.ends_with(b"\x31\x00\xd8") {
            header.extend_from_slice(&[0; 216]); // two UNIX socket paths
        }
        let mut client = common::Client::connect(relay.addr);
        client.send(&header);
        assert!(client.reply().starts_with("220 "));
        client.expect("EHLO client.example", "250");
        client.expect("MAIL FROM:<a@b.example>", "250 ");
        client.expect("RCPT TO:<x@elsewhere.example>", relayed);
        client.expect("QUIT", "221 ");
    }
    assert!(relay.stderr.wait_for(Duration::from_secs(5), |log| log
        .lines()
        .filter(|line| line.contains("session peer=unknown proxy=127.0.0.1:"))
        .count()
        == 2));
}

/// A connection through a trusted proxy (a hand-made version 1 header) for `client`.
fn connect_as(server: &Server, client: &str) -> common::Client {
    let family = if client.contains(':') { "TCP6" } else { "TCP4" };
    let local = if client.contains(':') {
        "::1"
    } else {
        "127.0.0.1"
    };
    let mut connection = common::Client::connect(server.addr);
    connection.set_read_timeout(Duration::from_secs(5));
    connection.send(format!("PROXY {family} {client} {local} 40000 25\r\n").as_bytes());
    connection
}

#[test]
fn each_client_gets_at_most_its_share_of_connections() {
    let server = Server::maildir(&[
        "--proxy-protocol",
        "127.0.0.1",
        "--max-connections-per-client",
        "2",
    ]);
    let mut held = Vec::new();
    for client in [
        "192.0.2.7",
        "192.0.2.7",
        "2001:db8:5:6::1",
        "2001:db8:5:6::2",
    ] {
        let mut connection = connect_as(&server, client);
        assert!(connection.reply().starts_with("220 "), "{client}");
        held.push(connection);
    }
    // A third from the same address, or from the same IPv6 /64: refused.
    for client in ["192.0.2.7", "2001:db8:5:6:ab::3"] {
        let mut refused = connect_as(&server, client);
        assert_eq!(
            refused.reply(),
            "421 4.7.0 Too many connections from your address"
        );
        refused.expect_eof(Duration::from_secs(5));
    }
    assert!(server.stderr.wait_for(Duration::from_secs(5), |log| log
        .contains("session peer=192.0.2.7:40000 proxy=127.0.0.1:")
        && log.contains("outcome=TooManyFromClient")));
    // Others are served: another address, another /64, loopback (never counted).
    for client in [
        "192.0.2.8",
        "2001:db8:5:7::1",
        "127.0.0.9",
        "127.0.0.9",
        "127.0.0.9",
    ] {
        let mut connection = connect_as(&server, client);
        assert!(connection.reply().starts_with("220 "), "{client}");
        held.push(connection);
    }
    // A client that closes one gets its place back.
    let mut first = held.remove(0);
    first.expect("QUIT", "221 ");
    first.expect_eof(Duration::from_secs(5));
    let mut again = connect_as(&server, "192.0.2.7");
    assert!(again.reply().starts_with("220 "));
    again.expect("EHLO client.example", "250");
    again.expect("QUIT", "221 ");
    // 0: no limit.
    let unlimited = Server::maildir(&[
        "--proxy-protocol",
        "127.0.0.1",
        "--max-connections-per-client",
        "0",
    ]);
    let mut held: Vec<_> = (0..3)
        .map(|_| connect_as(&unlimited, "192.0.2.7"))
        .collect();
    for connection in &mut held {
        assert!(connection.reply().starts_with("220 "));
    }
}
