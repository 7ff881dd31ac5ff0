//! Time as the channel sees it: an [`Instant`] handed in by the driver.
//!
//! The core owns no clock. The driver passes the current time with every input and asks
//! [`Channel::poll_timeout`](crate::channel::Channel::poll_timeout) for the next deadline
//! (the quinn-proto pattern); the channel produces the `421` itself when a deadline passes.

use core::time::Duration;

/// A point in time, in milliseconds since an epoch of the driver's choosing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(u64);

impl Instant {
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + duration`, saturating.
    pub fn after(self, duration: Duration) -> Self {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(millis))
    }

    /// Time from `self` until `later`, zero if `later` is not later.
    pub fn until(self, later: Instant) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }
}
