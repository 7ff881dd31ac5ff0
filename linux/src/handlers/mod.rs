//! The handlers shipped with the `smtpd` binary.

mod debugging;
mod maildir;
mod mailman;
mod next_hop;
mod proxy;
mod relay;
mod sink;

pub use debugging::{python_bytes_repr, DebuggingServer};
pub use maildir::Maildir;
pub use mailman::MailmanProxy;
pub use next_hop::Upstream;
pub use proxy::{PureProxy, RelayAccess};
pub use sink::Sink;
