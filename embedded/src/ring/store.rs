//! The ring store: records of `HEADER` + content, in a static `[u8; N]`.
//!
//! Layout: records follow each other from `tail` (the oldest) for `used` octets, wrapping at
//! the end of the buffer. A record is an 8-octet header, `len: u32 LE` then `cap: u32 LE`,
//! followed by `cap` octets of which the first `len` are the message. While a record is being
//! written its `len` is [`OPEN`]; a dropped record's is [`ABORTED`].
//!
//! Several records can be open at once (one per concurrent session). The most recently
//! reserved record may grow past its reservation while nothing follows it; any other record
//! must fit in what it reserved. On commit or abort the last record gives back its unused
//! reservation; an earlier one keeps it as slack, freed with the record.
//!
//! The consumer sees records in reservation order and stops at the oldest open one, so a
//! long message in progress holds back the ones reserved after it.

use core::cell::RefCell;

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::signal::Signal;

/// Octets of a record header.
pub const HEADER: usize = 8;
/// `len` of a record still being written.
const OPEN: u32 = u32::MAX;
/// `len` of a record that was dropped.
const ABORTED: u32 = u32::MAX - 1;

/// The store has no room for this now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Full;

/// A record being written: returned by [`Ring::open`], ended by [`Ring::commit`] or
/// [`Ring::abort`]. It does not borrow the ring; dropping it without either leaks its space
/// until the ring is reset, so owners must end it (as [`RingHandler`](super::RingHandler)
/// does, also on drop).
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Record {
    /// Physical index of the header.
    start: usize,
    /// Octets reserved after the header.
    cap: usize,
    /// Octets written.
    len: usize,
}

impl Record {
    /// Octets written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A committed message, as one or two slices (the record may wrap around the buffer end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub first: &'a [u8],
    pub second: &'a [u8],
}

impl<'a> Message<'a> {
    pub fn len(&self) -> usize {
        self.first.len() + self.second.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message's octets, in order, as up to two slices.
    pub fn chunks(&self) -> impl Iterator<Item = &'a [u8]> {
        [self.first, self.second]
            .into_iter()
            .filter(|chunk| !chunk.is_empty())
    }
}

/// A ring of `N` octets holding message records, shared by the sessions writing into it and
/// the consumer taking messages out. `M` guards it: `CriticalSectionRawMutex` for a `static`
/// shared between tasks, `NoopRawMutex` when everything runs in one task.
pub struct Ring<M: RawMutex, const N: usize> {
    state: Mutex<M, RefCell<State<N>>>,
    committed: Signal<M, ()>,
}

struct State<const N: usize> {
    buf: [u8; N],
    /// Physical index of the oldest record.
    tail: usize,
    /// Octets occupied from `tail` on (records, reservations and slack).
    used: usize,
}

impl<M: RawMutex, const N: usize> Ring<M, N> {
    const HOLDS_A_RECORD: () = assert!(
        N > HEADER && (N as u64) < ABORTED as u64,
        "the ring must be larger than a header and smaller than 4 GiB"
    );

    /// An empty ring; `const`, so it can be a `static` (`.bss`).
    pub const fn new() -> Self {
        let () = Self::HOLDS_A_RECORD;
        Ring {
            state: Mutex::new(RefCell::new(State {
                buf: [0; N],
                tail: 0,
                used: 0,
            })),
            committed: Signal::new(),
        }
    }

    /// Octets in the ring.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The largest message the ring can ever hold (when empty).
    pub const fn max_message(&self) -> usize {
        N - HEADER
    }

    /// Octets neither used nor reserved.
    pub fn free(&self) -> usize {
        self.with(|s| N - s.used)
    }

    /// Reserves a record for `reserve` octets of content.
    pub fn open(&self, reserve: usize) -> Result<Record, Full> {
        self.with(|s| s.open(reserve))
    }

    /// Appends `data` to `record`, growing it past its reservation if it is the last record
    /// and the ring has room.
    pub fn write(&self, record: &mut Record, data: &[u8]) -> Result<(), Full> {
        self.with(|s| s.write(record, data))
    }

    /// The record is complete: it becomes visible to the consumer.
    pub fn commit(&self, record: Record) {
        self.with(|s| s.commit(record));
        self.committed.signal(());
    }

    /// Drops the record and whatever was written to it. Wakes the consumer: if the record
    /// was the oldest, committed records after it are now next.
    pub fn abort(&self, record: Record) {
        self.with(|s| s.abort(record));
        self.committed.signal(());
    }

    /// Calls `f` with the oldest committed message, if the oldest record is committed.
    /// The message stays in the ring (see [`pop`](Self::pop)). `f` must not use the ring.
    pub fn peek<R>(&self, f: impl FnOnce(Message<'_>) -> R) -> Option<R> {
        self.with(|s| {
            s.reclaim();
            let len = s.committed_len()?;
            Some(f(s.message(len)))
        })
    }

    /// Frees the oldest message, if committed; returns whether one was freed.
    pub fn pop(&self) -> bool {
        self.with(|s| s.pop())
    }

    /// [`peek`](Self::peek) then [`pop`](Self::pop), atomically.
    pub fn pop_with<R>(&self, f: impl FnOnce(Message<'_>) -> R) -> Option<R> {
        self.with(|s| {
            s.reclaim();
            let len = s.committed_len()?;
            let result = f(s.message(len));
            s.pop();
            Some(result)
        })
    }

    /// Waits until a message was committed, or a record aborted, since the last wait (check
    /// with [`peek`](Self::peek) first: commits before the wait may already be there; an
    /// abort may also find nothing new).
    pub async fn wait_committed(&self) {
        self.committed.wait().await
    }

    fn with<R>(&self, f: impl FnOnce(&mut State<N>) -> R) -> R {
        self.state.lock(|cell| f(&mut cell.borrow_mut()))
    }
}

impl<M: RawMutex, const N: usize> Default for Ring<M, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> State<N> {
    fn open(&mut self, reserve: usize) -> Result<Record, Full> {
        let need = reserve.checked_add(HEADER).ok_or(Full)?;
        if need > N - self.used {
            return Err(Full);
        }
        let start = (self.tail + self.used) % N;
        self.put_header(start, OPEN, reserve);
        self.used += need;
        Ok(Record {
            start,
            cap: reserve,
            len: 0,
        })
    }

    fn write(&mut self, record: &mut Record, data: &[u8]) -> Result<(), Full> {
        let end = record.len.checked_add(data.len()).ok_or(Full)?;
        if end > record.cap {
            let extra = end - record.cap;
            if !self.is_last(record) || extra > N - self.used {
                return Err(Full);
            }
            record.cap += extra;
            self.used += extra;
        }
        self.put((record.start + HEADER + record.len) % N, data);
        record.len = end;
        Ok(())
    }

    fn commit(&mut self, mut record: Record) {
        if self.is_last(&record) {
            self.used -= record.cap - record.len;
            record.cap = record.len;
        }
        self.put_header(record.start, record.len as u32, record.cap);
    }

    fn abort(&mut self, record: Record) {
        if self.is_last(&record) {
            self.used = self.offset(record.start);
        } else {
            self.put_header(record.start, ABORTED, record.cap);
        }
        self.reclaim();
    }

    fn pop(&mut self) -> bool {
        self.reclaim();
        if self.committed_len().is_none() {
            return false;
        }
        self.drop_tail();
        self.reclaim();
        true
    }

    /// The content length of the record at the tail, if it is committed.
    fn committed_len(&self) -> Option<usize> {
        if self.used == 0 {
            return None;
        }
        match self.header(self.tail) {
            (OPEN | ABORTED, _) => None,
            (len, _) => Some(len as usize),
        }
    }

    /// Frees aborted records at the tail.
    fn reclaim(&mut self) {
        while self.used > 0 && self.header(self.tail).0 == ABORTED {
            self.drop_tail();
        }
    }

    fn drop_tail(&mut self) {
        let (_, cap) = self.header(self.tail);
        let size = HEADER + cap as usize;
        self.used -= size;
        self.tail = if self.used == 0 {
            0
        } else {
            (self.tail + size) % N
        };
    }

    fn message(&self, len: usize) -> Message<'_> {
        let start = (self.tail + HEADER) % N;
        let first = len.min(N - start);
        Message {
            first: &self.buf[start..start + first],
            second: &self.buf[..len - first],
        }
    }

    /// Distance from the tail to the physical index `at`.
    fn offset(&self, at: usize) -> usize {
        (at + N - self.tail) % N
    }

    /// Whether nothing was reserved after `record`.
    fn is_last(&self, record: &Record) -> bool {
        self.offset(record.start) + HEADER + record.cap == self.used
    }

    fn header(&self, at: usize) -> (u32, u32) {
        let mut raw = [0; HEADER];
        for (i, octet) in raw.iter_mut().enumerate() {
            *octet = self.buf[(at + i) % N];
        }
        let [a, b, c, d, e, f, g, h] = raw;
        (
            u32::from_le_bytes([a, b, c, d]),
            u32::from_le_bytes([e, f, g, h]),
        )
    }

    fn put_header(&mut self, at: usize, len: u32, cap: usize) {
        let mut raw = [0; HEADER];
        raw[..4].copy_from_slice(&len.to_le_bytes());
        raw[4..].copy_from_slice(&(cap as u32).to_le_bytes());
        self.put(at, &raw);
    }

    /// Copies `data` to physical index `at`, wrapping at the end.
    fn put(&mut self, at: usize, data: &[u8]) {
        let first = data.len().min(N - at);
        self.buf[at..at + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);
    }
}

#[cfg(test)]
mod tests {
    use embassy_sync::blocking_mutex::raw::NoopRawMutex;

    use super::*;

    fn read<const N: usize>(ring: &Ring<NoopRawMutex, N>) -> Option<Vec<u8>> {
        ring.pop_with(|m| m.chunks().flatten().copied().collect())
    }

    #[test]
    fn records_come_out_in_order_and_free_their_space() {
        let ring = Ring::<NoopRawMutex, 64>::new();
        let mut a = ring.open(4).unwrap();
        ring.write(&mut a, b"hello").unwrap(); // grows past its reservation: it is last
        ring.commit(a);
        let mut b = ring.open(10).unwrap();
        ring.write(&mut b, b"world").unwrap();
        ring.commit(b);
        assert_eq!(ring.free(), 64 - 2 * HEADER - 10);
        assert_eq!(read(&ring).unwrap(), b"hello");
        assert_eq!(read(&ring).unwrap(), b"world");
        assert_eq!(read(&ring), None);
        assert_eq!(ring.free(), 64);
    }

    #[test]
    fn records_wrap_around_the_end() {
        let ring = Ring::<NoopRawMutex, 40>::new();
        for round in 0..20u8 {
            let mut r = ring.open(0).unwrap();
            let data = [round; 13];
            ring.write(&mut r, &data[..5]).unwrap();
            ring.write(&mut r, &data[5..]).unwrap();
            ring.commit(r);
            let mut s = ring.open(3).unwrap();
            ring.write(&mut s, &[round + 100; 3]).unwrap();
            ring.commit(s);
            assert_eq!(read(&ring).unwrap(), data);
            assert_eq!(read(&ring).unwrap(), [round + 100; 3]);
            assert_eq!(ring.free(), 40);
            // Keep the tail moving so that headers and contents straddle the end.
            let mut t = ring.open(round as usize % 7).unwrap();
            ring.write(&mut t, &[1; 1]).unwrap();
            ring.commit(t);
            ring.pop();
        }
    }

    #[test]
    fn concurrent_records_keep_their_reservations() {
        let ring = Ring::<NoopRawMutex, 64>::new();
        let mut a = ring.open(8).unwrap();
        let mut b = ring.open(8).unwrap();
        // `a` is not last: it cannot grow past its reservation.
        assert_eq!(ring.write(&mut a, &[1; 9]), Err(Full));
        ring.write(&mut a, &[1; 8]).unwrap();
        // `b` is last: it can grow into free space.
        ring.write(&mut b, &[2; 20]).unwrap();
        // The oldest record is open: nothing to read yet.
        assert_eq!(read(&ring), None);
        ring.commit(b);
        assert_eq!(read(&ring), None);
        ring.commit(a);
        assert_eq!(read(&ring).unwrap(), [1; 8]);
        assert_eq!(read(&ring).unwrap(), [2; 20]);
        assert_eq!(ring.free(), 64);
    }

    #[test]
    fn aborting_the_oldest_record_wakes_the_consumer_of_the_committed_ones_after_it() {
        use core::pin::pin;
        use embassy_futures::poll_once;

        let ring = Ring::<NoopRawMutex, 64>::new();
        let a = ring.open(8).unwrap();
        let mut b = ring.open(8).unwrap();
        ring.write(&mut b, b"bbb").unwrap();
        ring.commit(b);
        // The consumer wakes for `b`, finds the oldest record open, and waits again.
        assert!(poll_once(ring.wait_committed()).is_ready());
        assert_eq!(ring.peek(|m| m.len()), None);
        let mut waiting = pin!(ring.wait_committed());
        assert!(poll_once(waiting.as_mut()).is_pending());
        ring.abort(a);
        assert!(poll_once(waiting.as_mut()).is_ready());
        assert_eq!(read(&ring).unwrap(), b"bbb");
    }

    #[test]
    fn aborted_records_vanish() {
        let ring = Ring::<NoopRawMutex, 64>::new();
        let mut a = ring.open(8).unwrap();
        let mut b = ring.open(8).unwrap();
        let c = ring.open(8).unwrap();
        ring.write(&mut a, b"aaa").unwrap();
        ring.write(&mut b, b"bbb").unwrap();
        ring.abort(a); // not last: marked, then reclaimed from the tail
        assert_eq!(ring.free(), 64 - 2 * (HEADER + 8));
        ring.commit(b);
        ring.abort(c); // last: its space is given back at once
        assert_eq!(ring.free(), 64 - HEADER - 8);
        assert_eq!(read(&ring).unwrap(), b"bbb");
        assert_eq!(ring.free(), 64);
    }

    #[test]
    fn full_ring_refuses() {
        let ring = Ring::<NoopRawMutex, 32>::new();
        assert_eq!(ring.max_message(), 24);
        assert_eq!(ring.open(25), Err(Full));
        let mut a = ring.open(10).unwrap();
        assert_eq!(ring.open(10), Err(Full));
        ring.write(&mut a, &[0; 24]).unwrap();
        assert_eq!(ring.write(&mut a, &[0; 1]), Err(Full));
        ring.commit(a);
        assert_eq!(ring.free(), 0);
        assert!(ring.pop());
        assert_eq!(ring.free(), 32);
    }
}
