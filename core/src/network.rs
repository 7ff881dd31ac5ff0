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

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn net(text: &str) -> Network {
        text.parse().unwrap()
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
}
