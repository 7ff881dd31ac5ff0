//! Runtime configuration: host name, extensions, limits, timeouts and the bare-newline policy.
//!
//! Buffer *capacities* are const generics on [`Channel`](crate::channel::Channel); everything
//! here is a runtime *limit* that must fit inside them.

use core::time::Duration;

/// Everything a channel needs to know about the server it speaks for.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config<'a> {
    /// The server's fully qualified domain name, shown in the greeting, HELO/EHLO and 421 replies.
    pub hostname: &'a str,
    /// Text after the host name in the 220 greeting.
    pub banner: &'a str,
    pub extensions: Extensions,
    pub limits: Limits,
    pub timeouts: Timeouts,
    /// What to do with a CR or LF that is not part of a CRLF inside DATA.
    pub bare_newline: BareNewline,
}

impl<'a> Config<'a> {
    /// Defaults for a server called `hostname`.
    pub const fn new(hostname: &'a str) -> Self {
        Config {
            hostname,
            banner: "ESMTP smtpd-rs",
            extensions: Extensions::ALL,
            limits: Limits::DEFAULT,
            timeouts: Timeouts::RFC5321,
            bare_newline: BareNewline::Reject,
        }
    }
}

/// The ESMTP extensions offered in the EHLO reply; each can be switched off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Extensions {
    /// RFC 2920. Pipelined input is always processed in order; this only advertises it.
    pub pipelining: bool,
    /// RFC 1870: the `SIZE` keyword (and the 26 octets it adds to MAIL's line limit). A
    /// `SIZE=` MAIL parameter is understood either way, as Python's smtpd does: the
    /// message size limit applies to every message anyway.
    pub size: bool,
    /// RFC 6152: `BODY=7BIT|8BITMIME`.
    pub eight_bit_mime: bool,
    /// RFC 6531: UTF-8 addresses, only in transactions whose MAIL carries `SMTPUTF8`.
    pub smtputf8: bool,
    /// RFC 2034: enhanced status codes in replies.
    pub enhanced_status_codes: bool,
    /// RFC 3030: BDAT.
    pub chunking: bool,
    /// RFC 3030: `BODY=BINARYMIME` (only offered together with CHUNKING).
    pub binarymime: bool,
}

impl Extensions {
    pub const ALL: Extensions = Extensions {
        pipelining: true,
        size: true,
        eight_bit_mime: true,
        smtputf8: true,
        enhanced_status_codes: true,
        chunking: true,
        binarymime: true,
    };
    pub const NONE: Extensions = Extensions {
        pipelining: false,
        size: false,
        eight_bit_mime: false,
        smtputf8: false,
        enhanced_status_codes: false,
        chunking: false,
        binarymime: false,
    };
}

/// Protocol limits (RFC 5321 4.5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Limits {
    /// Longest command line including CRLF (RFC 5321 4.5.3.1.4: 512). MAIL gets 26 more octets
    /// when SIZE is offered (RFC 1870) and 10 more when SMTPUTF8 is (RFC 6531 3.4).
    pub command_line: usize,
    /// Longest DATA text line including CRLF (RFC 5321 4.5.3.1.6: 1000); `None`: unlimited.
    pub text_line: Option<usize>,
    /// Largest message in octets after dot-unstuffing, advertised with SIZE; `None`: unlimited.
    pub message_size: Option<u64>,
    /// Most recipients per transaction (RFC 5321 4.5.3.1.8 asks for at least 100).
    pub recipients: usize,
    /// Bad commands tolerated per connection since its last accepted message; the next one
    /// is answered `421` and closes.
    pub bad_commands: u32,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        command_line: 512,
        text_line: Some(1000),
        message_size: Some(33_554_432),
        recipients: 100,
        bad_commands: 10,
    };
}

/// Server-side timeouts (RFC 5321 4.5.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Timeouts {
    /// Waiting for the next command (4.5.3.2.7: at least 5 minutes), measured from the last
    /// reply; partial lines do not extend it.
    pub command: Duration,
    /// Waiting for the next block of DATA or BDAT octets (4.5.3.2.5: 3 minutes).
    pub data_block: Duration,
}

impl Timeouts {
    pub const RFC5321: Timeouts = Timeouts {
        command: Duration::from_secs(300),
        data_block: Duration::from_secs(180),
    };
}

/// Handling of a CR or LF that is not part of a CRLF in message content, like Postfix's
/// `smtpd_forbid_bare_newline`. Whatever the policy, only `CRLF . CRLF` ends DATA, and only a
/// CRLF starts a line for dot-unstuffing (CVE-2023-51764).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BareNewline {
    /// Refuse the message with `550 5.5.2` after its end.
    Reject,
    /// Deliver a bare CR or LF as CRLF; a CR right before a CRLF is dropped instead, so the
    /// `CR CR LF` some clients send is one line end, as Python smtpd reads it.
    Normalize,
    /// Deliver the octets as received.
    Allow,
}
