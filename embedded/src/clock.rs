//! The core's time as embassy-time counts it: milliseconds since boot.

use embassy_time::{Instant, Timer};

/// Now, as the core counts time.
pub fn now() -> smtpd_core::Instant {
    smtpd_core::Instant::from_millis(Instant::now().as_millis())
}

/// The embassy-time instant of a core deadline.
pub fn instant(at: smtpd_core::Instant) -> Instant {
    Instant::from_millis(at.as_millis())
}

/// Waits until `deadline`, or forever without one.
pub async fn sleep_until(deadline: Option<smtpd_core::Instant>) {
    match deadline {
        Some(at) => Timer::at(instant(at)).await,
        None => core::future::pending().await,
    }
}
