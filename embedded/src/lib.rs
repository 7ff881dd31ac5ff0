//! # smtpd-embedded
//!
//! Serves [`smtpd_core`] SMTP sessions on an [`embassy_net`] stack: `no_std`, no allocation,
//! no `unsafe`. The crate only moves bytes and keeps one timer per connection; every SMTP
//! rule lives in the core.
//!
//! Layout, one concept per module:
//! - [`slot`]: the static memory of one connection (TCP socket buffers and input buffer),
//!   whose type also fixes the capacities of the core's session buffers.
//! - [`serve`](mod@serve): the listener pool. smoltcp has no listen backlog (a SYN is accepted only by a
//!   socket waiting in `accept`), so every slot keeps its own socket listening, and the pool
//!   size is how many clients are served at once.
//! - [`connection`]: drives one accepted connection through a core
//!   [`Session`](smtpd_core::Session) (read or deadline, write, close).
//! - [`clock`]: the core's time as embassy-time counts it.
//! - [`ring`]: a device-style [`Handler`](smtpd_core::Handler) that streams each message into
//!   a fixed-size ring store and answers `250` only once the whole message is stored.
//!
//! Logging uses `defmt` behind the `defmt` feature; without it nothing is printed.
//!
//! ```ignore
//! static CONFIG: Config<'static> = Config::new("device.example");
//! static SLOTS: ConstStaticCell<[Slot<1024, 1024>; 2]> = ConstStaticCell::new([Slot::new(), Slot::new()]);
//! static STORE: Ring<CriticalSectionRawMutex, 8192> = Ring::new();
//!
//! #[embassy_executor::task]
//! async fn smtp(stack: Stack<'static>) -> ! {
//!     let make = |_slot, _peer| RingHandler::new(&STORE, 4096);
//!     serve(stack, &CONFIG, &Options::new(25), SLOTS.take(), &make).await
//! }
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[macro_use]
mod fmt;

pub mod clock;
pub mod connection;
pub mod ring;
pub mod serve;
pub mod slot;

pub use connection::{Options, Outcome};
pub use ring::{Ring, RingHandler};
pub use serve::{serve, serve_slot, MakeHandler};
pub use slot::Slot;
