//! The `smtpd` process: started as root it leaves root once it listens (Python smtpd's
//! default, `-n` keeps root; a Maildir server becomes the maildir's owner), and its
//! descriptor limit fits its connection cap. Tests that need root say `skipped` without it.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Captured, Client, BIN};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: plain system call.
    unsafe { libc::geteuid() == 0 }
}

/// A server started by `sh -c "<prelude> && exec smtpd <args> <addr>"`, killed on drop.
struct Started {
    child: Child,
    addr: SocketAddr,
    stdout: Captured,
    stderr: Captured,
}

impl Started {
    /// Starts it and waits for its `listening` line (or its exit).
    fn new(prelude: &str, args: &str) -> Started {
        Started::run(&format!("{prelude} && exec {BIN} {args}"))
    }

    /// `wrapper smtpd <args> <addr>` (e.g. `setpriv --euid=65534`), as [`new`](Self::new).
    fn wrapped(wrapper: &str, args: &str) -> Started {
        Started::run(&format!("exec {wrapper} {BIN} {args}"))
    }

    /// `sh -c "<command> <addr>"`.
    fn run(command: &str) -> Started {
        let addr: SocketAddr = ([127, 0, 0, 1], common::free_port()).into();
        let script = format!("{command} {addr}");
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Captured::spawn(child.stdout.take().unwrap());
        let stderr = Captured::spawn(child.stderr.take().unwrap());
        stderr.wait_for(Duration::from_secs(10), |log| {
            log.contains("listening") || log.contains("smtpd: error")
        });
        Started {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    /// `Uid:` / `Gid:` (real, effective, saved, filesystem) and `Groups:` of the server.
    fn ids(&self) -> (Vec<u32>, Vec<u32>, String) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server runs");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let ids = |text: String| {
            text.split_whitespace()
                .map(|id| id.parse().unwrap())
                .collect()
        };
        (ids(field("Uid:")), ids(field("Gid:")), field("Groups:"))
    }

    /// The soft and hard limits on open descriptors.
    fn descriptor_limits(&self) -> (String, String) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id())).unwrap();
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .unwrap();
        let mut numbers = line.split_whitespace().skip(3);
        (
            numbers.next().unwrap().into(),
            numbers.next().unwrap().into(),
        )
    }

    fn send_message(&self) {
        let mut client = Client::connect(self.addr);
        client.set_read_timeout(Duration::from_secs(5));
        assert!(client.reply().starts_with("220 "));
        client.envelope("a@example.org", &["b@example.org"]);
        let reply = client.data(b"Subject: who\r\n\r\nbody\r\n");
        assert!(reply.starts_with("250 "), "{reply}");
        client.expect("QUIT", "221 ");
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_server_started_as_root_leaves_root_once_it_listens() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let server = Started::new("true", "-c DebuggingServer");
    assert!(
        server.stderr.text().contains("listening"),
        "{}",
        server.stderr.text()
    );
    let (uid, gid, groups) = server.ids();
    assert_eq!(uid, [NOBODY; 4]);
    assert_eq!(gid, [NOBODY; 4]);
    assert_eq!(groups, "");
    assert!(server
        .stderr
        .text()
        .contains("left root user=nobody uid=65534"));
    // Serving as before: DebuggingServer prints the message.
    server.send_message();
    assert!(server
        .stdout
        .wait_for(Duration::from_secs(5), |out| out.contains("Subject: who")));
}

#[test]
fn minus_n_keeps_root_as_in_python() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    for flag in ["-n", "--nosetuid"] {
        let server = Started::new("true", &format!("{flag} -c Sink"));
        assert_eq!(server.ids().0, [0; 4], "{flag}");
        assert!(!server.stderr.text().contains("left root"));
        server.send_message();
    }
}

#[test]
fn a_maildir_server_writes_as_the_maildirs_owner() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // A maildir of nobody's: the server becomes nobody (with nobody's own group, not the
    // directory's), creates what is missing as nobody, and the message file is nobody's.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(0)).unwrap();
    let server = Started::new("true", &format!("--maildir {}", dir.path().display()));
    assert_eq!(server.ids().0, [NOBODY; 4]);
    assert_eq!(server.ids().1, [NOBODY; 4]);
    server.send_message();
    for sub in ["tmp", "new", "cur"] {
        assert_eq!(
            dir.path().join(sub).metadata().unwrap().uid(),
            NOBODY,
            "{sub}"
        );
    }
    let delivered = wait_for_file(&dir.path().join("new"));
    assert_eq!(delivered.metadata().unwrap().uid(), NOBODY);
    drop(server);

    // Root's maildir (one it creates too): the server stays root, says so, and delivers.
    let dir = tempfile::tempdir().unwrap();
    let inside = dir.path().join("created");
    let server = Started::new("true", &format!("--maildir {}", inside.display()));
    assert_eq!(server.ids().0, [0; 4]);
    let log = server.stderr.text();
    assert!(
        log.contains("is root's: the server runs on as root ("),
        "{log}"
    );
    server.send_message();
    assert_eq!(
        wait_for_file(&inside.join("new")).metadata().unwrap().uid(),
        0
    );
    drop(server);

    // Root's maildir in a directory of nobody's, who could swap it for a link: the warning
    // names that directory.
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    let maildir = home.join("Maildir");
    std::fs::create_dir(&maildir).unwrap();
    let server = Started::new("true", &format!("--maildir {}", maildir.display()));
    assert_eq!(server.ids().0, [0; 4]);
    let log = server.stderr.text();
    let warning = format!(
        "although {} on the way to it is uid 65534's",
        home.display()
    );
    assert!(log.contains(&warning), "{log}");

    // --user names the user, for a maildir too; it must be able to write there.
    let server = Started::new(
        "true",
        &format!("--user nobody --maildir {}", home.display()),
    );
    assert_eq!(server.ids().0, [NOBODY; 4]);
    server.send_message();
    assert_eq!(
        wait_for_file(&home.join("new")).metadata().unwrap().uid(),
        NOBODY
    );
}

#[test]
fn user_names_whom_to_become_and_contradicts_minus_n() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let server = Started::new("true", "--user daemon -c Sink");
    // Debian's daemon: uid 1, group 1.
    assert_eq!(server.ids().0, [1; 4]);
    assert_eq!(server.ids().1, [1; 4]);
    server.send_message();
    for args in ["-n --user daemon", "--user no-such-user-here"] {
        let mut server = Started::new("true", args);
        let status = server.child.wait().unwrap();
        assert_eq!(status.code(), Some(2), "{args}");
        assert_eq!(server.stderr.text().lines().count(), 1, "{args}");
    }
}

#[test]
fn a_root_that_only_lent_its_effective_id_is_left_too() {
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    // Real and saved ids 0: root could come back, so the server leaves it in full, also
    // with a maildir of root's (which it may write: its directories are open to all).
    let maildir = tempfile::tempdir().unwrap();
    for sub in ["tmp", "new", "cur"] {
        let sub = maildir.path().join(sub);
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
    }
    let maildir = format!("--maildir={}", maildir.path().display());
    for args in ["-c Sink", maildir.as_str()] {
        let server = Started::wrapped("setpriv --euid=65534", args);
        let log = server.stderr.text();
        assert!(log.contains("listening"), "{args}: {log}");
        assert_eq!(server.ids().0, [NOBODY; 4], "{args}");
        assert!(!log.contains("runs on as root"), "{args}");
    }
}

#[test]
fn a_maildir_its_owner_cannot_write_is_refused_at_start() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    // `tmp` stays root's.
    let mut server = Started::new("true", &format!("--maildir {}", dir.path().display()));
    let status = server.child.wait().unwrap();
    let log = server.stderr.text();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("cannot use maildir") && log.contains("tmp: Permission denied"),
        "{log}"
    );
    assert!(
        !log.contains("listening") && !log.contains("left root"),
        "{log}"
    );
}

#[test]
fn receive_rings_set_up_as_root_are_not_held_to_the_locked_memory_limit() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // 128 KiB of locked memory holds a few dozen receive rings of an unprivileged server;
    // these were set up before the server left root.
    let server = Started::new("ulimit -l 128", "-c Sink --threads 1");
    assert_eq!(server.ids().0, [NOBODY; 4]);
    let mut clients: Vec<Client> = (0..200).map(|_| Client::connect(server.addr)).collect();
    for client in &mut clients {
        client.set_read_timeout(Duration::from_secs(5));
        assert!(client.reply().starts_with("220 "));
        client.expect("NOOP", "250 ");
    }
    let log = server.stderr.text();
    assert!(!log.contains("no receive buffer ring"), "{log}");
}

#[test]
fn a_descriptor_limit_with_no_room_for_connections_is_refused_at_start() {
    let mut server = Started::new("ulimit -n 60", "-n -c Sink --threads 1");
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let log = server.stderr.text();
    let error = "smtpd: error: 60 descriptors (`ulimit -n`) leave no room for connections";
    assert!(log.contains(error), "{log}");
}

#[test]
fn the_descriptor_limit_is_raised_to_the_hard_limit() {
    let server = Started::new("ulimit -Sn 256", "-n -c Sink");
    let (soft, hard) = server.descriptor_limits();
    assert_eq!(soft, hard);
    assert_ne!(soft, "256");
    server.send_message();
}

#[test]
fn connections_beyond_what_the_descriptors_hold_get_421() {
    // 200 descriptors, 72 of them the server's own (one thread): room for 128 sessions.
    let server = Started::new("ulimit -n 200", "-n -c Sink --threads 1");
    let log = server.stderr.text();
    assert!(
        log.contains("200 descriptors (`ulimit -n`) hold 128 connections: --max-connections lowered from 10000"),
        "{log}"
    );
    let mut held: Vec<Client> = (0..128).map(|_| Client::connect(server.addr)).collect();
    for client in &mut held {
        client.set_read_timeout(Duration::from_secs(5));
        assert!(client.reply().starts_with("220 "));
    }
    for _ in 0..3 {
        let mut over = Client::connect(server.addr);
        over.set_read_timeout(Duration::from_secs(5));
        assert_eq!(over.reply(), "421 4.3.2 Too many connections");
    }
    // Served again once one leaves.
    held.pop().unwrap().expect("QUIT", "221 ");
    std::thread::sleep(Duration::from_millis(200));
    server.send_message();
}

/// The first file to appear in `dir`.
fn wait_for_file(dir: &Path) -> std::path::PathBuf {
    for _ in 0..100 {
        if let Some(entry) = std::fs::read_dir(dir).unwrap().next() {
            return entry.unwrap().path();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing in {}", dir.display());
}
