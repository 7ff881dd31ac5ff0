//! Per-connection memory: the channel is all the state a connection needs.

use smtpd_core::channel::Channel;
use smtpd_core::handler::Handler;
use smtpd_core::Session;

/// A firmware-sized channel: RFC-minimum command line, one reply line of output, room for the
/// greeting, a reverse-path and a few recipients.
type FirmwareChannel<'c> = Channel<'c, 548, 512, [u8; 512]>;

struct Sink;
impl Handler for Sink {}

#[test]
fn channel_sizes() {
    let default = size_of::<Channel<'static>>();
    let firmware = size_of::<FirmwareChannel<'static>>();
    let session = size_of::<Session<'static, Sink>>();
    println!("size_of::<Channel> (defaults: line 548, out 1024, envelope 3072) = {default} B");
    println!("size_of::<Channel<548, 512, [u8; 512]>> (firmware) = {firmware} B");
    println!("size_of::<Session<Sink>> = {session} B");
    assert!(default < 6 * 1024, "default channel is {default} B");
    assert!(firmware < 2 * 1024, "firmware channel is {firmware} B");
    // Close to the raw buffers: at most 320 B of bookkeeping (state, decoder, peer, timer).
    let buffers = 548 + 1024 + 3072;
    assert!(
        default - buffers <= 320,
        "{} B of overhead",
        default - buffers
    );
}
