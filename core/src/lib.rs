//! # smtpd-core
//!
//! A `no_std`, allocation-free, sans-io SMTP server engine (RFC 5321 with PIPELINING, SIZE,
//! 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING and BINARYMIME): bytes in, replies and
//! events out. It never touches a socket, a clock or a runtime; frontends move bytes, keep a
//! timer and await nothing but the [`Session`].
//!
//! Layout, one protocol concept per module:
//! - [`command`] parses command lines (zero-copy, with `nom`); [`address`] parses paths.
//! - [`line`](mod@line) assembles command lines; [`data`] decodes DATA content (dot-unstuffing, end of
//!   data only on CRLF.CRLF).
//! - [`reply`] encodes replies; [`replies`] holds the texts the core sends.
//! - [`channel`] is the state machine; [`envelope`] stores greeting and envelope compactly.
//! - [`handler`] is the application's async trait; [`session`] drives a channel with one.
//! - [`network`] is an IP network (a prefix), for relay clients and trusted proxies.
//! - [`proxy_header`] reads the PROXY protocol header a load balancer may send first.
//! - [`relay_policy`] says who may relay to where (RFC 5321 3.6.2, 7.1).
//! - [`config`] holds limits, timeouts and extension switches; [`timeout`] the time type.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod address;
pub mod channel;
pub mod client;
pub mod command;
pub mod config;
pub mod data;
pub mod envelope;
pub mod handler;
pub mod line;
pub mod network;
pub mod proxy_header;
pub mod relay_policy;
pub mod replies;
pub mod reply;
pub mod session;
pub mod timeout;

pub use channel::{Channel, Event};
pub use config::{BareNewline, Config, Extensions, Limits, Timeouts};
pub use handler::{AbortReason, CloseReason, Context, Handler, MailParams, Verdict};
pub use reply::Reply;
pub use session::Session;
pub use timeout::Instant;
