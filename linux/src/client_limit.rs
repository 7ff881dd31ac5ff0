//! Connections per client, across the server's threads ([`Options::max_connections_per_client`](crate::Options::max_connections_per_client)),
//! so that one client cannot take every place under `max_connections` (Postfix's
//! `smtpd_client_connection_count_limit`).
//!
//! A client is its IPv4 address, or its IPv6 /64 (what one site is usually given, so that
//! its other addresses count as the same client). This host's own programs are not counted
//! (loopback, or the connection's own local address), as Postfix's default spares its own
//! host (`$mynetworks`); nor is a client whose proxy does not name it. A limit of 0 counts
//! no one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open connections of the counted clients, and the most each may have (0: no limit).
pub(crate) struct ClientLimit {
    limit: usize,
    open: Mutex<HashMap<Client, usize>>,
}

/// A counted client.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Client {
    V4(u32),
    /// The first 64 bits of the address.
    V6(u64),
}

impl Client {
    /// The client `ip` (canonical: an IPv4-mapped address as IPv4) is part of; `None` for
    /// loopback.
    fn of(ip: IpAddr) -> Option<Client> {
        match ip {
            ip if ip.is_loopback() => None,
            IpAddr::V4(ip) => Some(Client::V4(ip.to_bits())),
            IpAddr::V6(ip) => Some(Client::V6((ip.to_bits() >> 64) as u64)),
        }
    }
}

impl ClientLimit {
    pub fn new(limit: usize) -> Arc<ClientLimit> {
        Arc::new(ClientLimit {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection from `ip`, held until dropped; `None` when its client
    /// has `limit` connections open already. `local`: the connection's own address, asked
    /// only of a client that would be counted.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        local: impl FnOnce() -> Option<IpAddr>,
    ) -> Option<Admitted> {
        let ip = ip.to_canonical();
        let client = Client::of(ip).filter(|_| self.limit > 0);
        let own = || local().map(|local| local.to_canonical()) == Some(ip);
        let Some(client) = client.filter(|_| !own()) else {
            return Some(Admitted(None));
        };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.get(&client).copied().unwrap_or(0);
        if count >= self.limit {
            return None;
        }
        open.insert(client, count + 1);
        Some(Admitted(Some((self.clone(), client))))
    }
}

/// One connection's place in its client's count.
pub(crate) struct Admitted(Option<(Arc<ClientLimit>, Client)>);

impl Admitted {
    /// A place that counts nowhere: for a client whose address is unknown.
    pub fn uncounted() -> Admitted {
        Admitted(None)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let Some((limit, client)) = self.0.take() else {
            return;
        };
        let mut open = limit.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_client_gets_its_limit_and_a_place_again_when_one_closes() {
        let limit = ClientLimit::new(2);
        let first = limit.admit(ip("192.0.2.1"), || None).unwrap();
        let _second = limit.admit(ip("192.0.2.1"), || None).unwrap();
        assert!(limit.admit(ip("192.0.2.1"), || None).is_none());
        // Another client is counted on its own.
        let _other = limit.admit(ip("192.0.2.2"), || None).unwrap();
        drop(first);
        let _third = limit.admit(ip("192.0.2.1"), || None).unwrap();
        assert!(limit.admit(ip("192.0.2.1"), || None).is_none());
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_address_its_ipv4_one() {
        let limit = ClientLimit::new(1);
        let _held = limit.admit(ip("2001:db8:1:2::1"), || None).unwrap();
        assert!(limit.admit(ip("2001:db8:1:2:ffff::9"), || None).is_none());
        assert!(limit.admit(ip("2001:db8:1:3::1"), || None).is_some());
        let _v4 = limit.admit(ip("198.51.100.7"), || None).unwrap();
        assert!(limit.admit(ip("::ffff:198.51.100.7"), || None).is_none());
    }

    #[test]
    fn this_hosts_own_address_and_a_limit_of_0_count_no_one() {
        let limit = ClientLimit::new(1);
        let own = || Some(ip("192.0.2.1"));
        let _held: Vec<_> = (0..3)
            .map(|_| limit.admit(ip("192.0.2.1"), own).unwrap())
            .collect();
        assert!(limit.open.lock().unwrap().is_empty());
        let unlimited = ClientLimit::new(0);
        let _held: Vec<_> = (0..3)
            .map(|_| unlimited.admit(ip("192.0.2.9"), || None).unwrap())
            .collect();
        assert!(unlimited.open.lock().unwrap().is_empty());
    }

    #[test]
    fn loopback_is_not_counted_and_closed_clients_are_forgotten() {
        let limit = ClientLimit::new(1);
        let held: Vec<_> = [
            "127.0.0.1",
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "::ffff:127.0.0.1",
        ]
        .into_iter()
        .map(|text| limit.admit(ip(text), || None).unwrap())
        .collect();
        assert!(limit.open.lock().unwrap().is_empty());
        drop(held);
        drop(limit.admit(ip("192.0.2.1"), || None).unwrap());
        assert!(limit.open.lock().unwrap().is_empty());
    }
}
