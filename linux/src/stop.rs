//! A worker's shutdown request, fanned out to its connections.
//!
//! The request crosses threads once (a `watch` channel into each worker's accept loop);
//! inside a thread every connection waits on this one-shot flag instead. Polling it is a
//! flag read and a waker comparison, which matters because a connection polls it on every
//! wake-up.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Set once per thread; wakes every [`Listener`] when set.
#[derive(Default)]
pub(crate) struct Stop {
    requested: Cell<bool>,
    /// One slot per listener; a dropped listener's slot is reused.
    wakers: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl Stop {
    /// Requests the stop and wakes every listener.
    pub fn request(&self) {
        self.requested.set(true);
        for waker in self.wakers.borrow_mut().iter_mut() {
            if let Some(waker) = waker.take() {
                waker.wake();
            }
        }
    }

    /// A future that completes once the stop is requested.
    pub fn listen(self: &Rc<Self>) -> Listener {
        let slot = self.free.borrow_mut().pop().unwrap_or_else(|| {
            let mut wakers = self.wakers.borrow_mut();
            wakers.push(None);
            wakers.len() - 1
        });
        Listener {
            stop: self.clone(),
            slot,
        }
    }
}

/// Completes when the stop is requested (at once if it already was).
pub(crate) struct Listener {
    stop: Rc<Stop>,
    slot: usize,
}

impl Future for Listener {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.requested.get() {
            return Poll::Ready(());
        }
        let mut wakers = self.stop.wakers.borrow_mut();
        let waker = &mut wakers[self.slot];
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.wakers.borrow_mut()[self.slot] = None;
        self.stop.free.borrow_mut().push(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn request_wakes_each_waiting_listener_once_and_completes_them() {
        let stop = Rc::new(Stop::default());
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut first = stop.listen();
        let mut second = stop.listen();
        assert!(Pin::new(&mut first).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut first).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut second).poll(&mut cx).is_pending());
        stop.request();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(Pin::new(&mut first).poll(&mut cx).is_ready());
        assert!(Pin::new(&mut second).poll(&mut cx).is_ready());
        // A listener created after the request completes at once.
        assert!(Pin::new(&mut stop.listen()).poll(&mut cx).is_ready());
    }

    #[test]
    fn dropped_listener_frees_its_slot() {
        let stop = Rc::new(Stop::default());
        let first = stop.listen();
        let slot = first.slot;
        drop(first);
        assert_eq!(stop.listen().slot, slot);
        assert_eq!(stop.wakers.borrow().len(), 1);
    }
}
