//! The core path performs zero heap allocations: command parsing, DATA decoding and whole
//! sessions, counted by a global allocator. Nothing is warmed up: the first call counts too.
//!
//! Only allocations of a thread that armed the counter are counted, and only one thread at a
//! time may arm it, so neither the test harness nor tests running in parallel can disturb the
//! count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use smtpd_benches::corpus::{self, COMMANDS};
use smtpd_benches::{decode_chunked_with, decode_with, run_session};
use smtpd_core::command::Command;

/// Heap allocations (`alloc`, `alloc_zeroed`, `realloc`) made by armed threads.
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's allocations are counted. A const-initialised `Cell<bool>` needs no
    /// destructor or lazy initialisation, so reading it never allocates.
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

struct Counting;

impl Counting {
    fn count(&self) {
        if ARMED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.count();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Held while a thread is armed: tests run in parallel, the counter is shared.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `f` with this thread's allocations counted; returns how many it made.
fn allocations_in<R>(f: impl FnOnce() -> R) -> usize {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    ARMED.with(|armed| armed.set(true));
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    black_box(f());
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    ARMED.with(|armed| armed.set(false));
    after - before
}

#[test]
fn the_counter_counts() {
    assert_eq!(allocations_in(|| ()), 0);
    assert_eq!(
        allocations_in(|| black_box(Vec::<u8>::with_capacity(16))),
        1
    );
    let grown = allocations_in(|| {
        let mut v = black_box(Vec::<u8>::with_capacity(1));
        v.extend_from_slice(black_box(&[0; 64]));
        v
    });
    assert_eq!(grown, 2, "one alloc and one realloc");
    assert_eq!(allocations_in(|| black_box(String::from("x"))), 1);
}

#[test]
fn command_parsing_does_not_allocate() {
    let mut parsed = 0;
    let n = allocations_in(|| {
        for line in COMMANDS {
            parsed += usize::from(Command::parse(black_box(line)).is_ok());
        }
        // Errors are allocation-free too.
        for bad in [
            "",
            "MAIL FROM:<a@b",
            "RCPT TO:<a..b@c>",
            "BDAT x",
            "XFOO bar",
        ] {
            black_box(Command::parse(black_box(bad))).ok();
        }
    });
    assert_eq!(parsed, COMMANDS.len());
    assert_eq!(n, 0, "allocations while parsing commands");
}

#[test]
fn data_decoding_does_not_allocate() {
    let bodies = corpus::bodies();
    // Room for every result, so that recording them does not allocate.
    let mut decoded = Vec::with_capacity(bodies.len());
    let n = allocations_in(|| {
        for body in &bodies {
            let wire = black_box(body.wire.as_slice());
            let mut whole = 0;
            let end = decode_with(wire, |chunk| whole += chunk.len());
            let mut reads = 0;
            let read_end = decode_chunked_with(wire, 1000, |chunk| reads += chunk.len());
            let mut bytes = 0;
            let byte_end = decode_chunked_with(wire, 1, |chunk| bytes += chunk.len());
            decoded.push((end, read_end, byte_end, whole, reads, bytes));
        }
    });
    assert_eq!(n, 0, "allocations while decoding bodies");
    for (body, result) in bodies.iter().zip(decoded) {
        let len = body.content.len();
        assert_eq!(
            result,
            (Some(body.wire.len()), true, true, len, len, len),
            "{}",
            body.name
        );
    }
}

#[test]
fn a_whole_session_does_not_allocate() {
    let bodies = corpus::bodies();
    let session = corpus::session_script(&bodies);
    let config = smtpd_benches::config();
    let script = session.script.as_slice();
    let mut results = [None; 3];
    let mut output_bytes = 0;
    let n = allocations_in(|| {
        for (result, read) in results.iter_mut().zip([script.len(), 16 * 1024, 7]) {
            *result = Some(run_session(&config, black_box(script), read, |out| {
                output_bytes += out.len()
            }));
        }
    });
    assert_eq!(n, 0, "allocations during a session");
    for result in results {
        let sink = result.unwrap();
        assert_eq!(sink.messages, session.messages);
        assert_eq!(sink.content_bytes, session.content_bytes);
    }
    assert!(output_bytes > 0);
}
