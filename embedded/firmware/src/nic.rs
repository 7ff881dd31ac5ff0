//! The network interface: an `embassy-net-driver-channel` until a real MAC driver exists.
//!
//! embassy-net talks to the channel's `Device` end; a MAC driver owns the `Runner` end, moving
//! frames between the channel's packet buffers and the hardware (DMA descriptors). This
//! placeholder reports the link up and consumes transmitted frames; no frame is received.

use core::sync::atomic::{AtomicU32, Ordering};

use embassy_net_driver_channel::{driver::LinkState, Runner};

/// Frames handed to the (absent) hardware.
pub static TX_FRAMES: AtomicU32 = AtomicU32::new(0);

pub async fn run<const MTU: usize>(runner: Runner<'static, MTU>) -> ! {
    let (state, _rx, mut tx) = runner.split();
    state.set_link_state(LinkState::Up);
    loop {
        let frame = tx.tx_buf().await;
        // A MAC driver would queue `frame` for DMA here.
        core::hint::black_box(frame);
        TX_FRAMES.fetch_add(1, Ordering::Relaxed);
        tx.tx_done();
    }
}
