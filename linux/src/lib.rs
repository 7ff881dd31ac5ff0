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
//!   `inbox`: a connection's own receive buffers, filled by one multishot receive.
//! - [`message`]: the simple `process_message(peer, mailfrom, rcpttos, data)` API
//!   ([`ProcessMessage`] + [`Buffered`]); streaming handlers implement
//!   [`smtpd_core::Handler`] directly.
//! - [`handlers`]: `DebuggingServer`, `Sink`, `Maildir`; [`logging`]: per-message logs.
//! - [`cli`]: the `smtpd` command line (Python smtpd's flags plus modern options).

mod alarm;
mod arena;
pub mod cli;
pub mod connection;
mod date;
pub mod handlers;
mod inbox;
pub mod logging;
pub mod message;
pub mod server;

pub use message::{Buffered, Message, OwnedReply, ProcessMessage};
pub use server::{HandlerFactory, Options, Server, ShutdownHandle};
pub use smtpd_core;
