//! # smtpd-linux
//!
//! A thread-per-core io_uring SMTP server driving [`smtpd_core`]: one `compio` io_uring
//! runtime per thread, each with its own `SO_REUSEPORT` listener. The protocol lives in the core;
//! this crate moves bytes, keeps one timer per connection, caps connections and shuts down
//! gracefully.
//!
//! - [`server`]: [`Server`] builder and runtime threads; [`connection`]: the per-connection
//!   I/O loop; `alarm`: what wakes a connection besides its socket (its deadline, one
//!   tick per thread; the shutdown request); `arena`: envelope memory by the page;
//!   `inbox`: a connection's own receive buffers, filled by one multishot receive;
//!   `client_limit`: connections per client, across threads; `start`: the threads' start.
//! - [`message`]: the simple `process_message(peer, mailfrom, rcpttos, data)` API
//!   ([`ProcessMessage`] + [`Buffered`]); streaming handlers implement
//!   [`smtpd_core::Handler`] directly.
//! - [`handlers`]: `DebuggingServer`, `Sink`, `Maildir`, `PureProxy`, `MailmanProxy`;
//!   [`logging`]: per-message logs.
//! - [`cli`]: the `smtpd` command line (Python smtpd's flags plus modern options);
//!   [`process`]: its descriptor limit, and leaving root once it listens.
//!
//! Handlers run on the serving thread's runtime: do I/O with the re-exported [`compio`]
//! (`compio::net`, `compio::fs`; `compio::time::timeout` to bound a lookup, as hooks have
//! no deadline of their own); a blocking call stalls
//! every session of that thread, so blocking code belongs in
//! `compio::runtime::spawn_blocking`. A handler that panics ends its own session, not the
//! server: the client gets the replies made before the panic, then `421 4.3.0`.
//!
//! Logs are [`tracing`](https://docs.rs/tracing) events: one `session` event per
//! connection (target `smtpd_linux::server`: `peer`, `proxy` when a trusted proxy named
//! the peer ([`Options::proxy_protocol`]), `messages`, `ms`, and `outcome`:
//! `Closed(Quit)`, `Closed(TooManyErrors)`, `Closed(Unavailable)`, `TimedOut`,
//! `Disconnected`, `Shutdown`, `NoProxyHeader(..)`, `TooManyFromClient`,
//! `HandlerPanicked` or `TooManyConnections`) and one
//! `message` event per transaction that reached DATA or BDAT (target
//! `smtpd_linux::logging`: `peer`, `from`, `to`, `size`, `outcome`: the final reply's code
//! or why the message was abandoned, `ms`).
//! Install a subscriber to see them, e.g. `tracing_subscriber::fmt().init()`.
//!
//! ```no_run
//! use std::sync::{Arc, Mutex};
//!
//! use smtpd_linux::smtpd_core::{handler::Context, Config};
//! use smtpd_linux::{Buffered, Message, OwnedReply, ProcessMessage, Server};
//!
//! /// Keeps every message in memory; knows two mailboxes.
//! #[derive(Clone, Default)]
//! struct Inbox(Arc<Mutex<Vec<(String, Vec<String>, Vec<u8>)>>>);
//!
//! impl ProcessMessage for Inbox {
//!     async fn rcpt(&mut self, _: &Context<'_>, to: &str) -> Result<(), OwnedReply> {
//!         match to {
//!             "alice@example.com" | "bob@example.com" => Ok(()),
//!             _ => Err(OwnedReply::new(550, (5, 1, 1), "No such user here")),
//!         }
//!     }
//!
//!     async fn process_message(&mut self, message: &Message<'_>) -> Result<(), OwnedReply> {
//!         let rcpttos = message.rcpttos.to_vec();
//!         let stored = (message.mailfrom.to_owned(), rcpttos, message.data.to_vec());
//!         self.0.lock().unwrap().push(stored);
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     let inbox = Inbox::default();
//!     let server = Server::builder(Config::new("mx.example.com"))
//!         .bind("127.0.0.1:2525".parse().unwrap())
//!         .build(move |_peer| Buffered::new(inbox.clone()))?;
//!     let shutdown = server.shutdown_handle()?;
//!     let serving = std::thread::spawn(move || server.run());
//!     // ... later: stop accepting, let the sessions finish (or get `421` after the grace
//!     // period), and wait for them.
//!     shutdown.shutdown();
//!     serving.join().expect("server thread")
//! }
//! ```

mod alarm;
mod arena;
pub mod cli;
mod client_limit;
pub mod connection;
mod date;
pub mod handlers;
mod inbox;
pub mod logging;
pub mod message;
pub mod process;
pub mod server;
mod start;

pub use compio;
pub use message::{Buffered, Message, OwnedReply, ProcessMessage};
pub use server::{Builder, HandlerFactory, Options, Server, ShutdownHandle};
pub use smtpd_core;
