//! The device's sizes and SMTP configuration, in one place: compiled into the firmware and,
//! through `#[path]`, into the host demo's "device profile" (examples/tap_demo.rs), so the
//! TAP integration test exercises exactly these capacities over a real TCP/IP path.

use smtpd_core::Config;
use smtpd_embedded::{ring::record_bound, Slot};

/// Concurrent SMTP sessions (listening sockets).
pub const SESSIONS: usize = 2;
/// Recipients per transaction.
pub const RCPTS: usize = 8;
/// Largest message (advertised with SIZE); also what each message reserves in the ring.
pub const MESSAGE_LIMIT: usize = 4 * 1024;
/// A session's envelope arena: greeting, reverse-path and up to [`RCPTS`] recipients.
pub const ENVELOPE: usize = 1024;
/// The message store: a largest message in progress in every session at once, each with
/// the longest envelope its arena can hold (10,602 octets).
pub const STORE: usize = SESSIONS * record_bound(ENVELOPE, RCPTS, MESSAGE_LIMIT);

/// TCP receive window 1 KiB, TCP send buffer 1 KiB, input 256 octets; the core session's
/// command line 548 octets (512 + the SIZE and SMTPUTF8 allowances), replies 512 octets,
/// envelope arena [`ENVELOPE`].
pub type DeviceSlot = Slot<1024, 1024, 256, 548, 512, ENVELOPE>;

/// The device's SMTP configuration: every extension, the limits above.
pub const fn config(hostname: &'static str) -> Config<'static> {
    let mut config = Config::new(hostname);
    config.banner = "ESMTP smtpd-rs device";
    config.limits.message_size = Some(MESSAGE_LIMIT as u64);
    config.limits.recipients = RCPTS;
    config
}
