//! What wakes a connection besides its socket: its deadline, and the server's shutdown.
//!
//! SMTP deadlines are minutes long and move on every command. A runtime timer per
//! connection would give the kernel a timeout to arm on every wait; instead each connection
//! keeps its deadline in a slot here, and one timerfd per thread, read through the ring,
//! wakes the connections whose deadline has passed. Invariant: an alarm fires no earlier
//! than its deadline and at most [`TICK`] after it (the tick runs while any deadline is set).
//!
//! The shutdown request crosses threads once (into each worker's accept loop), which then
//! [`stop`](Alarms::stop)s its thread: every connection's slot is woken, and polling for the
//! request is a flag read.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use compio::buf::BufResult;
use compio::io::AsyncRead;
use compio::runtime::fd::AsyncFd;

/// How often due deadlines are looked for.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// One thread's deadlines.
pub(crate) struct Alarms {
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<usize>>,
    /// Deadlines currently set; the tick runs only while this is not zero.
    set: Cell<usize>,
    ticking: Cell<bool>,
    timer: OwnedFd,
    /// The server is shutting down (set once).
    stopping: Cell<bool>,
}

#[derive(Default)]
struct Slot {
    at: Option<Instant>,
    fired: bool,
    waker: Option<Waker>,
}

impl Alarms {
    pub fn new() -> io::Result<Rc<Self>> {
        // SAFETY: plain syscall; the result is checked before it is owned.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Rc::new(Alarms {
            slots: RefCell::default(),
            free: RefCell::default(),
            set: Cell::new(0),
            ticking: Cell::new(false),
            stopping: Cell::new(false),
            // SAFETY: `fd` was just created and is owned by nobody else.
            timer: unsafe { OwnedFd::from_raw_fd(fd) },
        }))
    }

    /// A new alarm, with no deadline.
    pub fn register(self: &Rc<Self>) -> Alarm {
        let slot = self.free.borrow_mut().pop().unwrap_or_else(|| {
            let mut slots = self.slots.borrow_mut();
            slots.push(Slot::default());
            slots.len() - 1
        });
        Alarm {
            alarms: self.clone(),
            slot,
        }
    }

    /// Requests the stop: wakes every connection, whose [`Alarm::poll_stop`] is then ready.
    pub fn stop(&self) {
        self.stopping.set(true);
        for slot in self.slots.borrow_mut().iter_mut() {
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        }
    }

    /// Reads the tick and fires due alarms, forever (spawned once per thread).
    pub async fn run(self: Rc<Self>) -> io::Result<()> {
        let mut timer = AsyncFd::new(self.timer.try_clone()?)?;
        let mut expirations = Vec::with_capacity(8);
        loop {
            let BufResult(result, buffer) = timer.read(expirations).await;
            result?;
            expirations = buffer;
            self.fire_due(Instant::now());
        }
    }

    /// Fires every alarm whose deadline is at or before `now`; stops the tick when no
    /// deadline is left.
    fn fire_due(&self, now: Instant) {
        for slot in self.slots.borrow_mut().iter_mut() {
            if slot.at.is_some_and(|at| at <= now) {
                slot.at = None;
                slot.fired = true;
                self.set.set(self.set.get() - 1);
                if let Some(waker) = slot.waker.take() {
                    waker.wake();
                }
            }
        }
        if self.set.get() == 0 && self.ticking.get() {
            self.arm(None);
        }
    }

    /// Starts (`Some(TICK)`) or stops (`None`) the periodic tick.
    fn arm(&self, period: Option<Duration>) {
        self.ticking.set(period.is_some());
        let interval = timespec(period.unwrap_or_default());
        let spec = libc::itimerspec {
            it_interval: interval,
            it_value: interval,
        };
        // SAFETY: `timer` is a timerfd we own; `spec` is a valid itimerspec. The call
        // cannot fail with these arguments.
        unsafe {
            use std::os::fd::AsRawFd;
            libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut());
        }
    }
}

fn timespec(duration: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: duration.as_secs() as libc::time_t,
        tv_nsec: duration.subsec_nanos() as libc::c_long,
    }
}

/// One connection's deadline.
pub(crate) struct Alarm {
    alarms: Rc<Alarms>,
    slot: usize,
}

impl Alarm {
    /// Sets (or clears) the deadline. An earlier deadline's firing that was not yet seen is
    /// forgotten: a wait armed with this deadline ends at it, never at a stale one.
    pub fn set(&self, at: Option<Instant>) {
        let alarms = &*self.alarms;
        let mut slots = alarms.slots.borrow_mut();
        let slot = &mut slots[self.slot];
        match (slot.at.is_some(), at.is_some()) {
            (false, true) => alarms.set.set(alarms.set.get() + 1),
            (true, false) => alarms.set.set(alarms.set.get() - 1),
            _ => {}
        }
        slot.at = at;
        slot.fired = false;
        if at.is_some() && !alarms.ticking.get() {
            alarms.arm(Some(TICK));
        }
    }

    /// Ready once after the deadline has passed.
    pub fn poll_fired(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut slots = self.alarms.slots.borrow_mut();
        let slot = &mut slots[self.slot];
        if slot.fired {
            slot.fired = false;
            return Poll::Ready(());
        }
        register(slot, cx);
        Poll::Pending
    }

    /// Ready once the server is stopping (and from then on).
    pub fn poll_stop(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.alarms.stopping.get() {
            return Poll::Ready(());
        }
        register(&mut self.alarms.slots.borrow_mut()[self.slot], cx);
        Poll::Pending
    }
}

/// Keeps the task's waker in its slot (a comparison when it is already there).
fn register(slot: &mut Slot, cx: &Context<'_>) {
    if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        slot.waker = Some(cx.waker().clone());
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        self.set(None);
        self.alarms.slots.borrow_mut()[self.slot] = Slot::default();
        self.alarms.free.borrow_mut().push(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    #[test]
    fn fires_once_at_its_deadline_and_the_tick_stops_when_none_is_left() {
        let alarms = Alarms::new().unwrap();
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let now = Instant::now();
        let early = alarms.register();
        let late = alarms.register();
        early.set(Some(now + Duration::from_secs(1)));
        late.set(Some(now + Duration::from_secs(5)));
        assert!(alarms.ticking.get());
        alarms.fire_due(now);
        assert!(early.poll_fired(&mut cx).is_pending());
        alarms.fire_due(now + Duration::from_secs(1));
        assert!(early.poll_fired(&mut cx).is_ready());
        assert!(early.poll_fired(&mut cx).is_pending(), "fires once");
        assert!(late.poll_fired(&mut cx).is_pending());
        assert!(alarms.ticking.get(), "a deadline is still set");
        late.set(None);
        alarms.fire_due(now + Duration::from_secs(10));
        assert!(
            late.poll_fired(&mut cx).is_pending(),
            "a cleared deadline never fires"
        );
        assert!(!alarms.ticking.get());
        // A firing nobody saw does not end a wait armed later for another deadline.
        early.set(Some(now + Duration::from_secs(11)));
        alarms.fire_due(now + Duration::from_secs(11));
        early.set(Some(now + Duration::from_secs(20)));
        assert!(early.poll_fired(&mut cx).is_pending(), "a stale firing");
        alarms.fire_due(now + Duration::from_secs(20));
        assert!(early.poll_fired(&mut cx).is_ready());
    }

    #[test]
    fn stop_wakes_every_connection_and_stays_requested() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let alarms = Alarms::new().unwrap();
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let first = alarms.register();
        let second = alarms.register();
        assert!(first.poll_stop(&mut cx).is_pending());
        assert!(first.poll_stop(&mut cx).is_pending());
        assert!(second.poll_stop(&mut cx).is_pending());
        alarms.stop();
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(first.poll_stop(&mut cx).is_ready());
        assert!(second.poll_stop(&mut cx).is_ready());
        assert!(
            alarms.register().poll_stop(&mut cx).is_ready(),
            "a later connection too"
        );
    }

    #[test]
    fn dropping_an_alarm_releases_its_deadline_and_slot() {
        let alarms = Alarms::new().unwrap();
        let alarm = alarms.register();
        alarm.set(Some(Instant::now()));
        drop(alarm);
        assert_eq!(alarms.set.get(), 0);
        let again = alarms.register();
        assert_eq!(again.slot, 0);
        assert_eq!(alarms.slots.borrow().len(), 1);
    }
}
