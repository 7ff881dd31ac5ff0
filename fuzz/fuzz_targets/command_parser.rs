//! `Command::parse` on arbitrary UTF-8 lines.
//!
//! Checks, besides "no panic":
//! - zero-copy: every `&str` the command (or its parameters) returns lies inside the line;
//! - determinism: parsing the same line twice, or a copy of it at another address, gives the
//!   same result (and the copy's strings lie inside the copy);
//! - verbs are case-insensitive: upper-casing the verb gives the same command;
//! - a control character other than TAB anywhere in the line gives `ControlCharacter`, and
//!   only then;
//! - the documented shape of what is returned: arguments are non-empty and trimmed of blanks,
//!   an `Unknown` verb is non-empty printable ASCII and not one the core implements, MAIL/RCPT
//!   parameters are all well-formed, `Path::utf8` says whether the mailbox is non-ASCII, the
//!   RFC 5321 4.5.3.1 local part and domain limits hold, a BDAT size is the number written
//!   in the line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd_core::address::{MAX_DOMAIN, MAX_LOCAL_PART};
use smtpd_core::command::{split_verb, Command, CommandError, Params, Verb};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = core::str::from_utf8(data) else {
        return;
    };
    let parsed = Command::parse(line);
    check_shape(line, &parsed);

    // Deterministic, and independent of where the line lives.
    let again = Command::parse(line);
    assert_eq!(again, parsed, "second parse differs: {line:?}");
    let copy = line.to_owned();
    let parsed_copy = Command::parse(&copy);
    assert_eq!(parsed_copy, parsed, "parse of a copy differs: {line:?}");
    check_shape(&copy, &parsed_copy);

    // A control character other than TAB anywhere refuses the line (RFC 5321 4.1.1).
    let control = line.bytes().any(|b| b.is_ascii_control() && b != b'\t');
    let refused = parsed == Err(CommandError::ControlCharacter);
    assert_eq!(
        refused, control,
        "control characters: {line:?} -> {parsed:?}"
    );

    // The split the parser uses agrees with its result.
    let (verb_text, _) = split_verb(line);
    if verb_text.is_empty() && !control {
        assert_eq!(parsed, Err(CommandError::Empty), "{line:?}");
    }
    if parsed == Err(CommandError::Empty) {
        assert!(verb_text.is_empty(), "{line:?}");
    }

    // Verbs are case-insensitive: upper-case the verb (only the verb) and parse again.
    let start = offset(line, verb_text);
    let mut upper = String::with_capacity(line.len());
    upper.push_str(&line[..start]);
    upper.push_str(&verb_text.to_ascii_uppercase());
    upper.push_str(&line[start + verb_text.len()..]);
    let parsed_upper = Command::parse(&upper);
    check_shape(&upper, &parsed_upper);
    match (&parsed, &parsed_upper) {
        (Ok(Command::Unknown { verb: a, arg: x }), Ok(Command::Unknown { verb: b, arg: y })) => {
            assert!(a.eq_ignore_ascii_case(b), "{line:?}");
            assert_eq!(x, y, "{line:?}");
        }
        (a, b) => assert_eq!(a, b, "verb case changed the result: {line:?} vs {upper:?}"),
    }
});

/// Byte offset of `part` in `line`, asserting that `part` is a sub-slice of `line`.
fn offset(line: &str, part: &str) -> usize {
    let (l, p) = (line.as_ptr() as usize, part.as_ptr() as usize);
    assert!(
        p >= l && p + part.len() <= l + line.len(),
        "{part:?} is not a slice of the line {line:?}"
    );
    p - l
}

/// An argument as `split_verb` documents it: a non-empty slice of the line, without
/// surrounding blanks.
fn check_arg(line: &str, arg: &str) {
    offset(line, arg);
    assert!(!arg.is_empty(), "empty argument from {line:?}");
    assert!(
        !arg.starts_with([' ', '\t']) && !arg.ends_with([' ', '\t']),
        "argument {arg:?} not trimmed in {line:?}"
    );
}

fn check_params(line: &str, params: &Params<'_>) {
    offset(line, params.0);
    assert!(
        !params.0.starts_with(' '),
        "params {:?} of {line:?}",
        params.0
    );
    for param in params.iter() {
        let param = param.unwrap_or_else(|()| panic!("malformed parameter accepted: {line:?}"));
        offset(line, param.keyword);
        assert!(!param.keyword.is_empty(), "{line:?}");
        if let Some(value) = param.value {
            offset(line, value);
            assert!(!value.is_empty(), "{line:?}");
        }
    }
}

fn check_path(line: &str, mailbox: &str, utf8: bool) {
    offset(line, mailbox);
    assert_eq!(utf8, !mailbox.is_ascii(), "Path::utf8 of {mailbox:?}");
    let (local, domain) = split_mailbox(mailbox);
    assert!(
        local.len() <= MAX_LOCAL_PART,
        "local part too long: {mailbox:?}"
    );
    if let Some(domain) = domain {
        assert!(domain.len() <= MAX_DOMAIN, "domain too long: {mailbox:?}");
    }
}

/// Local part and domain of a mailbox. The local part is a quoted string (with `\` escapes)
/// or ends at the first `@` (a dot-string holds none); an address literal may hold `@`.
fn split_mailbox(mailbox: &str) -> (&str, Option<&str>) {
    let end = match mailbox.strip_prefix('"') {
        Some(quoted) => {
            let mut escaped = false;
            let close = quoted.char_indices().find_map(|(i, c)| {
                let close = !escaped && c == '"';
                escaped = !escaped && c == '\\';
                close.then_some(1 + i + 1)
            });
            close.unwrap_or(mailbox.len())
        }
        None => mailbox.find('@').unwrap_or(mailbox.len()),
    };
    let (local, rest) = mailbox.split_at(end);
    (local, rest.strip_prefix('@'))
}

fn check_shape(line: &str, parsed: &Result<Command<'_>, CommandError>) {
    let Ok(command) = parsed else { return };
    match *command {
        Command::Helo(arg) | Command::Ehlo(arg) | Command::Vrfy(arg) => check_arg(line, arg),
        Command::Help(arg) | Command::Expn(arg) => {
            if let Some(arg) = arg {
                check_arg(line, arg);
            }
        }
        Command::Mail { from: path, params } | Command::Rcpt { to: path, params } => {
            check_path(line, path.mailbox, path.utf8);
            check_params(line, &params);
        }
        Command::Bdat { size, .. } => {
            let digits = size.to_string();
            assert!(line.contains(&digits), "BDAT size {size} not in {line:?}");
        }
        Command::Unknown { verb, arg } => {
            offset(line, verb);
            assert!(!verb.is_empty(), "{line:?}");
            assert!(verb.bytes().all(|b| b.is_ascii_graphic()), "{line:?}");
            let known = Verb::from_name(verb);
            assert_eq!(known, None, "implemented verb as Unknown: {line:?}");
            if let Some(arg) = arg {
                check_arg(line, arg);
            }
        }
        Command::Data | Command::Rset | Command::Noop | Command::Quit => {}
    }
}
