#!/usr/bin/env python3
"""Mail sender for tests/tap.rs: sends messages to the TAP demo and checks what it stored.

usage: tap_client.py HOST PORT MAILDIR host|device

Each message carries a unique token; the demo writes every stored message as one file in
MAILDIR/new: 'X-Envelope-From: <..>' CRLF, one 'X-Envelope-To: <..>' CRLF per recipient,
then the content. Every check compares that whole file with the envelope and the exact
octets sent, after dot-unstuffing (the content is sent CRLF-terminated, so dot-stuffing is
the only change on the wire). The device profile (4 KiB messages, 8 recipients, a 10.4 KiB
ring) gets its limits checked instead of the 1 MiB message. Prints one line per case; exit
status 0 when all passed.
"""
import os
import random
import smtplib
import socket
import sys
import time
import uuid

HOST, PORT, MAILDIR, PROFILE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
CRLF = b"\r\n"


class Failed(Exception):
    pass


def wait_for_server(seconds=15.0):
    end = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection((HOST, PORT), timeout=1).close()
            return
        except OSError as e:
            if time.monotonic() > end:
                raise Failed("server at %s:%d not reachable: %s" % (HOST, PORT, e))
            time.sleep(0.2)


def connect(make, seconds=2.0):
    """make(), retried while refused: the pool has no backlog, so a connection is refused
    while every slot is busy or still closing its previous connection (README)."""
    end = time.monotonic() + seconds
    while True:
        try:
            return make()
        except ConnectionRefusedError:
            if time.monotonic() > end:
                raise
            time.sleep(0.01)


def smtp(timeout):
    return connect(lambda: smtplib.SMTP(HOST, PORT, timeout=timeout))


def stored(token, seconds=10.0):
    """The one stored file containing token."""
    token = token.encode() if isinstance(token, str) else token
    new = os.path.join(MAILDIR, "new")
    end = time.monotonic() + seconds
    while True:
        found = []
        for name in sorted(os.listdir(new)) if os.path.isdir(new) else []:
            with open(os.path.join(new, name), "rb") as f:
                data = f.read()
            if token in data:
                found.append(data)
        if found or time.monotonic() > end:
            break
        time.sleep(0.05)
    if len(found) != 1:
        raise Failed("message %s stored %d times" % (token.decode(), len(found)))
    return found[0]


def envelope(sender, recipients):
    pre = b"X-Envelope-From: <" + sender.encode() + b">" + CRLF
    for r in recipients:
        pre += b"X-Envelope-To: <" + r.encode() + b">" + CRLF
    return pre


def check(token, sender, recipients, content):
    got = stored(token)
    want = envelope(sender, recipients) + content
    if got != want:
        i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        raise Failed("stored %d octets, expected %d; first difference at %d: got %r, expected %r"
                     % (len(got), len(want), i, got[i:i + 40], want[i:i + 40]))


def message(token, body_lines, extra_headers=b""):
    head = (b"From: sender@example.org" + CRLF + b"To: rcpt@example.org" + CRLF
            + b"Subject: " + token.encode() + CRLF + b"Message-ID: <" + token.encode()
            + b"@example.org>" + CRLF + extra_headers)
    return head + CRLF + b"".join(line + CRLF for line in body_lines)


def stuff(content):
    """Dot-stuffing as a client does it (content is CRLF-terminated)."""
    lines = content.split(CRLF)
    return CRLF.join(b"." + l if l.startswith(b".") else l for l in lines)


def token():
    return "tap-" + uuid.uuid4().hex


def case_plain():
    t = token()
    content = message(t, [b"Hello from Linux.", b".a line starting with a dot", b".", b"..",
                          b" trailing blanks  ", b"", b"last line"])
    with smtp(30) as s:
        refused = s.sendmail("sender@example.org", ["rcpt@example.org"], content)
        if refused:
            raise Failed("recipients refused: %r" % refused)
    check(t, "sender@example.org", ["rcpt@example.org"], content)


class Raw:
    def __init__(self):
        self.sock = connect(lambda: socket.create_connection((HOST, PORT), timeout=30))
        self.buf = b""

    def reply(self):
        lines = []
        while True:
            while CRLF not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise Failed("connection closed; replies so far %r" % lines)
                self.buf += data
            line, self.buf = self.buf.split(CRLF, 1)
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), lines

    def expect(self, *codes):
        got = [self.reply()[0] for _ in codes]
        if got != list(codes):
            raise Failed("expected replies %r, got %r" % (list(codes), got))


def case_pipelined():
    t1, t2 = token(), token()
    c1 = message(t1, [b"first pipelined message", b".dotted"])
    c2 = message(t2, [b"second pipelined message", b"..double"])
    r = Raw()
    r.expect(220)
    r.sock.sendall(b"EHLO client.example" + CRLF)
    code, lines = r.reply()
    if code != 250 or not any(l[4:].upper().startswith(b"PIPELINING") for l in lines):
        raise Failed("EHLO does not offer PIPELINING: %r" % lines)
    # One write per group: envelope + DATA, then content + the whole next transaction.
    r.sock.sendall(b"MAIL FROM:<p1@example.org>\r\nRCPT TO:<a@example.org>\r\n"
                   b"RCPT TO:<b@example.org>\r\nDATA\r\n")
    r.expect(250, 250, 250, 354)
    r.sock.sendall(stuff(c1) + b".\r\nMAIL FROM:<p2@example.org>\r\n"
                   b"RCPT TO:<c@example.org>\r\nDATA\r\n")
    r.expect(250, 250, 250, 354)
    r.sock.sendall(stuff(c2) + b".\r\nQUIT\r\n")
    r.expect(250, 221)
    r.sock.close()
    check(t1, "p1@example.org", ["a@example.org", "b@example.org"], c1)
    check(t2, "p2@example.org", ["c@example.org"], c2)


def case_one_mib():
    t = token()
    rng = random.Random(4)
    head = message(t, [])
    lines, size = [], len(head)
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 .,-"
    target = 1024 * 1024
    while True:
        n = rng.randint(0, 120)
        line = bytes(rng.choice(alphabet) for _ in range(n))
        if rng.random() < 0.05:
            line = b"." + line  # dot-stuffed on the wire
        if size + len(line) + 2 > target:
            break
        lines.append(line)
        size += len(line) + 2
    pad = target - size - 2
    lines.append(b"x" * pad)
    content = head + b"".join(l + CRLF for l in lines)
    assert len(content) == target, len(content)
    with smtp(60) as s:
        s.ehlo()
        # smtplib declares SIZE= itself when the server offers SIZE.
        refused = s.sendmail("big@example.org", ["rcpt@example.org"], content)
        if refused:
            raise Failed("recipients refused: %r" % refused)
    check(t, "big@example.org", ["rcpt@example.org"], content)


def case_smtputf8():
    t = token()
    sender = "pélé@exämple.org"
    recipients = ["用户@例子.广告", "ζ@δοκιμή.example"]
    content = message(t, ["Grüße aus Linux — ünïcödé, 漢字.".encode(), b".dot", "ok ✓".encode()],
                      extra_headers="X-Name: Zoë".encode() + CRLF)
    with smtp(30) as s:
        s.ehlo()
        if not s.has_extn("smtputf8"):
            raise Failed("SMTPUTF8 not offered")
        refused = s.sendmail(sender, recipients, content, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        if refused:
            raise Failed("recipients refused: %r" % refused)
    check(t, sender, recipients, content)


def case_over_size_limit():
    """A declared SIZE above the advertised limit is refused; nothing is stored."""
    with smtp(30) as s:
        s.ehlo()
        limit = int(s.esmtp_features.get("size", "0") or 0)
        if not limit:
            raise Failed("no SIZE limit advertised")
        code, _ = s.mail("big@example.org", ["SIZE=%d" % (limit + 1)])
        if code != 552:
            raise Failed("MAIL SIZE=%d answered %d, expected 552" % (limit + 1, code))


def not_stored(token, seconds=1.0):
    time.sleep(seconds)
    new = os.path.join(MAILDIR, "new")
    for name in os.listdir(new) if os.path.isdir(new) else []:
        with open(os.path.join(new, name), "rb") as f:
            if token.encode() in f.read():
                raise Failed("refused message %s was stored as %s" % (token, name))


def case_undeclared_over_limit():
    """Content beyond the SIZE limit, not declared: 552 after the end of data, nothing stored."""
    t = token()
    content = message(t, [b"x" * 70] * 80)  # about 5.8 KiB
    r = Raw()
    r.expect(220)
    r.sock.sendall(b"EHLO client.example\r\n")
    r.expect(250)
    r.sock.sendall(b"MAIL FROM:<big@example.org>\r\nRCPT TO:<a@example.org>\r\nDATA\r\n")
    r.expect(250, 250, 354)
    r.sock.sendall(stuff(content) + b".\r\n")
    r.expect(552)
    r.sock.sendall(b"QUIT\r\n")
    r.expect(221)
    not_stored(t)


def case_recipient_limit():
    """The 9th recipient gets 452; the message goes to the 8 accepted ones."""
    t = token()
    recipients = ["r%d@example.org" % i for i in range(9)]
    content = message(t, [b"to many"])
    r = Raw()
    r.expect(220)
    r.sock.sendall(b"EHLO client.example\r\n")
    r.expect(250)
    r.sock.sendall(b"MAIL FROM:<many@example.org>\r\n"
                   + b"".join(b"RCPT TO:<%s>\r\n" % x.encode() for x in recipients)
                   + b"DATA\r\n")
    r.expect(250, *([250] * 8), 452, 354)
    r.sock.sendall(stuff(content) + b".\r\nQUIT\r\n")
    r.expect(250, 221)
    check(t, "many@example.org", recipients[:8], content)


def case_ring_wraps():
    """Thirty 3 KiB messages in one session: the 10.4 KiB ring wraps around many times."""
    rng = random.Random(7)
    with smtp(30) as s:
        for i in range(30):
            t = token()
            lines = [bytes(rng.choice(b"abcdef.0123 ") for _ in range(rng.randint(0, 90)))
                     for _ in range(60)]
            content = message(t, lines)[:3000]
            content = content[:content.rindex(CRLF) + 2]
            refused = s.sendmail("wrap%d@example.org" % i, ["rcpt@example.org"], content)
            if refused:
                raise Failed("recipients refused: %r" % refused)
            check(t, "wrap%d@example.org" % i, ["rcpt@example.org"], content)


def case_two_largest_at_once():
    """Two sessions, each with the longest envelope its 1 KiB arena holds (a 253-octet sender
    and three 253-octet recipients), both get 354 and store a message at the 4 KiB limit: the
    ring is sized for that."""
    def address(prefix):
        return prefix + "l" * (63 - len(prefix)) + "@" + ("d" * 61 + ".") * 3 + "org"
    sessions = []
    for n in range(2):
        t = token()
        sender = address("s%d" % n)
        recipients = [address("r%d%d" % (n, i)) for i in range(3)]
        r = Raw()
        r.expect(220)
        r.sock.sendall(b"EHLO c\r\nMAIL FROM:<%s>\r\n" % sender.encode()
                       + b"".join(b"RCPT TO:<%s>\r\n" % x.encode() for x in recipients)
                       + b"DATA\r\n")
        r.expect(250, 250, 250, 250, 250, 354)
        sessions.append((r, t, sender, recipients))
    for r, t, sender, recipients in sessions:
        lines = [b"x" * 78] * 60
        while len(message(t, lines)) > 4096:
            lines.pop()
        content = message(t, lines)
        r.sock.sendall(stuff(content) + b".\r\nQUIT\r\n")
        r.expect(250, 221)
        check(t, sender, recipients, content)


def case_every_session_in_data_at_once():
    """Four sessions (the host pool) in DATA at once, none declaring SIZE (each reserves the
    1.5 MiB limit): all get 354, and all four messages are stored."""
    sessions = []
    for n in range(4):
        t = token()
        r = Raw()
        r.expect(220)
        r.sock.sendall(b"EHLO c\r\nMAIL FROM:<s%d@example.org>\r\nRCPT TO:<r@example.org>\r\n"
                       b"DATA\r\n" % n)
        r.expect(250, 250, 250, 354)
        sessions.append((r, t, n))
    for r, t, n in sessions:
        content = message(t, [b"one of four at once"])
        r.sock.sendall(stuff(content) + b".\r\nQUIT\r\n")
        r.expect(250, 221)
        check(t, "s%d@example.org" % n, ["r@example.org"], content)


def case_uplink_retries():
    """The uplink cannot write (MAILDIR/tmp is a file): the acknowledged message stays in the
    ring and is stored once writing works again."""
    tmp = os.path.join(MAILDIR, "tmp")
    os.rmdir(tmp)  # empty: every stored message was renamed into new/
    with open(tmp, "w") as f:
        f.write("in the way")
    try:
        t = token()
        content = message(t, [b"kept until written"])
        with smtp(30) as s:
            s.sendmail("keep@example.org", ["rcpt@example.org"], content)
        not_stored(t, seconds=1.5)
    finally:
        os.remove(tmp)
    check(t, "keep@example.org", ["rcpt@example.org"], content)


CASES = {
    "host": [case_plain, case_pipelined, case_one_mib, case_smtputf8, case_over_size_limit,
             case_every_session_in_data_at_once],
    "device": [case_two_largest_at_once, case_plain, case_pipelined, case_smtputf8, case_over_size_limit,
               case_undeclared_over_limit, case_recipient_limit, case_ring_wraps,
               case_uplink_retries],
}[PROFILE]


def main():
    wait_for_server()
    failed = 0
    for case in CASES:
        name = case.__name__[len("case_"):]
        started = time.monotonic()
        try:
            case()
            print("ok %s (%.1fs)" % (name, time.monotonic() - started), flush=True)
        except (Failed, OSError, smtplib.SMTPException) as e:
            failed += 1
            print("FAILED %s: %s: %s" % (name, type(e).__name__, e), flush=True)
    print("client (%s profile): %d of %d cases ok" % (PROFILE, len(CASES) - failed, len(CASES)),
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
