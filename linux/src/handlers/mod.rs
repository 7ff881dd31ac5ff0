//! The handlers shipped with the `smtpd` binary.

mod debugging;
mod maildir;
mod proxy;
mod sink;

pub use debugging::{python_bytes_repr, DebuggingServer};
pub use maildir::Maildir;
pub use proxy::{PureProxy, Upstream};
pub use sink::Sink;
