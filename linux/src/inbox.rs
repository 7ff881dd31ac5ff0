//! A connection's receive buffers: a provided-buffer ring of its own, filled by one
//! multishot receive.
//!
//! One receive stays armed for the whole connection, so the kernel does not set up and
//! tear down a poll for every command, as a receive per command would make it do. The
//! buffers are the connection's own, not a pool shared by its thread: while the connection
//! does not read (its handler or a slow write keeps it busy), the kernel fills what the
//! ring holds, then ends the receive with `ENOBUFS`, and TCP flow control holds the peer
//! back. No connection can take another's receive memory.
//!
//! An inbox starts small: one buffer in the ring, which the kernel reuses for every command
//! of a lock-step conversation (so a connection touches one page and stays in cache). The
//! first time the connection falls behind (`ENOBUFS`), all [`COUNT`] buffers go into the
//! ring, for the rest of its life: a sender of big messages gets room to stream.
//!
//! Memory: one anonymous mapping per inbox, the ring's entries in front of the buffers, so
//! that an idle connection's EHLO touches a single page. Inboxes of ended connections that
//! stayed small wait in their thread's [`InboxPool`], still registered with the ring (and
//! with only their first page in memory), so a busy thread makes few system calls for
//! them; grown ones are unregistered and unmapped.
//!
//! Buffer rings pin a page each, which counts against `RLIMIT_MEMLOCK` for an unprivileged
//! server (8 MiB by default: about 2,000 rings). A connection that gets no ring still gets
//! served, by one plain receive at a time into its own buffer ([`Inbox::Plain`]).
//!
//! Invariants: the kernel owns exactly the buffers in the ring; a buffer named by a
//! completion is the inbox's until [`Inbox::give_back`]. An inbox's memory is reused or
//! unmapped only when no receive is armed on it; if one may still be (the connection was
//! dropped mid-receive), the memory is leaked rather than risk the kernel writing into it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{ready, Context, Poll};

use compio::buf::BufResult;
use compio::net::TcpStream;
use compio::runtime::{Submit, SubmitMulti};
use compio_driver::OpEntry;
use compio_driver::{Extra, OpCode, SharedFd, ToSharedFd};
use futures_util::stream::{FusedStream, Stream};

use crate::arena::map_pages;

/// Buffers per connection (a power of two, as the ring requires).
const COUNT: u16 = 4;
/// Octets per buffer: the most one completion carries.
const BUFFER: usize = 64 * 1024;
/// The ring: one 16-octet `io_uring_buf` entry per buffer.
const RING: usize = COUNT as usize * 16;
/// The mapping: the ring, then the buffers, in whole pages.
const SIZE: usize = (RING + COUNT as usize * BUFFER).next_multiple_of(PAGE);
const PAGE: usize = 4096;
const _: () = assert!(COUNT.is_power_of_two() && BUFFER <= u32::MAX as usize);

/// Free inboxes kept per thread; beyond this, ended connections unregister and unmap theirs.
const KEEP: usize = 256;
/// The first buffer group id used (compio's own pool is group 1).
const FIRST_GROUP: u16 = 0x100;

/// `IORING_REGISTER_PBUF_RING` / `IORING_UNREGISTER_PBUF_RING` (io_uring_register(2)).
const REGISTER_PBUF_RING: libc::c_uint = 22;
const UNREGISTER_PBUF_RING: libc::c_uint = 23;

/// `struct io_uring_buf_reg`.
#[repr(C)]
#[derive(Default)]
struct BufReg {
    ring_addr: u64,
    ring_entries: u32,
    bgid: u16,
    flags: u16,
    resv: [u64; 3],
}

/// One mapping registered as buffer group `group` (see the module invariants).
struct Memory {
    start: NonNull<u8>,
    group: u16,
    /// Next ring slot to provide a buffer in (the kernel's head follows it around).
    tail: u16,
    /// Buffers `0..in_use` take turns in the ring: 1, or [`COUNT`] once grown.
    in_use: u16,
    /// A receive filled more than the first page of its buffer.
    deep: bool,
}

/// One thread's inboxes: those of ended connections, and the group ids free for new ones.
pub(crate) struct InboxPool {
    ring: RawFd,
    free: RefCell<Vec<Memory>>,
    free_groups: RefCell<Vec<u16>>,
    next_group: Cell<u16>,
    /// A ring could not be registered (logged once per thread).
    ring_failed: Cell<bool>,
}

impl InboxPool {
    /// The pool of the current thread's runtime (call inside it).
    pub(crate) fn new() -> Rc<Self> {
        Rc::new(InboxPool {
            ring: compio::runtime::Runtime::with_current(|runtime| runtime.as_raw_fd()),
            free: RefCell::default(),
            free_groups: RefCell::default(),
            next_group: Cell::new(FIRST_GROUP),
            ring_failed: Cell::new(false),
        })
    }

    /// A free inbox, or a newly mapped and registered one; a plain one if no ring can be
    /// registered.
    pub(crate) fn take(self: &Rc<Self>) -> Inbox {
        let memory = match self.free.borrow_mut().pop() {
            Some(memory) => Ok(memory),
            None => self.create(),
        };
        match memory {
            Ok(memory) => Inbox::Ring(RingInbox {
                memory: Some(memory),
                pool: self.clone(),
                held: None,
                receive: None,
            }),
            Err(error) => {
                if !self.ring_failed.replace(true) {
                    tracing::warn!(
                        %error,
                        "no receive buffer ring for a connection (see `ulimit -l`): \
                         receiving one read at a time for such connections"
                    );
                }
                Inbox::Plain(PlainInbox::default())
            }
        }
    }

    fn create(&self) -> io::Result<Memory> {
        let group = match self.free_groups.borrow_mut().pop() {
            Some(group) => group,
            None => {
                let group = self.next_group.get();
                let next = group.checked_add(1).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::OutOfMemory, "no buffer group id left")
                })?;
                self.next_group.set(next);
                group
            }
        };
        let start = map_pages(SIZE).inspect_err(|_| self.free_groups.borrow_mut().push(group))?;
        let mut memory = Memory {
            start,
            group,
            tail: 0,
            in_use: 1,
            deep: false,
        };
        memory.provide(0);
        let registration = BufReg {
            ring_addr: start.as_ptr() as u64,
            ring_entries: COUNT.into(),
            bgid: group,
            ..BufReg::default()
        };
        if let Err(error) = self.register(REGISTER_PBUF_RING, &registration) {
            // SAFETY: the mapping was made above and nothing else refers to it.
            unsafe { libc::munmap(start.as_ptr().cast(), SIZE) };
            self.free_groups.borrow_mut().push(group);
            return Err(error);
        }
        Ok(memory)
    }

    /// Takes back an inbox's memory (no receive is armed on it, no chunk is held). Only
    /// small ones are kept (one buffer in the ring), with one page in memory.
    fn put(&self, mut memory: Memory) {
        let mut free = self.free.borrow_mut();
        if free.len() < KEEP && memory.in_use == 1 {
            if memory.deep {
                // What a bigger receive touched goes back to the kernel.
                // SAFETY: unarmed, and no chunk is held: nothing reads or writes the pages.
                unsafe {
                    let beyond = memory.start.as_ptr().add(PAGE);
                    libc::madvise(beyond.cast(), SIZE - PAGE, libc::MADV_DONTNEED);
                }
                memory.deep = false;
            }
            return free.push(memory);
        }
        let registration = BufReg {
            bgid: memory.group,
            ..BufReg::default()
        };
        if self.register(UNREGISTER_PBUF_RING, &registration).is_ok() {
            self.free_groups.borrow_mut().push(memory.group);
        }
        // SAFETY: unarmed: the kernel writes no more into the buffers (see the invariants).
        unsafe { libc::munmap(memory.start.as_ptr().cast(), SIZE) };
    }

    fn register(&self, opcode: libc::c_uint, registration: &BufReg) -> io::Result<()> {
        // SAFETY: `registration` is a valid `io_uring_buf_reg` for the one argument given.
        let result = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.ring,
                opcode,
                std::ptr::from_ref(registration),
                1,
            )
        };
        match result {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }
}

impl Drop for InboxPool {
    fn drop(&mut self) {
        // Only inboxes no receive is armed on are here; the ring drops their groups itself.
        for memory in self.free.get_mut().drain(..) {
            // SAFETY: see `put`.
            unsafe { libc::munmap(memory.start.as_ptr().cast(), SIZE) };
        }
    }
}

impl Memory {
    /// Puts the buffers not yet in use into the ring too.
    fn grow(&mut self) {
        for id in self.in_use..COUNT {
            self.provide(id);
        }
        self.in_use = COUNT;
    }

    /// Hands buffer `id` to the kernel: writes the ring entry at the tail, then moves the
    /// tail past it.
    fn provide(&mut self, id: u16) {
        let entry = (self.tail & (COUNT - 1)) as usize * 16;
        let addr = self.buffer(id).as_ptr() as u64;
        // SAFETY: the entry lies in the ring at the start of the mapping; the kernel reads
        // entries only up to the published tail, which does not cover this one yet.
        unsafe {
            let at = self.start.as_ptr().add(entry);
            at.cast::<u64>().write(addr);
            at.add(8).cast::<u32>().write(BUFFER as u32);
            at.add(12).cast::<u16>().write(id);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the ring's tail is the u16 at offset 14 (`struct io_uring_buf_ring`, over
        // entry 0's reserved field), 2-aligned in a page-aligned mapping, and only ever
        // accessed atomically once registered.
        let shared = unsafe { AtomicU16::from_ptr(self.start.as_ptr().add(14).cast()) };
        shared.store(self.tail, Ordering::Release);
    }

    fn buffer(&self, id: u16) -> NonNull<u8> {
        debug_assert!(id < COUNT);
        // SAFETY: buffer `id` lies inside the mapping, after the ring.
        unsafe { self.start.add(RING + id as usize * BUFFER) }
    }
}

/// Received octets: a buffer of the inbox and how much of it the kernel filled.
#[must_use = "a chunk must be given back"]
pub(crate) struct Chunk {
    id: u16,
    len: usize,
}

/// A connection's receive side (see the module documentation).
pub(crate) enum Inbox {
    /// A buffer ring of its own, filled by one multishot receive.
    Ring(RingInbox),
    /// One receive at a time into a buffer of its own.
    Plain(PlainInbox),
}

impl Inbox {
    /// The next chunk received on `stream`; `None` when the peer has closed its side. Every
    /// chunk must be given back before the next poll.
    pub(crate) fn poll_receive(
        &mut self,
        stream: &TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Chunk>>> {
        match self {
            Inbox::Ring(ring) => ring.poll_receive(stream, cx),
            Inbox::Plain(plain) => plain.poll_receive(stream, cx),
        }
    }

    /// The octets of a chunk.
    pub(crate) fn data(&self, chunk: &Chunk) -> &[u8] {
        match self {
            Inbox::Ring(ring) => ring.data(chunk),
            Inbox::Plain(plain) => plain.data(chunk),
        }
    }

    /// Returns a chunk's buffer for the next receive.
    pub(crate) fn give_back(&mut self, chunk: Chunk) {
        match self {
            Inbox::Ring(ring) => ring.give_back(chunk),
            Inbox::Plain(_) => {}
        }
    }

    /// Gives back the buffer of a chunk that was dropped instead (by a conversation that
    /// panicked: nothing reads the chunk any more), so that the memory can be reused.
    pub(crate) fn recover_dropped_chunk(&mut self) {
        if let Inbox::Ring(ring) = self {
            ring.recover_dropped_chunk();
        }
    }

    /// Whether a receive is armed that must end before the memory is reused (a plain
    /// receive is cancelled by dropping it: compio keeps its buffer until it has ended).
    pub(crate) fn is_armed(&self) -> bool {
        matches!(self, Inbox::Ring(ring) if ring.receive.is_some())
    }

    /// Ends an armed receive (see [`RingInbox::poll_end`]).
    pub(crate) fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            Inbox::Ring(ring) => ring.poll_end(cx),
            Inbox::Plain(_) => Poll::Ready(()),
        }
    }
}

/// An inbox with a buffer ring of its own.
pub(crate) struct RingInbox {
    /// Taken only when the inbox is dropped.
    memory: Option<Memory>,
    pool: Rc<InboxPool>,
    /// The buffer of the chunk out (named by a completion, not yet given back), if any: by
    /// the rule of `poll_receive`, at most one.
    held: Option<u16>,
    /// The armed multishot receive, if any.
    receive: Option<Pin<Box<SubmitMulti<Receive>>>>,
}

impl RingInbox {
    /// The next chunk received on `stream`, arming the receive when none is; `None` when the
    /// peer has closed its side. Every chunk must be given back before the next poll.
    fn poll_receive(
        &mut self,
        stream: &TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Chunk>>> {
        let group = self.memory.as_ref().expect("taken only on drop").group;
        debug_assert_eq!(
            self.held, None,
            "chunks are given back before the next receive"
        );
        loop {
            let receive = self.receive.get_or_insert_with(|| {
                Box::pin(compio::runtime::submit_multi(Receive {
                    fd: stream.to_shared_fd(),
                    group,
                    completions: VecDeque::new(),
                }))
            });
            let next = ready!(receive.as_mut().poll_next(cx));
            if receive.is_terminated() {
                self.receive = None;
            }
            let Some(BufResult(result, extra)) = next else {
                continue; // ended after its last completion: arm again
            };
            return Poll::Ready(match result {
                Ok(0) => Ok(None),
                Ok(len) => {
                    let id = extra.buffer_id()?;
                    if id >= COUNT || len > BUFFER {
                        return Poll::Ready(Err(io::Error::other("bad receive completion")));
                    }
                    self.held = Some(id);
                    self.memory.as_mut().expect("taken only on drop").deep |= len > PAGE - RING;
                    Ok(Some(Chunk { id, len }))
                }
                // The connection fell behind and the ring ran dry; every chunk is back by
                // now. Give the kernel all the buffers, and receive again.
                Err(error) if is_out_of_buffers(&error) => {
                    self.memory.as_mut().expect("taken only on drop").grow();
                    continue;
                }
                Err(error) => Err(error),
            });
        }
    }

    fn data(&self, chunk: &Chunk) -> &[u8] {
        let memory = self.memory.as_ref().expect("taken only on drop");
        // SAFETY: the kernel filled `len` octets of buffer `id` and, by the invariants,
        // writes no more into it until it is given back, which takes `&mut self`.
        unsafe { std::slice::from_raw_parts(memory.buffer(chunk.id).as_ptr(), chunk.len) }
    }

    /// Returns a chunk's buffer to the kernel.
    fn give_back(&mut self, chunk: Chunk) {
        let memory = self.memory.as_mut().expect("taken only on drop");
        memory.provide(chunk.id);
        self.held = None;
    }

    /// See [`Inbox::recover_dropped_chunk`].
    fn recover_dropped_chunk(&mut self) {
        if let Some(id) = self.held.take() {
            self.memory
                .as_mut()
                .expect("taken only on drop")
                .provide(id);
        }
    }

    /// Ends an armed receive, which the shut-down socket completes at once; discards
    /// whatever it still brings. Call after shutting the socket down for reading.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Some(receive) = self.receive.as_mut() {
            let next = ready!(receive.as_mut().poll_next(cx));
            if receive.is_terminated() || next.is_none() {
                self.receive = None;
            }
            if let Some(BufResult(Ok(1..), extra)) = next {
                if let Ok(id) = extra.buffer_id() {
                    self.memory
                        .as_mut()
                        .expect("taken only on drop")
                        .provide(id);
                }
            }
        }
        Poll::Ready(())
    }
}

impl Drop for RingInbox {
    fn drop(&mut self) {
        // An armed receive may still write into the buffers, and a held buffer is missing
        // from the ring: such memory is leaked, never reused or unmapped (dropping the
        // receive cancels it).
        if let (Some(memory), None, None) = (self.memory.take(), &self.receive, self.held) {
            self.pool.put(memory);
        }
    }
}

/// Octets a plain inbox receives at most at once (the old single-shot receive's size).
const PLAIN: usize = 64 * 1024;

/// An inbox without a ring: one receive at a time into its own buffer.
#[derive(Default)]
pub(crate) struct PlainInbox {
    /// `None` while a receive is in flight (the receive owns it).
    buffer: Option<Vec<u8>>,
    receive: Option<Pin<Box<Submit<ReceiveOnce>>>>,
}

impl PlainInbox {
    fn poll_receive(
        &mut self,
        stream: &TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Chunk>>> {
        let buffer = &mut self.buffer;
        let receive = self.receive.get_or_insert_with(|| {
            Box::pin(compio::runtime::submit(ReceiveOnce {
                fd: stream.to_shared_fd(),
                // Zeroed, so that every octet is initialized; pages are touched as used.
                buffer: buffer.take().unwrap_or_else(|| vec![0; PLAIN]),
            }))
        });
        let BufResult(result, op) = ready!(receive.as_mut().poll(cx));
        self.receive = None;
        self.buffer = Some(op.buffer);
        Poll::Ready(match result {
            Ok(0) => Ok(None),
            Ok(len) => Ok(Some(Chunk { id: 0, len })),
            Err(error) => Err(error),
        })
    }

    fn data(&self, chunk: &Chunk) -> &[u8] {
        &self.buffer.as_deref().unwrap_or_default()[..chunk.len]
    }
}

/// One receive into an owned buffer (`IORING_OP_RECV`).
struct ReceiveOnce {
    fd: SharedFd<socket2::Socket>,
    buffer: Vec<u8>,
}

// SAFETY: the entry refers to the socket, which `fd` keeps open, and to the buffer's heap
// memory, which the operation owns (compio keeps it until the operation has ended).
unsafe impl OpCode for ReceiveOnce {
    type Control = ();

    fn create_entry(&mut self, _: &mut ()) -> OpEntry {
        let fd = io_uring::types::Fd(self.fd.as_raw_fd());
        let len = u32::try_from(self.buffer.len()).unwrap_or(u32::MAX);
        io_uring::opcode::Recv::new(fd, self.buffer.as_mut_ptr(), len)
            .build()
            .into()
    }
}

/// `ENOBUFS`, as compio reports it.
fn is_out_of_buffers(error: &io::Error) -> bool {
    match error.raw_os_error() {
        Some(code) => code == libc::ENOBUFS,
        None => error.kind() == io::ErrorKind::ResourceBusy,
    }
}

/// A multishot receive into buffer group `group` (`IORING_OP_RECV` with
/// `IORING_RECV_MULTISHOT` and buffer select).
struct Receive {
    fd: SharedFd<socket2::Socket>,
    group: u16,
    completions: VecDeque<BufResult<usize, Extra>>,
}

// SAFETY: the entry refers to the socket, which `fd` keeps open until the operation ends,
// and to the buffer group, whose memory the inbox keeps mapped until then (Drop above).
unsafe impl OpCode for Receive {
    type Control = ();

    fn create_entry(&mut self, _: &mut ()) -> OpEntry {
        let fd = io_uring::types::Fd(self.fd.as_raw_fd());
        io_uring::opcode::RecvMulti::new(fd, self.group)
            .build()
            .into()
    }

    unsafe fn push_multishot(&mut self, _: &mut (), result: io::Result<usize>, extra: Extra) {
        self.completions.push_back(BufResult(result, extra));
    }

    fn pop_multishot(&mut self, _: &mut ()) -> Option<BufResult<usize, Extra>> {
        self.completions.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::io::Write;
    use std::time::Duration;

    fn ring(inbox: Inbox) -> RingInbox {
        match inbox {
            Inbox::Ring(ring) => ring,
            Inbox::Plain(_) => panic!("no ring"),
        }
    }

    /// Receives everything `stream` brings until the peer closes, giving chunks back.
    async fn receive_all(inbox: &mut Inbox, stream: &TcpStream) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(chunk) = poll_fn(|cx| inbox.poll_receive(stream, cx)).await.unwrap() {
            all.extend_from_slice(inbox.data(&chunk));
            inbox.give_back(chunk);
            // A slow reader: the kernel fills every buffer meanwhile and ends the receive.
            compio::time::sleep(Duration::from_millis(2)).await;
        }
        all
    }

    fn connected() -> (std::net::TcpStream, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, TcpStream::from_std(server).unwrap())
    }

    /// Sends 1 MiB in odd-sized writes from another thread, far more than an inbox holds,
    /// and receives it slowly; returns what was sent and what was received.
    async fn flood(inbox: &mut Inbox) -> (Vec<u8>, Vec<u8>) {
        let (mut client, stream) = connected();
        let sent: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let writer = std::thread::spawn({
            let sent = sent.clone();
            move || {
                for piece in sent.chunks(7919) {
                    client.write_all(piece).unwrap();
                }
            }
        });
        let received = receive_all(inbox, &stream).await;
        writer.join().unwrap();
        (sent, received)
    }

    #[test]
    fn a_reader_that_falls_behind_loses_nothing_and_its_grown_inbox_is_not_kept() {
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let pool = InboxPool::new();
            let mut inbox = pool.take();
            let (sent, received) = flood(&mut inbox).await;
            assert!(received == sent, "every octet, in order");
            assert!(!inbox.is_armed(), "the peer's close ended the receive");
            let inbox = ring(inbox);
            assert_eq!(inbox.memory.as_ref().unwrap().in_use, COUNT, "it grew");
            let group = inbox.memory.as_ref().unwrap().group;
            drop(inbox);
            assert!(pool.free.borrow().is_empty(), "a grown inbox is not kept");
            assert_eq!(*pool.free_groups.borrow(), [group], "but unregistered");
        });
    }

    #[test]
    fn without_a_ring_a_connection_is_served_by_plain_receives() {
        compio::runtime::Runtime::new().unwrap().block_on(async {
            // A ring that refuses registrations, like a reached locked-memory limit.
            let pool = Rc::new(InboxPool {
                ring: -1,
                free: RefCell::default(),
                free_groups: RefCell::default(),
                next_group: Cell::new(FIRST_GROUP),
                ring_failed: Cell::new(false),
            });
            let mut inbox = pool.take();
            assert!(matches!(inbox, Inbox::Plain(_)));
            assert!(pool.ring_failed.get());
            let (sent, received) = flood(&mut inbox).await;
            assert!(received == sent, "every octet, in order");
        });
    }

    #[test]
    fn a_lock_step_conversation_uses_one_buffer_and_its_inbox_is_kept_with_one_page() {
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let pool = InboxPool::new();
            let (mut client, stream) = connected();
            let mut inbox = ring(pool.take());
            let group = inbox.memory.as_ref().unwrap().group;
            for command in 0..50 {
                let line = format!("NOOP {command}\r\n");
                client.write_all(line.as_bytes()).unwrap();
                let chunk = poll_fn(|cx| inbox.poll_receive(&stream, cx)).await;
                let chunk = chunk.unwrap().expect("a command");
                assert_eq!(chunk.id, 0, "the one buffer, again and again");
                assert_eq!(inbox.data(&chunk), line.as_bytes());
                inbox.give_back(chunk);
            }
            // A message line bigger than a page, in the same buffer.
            let long = [b'x'; 10_000];
            client.write_all(&long).unwrap();
            let mut got = 0;
            while got < long.len() {
                let chunk = poll_fn(|cx| inbox.poll_receive(&stream, cx)).await;
                let chunk = chunk.unwrap().expect("the line");
                got += inbox.data(&chunk).len();
                inbox.give_back(chunk);
            }
            drop(client);
            assert!(poll_fn(|cx| inbox.poll_receive(&stream, cx))
                .await
                .unwrap()
                .is_none());
            drop(inbox);
            assert_eq!(pool.free.borrow().len(), 1, "a small inbox is kept");
            assert_eq!(resident(pool.free.borrow()[0].start), 1, "with one page");
            let again = ring(pool.take());
            assert_eq!(again.memory.as_ref().unwrap().group, group, "and reused");
            let other = ring(pool.take());
            assert_ne!(other.memory.as_ref().unwrap().group, group);
        });
    }

    /// How many pages of the mapping at `start` are in memory.
    fn resident(start: NonNull<u8>) -> usize {
        let mut pages = [0u8; SIZE / PAGE];
        // SAFETY: `start` is a live mapping of SIZE octets; `pages` has one octet per page.
        let result = unsafe { libc::mincore(start.as_ptr().cast(), SIZE, pages.as_mut_ptr()) };
        assert_eq!(result, 0);
        pages.iter().filter(|&&page| page & 1 == 1).count()
    }

    #[test]
    fn beyond_the_kept_few_inboxes_are_unregistered_and_their_groups_reused() {
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let pool = InboxPool::new();
            let inboxes: Vec<RingInbox> = (0..=KEEP).map(|_| ring(pool.take())).collect();
            let last = inboxes[KEEP].memory.as_ref().unwrap().group;
            drop(inboxes);
            assert_eq!(pool.free.borrow().len(), KEEP);
            assert_eq!(*pool.free_groups.borrow(), [last], "unregistered");
            let kept: Vec<RingInbox> = (0..KEEP).map(|_| ring(pool.take())).collect();
            // A new registration with the freed id succeeds (the kernel let go of it).
            let again = ring(pool.take());
            assert_eq!(again.memory.as_ref().unwrap().group, last);
            assert!(pool.free_groups.borrow().is_empty());
            drop((kept, again));
        });
    }

    #[test]
    fn a_chunk_dropped_by_a_panicking_conversation_is_recovered_and_the_inbox_reused() {
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let pool = InboxPool::new();
            let (mut client, stream) = connected();
            let mut inbox = Inbox::Ring(ring(pool.take()));
            client
                .write_all(b"RCPT TO:<panic@example.com>\r\n")
                .unwrap();
            let chunk = poll_fn(|cx| inbox.poll_receive(&stream, cx)).await;
            drop(chunk.unwrap().expect("a command"));
            inbox.recover_dropped_chunk();
            drop(client);
            assert!(poll_fn(|cx| inbox.poll_receive(&stream, cx))
                .await
                .unwrap()
                .is_none());
            drop(inbox);
            assert_eq!(pool.free.borrow().len(), 1, "kept for reuse, not leaked");
            let mut again = pool.take();
            let (mut client, stream) = connected();
            client.write_all(b"NOOP\r\n").unwrap();
            let chunk = poll_fn(|cx| again.poll_receive(&stream, cx)).await;
            let chunk = chunk.unwrap().expect("a command");
            assert_eq!(again.data(&chunk), b"NOOP\r\n");
            again.give_back(chunk);
        });
    }

    #[test]
    fn an_armed_inbox_is_never_reused() {
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let pool = InboxPool::new();
            let (client, stream) = connected();
            let mut inbox = ring(pool.take());
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            assert!(inbox.poll_receive(&stream, &mut cx).is_pending());
            assert!(inbox.receive.is_some(), "armed");
            drop(inbox);
            assert!(pool.free.borrow().is_empty(), "leaked, not reused");
            drop(client);
        });
    }
}
