//! Compact storage for the session's greeting and the transaction's envelope.
//!
//! Everything lives in one byte arena that the frontend supplies: the HELO/EHLO argument,
//! then the reverse-path and the MAIL parameters as the client wrote them, then each
//! forward-path as a 2-octet length and its octets. The
//! default is an inline array (3 KiB: 100 recipients of ordinary length). A server may
//! pass a zero-filled heap slice instead: pages it never writes cost no memory, so 26 KiB
//! give every connection room for 100 recipients of the longest kind (RFC 5321 4.5.3.1.8,
//! 4.5.3.1.3) at the memory cost of the recipients it really gets.
//!
//! Invariant: `arena[..len]` holds the greeting, reverse-path and parameters as whole
//! `str`s, then
//! `rcpts` records of a little-endian `u16` length and that many octets of a whole `str`.
//! Only the first `u16::MAX` octets of an arena are used.

/// Storage for an [`Envelope`]: any byte slice owner (`[u8; N]`, `Box<[u8]>`, `&mut [u8]`).
pub trait Arena: AsRef<[u8]> + AsMut<[u8]> {}

impl<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized> Arena for T {}

/// The arena is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Full;

/// Octets that record one recipient's length.
const LENGTH: usize = 2;

/// Greeting, reverse-path and forward-paths in one arena.
#[derive(Clone, Debug)]
pub struct Envelope<A> {
    arena: A,
    /// Octets of the arena in use.
    len: u16,
    /// `arena[..greeting_end]` is the HELO/EHLO argument (when `greeted`).
    greeting_end: u16,
    greeted: bool,
    /// `arena[greeting_end..mailfrom_end]` is the reverse-path, once MAIL was accepted.
    mailfrom_end: Option<u16>,
    /// `arena[mailfrom_end..parameters_end]` are the MAIL parameters.
    parameters_end: u16,
    /// Forward-paths recorded after the reverse-path.
    rcpts: u16,
}

impl<A: Arena> Envelope<A> {
    /// An empty envelope in `arena` (its contents are ignored).
    pub fn new(arena: A) -> Self {
        Envelope {
            arena,
            len: 0,
            greeting_end: 0,
            greeted: false,
            mailfrom_end: None,
            parameters_end: 0,
            rcpts: 0,
        }
    }

    /// Starts a new session state with `greeting`, dropping any transaction.
    pub fn set_greeting(&mut self, greeting: &str) -> Result<(), Full> {
        self.greeted = false;
        self.greeting_end = 0;
        self.reset();
        self.push(greeting.as_bytes())?;
        self.greeting_end = self.len;
        self.greeted = true;
        Ok(())
    }

    pub fn greeting(&self) -> Option<&str> {
        self.greeted.then(|| self.str(0, self.greeting_end))
    }

    /// Records the reverse-path (empty for `<>`) and the MAIL parameters as written.
    /// Requires a reset transaction.
    pub fn set_mailfrom(&mut self, mailfrom: &str, parameters: &str) -> Result<(), Full> {
        self.reset();
        if self.room() < mailfrom.len() + parameters.len() {
            return Err(Full);
        }
        self.push(mailfrom.as_bytes())?;
        let mailfrom_end = self.len;
        self.push(parameters.as_bytes())?;
        self.mailfrom_end = Some(mailfrom_end);
        self.parameters_end = self.len;
        Ok(())
    }

    pub fn mailfrom(&self) -> Option<&str> {
        self.mailfrom_end
            .map(|end| self.str(self.greeting_end, end))
    }

    /// The MAIL parameters as the client wrote them (empty before MAIL).
    pub fn mail_parameters(&self) -> &str {
        self.mailfrom_end
            .map_or("", |start| self.str(start, self.parameters_end))
    }

    /// Appends a forward-path.
    pub fn add_rcpt(&mut self, rcpt: &str) -> Result<(), Full> {
        if !self.has_room_for(rcpt) {
            return Err(Full);
        }
        // Fits in a u16: the arena's used part does.
        self.push(&(rcpt.len() as u16).to_le_bytes())?;
        self.push(rcpt.as_bytes())?;
        self.rcpts += 1;
        Ok(())
    }

    /// Whether `rcpt` would fit.
    pub fn has_room_for(&self, rcpt: &str) -> bool {
        self.room() >= LENGTH + rcpt.len() && self.rcpts < u16::MAX
    }

    pub fn rcpt_count(&self) -> usize {
        usize::from(self.rcpts)
    }

    /// The forward-paths, in RCPT order.
    pub fn rcpttos(&self) -> Rcpttos<'_> {
        let start = match self.mailfrom_end {
            Some(_) => self.parameters_end,
            None => self.greeting_end,
        };
        Rcpttos {
            records: &self.arena.as_ref()[usize::from(start)..usize::from(self.len)],
            remaining: self.rcpts,
        }
    }

    /// Drops the transaction (reverse- and forward-paths), keeping the greeting.
    pub fn reset(&mut self) {
        self.len = self.greeting_end;
        self.mailfrom_end = None;
        self.parameters_end = self.greeting_end;
        self.rcpts = 0;
    }

    /// Usable octets: the arena's, up to what a `u16` offset reaches.
    fn capacity(&self) -> usize {
        self.arena.as_ref().len().min(usize::from(u16::MAX))
    }

    /// Octets still free.
    fn room(&self) -> usize {
        self.capacity() - usize::from(self.len)
    }

    fn push(&mut self, octets: &[u8]) -> Result<(), Full> {
        let start = usize::from(self.len);
        let end = start + octets.len();
        if end > self.capacity() {
            return Err(Full);
        }
        self.arena.as_mut()[start..end].copy_from_slice(octets);
        self.len = end as u16;
        Ok(())
    }

    fn str(&self, start: u16, end: u16) -> &str {
        let octets = &self.arena.as_ref()[usize::from(start)..usize::from(end)];
        core::str::from_utf8(octets).unwrap_or_default()
    }
}

/// Iterator over the forward-paths of an [`Envelope`].
#[derive(Clone, Debug)]
pub struct Rcpttos<'a> {
    /// The recipient records not yet returned.
    records: &'a [u8],
    remaining: u16,
}

impl<'a> Iterator for Rcpttos<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.remaining == 0 {
            return None;
        }
        let (length, rest) = self.records.split_first_chunk::<LENGTH>()?;
        let (text, rest) = rest.split_at_checked(usize::from(u16::from_le_bytes(*length)))?;
        self.records = rest;
        self.remaining = self.remaining.saturating_sub(1);
        Some(core::str::from_utf8(text).unwrap_or_default())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = usize::from(self.remaining);
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for Rcpttos<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_transaction_and_reset() {
        let mut env = Envelope::new([0u8; 64]);
        assert_eq!(env.greeting(), None);
        env.set_greeting("client.example").unwrap();
        assert_eq!(env.mail_parameters(), "");
        env.set_mailfrom("a@b", "size=10 BODY=8bitmime").unwrap();
        env.add_rcpt("c@d").unwrap();
        env.add_rcpt("é@f").unwrap();
        env.add_rcpt("").unwrap();
        assert_eq!(env.greeting(), Some("client.example"));
        assert_eq!(env.mailfrom(), Some("a@b"));
        assert_eq!(env.mail_parameters(), "size=10 BODY=8bitmime");
        assert!(env.rcpttos().eq(["c@d", "é@f", ""]));
        assert_eq!(env.rcpttos().len(), 3);
        env.reset();
        assert_eq!((env.mailfrom(), env.rcpt_count()), (None, 0));
        assert_eq!(env.rcpttos().next(), None);
        assert_eq!(env.greeting(), Some("client.example"));
        assert_eq!(env.mail_parameters(), "");
        env.set_mailfrom("", "SIZE=1").unwrap();
        assert_eq!(
            (env.mailfrom(), env.mail_parameters()),
            (Some(""), "SIZE=1")
        );
    }

    #[test]
    fn a_full_arena_is_reported_and_keeps_what_it_has() {
        let mut env = Envelope::new([0u8; 16]);
        env.set_greeting("h").unwrap();
        env.set_mailfrom("a@b", "").unwrap();
        // 12 octets left: a 10-octet path and its length.
        assert!(env.has_room_for("0123456789"));
        assert!(!env.has_room_for("0123456789a"));
        assert_eq!(env.add_rcpt("0123456789a"), Err(Full));
        env.add_rcpt("x").unwrap();
        env.add_rcpt("yyyyyy").unwrap();
        assert_eq!(env.add_rcpt("z"), Err(Full));
        assert!(env.rcpttos().eq(["x", "yyyyyy"]));
        assert_eq!(env.set_greeting("a name longer than sixteen"), Err(Full));
        assert_eq!(env.greeting(), None);
    }

    #[test]
    fn a_borrowed_or_oversized_arena_works_the_same() {
        let mut storage = [0u8; 70_000];
        let mut env = Envelope::new(&mut storage[..]);
        env.set_greeting("h").unwrap();
        env.set_mailfrom("a@b", "").unwrap();
        let path = "p".repeat(254);
        while env.has_room_for(&path) {
            env.add_rcpt(&path).unwrap();
        }
        // Only the first 65,535 octets are used: (65535 - 4) / 256 records.
        assert_eq!(env.rcpt_count(), 255);
        assert!(env.rcpttos().all(|rcpt| rcpt == path));
    }
}
