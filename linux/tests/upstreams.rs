//! `smtpd -c PureProxy` in front of the real MTAs people relay to: a Postfix instance of the
//! test's own (its `smtpd`, queue and `virtual` delivery into a maildir) and aiosmtpd; and
//! Postfix's SMTP client relaying into our maildir server.
//!
//! Postfix must be installed and the tests run as root (Postfix's master starts as root and
//! runs its daemons as the `postfix` user). aiosmtpd is imported by `$AIOSMTPD_PYTHON`, else
//! by `python3`. `.ci/run` provides both.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, python, require_tool, with_peer, Server};

/// How long an upstream may take to store a message it accepted.
const STORE_PATIENCE: Duration = Duration::from_secs(30);

/// A Postfix instance with its own configuration, queue and data directories in a temporary
/// directory, on a free loopback port. It leaves the headers it receives as they are, and
/// stops when dropped.
struct Postfix {
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Postfix {
    /// An instance that stores mail for `example.com` and `example.org` (any local part) in
    /// the maildir `mail/box/` and relays nowhere else (`554 5.7.1`); `settings` are more
    /// `main.cf` lines.
    fn storing(settings: &str) -> Postfix {
        Postfix::start(&format!(
            "smtpd_relay_restrictions = reject_unauth_destination\n\
             virtual_mailbox_domains = example.com example.org\n\
             virtual_mailbox_base = {{root}}/mail\n\
             virtual_mailbox_maps = static:box/\n\
             virtual_uid_maps = static:{NOBODY}\n\
             virtual_gid_maps = static:{NOBODY}\n\
             {settings}"
        ))
    }

    /// An instance that relays all mail from loopback clients to `next_hop`.
    fn relaying_to(next_hop: SocketAddr) -> Postfix {
        Postfix::start(&format!(
            "smtpd_relay_restrictions = permit_mynetworks, reject\n\
             relayhost = [{}]:{}\n\
             smtp_dns_support_level = disabled",
            next_hop.ip(),
            next_hop.port()
        ))
    }

    /// Starts an instance; `settings` are more `main.cf` lines, where `{root}` stands for
    /// its directory.
    fn start(settings: &str) -> Postfix {
        require_tool("postconf", "mail_version");
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "starting a Postfix instance needs root"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Postfix's daemons run as `postfix`, its delivery as `nobody`: both must get in.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["conf", "queue", "data", "mail"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        run(Command::new("chown").arg("postfix").arg(root.join("data")));
        std::os::unix::fs::chown(root.join("mail"), Some(NOBODY), Some(NOBODY)).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        std::fs::write(
            root.join("conf/main.cf"),
            format!(
                "compatibility_level = 3.6\n\
                 queue_directory = {root}/queue\n\
                 data_directory = {root}/data\n\
                 maillog_file_prefixes = {root}\n\
                 maillog_file = {root}/maillog\n\
                 mail_owner = postfix\n\
                 myhostname = upstream.test\n\
                 mydestination =\n\
                 inet_interfaces = 127.0.0.1\n\
                 inet_protocols = ipv4\n\
                 mynetworks = 127.0.0.0/8\n\
                 smtpd_peername_lookup = no\n\
                 local_header_rewrite_clients =\n\
                 alias_maps =\n\
                 {settings}\n",
                root = root.display(),
                settings = settings.replace("{root}", &root.display().to_string()),
            ),
        )
        .unwrap();
        std::fs::write(root.join("conf/master.cf"), master_cf(addr)).unwrap();
        let postfix = Postfix { dir, addr };
        assert!(
            postfix.control("start"),
            "postfix start:\n{}",
            postfix.log()
        );
        assert!(
            common::wait_until_accepts(addr, Duration::from_secs(30)),
            "Postfix did not start:\n{}",
            postfix.log()
        );
        postfix
    }

    /// Runs `postfix <command>` for this instance; whether it succeeded.
    fn control(&self, command: &str) -> bool {
        Command::new("postfix")
            .arg(command)
            .env("MAIL_CONFIG", self.dir.path().join("conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// The stored messages, once there are `count` (or after [`STORE_PATIENCE`]).
    fn stored(&self, count: usize) -> Vec<Vec<u8>> {
        wait_for_files(&self.dir.path().join("mail/box/new"), count, |_| true)
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.control("stop");
    }
}

/// The user Postfix stores mail as.
const NOBODY: u32 = 65534;

/// The system's `master.cf` with the SMTP service on `addr` and no daemon chrooted (a
/// chroot would need copies of system files in the queue directory).
fn master_cf(addr: SocketAddr) -> String {
    let system = std::fs::read_to_string("/etc/postfix/master.cf").expect("Postfix's master.cf");
    let mut out = String::new();
    for line in system.lines() {
        let mut fields: Vec<&str> = line.split_whitespace().collect();
        let service = line.starts_with(|c: char| c.is_ascii_alphanumeric()) && fields.len() >= 8;
        if service {
            let listen = addr.to_string();
            if fields[0] == "smtp" && fields[1] == "inet" {
                fields[0] = &listen;
            }
            fields[4] = "n";
            out.push_str(&fields.join(" "));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn run(command: &mut Command) {
    let status = command.status().expect("run a set-up command");
    assert!(status.success(), "{command:?}: {status}");
}

/// The files in `dir`, sorted by name; none if it does not exist yet.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|entry| entry.unwrap().path()).collect())
        .unwrap_or_default();
    paths.sort();
    paths
}

/// The contents of the files in `dir` that are `stored`, in name order, once there are
/// `count` (or after [`STORE_PATIENCE`]).
fn wait_for_files(dir: &Path, count: usize, stored: impl Fn(&Path) -> bool) -> Vec<Vec<u8>> {
    let paths = || -> Vec<PathBuf> {
        let mut paths = files(dir);
        paths.retain(|path| stored(path));
        paths
    };
    let deadline = Instant::now() + STORE_PATIENCE;
    while paths().len() < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Anything stored beyond `count` would arrive about now.
    std::thread::sleep(Duration::from_millis(300));
    paths()
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect()
}

/// `text` with LF line ends, as Postfix stores it.
fn unix_lines(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for (i, &octet) in text.iter().enumerate() {
        if !(octet == b'\r' && text.get(i + 1) == Some(&b'\n')) {
            out.push(octet);
        }
    }
    out
}

/// The value of the first header field `name` in a stored message.
fn field<'a>(message: &'a [u8], name: &str) -> &'a str {
    let text = std::str::from_utf8(message).expect("stored headers are UTF-8");
    let prefix = format!("{name}: ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {text:.2000}"))
}

/// Checks a message Postfix stored for `to`, relayed by `relay.example` for
/// `client.example`: Postfix's fields, then the relay's trace field, then `content` with
/// `X-Peer` added, byte for byte.
fn check_stored(message: &[u8], to: &str, content: &[u8]) {
    let shown = String::from_utf8_lossy(&message[..message.len().min(3000)]);
    assert_eq!(field(message, "Delivered-To"), to, "{shown}");
    let text = String::from_utf8_lossy(message);
    // Postfix's trace field names the relay as it greeted (EHLO relay.example).
    assert!(
        text.contains(
            "Received: from relay.example (unknown [127.0.0.1])\n\tby upstream.test (Postfix)"
        ),
        "{shown}"
    );
    let ours = "Received: from client.example ([127.0.0.1])\n\tby relay.example (smtpd-rs) with ";
    let at = text.find(ours).unwrap_or_else(|| panic!("{shown}"));
    let end_of_trace = at + text[at..].find(" +0000\n").unwrap() + " +0000\n".len();
    assert!(
        message[end_of_trace..] == unix_lines(&with_peer(content)),
        "content changed on the way:\n{shown}"
    );
}

/// PureProxy to `upstream`, greeting it as `relay.example`.
fn relay_to(upstream: SocketAddr) -> Server {
    Server::relay(&upstream.to_string(), &["--hostname", "relay.example"])
}

#[test]
fn postfix_stores_each_message_as_the_client_sent_it() {
    let postfix = Postfix::storing("");
    let relay = relay_to(postfix.addr);
    let first = b"From: <s@example.org>\r\nTo: <a@example.com>\r\nSubject: one\r\n\
                  Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\n\
                  .dot\r\n..two dots\r\n\xc3\xa9t\xc3\xa9 8-bit\r\n.\r\nend\r\n";
    let second = "From: <j\u{f6}rg@example.org>\r\nTo: <d\u{f6}rte@example.com>\r\n\
                  Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\nDate: Sun, 29 Nov 2026 12:00:01 +0000\r\n\
                  Message-ID: <2@example.org>\r\n\r\nGr\u{fc}\u{df}e\r\n";
    let file = postfix.dir.path().join("first.eml");
    std::fs::write(&file, first).unwrap();
    let out = python(
        "import smtplib, sys\n\
         s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.example')\n\
         refused = s.sendmail('s@example.org', ['a@example.com', 'x@elsewhere.test', \
                              'b@example.org'], open(sys.argv[2], 'rb').read(), \
                              mail_options=['BODY=8BITMIME'])\n\
         print(sorted((r, c) for r, (c, _) in refused.items()))\n\
         print(s.sendmail('j\u{f6}rg@example.org', ['d\u{f6}rte@example.com'], \
                          sys.argv[3].encode(), mail_options=['SMTPUTF8', 'BODY=8BITMIME']))\n\
         s.quit()\n",
        &[
            &relay.addr.port().to_string(),
            &file.display().to_string(),
            second,
        ],
    );
    assert_eq!(
        out,
        "[('x@elsewhere.test', 554)]\n{}\n",
        "{}",
        postfix.log()
    );
    let stored = postfix.stored(3);
    assert_eq!(stored.len(), 3, "{}", postfix.log());
    for to in ["a@example.com", "b@example.org"] {
        let message = stored
            .iter()
            .find(|m| field(m, "Delivered-To") == to)
            .unwrap_or_else(|| panic!("nothing for {to}:\n{}", postfix.log()));
        check_stored(message, to, first);
        assert_eq!(field(message, "Return-Path"), "<s@example.org>");
    }
    let international = stored
        .iter()
        .find(|m| field(m, "Return-Path") == "<j\u{f6}rg@example.org>")
        .unwrap_or_else(|| panic!("no SMTPUTF8 message:\n{}", postfix.log()));
    check_stored(international, "d\u{f6}rte@example.com", second.as_bytes());
    assert!(String::from_utf8_lossy(international).contains(") with UTF8SMTP; "));
}

#[test]
fn a_message_postfix_refuses_is_refused_to_the_client_and_the_session_goes_on() {
    let postfix = Postfix::storing("message_size_limit = 100000");
    let relay = relay_to(postfix.addr);
    let small = b"Subject: small\r\n\r\nfits\r\n";
    let mut client = relay.client();
    client.envelope("s@example.org", &["a@example.com"]);
    let big = [&b"Subject: big\r\n\r\n"[..], &b"x".repeat(78).repeat(2000)].concat();
    let big: Vec<u8> = big
        .chunks(78)
        .flat_map(|line| [line, b"\r\n"].concat())
        .collect();
    let reply = client.data(&big);
    assert!(reply.starts_with("552 5.3.4 "), "{reply}");
    client.envelope("s@example.org", &["a@example.com"]);
    let reply = client.data(small);
    assert!(reply.starts_with("250 "), "{reply}");
    client.expect("QUIT", "221");
    let stored = postfix.stored(1);
    assert_eq!(stored.len(), 1, "{}", postfix.log());
    check_stored(&stored[0], "a@example.com", small);
}

#[test]
fn many_clients_through_the_relay_into_postfix_each_message_stored_once() {
    let postfix = Postfix::storing("");
    let relay = relay_to(postfix.addr);
    const CLIENTS: usize = 10;
    const EACH: usize = 5;
    let sent: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let relay = &relay;
                scope.spawn(move || {
                    let mut client = relay.client();
                    (0..EACH)
                        .map(|m| {
                            let subject = format!("c{c}-m{m}");
                            client.envelope("s@example.org", &["a@example.com"]);
                            let content = format!("Subject: {subject}\r\n\r\nbody\r\n");
                            let reply = client.data(content.as_bytes());
                            assert!(reply.starts_with("250 "), "{subject}: {reply}");
                            subject
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let stored = postfix.stored(CLIENTS * EACH);
    let mut subjects: Vec<&str> = stored.iter().map(|m| field(m, "Subject")).collect();
    subjects.sort_unstable();
    let mut expected: Vec<&str> = sent.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(subjects, expected, "{}", postfix.log());
}

/// The content of a message Postfix relayed: its trace field (checked), then the content.
fn after_postfix_trace(content: &[u8]) -> &[u8] {
    let text = String::from_utf8_lossy(content);
    assert!(
        text.starts_with("Received: from client.example (unknown [127.0.0.1])\r\n\tby upstream.test (Postfix) with "),
        "{:.500}",
        text
    );
    let end = text.find(" (UTC)\r\n").unwrap() + " (UTC)\r\n".len();
    &content[end..]
}

#[test]
fn postfix_relays_into_our_server() {
    // Postfix's SMTP client (PIPELINING, SIZE, BODY=8BITMIME, SMTPUTF8) as our client.
    let ours = Server::maildir(&["-s", "10000000"]);
    let postfix = Postfix::relaying_to(ours.addr);
    let mut plain = b"From: <s@example.org>\r\nTo: <a@far.example>\r\nSubject: plain\r\n\
                      Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <p@example.org>\r\n\r\n\
                      .dot\r\n..two dots\r\n.\r\n\xc3\xa9t\xc3\xa9 8-bit\r\n"
        .to_vec();
    for line in 0..2000 {
        plain.extend_from_slice(format!(".{line:04} of a longer message\r\n").as_bytes());
    }
    let international = "From: <j\u{f6}rg@example.org>\r\nTo: <d\u{f6}rte@far.example>\r\n\
                         Subject: hi\r\nDate: Sun, 29 Nov 2026 12:00:01 +0000\r\n\
                         Message-ID: <i@example.org>\r\n\r\nGr\u{fc}\u{df}e\r\n";
    let file = postfix.dir.path().join("plain.eml");
    std::fs::write(&file, &plain).unwrap();
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.example')
print(s.sendmail('s@example.org', ['a@far.example', 'b@far.example'],
                 open(sys.argv[2], 'rb').read(), mail_options=['BODY=8BITMIME']))
print(s.sendmail('j\u00f6rg@example.org', ['d\u00f6rte@far.example'], sys.argv[3].encode(),
                 mail_options=['SMTPUTF8', 'BODY=8BITMIME']))
s.quit()
"#,
        &[
            &postfix.addr.port().to_string(),
            &file.display().to_string(),
            international,
        ],
    );
    assert_eq!(out, "{}\n{}\n");
    let delivered = ours.wait_delivered(2, STORE_PATIENCE);
    assert_eq!(delivered.len(), 2, "{}", postfix.log());
    let from = |sender: &str| {
        delivered
            .iter()
            .find(|m| m.mail_from == sender)
            .unwrap_or_else(|| panic!("nothing from {sender}: {delivered:?}"))
            .clone()
    };
    let (mut plain_one, international_one) = (from("s@example.org"), from("j\u{f6}rg@example.org"));
    plain_one.rcpt_to.sort();
    assert_eq!(plain_one.rcpt_to, ["a@far.example", "b@far.example"]);
    assert!(
        after_postfix_trace(&plain_one.content) == plain,
        "content changed on the way"
    );
    assert_eq!(international_one.rcpt_to, ["d\u{f6}rte@far.example"]);
    assert_eq!(
        after_postfix_trace(&international_one.content),
        international.as_bytes()
    );
}

/// aiosmtpd with a handler that refuses `refused@` recipients (`550`), defers messages with
/// `Subject: defer` (`451`), and stores the others in `dir` as `<n>.eml`: a line with the
/// sender, one with the recipients, one with the MAIL parameters, then the content.
struct Aiosmtpd {
    child: Child,
    _stdin: ChildStdin,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

const AIOSMTPD: &str = r#"
import os, sys
from aiosmtpd.controller import Controller

class Store:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, options):
        if address.startswith('refused@'):
            return '550 5.1.1 No such user here'
        envelope.rcpt_tos.append(address)
        return '250 2.1.5 OK'

    async def handle_DATA(self, server, session, envelope):
        if b'\r\nSubject: defer\r\n' in b'\r\n' + envelope.content:
            return '451 4.3.0 Try again later'
        self.count += 1
        path = os.path.join(self.directory, '%d.eml' % self.count)
        with open(path + '.tmp', 'wb') as out:
            out.write(envelope.mail_from.encode() + b'\n')
            out.write(' '.join(envelope.rcpt_tos).encode() + b'\n')
            out.write(' '.join(envelope.mail_options).encode() + b'\n')
            out.write(envelope.content)
        os.rename(path + '.tmp', path)
        return '250 2.0.0 Stored'

controller = Controller(Store(sys.argv[2]), hostname='127.0.0.1', port=int(sys.argv[1]),
                        enable_SMTPUTF8=True, decode_data=False)
controller.start()
print('ready', flush=True)
sys.stdin.read()
controller.stop()
"#;

impl Aiosmtpd {
    fn start() -> Aiosmtpd {
        let python = std::env::var("AIOSMTPD_PYTHON").unwrap_or_else(|_| "python3".into());
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut child = Command::new(&python)
            .args(["-c", AIOSMTPD, &addr.port().to_string()])
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{python}: {e}"));
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready, "ready\n", "aiosmtpd did not start ({python})");
        let stdin = child.stdin.take().unwrap();
        Aiosmtpd {
            child,
            _stdin: stdin,
            addr,
            dir,
        }
    }

    /// The stored messages as (sender, recipients, MAIL parameters, content), once there
    /// are `count` (or after [`STORE_PATIENCE`]).
    fn stored(&self, count: usize) -> Vec<(String, String, String, Vec<u8>)> {
        let eml = |path: &Path| path.extension().is_some_and(|e| e == "eml");
        let mut stored: Vec<_> = wait_for_files(self.dir.path(), count, eml)
            .iter()
            .map(|bytes| {
                let mut parts = bytes.splitn(4, |&b| b == b'\n');
                let mut text = || String::from_utf8(parts.next().unwrap().to_vec()).unwrap();
                let (from, to, params) = (text(), text(), text());
                (from, to, params, parts.next().unwrap().to_vec())
            })
            .collect();
        stored.sort();
        stored
    }
}

impl Drop for Aiosmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What aiosmtpd stored for a message from `client.example`: the relay's trace field
/// (checked), then the content.
fn after_trace(content: &[u8]) -> &[u8] {
    let text = String::from_utf8_lossy(content);
    assert!(
        text.starts_with(
            "Received: from client.example ([127.0.0.1])\r\n\tby relay.example (smtpd-rs) with "
        ),
        "{:.500}",
        text
    );
    let end = text.find(" +0000\r\n").unwrap() + " +0000\r\n".len();
    &content[end..]
}

#[test]
fn aiosmtpd_stores_each_message_byte_for_byte() {
    let upstream = Aiosmtpd::start();
    let relay = relay_to(upstream.addr);
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    let mut line = 0u32;
    while big.len() < 10 << 20 {
        line += 1;
        big.extend_from_slice(format!(".{line} \u{e9}t\u{e9}\r\n..\r\n.\r\n").as_bytes());
    }
    let file = upstream.dir.path().join("big");
    std::fs::write(&file, &big).unwrap();
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.example')
refused = s.sendmail('s@example.org', ['a@example.com', 'refused@example.com', 'b@example.com'],
                     open(sys.argv[2], 'rb').read(), mail_options=['BODY=8BITMIME'])
print(sorted((r, c) for r, (c, _) in refused.items()))
print(s.sendmail('j\u00f6rg@example.org', ['d\u00f6rte@example.com'],
                 'Subject: hi\r\n\r\nGr\u00fc\u00dfe\r\n'.encode(),
                 mail_options=['SMTPUTF8', 'BODY=8BITMIME']))
try:
    s.sendmail('s@example.org', ['a@example.com'], b'Subject: defer\r\n\r\nlater\r\n')
except smtplib.SMTPDataError as e:
    print(e.smtp_code, e.smtp_error.decode())
s.quit()
"#,
        &[&relay.addr.port().to_string(), &file.display().to_string()],
    );
    assert_eq!(
        out,
        "[('refused@example.com', 550)]\n{}\n451 4.3.0 Try again later\n"
    );
    let stored = upstream.stored(2);
    assert_eq!(stored.len(), 2);
    let (from, to, params, content) = &stored[0];
    assert_eq!(
        (from.as_str(), to.as_str(), params.as_str()),
        (
            "j\u{f6}rg@example.org",
            "d\u{f6}rte@example.com",
            "BODY=8BITMIME SMTPUTF8"
        )
    );
    assert_eq!(
        after_trace(content),
        with_peer("Subject: hi\r\n\r\nGr\u{fc}\u{df}e\r\n".as_bytes())
    );
    let (from, to, params, content) = &stored[1];
    assert_eq!(
        (from.as_str(), to.as_str(), params.as_str()),
        (
            "s@example.org",
            "a@example.com b@example.com",
            "BODY=8BITMIME"
        )
    );
    assert!(after_trace(content) == with_peer(&big), "10 MiB changed");
}

#[test]
fn aiosmtpd_without_pipelining_gets_one_command_at_a_time() {
    // A pipelining client's batch reaches an upstream that does not offer PIPELINING one
    // command at a time, each answered in turn.
    let upstream = Aiosmtpd::start();
    let relay = relay_to(upstream.addr);
    let mut client = relay.client();
    client.expect("EHLO client.example", "250");
    client.send(
        b"MAIL FROM:<s@example.org>\r\nRCPT TO:<refused@example.com>\r\n\
          RCPT TO:<a@example.com>\r\nDATA\r\n",
    );
    for code in ["250", "550", "250", "354"] {
        let reply = client.reply();
        assert!(reply.starts_with(code), "{code}: {reply}");
    }
    client.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\n");
    assert!(client.reply().starts_with("250 2.0.0 Stored"));
    client.expect("QUIT", "221");
    let stored = upstream.stored(1);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1, "a@example.com");
    assert_eq!(
        after_trace(&stored[0].3),
        with_peer(b"Subject: pipelined\r\n\r\nbody\r\n")
    );
}
