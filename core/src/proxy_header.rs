//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1 and 2): a load
//! balancer in front of the server opens each connection with one header naming the client
//! it relays, before any SMTP. Postfix reads it with `smtpd_upstream_proxy_protocol`.
//!
//! [`parse`] reads one header at the start of the connection's input. A frontend expects one
//! only from connections it trusts to send it (the header names any address it likes), and
//! closes a connection whose header is not one, without a reply: the specification forbids
//! guessing.
//!
//! Invariant: [`parse`] decides within [`MAX_HEADER`] octets; it never asks for more.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest header accepted: a version 1 line is at most 107 octets; a version 2 header
/// is 16 octets, then up to 2 KiB of addresses (at most 216, for UNIX sockets) and TLVs:
/// more than proxies send (authority, ALPN, TLS details, a unique ID).
pub const MAX_HEADER: usize = 16 + 2048;

/// A version 1 line, `PROXY` to CRLF, is at most this long.
const V1_MAX: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// What a header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The proxy relays this client (the source address and port of its connection).
    Client(SocketAddr),
    /// The proxy relays a client it does not name (version 1 `UNKNOWN`; version 2 `UNSPEC`,
    /// a UNIX socket, UDP). The specification says to use the connection's own address;
    /// a server that grants rights by address had better treat the client as unknown.
    Unnamed,
    /// The proxy's own connection (version 2 `LOCAL`, e.g. a health check): the
    /// connection's own address is the client's.
    Local,
}

/// Why the input is no PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProxyHeaderError {
    /// It starts with neither version's signature.
    Missing,
    /// The signature is there, the rest is not a header.
    Malformed,
    /// Longer than [`MAX_HEADER`] (a version 1 line: 107 octets).
    TooLong,
}

/// Parses the header at the start of `input`: `Ok(None)` when it is incomplete, else what
/// it says and its length in octets (the SMTP conversation starts after them).
pub fn parse(input: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let starts = |signature: &[u8]| {
        let n = input.len().min(signature.len());
        input[..n] == signature[..n]
    };
    match input.first() {
        None => Ok(None),
        Some(b'P') if starts(V1_PREFIX) => parse_v1(input),
        Some(b'\r') if starts(V2_SIGNATURE) => parse_v2(input),
        Some(_) => Err(ProxyHeaderError::Missing),
    }
}

/// `PROXY TCP4|TCP6 <source> <destination> <source port> <destination port>\r\n`, or
/// `PROXY UNKNOWN[ anything]\r\n`. A CR or LF that does not end the line refuses it at once.
fn parse_v1(input: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let window = &input[..input.len().min(V1_MAX)];
    let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return match input.len() < V1_MAX {
            true => Ok(None),
            false => Err(ProxyHeaderError::TooLong),
        };
    };
    match window.get(end..end + 2) {
        Some(b"\r\n") => {}
        // A CR last in the window: the line ends next, or is too long.
        None if window[end] == b'\r' => {
            return match input.len() < V1_MAX {
                true => Ok(None),
                false => Err(ProxyHeaderError::TooLong),
            };
        }
        _ => return Err(ProxyHeaderError::Malformed),
    }
    let (line, len) = (&input[V1_PREFIX.len()..end], end + 2);
    // Whatever follows UNKNOWN is ignored, whatever it is.
    if line == b"UNKNOWN" || line.starts_with(b"UNKNOWN ") {
        return Ok(Some((ProxyHeader::Unnamed, len)));
    }
    let line = core::str::from_utf8(line).map_err(|_| ProxyHeaderError::Malformed)?;
    let mut fields = line.split(' ');
    let v4 = match fields.next() {
        Some("TCP4") => true,
        Some("TCP6") => false,
        _ => return Err(ProxyHeaderError::Malformed),
    };
    let mut next = || fields.next().ok_or(ProxyHeaderError::Malformed);
    let (source, _destination) = (v1_address(next()?, v4)?, v1_address(next()?, v4)?);
    let (port, _destination_port) = (v1_port(next()?)?, v1_port(next()?)?);
    if fields.next().is_some() {
        return Err(ProxyHeaderError::Malformed);
    }
    Ok(Some((
        ProxyHeader::Client(SocketAddr::new(source, port)),
        len,
    )))
}

/// A version 1 address of the line's family: `TCP4`, dotted IPv4; `TCP6`, IPv6. The
/// specification writes IPv6 in hex groups only, but HAProxy sends the IPv4 clients of a
/// dual-stack frontend in the mixed form (`::ffff:192.0.2.7`), which is taken too.
fn v1_address(text: &str, v4: bool) -> Result<IpAddr, ProxyHeaderError> {
    match v4 {
        true => text.parse::<Ipv4Addr>().map(IpAddr::V4).ok(),
        false => text.parse::<Ipv6Addr>().map(IpAddr::V6).ok(),
    }
    .ok_or(ProxyHeaderError::Malformed)
}

/// A version 1 port: decimal, 0 to 65535, no leading zero.
fn v1_port(text: &str) -> Result<u16, ProxyHeaderError> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    match digits && (text == "0" || !text.starts_with('0')) {
        true => text.parse().map_err(|_| ProxyHeaderError::Malformed),
        false => Err(ProxyHeaderError::Malformed),
    }
}

/// The 12-octet signature, version and command, family and transport, a big-endian length,
/// then that many octets: addresses, then TLVs (ignored).
fn parse_v2(input: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let Some(fixed) = input.get(..16) else {
        return Ok(None);
    };
    let (version, command) = (fixed[12] >> 4, fixed[12] & 0x0f);
    if version != 2 || command > 1 {
        return Err(ProxyHeaderError::Malformed);
    }
    let len = 16 + usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > MAX_HEADER {
        return Err(ProxyHeaderError::TooLong);
    }
    let Some(body) = input.get(16..len) else {
        return Ok(None);
    };
    if command == 0 {
        // LOCAL: the proxy's own connection (a health check); its block is ignored.
        return Ok(Some((ProxyHeader::Local, len)));
    }
    let (family, transport) = (fixed[13] >> 4, fixed[13] & 0x0f);
    if family > 3 || transport > 2 {
        return Err(ProxyHeaderError::Malformed);
    }
    // Each family's address block: source, destination, then (for IP) the two ports.
    let block = [0, 12, 36, 216][usize::from(family)];
    if body.len() < block {
        return Err(ProxyHeaderError::Malformed);
    }
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    let header = match (family, transport) {
        (1, 1) => {
            let source = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            ProxyHeader::Client(SocketAddr::new(source.into(), port(8)))
        }
        (2, 1) => {
            let mut source = [0; 16];
            source.copy_from_slice(&body[..16]);
            ProxyHeader::Client(SocketAddr::new(Ipv6Addr::from(source).into(), port(32)))
        }
        _ => ProxyHeader::Unnamed,
    };
    Ok(Some((header, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(text: &str) -> ProxyHeader {
        ProxyHeader::Client(text.parse().unwrap())
    }

    /// A version 2 header: command, family and transport, then `body`.
    fn v2(command: u8, family_transport: u8, body: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family_transport);
        header.extend_from_slice(&(body.len() as u16).to_be_bytes());
        header.extend_from_slice(body);
        header
    }

    /// Every proper prefix of a complete header asks for more.
    fn check_prefixes(header: &[u8]) {
        for end in 0..header.len() {
            assert_eq!(parse(&header[..end]), Ok(None), "{:?}", &header[..end]);
        }
    }

    #[test]
    fn version_1_names_the_client_and_the_conversation_follows() {
        let input = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 25\r\nEHLO client\r\n";
        let len = input.len() - b"EHLO client\r\n".len();
        assert_eq!(parse(input), Ok(Some((client("203.0.113.7:56324"), len))));
        check_prefixes(&input[..len]);
        let input = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 25\r\n";
        assert_eq!(
            parse(input),
            Ok(Some((client("[2001:db8::7]:65535"), input.len())))
        );
        assert_eq!(
            parse(b"PROXY TCP4 0.0.0.0 192.0.2.1 0 25\r\n").map(|h| h.map(|(h, _)| h)),
            Ok(Some(client("0.0.0.0:0")))
        );
        // What HAProxy sends for an IPv4 client of a `v4v6` frontend.
        let mixed = b"PROXY TCP6 ::ffff:10.9.0.2 ::ffff:10.9.0.1 40000 25\r\n";
        assert_eq!(
            parse(mixed),
            Ok(Some((client("[::ffff:10.9.0.2]:40000"), mixed.len())))
        );
        for unknown in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
            b"PROXY UNKNOWN \xff\x00 anything\r\n",
        ] {
            assert_eq!(
                parse(unknown),
                Ok(Some((ProxyHeader::Unnamed, unknown.len())))
            );
        }
        // The longest TCP line is 104 octets; a line may have 107.
        let longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest.len(), 104);
        assert!(parse(longest).unwrap().is_some());
        let line = |len: usize| [&b"PROXY UNKNOWN "[..], &vec![b'x'; len - 16], b"\r\n"].concat();
        assert_eq!(parse(&line(107)), Ok(Some((ProxyHeader::Unnamed, 107))));
        assert_eq!(parse(&line(108)), Err(ProxyHeaderError::TooLong));
    }

    #[test]
    fn version_1_refuses_what_is_not_a_header() {
        for bad in [
            &b"PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\n"[..],
            b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 25 extra\r\n",
            b"PROXY TCP4 2001:db8::7 192.0.2.1 1 25\r\n",
            b"PROXY TCP6 203.0.113.7 2001:db8::1 1 25\r\n",
            b"PROXY TCP4 203.0.113.7 garbage 1 25\r\n",
            b"PROXY TCP4 203.0.113.7 2001:db8::1 1 25\r\n",
            b"PROXY TCP6 2001:db8::7 192.0.2.1 1 25\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 25\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 +1 25\r\n",
            b"PROXY TCP4  203.0.113.7 192.0.2.1 1 25\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 1 25 \r\n",
            b"PROXY UDP4 203.0.113.7 192.0.2.1 1 25\r\n",
            b"PROXY tcp4 203.0.113.7 192.0.2.1 1 25\r\n",
            b"PROXY \xff\r\n",
            b"PROXY \r\n",
            b"PROXY UNKNOWNX\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 01 25\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 1 00025\r\n",
            // A CR or LF other than the final CRLF, seen at once.
            b"PROXY TCP4 203.0.113.7\n",
            b"PROXY UNKNOWN\n",
            b"PROXY UNKNOWN\rx",
            b"PROXY UNKNOWN\r\r\n",
        ] {
            assert_eq!(parse(bad), Err(ProxyHeaderError::Malformed), "{bad:?}");
        }
        let endless = [&b"PROXY UNKNOWN "[..], &[b'x'; 100]].concat();
        assert_eq!(parse(&endless), Err(ProxyHeaderError::TooLong));
        assert_eq!(parse(&endless[..106]), Ok(None));
        for missing in [
            &b"EHLO client\r\n"[..],
            b"PROXX",
            b"proxy ",
            b"\r\n\r\n\0\r\nQUIX",
        ] {
            assert_eq!(
                parse(missing),
                Err(ProxyHeaderError::Missing),
                "{missing:?}"
            );
        }
    }

    #[test]
    fn version_2_names_the_client_and_ignores_tlvs() {
        let mut body = [203, 0, 113, 7, 192, 0, 2, 1].to_vec();
        body.extend_from_slice(&56324u16.to_be_bytes());
        body.extend_from_slice(&25u16.to_be_bytes());
        let header = v2(1, 0x11, &body);
        check_prefixes(&header);
        let mut input = header.clone();
        input.extend_from_slice(b"EHLO client\r\n");
        assert_eq!(
            parse(&input),
            Ok(Some((client("203.0.113.7:56324"), header.len())))
        );
        // TLVs after the addresses (here a unique ID) are skipped with them.
        let mut with_tlv = body.clone();
        with_tlv.extend_from_slice(&[0x05, 0, 3, b'a', b'b', b'c']);
        let header = v2(1, 0x11, &with_tlv);
        assert_eq!(
            parse(&header),
            Ok(Some((client("203.0.113.7:56324"), header.len())))
        );
        let mut body = Vec::new();
        body.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&[0x1f, 0x90, 0, 25]);
        let header = v2(1, 0x21, &body);
        assert_eq!(
            parse(&header),
            Ok(Some((client("[2001:db8::7]:8080"), header.len())))
        );
    }

    #[test]
    fn version_2_local_is_the_proxy_and_unspec_unix_and_udp_name_no_client() {
        for (command, family_transport, body, said) in [
            (0, 0x00, &[][..], ProxyHeader::Local),
            (0, 0x11, &[1; 12][..], ProxyHeader::Local),
            (0, 0x11, &[][..], ProxyHeader::Local),
            (1, 0x00, &[][..], ProxyHeader::Unnamed),
            (1, 0x12, &[1; 12][..], ProxyHeader::Unnamed),
            (1, 0x31, &[0; 216][..], ProxyHeader::Unnamed),
        ] {
            let header = v2(command, family_transport, body);
            assert_eq!(
                parse(&header),
                Ok(Some((said, header.len()))),
                "{command} {family_transport:#x}"
            );
        }
    }

    #[test]
    fn version_2_refuses_what_is_not_a_header() {
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        let mut wrong_command = v2(1, 0x11, &[0; 12]);
        wrong_command[12] = 0x22;
        for bad in [
            wrong_version,
            wrong_command,
            v2(1, 0x41, &[0; 12]),
            v2(1, 0x13, &[0; 12]),
            v2(1, 0x11, &[0; 11]),
            v2(1, 0x21, &[0; 35]),
            v2(1, 0x31, &[0; 215]),
        ] {
            assert_eq!(parse(&bad), Err(ProxyHeaderError::Malformed), "{bad:?}");
        }
        // Too long is known from the length field alone.
        let long = v2(1, 0x11, &[0; MAX_HEADER - 15]);
        assert_eq!(parse(&long[..16]), Err(ProxyHeaderError::TooLong));
        let longest = v2(1, 0x11, &[0; MAX_HEADER - 16]);
        assert!(parse(&longest).unwrap().is_some());
    }
}
