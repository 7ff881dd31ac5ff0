//! Reverse- and forward-path syntax (RFC 5321 4.1.2, 4.5.3.1; RFC 6531 3.3).
//!
//! Parsers borrow from the command line. They accept UTF-8 in local parts and domains and
//! report it in [`Path::utf8`]; whether that is allowed (SMTPUTF8) is the channel's decision.
//! Python smtpd's lenient forms stay accepted: spaces after the colon and a mailbox without
//! angle brackets. A source route (`<@a,@b:user@c>`) is accepted and dropped (RFC 5321 C).

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while1, take_while_m_n};
use nom::combinator::{opt, recognize, verify};
use nom::multi::fold_many0;
use nom::sequence::{delimited, pair, preceded, separated_pair, terminated};
use nom::{IResult, Parser};

/// Longest local part in octets (RFC 5321 4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain in octets (RFC 5321 4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest path in octets, angle brackets included (RFC 5321 4.5.3.1.3).
pub const MAX_PATH: usize = 256;

/// A parsed reverse- or forward-path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Path<'a> {
    /// The mailbox without brackets or source route; empty for the null path `<>`.
    pub mailbox: &'a str,
    /// The mailbox holds non-ASCII characters (needs SMTPUTF8).
    pub utf8: bool,
}

impl Path<'_> {
    /// The null reverse-path `<>`.
    pub fn is_null(&self) -> bool {
        self.mailbox.is_empty()
    }
}

/// Why a path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AddressError {
    /// Not a path or mailbox.
    Syntax,
    /// Local part over 64 octets.
    LocalPartTooLong,
    /// Domain over 255 octets.
    DomainTooLong,
    /// Path over 256 octets.
    PathTooLong,
}

/// Parses a path at the start of `input`: `<>`, `<[route:]mailbox>` or a bare mailbox.
/// `<Postmaster>` without a domain is accepted when `postmaster` is set (RFC 5321 4.1.1.3).
///
/// Returns the path and the rest of the input.
pub fn parse_path(input: &str, postmaster: bool) -> Result<(Path<'_>, &str), AddressError> {
    let bytes = input.as_bytes();
    let bracketed = bytes.first() == Some(&b'<');
    let parsed = if bracketed {
        angle_path(bytes, postmaster)
    } else {
        bare_mailbox(bytes, postmaster)
    };
    let (rest, (mailbox, local_len)) = parsed.map_err(|_| AddressError::Syntax)?;
    if local_len > MAX_LOCAL_PART {
        return Err(AddressError::LocalPartTooLong);
    }
    if mailbox.len().saturating_sub(local_len + 1) > MAX_DOMAIN {
        return Err(AddressError::DomainTooLong);
    }
    let sent = bytes.len() - rest.len();
    if sent + if bracketed { 0 } else { 2 } > MAX_PATH {
        return Err(AddressError::PathTooLong);
    }
    // Every token ends before an ASCII delimiter or at the end: these are char boundaries.
    let start = mailbox.as_ptr() as usize - bytes.as_ptr() as usize;
    let mailbox = input.get(start..start + mailbox.len());
    match (mailbox, input.get(sent..)) {
        (Some(mailbox), Some(rest)) => {
            let utf8 = !mailbox.is_ascii();
            Ok((Path { mailbox, utf8 }, rest))
        }
        _ => Err(AddressError::Syntax),
    }
}

/// Parses a VRFY argument (RFC 5321 4.1.1.6): a mailbox, bracketed or not, or a user name
/// (a local part). Returns it without brackets.
pub fn parse_user(input: &str) -> Result<&str, AddressError> {
    if let Ok((path, "")) = parse_path(input, true) {
        if !path.is_null() {
            return Ok(path.mailbox);
        }
    }
    match local_part(input.as_bytes()) {
        Ok((b"", user)) if user.len() <= MAX_LOCAL_PART => Ok(input),
        _ => Err(AddressError::Syntax),
    }
}

/// Checks that `input` is a whole domain (RFC 5321 4.1.2 `Domain`, U-labels allowed) or
/// address literal, at most [`MAX_DOMAIN`] octets: the part of a mailbox after its `@`.
pub fn parse_domain(input: &str) -> Result<&str, AddressError> {
    match alt((domain, address_literal)).parse(input.as_bytes()) {
        Ok((b"", _)) if input.len() <= MAX_DOMAIN => Ok(input),
        Ok((b"", _)) => Err(AddressError::DomainTooLong),
        _ => Err(AddressError::Syntax),
    }
}

/// The parsers work on octets; UTF-8 sequences (all octets >= 0x80) are letters to them.
type Input<'a> = &'a [u8];
/// A mailbox and the length of its local part.
type Parsed<'a> = IResult<Input<'a>, (Input<'a>, usize)>;

/// `"<" [ A-d-l ":" ] Mailbox ">"` or `"<>"`.
fn angle_path(input: Input<'_>, postmaster: bool) -> Parsed<'_> {
    let inner = alt((
        preceded(opt(terminated(at_domain_list, tag(&b":"[..]))), mailbox),
        |i| postmaster_only(i, postmaster),
        null_path,
    ));
    delimited(tag(&b"<"[..]), inner, tag(&b">"[..])).parse(input)
}

/// The empty mailbox of `<>`.
fn null_path(input: Input<'_>) -> Parsed<'_> {
    Ok((input, (&input[..0], 0)))
}

fn bare_mailbox(input: Input<'_>, postmaster: bool) -> Parsed<'_> {
    alt((mailbox, |i| postmaster_only(i, postmaster))).parse(input)
}

fn postmaster_only(input: Input<'_>, allowed: bool) -> Parsed<'_> {
    let (rest, user) = verify(local_part, |user: &[u8]| {
        allowed && user.eq_ignore_ascii_case(b"postmaster")
    })
    .parse(input)?;
    Ok((rest, (user, user.len())))
}

/// `Mailbox = Local-part "@" ( Domain / address-literal )`.
fn mailbox(input: Input<'_>) -> Parsed<'_> {
    let (rest, (local, _)) =
        separated_pair(local_part, tag(&b"@"[..]), alt((domain, address_literal))).parse(input)?;
    Ok((rest, (&input[..input.len() - rest.len()], local.len())))
}

/// `A-d-l = At-domain *( "," At-domain )`.
fn at_domain_list(input: Input<'_>) -> IResult<Input<'_>, Input<'_>> {
    recognize(pair(
        preceded(tag(&b"@"[..]), domain),
        fold_many0(preceded(tag(&b",@"[..]), domain), || (), |_, _| ()),
    ))
    .parse(input)
}

/// `Local-part = Dot-string / Quoted-string`.
fn local_part(input: Input<'_>) -> IResult<Input<'_>, Input<'_>> {
    alt((dot_string, quoted_string)).parse(input)
}

/// `Dot-string = Atom *("." Atom)`: atext and dots, no empty atom.
fn dot_string(input: Input<'_>) -> IResult<Input<'_>, Input<'_>> {
    verify(take_while1(|b| is(ATEXT | DOT, b)), |atoms: &[u8]| {
        dot_separated(atoms, b'.')
    })
    .parse(input)
}

fn quoted_string(input: Input<'_>) -> IResult<Input<'_>, Input<'_>> {
    let quoted_pair = preceded(
        tag(&b"\\"[..]),
        take_while_m_n(1, 1, |b| (b' '..=b'~').contains(&b)),
    );
    let content = alt((take_while1(|b| is(QTEXT, b)), quoted_pair));
    recognize(delimited(
        tag(&b"\""[..]),
        fold_many0(content, || (), |_, _| ()),
        tag(&b"\""[..]),
    ))
    .parse(input)
}

/// `Domain = sub-domain *("." sub-domain)`, sub-domains being LDH labels or U-labels.
fn domain(input: Input<'_>) -> IResult<Input<'_>, Input<'_>> {
    verify(take_while1(|b| is(LDH | DOT, b)), |labels: &[u8]| {
        dot_separated(labels, b'-')
    })
    .parse(input)
}

/// Dots separate non-empty tokens (no leading, trailing or doubled dot), and no token starts
/// or ends with `edge` (`-` for domain labels; `.` for no extra rule). One branch-free pass.
fn dot_separated(text: &[u8], edge: u8) -> bool {
    let mut previous = b'.';
    let mut valid = true;
    for &b in text {
        let after_dot = previous == b'.';
        valid &= !((b == b'.') & (after_dot | (previous == edge))) & !((b == edge) & after_dot);
        previous = b;
    }
    valid & (previous != b'.') & (previous != edge)
}

/// `address-literal = "[" ( IPv4 / "IPv6:" IPv6 / General-address-literal ) "]"`.
fn address_literal(input: Input<'_>) -> IResult<Input<'_>, Input<'_>> {
    let literal = verify(take_while1(|b| is(DCONTENT, b)), |literal: &[u8]| {
        core::str::from_utf8(literal).is_ok_and(valid_literal)
    });
    recognize(delimited(tag(&b"["[..]), literal, tag(&b"]"[..]))).parse(input)
}

/// RFC 5321 4.1.3's literals. An IPv6 address is read as RFC 4291 writes it, which also
/// lets `::` stand for one group of zeros.
fn valid_literal(literal: &str) -> bool {
    if let Some(v6) = literal.strip_prefix("IPv6:") {
        return v6.parse::<core::net::Ipv6Addr>().is_ok();
    }
    if ipv4_literal(literal) {
        return true;
    }
    // General-address-literal = Standardized-tag ":" 1*dcontent
    match literal.split_once(':') {
        Some((tag, value)) => {
            !tag.is_empty()
                && !value.is_empty()
                && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !tag.ends_with('-')
        }
        None => false,
    }
}

/// `IPv4-address-literal = Snum 3("." Snum)`, `Snum = 1*3DIGIT` up to 255: leading zeros
/// allowed (`01.2.3.4`), unlike `Ipv4Addr`'s parser.
fn ipv4_literal(literal: &str) -> bool {
    let snum = |part: &str| {
        (1..=3).contains(&part.len())
            && part.bytes().all(|b| b.is_ascii_digit())
            && part.parse::<u16>().is_ok_and(|n| n <= 255)
    };
    let mut parts = literal.split('.');
    parts.by_ref().take(4).filter(|part| snum(part)).count() == 4 && parts.next().is_none()
}

const ATEXT: u8 = 1;
const QTEXT: u8 = 2;
const LDH: u8 = 4;
const DCONTENT: u8 = 8;
const DOT: u8 = 16;

/// Character classes of every octet, one bit per class.
static CLASSES: [u8; 256] = {
    let mut classes = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let alnum = c.is_ascii_alphanumeric();
        let utf8 = c >= 0x80;
        let mut class = 0;
        // atext (RFC 5322 3.2.3) plus UTF-8 (RFC 6531 3.3).
        if alnum
            || utf8
            || matches!(c, b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'/' | b'=' | b'?' | b'^'..=b'`' | b'{'..=b'~')
        {
            class |= ATEXT;
        }
        // qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF-8.
        if matches!(c, b' ' | b'!' | b'#'..=b'[' | b']'..=b'~') || utf8 {
            class |= QTEXT;
        }
        // Let-dig and '-' of LDH labels; UTF-8 for U-labels.
        if alnum || c == b'-' || utf8 {
            class |= LDH;
        }
        // dcontent = %d33-90 / %d94-126.
        if matches!(c, b'!'..=b'Z' | b'^'..=b'~') {
            class |= DCONTENT;
        }
        if c == b'.' {
            class |= DOT;
        }
        classes[b] = class;
        b += 1;
    }
    classes
};

/// Whether octet `b` is in any of `classes`.
fn is(classes: u8, b: u8) -> bool {
    CLASSES[b as usize] & classes != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> (&str, &str) {
        let (path, rest) = parse_path(input, false).unwrap();
        (path.mailbox, rest)
    }

    #[test]
    fn accepted_paths() {
        assert_eq!(ok("<a@b.example>"), ("a@b.example", ""));
        assert_eq!(ok("<>"), ("", ""));
        assert_eq!(ok("a@b SIZE=1"), ("a@b", " SIZE=1"));
        assert_eq!(
            ok("<@r1.example,@r2.example:u@c.example>"),
            ("u@c.example", "")
        );
        assert_eq!(
            ok("<\"john doe\\\"x\"@example.com>"),
            ("\"john doe\\\"x\"@example.com", "")
        );
        assert_eq!(ok("<u@[192.0.2.1]>"), ("u@[192.0.2.1]", ""));
        assert_eq!(ok("<u@[IPv6:2001:db8::1]>"), ("u@[IPv6:2001:db8::1]", ""));
        assert_eq!(ok("<a.b+c@x-y.example>"), ("a.b+c@x-y.example", ""));
        let (p, _) = parse_path("<jörg@bücher.example>", false).unwrap();
        assert!(p.utf8);
        assert_eq!(
            parse_path("<Postmaster>", true).unwrap().0.mailbox,
            "Postmaster"
        );
    }

    #[test]
    fn refused_paths() {
        for bad in [
            "<a@b",
            "a@b>",
            "<a b@c>",
            "<@a@b>",
            "<a@-b.example>",
            "<a@b-.example>",
            "<a..b@c>",
            "<.a@c>",
            "<a@[300.1.1.1]>",
            "<a@[IPv6:zz]>",
            "<a@>",
            "<@b>",
            "<",
            "",
            "<postmaster>",
            "<a@b.>",
            "<\"unterminated@b>",
        ] {
            match parse_path(bad, false) {
                Ok((_, "")) => panic!("accepted {bad}"),
                Ok(_) => {} // trailing garbage: the command parser refuses it
                Err(e) => assert_eq!(e, AddressError::Syntax, "{bad}"),
            }
        }
    }

    #[test]
    fn length_limits() {
        let local = "l".repeat(64);
        assert!(parse_path(&format!("<{local}@example.com>"), false).is_ok());
        assert_eq!(
            parse_path(&format!("<{local}x@example.com>"), false).map(|p| p.0),
            Err(AddressError::LocalPartTooLong)
        );
        let domain = ["d".repeat(63).as_str(); 4].join(".");
        assert_eq!(domain.len(), 255);
        assert_eq!(
            parse_path(&format!("<a@{domain}>"), false).map(|p| p.0),
            Err(AddressError::PathTooLong)
        );
        assert_eq!(
            parse_path(&format!("<a@{domain}x>"), false).map(|p| p.0),
            Err(AddressError::DomainTooLong)
        );
        let domain = ["d".repeat(63).as_str(); 4].join(".")[..251].to_string();
        assert!(parse_path(&format!("<a@{domain}>"), false).is_ok());
    }

    #[test]
    fn vrfy_argument() {
        assert_eq!(parse_user("<a@b>"), Ok("a@b"));
        assert_eq!(parse_user("a@b"), Ok("a@b"));
        assert_eq!(parse_user("smith"), Ok("smith"));
        for bad in ["<", "<>", "a@b c", "", "a@"] {
            assert_eq!(parse_user(bad), Err(AddressError::Syntax), "{bad}");
        }
    }
}
