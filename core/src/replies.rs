//! The replies the core produces itself.
//!
//! Texts are Python 3.11 smtpd's wherever RFC 5321 allows; enhanced codes follow RFC 3463
//! and are shown only when ENHANCEDSTATUSCODES is on. Replies with a variable part (host
//! name, verb, size) are built by the channel from the pieces here.

use crate::command::Verb;
use crate::reply::Reply;

pub const OK: Reply = Reply::new(250, (2, 0, 0), "OK");
pub const MAIL_OK: Reply = Reply::new(250, (2, 1, 0), "OK");
pub const RCPT_OK: Reply = Reply::new(250, (2, 1, 5), "OK");
pub const BYE: Reply = Reply::new(221, (2, 0, 0), "Bye");
pub const START_DATA: Reply = Reply::plain(354, "End data with <CR><LF>.<CR><LF>");
pub const CANNOT_VRFY: Reply = Reply::new(
    252,
    (2, 0, 0),
    "Cannot VRFY user, but will accept message and attempt delivery",
);
pub const EXPN_NOT_IMPLEMENTED: Reply = Reply::new(502, (5, 5, 1), "EXPN not implemented");

pub const BAD_SYNTAX: Reply = Reply::new(500, (5, 5, 2), "Error: bad syntax");
pub const LINE_TOO_LONG: Reply = Reply::new(500, (5, 5, 2), "Error: line too long");
pub const BAD_UTF8: Reply = Reply::new(500, (5, 5, 2), "Error: bad UTF-8 syntax");
pub const BARE_NEWLINE_IN_COMMAND: Reply =
    Reply::new(500, (5, 5, 2), "Error: bare <CR> or <LF> in command line");

pub const SEND_HELO_FIRST: Reply = Reply::new(503, (5, 5, 1), "Error: send HELO first");
pub const NESTED_MAIL: Reply = Reply::new(503, (5, 5, 1), "Error: nested MAIL command");
pub const NEED_MAIL: Reply = Reply::new(503, (5, 5, 1), "Error: need MAIL command");
/// RFC 5321 3.1: the greeting refused the session; anything but QUIT gets this.
pub const SESSION_REFUSED: Reply = Reply::new(
    503,
    (5, 5, 1),
    "Error: this session was refused, only QUIT is accepted",
);
pub const NEED_RCPT: Reply = Reply::new(503, (5, 5, 1), "Error: need RCPT command");
/// RFC 3030 section 2: the envelope is complete once the message data has begun.
pub const RCPT_AFTER_BDAT: Reply = Reply::new(
    503,
    (5, 5, 1),
    "Error: RCPT not allowed after BDAT in a transaction",
);
/// RFC 3030 2: CHUNKING is offered in the EHLO reply, so a HELO session has no BDAT.
pub const BDAT_NEEDS_EHLO: Reply = Reply::new(503, (5, 5, 1), "Error: BDAT requires EHLO");
pub const DATA_AFTER_BDAT: Reply = Reply::new(
    503,
    (5, 5, 1),
    "Error: DATA not allowed after BDAT in a transaction",
);
pub const BINARYMIME_NEEDS_BDAT: Reply =
    Reply::new(503, (5, 5, 1), "Error: BODY=BINARYMIME requires BDAT");

pub const BAD_BODY: Reply = Reply::new(
    501,
    (5, 5, 4),
    "Error: BODY can only be one of 7BIT, 8BITMIME",
);
pub const BAD_BODY_BINARY: Reply = Reply::new(
    501,
    (5, 5, 4),
    "Error: BODY can only be one of 7BIT, 8BITMIME, BINARYMIME",
);
pub const SMTPUTF8_TAKES_NO_ARGUMENTS: Reply =
    Reply::new(501, (5, 5, 4), "Error: SMTPUTF8 takes no arguments");
pub const DUPLICATE_PARAMETER: Reply = Reply::new(501, (5, 5, 4), "Error: duplicate parameter");
pub const SIZE_EXCEEDS_LIMIT: Reply = Reply::new(
    552,
    (5, 3, 4),
    "Error: message size exceeds fixed maximum message size",
);
pub const MAIL_PARAMS_UNKNOWN: Reply = Reply::new(
    555,
    (5, 5, 4),
    "MAIL FROM parameters not recognized or not implemented",
);
pub const RCPT_PARAMS_UNKNOWN: Reply = Reply::new(
    555,
    (5, 5, 4),
    "RCPT TO parameters not recognized or not implemented",
);
pub const NULL_RECIPIENT: Reply = Reply::new(
    501,
    (5, 1, 3),
    "Error: null address <> not allowed as recipient",
);
pub const NEEDS_SMTPUTF8: Reply =
    Reply::new(553, (5, 6, 7), "Error: non-ASCII address requires SMTPUTF8");
pub const LOCAL_PART_TOO_LONG: Reply =
    Reply::new(501, (5, 5, 4), "Error: local part longer than 64 octets");
pub const DOMAIN_TOO_LONG: Reply =
    Reply::new(501, (5, 5, 4), "Error: domain longer than 255 octets");
pub const PATH_TOO_LONG: Reply = Reply::new(501, (5, 5, 4), "Error: path longer than 256 octets");
pub const HELO_TOO_LONG: Reply =
    Reply::new(501, (5, 5, 4), "Error: hostname longer than 255 octets");
pub const TOO_MANY_RECIPIENTS: Reply = Reply::new(452, (4, 5, 3), "Error: too many recipients");
pub const INSUFFICIENT_STORAGE: Reply =
    Reply::new(452, (4, 3, 1), "Error: insufficient system storage");

/// For a connection over the server's cap: resolve its `Connect` event with this.
pub const TOO_MANY_CONNECTIONS: Reply = Reply::new(421, (4, 3, 2), "Too many connections");
/// For a connection over the cap of its client (Postfix's `421 4.7.0 ... too many
/// connections from ...`).
pub const TOO_MANY_CONNECTIONS_FROM_CLIENT: Reply =
    Reply::new(421, (4, 7, 0), "Too many connections from your address");
/// The last reply of a session a frontend abandons (its handler failed, by a panic).
pub const SESSION_ABORTED: Reply =
    Reply::new(421, (4, 3, 0), "Error: session aborted, closing connection");

pub const TOO_MUCH_DATA: Reply = Reply::new(552, (5, 3, 4), "Error: Too much mail data");
pub const BARE_LF: Reply = Reply::new(550, (5, 5, 2), "Error: bare <LF> received");
pub const BARE_CR: Reply = Reply::new(550, (5, 5, 2), "Error: bare <CR> received");
pub const TEXT_LINE_TOO_LONG: Reply =
    Reply::new(500, (5, 5, 2), "Error: line too long (RFC 5321 4.5.3.1.6)");

/// The text of a syntax reply for `verb` (Python smtpd's, also used by `HELP verb`); MAIL and
/// RCPT mention parameters after EHLO (`extended`).
pub fn syntax(verb: Verb, extended: bool) -> &'static str {
    match (verb, extended) {
        (Verb::Helo, _) => "Syntax: HELO hostname",
        (Verb::Ehlo, _) => "Syntax: EHLO hostname",
        (Verb::Mail, false) => "Syntax: MAIL FROM: <address>",
        (Verb::Mail, true) => "Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
        (Verb::Rcpt, false) => "Syntax: RCPT TO: <address>",
        (Verb::Rcpt, true) => "Syntax: RCPT TO: <address> [SP <mail-parameters>]",
        (Verb::Data, _) => "Syntax: DATA",
        (Verb::Bdat, _) => "Syntax: BDAT chunk-size [LAST]",
        (Verb::Rset, _) => "Syntax: RSET",
        (Verb::Noop, _) => "Syntax: NOOP",
        (Verb::Quit, _) => "Syntax: QUIT",
        (Verb::Help, _) => "Syntax: HELP [command]",
        (Verb::Vrfy, _) => "Syntax: VRFY <address>",
        (Verb::Expn, _) => "Syntax: EXPN <list>",
    }
}

/// The `501` syntax error reply for `verb`.
pub fn syntax_error(verb: Verb, extended: bool) -> Reply<'static> {
    Reply::new(501, syntax_code(verb), syntax(verb, extended))
}

/// The `501` reply to malformed MAIL or RCPT parameters: the verb's syntax, with the code
/// for invalid arguments (RFC 3463 X.5.4), since the path was fine.
pub fn parameters_error(verb: Verb, extended: bool) -> Reply<'static> {
    Reply::new(501, (5, 5, 4), syntax(verb, extended))
}

/// Enhanced code of a syntax error for `verb`: bad sender / recipient address for MAIL and
/// RCPT (RFC 3463 X.1.7, X.1.3), invalid arguments otherwise (X.5.4).
pub fn syntax_code(verb: Verb) -> (u8, u16, u16) {
    match verb {
        Verb::Mail => (5, 1, 7),
        Verb::Rcpt => (5, 1, 3),
        _ => (5, 5, 4),
    }
}
