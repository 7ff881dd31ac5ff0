//! The benchmark corpus: command lines as real clients send them, message bodies generated
//! deterministically (same bytes on every run and machine), and a whole pipelined session.

/// Command lines, without CRLF, as MTAs and MUAs send them: greetings, MAIL with SIZE/BODY,
/// the null reverse-path, a quoted local part, a UTF-8 address, long addresses, lowercase
/// verbs, and the short verbs. (smtp-proto refuses address literals such as `<u@[192.0.2.1]>`,
/// so the corpus has none.)
pub const COMMANDS: [&str; 20] = [
    "EHLO mail-relay01.outbound.example.com",
    "EHLO [192.0.2.25]",
    "HELO client.example.org",
    "MAIL FROM:<alice.johnson@example.com> SIZE=4096 BODY=8BITMIME",
    "MAIL FROM:<bounces+SRS=k2j4h=ZX=lists.example.org=owner@mailer.example.net> SIZE=65536 BODY=8BITMIME",
    "MAIL FROM:<>",
    "MAIL FROM:<\"john smith\"@example.com> BODY=7BIT",
    "MAIL FROM:<newsletter-noreply@marketing.bigcorp-mail.example.co.uk> SIZE=1048576 BODY=8BITMIME SMTPUTF8",
    "mail from:<lowercase.sender@example.com>",
    "RCPT TO:<bob@example.org>",
    "RCPT TO:<carol.de.vries+invoices@subsidiary.example-holdings.com>",
    "RCPT TO:<a.very.long.local.part.for.testing.purposes.1234567890@a-very-long-subdomain-name.department.region.corporate-example.com>",
    "RCPT TO:<Postmaster>",
    "RCPT TO:<jörg.müller@bücher.example>",
    "RCPT TO:<dave@example.com> NOTIFY=SUCCESS,FAILURE",
    "DATA",
    "RSET",
    "NOOP",
    "BDAT 65536 LAST",
    "QUIT",
];

/// [`COMMANDS`] with their CRLF, each line as its own buffer.
pub fn commands_crlf() -> Vec<Vec<u8>> {
    COMMANDS
        .iter()
        .map(|line| format!("{line}\r\n").into_bytes())
        .collect()
}

/// [`COMMANDS`] pipelined into one buffer, CRLF after each.
pub fn commands_pipelined() -> Vec<u8> {
    commands_crlf().concat()
}

/// A message as sent after DATA and as it must come out of a decoder.
#[derive(Clone, Debug)]
pub struct Body {
    pub name: &'static str,
    /// Dot-stuffed content followed by `.\r\n` (the content ends with CRLF).
    pub wire: Vec<u8>,
    /// The content after dot-unstuffing: what a decoder must emit.
    pub content: Vec<u8>,
}

impl Body {
    fn from_lines(name: &'static str, lines: &[String]) -> Body {
        let mut wire = Vec::new();
        let mut content = Vec::new();
        for line in lines {
            if line.starts_with('.') {
                wire.push(b'.');
            }
            for buf in [&mut wire, &mut content] {
                buf.extend_from_slice(line.as_bytes());
                buf.extend_from_slice(b"\r\n");
            }
        }
        wire.extend_from_slice(b".\r\n");
        Body {
            name,
            wire,
            content,
        }
    }

    /// How many content lines were dot-stuffed on the wire.
    pub fn stuffed_lines(&self) -> usize {
        self.wire.len() - self.content.len() - 3
    }
}

/// The bodies the DATA benchmarks use: 4 KiB and 64 KiB text mails, a 1 MiB mail with a
/// base64 attachment, and a 64 KiB text with a dot on every fourth line (the worst realistic
/// case for unstuffing).
pub fn bodies() -> Vec<Body> {
    vec![
        text_message("text_4KiB", 4 * 1024, 1, 12),
        text_message("text_64KiB", 64 * 1024, 2, 20),
        attachment_message("mime_1MiB", 1024 * 1024, 3),
        text_message("dotty_64KiB", 64 * 1024, 4, 4),
    ]
}

/// A deterministic generator (xorshift64*), so that the corpus is the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: [&str; 48] = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "at",
    "by",
    "this",
    "have",
    "from",
    "or",
    "an",
    "they",
    "which",
    "you",
    "one",
    "were",
    "meeting",
    "invoice",
    "quarterly",
    "report",
    "attached",
    "please",
    "review",
    "schedule",
    "project",
    "update",
    "regards",
    "customer",
    "delivery",
    "server",
    "configuration",
    "tomorrow",
    "afternoon",
    "deadline",
    "budget",
    "thanks",
    "question",
    "proposal",
];

/// Lines a dot-stuffing client has to escape (signatures, ellipses, config snippets...).
const DOT_LINES: [&str; 6] = [
    ".",
    "..",
    "... and so on",
    ".signature follows",
    ".htaccess: deny from all",
    ". indented bullet point",
];

fn headers(rng: &mut Rng, subject: &str, extra: &[&str]) -> Vec<String> {
    let id = rng.next();
    let mut lines = vec![
        "Received: from mail-relay01.outbound.example.com (mail-relay01.outbound.example.com [192.0.2.25])".into(),
        "\tby mx.example.org (smtpd-rs) with ESMTPS id 4Xk2Lq0Zb7z9sWn".into(),
        "\tfor <bob@example.org>; Tue, 14 May 2024 09:12:44 +0000 (UTC)".into(),
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel2024;".into(),
        "\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;".into(),
        "\tb=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR".into(),
        "From: Alice Johnson <alice.johnson@example.com>".into(),
        "To: Bob <bob@example.org>, Carol de Vries <carol.de.vries+invoices@subsidiary.example-holdings.com>".into(),
        format!("Subject: {subject}"),
        "Date: Tue, 14 May 2024 11:12:40 +0200".into(),
        format!("Message-ID: <{id:016x}.{:08x}@example.com>", rng.next() as u32),
        "MIME-Version: 1.0".into(),
    ];
    lines.extend(extra.iter().map(|s| s.to_string()));
    lines
}

/// Text paragraphs of lines wrapped below 76 columns; every `dot_every`-th line (on average)
/// starts with a dot. Stops once the lines add up to `target` octets (CRLFs included).
fn paragraphs(rng: &mut Rng, lines: &mut Vec<String>, target: usize, dot_every: usize) {
    let mut total: usize = lines.iter().map(|l| l.len() + 2).sum();
    while total < target {
        let line = if rng.below(dot_every) == 0 {
            DOT_LINES[rng.below(DOT_LINES.len())].to_string()
        } else if rng.below(8) == 0 {
            String::new() // paragraph break
        } else {
            let width = 50 + rng.below(26);
            let mut line = String::new();
            while line.len() < width {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(WORDS[rng.below(WORDS.len())]);
            }
            line
        };
        total += line.len() + 2;
        lines.push(line);
    }
}

/// A plain-text mail of about `target` octets.
fn text_message(name: &'static str, target: usize, seed: u64, dot_every: usize) -> Body {
    let mut rng = Rng::new(seed);
    let mut lines = headers(
        &mut rng,
        "Quarterly report and meeting schedule",
        &["Content-Type: text/plain; charset=utf-8; format=flowed"],
    );
    lines.push(String::new());
    paragraphs(&mut rng, &mut lines, target - 3, dot_every);
    Body::from_lines(name, &lines)
}

/// A multipart mail of about `target` octets: a short text part, then a base64 attachment of
/// pseudo-random bytes in 76-column lines.
fn attachment_message(name: &'static str, target: usize, seed: u64) -> Body {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let boundary = "----=_Part_123456_7890.1715677960000";
    let mut rng = Rng::new(seed);
    let mut lines = headers(
        &mut rng,
        "Signed contract (PDF attached)",
        &[&format!(
            "Content-Type: multipart/mixed; boundary=\"{boundary}\""
        )],
    );
    lines.push(String::new());
    lines.push(format!("--{boundary}"));
    lines.push("Content-Type: text/plain; charset=utf-8".into());
    lines.push(String::new());
    paragraphs(&mut rng, &mut lines, 3 * 1024, 20);
    lines.push(format!("--{boundary}"));
    lines.push("Content-Type: application/pdf; name=\"contract.pdf\"".into());
    lines.push("Content-Transfer-Encoding: base64".into());
    lines.push("Content-Disposition: attachment; filename=\"contract.pdf\"".into());
    lines.push(String::new());
    let closing = boundary.len() + 6 + 3;
    let mut total: usize = lines.iter().map(|l| l.len() + 2).sum();
    while total + closing < target {
        let line: String = (0..76)
            .map(|_| B64[rng.below(64)] as char)
            .take((target - closing - total).saturating_sub(2).clamp(1, 76))
            .collect();
        total += line.len() + 2;
        lines.push(line);
    }
    lines.push(format!("--{boundary}--"));
    Body::from_lines(name, &lines)
}

/// A whole client side of a session, pipelined as one byte stream (the client would wait
/// for the greeting, the EHLO reply and each 354; the server's processing is the same):
/// EHLO, three transactions (4 KiB to two recipients, a 64 KiB bounce, 4 KiB after a RSET
/// and NOOP), QUIT.
pub fn session_script(bodies: &[Body]) -> Session {
    let small = &bodies[0];
    let large = &bodies[1];
    let mut script = Vec::new();
    let push = |script: &mut Vec<u8>, line: &str| {
        script.extend_from_slice(line.as_bytes());
        script.extend_from_slice(b"\r\n");
    };
    push(&mut script, "EHLO mail-relay01.outbound.example.com");
    push(
        &mut script,
        &format!(
            "MAIL FROM:<alice.johnson@example.com> SIZE={} BODY=8BITMIME",
            small.content.len()
        ),
    );
    push(&mut script, "RCPT TO:<bob@example.org>");
    push(
        &mut script,
        "RCPT TO:<carol.de.vries+invoices@subsidiary.example-holdings.com>",
    );
    push(&mut script, "DATA");
    script.extend_from_slice(&small.wire);
    push(&mut script, "MAIL FROM:<>");
    push(&mut script, "RCPT TO:<postmaster@example.org>");
    push(&mut script, "DATA");
    script.extend_from_slice(&large.wire);
    push(&mut script, "RSET");
    push(&mut script, "NOOP");
    push(
        &mut script,
        "MAIL FROM:<bounces+SRS=k2j4h=ZX=lists.example.org=owner@mailer.example.net> SIZE=4096",
    );
    push(&mut script, "RCPT TO:<dave@example.com>");
    push(&mut script, "DATA");
    script.extend_from_slice(&small.wire);
    push(&mut script, "QUIT");
    Session {
        script,
        messages: 3,
        content_bytes: (2 * small.content.len() + large.content.len()) as u64,
        // Greeting, EHLO (one reply), MAIL RCPT RCPT DATA end, MAIL RCPT DATA end, RSET,
        // NOOP, MAIL RCPT DATA end, QUIT.
        replies: 18,
    }
}

/// A session script and what the server must make of it.
#[derive(Clone, Debug)]
pub struct Session {
    pub script: Vec<u8>,
    /// Messages delivered (`data_end` calls).
    pub messages: u32,
    /// Octets of message content handed to the handler.
    pub content_bytes: u64,
    /// Replies the server sends (a multi-line reply counts once), greeting included.
    pub replies: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_shape() {
        let bodies = bodies();
        for (body, target) in bodies.iter().zip([4096, 65536, 1 << 20, 65536]) {
            let len = body.wire.len();
            println!(
                "{}: {len} octets on the wire, {} content lines, {} dot-stuffed",
                body.name,
                body.content.split(|&b| b == b'\n').count() - 1,
                body.stuffed_lines()
            );
            assert!(len.abs_diff(target) < target / 50, "{}: {len}", body.name);
            assert!(body.stuffed_lines() > 0, "{}", body.name);
            assert!(body.wire.ends_with(b"\r\n.\r\n") && body.content.ends_with(b"\r\n"));
            assert!(!body.wire.starts_with(b"."));
        }
        let session = session_script(&bodies);
        println!("session script: {} octets", session.script.len());
        assert!(commands_pipelined().len() > 20 * 6);
    }
}
