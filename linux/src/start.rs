//! The start of a server's threads: each sets its io_uring runtime up and waits; once all
//! have, the server's owner may act (the `smtpd` binary leaves root then) and lets them
//! serve, or not.

use std::sync::{Condvar, Mutex, MutexGuard};

/// The start of the serving threads: each sets its runtime up, then waits until the
/// server's owner lets them all serve (or not).
pub(crate) struct Start {
    state: Mutex<StartState>,
    changed: Condvar,
}

struct StartState {
    /// Threads still setting up.
    pending: usize,
    /// Threads whose runtime is set up.
    ready: usize,
    /// The owner's word, once given: serve or not.
    serve: Option<bool>,
}

impl Start {
    pub fn new(threads: usize) -> Self {
        Start {
            state: Mutex::new(StartState {
                pending: threads,
                ready: 0,
                serve: None,
            }),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, StartState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A thread's part in the start, told as not set up if it ends (a panic) first.
    pub fn join(&self) -> Joining<'_> {
        Joining {
            start: self,
            told: false,
        }
    }

    fn tell(&self, ready: bool) {
        let mut state = self.state();
        state.pending -= 1;
        state.ready += usize::from(ready);
        self.changed.notify_all();
    }

    /// Waits until every thread is set up or has failed to be; whether any is.
    pub fn wait_for_threads(&self) -> bool {
        let mut state = self.state();
        while state.pending > 0 {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.ready > 0
    }

    pub fn release(&self, serve: bool) {
        self.state().serve = Some(serve);
        self.changed.notify_all();
    }

    /// Whether the owner has let the threads serve (some of them set up).
    pub fn serving(&self) -> bool {
        self.state().serve == Some(true)
    }
}

/// A serving thread's part in the [`Start`].
pub(crate) struct Joining<'a> {
    start: &'a Start,
    told: bool,
}

impl Joining<'_> {
    /// Tells whether this thread's runtime is set up, and waits for the word: whether to
    /// serve.
    pub fn set_up(mut self, ready: bool) -> bool {
        self.told = true;
        self.start.tell(ready);
        let mut state = self.start.state();
        loop {
            if let Some(serve) = state.serve {
                return serve;
            }
            state = self
                .start
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Joining<'_> {
    fn drop(&mut self) {
        if !self.told {
            self.start.tell(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn threads_wait_for_the_word_and_one_that_dies_counts_as_not_set_up() {
        let start = Arc::new(Start::new(3));
        let spawn = |ready: Option<bool>| {
            let start = start.clone();
            std::thread::spawn(move || {
                let joining = start.join();
                // None: dropped unannounced, as by a panic.
                ready.map(|ready| joining.set_up(ready))
            })
        };
        let threads = [spawn(Some(true)), spawn(Some(false)), spawn(None)];
        assert!(start.wait_for_threads());
        assert!(!start.serving());
        start.release(true);
        assert!(start.serving());
        let words: Vec<_> = threads.map(|thread| thread.join().unwrap()).into();
        assert_eq!(words, [Some(true), Some(true), None]);

        let start = Arc::new(Start::new(2));
        let threads = [spawn_failing(&start), spawn_failing(&start)];
        assert!(!start.wait_for_threads());
        start.release(false);
        assert!(!start.serving());
        for thread in threads {
            assert!(!thread.join().unwrap());
        }
    }

    fn spawn_failing(start: &Arc<Start>) -> std::thread::JoinHandle<bool> {
        let start = start.clone();
        std::thread::spawn(move || start.join().set_up(false))
    }
}
