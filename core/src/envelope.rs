//! Compact storage for the session's greeting and the transaction's envelope.
//!
//! Everything lives in one byte arena of `BYTES` octets: the HELO/EHLO argument, then the
//! reverse-path, then the forward-paths, each recipient costing its length plus a 2-octet
//! end offset (up to `RCPTS` of them). 100 recipients of ordinary length fit in a few KiB,
//! where fixed 256-octet slots would take 25 KiB.
//!
//! Invariant: the arena only ever holds whole `str`s, so every slice read back is valid UTF-8.

/// The arena or the offset table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Full;

/// Greeting, reverse-path and forward-paths in one arena.
#[derive(Clone, Debug, Default)]
pub struct Envelope<const BYTES: usize, const RCPTS: usize> {
    bytes: heapless::Vec<u8, BYTES>,
    /// `bytes[..greeting_end]` is the HELO/EHLO argument (when `greeted`).
    greeting_end: u16,
    greeted: bool,
    /// `bytes[greeting_end..mailfrom_end]` is the reverse-path, once MAIL was accepted.
    mailfrom_end: Option<u16>,
    /// End offset of each forward-path, in RCPT order.
    rcpt_ends: heapless::Vec<u16, RCPTS>,
}

impl<const BYTES: usize, const RCPTS: usize> Envelope<BYTES, RCPTS> {
    const FITS_U16: () = assert!(BYTES <= u16::MAX as usize, "envelope arena over 64 KiB");

    /// Starts a new session state with `greeting`, dropping any transaction.
    pub fn set_greeting(&mut self, greeting: &str) -> Result<(), Full> {
        let () = Self::FITS_U16;
        self.greeted = false;
        self.greeting_end = 0;
        self.reset();
        self.push(greeting)?;
        self.greeting_end = self.bytes.len() as u16;
        self.greeted = true;
        Ok(())
    }

    pub fn greeting(&self) -> Option<&str> {
        self.greeted.then(|| self.str(0, self.greeting_end))
    }

    /// Records the reverse-path (empty for `<>`). Requires a reset transaction.
    pub fn set_mailfrom(&mut self, mailfrom: &str) -> Result<(), Full> {
        self.reset();
        self.push(mailfrom)?;
        self.mailfrom_end = Some(self.bytes.len() as u16);
        Ok(())
    }

    pub fn mailfrom(&self) -> Option<&str> {
        self.mailfrom_end
            .map(|end| self.str(self.greeting_end, end))
    }

    /// Appends a forward-path.
    pub fn add_rcpt(&mut self, rcpt: &str) -> Result<(), Full> {
        if self.rcpt_ends.is_full() {
            return Err(Full);
        }
        self.push(rcpt)?;
        let _ = self.rcpt_ends.push(self.bytes.len() as u16);
        Ok(())
    }

    /// Whether `rcpt` would fit.
    pub fn has_room_for(&self, rcpt: &str) -> bool {
        !self.rcpt_ends.is_full() && BYTES - self.bytes.len() >= rcpt.len()
    }

    pub fn rcpt_count(&self) -> usize {
        self.rcpt_ends.len()
    }

    /// The forward-paths, in RCPT order.
    pub fn rcpttos(&self) -> Rcpttos<'_> {
        Rcpttos {
            bytes: &self.bytes,
            ends: &self.rcpt_ends,
            start: self.mailfrom_end.unwrap_or(self.greeting_end),
        }
    }

    /// Drops the transaction (reverse- and forward-paths), keeping the greeting.
    pub fn reset(&mut self) {
        self.bytes.truncate(self.greeting_end as usize);
        self.mailfrom_end = None;
        self.rcpt_ends.clear();
    }

    fn push(&mut self, text: &str) -> Result<(), Full> {
        self.bytes
            .extend_from_slice(text.as_bytes())
            .map_err(|_| Full)
    }

    fn str(&self, start: u16, end: u16) -> &str {
        core::str::from_utf8(&self.bytes[start as usize..end as usize]).unwrap_or_default()
    }
}

/// Iterator over the forward-paths of an [`Envelope`].
#[derive(Clone, Debug)]
pub struct Rcpttos<'a> {
    bytes: &'a [u8],
    ends: &'a [u16],
    start: u16,
}

impl<'a> Iterator for Rcpttos<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let (&end, rest) = self.ends.split_first()?;
        let text = &self.bytes[self.start as usize..end as usize];
        self.ends = rest;
        self.start = end;
        Some(core::str::from_utf8(text).unwrap_or_default())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.ends.len(), Some(self.ends.len()))
    }
}

impl ExactSizeIterator for Rcpttos<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_transaction_and_reset() {
        let mut env = Envelope::<64, 3>::default();
        assert_eq!(env.greeting(), None);
        env.set_greeting("client.example").unwrap();
        env.set_mailfrom("a@b").unwrap();
        env.add_rcpt("c@d").unwrap();
        env.add_rcpt("é@f").unwrap();
        assert_eq!(env.greeting(), Some("client.example"));
        assert_eq!(env.mailfrom(), Some("a@b"));
        assert!(env.rcpttos().eq(["c@d", "é@f"]));
        env.reset();
        assert_eq!((env.mailfrom(), env.rcpt_count()), (None, 0));
        assert_eq!(env.greeting(), Some("client.example"));
        env.set_mailfrom("").unwrap();
        assert_eq!(env.mailfrom(), Some(""));
    }

    #[test]
    fn full_arena_or_table_is_reported() {
        let mut env = Envelope::<16, 2>::default();
        env.set_greeting("h").unwrap();
        env.set_mailfrom("a@b").unwrap();
        assert!(env.has_room_for("0123456789ab"));
        assert!(!env.has_room_for("0123456789abc"));
        assert_eq!(env.add_rcpt("0123456789abc"), Err(Full));
        env.add_rcpt("x").unwrap();
        env.add_rcpt("y").unwrap();
        assert_eq!(env.add_rcpt("z"), Err(Full));
        assert!(env.rcpttos().eq(["x", "y"]));
    }
}
