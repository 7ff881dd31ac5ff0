//! Operational behaviour of the `smtpd` binary: timeouts, the connection cap, graceful
//! shutdown, disconnects in the middle of DATA, and command line errors.

mod common;

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Server, BIN};

/// Asserts `elapsed` lies in `[low, high]` seconds.
fn assert_between(elapsed: Duration, low: f64, high: f64, what: &str) {
    let secs = elapsed.as_secs_f64();
    assert!(
        (low..=high).contains(&secs),
        "{what} after {secs:.3} s, expected {low}..{high} s"
    );
}

/// Polls `check` every 20 ms until it returns true or `timeout` passes.
fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn command_timeout_closes_idle_connection() {
    let server = Server::maildir(&["--command-timeout", "1"]);
    // A first session brings the runtimes up; then count the server's descriptors.
    let mut warm_up = server.client();
    warm_up.expect("QUIT", "221 ");
    warm_up.expect_eof(Duration::from_secs(2));
    thread::sleep(Duration::from_millis(300));
    let fds = server.open_fds();
    let mut client = server.client();
    let greeted = Instant::now();
    client.set_read_timeout(Duration::from_secs(10));
    let reply = client.reply();
    assert_between(greeted.elapsed(), 0.8, 3.0, "command timeout");
    assert!(reply.starts_with("421 4.4.2 "), "{reply:?}");
    assert!(reply.contains("timeout"), "{reply:?}");
    client.expect_eof(Duration::from_secs(2));
    // The server has let go of the socket, although the client never closed its side.
    assert!(
        eventually(Duration::from_secs(2), || server.open_fds() <= fds),
        "server holds {} descriptors, {fds} before the connection",
        server.open_fds()
    );
    drop(client);
    assert!(
        server.stderr.wait_for(Duration::from_secs(2), |log| log
            .contains("outcome=TimedOut")),
        "{}",
        server.stderr.text()
    );

    // The timer restarts with every reply: a session that keeps talking stays.
    let mut client = server.client();
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(500));
        client.expect("NOOP", "250 ");
    }
    client.expect("QUIT", "221 ");
}

#[test]
fn data_timeout_aborts_message() {
    let server = Server::maildir(&["--data-timeout", "1"]);
    let mut client = server.client();
    client.envelope("slow@example.org", &["rcpt@example.org"]);
    client.expect("DATA", "354 ");
    client.send(b"Subject: slow\r\n\r\nhalf a mess");
    let silent = Instant::now();
    client.set_read_timeout(Duration::from_secs(10));
    let reply = client.reply();
    assert_between(silent.elapsed(), 0.8, 3.0, "data timeout");
    assert!(reply.starts_with("421 4.4.2 "), "{reply:?}");
    client.expect_eof(Duration::from_secs(2));
    assert!(
        eventually(Duration::from_secs(3), || server.files_in("tmp").is_empty()),
        "DIR/tmp keeps {:?}",
        server.files_in("tmp")
    );
    assert_eq!(server.files_in("new"), Vec::<String>::new(), "delivered");
}

#[test]
fn connection_cap() {
    let server = Server::maildir(&["--max-connections", "2"]);
    let mut first = server.client();
    let mut second = server.client();

    let mut third = Client::connect(server.addr);
    assert_eq!(third.reply(), "421 4.3.2 Too many connections");
    third.expect_eof(Duration::from_secs(2));

    first.expect("QUIT", "221 ");
    first.expect_eof(Duration::from_secs(2));
    // The place is free once the server has finished with the first session.
    let mut replies = Vec::new();
    let mut fourth = None;
    let freed = eventually(Duration::from_secs(3), || {
        let mut client = Client::connect(server.addr);
        let reply = client.reply();
        let ok = reply.starts_with("220 ");
        replies.push(reply);
        if ok {
            fourth = Some(client);
        }
        ok
    });
    assert!(freed, "no 220 after a session ended: {replies:?}");
    let mut fourth = fourth.unwrap();

    // Both sessions work.
    second.expect("NOOP", "250 ");
    fourth.envelope("a@example.org", &["b@example.org"]);
    assert!(fourth
        .data(b"Subject: cap\r\n\r\nok\r\n")
        .starts_with("250 "));
    fourth.expect("QUIT", "221 ");
    second.expect("QUIT", "221 ");
    assert_eq!(server.delivered().len(), 1);
}

#[test]
fn graceful_shutdown_lets_transactions_finish() {
    let mut server = Server::maildir(&["--shutdown-grace", "10"]);
    let mut busy = server.client();
    busy.envelope("busy@example.org", &["rcpt@example.org"]);
    let mut idle = server.client();
    idle.expect("EHLO idle.example", "250");

    server.signal(libc::SIGTERM);
    let signalled = Instant::now();

    // An idle session is ended at once.
    idle.set_read_timeout(Duration::from_secs(5));
    let reply = idle.reply();
    assert_between(signalled.elapsed(), 0.0, 1.0, "idle session's 421");
    assert!(reply.starts_with("421 4.3.2 "), "{reply:?}");
    idle.expect_eof(Duration::from_secs(2));

    // The listeners are closed: new connections are refused.
    let mut last = None;
    let refused = eventually(Duration::from_secs(2), || {
        match TcpStream::connect(server.addr) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => true,
            other => {
                last = Some(format!("{other:?}"));
                false
            }
        }
    });
    assert!(refused, "still accepting after SIGTERM: {last:?}");

    // The open transaction may still finish: its message is delivered.
    let content = b"Subject: in flight\r\n\r\ndelivered during shutdown\r\n";
    let reply = busy.data(content);
    assert!(reply.starts_with("250 "), "{reply:?}");
    // Then the session is idle and is ended too.
    let reply = busy.reply();
    assert!(reply.starts_with("421 4.3.2 "), "{reply:?}");
    busy.expect_eof(Duration::from_secs(2));

    let status = server.wait_exit(Duration::from_secs(5));
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "exit waited for the grace period although no session was left"
    );
    let status = status.expect("smtpd did not exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status}: {}", server.stderr.text());

    let delivered = server.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].mail_from, "busy@example.org");
    assert_eq!(delivered[0].rcpt_to, ["rcpt@example.org"]);
    assert_eq!(delivered[0].content, content);
}

#[test]
fn shutdown_grace_ends_stalled_transaction() {
    let mut server = Server::maildir(&["--shutdown-grace", "1"]);
    let mut stalled = server.client();
    stalled.envelope("stalled@example.org", &["rcpt@example.org"]);
    grace_period_ends_the_session(&mut server, &mut stalled, libc::SIGTERM);
}

#[test]
fn shutdown_grace_ends_stalled_data() {
    let mut server = Server::maildir(&["--shutdown-grace", "1"]);
    let mut stalled = server.client();
    stalled.envelope("stalled@example.org", &["rcpt@example.org"]);
    stalled.expect("DATA", "354 ");
    stalled.send(b"Subject: never finished\r\n\r\nhalf");
    // A hangup (the terminal closed) stops the server like SIGTERM.
    grace_period_ends_the_session(&mut server, &mut stalled, libc::SIGHUP);
}

/// `signal` with a 1 s grace: the stalled session gets `421 4.3.2` after about a second and
/// is closed, the server exits 0, and nothing of the unfinished transaction is delivered.
fn grace_period_ends_the_session(server: &mut Server, stalled: &mut Client, signal: i32) {
    server.signal(signal);
    let signalled = Instant::now();
    stalled.set_read_timeout(Duration::from_secs(10));
    let reply = stalled.reply();
    assert_between(signalled.elapsed(), 0.8, 3.0, "421 after the grace period");
    assert!(reply.starts_with("421 4.3.2 "), "{reply:?}");
    stalled.expect_eof(Duration::from_secs(2));

    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("smtpd did not exit after the grace period");
    assert_eq!(status.code(), Some(0), "{status}: {}", server.stderr.text());
    assert!(
        server.files_in("new").is_empty(),
        "aborted message delivered"
    );
    assert!(
        server.files_in("tmp").is_empty(),
        "aborted message left in tmp"
    );
}

#[test]
fn disconnect_mid_data_delivers_nothing() {
    let server = Server::maildir(&[]);
    let mut client = server.client();
    client.envelope("gone@example.org", &["rcpt@example.org"]);
    client.expect("DATA", "354 ");
    // The message file is open in tmp/ from DATA on.
    assert_eq!(server.files_in("tmp").len(), 1, "no file in DIR/tmp");
    client.send(b"Subject: half\r\n\r\nfirst half of the body\r\n");
    client.send(
        &vec![b'x'; 200 * 1024]
            .chunks(900)
            .fold(Vec::new(), |mut v, c| {
                v.extend_from_slice(c);
                v.extend_from_slice(b"\r\n");
                v
            }),
    );
    thread::sleep(Duration::from_millis(200));
    client.shutdown();
    drop(client);

    assert!(
        eventually(Duration::from_secs(3), || server.files_in("tmp").is_empty()),
        "DIR/tmp keeps {:?}",
        server.files_in("tmp")
    );
    thread::sleep(Duration::from_millis(200));
    assert!(
        server.files_in("new").is_empty(),
        "half a message delivered"
    );
    assert!(server.files_in("tmp").is_empty());

    // The server carries on.
    let mut client = server.client();
    client.envelope("next@example.org", &["rcpt@example.org"]);
    assert!(client
        .data(b"Subject: whole\r\n\r\nok\r\n")
        .starts_with("250 "));
    client.expect("QUIT", "221 ");
    assert_eq!(server.delivered().len(), 1);
}

#[test]
fn a_message_that_cannot_be_stored_gets_451_and_leaves_no_file() {
    let server = Server::maildir(&[]);
    let new = server.maildir_path().join("new");
    // The rename into DIR/new fails.
    std::fs::remove_dir(&new).unwrap();
    let mut client = server.client();
    client.envelope("a@example.org", &["rcpt@example.org"]);
    let reply = client.data(b"Subject: lost\r\n\r\nnot stored\r\n");
    assert!(reply.starts_with("451 4.3.0 "), "{reply:?}");
    assert!(server.files_in("tmp").is_empty(), "file left in DIR/tmp");

    // Once the directory is back, the same session delivers.
    std::fs::create_dir(&new).unwrap();
    client.expect("MAIL FROM:<a@example.org>", "250 ");
    client.expect("RCPT TO:<rcpt@example.org>", "250 ");
    let reply = client.data(b"Subject: again\r\n\r\nstored\r\n");
    assert!(reply.starts_with("250 "), "{reply:?}");
    assert_eq!(server.delivered().len(), 1);
    assert!(server.files_in("tmp").is_empty());
    // Private to the server's user, named after this host (maildir(5)).
    let name = &server.files_in("new")[0];
    let mode = std::fs::metadata(new.join(name)).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(name.ends_with(&format!(".{}", host.trim())), "{name}");
}

/// Runs the binary to completion (killed after `timeout`).
fn run(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn smtpd");
    let exited = eventually(timeout, || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    assert!(exited, "smtpd {args:?} did not exit within {timeout:?}");
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    let maildir = tempfile::tempdir().unwrap();
    let dir = maildir.path().display().to_string();
    for (args, mention) in [
        (vec!["-c", "NoSuchClass", "127.0.0.1:0"], "NoSuchClass"),
        (vec!["127.0.0.1:0", "upstream"], "upstream"),
        (vec!["127.0.0.1:0", "upstream:smtp"], "upstream:smtp"),
        (
            vec!["-c", "MailmanProxy", "--lmtp", "mailman", "127.0.0.1:0"],
            "--lmtp",
        ),
        (vec!["--hostname", " ", "127.0.0.1:0"], "--hostname"),
        (
            vec!["-c", "DebuggingServer", "--maildir", &dir, "127.0.0.1:0"],
            "DebuggingServer",
        ),
    ] {
        let output = run(&args, Duration::from_secs(10));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.starts_with("smtpd: error: "), "{stderr:?}");
        assert!(stderr.contains(mention), "{args:?}: {stderr:?}");
        assert!(output.stdout.is_empty(), "{:?}", text(&output.stdout));
    }
}

#[test]
fn an_empty_host_listens_on_every_ipv4_interface() {
    // Python's `smtpd :PORT` binds ('', PORT).
    let port = common::free_port();
    let mut child = Command::new(BIN)
        .args(["-c", "Sink", &format!(":{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn smtpd");
    let stderr = common::Captured::spawn(child.stderr.take().unwrap());
    let listening = format!("listening addr=0.0.0.0:{port}");
    let up = stderr.wait_for(Duration::from_secs(10), |log| log.contains(&listening));
    let greeted = up
        && Client::connect(([127, 0, 0, 1], port).into())
            .reply()
            .starts_with("220 ");
    let _ = child.kill();
    let _ = child.wait();
    assert!(up && greeted, "{}", stderr.text());
}

#[test]
fn zero_for_a_limit_or_timeout_is_refused_at_startup() {
    // 0 would refuse every connection, recipient or command, so it is a usage error; so
    // are periods of more than a year (deadlines that would overflow the clock).
    for (option, value) in [
        ("--max-connections", "0"),
        ("--max-recipients", "0"),
        ("--command-timeout", "0"),
        ("--data-timeout", "0"),
        ("--command-timeout", "18446744073709551615"),
        ("--data-timeout", "9223372036854775808"),
        ("--shutdown-grace", "31536001"),
    ] {
        let output = run(&[option, value, "127.0.0.1:0"], Duration::from_secs(10));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{option}: {stderr}");
        assert!(stderr.contains(option), "{option}: {stderr}");
    }
}

#[test]
fn python_style_repeated_flags_are_accepted() {
    let server = Server::start(&["-n", "-n", "-c", "Sink", "-c", "Sink"]);
    let mut client = server.client();
    client.expect("NOOP", "250 ");
}

#[test]
fn port_in_use_is_an_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let maildir = tempfile::tempdir().unwrap();
    let dir = maildir.path().display().to_string();
    for args in [vec![addr.as_str()], vec!["--maildir", &dir, &addr]] {
        let output = run(&args, Duration::from_secs(10));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: stderr: {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("smtpd: error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{stderr:?}");
        assert!(errors[0].contains("cannot listen"), "{stderr:?}");
    }
    drop(taken);
}

#[test]
fn version_flag() {
    for flag in ["-V", "--version"] {
        let output = run(&[flag], Duration::from_secs(10));
        assert!(output.status.success(), "{flag}: {}", output.status);
        assert_eq!(
            text(&output.stdout),
            format!("smtpd {}\n", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}

#[test]
fn one_log_line_per_message_and_per_session() {
    let server = Server::maildir(&["-s", "100"]);
    let mut client = server.client();
    client.expect("EHLO client.example", "250");
    client.envelope(
        "alice@example.org",
        &["bob@example.net", "carol@example.net"],
    );
    assert!(client
        .data(b"Subject: logged\r\n\r\nhello\r\n")
        .starts_with("250"));
    // Too big: refused, and logged with its envelope.
    client.expect("MAIL FROM:<dave@example.org>", "250 ");
    client.expect("RCPT TO:<erin@example.net>", "250 ");
    assert!(client.data(&[b'x'; 300]).starts_with("552 "));
    client.envelope("alice@example.org", &["bob@example.net"]);
    client.send(b"DATA\r\n");
    assert!(client.reply().starts_with("354"));
    client.send(b"partial body\r\n");
    client.shutdown();
    let complete = |text: &str| text.contains(" session ");
    assert!(
        server.stderr.wait_for(Duration::from_secs(5), complete),
        "no session line: {}",
        server.stderr.text()
    );
    let log = server.stderr.text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" message ")).collect();
    assert_eq!(lines.len(), 3, "{log}");
    for field in [
        "peer=127.0.0.1:",
        "from=\"alice@example.org\"",
        "to=bob@example.net,carol@example.net",
        "size=26",
        "outcome=250",
        "ms=",
    ] {
        assert!(lines[0].contains(field), "{field} missing: {}", lines[0]);
    }
    for field in [
        "from=\"dave@example.org\"",
        "to=erin@example.net",
        "outcome=\"aborted: TooBig\"",
    ] {
        assert!(lines[1].contains(field), "{field} missing: {}", lines[1]);
    }
    for field in [
        "from=\"alice@example.org\"",
        "to=bob@example.net",
        "size=14",
        "outcome=\"aborted: Disconnected\"",
    ] {
        assert!(lines[2].contains(field), "{field} missing: {}", lines[2]);
    }
    let session = log.lines().find(|l| l.contains(" session ")).unwrap();
    assert!(session.contains("messages=1"), "{session}");
    assert!(session.contains("outcome=Disconnected"), "{session}");
    // Text lines start with an RFC 3339 UTC timestamp and the level.
    let (stamp, rest) = session.split_once(' ').unwrap();
    assert!(stamp.len() == 27 && stamp.ends_with('Z'), "{stamp}");
    assert!(rest.trim_start().starts_with("INFO"), "{rest}");
}

/// A client that floods pipelined commands and never reads its replies must not stall the
/// other sessions of its thread, and is dropped once it has left its replies unread for the
/// command timeout.
/// Context switches of all the process's threads so far (each is a wake-up).
fn wake_ups(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .map(|task| {
            let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
            status
                .lines()
                .filter(|line| line.contains("ctxt_switches:"))
                .map(|line| {
                    line.split_whitespace()
                        .last()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                })
                .sum::<u64>()
        })
        .sum()
}

#[test]
fn an_idle_server_wakes_no_thread() {
    // After serving (which leaves log lines to flush and a connection's timer behind), an
    // idle server sleeps: no periodic flushing or polling.
    let server = Server::maildir(&[]);
    let mut client = server.client();
    client.envelope("a@example.org", &["b@example.net"]);
    assert!(client.data(b"Subject: x\r\n\r\nx\r\n").starts_with("250"));
    client.expect("QUIT", "221");
    thread::sleep(Duration::from_millis(500));
    let before = wake_ups(server.pid());
    thread::sleep(Duration::from_secs(2));
    let woken = wake_ups(server.pid()) - before;
    assert!(woken <= 2, "{woken} wake-ups in 2 s of idleness");
}

#[test]
fn a_peer_that_never_reads_cannot_starve_others() {
    let server = Server::maildir(&["--threads", "1", "--command-timeout", "2"]);
    let mut flooder = TcpStream::connect(server.addr).unwrap();
    flooder
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let burst = b"NOOP\r\n".repeat(100_000);
    let started = Instant::now();
    let mut sent = 0usize;
    // Send until the server stops taking input (its replies fill both socket buffers).
    while started.elapsed() < Duration::from_secs(5) {
        match std::io::Write::write(&mut flooder, &burst) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("flooder: {e}"),
        }
    }
    assert!(sent > 1_000_000, "only {sent} bytes taken");
    // Meanwhile an ordinary session on the same thread is served at once.
    let quick = Instant::now();
    let mut client = server.client();
    client.expect("EHLO client.example", "250");
    client.envelope("alice@example.org", &["bob@example.net"]);
    assert!(client
        .data(b"Subject: meanwhile\r\n\r\nstill served\r\n")
        .starts_with("250"));
    client.expect("QUIT", "221");
    assert!(
        quick.elapsed() < Duration::from_secs(2),
        "{:?}",
        quick.elapsed()
    );
    assert_eq!(server.wait_delivered(1, Duration::from_secs(2)).len(), 1);
    // The flooder is disconnected after leaving its replies unread for the timeout.
    let fds = server.open_fds();
    let dropped = eventually(Duration::from_secs(6), || server.open_fds() < fds);
    assert!(dropped, "the flooding connection is still open");
    // Logged as the timeout it is, not as a client that left.
    let timed_out = |log: &str| {
        log.lines()
            .any(|l| l.contains(" session ") && l.contains("outcome=TimedOut"))
    };
    assert!(
        server.stderr.wait_for(Duration::from_secs(6), timed_out),
        "{}",
        server.stderr.text()
    );
}

/// A child process that is killed and reaped however the test ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// The output of the server that a test holds as a pipe, read only when the test chooses.
enum Held {
    Stdout,
    Stderr,
}

/// Starts smtpd with `args` on a free loopback port, the `held` output piped and the other
/// discarded; returns once it accepts connections.
fn start_holding(held: Held, args: &[&str]) -> (Reaped, std::net::SocketAddr) {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], common::free_port()).into();
    let (stdout, stderr) = match held {
        Held::Stdout => (Stdio::piped(), Stdio::null()),
        Held::Stderr => (Stdio::null(), Stdio::piped()),
    };
    let child = Command::new(BIN)
        .args(args)
        .arg(addr.to_string())
        .env("RUST_LOG", "info")
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    let child = Reaped(child);
    assert!(common::wait_until_accepts(addr, Duration::from_secs(10)));
    (child, addr)
}

/// A new session on `addr` is greeted, answered, and ended by a 2 s command timeout.
fn served_and_timed_out(addr: std::net::SocketAddr) {
    let mut client = Client::connect(addr);
    client.set_read_timeout(Duration::from_secs(5));
    assert!(client.reply().starts_with("220 "));
    client.expect("NOOP", "250 ");
    client.set_read_timeout(Duration::from_secs(6));
    let reply = client.reply();
    assert!(reply.starts_with("421 4.4.2 "), "{reply:?}");
}

/// Reads `pipe` to its end on another thread.
fn read_all(mut pipe: impl std::io::Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

#[test]
fn a_stderr_nobody_reads_never_stalls_the_server() {
    // Never read until the end: the pipe (64 KiB) fills after a few hundred log lines.
    let (mut child, addr) = start_holding(
        Held::Stderr,
        &[
            "-c",
            "Sink",
            "--command-timeout",
            "2",
            "--log-format",
            "json",
        ],
    );
    let started = Instant::now();
    // Over 100 octets of log per session: more than the 1 MiB the server holds back.
    for session in 0..12_000 {
        let mut client = Client::connect(addr);
        client.set_read_timeout(Duration::from_secs(5));
        let greeting = client.reply();
        assert!(
            greeting.starts_with("220 "),
            "session {session}: {greeting:?}"
        );
        client.expect("QUIT", "221 ");
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "sessions slowed down"
    );
    served_and_timed_out(addr);

    // Once stderr is read again, the server says how many lines it dropped.
    let reader = read_all(child.stderr.take().unwrap());
    thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let text = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    let notice = text.lines().find(|line| line.contains("log lines dropped"));
    let notice = notice.unwrap_or_else(|| panic!("{}", &text[text.len().saturating_sub(500)..]));
    assert!(notice.contains("\"dropped\":"), "{notice}");
    // Every line is a JSON object, the notice too.
    for line in text.lines() {
        assert!(line.starts_with('{') && line.ends_with('}'), "{line:?}");
    }
}

#[test]
fn a_stdout_nobody_reads_holds_up_only_the_messages_to_print() {
    let (mut child, addr) = start_holding(
        Held::Stdout,
        &["-c", "DebuggingServer", "--command-timeout", "2"],
    );
    // 4 KiB messages until one is not answered: stdout (a 64 KiB pipe) is full.
    let body = format!(
        "Subject: filler\r\n\r\n{}",
        ("x".repeat(98) + "\r\n").repeat(40)
    );
    let mut waiting = None;
    for _ in 0..100 {
        let mut client = Client::connect(addr);
        client.set_read_timeout(Duration::from_secs(5));
        client.reply();
        client.envelope("a@example.org", &["b@example.org"]);
        client.expect("DATA", "354 ");
        client.send(body.as_bytes());
        client.send(b".\r\n");
        client.set_read_timeout(Duration::from_millis(500));
        match client.try_reply() {
            Ok(reply) => assert!(reply.starts_with("250 "), "{reply:?}"),
            Err(_) => {
                waiting = Some(client);
                break;
            }
        }
    }
    let mut waiting = waiting.expect("stdout never filled up");
    // Meanwhile other sessions are served, and deadlines fire.
    served_and_timed_out(addr);

    // Reading stdout lets the waiting message through.
    let reader = read_all(child.stdout.take().unwrap());
    waiting.set_read_timeout(Duration::from_secs(5));
    let reply = waiting.reply();
    assert!(reply.starts_with("250 "), "{reply:?}");
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    reader.join().unwrap();
}

#[test]
fn a_stopped_server_frees_its_port_at_once() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    for round in 0..5 {
        let mut child = Reaped(
            Command::new(BIN)
                .args(["-c", "Sink", &addr])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        assert!(
            common::wait_until_accepts(addr.parse().unwrap(), Duration::from_secs(10)),
            "round {round}: not listening: {}",
            std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default()
        );
        let mut client = Client::connect(addr.parse().unwrap());
        client.reply();
        client.expect("QUIT", "221 ");
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        assert!(child.wait().unwrap().success(), "round {round}");
    }
}

#[test]
fn long_lines_and_bare_newlines_follow_the_command_line() {
    let long_line = format!("Subject: long\r\n\r\n{}\r\n", "y".repeat(5000));
    let bare = b"Subject: bare\r\n\r\nunix\nline\nend\r\n.\r\n".to_vec();

    // Defaults: no line limit (as in Python); bare newlines stored as CRLF.
    let server = Server::maildir(&[]);
    let mut client = server.client();
    client.envelope("a@example.org", &["b@example.org"]);
    assert!(client.data(long_line.as_bytes()).starts_with("250 "));
    client.expect("MAIL FROM:<a@example.org>", "250 ");
    client.expect("RCPT TO:<b@example.org>", "250 ");
    client.expect("DATA", "354 ");
    client.send(&bare);
    assert!(client.reply().starts_with("250 "));
    let delivered = server.wait_delivered(2, Duration::from_secs(5));
    let mut contents: Vec<&[u8]> = delivered.iter().map(|m| m.content.as_slice()).collect();
    contents.sort_by_key(|content| content.len());
    assert_eq!(contents[0], b"Subject: bare\r\n\r\nunix\r\nline\r\nend\r\n");
    assert_eq!(contents[1], long_line.as_bytes());

    // Strict: RFC 5321's 1000-octet lines, and bare newlines refused.
    let server = Server::maildir(&["--max-line-length", "1000", "--bare-newline", "reject"]);
    let mut client = server.client();
    client.envelope("a@example.org", &["b@example.org"]);
    let reply = client.data(long_line.as_bytes());
    assert!(reply.starts_with("500 5.5.2 "), "{reply:?}");
    client.expect("MAIL FROM:<a@example.org>", "250 ");
    client.expect("RCPT TO:<b@example.org>", "250 ");
    client.expect("DATA", "354 ");
    client.send(&bare);
    let reply = client.reply();
    assert!(reply.starts_with("550 5.5.2 "), "{reply:?}");
    client.expect("NOOP", "250 ");
    assert!(server.delivered().is_empty());
}

#[test]
fn debug_flag_logs_the_traffic() {
    let server = Server::start(&["-d", "-c", "Sink"]);
    let mut client = server.client();
    client.expect("NOOP", "250 ");
    let traffic = |log: &str| {
        log.contains(r#"received 6 octets: "NOOP\r\n""#)
            && log.contains(r#"sending 14 octets: "250 2.0.0 OK\r\n""#)
    };
    assert!(
        server.stderr.wait_for(Duration::from_secs(5), traffic),
        "{}",
        server.stderr.text()
    );
}

#[test]
fn shutdown_ends_even_when_a_handler_never_returns() {
    // DebuggingServer with a stdout nobody reads: printing a large message never finishes.
    let (mut child, addr) = start_holding(Held::Stdout, &["--shutdown-grace", "1"]);
    let mut client = Client::connect(addr);
    client.set_read_timeout(Duration::from_secs(5));
    client.reply();
    client.envelope("a@example.org", &["b@example.org"]);
    client.expect("DATA", "354 ");
    client.send(
        &format!(
            "Subject: big\r\n\r\n{}",
            ("z".repeat(98) + "\r\n").repeat(2000)
        )
        .into_bytes(),
    );
    client.send(b".\r\n");
    client.set_read_timeout(Duration::from_millis(500));
    assert!(
        client.try_reply().is_err(),
        "the message cannot have been printed"
    );

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stopped = Instant::now();
    assert!(
        eventually(Duration::from_secs(8), || child
            .try_wait()
            .unwrap()
            .is_some()),
        "smtpd still running 8 s after SIGTERM with a 1 s grace period"
    );
    assert_between(stopped.elapsed(), 0.5, 4.0, "exit");
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_stdout_nobody_reads_gets_451_and_refused_messages_are_never_printed() {
    // DebuggingServer waits for stdout at most the data timeout.
    let (mut child, addr) = start_holding(Held::Stdout, &["--data-timeout", "2"]);
    let send = |subject: &str, lines: usize| {
        let mut client = Client::connect(addr);
        client.set_read_timeout(Duration::from_secs(10));
        client.reply();
        client.envelope("a@example.org", &["b@example.org"]);
        client.expect("DATA", "354 ");
        let body = ("z".repeat(98) + "\r\n").repeat(lines);
        client.send(format!("Subject: {subject}\r\n\r\n{body}.\r\n").as_bytes());
        client
    };
    // Each more than the pipe holds: the first to be printed stalls part way, and the
    // other waits for its turn (which one is first is the server's choice).
    let mut first = send("first", 4000);
    let mut second = send("second", 4000);
    let started = Instant::now();
    for client in [&mut first, &mut second] {
        let reply = client.reply();
        assert!(reply.starts_with("451 4.3.0 "), "{reply:?}");
    }
    assert_between(started.elapsed(), 1.5, 6.0, "451 after the data timeout");
    first.expect("NOOP", "250 ");

    let stdout = read_all(child.stdout.take().unwrap());
    let mut client = send("printed", 1);
    assert!(client.reply().starts_with("250 "));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let printed = String::from_utf8(stdout.join().unwrap()).unwrap();
    // The stalled message stays cut short; the one that never had its turn is never
    // printed; the server prints again once stdout is read.
    let started: Vec<_> = ["first", "second"]
        .into_iter()
        .filter(|subject| printed.contains(&format!("b'Subject: {subject}'")))
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(printed.matches("END MESSAGE").count(), 1);
    assert!(printed.contains("b'Subject: printed'"));
}

#[test]
fn a_hangup_is_ignored_under_nohup() {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], common::free_port()).into();
    // As `nohup` starts it: SIGHUP ignored, which the server keeps.
    let mut child = Reaped(
        Command::new("sh")
            .args(["-c", &format!("trap '' HUP; exec {BIN} -c Sink {addr}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(common::wait_until_accepts(addr, Duration::from_secs(10)));
    let mut client = Client::connect(addr);
    client.set_read_timeout(Duration::from_secs(2));
    client.reply();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    thread::sleep(Duration::from_millis(300));
    client.expect("NOOP", "250 ");
    assert!(child.try_wait().unwrap().is_none(), "stopped by SIGHUP");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(client.reply().get(..4), Some("421 "));
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_thread_without_io_uring_leaves_its_connections_to_the_others() {
    // Unprivileged, with 128 KiB of locked memory: one thread's io_uring fits, not four.
    let setpriv = Command::new("setpriv").arg("--version").output();
    if unsafe { libc::geteuid() } != 0 || setpriv.is_err() {
        eprintln!(
            "skipped: needs root and setpriv, to run the server as nobody with `ulimit -l 128`"
        );
        return;
    }
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], common::free_port()).into();
    let script = format!(
        "ulimit -l 128 && exec setpriv --reuid=65534 --regid=65534 --clear-groups \
         {BIN} -c Sink --threads 4 {addr}"
    );
    let mut server = Reaped(
        Command::new("sh")
            .args(["-c", &script])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = read_all(server.stderr.take().unwrap());
    assert!(common::wait_until_accepts(addr, Duration::from_secs(10)));
    // Every connection is served: none is left in the queue of a thread that is gone.
    for _ in 0..40 {
        let mut client = Client::connect(addr);
        client.set_read_timeout(Duration::from_secs(2));
        assert!(client.reply().starts_with("220 "));
        client.expect("QUIT", "221 ");
    }
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let status = server.wait().unwrap();
    let log = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert!(
        log.contains("serving thread failed: the other threads take its connections")
            && log.contains("ulimit -l"),
        "{log}"
    );
    // The server as a whole served, and stopped as asked.
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains("smtpd: error"), "{log}");

    // No locked memory at all: no thread serves, and none says the others do.
    let script = format!(
        "ulimit -l 0 && exec setpriv --reuid=65534 --regid=65534 --clear-groups \
         {BIN} -c Sink --threads 2 {addr}"
    );
    let output = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert_eq!(log.matches("serving thread failed").count(), 2, "{log}");
    assert!(
        log.contains("ulimit -l") && !log.contains("other threads") && !log.contains("listening"),
        "{log}"
    );
}
