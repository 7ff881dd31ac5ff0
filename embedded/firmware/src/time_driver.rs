//! embassy-time driver on SysTick: a 1 kHz tick counter and a generic timer queue
//! (`embassy-time-queue-utils`, 8 entries) checked on every tick.

use core::cell::{Cell, RefCell};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time_queue_utils::Queue;

/// Core clock after reset (e.g. an STM32's 16 MHz HSI).
pub const SYSCLK_HZ: u32 = 16_000_000;
/// Must match embassy-time's `tick-hz-1_000` feature.
const TICK_HZ: u32 = 1_000;

pub struct SysTickDriver {
    ticks: Mutex<CriticalSectionRawMutex, Cell<u64>>,
    queue: Mutex<CriticalSectionRawMutex, RefCell<Queue>>,
}

impl SysTickDriver {
    fn tick(&self) {
        let now = self.ticks.lock(|ticks| {
            ticks.set(ticks.get() + 1);
            ticks.get()
        });
        self.queue
            .lock(|queue| queue.borrow_mut().next_expiration(now));
    }
}

impl embassy_time_driver::Driver for SysTickDriver {
    fn now(&self) -> u64 {
        self.ticks.lock(Cell::get)
    }

    fn schedule_wake(&self, at: u64, waker: &core::task::Waker) {
        let now = self.now();
        self.queue.lock(|queue| {
            let mut queue = queue.borrow_mut();
            queue.schedule_wake(at, waker);
            // A deadline already reached is not left for the next tick.
            queue.next_expiration(now);
        });
    }
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    ticks: Mutex::new(Cell::new(0)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

/// Starts the 1 kHz tick.
pub fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYSCLK_HZ / TICK_HZ - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    DRIVER.tick();
}
