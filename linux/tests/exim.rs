//! Exim 4 as our client: a real RFC 3030 client, which sends each message with BDAT when
//! CHUNKING is offered (pipelining MAIL, RCPT, `BDAT n LAST` and QUIT).
//!
//! Exim comes unpacked from Debian's `exim4-daemon-light` (installing it would remove
//! Postfix); `$EXIM` names its binary, and `.ci/run` provides it. It runs as root in a mount
//! namespace of its own, where its compiled-in user `Debian-exim` exists (as `mail`) and its
//! compiled-in path `/usr/sbin/exim4`, which it executes again to deliver, is the unpacked
//! binary.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Delivered, Server};

/// An Exim with its own configuration, spool and logs in a temporary directory, routing
/// all mail to one of our servers.
struct Exim {
    dir: tempfile::TempDir,
    sbin: PathBuf,
}

impl Exim {
    /// `transport` are more options of its SMTP transport.
    fn relaying_to(server: &Server, transport: &str) -> Exim {
        let binary = PathBuf::from(std::env::var_os("EXIM").expect(
            "$EXIM: an unpacked exim4 binary (see .ci/run), run as root in a mount namespace",
        ));
        let sbin = binary.parent().unwrap().to_path_buf();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (file, entry) in [
            (
                "passwd",
                "Debian-exim:x:8:8::/nonexistent:/usr/sbin/nologin\n",
            ),
            ("group", "Debian-exim:x:8:\n"),
        ] {
            let mut system = std::fs::read(Path::new("/etc").join(file)).unwrap();
            system.extend_from_slice(entry.as_bytes());
            std::fs::write(root.join(file), system).unwrap();
        }
        for sub in ["spool", "log"] {
            std::fs::create_dir(root.join(sub)).unwrap();
            let mail = 8;
            std::os::unix::fs::chown(root.join(sub), Some(mail), Some(mail)).unwrap();
        }
        std::fs::write(
            root.join("exim.conf"),
            format!(
                "primary_hostname = exim.test\n\
                 exim_user = mail\n\
                 exim_group = mail\n\
                 spool_directory = {root}/spool\n\
                 log_file_path = {root}/log/%slog\n\
                 keep_environment =\n\
                 host_lookup =\n\
                 tls_advertise_hosts =\n\
                 received_header_text = Received: by exim.test id $message_exim_id\n\
                 begin routers\n\
                 to_smtpd:\n  driver = manualroute\n  route_list = * 127.0.0.1::{port} byname\n  \
                 self = send\n  transport = to_smtpd\n\
                 begin transports\n\
                 to_smtpd:\n  driver = smtp\n  port = {port}\n  allow_localhost\n  \
                 hosts_try_chunking = *\n  hosts_try_fastopen =\n  hosts_avoid_tls = *\n  \
                 hosts_try_dane =\n  hosts_try_prdr =\n  command_timeout = 30s\n  \
                 data_timeout = 30s\n{transport}\n\
                 begin retry\n*   *   F,1h,10m\n",
                root = root.display(),
                port = server.addr.port(),
            ),
        )
        .unwrap();
        Exim { dir, sbin }
    }

    /// `exim -odf -oi -f <from> <to...>` with `message` on its input: the message is
    /// delivered (or refused) when this returns.
    fn send(&self, from: &str, to: &[&str], message: &[u8]) -> Output {
        let mut child = Command::new("timeout")
            .args(["60", "unshare", "-m", "sh", "-c"])
            .arg(
                "dir=$1 sbin=$2; shift 2; \
                 mount --bind \"$dir/passwd\" /etc/passwd && mount --bind \"$dir/group\" /etc/group \
                 && mount --bind \"$sbin\" /usr/sbin && exec /usr/sbin/exim4 -C \"$dir/exim.conf\" \"$@\"",
            )
            .arg("sh")
            .arg(self.dir.path())
            .arg(&self.sbin)
            .args(["-odf", "-oi", "-f", from])
            .args(to)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run exim");
        child.stdin.take().unwrap().write_all(message).unwrap();
        child.wait_with_output().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/mainlog")).unwrap_or_default()
    }
}

/// A delivered message without Exim's trace field (checked), with its continuation lines,
/// at its top.
fn after_exim_trace(message: &Delivered) -> &[u8] {
    let content = &message.content;
    assert!(
        content.starts_with(b"Received: by exim.test id "),
        "{:?}",
        String::from_utf8_lossy(&content[..content.len().min(300)])
    );
    let mut end = 0;
    loop {
        end += content[end..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap()
            + 2;
        if !matches!(content.get(end), Some(b' ' | b'\t')) {
            return &content[end..];
        }
    }
}

/// About 3 MiB of CRLF lines: lines of just `.` or `..`, lines that start with a dot,
/// 8-bit octets, empty lines; the last line is `.`.
fn awkward_message() -> Vec<u8> {
    let mut message = b"From: <sender@example.org>\r\nTo: <a@example.com>\r\nSubject: awkward\r\n\
                        Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <a@example.org>\r\n\
                        MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
                        Content-Transfer-Encoding: 8bit\r\n\r\n"
        .to_vec();
    let mut line = 0usize;
    while message.len() < 3 << 20 {
        line += 1;
        match line % 5 {
            0 => message.extend_from_slice(b".\r\n"),
            1 => message.extend_from_slice(b"..\r\n"),
            2 => message.extend_from_slice(format!(".{line} Gr\u{fc}\u{df}e\r\n").as_bytes()),
            3 => message.extend_from_slice(b"\r\n"),
            _ => {
                let octets = (0..line % 900).map(|i| 0xa0 + (i % 0x60) as u8);
                message.extend(octets);
                message.extend_from_slice(b"\r\n");
            }
        }
    }
    message.extend_from_slice(b".\r\n");
    message
}

#[test]
fn exim_sends_with_bdat_and_we_store_each_message_byte_for_byte() {
    let server = Server::maildir(&["-d"]);
    let exim = Exim::relaying_to(&server, "");
    let awkward = awkward_message();
    let recipients = [
        "a@example.com",
        "b@example.com",
        "c@example.net",
        "d@example.net",
        "e@example.com",
    ];
    let sent = exim.send("sender@example.org", &recipients, &awkward);
    assert!(sent.status.success(), "{sent:?}\n{}", exim.log());
    let international = "From: <j\u{f6}rg@b\u{fc}cher.example>\r\n\
                         To: <\u{3b4}\u{3bf}\u{3ba}@\u{3c0}\u{3b1}\u{3c1}.example>\r\n\
                         Subject: Gr\u{fc}\u{df}e\r\nDate: Sun, 29 Nov 2026 12:00:01 +0000\r\n\
                         Message-ID: <i@example.org>\r\n\r\nUTF-8 \u{2603}\r\n";
    let sent = exim.send(
        "j\u{f6}rg@b\u{fc}cher.example",
        &["\u{3b4}\u{3bf}\u{3ba}@\u{3c0}\u{3b1}\u{3c1}.example"],
        international.as_bytes(),
    );
    assert!(sent.status.success(), "{sent:?}\n{}", exim.log());

    let delivered = server.wait_delivered(2, Duration::from_secs(10));
    assert_eq!(delivered.len(), 2, "{}", exim.log());
    let from = |sender: &str| delivered.iter().find(|m| m.mail_from == sender).unwrap();
    let first = from("sender@example.org");
    assert_eq!(first.rcpt_to, recipients);
    assert!(after_exim_trace(first) == awkward, "3 MiB message changed");
    let second = from("j\u{f6}rg@b\u{fc}cher.example");
    assert_eq!(
        second.rcpt_to,
        ["\u{3b4}\u{3bf}\u{3ba}@\u{3c0}\u{3b1}\u{3c1}.example"]
    );
    assert_eq!(after_exim_trace(second), international.as_bytes());
    // The content came in BDAT chunks, and the envelope with SMTPUTF8.
    let utf8_mail = "> SMTPUTF8\\r\\n";
    server
        .stderr
        .wait_for(Duration::from_secs(5), |log| log.contains(utf8_mail));
    let traffic = server.stderr.text();
    assert!(traffic.contains(utf8_mail), "{traffic:.3000}");
    assert!(traffic.contains("BDAT "), "{traffic:.3000}");
    assert!(!traffic.contains("\\r\\nDATA\\r\\n"), "{traffic:.3000}");
}

#[test]
fn a_size_refusal_during_bdat_stores_nothing() {
    // Exim declares 60,000 octets less than it sends, so the 552 comes at `BDAT n LAST`,
    // after the chunk, not at MAIL.
    let server = Server::maildir(&["-s", "100000"]);
    let exim = Exim::relaying_to(&server, "  size_addition = -60000");
    let mut message = b"Subject: too big\r\n\r\n".to_vec();
    while message.len() < 150_000 {
        message.extend_from_slice(&[b'x'; 78]);
        message.extend_from_slice(b"\r\n");
    }
    exim.send("sender@example.org", &["a@example.com"], &message);
    let log = exim.log();
    assert!(
        log.contains("after end of data: 552 5.3.4 Error: Too much mail data"),
        "{log}"
    );
    // (Exim's bounce declares SIZE=-58380, which we refuse: nothing arrives at all.)
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.delivered(), [], "{log}");
    assert!(server.files_in("tmp").is_empty());
}
