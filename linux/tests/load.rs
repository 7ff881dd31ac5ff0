//! Load: 500 concurrent sessions, 10 messages each over one connection; every one of the 5000
//! messages must be in the maildir exactly once.

mod common;

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Server};

const SESSIONS: usize = 500;
const MESSAGES: usize = 10;
const LIMIT: Duration = Duration::from_secs(120);

fn token(session: usize, message: usize) -> String {
    format!(
        "tok-{session:03}-{message:02}-{:08x}",
        session * 7919 + message * 104_729
    )
}

fn content(session: usize, message: usize) -> Vec<u8> {
    let token = token(session, message);
    format!(
        "Message-Id: <{token}@load.example>\r\nSubject: load {session}/{message}\r\n\r\n\
         Token: {token}\r\n.dot line {token}\r\n"
    )
    .into_bytes()
}

/// One lock-step session: greeting, EHLO, 10 transactions, QUIT.
fn session(server: std::net::SocketAddr, index: usize, start: &Barrier) -> Result<(), String> {
    // Every session waits at the barrier, even a failed one, so no thread is left hanging.
    let opened = std::net::TcpStream::connect(server)
        .map_err(|e| format!("session {index}: connect: {e}"))
        .and_then(|stream| {
            let mut client = Client::from_stream(stream);
            client.try_reply().map(|greeting| (client, greeting))
        });
    // All sessions are open at the same time before any mail is sent.
    start.wait();
    let (mut client, greeting) = opened?;
    if !greeting.starts_with("220 ") {
        return Err(format!("session {index}: greeting {greeting:?}"));
    }
    let step = |client: &mut Client, line: String, code: &str| -> Result<(), String> {
        client.send(format!("{line}\r\n").as_bytes());
        let reply = client.try_reply()?;
        if reply.starts_with(code) {
            Ok(())
        } else {
            Err(format!("session {index}: {line:?} got {reply:?}"))
        }
    };
    step(&mut client, "EHLO load.example".into(), "250")?;
    for message in 0..MESSAGES {
        step(
            &mut client,
            format!("MAIL FROM:<s{index}@load.example>"),
            "250 ",
        )?;
        step(
            &mut client,
            format!("RCPT TO:<m{message}@load.example>"),
            "250 ",
        )?;
        step(&mut client, "DATA".into(), "354 ")?;
        let mut data = common::dot_stuff(&content(index, message));
        data.extend_from_slice(b".\r\n");
        client.send(&data);
        let reply = client.try_reply()?;
        if !reply.starts_with("250 ") {
            return Err(format!("session {index} message {message}: {reply:?}"));
        }
    }
    client.send(b"QUIT\r\n");
    let bye = client.try_reply()?;
    if !bye.starts_with("221 ") {
        return Err(format!("session {index}: QUIT got {bye:?}"));
    }
    Ok(())
}

#[test]
fn five_hundred_sessions_ten_messages_each() {
    let server = Server::maildir(&["--max-connections", "1000"]);
    let started = Instant::now();
    let start = Arc::new(Barrier::new(SESSIONS));
    let (done, results) = mpsc::channel();
    for index in 0..SESSIONS {
        let (addr, start, done) = (server.addr, start.clone(), done.clone());
        thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    session(addr, index, &start)
                }))
                .unwrap_or_else(|_| Err(format!("session {index} panicked")));
                let _ = done.send(result);
            })
            .expect("spawn client thread");
    }
    drop(done);
    let mut failures = Vec::new();
    for _ in 0..SESSIONS {
        let left = LIMIT.saturating_sub(started.elapsed());
        match results.recv_timeout(left) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failures.push(error),
            Err(_) => {
                panic!("sessions did not finish within {LIMIT:?}; failures so far: {failures:?}")
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} sessions failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let sent_in = started.elapsed();

    // Every reply 250 came after the file was renamed into new/, so all are there now.
    let delivered = server.delivered();
    assert_eq!(
        delivered.len(),
        SESSIONS * MESSAGES,
        "files in DIR/new (sessions took {sent_in:?})"
    );
    assert!(server.files_in("tmp").is_empty(), "DIR/tmp not empty");
    let mut seen: HashMap<String, String> = HashMap::new();
    for message in &delivered {
        let text = String::from_utf8(message.content.clone()).expect("UTF-8 message");
        let token = text
            .lines()
            .find_map(|line| line.strip_prefix("Token: "))
            .unwrap_or_else(|| panic!("{}: no token in {text:?}", message.name))
            .to_owned();
        let (session, number) = parse_token(&token);
        assert_eq!(token, self::token(session, number), "{}", message.name);
        assert_eq!(message.mail_from, format!("s{session}@load.example"));
        assert_eq!(message.rcpt_to, [format!("m{number}@load.example")]);
        assert_eq!(
            message.content,
            content(session, number),
            "{}",
            message.name
        );
        if let Some(first) = seen.insert(token.clone(), message.name.clone()) {
            panic!(
                "token {token} delivered twice: {first} and {}",
                message.name
            );
        }
    }
    let missing: Vec<String> = (0..SESSIONS)
        .flat_map(|s| (0..MESSAGES).map(move |m| token(s, m)))
        .filter(|t| !seen.contains_key(t))
        .collect();
    assert!(missing.is_empty(), "missing tokens: {missing:?}");
    eprintln!(
        "{} messages in {sent_in:?} over {SESSIONS} concurrent sessions",
        SESSIONS * MESSAGES
    );
}

fn parse_token(token: &str) -> (usize, usize) {
    let mut parts = token.split('-');
    assert_eq!(parts.next(), Some("tok"), "{token}");
    let session = parts.next().and_then(|p| p.parse().ok());
    let message = parts.next().and_then(|p| p.parse().ok());
    match (session, message) {
        (Some(s), Some(m)) if s < SESSIONS && m < MESSAGES => (s, m),
        _ => panic!("bad token {token:?}"),
    }
}
