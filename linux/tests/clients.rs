//! Real SMTP clients against the real `smtpd` binary: Python's `smtplib`, `swaks` and `curl`.

mod common;

use std::net::Ipv6Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{python, require_tool, Delivered, Server};

/// Opens an `smtplib.SMTP` connection to the port in `sys.argv[1]` as `s`.
const PRELUDE: &str = "import smtplib, sys\n\
                       port = int(sys.argv[1])\n\
                       s = smtplib.SMTP('127.0.0.1', port, local_hostname='client.example', timeout=120)\n";

fn script(body: &str) -> String {
    format!("{PRELUDE}{body}")
}

/// Compares large byte strings without dumping them: reports the first difference.
fn assert_bytes_eq(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let at = actual
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(actual.len().min(expected.len()));
    let window = |bytes: &[u8]| {
        let start = at.saturating_sub(40);
        String::from_utf8_lossy(&bytes[start..(at + 40).min(bytes.len())]).into_owned()
    };
    panic!(
        "{what}: {} bytes delivered, {} expected; first difference at offset {at}:\n\
         delivered: {:?}\nexpected:  {:?}",
        actual.len(),
        expected.len(),
        window(actual),
        window(expected)
    );
}

fn only_message(server: &Server) -> Delivered {
    let delivered = server.wait_delivered(1, Duration::from_secs(5));
    assert_eq!(
        delivered.len(),
        1,
        "expected exactly one delivered message; stderr:\n{}",
        server.stderr.text()
    );
    assert!(
        server.files_in("tmp").is_empty(),
        "DIR/tmp not empty after delivery"
    );
    delivered.into_iter().next().unwrap()
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[test]
fn smtplib_sendmail_reply_codes_and_exact_bytes() {
    // -s: SIZE is advertised only when asked for, as in Python's smtpd.
    let server = Server::maildir(&["-s", "33554432"]);
    let work = tempfile::tempdir().unwrap();
    let content: &[u8] =
        b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: plain\r\n\r\n\
        Hello, Bob.\r\n.a line starting with a dot\r\n..two dots\r\n.\r\nlast line\r\n";
    let file = write_file(work.path(), "message.eml", content);
    let out = python(
        &script(
            "msg = open(sys.argv[2], 'rb').read()\n\
             print(s.ehlo()[0])\n\
             print(s.has_extn('pipelining'), s.has_extn('smtputf8'), s.has_extn('size'))\n\
             print(s.mail('alice@example.org'))\n\
             print(s.rcpt('bob@example.org'))\n\
             print(s.data(msg))\n\
             print(s.quit())\n",
        ),
        &[&server.port().to_string(), &file],
    );
    assert_eq!(
        out,
        "250\n\
         True True True\n\
         (250, b'2.1.0 OK')\n\
         (250, b'2.1.5 OK')\n\
         (250, b'2.0.0 OK')\n\
         (221, b'2.0.0 Bye')\n"
    );
    let message = only_message(&server);
    assert_eq!(message.mail_from, "alice@example.org");
    assert_eq!(message.rcpt_to, ["bob@example.org"]);
    assert_bytes_eq(&message.content, content, "smtplib data()");
}

#[test]
fn smtplib_over_ipv6_loopback() {
    let server = Server::maildir_on(Ipv6Addr::LOCALHOST.into(), &[]);
    assert!(server.addr.is_ipv6());
    let out = python(
        "import smtplib, sys\n\
         s = smtplib.SMTP('::1', int(sys.argv[1]), local_hostname='client.example', timeout=60)\n\
         print(s.sendmail('alice@example.org', ['bob@example.org'], b'Subject: v6\\r\\n\\r\\nover IPv6\\r\\n'))\n\
         print(s.quit())\n",
        &[&server.port().to_string()],
    );
    assert_eq!(out, "{}\n(221, b'2.0.0 Bye')\n");
    let message = only_message(&server);
    assert_eq!(message.rcpt_to, ["bob@example.org"]);
    assert_bytes_eq(
        &message.content,
        b"Subject: v6\r\n\r\nover IPv6\r\n",
        "IPv6",
    );
}

#[test]
fn the_ipv6_any_address_serves_ipv4_clients_too() {
    let server = Server::maildir_on(Ipv6Addr::UNSPECIFIED.into(), &[]);
    for host in ["127.0.0.1", "::1"] {
        let out = python(
            "import smtplib, sys\n\
             s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), local_hostname='c.example', timeout=60)\n\
             print(s.sendmail('a@example.org', ['b@example.org'], b'Subject: any\\r\\n\\r\\nx\\r\\n'))\n\
             print(s.quit())\n",
            &[host, &server.port().to_string()],
        );
        assert_eq!(out, "{}\n(221, b'2.0.0 Bye')\n", "{host}");
    }
    // IPv4 clients appear as IPv4 addresses, not as ::ffff:127.0.0.1.
    let both = |log: &str| log.contains("peer=127.0.0.1:") && log.contains("peer=[::1]:");
    assert!(
        server.stderr.wait_for(Duration::from_secs(5), both),
        "{}",
        server.stderr.text()
    );
}

#[test]
fn smtplib_send_message() {
    let server = Server::maildir(&[]);
    // Prints the refused dict, then the bytes smtplib sent (its own flattening, Bcc removed).
    let out = python(
        &script(
            "import io, email.generator\n\
             from email.message import EmailMessage\n\
             m = EmailMessage()\n\
             m['From'] = 'Alice <alice@example.org>'\n\
             m['To'] = 'Bob <bob@example.org>, carol@example.org'\n\
             m['Bcc'] = 'dave@example.org'\n\
             m['Subject'] = 'send_message'\n\
             m.set_content('Hello via send_message.\\n.leading dot\\n')\n\
             print(s.send_message(m))\n\
             s.quit()\n\
             del m['Bcc']\n\
             buf = io.BytesIO()\n\
             email.generator.BytesGenerator(buf).flatten(m, linesep='\\r\\n')\n\
             print(buf.getvalue().hex())\n",
        ),
        &[&server.port().to_string()],
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("{}"), "refused recipients");
    let sent = hex_decode(lines.next().expect("flattened message"));
    let message = only_message(&server);
    assert_eq!(message.mail_from, "alice@example.org");
    assert_eq!(
        message.rcpt_to,
        ["bob@example.org", "carol@example.org", "dave@example.org"]
    );
    assert_bytes_eq(&message.content, &sent, "send_message");
    let text = String::from_utf8(message.content).unwrap();
    assert!(text.contains("\r\nSubject: send_message\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nHello via send_message.\r\n.leading dot\r\n"));
    assert!(!text.contains("Bcc"), "Bcc must not be delivered: {text}");
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Sends one message to `rcpts` with smtplib's `sendmail`; checks that none was refused and
/// that the maildir has the message for all of them, in order.
fn sendmail_to_all(rcpts: &[String]) {
    let server = Server::maildir(&[]);
    let content = b"Subject: many\r\n\r\nTo many people.\r\n";
    let work = tempfile::tempdir().unwrap();
    let file = write_file(work.path(), "m.eml", content);
    let mut args = vec![server.port().to_string(), file];
    args.extend(rcpts.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python(
        &script(
            "msg = open(sys.argv[2], 'rb').read()\n\
             print(s.sendmail('list@example.org', sys.argv[3:], msg))\n\
             s.quit()\n",
        ),
        &args,
    );
    assert_eq!(out, "{}\n", "refused recipients");
    let message = only_message(&server);
    assert_eq!(message.mail_from, "list@example.org");
    assert_eq!(message.rcpt_to, rcpts);
    assert_bytes_eq(&message.content, content, "many recipients");
}

#[test]
fn smtplib_fifty_recipients_in_order() {
    let rcpts: Vec<String> = (0..50).map(|i| format!("rcpt{i:02}@example.net")).collect();
    sendmail_to_all(&rcpts);
}

#[test]
fn smtplib_one_hundred_recipients_of_the_longest_kind() {
    // RFC 5321 4.5.3.1.8 and 4.5.3.1.3: 100 recipients, each a 254-octet mailbox.
    let domain = format!("{}.{}.{}", "d".repeat(63), "e".repeat(63), "f".repeat(61));
    let rcpts: Vec<String> = (0..100)
        .map(|i| format!("{i:03}{}@{domain}", "l".repeat(61)))
        .collect();
    assert!(rcpts.iter().all(|rcpt| rcpt.len() == 254));
    sendmail_to_all(&rcpts);
}

#[test]
fn smtplib_smtputf8_address() {
    let server = Server::maildir(&[]);
    let content = "From: Jörg <jörg@bücher.example>\r\nTo: empfänger@bücher.example\r\n\
                   Subject: Grüße\r\n\r\nÜmlaute und ✓.\r\n";
    let work = tempfile::tempdir().unwrap();
    let file = write_file(work.path(), "utf8.eml", content.as_bytes());
    let out = python(
        &script(
            "msg = open(sys.argv[2], 'rb').read()\n\
             s.ehlo()\n\
             print(s.has_extn('smtputf8'))\n\
             print(s.sendmail('jörg@bücher.example', ['empfänger@bücher.example'], msg,\n\
                              mail_options=['SMTPUTF8']))\n\
             s.quit()\n",
        ),
        &[&server.port().to_string(), &file],
    );
    assert_eq!(out, "True\n{}\n");
    let message = only_message(&server);
    assert_eq!(message.mail_from, "jörg@bücher.example");
    assert_eq!(message.rcpt_to, ["empfänger@bücher.example"]);
    assert_bytes_eq(&message.content, content.as_bytes(), "SMTPUTF8 message");
}

/// Exactly 10 MiB of CRLF lines, many starting with one or more dots (a lone `.` too), every
/// line within the 1000-octet limit.
fn big_content() -> Vec<u8> {
    const SIZE: usize = 10 * 1024 * 1024;
    let mut out = Vec::with_capacity(SIZE);
    out.extend_from_slice(b"Subject: ten MiB\r\n\r\n");
    let mut i = 0usize;
    while SIZE - out.len() > 1000 {
        let line = match i % 6 {
            0 => ".".to_string(),
            1 => format!("..{i} two dots"),
            2 => format!(".{i} {}", "x".repeat(i % 900)),
            3 => format!("line {i} {}", "abcdefghij".repeat((i * 7) % 95)),
            4 => String::new(),
            _ => format!("...{i}.\t.end."),
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        i += 1;
    }
    let last = SIZE - out.len() - 2;
    out.resize(out.len() + last, b'.');
    out.extend_from_slice(b"\r\n");
    assert_eq!(out.len(), SIZE);
    out
}

#[test]
fn smtplib_ten_mib_message_with_dot_lines() {
    let server = Server::maildir(&[]);
    let content = big_content();
    let work = tempfile::tempdir().unwrap();
    let file = write_file(work.path(), "big.eml", &content);
    let out = python(
        &script(
            "msg = open(sys.argv[2], 'rb').read()\n\
             print(s.sendmail('big@example.org', ['sink@example.org'], msg))\n\
             s.quit()\n",
        ),
        &[&server.port().to_string(), &file],
    );
    assert_eq!(out, "{}\n");
    let message = only_message(&server);
    assert_eq!(message.mail_from, "big@example.org");
    assert_eq!(message.rcpt_to, ["sink@example.org"]);
    assert_bytes_eq(&message.content, &content, "10 MiB message");
}

#[test]
fn swaks_pipelining() {
    require_tool("swaks", "--version");
    let server = Server::maildir(&[]);
    let work = tempfile::tempdir().unwrap();
    // swaks sends LF as CRLF and ends the data with CRLF . CRLF itself.
    let file = write_file(
        work.path(),
        "swaks.eml",
        b"From: swaks@example.org\nTo: rcpt@example.org\nSubject: swaks pipelining\n\n\
          .a dotted line\nbody",
    );
    let output = Command::new("swaks")
        .args(["--server", &server.addr.to_string()])
        .args(["--helo", "client.example"])
        .args(["--from", "swaks@example.org"])
        .args(["--to", "rcpt@example.org,second@example.org"])
        .arg("--pipeline")
        .args(["--data", &format!("@{file}")])
        .output()
        .expect("run swaks");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "swaks failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // Pipelined: all envelope commands and DATA go out before the first reply comes back.
    let group = " -> MAIL FROM:<swaks@example.org>\n\
                 \x20-> RCPT TO:<rcpt@example.org>\n\
                 \x20-> RCPT TO:<second@example.org>\n\
                 \x20-> DATA\n\
                 <-  250 2.1.0 OK\n\
                 <-  250 2.1.5 OK\n\
                 <-  250 2.1.5 OK\n\
                 <-  354 End data with <CR><LF>.<CR><LF>\n";
    assert!(stdout.contains(group), "swaks did not pipeline:\n{stdout}");
    assert!(stdout.contains("<-  250-PIPELINING\n"), "{stdout}");
    assert!(
        stdout.contains("<-  250 2.0.0 OK\n -> QUIT\n<-  221 2.0.0 Bye\n"),
        "{stdout}"
    );
    let message = only_message(&server);
    assert_eq!(message.mail_from, "swaks@example.org");
    assert_eq!(message.rcpt_to, ["rcpt@example.org", "second@example.org"]);
    assert_bytes_eq(
        &message.content,
        b"From: swaks@example.org\r\nTo: rcpt@example.org\r\nSubject: swaks pipelining\r\n\r\n\
          .a dotted line\r\nbody\r\n",
        "swaks message",
    );
}

#[test]
fn curl_smtp_upload() {
    require_tool("curl", "--version");
    let server = Server::maildir(&[]);
    let work = tempfile::tempdir().unwrap();
    let content: &[u8] = b"From: a@b\r\nTo: c@d\r\nSubject: curl upload\r\n\r\n\
        .curl must dot-stuff this\r\n.\r\nend\r\n";
    let file = write_file(work.path(), "curl.eml", content);
    let output = Command::new("curl")
        .args(["-s", "-S"])
        .arg(format!("smtp://{}", server.addr))
        .args(["--mail-from", "a@b", "--mail-rcpt", "c@d", "-T", &file])
        .output()
        .expect("run curl");
    assert!(
        output.status.success(),
        "curl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let message = only_message(&server);
    assert_eq!(message.mail_from, "a@b");
    assert_eq!(message.rcpt_to, ["c@d"]);
    assert_bytes_eq(&message.content, content, "curl upload");
}

/// Sends the same messages to Python 3.11's own `smtpd -c DebuggingServer` and to ours; the
/// two print the same text. Needs a Python that still has `smtpd` (3.11 or older).
#[test]
fn debugging_server_output_matches_python_smtpd() {
    let server = Server::start(&[]);
    let reference = ["python3.11", "python3"]
        .into_iter()
        .find(|python| {
            Command::new(python)
                .args(["-W", "ignore", "-c", "import smtpd"])
                .output()
                .is_ok_and(|output| output.status.success())
        })
        .expect("a Python with the smtpd module (3.11 or older) must be installed");
    let driver = r#"
import smtplib, socket, subprocess, sys, time
python, ours = sys.argv[1], int(sys.argv[2])
probe = socket.socket(); probe.bind(('127.0.0.1', 0)); theirs = probe.getsockname()[1]; probe.close()
ref = subprocess.Popen([python, '-u', '-W', 'ignore', '-m', 'smtpd', '-n', '-u', '-c', 'DebuggingServer',
                        '127.0.0.1:%d' % theirs], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
deadline = time.time() + 20
while True:
    try:
        socket.create_connection(('127.0.0.1', theirs), timeout=1).close(); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.05)
messages = [
    b'Subject: hi\r\n\r\nhello\r\n',
    b'no headers at all just body\r\nline2\r\n',
    b'Subject: only headers\r\nFrom: x\r\n',
    b'\r\nbody after blank\r\n',
    b'Subject: x\r\n\r\n.leading dot\r\n..two\r\n.\r\n',
    b'Subject: bin\r\n\r\n\x00\x01\xff\xfe binary \\ it\'s "q"\r\n',
    'Subject: \u00fcmlaut\r\n\r\nh\u00e9llo \u2713\r\n'.encode(),
    b'Subject: a\r\n\r\n',
    b'',
    b'Subject: a\r\n\r\n\r\n\r\nx\r\n\r\n',
    b'A: 1\r\n B-cont\r\n\r\nb\r\n',
    b'Subject: trailing no newline',
    b'Subject: long\r\n\r\n' + b'y' * 998 + b'\r\n',
    b'From: a@example.org\r\r\nSubject: cr cr lf\r\n\r\nbody\r\r\n',
    b'Subject: bare cr\r\rafter\rx\r\n',
    b'Subject: bare lf\nafter\n\nx\r\n',
]
for port in (theirs, ours):
    for message in messages:
        s = smtplib.SMTP('127.0.0.1', port, local_hostname='client.example', timeout=30)
        assert s.sendmail('a@example.org', ['d@example.org', 'g@example.org'], message) == {}
        s.quit()
    s = smtplib.SMTP('127.0.0.1', port, local_hostname='client.example', timeout=30)
    s.ehlo()
    s.sendmail('\u00fc@example.org', ['d@\u00e9.example'], 'Subject: u\r\n\r\n\u00fc\r\n'.encode(),
               mail_options=['SMTPUTF8'])
    s.quit()
    for options in (['BODY=8BITMIME'], ['body=7bit', 'SMTPUTF8'], ['SMTPUTF8', 'Body=8BitMime']):
        s = smtplib.SMTP('127.0.0.1', port, local_hostname='client.example', timeout=30)
        s.ehlo()
        s.sendmail('a@example.org', ['d@example.org'], b'S: o\r\n\r\nb\r\n', mail_options=options)
        s.quit()
    s = smtplib.SMTP('127.0.0.1', port, local_hostname='client.example', timeout=30)
    s.helo('client.example')
    s.sendmail('a@example.org', ['d@example.org'], b'S: 1\r\n\r\nb\r\n')
    s.quit()
time.sleep(0.5)
ref.terminate()
sys.stdout.write(ref.communicate(timeout=10)[0].decode('utf-8', 'replace'))
"#;
    let expected = python(driver, &[reference, &server.port().to_string()]);
    let end = "------------ END MESSAGE ------------";
    let messages = expected.matches(end).count();
    assert_eq!(messages, 21, "Python printed:\n{expected}");
    assert!(
        server
            .stdout
            .wait_for(Duration::from_secs(5), |text| text.matches(end).count()
                == messages),
        "ours printed:\n{}",
        server.stdout.text()
    );
    assert_eq!(server.stdout.text(), expected);
}

#[test]
fn debugging_server_prints_message() {
    // No --maildir: the default class, DebuggingServer, prints to stdout. With -s the
    // server advertises SIZE, as Python's does.
    let server = Server::start(&["-s", "100000"]);
    let content = b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: debug\r\n\r\n\
        Hello, it's me.\r\n..dot\r\n";
    let work = tempfile::tempdir().unwrap();
    let file = write_file(work.path(), "debug.eml", content);
    let out = python(
        &script(
            "msg = open(sys.argv[2], 'rb').read()\n\
             print(s.sendmail('alice@example.org', ['bob@example.org'], msg))\n\
             s.quit()\n",
        ),
        &[&server.port().to_string(), &file],
    );
    assert_eq!(out, "{}\n");
    let end = "------------ END MESSAGE ------------\n";
    assert!(
        server
            .stdout
            .wait_for(Duration::from_secs(5), |text| text.contains(end)),
        "no END MESSAGE on stdout: {:?}",
        server.stdout.text()
    );
    // smtplib sends SIZE=<length>; the server prints it like Python's smtpd.
    let expected = format!(
        "---------- MESSAGE FOLLOWS ----------\n\
         mail options: ['SIZE={}']\n\
         b'From: alice@example.org'\n\
         b'To: bob@example.org'\n\
         b'Subject: debug'\n\
         b'X-Peer: 127.0.0.1'\n\
         b''\n\
         b\"Hello, it's me.\"\n\
         b'..dot'\n\
         {end}",
        content.len()
    );
    assert_eq!(server.stdout.text(), expected);
}
