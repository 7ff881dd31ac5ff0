//! A device-style message store and the [`Handler`](smtpd_core::Handler) that fills it.
//!
//! [`Ring`] is a fixed-size, statically allocated ring of records, modelled on a flash log:
//! a record is reserved when a message starts, filled as its content streams in, and its
//! header is finalized once, at commit (or marked aborted). A consumer (the device's uplink,
//! or the host demo) takes committed records oldest first and frees their space.
//!
//! [`RingHandler`] streams each message into the ring and keeps its promises:
//! - `250` only after the whole message (envelope preamble and content) is committed;
//! - `452 4.3.1` at RCPT and at DATA when the store has no room for the message now (the
//!   client retries later, once the consumer freed space);
//! - `552 5.3.4` when the message is larger than the whole store can ever hold;
//! - a message that fails in any way is discarded from the ring, never half-stored.

mod handler;
mod store;

pub use handler::{record_bound, RingHandler};
pub use store::{Full, Message, Record, Ring, HEADER};
