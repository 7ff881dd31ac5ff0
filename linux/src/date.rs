//! Calendar dates: the civil date of a day count, and the RFC 5322 date of trace headers.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// `now` as an RFC 5322 3.3 date-time in UTC: `Sun, 29 Nov 2026 05:30:00 +0000`.
pub(crate) fn rfc5322(now: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let time = secs % 86_400;
    let mut text = String::with_capacity(31);
    let _ = write!(
        text,
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        // 1970-01-01 was a Thursday.
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        time / 3600,
        time / 60 % 60,
        time % 60,
    );
    text
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc5322_dates() {
        let at = |secs| rfc5322(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        // `date -u -d @1796189400 -R`
        assert_eq!(at(1_796_189_400), "Wed, 02 Dec 2026 05:30:00 +0000");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }
}
