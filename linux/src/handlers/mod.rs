//! The handlers shipped with the `smtpd` binary.

mod debugging;
mod maildir;
mod sink;

pub use debugging::{python_bytes_repr, DebuggingServer};
pub use maildir::Maildir;
pub use sink::Sink;
