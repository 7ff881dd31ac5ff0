//! Who may relay mail through this server, and to where: a server that passes mail on must
//! not relay for anyone to anywhere (RFC 5321 3.6.2 and 7.1; RFC 2505 2.1: an MTA MUST be
//! able to refuse unauthorized relaying).
//!
//! A [`RelayPolicy`] permits a recipient when the client is in one of its networks (the
//! hosts the relay serves, like Postfix's `mynetworks`) or the recipient's domain is one of
//! its domains (the domains the relay receives mail for, Postfix's `relay_domains`). A
//! `<Postmaster>` without a domain is this server's and is always permitted (RFC 5321
//! 4.5.1). A route in the local part (`%`, `!`, a quoted `@`) needs the networks. Everything
//! else gets [`RELAY_DENIED`] at RCPT.
//!
//! The core only decides; a relaying handler asks in its `rcpt` hook. The storage is the
//! caller's: slices of [`Network`]s and of anything that is a `str`.

use core::net::IpAddr;

use crate::address::parse_domain;
use crate::network::Network;
use crate::reply::Reply;

/// The refusal of a recipient the client may not relay to. `550`, as RCPT allows (RFC 5321
/// 4.3.2); `5.7.1`, delivery not authorized (RFC 3463 3.8).
pub const RELAY_DENIED: Reply<'static> = Reply::new(550, (5, 7, 1), "Error: relaying denied");

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
        let Some((local, domain)) = recipient.rsplit_once('@') else {
            // The only forward-path without a domain is this server's postmaster.
            return true;
        };
        // A route in the local part (`user%elsewhere@domain`, `elsewhere!user@domain`,
        // `"user@elsewhere"@domain`) could take the mail on from a served domain to any
        // other, so it counts as no served domain (as Postfix's `reject_unauth_destination`).
        let routed = local.contains(['@', '%', '!']);
        peer.is_some_and(|ip| self.networks.iter().any(|network| network.contains(ip)))
            || (!routed
                && self
                    .domains
                    .iter()
                    .any(|served| domain_matches(served.as_ref(), domain)))
    }
}

/// Whether `pattern` can be one of a policy's domains: a domain or address literal as a
/// forward-path holds it (`example.com`, `[192.0.2.1]`), or a dot and a domain
/// (`.example.com`). Anything else could never match.
pub fn is_domain_pattern(pattern: &str) -> bool {
    match pattern.strip_prefix('.') {
        Some(parent) => !parent.starts_with('[') && parse_domain(parent).is_ok(),
        None => parse_domain(pattern).is_ok(),
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
    use crate::network::LOOPBACK;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
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
            (outsider, "\"x@example.com\"@example.org", false),
            (outsider, "x%example.com@example.org", false),
            (outsider, "example.com!x@example.org", false),
            (outsider, "\"a b\"@example.org", true),
            (ip("127.0.0.1"), "x%example.com@example.org", true),
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
    fn domain_patterns_are_domains_a_forward_path_can_hold() {
        for pattern in [
            "example.com",
            ".example.com",
            "bücher.example",
            "x",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
        ] {
            assert!(is_domain_pattern(pattern), "{pattern}");
        }
        for pattern in [
            "",
            ".",
            "..example.com",
            "example.com.",
            "*.example.com",
            "a..example.com",
            "-a-.example",
            "a@example.com",
            "a b",
            "[::1]",
            "[IPv6:192.0.2.1]",
            ".[192.0.2.1]",
            "[192.0.2.1",
        ] {
            assert!(!is_domain_pattern(pattern), "{pattern:?}");
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
