//! Envelope arenas backed by their own anonymous pages.
//!
//! Every connection's envelope arena is large enough for 100 recipients of the longest
//! kind (RFC 5321 4.5.3.1.8), but memory is spent only on the pages the envelope really
//! writes: an idle connection that has said EHLO costs one page, where a heap allocation
//! would also touch the allocator's headers at both ends. Arenas of ended connections wait
//! in a per-thread free list for the next connection, so a busy thread maps no new memory.
//!
//! Invariant: a [`PageArena`] owns `SIZE` mapped, readable and writable octets at `start`
//! until it is dropped; then they are reused by this thread or unmapped.

use std::cell::RefCell;
use std::io;
use std::ptr::NonNull;

use smtpd_core::channel::capacity::ENVELOPE_FOR_100_LONGEST;

/// Arena size: the envelope's, rounded up to whole pages.
const SIZE: usize = ENVELOPE_FOR_100_LONGEST.next_multiple_of(4096);
const _: () = assert!(SIZE >= ENVELOPE_FOR_100_LONGEST && SIZE % 4096 == 0);

/// Free arenas kept per thread (at most 7 MiB, if all were full); beyond this, ended
/// connections unmap theirs.
const KEEP: usize = 256;

thread_local! {
    static FREE: RefCell<Vec<NonNull<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An envelope arena of `SIZE` octets (see the module documentation).
pub(crate) struct PageArena {
    start: NonNull<u8>,
}

impl PageArena {
    /// A free arena of this thread, or newly mapped pages.
    pub(crate) fn take() -> io::Result<PageArena> {
        if let Some(start) = FREE.with_borrow_mut(Vec::pop) {
            return Ok(PageArena { start });
        }
        Ok(PageArena {
            start: map_pages(SIZE)?,
        })
    }
}

/// `len` octets of new anonymous, private, zeroed pages (only those written cost memory).
pub(crate) fn map_pages(len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: an anonymous private mapping at an address of the kernel's choice touches no
    // existing memory.
    let mapped = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(mapped.cast()).ok_or_else(|| io::Error::other("mmap gave null"))
}

impl Drop for PageArena {
    fn drop(&mut self) {
        let start = self.start;
        let kept = FREE
            .try_with(|free| {
                let mut free = free.borrow_mut();
                (free.len() < KEEP).then(|| free.push(start)).is_some()
            })
            .unwrap_or(false);
        if !kept {
            // SAFETY: the mapping is this arena's alone and nothing refers to it any more.
            unsafe { libc::munmap(start.as_ptr().cast(), SIZE) };
        }
    }
}

impl AsRef<[u8]> for PageArena {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see the module invariant; the borrow of `self` keeps the octets owned.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), SIZE) }
    }
}

impl AsMut<[u8]> for PageArena {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: see the module invariant; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), SIZE) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arenas_are_whole_zeroed_pages_and_are_reused_by_their_thread() {
        let mut arena = PageArena::take().unwrap();
        assert_eq!(arena.as_ref().len(), SIZE);
        assert!(arena.as_ref().iter().all(|&octet| octet == 0));
        arena.as_mut()[SIZE - 1] = 7;
        let start = arena.start;
        drop(arena);
        let again = PageArena::take().unwrap();
        assert_eq!(again.start, start);
        assert_eq!(again.as_ref()[SIZE - 1], 7, "reused as it was left");
        let other = PageArena::take().unwrap();
        assert_ne!(other.start, start);
    }
}
