//! Shared helpers for the integration tests: run the real `smtpd` binary on a free loopback
//! port, talk SMTP to it over raw TCP, and read what it delivered into a maildir.
#![allow(dead_code)] // Each test crate uses its own subset.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_smtpd");

/// How long a server may take to start listening.
const STARTUP: Duration = Duration::from_secs(20);

/// Text collected from a child's pipe by a background thread.
#[derive(Clone, Default)]
pub struct Captured(Arc<(Mutex<Pipe>, Condvar)>);

/// What has been read from a pipe, and whether it has closed.
#[derive(Default)]
pub struct Pipe {
    bytes: Vec<u8>,
    closed: bool,
}

impl Captured {
    pub fn spawn(mut pipe: impl Read + Send + 'static) -> Captured {
        let captured = Captured::default();
        let shared = captured.clone();
        thread::spawn(move || {
            let mut buffer = [0u8; 64 * 1024];
            loop {
                let n = pipe.read(&mut buffer).unwrap_or(0);
                let (lock, cvar) = &*shared.0;
                let mut state = lock.lock().unwrap();
                if n == 0 {
                    state.closed = true;
                    cvar.notify_all();
                    return;
                }
                state.bytes.extend_from_slice(&buffer[..n]);
                cvar.notify_all();
            }
        });
        captured
    }

    /// Everything read so far, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0 .0.lock().unwrap().bytes).into_owned()
    }

    /// Waits until the text satisfies `done` (true) or the pipe closed / time ran out (false).
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.0;
        let mut state = lock.lock().unwrap();
        loop {
            if done(&String::from_utf8_lossy(&state.bytes)) {
                return true;
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                return false;
            }
            state = cvar.wait_timeout(state, deadline - now).unwrap().0;
        }
    }
}

/// A running `smtpd`; killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The maildir (`DIR/new`, `DIR/tmp`), when started with one.
    pub maildir: Option<tempfile::TempDir>,
    pub stdout: Captured,
    pub stderr: Captured,
    exit: Option<ExitStatus>,
}

/// A free loopback port: bind port 0, note the port, let it go.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

impl Server {
    /// `smtpd --maildir <temp dir> [args] 127.0.0.1:<free port>`.
    pub fn maildir(args: &[&str]) -> Server {
        Server::maildir_on(Ipv4Addr::LOCALHOST.into(), args)
    }

    /// `smtpd --maildir <temp dir> [args] <ip>:<free port>` (`[::1]:<port>` for IPv6).
    pub fn maildir_on(ip: IpAddr, args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp maildir");
        let mut full = vec!["--maildir".to_string(), dir.path().display().to_string()];
        full.extend(args.iter().map(|a| a.to_string()));
        let mut server = Server::start_with(ip, &full, &[]);
        server.maildir = Some(dir);
        server
    }

    /// `smtpd [args] 127.0.0.1:<free port>` (DebuggingServer unless args choose otherwise).
    pub fn start(args: &[&str]) -> Server {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Server::start_with(Ipv4Addr::LOCALHOST.into(), &args, &[])
    }

    /// `smtpd -c PureProxy [args] 127.0.0.1:<free port> <upstream>`.
    pub fn relay(upstream: &str, args: &[&str]) -> Server {
        Server::relaying("PureProxy", upstream, args)
    }

    /// `smtpd -c <class> [args] 127.0.0.1:<free port> <upstream>`.
    pub fn relaying(class: &str, upstream: &str, args: &[&str]) -> Server {
        let mut full = vec!["-c".to_string(), class.to_string()];
        full.extend(args.iter().map(|a| a.to_string()));
        Server::start_with(Ipv4Addr::LOCALHOST.into(), &full, &[upstream.to_string()])
    }

    /// Starts the binary on a free port and waits until it listens. The port is found by
    /// binding port 0; if another process takes it in between, starts again on a new one.
    /// `after`: arguments after the listening address (the remote address).
    fn start_with(ip: IpAddr, args: &[String], after: &[String]) -> Server {
        let mut last_error = String::new();
        for _ in 0..5 {
            let addr = SocketAddr::new(ip, free_port());
            let mut child = Command::new(BIN)
                .args(args)
                .arg(addr.to_string())
                .args(after)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn smtpd");
            let stdout = Captured::spawn(child.stdout.take().unwrap());
            let stderr = Captured::spawn(child.stderr.take().unwrap());
            // The listeners are bound (and accept into their backlog) before this line.
            let needle = format!("listening addr={addr}");
            if stderr.wait_for(STARTUP, |text| text.contains(&needle)) {
                return Server {
                    child,
                    addr,
                    maildir: None,
                    stdout,
                    stderr,
                    exit: None,
                };
            }
            let _ = child.kill();
            let status = child.wait();
            last_error = format!("status {status:?}, stderr:\n{}", stderr.text());
            if !last_error.contains("cannot listen") {
                break;
            }
        }
        panic!("smtpd did not start: {last_error}");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many file descriptors the server process has open (`/proc/PID/fd`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("read /proc/PID/fd")
            .count()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server.
    pub fn signal(&self, signal: i32) {
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    /// Waits for the process to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit {
                return Some(status);
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exit = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn maildir_path(&self) -> &Path {
        self.maildir.as_ref().expect("server has no maildir").path()
    }

    /// The delivered messages (`DIR/new`), sorted by file name.
    pub fn delivered(&self) -> Vec<Delivered> {
        read_maildir(self.maildir_path())
    }

    /// File names in `DIR/<sub>`.
    pub fn files_in(&self, sub: &str) -> Vec<String> {
        list_dir(&self.maildir_path().join(sub))
    }

    /// Waits until `DIR/new` holds at least `count` files; returns them.
    pub fn wait_delivered(&self, count: usize, timeout: Duration) -> Vec<Delivered> {
        let deadline = Instant::now() + timeout;
        loop {
            let delivered = self.delivered();
            if delivered.len() >= count || Instant::now() >= deadline {
                return delivered;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new SMTP client connection that has read the `220` greeting.
    pub fn client(&self) -> Client {
        let mut client = Client::connect(self.addr);
        let greeting = client.reply();
        assert!(
            greeting.starts_with("220 "),
            "greeting: {greeting:?}; stderr:\n{}",
            self.stderr.text()
        );
        client
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls until `addr` accepts a TCP connection (the connection is closed again at once).
/// A server for `sessions.len()` connections, one after the other: each is greeted, then
/// each command line answered with the next of its replies, and closed after the last.
/// Returns its address and the command lines of each session.
pub fn scripted_server(
    sessions: &'static [&'static [&'static str]],
) -> (String, thread::JoinHandle<Vec<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let script = thread::spawn(move || {
        let mut commands = Vec::new();
        for replies in sessions {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            writer.write_all(b"220 scripted ESMTP\r\n").unwrap();
            let mut lines = Vec::new();
            for reply in *replies {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                lines.push(line.trim_end().to_owned());
                writer.write_all(reply.as_bytes()).unwrap();
            }
            commands.push(lines);
        }
        commands
    });
    (addr, script)
}

pub fn wait_until_accepts(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A delivered maildir file, split into its envelope lines and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub name: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub content: Vec<u8>,
}

/// File names in `dir`, sorted.
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Reads and parses every file in `dir/new`.
pub fn read_maildir(dir: &Path) -> Vec<Delivered> {
    list_dir(&dir.join("new"))
        .into_iter()
        .map(|name| {
            let path: PathBuf = dir.join("new").join(&name);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            parse_delivered(name, &bytes)
        })
        .collect()
}

/// Splits `X-Envelope-From: <a>\n` + `X-Envelope-To: <b>\n`* from the message; panics if the
/// file does not start with a well-formed envelope.
pub fn parse_delivered(name: String, bytes: &[u8]) -> Delivered {
    fn line<'a>(bytes: &'a [u8], at: &mut usize, prefix: &str) -> Option<&'a str> {
        let rest = &bytes[*at..];
        let rest = rest.strip_prefix(prefix.as_bytes())?;
        let end = rest.iter().position(|&b| b == b'\n')?;
        let value = std::str::from_utf8(&rest[..end]).expect("envelope is UTF-8");
        let value = value.strip_prefix('<')?.strip_suffix('>')?;
        *at += prefix.len() + end + 1;
        Some(value)
    }
    let mut at = 0;
    let mail_from = line(bytes, &mut at, "X-Envelope-From: ")
        .unwrap_or_else(|| panic!("{name}: no X-Envelope-From line"))
        .to_owned();
    let mut rcpt_to = Vec::new();
    while let Some(rcpt) = line(bytes, &mut at, "X-Envelope-To: ") {
        rcpt_to.push(rcpt.to_owned());
    }
    assert!(!rcpt_to.is_empty(), "{name}: no X-Envelope-To line");
    Delivered {
        name,
        mail_from,
        rcpt_to,
        content: bytes[at..].to_vec(),
    }
}

/// A lock-step SMTP client over a plain TCP connection.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Client::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let writer = stream.try_clone().unwrap();
        Client {
            reader: BufReader::new(stream),
            writer,
        }
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.writer.set_read_timeout(Some(timeout)).unwrap();
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to server");
    }

    /// One complete reply, all lines joined with `\n`, without the final CRLF. Panics on EOF
    /// or timeout.
    pub fn reply(&mut self) -> String {
        self.try_reply()
            .unwrap_or_else(|e| panic!("no reply from server: {e}"))
    }

    /// One complete reply, or an error on EOF / timeout / a malformed line.
    pub fn try_reply(&mut self) -> Result<String, String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return Err(format!("EOF after {lines:?}")),
                Ok(_) => {}
                Err(e) => return Err(format!("{e} after {lines:?}")),
            }
            let line = line
                .strip_suffix("\r\n")
                .ok_or_else(|| format!("reply line without CRLF: {line:?}"))?
                .to_owned();
            let more = line.as_bytes().get(3) == Some(&b'-');
            if line.len() < 3 || !line.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
                return Err(format!("malformed reply line {line:?}"));
            }
            lines.push(line);
            if !more {
                return Ok(lines.join("\n"));
            }
        }
    }

    /// Sends one command line (CRLF added) and returns its reply.
    pub fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Sends a command and asserts its reply starts with `code` (e.g. `"250 "`).
    pub fn expect(&mut self, line: &str, code: &str) -> String {
        let reply = self.command(line);
        assert!(
            reply.starts_with(code),
            "{line:?} got {reply:?}, expected {code:?}"
        );
        reply
    }

    /// EHLO, MAIL, RCPT* up to (not including) DATA.
    pub fn envelope(&mut self, from: &str, to: &[&str]) {
        self.expect("EHLO client.example", "250");
        self.expect(&format!("MAIL FROM:<{from}>"), "250 ");
        for rcpt in to {
            self.expect(&format!("RCPT TO:<{rcpt}>"), "250 ");
        }
    }

    /// DATA with `content` (CRLF lines, dot-stuffed here); returns the final reply.
    pub fn data(&mut self, content: &[u8]) -> String {
        self.expect("DATA", "354 ");
        self.send(&dot_stuff(content));
        self.send(b".\r\n");
        self.reply()
    }

    /// Reads until EOF (the server closed); panics if the server sends more or keeps it open.
    pub fn expect_eof(&mut self, timeout: Duration) {
        self.set_read_timeout(timeout);
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "unexpected data before EOF: {:?}",
                String::from_utf8_lossy(&rest)
            ),
            // A reset after the final reply is also a close.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connection not closed by the server: {e}"),
        }
    }

    pub fn shutdown(&self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }
}

/// RFC 5321 4.5.2 transparency: doubles a leading dot on every line; makes the content end
/// with CRLF.
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 50 + 2);
    let mut line_start = true;
    for &b in content {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Runs `python3 -c script args...`; returns stdout, panicking with stderr on failure.
pub fn python(script: &str, args: &[&str]) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 must be installed to run these tests");
    assert!(
        output.status.success(),
        "python3 failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("python output is UTF-8")
}

/// Fails the test (never skips) when a client program is missing.
pub fn require_tool(name: &str, version_arg: &str) {
    let found = Command::new(name)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{name}` is not installed: these tests need it \
         (install it with `apt-get install -y swaks curl`)"
    );
}

/// `content` as PureProxy sends it on: `X-Peer: 127.0.0.1` added at the end of its headers
/// (before the first empty line, or last when there is none).
pub fn with_peer(content: &[u8]) -> Vec<u8> {
    let at = content
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(content.len(), |i| i + 2);
    [&content[..at], b"X-Peer: 127.0.0.1\r\n", &content[at..]].concat()
}
