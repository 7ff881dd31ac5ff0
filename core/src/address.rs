//! Reverse- and forward-path syntax (RFC 5321 4.1.2, 4.5.3.1; RFC 6531 3.3).
//!
//! Parsers borrow from the command line. They accept UTF-8 in local parts and domains and
//! report it in [`Path::utf8`]; whether that is allowed (SMTPUTF8) is the channel's decision.
//! Python smtpd's lenient forms stay accepted: spaces after the colon and a mailbox without
//! angle brackets. A source route (`<@a,@b:user@c>`) is accepted and dropped (RFC 5321 C).

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while1};
use nom::character::complete::{char, satisfy};
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
    let bracketed = input.starts_with('<');
    let (rest, (sent, mailbox)) = if bracketed {
        angle_path(input, postmaster)
    } else {
        bare_mailbox(input, postmaster)
    }
    .map_err(|_| AddressError::Syntax)?;
    // The local part is what its parser consumed: a general address literal may hold '@'.
    if let Ok((domain, local)) = local_part(mailbox) {
        if local.len() > MAX_LOCAL_PART {
            return Err(AddressError::LocalPartTooLong);
        }
        if domain.len().saturating_sub(1) > MAX_DOMAIN {
            return Err(AddressError::DomainTooLong);
        }
    }
    let brackets = if bracketed { 0 } else { 2 };
    if sent.len() + brackets > MAX_PATH {
        return Err(AddressError::PathTooLong);
    }
    let utf8 = !mailbox.is_ascii();
    Ok((Path { mailbox, utf8 }, rest))
}

/// Parses a VRFY argument (RFC 5321 4.1.1.6): a mailbox, bracketed or not, or a user name
/// (a local part). Returns it without brackets.
pub fn parse_user(input: &str) -> Result<&str, AddressError> {
    if let Ok((path, "")) = parse_path(input, true) {
        if !path.is_null() {
            return Ok(path.mailbox);
        }
    }
    match local_part(input) {
        Ok(("", user)) if user.len() <= MAX_LOCAL_PART => Ok(user),
        _ => Err(AddressError::Syntax),
    }
}

type Parsed<'a> = IResult<&'a str, (&'a str, &'a str)>;

/// `"<" [ A-d-l ":" ] Mailbox ">"` or `"<>"`; yields (text as sent, mailbox).
fn angle_path(input: &str, postmaster: bool) -> Parsed<'_> {
    let inner = alt((
        preceded(opt(terminated(at_domain_list, char(':'))), mailbox),
        |i| postmaster_only(i, postmaster),
        tag(""),
    ));
    let (rest, mailbox) = delimited(char('<'), inner, char('>')).parse(input)?;
    Ok((rest, (&input[..input.len() - rest.len()], mailbox)))
}

fn bare_mailbox(input: &str, postmaster: bool) -> Parsed<'_> {
    let (rest, mailbox) = alt((mailbox, |i| postmaster_only(i, postmaster))).parse(input)?;
    Ok((rest, (mailbox, mailbox)))
}

fn postmaster_only(input: &str, allowed: bool) -> IResult<&str, &str> {
    verify(local_part, |s: &str| {
        allowed && s.eq_ignore_ascii_case("postmaster")
    })
    .parse(input)
}

/// `Mailbox = Local-part "@" ( Domain / address-literal )`.
fn mailbox(input: &str) -> IResult<&str, &str> {
    recognize(separated_pair(
        local_part,
        char('@'),
        alt((domain, address_literal)),
    ))
    .parse(input)
}

/// `A-d-l = At-domain *( "," At-domain )`.
fn at_domain_list(input: &str) -> IResult<&str, &str> {
    recognize(pair(
        preceded(char('@'), domain),
        fold_many0(preceded(tag(",@"), domain), || (), |_, _| ()),
    ))
    .parse(input)
}

/// `Local-part = Dot-string / Quoted-string`.
fn local_part(input: &str) -> IResult<&str, &str> {
    alt((dot_string, quoted_string)).parse(input)
}

fn dot_string(input: &str) -> IResult<&str, &str> {
    let atom = || take_while1(is_atext);
    recognize(pair(
        atom(),
        fold_many0(pair(char('.'), atom()), || (), |_, _| ()),
    ))
    .parse(input)
}

fn quoted_string(input: &str) -> IResult<&str, &str> {
    let content = alt((
        take_while1(is_qtext),
        recognize(pair(char('\\'), satisfy(|c| (' '..='~').contains(&c)))),
    ));
    recognize(delimited(
        char('"'),
        fold_many0(content, || (), |_, _| ()),
        char('"'),
    ))
    .parse(input)
}

/// `Domain = sub-domain *("." sub-domain)`, sub-domains being LDH labels or U-labels.
fn domain(input: &str) -> IResult<&str, &str> {
    let label = || {
        verify(
            take_while1(|c: char| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii()),
            |s: &str| !s.starts_with('-') && !s.ends_with('-'),
        )
    };
    recognize(pair(
        label(),
        fold_many0(pair(char('.'), label()), || (), |_, _| ()),
    ))
    .parse(input)
}

/// `address-literal = "[" ( IPv4 / "IPv6:" IPv6 / General-address-literal ) "]"`.
fn address_literal(input: &str) -> IResult<&str, &str> {
    let dcontent = |c: char| matches!(c, '!'..='Z' | '^'..='~');
    recognize(delimited(
        char('['),
        verify(take_while1(dcontent), valid_literal),
        char(']'),
    ))
    .parse(input)
}

fn valid_literal(literal: &str) -> bool {
    if let Some(v6) = literal.strip_prefix("IPv6:") {
        return v6.parse::<core::net::Ipv6Addr>().is_ok();
    }
    if literal.parse::<core::net::Ipv4Addr>().is_ok() {
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

/// `atext` (RFC 5322 3.2.3) plus UTF-8 (RFC 6531 3.3).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// `qtextSMTP = %d32-33 / %d35-91 / %d93-126` plus UTF-8.
fn is_qtext(c: char) -> bool {
    matches!(c, ' ' | '!' | '#'..='[' | ']'..='~') || (!c.is_ascii() && !c.is_control())
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
