//! The core driven by hand: a blocking `std` server that serves one connection at a time
//! with a bare [`Channel`], accepts every sender and recipient, and prints what it got.
//! The I/O loop is all a frontend does; every SMTP rule is the channel's.
//!
//! ```sh
//! cargo run -p smtpd-core --example blocking -- 127.0.0.1:2525
//! swaks --server 127.0.0.1:2525 --to you@example.com
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant as StdInstant};

use smtpd_core::{Channel, Config, Event, Instant, Verdict};

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:2525".into());
    let config = Config::new("mx.example.com");
    let listener = TcpListener::bind(&addr)?;
    println!("listening on {addr}");
    for stream in listener.incoming() {
        if let Err(error) = serve(&config, stream?) {
            eprintln!("connection: {error}");
        }
    }
    Ok(())
}

fn serve(config: &Config<'_>, mut stream: TcpStream) -> std::io::Result<()> {
    let started = StdInstant::now();
    // The core counts time in milliseconds from any origin the driver picks.
    let now = || Instant::from_millis(started.elapsed().as_millis() as u64);
    let mut channel: Channel<'_> = Channel::new(config, stream.peer_addr().ok());
    let mut buffer = [0u8; 4096];
    // Octets received and not yet consumed: the channel stops at each event, and whatever
    // it did not take is offered again.
    let (mut start, mut end) = (0, 0);
    let mut size = 0;
    loop {
        let (used, content) = channel.receive(&buffer[start..end], now());
        start += used;
        if let Some(content) = content {
            size += content.len();
        }
        if let Some(event) = channel.event() {
            match event {
                Event::DataEnd => println!("message of {size} octets"),
                Event::DataStart => size = 0,
                _ => {}
            }
            channel.resolve(Verdict::Accept);
            continue;
        }
        let output = channel.output();
        if !output.is_empty() {
            stream.write_all(output)?;
            let written = output.len();
            channel.consume_output(written);
            continue;
        }
        if channel.is_closed() {
            return Ok(());
        }
        if used > 0 || content.is_some() {
            continue;
        }
        // Everything received is consumed: wait for more, until the phase's deadline.
        (start, end) = (0, 0);
        let wait = channel
            .poll_timeout()
            .map(|at| Duration::from_millis(at.as_millis().saturating_sub(now().as_millis())));
        stream.set_read_timeout(wait.map(|wait| wait.max(Duration::from_millis(1))))?;
        match stream.read(&mut buffer) {
            Ok(0) => channel.handle_disconnect(),
            Ok(n) => end = n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                channel.handle_timeout(now())
            }
            Err(_) => channel.handle_disconnect(),
        }
    }
}
