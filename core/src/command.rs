//! Command line syntax (RFC 5321 4.1.1, RFC 1870, RFC 3030, RFC 6531).
//!
//! [`Command::parse`] is zero-copy: every string it returns borrows from the line. It checks
//! syntax only; whether a command is allowed now (sequence, extensions, limits) is the
//! channel's business. Verbs are case-insensitive; the argument is what follows the first
//! space, with surrounding blanks removed (as Python smtpd does).

use crate::address::{parse_path, AddressError, Path};

/// A syntactically valid command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Command<'a> {
    Helo(&'a str),
    Ehlo(&'a str),
    Mail {
        from: Path<'a>,
        params: Params<'a>,
    },
    Rcpt {
        to: Path<'a>,
        params: Params<'a>,
    },
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Help(Option<&'a str>),
    Vrfy(&'a str),
    Expn(Option<&'a str>),
    /// A verb the core does not implement, for the handler to answer.
    Unknown {
        verb: &'a str,
        arg: Option<&'a str>,
    },
}

/// The verbs the core implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verb {
    Helo,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Help,
    Vrfy,
    Expn,
}

impl Verb {
    /// Every verb, in the order HELP lists them.
    pub const ALL: [Verb; 12] = [
        Verb::Ehlo,
        Verb::Helo,
        Verb::Mail,
        Verb::Rcpt,
        Verb::Data,
        Verb::Bdat,
        Verb::Rset,
        Verb::Noop,
        Verb::Quit,
        Verb::Help,
        Verb::Vrfy,
        Verb::Expn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Verb::Helo => "HELO",
            Verb::Ehlo => "EHLO",
            Verb::Mail => "MAIL",
            Verb::Rcpt => "RCPT",
            Verb::Data => "DATA",
            Verb::Bdat => "BDAT",
            Verb::Rset => "RSET",
            Verb::Noop => "NOOP",
            Verb::Quit => "QUIT",
            Verb::Help => "HELP",
            Verb::Vrfy => "VRFY",
            Verb::Expn => "EXPN",
        }
    }

    /// Case-insensitive lookup.
    pub fn from_name(name: &str) -> Option<Verb> {
        Verb::ALL
            .into_iter()
            .find(|verb| verb.name().eq_ignore_ascii_case(name))
    }
}

/// Why a line is not a valid command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CommandError {
    /// Nothing but blanks.
    Empty,
    /// The verb holds non-ASCII characters or TAB.
    BadVerb,
    /// A control character (NUL, DEL, ...) anywhere in the line (RFC 5321 4.1.1 grammar).
    ControlCharacter,
    /// A known verb with malformed arguments.
    Syntax(Verb),
    /// MAIL or RCPT with a malformed path.
    Address(Verb, AddressError),
}

impl<'a> Command<'a> {
    /// Parses one command line, without its CRLF.
    pub fn parse(line: &'a str) -> Result<Command<'a>, CommandError> {
        if line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(CommandError::ControlCharacter);
        }
        let (verb_text, arg) = split_verb(line);
        if verb_text.is_empty() {
            return Err(CommandError::Empty);
        }
        if !verb_text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CommandError::BadVerb);
        }
        let Some(verb) = Verb::from_name(verb_text) else {
            return Ok(Command::Unknown {
                verb: verb_text,
                arg,
            });
        };
        let syntax = Err(CommandError::Syntax(verb));
        match (verb, arg) {
            (Verb::Helo, Some(domain)) => Ok(Command::Helo(domain)),
            (Verb::Ehlo, Some(domain)) => Ok(Command::Ehlo(domain)),
            (Verb::Mail, Some(arg)) => {
                let (from, params) = path_argument(verb, arg, "FROM:", false)?;
                Ok(Command::Mail { from, params })
            }
            (Verb::Rcpt, Some(arg)) => {
                let (to, params) = path_argument(verb, arg, "TO:", true)?;
                Ok(Command::Rcpt { to, params })
            }
            (Verb::Data, None) => Ok(Command::Data),
            (Verb::Bdat, Some(arg)) => parse_bdat(arg).ok_or(CommandError::Syntax(verb)),
            (Verb::Rset, None) => Ok(Command::Rset),
            // RFC 5321 4.1.1.9: a NOOP parameter is ignored; QUIT's too, as Python smtpd does.
            (Verb::Noop, _) => Ok(Command::Noop),
            (Verb::Quit, _) => Ok(Command::Quit),
            (Verb::Help, topic) => Ok(Command::Help(topic)),
            (Verb::Vrfy, Some(user)) => Ok(Command::Vrfy(user)),
            (Verb::Expn, list) => Ok(Command::Expn(list)),
            _ => syntax,
        }
    }
}

/// Splits a line into its verb and its argument (what follows the first space, without
/// surrounding blanks; `None` when empty).
pub fn split_verb(line: &str) -> (&str, Option<&str>) {
    let line = line.trim_start_matches([' ', '\t']);
    let (verb, arg) = match line.split_once(' ') {
        Some((verb, arg)) => (verb, arg.trim_matches([' ', '\t'])),
        None => (line.trim_end_matches([' ', '\t']), ""),
    };
    (verb, (!arg.is_empty()).then_some(arg))
}

/// `FROM:` / `TO:` (case-insensitive, blanks allowed after the colon), a path, then
/// parameters separated by spaces.
fn path_argument<'a>(
    verb: Verb,
    arg: &'a str,
    keyword: &str,
    postmaster: bool,
) -> Result<(Path<'a>, Params<'a>), CommandError> {
    let rest = match arg.get(..keyword.len()) {
        Some(head) if head.eq_ignore_ascii_case(keyword) => &arg[keyword.len()..],
        _ => return Err(CommandError::Syntax(verb)),
    };
    let rest = rest.trim_start_matches([' ', '\t']);
    let (path, params) =
        parse_path(rest, postmaster).map_err(|e| CommandError::Address(verb, e))?;
    let params = match params.strip_prefix(' ') {
        Some(params) => params.trim_start_matches(' '),
        None if params.is_empty() => params,
        None => return Err(CommandError::Syntax(verb)),
    };
    let params = Params(params);
    if params.iter().any(|p| p.is_err()) {
        return Err(CommandError::Syntax(verb));
    }
    Ok((path, params))
}

/// `BDAT SP chunk-size [ SP end-marker ]` (RFC 3030 2).
fn parse_bdat(arg: &str) -> Option<Command<'_>> {
    let (size, last) = match arg.split_once(' ') {
        Some((size, marker)) if marker.trim_start_matches(' ').eq_ignore_ascii_case("LAST") => {
            (size, true)
        }
        Some(_) => return None,
        None => (arg, false),
    };
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let size = size.parse().ok()?;
    Some(Command::Bdat { size, last })
}

/// ESMTP parameters of MAIL or RCPT (RFC 5321 4.1.2 `Mail-parameters`), unparsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Params<'a>(pub &'a str);

/// One `esmtp-keyword ["=" esmtp-value]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Param<'a> {
    pub keyword: &'a str,
    pub value: Option<&'a str>,
}

impl<'a> Params<'a> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each parameter, or `Err(())` for a malformed one.
    pub fn iter(&self) -> impl Iterator<Item = Result<Param<'a>, ()>> + 'a {
        self.0.split(' ').filter(|p| !p.is_empty()).map(|param| {
            let (keyword, value) = match param.split_once('=') {
                Some((keyword, value)) => (keyword, Some(value)),
                None => (param, None),
            };
            let keyword_ok = keyword.starts_with(|c: char| c.is_ascii_alphanumeric())
                && keyword
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            // esmtp-value = 1*(%d33-60 / %d62-126), UTF-8 allowed by RFC 6531.
            let value_ok = value.is_none_or(|v| {
                !v.is_empty()
                    && v.chars()
                        .all(|c| c != '=' && (c.is_ascii_graphic() || !c.is_ascii()))
            });
            if keyword_ok && value_ok {
                Ok(Param { keyword, value })
            } else {
                Err(())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(mailbox: &str) -> Path<'_> {
        Path {
            mailbox,
            utf8: !mailbox.is_ascii(),
        }
    }

    #[test]
    fn simple_commands() {
        assert_eq!(
            Command::parse("EHLO client.example"),
            Ok(Command::Ehlo("client.example"))
        );
        assert_eq!(Command::parse("helo  x "), Ok(Command::Helo("x")));
        assert_eq!(Command::parse("DATA"), Ok(Command::Data));
        assert_eq!(Command::parse("noop anything"), Ok(Command::Noop));
        assert_eq!(Command::parse("QUIT now"), Ok(Command::Quit));
        assert_eq!(Command::parse("HELP mail"), Ok(Command::Help(Some("mail"))));
        assert_eq!(Command::parse("EXPN"), Ok(Command::Expn(None)));
        assert_eq!(
            Command::parse("XFOO bar baz"),
            Ok(Command::Unknown {
                verb: "XFOO",
                arg: Some("bar baz")
            })
        );
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(Command::parse(""), Err(CommandError::Empty));
        assert_eq!(Command::parse("   "), Err(CommandError::Empty));
        assert_eq!(
            Command::parse("NO\0OP"),
            Err(CommandError::ControlCharacter)
        );
        assert_eq!(
            Command::parse("HELO a\0b"),
            Err(CommandError::ControlCharacter)
        );
        assert_eq!(Command::parse("NOOP\targ"), Err(CommandError::BadVerb));
        assert_eq!(Command::parse("É"), Err(CommandError::BadVerb));
        assert_eq!(
            Command::parse("UNKNOWN_CMD"),
            Ok(Command::Unknown {
                verb: "UNKNOWN_CMD",
                arg: None
            })
        );
        assert_eq!(
            Command::parse("HELO"),
            Err(CommandError::Syntax(Verb::Helo))
        );
        assert_eq!(
            Command::parse("DATA x"),
            Err(CommandError::Syntax(Verb::Data))
        );
        assert_eq!(
            Command::parse("RSET x"),
            Err(CommandError::Syntax(Verb::Rset))
        );
        assert_eq!(
            Command::parse("VRFY"),
            Err(CommandError::Syntax(Verb::Vrfy))
        );
        assert_eq!(
            Command::parse("MAIL"),
            Err(CommandError::Syntax(Verb::Mail))
        );
        assert_eq!(
            Command::parse("MAIL TO:<a@b>"),
            Err(CommandError::Syntax(Verb::Mail))
        );
        assert_eq!(
            Command::parse("MAIL FROM:<a@b>x"),
            Err(CommandError::Syntax(Verb::Mail))
        );
        assert_eq!(
            Command::parse("MAIL FROM:<a@b> =x"),
            Err(CommandError::Syntax(Verb::Mail))
        );
        assert_eq!(
            Command::parse("MAIL FROM:<a@b"),
            Err(CommandError::Address(Verb::Mail, AddressError::Syntax))
        );
    }

    #[test]
    fn mail_and_rcpt() {
        let Ok(Command::Mail { from, params }) =
            Command::parse("MAIL FROM: <a@b.example>  SIZE=100 BODY=8BITMIME")
        else {
            panic!()
        };
        assert_eq!(from, path("a@b.example"));
        let params: std::vec::Vec<_> = params.iter().map(Result::unwrap).collect();
        assert_eq!(
            params,
            [
                Param {
                    keyword: "SIZE",
                    value: Some("100")
                },
                Param {
                    keyword: "BODY",
                    value: Some("8BITMIME")
                }
            ]
        );
        assert_eq!(
            Command::parse("mail from:<>"),
            Ok(Command::Mail {
                from: path(""),
                params: Params("")
            })
        );
        assert_eq!(
            Command::parse("RCPT to: postmaster"),
            Ok(Command::Rcpt {
                to: path("postmaster"),
                params: Params("")
            })
        );
    }

    #[test]
    fn bdat() {
        assert_eq!(
            Command::parse("BDAT 0 LAST"),
            Ok(Command::Bdat {
                size: 0,
                last: true
            })
        );
        assert_eq!(
            Command::parse("bdat 1024"),
            Ok(Command::Bdat {
                size: 1024,
                last: false
            })
        );
        for bad in [
            "BDAT",
            "BDAT x",
            "BDAT 1 FIRST",
            "BDAT -1",
            "BDAT 99999999999999999999999",
        ] {
            assert_eq!(
                Command::parse(bad),
                Err(CommandError::Syntax(Verb::Bdat)),
                "{bad}"
            );
        }
    }
}
