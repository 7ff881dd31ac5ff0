//! Who may relay mail through this server, and to where: a server that passes mail on must
//! not relay for anyone to anywhere (RFC 5321 3.6.2 and 7.1; RFC 2505 2.2, "MUST by
//! default refuse relaying").
//!
//! A [`RelayPolicy`] permits a recipient when the client is in one of its networks (the
//! hosts the relay serves, like Postfix's `mynetworks`) or the recipient's domain is one of
//! its domains (the domains the relay receives mail for, Postfix's `relay_domains`). A
//! `<Postmaster>` without a domain is this server's and is always permitted (RFC 5321
//! 4.5.1). Everything else gets [`RELAY_DENIED`] at RCPT.
//!
//! The core only decides; a relaying handler asks in its `rcpt` hook. The storage is the
//! caller's: slices of [`Network`]s and of anything that is a `str`.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

use crate::reply::Reply;

/// The refusal of a recipient the client may not relay to. `550`, as RCPT allows (RFC 5321
/// 4.3.2); `5.7.1`, delivery not authorized (RFC 3463 3.8).
pub const RELAY_DENIED: Reply<'static> = Reply::new(550, (5, 7, 1), "Error: relaying denied");

/// An IP network: an address and a prefix length, host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

/// The loopback networks `127.0.0.0/8` and `::1/128`: the default relay clients.
pub const LOOPBACK: [Network; 2] = [
    Network {
        address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
        prefix: 8,
    },
    Network {
        address: IpAddr::V6(Ipv6Addr::LOCALHOST),
        prefix: 128,
    },
];

/// A network that does not parse: not `address[/prefix]`, or a prefix longer than the
/// address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BadNetwork;

impl fmt::Display for BadNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected an IP address or network, e.g. 192.0.2.0/24 or 2001:db8::/32")
    }
}

impl core::error::Error for BadNetwork {}

impl Network {
    /// The network of `address` with `prefix` leading bits; host bits are cleared. `None`
    /// when the prefix is longer than the address (32 or 128 bits).
    pub fn new(address: IpAddr, prefix: u8) -> Option<Self> {
        let host_bits = |bits: u8| Some(u32::from(bits.checked_sub(prefix)?));
        let address = match address {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(
                v4.to_bits() & u32::MAX.checked_shl(host_bits(32)?).unwrap_or(0),
            )),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(
                v6.to_bits() & u128::MAX.checked_shl(host_bits(128)?).unwrap_or(0),
            )),
        };
        Some(Network { address, prefix })
    }

    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`,
    /// as a dual-stack socket reports IPv4 peers) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        Network::new(ip, self.prefix).is_some_and(|network| network == *self)
    }

    /// Whether this network holds every address of its family (`0.0.0.0/0`, `::/0`).
    pub fn is_everything(&self) -> bool {
        self.prefix == 0
    }
}

/// `192.0.2.0/24`, `2001:db8::/32`, `[::1]/128`, or an address alone (one host).
impl FromStr for Network {
    type Err = BadNetwork;

    fn from_str(text: &str) -> Result<Self, BadNetwork> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address = address.strip_prefix('[').unwrap_or(address);
        let address = address.strip_suffix(']').unwrap_or(address);
        let address: IpAddr = address.parse().map_err(|_| BadNetwork)?;
        let prefix = match prefix {
            // Digits only: `u8::from_str` would take a sign.
            Some(prefix) if prefix.bytes().all(|b| b.is_ascii_digit()) => {
                prefix.parse().map_err(|_| BadNetwork)?
            }
            Some(_) => return Err(BadNetwork),
            None if address.is_ipv4() => 32,
            None => 128,
        };
        Network::new(address, prefix).ok_or(BadNetwork)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// Who may relay, and to which domains anyone may send. `D` is any `str` holder (`&str`,
/// `String`).
#[derive(Clone, Copy, Debug)]
pub struct RelayPolicy<'a, D = &'a str> {
    /// Clients in these networks may send to any domain.
    pub networks: &'a [Network],
    /// Anyone may send to these domains: `example.com` is that domain, `.example.com` any
    /// domain below it. Compared without regard to ASCII case, as written (no IDNA).
    pub domains: &'a [D],
}

impl<D: AsRef<str>> RelayPolicy<'_, D> {
    /// Whether a client at `peer` may send to the forward-path `recipient` (a mailbox as
    /// the core gives it to `rcpt`: `local@domain`, or `Postmaster`).
    pub fn permits(&self, peer: Option<IpAddr>, recipient: &str) -> bool {
        let Some((_, domain)) = recipient.rsplit_once('@') else {
            // The only forward-path without a domain is this server's postmaster.
            return true;
        };
        peer.is_some_and(|ip| self.networks.iter().any(|network| network.contains(ip)))
            || self
                .domains
                .iter()
                .any(|served| domain_matches(served.as_ref(), domain))
    }
}

/// Whether `domain` is `pattern`, or below it when `pattern` starts with a dot.
fn domain_matches(pattern: &str, domain: &str) -> bool {
    match pattern.strip_prefix('.') {
        Some(parent) => domain
            .len()
            .checked_sub(parent.len() + 1)
            .is_some_and(|dot| {
                domain.as_bytes()[dot] == b'.'
                    && domain
                        .get(dot + 1..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(parent))
            }),
        None => domain.eq_ignore_ascii_case(pattern),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Network {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn networks_parse_in_cidr_form_with_host_bits_cleared() {
        assert_eq!(net("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(net("[2001:db8::1]/32").to_string(), "2001:db8::/32");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(net("::/0").to_string(), "::/0");
        assert_eq!(LOOPBACK, [net("127.0.0.0/8"), net("::1/128")]);
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            "example.com",
            "10.0.0/8",
            "10.0.0.0 /8",
            "/8",
        ] {
            assert_eq!(bad.parse::<Network>(), Err(BadNetwork), "{bad:?}");
        }
    }

    #[test]
    fn a_network_contains_its_addresses_and_mapped_ipv4_peers() {
        let lan = net("192.168.0.0/16");
        assert!(lan.contains("192.168.255.1".parse().unwrap()));
        assert!(!lan.contains("192.169.0.1".parse().unwrap()));
        assert!(lan.contains("::ffff:192.168.1.1".parse().unwrap()));
        assert!(!lan.contains("2001:db8::1".parse().unwrap()));
        let v6 = net("2001:db8::/32");
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(!v6.contains("192.168.1.1".parse().unwrap()));
        assert!(net("0.0.0.0/0").contains("203.0.113.9".parse().unwrap()));
        assert!(!net("0.0.0.0/0").contains("2001:db8::1".parse().unwrap()));
        assert!(net("::/0").contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn clients_in_the_networks_relay_anywhere_others_only_to_the_domains() {
        let policy = RelayPolicy {
            networks: &LOOPBACK,
            domains: &["example.org", ".lists.example.net"],
        };
        let outsider = ip("203.0.113.9");
        for (peer, recipient, permitted) in [
            (ip("127.0.0.1"), "anyone@example.com", true),
            (ip("::1"), "anyone@example.com", true),
            (ip("::ffff:127.0.0.2"), "anyone@example.com", true),
            (outsider, "anyone@example.com", false),
            (None, "anyone@example.com", false),
            (outsider, "ant@example.org", true),
            (outsider, "ant@EXAMPLE.Org", true),
            (outsider, "ant@sub.example.org", false),
            (outsider, "ant@notexample.org", false),
            (outsider, "ant@a.lists.example.net", true),
            (outsider, "ant@a.b.LISTS.example.net", true),
            (outsider, "ant@lists.example.net", false),
            (outsider, "ant@xlists.example.net", false),
            (outsider, "\"ant@example.org\"@example.com", false),
            (outsider, "\"x@example.com\"@example.org", true),
            (outsider, "Postmaster", true),
            (outsider, "postmaster@example.com", false),
        ] {
            assert_eq!(
                policy.permits(peer, recipient),
                permitted,
                "{peer:?} to {recipient}"
            );
        }
    }

    #[test]
    fn owned_domains_work_too_and_an_empty_policy_permits_only_postmaster() {
        let domains = [std::string::String::from("example.org")];
        let policy = RelayPolicy {
            networks: &[],
            domains: &domains,
        };
        assert!(policy.permits(ip("127.0.0.1"), "a@example.org"));
        assert!(!policy.permits(ip("127.0.0.1"), "a@example.com"));
        let nobody: RelayPolicy<'_> = RelayPolicy {
            networks: &[],
            domains: &[],
        };
        assert!(!nobody.permits(ip("127.0.0.1"), "a@example.org"));
        assert!(nobody.permits(ip("127.0.0.1"), "postmaster"));
    }
}
