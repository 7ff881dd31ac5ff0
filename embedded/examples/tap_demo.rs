//! Host demo: the embedded SMTP receiver on embassy-net over a Linux TAP device.
//!
//! ```text
//! tap_demo TAP ADDRESS/PREFIX OUT_DIR [--port PORT] [--device-port PORT] [--handshake-timeout SECS]
//! ```
//!
//! One embassy-net stack on the TAP device answers as `ADDRESS` with two SMTP servers, each
//! using the [`RingHandler`] on a static ring of its own:
//!
//! - the *host profile* on `PORT` (default 25): 4 sessions, socket buffers sized for
//!   throughput, a ring for four messages of up to 1.5 MiB in progress at once;
//! - the *device profile* on `--device-port` (default 2525): exactly the firmware's sizes
//!   (`firmware/src/profile.rs`, compiled in here): 2 sessions, 1 KiB socket buffers, a
//!   10.4 KiB ring, messages up to 4 KiB, 8 recipients.
//!
//! The host side plays the device's uplink: it writes each committed message as one file in
//! `OUT_DIR/new` (host profile) or `OUT_DIR/device/new` (device profile), written to `tmp`
//! and renamed, in the `--maildir` format of the shared conformance suite, and only then
//! frees it in the ring. A message it cannot write stays in the ring and is tried again
//! every second (meanwhile the ring fills and clients get `452`), so no acknowledged
//! message is lost. A connection whose handshake does not complete within
//! `--handshake-timeout` seconds (default 20) gives its listening socket back.
//!
//! Setup (as root), e.g.:
//!
//! ```text
//! ip tuntap add name tap0 mode tap && ip addr add 192.0.2.1/24 dev tap0 && ip link set tap0 up
//! cargo run --example tap_demo -- tap0 192.0.2.2/24 /tmp/mail
//! ```

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::exit;

use embassy_executor::Spawner;
use embassy_net::{Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{Duration, Timer};
use smtpd_core::Config;
use smtpd_embedded::{ring::record_bound, serve, Options, Ring, RingHandler, Slot};
use static_cell::{ConstStaticCell, StaticCell};

#[path = "../firmware/src/profile.rs"]
mod device;

/// Host profile: concurrent sessions.
const POOL: usize = 4;
/// Host profile: largest message accepted (advertised with SIZE).
const MESSAGE_LIMIT: usize = 1536 * 1024;
/// Host profile: room for every session's largest message in progress at once (a message
/// that declares no SIZE reserves the limit), each with the longest envelope.
const STORE: usize = POOL
    * record_bound(
        smtpd_core::channel::capacity::ENVELOPE,
        Config::new("").limits.recipients,
        MESSAGE_LIMIT,
    );
/// Host profile: socket buffers sized for throughput.
type HostSlot = Slot<16384, 4096, 4096>;

type DeviceRing = Ring<CriticalSectionRawMutex, { device::STORE }>;
type HostRing = Ring<CriticalSectionRawMutex, STORE>;

static CONFIG: Config<'static> = {
    let mut config = Config::new("tap-demo.example");
    config.banner = "ESMTP smtpd-embedded tap demo";
    config.limits.message_size = Some(MESSAGE_LIMIT as u64);
    config
};
static RING: HostRing = Ring::new();
static SLOTS: ConstStaticCell<[HostSlot; POOL]> =
    ConstStaticCell::new([const { Slot::new() }; POOL]);

static DEVICE_CONFIG: Config<'static> = device::config("device.example");
static DEVICE_RING: DeviceRing = Ring::new();
static DEVICE_SLOTS: ConstStaticCell<[device::DeviceSlot; device::SESSIONS]> =
    ConstStaticCell::new([const { Slot::new() }; device::SESSIONS]);

static RESOURCES: ConstStaticCell<StackResources<{ POOL + device::SESSIONS }>> =
    ConstStaticCell::new(StackResources::new());
static OPTIONS: StaticCell<[Options; 2]> = StaticCell::new();

struct Args {
    tap: String,
    address: Ipv4Addr,
    prefix: u8,
    out: PathBuf,
    port: u16,
    device_port: u16,
    handshake_timeout: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: tap_demo TAP ADDRESS/PREFIX OUT_DIR [--port PORT] [--device-port PORT] \
         [--handshake-timeout SECS]"
    );
    exit(2)
}

/// The value after an option.
fn value<T: std::str::FromStr>(args: &mut impl Iterator<Item = String>) -> T {
    args.next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| usage())
}

fn parse_args() -> Args {
    let mut positional = Vec::new();
    let (mut port, mut device_port, mut handshake_timeout) = (25, 2525, 20);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = value(&mut args),
            "--device-port" => device_port = value(&mut args),
            "--handshake-timeout" => handshake_timeout = value(&mut args),
            _ => positional.push(arg),
        }
    }
    let [tap, cidr, out] = <[String; 3]>::try_from(positional).unwrap_or_else(|_| usage());
    let (address, prefix) = cidr.split_once('/').unwrap_or_else(|| usage());
    Args {
        tap,
        address: address.parse().unwrap_or_else(|_| usage()),
        prefix: prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .unwrap_or_else(|| usage()),
        out: PathBuf::from(out),
        port,
        device_port,
        handshake_timeout,
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn host_smtp_task(stack: Stack<'static>, options: &'static Options) -> ! {
    let make = |_slot, _peer| RingHandler::new(&RING, MESSAGE_LIMIT);
    serve(stack, &CONFIG, options, SLOTS.take(), &make).await
}

#[embassy_executor::task]
async fn device_smtp_task(stack: Stack<'static>, options: &'static Options) -> ! {
    let make = |_slot, _peer| RingHandler::new(&DEVICE_RING, device::MESSAGE_LIMIT);
    serve(stack, &DEVICE_CONFIG, options, DEVICE_SLOTS.take(), &make).await
}

#[embassy_executor::task]
async fn host_store_task(out: PathBuf) -> ! {
    uplink(&RING, &out).await
}

#[embassy_executor::task]
async fn device_store_task(out: PathBuf) -> ! {
    uplink(&DEVICE_RING, &out).await
}

/// Writes out every committed message of `ring`, oldest first, freeing each once its file
/// is in place.
async fn uplink<const N: usize>(ring: &Ring<CriticalSectionRawMutex, N>, out: &Path) -> ! {
    loop {
        while let Some(message) = ring.peek(|m| [m.first, m.second].concat()) {
            match deliver(out, &message) {
                Ok(path) => {
                    println!("stored {} octets as {}", message.len(), path.display());
                    ring.pop();
                }
                Err(e) => {
                    eprintln!("cannot write a message to {}: {e}; retrying", out.display());
                    Timer::after_secs(1).await;
                }
            }
        }
        ring.wait_committed().await;
    }
}

/// Writes one message as a file in `out/new` (via `out/tmp`), under a name no other run
/// uses (time, process id, count: maildir(5)'s scheme).
fn deliver(out: &Path, message: &[u8]) -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let name = format!(
        "{}.M{}P{}Q{}.tap-demo",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    );
    let temporary = out.join("tmp").join(&name);
    let delivered = out.join("new").join(&name);
    std::fs::create_dir_all(out.join("tmp"))?;
    std::fs::create_dir_all(out.join("new"))?;
    std::fs::write(&temporary, message)?;
    std::fs::rename(&temporary, &delivered)?;
    Ok(delivered)
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let args = parse_args();
    let mut device = TunTapDevice::new(&args.tap).unwrap_or_else(|e| {
        eprintln!("cannot open TAP device {}: {e}", args.tap);
        exit(1)
    });
    device.set_hardware_address([0x02, 0x00, 0x5e, 0x00, 0x53, 0x02]);
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(args.address, args.prefix),
        gateway: None,
        dns_servers: heapless::Vec::new(),
    });
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let (stack, runner) = embassy_net::new(device, config, RESOURCES.take(), seed);
    let options = |port| Options {
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        ..Options::new(port)
    };
    let [host, device] = OPTIONS.init([options(args.port), options(args.device_port)]);

    spawner.spawn(net_task(runner).unwrap());
    spawner.spawn(host_store_task(args.out.clone()).unwrap());
    spawner.spawn(device_store_task(args.out.join("device")).unwrap());
    spawner.spawn(host_smtp_task(stack, host).unwrap());
    spawner.spawn(device_smtp_task(stack, device).unwrap());
    println!(
        "host profile: {POOL} sessions, {STORE}-octet store, messages up to {MESSAGE_LIMIT} \
         octets, on {}:{}, storing into {}",
        args.address,
        args.port,
        args.out.join("new").display()
    );
    println!(
        "device profile: {} sessions, {}-octet store, messages up to {} octets, {} recipients, \
         on {}:{}, storing into {}",
        device::SESSIONS,
        device::STORE,
        device::MESSAGE_LIMIT,
        device::RCPTS,
        args.address,
        args.device_port,
        args.out.join("device/new").display()
    );
    println!("serving SMTP");
}
