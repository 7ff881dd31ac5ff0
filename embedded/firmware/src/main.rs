//! smtpd-rs on a Cortex-M4F: embassy-executor, embassy-net (smoltcp) and the SMTP receiver
//! serving two concurrent sessions into a static ring store.
//!
//! Memory, all static (see size.sh for the measured totals):
//! - NIC channel: 2 RX + 2 TX Ethernet frames of 1514 octets;
//! - per session slot ([`profile::DeviceSlot`]): 1 KiB TCP receive window, 1 KiB TCP send
//!   buffer, 256 octets of input, and the core session (548-octet command line, 512-octet
//!   reply buffer, 1 KiB envelope, 8 recipients);
//! - the message ring: 10.4 KiB (two largest messages with their envelopes), messages up to 4 KiB.
#![no_std]
#![no_main]

mod nic;
mod profile;
mod time_driver;

use core::net::Ipv4Addr;
use core::sync::atomic::{AtomicU32, Ordering};

use embassy_executor::Spawner;
use embassy_net::{Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_net_driver_channel::driver::HardwareAddress;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use panic_halt as _;
use smtpd_core::Config;
use smtpd_embedded::{serve, Options, Ring, RingHandler, Slot};
use static_cell::ConstStaticCell;

use crate::profile::{DeviceSlot, MESSAGE_LIMIT, SESSIONS, STORE};

const MTU: usize = 1514;
const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x02];
const ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

type Device = embassy_net_driver_channel::Device<'static, MTU>;

static CONFIG: Config<'static> = profile::config("device.example");
static OPTIONS: Options = Options::new(25);

static NIC: ConstStaticCell<embassy_net_driver_channel::State<MTU, 2, 2>> =
    ConstStaticCell::new(embassy_net_driver_channel::State::new());
static RESOURCES: ConstStaticCell<StackResources<SESSIONS>> =
    ConstStaticCell::new(StackResources::new());
static SLOTS: ConstStaticCell<[DeviceSlot; SESSIONS]> =
    ConstStaticCell::new([const { Slot::new() }; SESSIONS]);
static RING: Ring<CriticalSectionRawMutex, STORE> = Ring::new();

/// Octets handed to the uplink (stands in for forwarding the messages somewhere).
static UPLINK_OCTETS: AtomicU32 = AtomicU32::new(0);

#[embassy_executor::task]
async fn nic_task(runner: embassy_net_driver_channel::Runner<'static, MTU>) -> ! {
    nic::run(runner).await
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn smtp_task(stack: embassy_net::Stack<'static>) -> ! {
    let make = |_slot, _peer| RingHandler::new(&RING, MESSAGE_LIMIT);
    serve(stack, &CONFIG, &OPTIONS, SLOTS.take(), &make).await
}

/// Takes stored messages out of the ring, oldest first.
#[embassy_executor::task]
async fn uplink_task() -> ! {
    loop {
        while let Some(len) = RING.pop_with(|message| {
            let sum = message
                .chunks()
                .flatten()
                .fold(0u32, |sum, octet| sum.wrapping_add(u32::from(*octet)));
            core::hint::black_box(sum);
            message.len()
        }) {
            UPLINK_OCTETS.fetch_add(len as u32, Ordering::Relaxed);
        }
        RING.wait_committed().await;
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let peripherals = cortex_m::Peripherals::take().unwrap();
    time_driver::start(peripherals.SYST);

    let (nic_runner, device) =
        embassy_net_driver_channel::new(NIC.take(), HardwareAddress::Ethernet(MAC));
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(ADDRESS, 24),
        gateway: None,
        dns_servers: heapless::Vec::new(),
    });
    // A real device seeds from its RNG.
    let seed = 0x5eed_5eed_5eed_5eed;
    let (stack, net_runner) = embassy_net::new(device, config, RESOURCES.take(), seed);

    spawner.spawn(nic_task(nic_runner).unwrap());
    spawner.spawn(net_task(net_runner).unwrap());
    spawner.spawn(uplink_task().unwrap());
    spawner.spawn(smtp_task(stack).unwrap());
}
