//! `smtpd -c MailmanProxy` with a real Mailman 3: list mail goes to Mailman over LMTP and
//! Mailman's distribution arrives at the members (through our own maildir server, Mailman's
//! outgoing SMTP server), while other recipients are relayed to the same server.
//!
//! Mailman comes from `$MAILMAN` (its `mailman` command), else from PATH; `.ci/run`
//! installs it from PyPI into a virtual environment.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, python, scripted_server, Server};

/// A running Mailman 3 (its master and runners), stopped when dropped.
struct Mailman {
    command: PathBuf,
    config: PathBuf,
    lmtp: String,
    _dir: tempfile::TempDir,
}

impl Mailman {
    /// Starts Mailman with its outgoing mail going to `smtp`, and creates the list
    /// `ant@example.com` with the member `member@example.org`.
    fn start(smtp: &Server) -> Mailman {
        let command =
            std::env::var_os("MAILMAN").map_or_else(|| PathBuf::from("mailman"), PathBuf::from);
        let dir = tempfile::tempdir().unwrap();
        let lmtp_port = free_port();
        let config = dir.path().join("mailman.cfg");
        std::fs::write(
            &config,
            format!(
                "[mailman]\nlayout: here\nsite_owner: owner@example.com\n\n\
                 [paths.here]\nvar_dir: {var}\n\n\
                 [mta]\nincoming: mailman.mta.null.NullMTA\n\
                 lmtp_host: 127.0.0.1\nlmtp_port: {lmtp_port}\n\
                 smtp_host: 127.0.0.1\nsmtp_port: {smtp_port}\n\n\
                 [webservice]\nport: {rest_port}\n\n[runner.rest]\nstart: no\n",
                var = dir.path().join("var").display(),
                smtp_port = smtp.port(),
                rest_port = free_port(),
            ),
        )
        .unwrap();
        let mailman = Mailman {
            command,
            config,
            lmtp: format!("127.0.0.1:{lmtp_port}"),
            _dir: dir,
        };
        mailman.run(&["start"], None);
        assert!(
            common::wait_until_accepts(mailman.lmtp.parse().unwrap(), Duration::from_secs(60)),
            "Mailman's LMTP runner did not start"
        );
        mailman.run(&["create", "ant@example.com"], None);
        mailman.run(
            &["addmembers", "-", "ant@example.com"],
            Some("member@example.org\n"),
        );
        mailman
    }

    /// `mailman -C <config> [--run-as-root] args`, which must succeed. Its output goes to a
    /// file: `start` leaves daemons behind that would hold a pipe open.
    fn run(&self, args: &[&str], input: Option<&str>) {
        let log = self.config.with_file_name("command.log");
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {:?} ({e}): these tests need Mailman 3 \
                     (`pip install mailman`, then MAILMAN=<its mailman command>)",
                    self.command
                )
            });
        if let Some(input) = input {
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "mailman {args:?}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.command);
        command.arg("-C").arg(&self.config);
        if unsafe { libc::geteuid() } == 0 {
            command.arg("--run-as-root");
        }
        command
    }
}

impl Drop for Mailman {
    fn drop(&mut self) {
        let mut command = Command::new(&self.command);
        command.arg("-C").arg(&self.config);
        if unsafe { libc::geteuid() } == 0 {
            command.arg("--run-as-root");
        }
        let _ = command
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The maildir's message whose envelope recipients include `to` and whose content has
/// `needle`, once it arrived (60 s at most).
fn wait_for(server: &Server, to: &str, needle: &str) -> common::Delivered {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = common::read_maildir(server.maildir_path())
            .into_iter()
            .find(|m| m.rcpt_to.iter().any(|r| r == to) && text(&m.content).contains(needle))
        {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing for {to} arrived"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn list_mail_goes_through_mailman_and_the_rest_is_relayed() {
    let smtp = Server::maildir(&[]);
    let mailman = Mailman::start(&smtp);
    let proxy = Server::relaying(
        "MailmanProxy",
        &smtp.addr.to_string(),
        &["--lmtp", &mailman.lmtp],
    );
    let out = python(
        "import smtplib, sys\n\
         s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.example')\n\
         post = b'From: member@example.org\\r\\nTo: ant@example.com\\r\\nSubject: to the list\\r\\n\\r\\n.dotted\\r\\nhello list\\r\\n'\n\
         print(s.sendmail('member@example.org', ['ant@example.com', 'other@example.net'], post))\n\
         print(s.sendmail('member@example.org', ['ant@example.com', 'Ant@Example.COM'], b'From: member@example.org\\r\\nTo: ant@example.com\\r\\nSubject: named twice\\r\\n\\r\\nonce\\r\\n'))\n\
         print(s.sendmail('member@example.org', ['other@example.net', 'ant-bogus@example.com'], b'Subject: relayed\\r\\n\\r\\nhello other\\r\\n'))\n\
         print(s.sendmail('member@example.org', ['x@example.net', 'ant@example.com'], b'Subject: mixed\\r\\n\\r\\nx\\r\\n'))\n\
         try: s.sendmail('member@example.org', ['ant@example.com'], b'Subject: utf8\\r\\n\\r\\nx\\r\\n', mail_options=['SMTPUTF8'])\n\
         except smtplib.SMTPRecipientsRefused as e: print(e.recipients)\n\
         print(s.sendmail('späm@exämple.org', ['ütf@exämple.net'], b'Subject: utf8 relayed\\r\\n\\r\\ny\\r\\n', mail_options=['SMTPUTF8']))\n\
         s.quit()\n",
        &[&proxy.addr.port().to_string()],
    );
    let one_place = "(452, b'4.5.3 Error: a mailing list takes a message of its own; \
                     send to this recipient separately')";
    // Mailman's LMTP runner does not offer SMTPUTF8: a list cannot take such a message (the
    // refusal is not taken to mean "not a list"), while other recipients are relayed.
    let no_utf8 = "(550, b'5.6.7 Error: the next hop does not support SMTPUTF8')";
    assert_eq!(
        out,
        format!(
            "{{'other@example.net': {one_place}}}\n{{}}\n{{}}\n{{'ant@example.com': {one_place}}}\n\
             {{'ant@example.com': {no_utf8}}}\n{{}}\n"
        )
    );
    // Mailman took the post and sent it to the list's member, through the maildir server.
    let distributed = wait_for(&smtp, "member@example.org", "to the list");
    assert_eq!(distributed.mail_from, "ant-bounces@example.com");
    let content = text(&distributed.content);
    assert!(content.contains("List-Id: <ant.example.com>"), "{content}");
    assert!(content.contains("Subject: [Ant] to the list"), "{content}");
    assert!(content.contains("\n.dotted\r\nhello list\r\n"), "{content}");
    // Not a list (a bogus sub-address either): relayed, with X-Peer as by PureProxy.
    let relayed = wait_for(&smtp, "other@example.net", "");
    assert_eq!(
        relayed.rcpt_to,
        ["other@example.net", "ant-bogus@example.com"]
    );
    let relayed = text(&relayed.content);
    let (trace, content) = relayed.split_once(" +0000\r\n").unwrap();
    assert!(
        trace.starts_with("Received: from client.example ([127.0.0.1])\r\n\tby "),
        "{trace}"
    );
    assert_eq!(
        content,
        "Subject: relayed\r\nX-Peer: 127.0.0.1\r\n\r\nhello other\r\n"
    );
    let mixed = wait_for(&smtp, "x@example.net", "");
    assert_eq!(mixed.rcpt_to, ["x@example.net"]);
    let utf8 = wait_for(&smtp, "ütf@exämple.net", "");
    assert_eq!(utf8.mail_from, "späm@exämple.org");
    assert!(text(&utf8.content).contains(" with UTF8SMTP; "));
    assert!(text(&utf8.content).contains("utf8 relayed"));
    // The list named twice in one transaction is one post, so one copy for the member.
    wait_for(&smtp, "member@example.org", "Subject: [Ant] named twice");
    std::thread::sleep(Duration::from_secs(3));
    let copies = common::read_maildir(smtp.maildir_path())
        .into_iter()
        .filter(|m| text(&m.content).contains("Subject: [Ant] named twice"))
        .count();
    assert_eq!(copies, 1);
}

#[test]
fn without_mailman_recipients_are_deferred() {
    let smtp = Server::maildir(&[]);
    let nobody = format!("127.0.0.1:{}", free_port());
    let proxy = Server::relaying("MailmanProxy", &smtp.addr.to_string(), &["--lmtp", &nobody]);
    let mut client = proxy.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    client.expect("RCPT TO:<ant@example.com>", "451 4.4.1");
    client.expect("RCPT TO:<other@example.net>", "451 4.4.1");
    client.expect("DATA", "503 ");
    client.expect("QUIT", "221 ");
    assert!(smtp.files_in("new").is_empty());
}

#[test]
fn a_lost_lmtp_session_is_opened_again_with_the_mail() {
    let smtp = Server::maildir(&[]);
    let (lmtp, script) = scripted_server(&[
        &[
            "250 lmtp\r\n",
            "250 2.1.0 ok\r\n",
            "421 4.3.2 going down\r\n",
        ],
        // Any 2xx takes the recipient as Mailman's (RFC 2033 4.2: one reply after the
        // content for each); then the message is the list's alone.
        &[
            "250 lmtp\r\n",
            "250 2.1.0 ok\r\n",
            "251 2.1.5 will forward\r\n",
            "221 bye\r\n",
        ],
    ]);
    let proxy = Server::relaying("MailmanProxy", &smtp.addr.to_string(), &["--lmtp", &lmtp]);
    let mut client = proxy.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    client.expect("RCPT TO:<one@lists.example>", "451 4.3.2 going down");
    client.expect("RCPT TO:<fwd@lists.example>", "251 2.1.5 will forward");
    client.expect("RCPT TO:<two@lists.example>", "452 4.5.3");
    client.expect("QUIT", "221 ");
    let sessions = script.join().unwrap();
    let hostname = &sessions[0][0];
    assert!(hostname.starts_with("LHLO "), "{sessions:?}");
    assert_eq!(
        sessions[1],
        [
            hostname.as_str(),
            "MAIL FROM:<a@b.example>",
            "RCPT TO:<fwd@lists.example>",
            "QUIT"
        ]
    );
}

#[test]
fn an_lmtp_reply_neither_yes_nor_no_routes_nothing() {
    // A 3xx to RCPT would be taken as acceptance, with nowhere to send the content.
    let smtp = Server::maildir(&[]);
    let (lmtp, script) = scripted_server(&[&["250 lmtp\r\n", "250 2.1.0 ok\r\n", "354 odd\r\n"]]);
    let proxy = Server::relaying("MailmanProxy", &smtp.addr.to_string(), &["--lmtp", &lmtp]);
    let mut client = proxy.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    client.expect("RCPT TO:<odd@lists.example>", "451 4.4.1");
    client.expect("DATA", "503 ");
    client.expect("QUIT", "221 ");
    assert_eq!(script.join().unwrap()[0].len(), 3);
    assert!(smtp.files_in("new").is_empty());
}

#[test]
fn lists_take_mail_from_anyone_and_the_rest_only_from_relay_clients() {
    // 127.0.0.1 is outside the relay networks; the upstream is down, so a relayed recipient
    // would get 451, not 550 5.7.1.
    let smtp = Server::maildir(&[]);
    let (lmtp, script) = scripted_server(&[&[
        "250 lmtp\r\n",
        "250 2.1.0 ok\r\n",
        "550 5.1.1 no such list\r\n",
        "250 2.1.5 ok\r\n",
        "221 bye\r\n",
    ]]);
    let down = format!("127.0.0.1:{}", free_port());
    let proxy = Server::relaying(
        "MailmanProxy",
        &down,
        &["--lmtp", &lmtp, "--relay-networks", "10.0.0.0/8"],
    );
    let mut client = proxy.client();
    client.expect("EHLO client.example", "250");
    client.expect("MAIL FROM:<a@b.example>", "250 ");
    client.expect("RCPT TO:<other@example.net>", "550 5.7.1");
    client.expect("RCPT TO:<ant@lists.example>", "250 2.1.5");
    client.expect("QUIT", "221 ");
    let sessions = script.join().unwrap();
    assert_eq!(
        sessions[0][1..],
        [
            "MAIL FROM:<a@b.example>",
            "RCPT TO:<other@example.net>",
            "RCPT TO:<ant@lists.example>",
            "QUIT"
        ]
    );
    assert!(smtp.files_in("new").is_empty());
}
