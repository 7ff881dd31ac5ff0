//! The static memory of one connection slot.
//!
//! A slot holds the TCP socket's receive and transmit buffers and the input buffer the
//! session reads from. Its type also carries the capacities of the core's session buffers
//! (`LINE`, `OUT`, `ENVELOPE`, see [`smtpd_core::channel::capacity`]), so one type
//! alias fixes every size of a connection:
//!
//! ```ignore
//! type DeviceSlot = Slot<1024, 1024, 256, 548, 512, 1024>;
//! ```
//!
//! The session itself lives in the serving future (in the task's static storage under
//! embassy-executor), sized by those capacities.

use smtpd_core::channel::capacity;

/// Buffers for one connection; see the module documentation.
///
/// - `RX`, `TX`: TCP socket buffers. `RX` bounds the receive window, `TX` holds unacknowledged
///   replies (`TX >= OUT` lets a whole pipelined reply group go out in one write).
/// - `INPUT`: octets read from the socket and handed to the session at once (at least 1; a
///   few hundred octets keep per-call overhead low).
/// - `LINE`, `OUT`, `ENVELOPE`: the core session's capacities (`OUT >= 512`; the envelope
///   arena holds the greeting, the reverse-path and the recipients).
pub struct Slot<
    const RX: usize,
    const TX: usize,
    const INPUT: usize = 512,
    const LINE: usize = { capacity::LINE },
    const OUT: usize = { capacity::OUT },
    const ENVELOPE: usize = { capacity::ENVELOPE },
> {
    pub(crate) rx: [u8; RX],
    pub(crate) tx: [u8; TX],
    pub(crate) input: [u8; INPUT],
}

impl<
        const RX: usize,
        const TX: usize,
        const INPUT: usize,
        const LINE: usize,
        const OUT: usize,
        const ENVELOPE: usize,
    > Slot<RX, TX, INPUT, LINE, OUT, ENVELOPE>
{
    const INPUT_NOT_EMPTY: () = assert!(INPUT > 0, "INPUT must be > 0");

    /// Zeroed buffers; `const`, so slots can be placed in a `static` (`.bss`).
    pub const fn new() -> Self {
        let () = Self::INPUT_NOT_EMPTY;
        Slot {
            rx: [0; RX],
            tx: [0; TX],
            input: [0; INPUT],
        }
    }
}

impl<
        const RX: usize,
        const TX: usize,
        const INPUT: usize,
        const LINE: usize,
        const OUT: usize,
        const ENVELOPE: usize,
    > Default for Slot<RX, TX, INPUT, LINE, OUT, ENVELOPE>
{
    fn default() -> Self {
        Self::new()
    }
}
