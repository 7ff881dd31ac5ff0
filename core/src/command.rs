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
        const fn word(name: &[u8; 4]) -> u32 {
            u32::from_le_bytes(*name)
        }
        const HELO: u32 = word(b"HELO");
        const EHLO: u32 = word(b"EHLO");
        const MAIL: u32 = word(b"MAIL");
        const RCPT: u32 = word(b"RCPT");
        const DATA: u32 = word(b"DATA");
        const BDAT: u32 = word(b"BDAT");
        const RSET: u32 = word(b"RSET");
        const NOOP: u32 = word(b"NOOP");
        const QUIT: u32 = word(b"QUIT");
        const HELP: u32 = word(b"HELP");
        const VRFY: u32 = word(b"VRFY");
        const EXPN: u32 = word(b"EXPN");
        let name: [u8; 4] = name.as_bytes().try_into().ok()?;
        // Clearing bit 5 upper-cases letters; no other printable octet becomes a letter.
        Some(match word(&name) & 0xDFDF_DFDF {
            HELO => Verb::Helo,
            EHLO => Verb::Ehlo,
            MAIL => Verb::Mail,
            RCPT => Verb::Rcpt,
            DATA => Verb::Data,
            BDAT => Verb::Bdat,
            RSET => Verb::Rset,
            NOOP => Verb::Noop,
            QUIT => Verb::Quit,
            HELP => Verb::Help,
            VRFY => Verb::Vrfy,
            EXPN => Verb::Expn,
            _ => return None,
        })
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
    /// MAIL or RCPT with malformed parameters.
    Parameters(Verb),
}

impl<'a> Command<'a> {
    /// Parses one command line, without its CRLF.
    pub fn parse(line: &'a str) -> Result<Command<'a>, CommandError> {
        if has_control_character(line.as_bytes()) {
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

/// Whether `bytes` hold an ASCII control character other than TAB (branch-free, so the
/// compiler can vectorize it: lines are usually clean).
fn has_control_character(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |found, &b| {
        found | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    })
}

/// Splits a line into its verb and its argument (what follows the first space, without
/// surrounding blanks; `None` when empty).
pub fn split_verb(line: &str) -> (&str, Option<&str>) {
    let line = trim_blanks(line);
    // Lines are short: a plain scan beats memchr's set-up.
    let (verb, arg) = match line.bytes().position(|b| b == b' ') {
        Some(space) => (&line[..space], trim_blanks(&line[space + 1..])),
        None => (line, ""),
    };
    (verb, (!arg.is_empty()).then_some(arg))
}

/// `text` without leading and trailing spaces and TABs.
fn trim_blanks(text: &str) -> &str {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let bytes = text.as_bytes();
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |last| last + 1);
    // Blanks are ASCII, so both ends are char boundaries.
    text.get(start..end).unwrap_or_default()
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
    let rest = trim_blanks(rest);
    let (path, params) =
        parse_path(rest, postmaster).map_err(|e| CommandError::Address(verb, e))?;
    let params = match params.strip_prefix(' ') {
        Some(params) => trim_blanks(params),
        None if params.is_empty() => params,
        None => return Err(CommandError::Syntax(verb)),
    };
    let params = Params(params);
    if params.iter().any(|p| p.is_err()) {
        return Err(CommandError::Parameters(verb));
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
    Some(Command::Bdat {
        size: chunk_size(size)?,
        last,
    })
}

/// `chunk-size = 1*DIGIT` (RFC 3030 2), if it fits a `u64`.
fn chunk_size(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The chunk size of a malformed BDAT line whose size is still readable (`BDAT 4 FIRST`):
/// the refused chunk's octets can then be skipped rather than read as commands.
pub fn readable_chunk_size(line: &str) -> Option<u64> {
    let (verb, arg) = line.split_once(' ')?;
    if !verb.eq_ignore_ascii_case("BDAT") {
        return None;
    }
    chunk_size(arg.split(' ').next()?)
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
    pub fn iter(&self) -> ParamsIter<'a> {
        ParamsIter { rest: self.0 }
    }
}

/// Iterator over [`Params`], splitting at spaces.
#[derive(Clone, Debug)]
pub struct ParamsIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for ParamsIter<'a> {
    type Item = Result<Param<'a>, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.rest.as_bytes();
        let start = bytes.iter().position(|&b| b != b' ')?;
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b' ')
            .map_or(bytes.len(), |k| start + k);
        // Spaces are ASCII: both ends are char boundaries.
        let param = self.rest.get(start..end).unwrap_or_default();
        self.rest = self.rest.get(end..).unwrap_or_default();
        Some(parse_param(param))
    }
}

/// `esmtp-keyword ["=" esmtp-value]`; the value may hold UTF-8 (RFC 6531 3.3).
fn parse_param(param: &str) -> Result<Param<'_>, ()> {
    let (keyword, value) = match param.bytes().position(|b| b == b'=') {
        Some(eq) => (&param[..eq], Some(&param[eq + 1..])),
        None => (param, None),
    };
    let keyword_ok = keyword
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphanumeric)
        && keyword
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() | (b == b'-'));
    // esmtp-value = 1*(%d33-60 / %d62-126)
    let value_ok = value.is_none_or(|v| {
        !v.is_empty()
            && v.bytes()
                .all(|b| (b != b'=') & (b.is_ascii_graphic() | (b >= 0x80)))
    });
    if keyword_ok && value_ok {
        Ok(Param { keyword, value })
    } else {
        Err(())
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
            Err(CommandError::Parameters(Verb::Mail))
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

    #[test]
    fn readable_chunk_size_of_malformed_bdat() {
        assert_eq!(readable_chunk_size("BDAT 4 FIRST"), Some(4));
        assert_eq!(readable_chunk_size("bdat 10 last now"), Some(10));
        for unreadable in ["BDAT", "BDAT x", "BDAT +4", "BDAT -1", "BDAT  4", "NOOP 4"] {
            assert_eq!(readable_chunk_size(unreadable), None, "{unreadable}");
        }
        assert_eq!(readable_chunk_size("BDAT 99999999999999999999999 x"), None);
    }
}
