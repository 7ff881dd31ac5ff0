//! IP networks (`192.0.2.0/24`, `2001:db8::/32`): which clients may relay
//! ([`relay_policy`](crate::relay_policy)), which peers are trusted proxies
//! ([`proxy_header`](crate::proxy_header)).

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

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

/// Why a network does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BadNetwork {
    /// Not `address[/prefix]`, or a prefix longer than the address.
    Syntax,
    /// The address has bits set past the prefix (`192.0.2.7/24`): a typo, most likely.
    HostBits,
}

impl fmt::Display for BadNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadNetwork::Syntax => {
                "expected an IP address or network, e.g. 192.0.2.0/24 or 2001:db8::/32"
            }
            BadNetwork::HostBits => {
                "the address has bits set past the prefix (192.0.2.0/24, not 192.0.2.7/24)"
            }
        })
    }
}

impl core::error::Error for BadNetwork {}

/// `address` with all but its first `prefix` bits cleared; `None` when the prefix is
/// longer than the address (32 or 128 bits).
fn masked(address: IpAddr, prefix: u8) -> Option<IpAddr> {
    let host_bits = |bits: u8| Some(u32::from(bits.checked_sub(prefix)?));
    Some(match address {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(
            v4.to_bits() & u32::MAX.checked_shl(host_bits(32)?).unwrap_or(0),
        )),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(
            v6.to_bits() & u128::MAX.checked_shl(host_bits(128)?).unwrap_or(0),
        )),
    })
}

impl Network {
    /// The network of `address` with `prefix` leading bits, host bits cleared. Within the
    /// IPv4-mapped range it is the IPv4 network it stands for (`::ffff:192.0.2.0/120` is
    /// `192.0.2.0/24`). `None` when the prefix is longer than the address.
    pub fn new(address: IpAddr, prefix: u8) -> Option<Self> {
        if let (IpAddr::V6(v6), Some(v4_prefix)) = (address, prefix.checked_sub(96)) {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return Network::new(IpAddr::V4(v4), v4_prefix);
            }
        }
        let address = masked(address, prefix)?;
        Some(Network { address, prefix })
    }

    /// Whether `ip` is in this network. An IPv4-mapped peer is the IPv4 address it stands
    /// for: in `192.0.2.0/24`, and in no IPv6 network (not even `::/0`: IPv4 networks are
    /// written as such).
    pub fn contains(&self, ip: IpAddr) -> bool {
        masked(ip.to_canonical(), self.prefix) == Some(self.address)
    }

    /// Whether this network is wider than any private range: an IPv4 prefix shorter than
    /// 8 bits (`10.0.0.0/8`), an IPv6 one shorter than 7 (`fc00::/7`). Trusting it trusts
    /// much of the Internet.
    pub fn is_vast(&self) -> bool {
        self.prefix < if self.address.is_ipv4() { 8 } else { 7 }
    }
}

/// `192.0.2.0/24`, `2001:db8::/32`, `[::1]/128`, or an address alone (one host). Bits past
/// the prefix must be 0.
impl FromStr for Network {
    type Err = BadNetwork;

    fn from_str(text: &str) -> Result<Self, BadNetwork> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address = match address.strip_prefix('[') {
            Some(bracketed) => bracketed.strip_suffix(']').ok_or(BadNetwork::Syntax)?,
            None => address,
        };
        let address: IpAddr = address.parse().map_err(|_| BadNetwork::Syntax)?;
        let prefix = match prefix {
            // Digits only: `u8::from_str` would take a sign.
            Some(prefix) if prefix.bytes().all(|b| b.is_ascii_digit()) => {
                prefix.parse().map_err(|_| BadNetwork::Syntax)?
            }
            Some(_) => return Err(BadNetwork::Syntax),
            None if address.is_ipv4() => 32,
            None => 128,
        };
        match masked(address, prefix) {
            None => Err(BadNetwork::Syntax),
            Some(network) if network != address => Err(BadNetwork::HostBits),
            Some(_) => Network::new(address, prefix).ok_or(BadNetwork::Syntax),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Network {
        text.parse().unwrap()
    }

    #[test]
    fn networks_parse_in_cidr_form() {
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(net("[2001:db8::]/32").to_string(), "2001:db8::/32");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(net("::/0").to_string(), "::/0");
        assert_eq!(LOOPBACK, [net("127.0.0.0/8"), net("::1/128")]);
        // The IPv4-mapped forms are the IPv4 networks.
        assert_eq!(net("::ffff:127.0.0.1"), net("127.0.0.1"));
        assert_eq!(net("::ffff:127.0.0.0/104"), net("127.0.0.0/8"));
        assert_eq!(net("::ffff:0:0/96"), net("0.0.0.0/0"));
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
            "[::1",
            "::1]",
            "[10.0.0.1]]",
        ] {
            assert_eq!(bad.parse::<Network>(), Err(BadNetwork::Syntax), "{bad:?}");
        }
        for typo in [
            "10.1.2.3/8",
            "1.2.3.4/1",
            "2001:db8::1/32",
            "::ffff:127.0.0.1/104",
        ] {
            assert_eq!(typo.parse::<Network>(), Err(BadNetwork::HostBits), "{typo}");
        }
    }

    #[test]
    fn a_network_contains_its_addresses_in_either_form() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let lan = net("192.168.0.0/16");
        assert!(lan.contains(ip("192.168.255.1")));
        assert!(!lan.contains(ip("192.169.0.1")));
        assert!(lan.contains(ip("::ffff:192.168.1.1")));
        assert!(!lan.contains(ip("2001:db8::1")));
        let v6 = net("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("192.168.1.1")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(net("0.0.0.0/0").contains(ip("::ffff:203.0.113.9")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        assert!(!net("::/0").contains(ip("203.0.113.9")));
        assert!(!net("::/0").contains(ip("::ffff:203.0.113.9")));
        assert!(!net("::/16").contains(ip("203.0.113.9")));
        assert!(net("::ffff:127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("::fffe:0:0/95").contains(ip("127.0.0.1")));
        assert!(!net("::1").contains(ip("127.0.0.1")));
    }

    #[test]
    fn networks_wider_than_any_private_range_are_vast() {
        for vast in [
            "0.0.0.0/0",
            "0.0.0.0/1",
            "128.0.0.0/7",
            "::/0",
            "2000::/3",
            "::ffff:0:0/96",
        ] {
            assert!(net(vast).is_vast(), "{vast}");
        }
        for narrow in [
            "10.0.0.0/8",
            "127.0.0.0/8",
            "fc00::/7",
            "2001:db8::/32",
            "192.0.2.1",
        ] {
            assert!(!net(narrow).is_vast(), "{narrow}");
        }
    }
}
