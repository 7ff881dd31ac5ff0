//! A custom handler on the io_uring server, both ways:
//!
//! - `LocalOnly` implements the core's streaming `Handler`: it accepts recipients of one
//!   domain only (no open relay), counts body octets as they stream, and answers with a
//!   queue id;
//! - `Printer` implements the simple `ProcessMessage` API (Python's `process_message`), and
//!   refuses the senders of one domain at MAIL.
//!
//! Run: `cargo run -p smtpd-linux --example custom_handler -- 127.0.0.1:2525 [simple]`
//! then: `swaks --server 127.0.0.1:2525 --to someone@example.com`.

use std::net::SocketAddr;

use smtpd_linux::smtpd_core::handler::{Context, Handler, MailParams, Verdict};
use smtpd_linux::smtpd_core::{Config, Reply};
use smtpd_linux::{Buffered, Message, OwnedReply, ProcessMessage, Server};

/// Accepts mail for `@example.com` only and streams the body.
struct LocalOnly {
    octets: u64,
    queue_id: String,
    peer: SocketAddr,
}

impl Handler for LocalOnly {
    async fn rcpt(&mut self, _: &Context<'_>, to: &str) -> Verdict<'_> {
        if to.to_ascii_lowercase().ends_with("@example.com") {
            Verdict::Accept
        } else {
            Verdict::Reply(Reply::new(550, (5, 7, 1), "Relaying denied"))
        }
    }

    async fn data_start(&mut self, _: &Context<'_>) -> Verdict<'_> {
        self.octets = 0;
        Verdict::Accept
    }

    async fn data_chunk(&mut self, _: &Context<'_>, chunk: &[u8]) -> Result<(), Reply<'static>> {
        self.octets += chunk.len() as u64;
        Ok(())
    }

    async fn data_end(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        println!(
            "{} sent {} octets from <{}> to {:?}",
            self.peer,
            self.octets,
            cx.mailfrom.unwrap_or_default(),
            cx.rcpttos.clone().collect::<Vec<_>>()
        );
        self.queue_id = format!("Queued as {:08X}", self.octets);
        Verdict::Reply(Reply::new(250, (2, 0, 0), &self.queue_id))
    }
}

/// The simple API: one call per whole message.
struct Printer;

impl ProcessMessage for Printer {
    /// Refuses one domain's senders before any content is sent.
    async fn mail(
        &mut self,
        _: &Context<'_>,
        from: &str,
        _: &MailParams,
    ) -> Result<(), OwnedReply> {
        if from.to_ascii_lowercase().ends_with("@spam.example") {
            return Err(OwnedReply::new(550, (5, 7, 1), "Not from you"));
        }
        Ok(())
    }

    async fn process_message(&mut self, message: &Message<'_>) -> Result<(), OwnedReply> {
        println!(
            "{:?}: <{}> -> {:?}, {} octets",
            message.peer,
            message.mailfrom,
            message.rcpttos,
            message.data.len()
        );
        Ok(())
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:2525".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let simple = args.next().as_deref() == Some("simple");
    let builder = Server::builder(Config::new("mx.example.com")).bind(addr);
    println!("listening on {addr}");
    if simple {
        builder.build(|_| Buffered::new(Printer))?.run()
    } else {
        builder
            .build(|peer| LocalOnly {
                octets: 0,
                queue_id: String::new(),
                peer,
            })?
            .run()
    }
}
