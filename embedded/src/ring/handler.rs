//! [`RingHandler`]: streams each message into a [`Ring`] and acknowledges it only once stored.
//!
//! What a stored record holds (the `--maildir` format of the shared conformance suite, so a
//! consumer can write each record to a file as it is):
//!
//! ```text
//! X-Envelope-From: <reverse-path>CRLF
//! X-Envelope-To: <forward-path>CRLF        one per accepted recipient, in order
//! message content, dot-unstuffed, exactly as received
//! ```
//!
//! Space policy, with `reserve` the room set aside for a message that declared no `SIZE=`:
//! - MAIL with `SIZE=` larger than the ring can ever hold: `552 5.3.4`.
//! - RCPT while the ring has less free space than the record DATA would reserve with this
//!   recipient (envelope + `SIZE=` or `reserve`, at most the whole ring): `452 4.3.1`, so the
//!   client keeps the message and retries later.
//! - DATA/BDAT: the record is reserved (envelope + `SIZE=` or `reserve`, at most the whole
//!   ring); no room now: `452 4.3.1`; the envelope and the declared size can never fit:
//!   `552 5.3.4`.
//! - Content beyond the reservation grows the record while it is the last one; when the
//!   ring cannot take more: `552 5.3.4` if the message is larger than the whole ring, else
//!   `452 4.3.1`. Either way the record is dropped.
//! - End of data: the record is committed, then the core answers `250`.
//!
//! With `reserve` equal to the core's `message_size` limit (and a ring at least that large),
//! every message that got its `354` is guaranteed room to the end. [`record_bound`] sizes a
//! ring for a number of such messages in progress at once.
//!
//! The consumer frees records oldest first (see [`Ring`]), so a message in progress holds
//! back every record reserved after it until it ends. A client that trickles its content
//! keeps its record for as long as the core's data timeout allows each block; on a device
//! with a small ring, one such client can make the store answer `452` to the others, just
//! as idle clients can occupy every listening slot.

use embassy_sync::blocking_mutex::raw::RawMutex;
use smtpd_core::{AbortReason, Context, Handler, MailParams, Reply, Verdict};

use super::store::{Record, Ring, HEADER};

const STORE_FULL: Reply<'static> = Reply::new(452, (4, 3, 1), "Insufficient system storage");
const TOO_BIG_FOR_STORE: Reply<'static> =
    Reply::new(552, (5, 3, 4), "Message too big for the store");
const LOCAL_ERROR: Reply<'static> =
    Reply::new(451, (4, 3, 0), "Requested action aborted: local error");

const FROM: &[u8] = b"X-Envelope-From: <";
const TO: &[u8] = b"X-Envelope-To: <";
const END: &[u8] = b">\r\n";

/// The most one [`RingHandler`] record takes (header included) when the message content is
/// at most `content` octets (the `reserve` and the core's size limit) and the envelope came
/// from a session arena of `arena` octets with at most `recipients` recipients: the
/// preamble adds field names and brackets to what the arena holds. A ring of `n` times this
/// has room for `n` such messages in progress at once.
pub const fn record_bound(arena: usize, recipients: usize, content: usize) -> usize {
    HEADER + FROM.len() + END.len() + recipients * (TO.len() + END.len()) + arena + content
}

/// Per-connection handler writing messages into a shared [`Ring`].
pub struct RingHandler<'r, M: RawMutex, const N: usize> {
    ring: &'r Ring<M, N>,
    reserve: usize,
    record: Option<Record>,
}

impl<'r, M: RawMutex, const N: usize> RingHandler<'r, M, N> {
    /// A handler storing into `ring`, setting `reserve` octets aside for each message that
    /// declared no size.
    pub fn new(ring: &'r Ring<M, N>, reserve: usize) -> Self {
        RingHandler {
            ring,
            reserve,
            record: None,
        }
    }

    /// Octets set aside for the content of the current transaction: the declared `SIZE=`,
    /// else `reserve`, at most what the ring can hold.
    fn content_reserve(&self, params: &MailParams) -> usize {
        let expected = params.size.map_or(self.reserve, |size| {
            usize::try_from(size).unwrap_or(usize::MAX)
        });
        expected.min(self.ring.max_message())
    }

    /// Octets (header excluded) DATA reserves for the current transaction whose envelope
    /// preamble takes `preamble` octets.
    fn reservation(&self, params: &MailParams, preamble: usize) -> usize {
        (preamble + self.content_reserve(params)).min(self.ring.max_message())
    }

    fn preamble_len(cx: &Context<'_>) -> usize {
        let from = FROM.len() + cx.mailfrom.unwrap_or_default().len() + END.len();
        cx.rcpttos
            .clone()
            .fold(from, |n, to| n + TO.len() + to.len() + END.len())
    }

    fn write_preamble(&self, record: &mut Record, cx: &Context<'_>) -> Result<(), ()> {
        let ring = self.ring;
        let mut put = |bytes: &[u8]| ring.write(record, bytes).map_err(|_| ());
        put(FROM)?;
        put(cx.mailfrom.unwrap_or_default().as_bytes())?;
        put(END)?;
        for to in cx.rcpttos.clone() {
            put(TO)?;
            put(to.as_bytes())?;
            put(END)?;
        }
        Ok(())
    }

    fn drop_record(&mut self) {
        if let Some(record) = self.record.take() {
            self.ring.abort(record);
        }
    }
}

impl<M: RawMutex, const N: usize> Handler for RingHandler<'_, M, N> {
    async fn mail(&mut self, _cx: &Context<'_>, _from: &str, params: &MailParams) -> Verdict<'_> {
        match params.size {
            Some(size) if size > self.ring.max_message() as u64 => {
                Verdict::Reply(TOO_BIG_FOR_STORE)
            }
            _ => Verdict::Accept,
        }
    }

    async fn rcpt(&mut self, cx: &Context<'_>, to: &str) -> Verdict<'_> {
        let preamble = Self::preamble_len(cx) + TO.len() + to.len() + END.len();
        let need = HEADER + self.reservation(&cx.mail_params, preamble);
        if need > self.ring.free() {
            debug!("store full: {} free, {} needed", self.ring.free(), need);
            return Verdict::Reply(STORE_FULL);
        }
        Verdict::Accept
    }

    async fn data_start(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        self.drop_record();
        let preamble = Self::preamble_len(cx);
        let content = self.content_reserve(&cx.mail_params);
        let at_least = match cx.mail_params.size {
            Some(_) => preamble + content,
            None => preamble,
        };
        if at_least > self.ring.max_message() {
            // The envelope (with the declared content) can never fit.
            return Verdict::Reply(TOO_BIG_FOR_STORE);
        }
        let Ok(mut record) = self.ring.open(self.reservation(&cx.mail_params, preamble)) else {
            return Verdict::Reply(STORE_FULL);
        };
        if self.write_preamble(&mut record, cx).is_err() {
            self.ring.abort(record);
            return Verdict::Reply(STORE_FULL);
        }
        self.record = Some(record);
        Verdict::Accept
    }

    async fn data_chunk(&mut self, _cx: &Context<'_>, chunk: &[u8]) -> Result<(), Reply<'static>> {
        let Some(record) = self.record.as_mut() else {
            return Err(LOCAL_ERROR);
        };
        if self.ring.write(record, chunk).is_ok() {
            return Ok(());
        }
        let too_big = record.len().saturating_add(chunk.len()) > self.ring.max_message();
        self.drop_record();
        Err(if too_big {
            TOO_BIG_FOR_STORE
        } else {
            STORE_FULL
        })
    }

    async fn data_end(&mut self, _cx: &Context<'_>) -> Verdict<'_> {
        match self.record.take() {
            Some(record) => {
                debug!("stored a message of {} octets", record.len());
                self.ring.commit(record);
                Verdict::Accept
            }
            None => Verdict::Reply(LOCAL_ERROR),
        }
    }

    async fn data_abort(&mut self, _cx: &Context<'_>, reason: AbortReason) {
        debug!("message dropped: {}", reason);
        self.drop_record();
    }
}

impl<M: RawMutex, const N: usize> Drop for RingHandler<'_, M, N> {
    /// A session dropped mid-message (its future cancelled) never leaves an open record.
    fn drop(&mut self) {
        self.drop_record();
    }
}

#[cfg(test)]
mod tests {
    use embassy_futures::block_on;
    use embassy_sync::blocking_mutex::raw::NoopRawMutex;
    use smtpd_core::{Config, Instant, Session};

    use super::*;

    type TestRing = Ring<NoopRawMutex, 512>;

    /// Feeds `input` to the session and returns the replies, one string per line.
    fn talk<H: Handler>(session: &mut Session<'_, H>, input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            pos += block_on(session.handle_input(&input[pos..], Instant::from_millis(0)));
            out.extend_from_slice(session.output());
            let n = session.output().len();
            session.consume_output(n);
            if pos == input.len() && session.output().is_empty() {
                break;
            }
        }
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn codes(lines: &[String]) -> Vec<&str> {
        lines.iter().map(|l| &l[..3]).collect()
    }

    fn stored(ring: &TestRing) -> Option<Vec<u8>> {
        ring.pop_with(|m| m.chunks().flatten().copied().collect())
    }

    const CONFIG: Config<'static> = Config::new("device.example");

    fn session(
        ring: &TestRing,
        reserve: usize,
    ) -> Session<'static, RingHandler<'_, NoopRawMutex, 512>> {
        let mut s = Session::new(&CONFIG, None, RingHandler::new(ring, reserve));
        block_on(s.handle_input(&[], Instant::from_millis(0)));
        let n = s.output().len();
        s.consume_output(n);
        s
    }

    #[test]
    fn stores_the_envelope_and_the_unstuffed_content() {
        let ring = TestRing::new();
        let mut s = session(&ring, 100);
        let replies = talk(
            &mut s,
            b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n\
              Subject: x\r\n\r\n..dot\r\nbody\r\n.\r\n",
        );
        assert_eq!(codes(&replies), ["250", "250", "250", "250", "354", "250"]);
        assert_eq!(
            stored(&ring).unwrap(),
            b"X-Envelope-From: <a@b>\r\nX-Envelope-To: <c@d>\r\nX-Envelope-To: <e@f>\r\n\
              Subject: x\r\n\r\n.dot\r\nbody\r\n"
        );
        assert_eq!(ring.free(), 512);
    }

    #[test]
    fn full_store_refuses_at_rcpt_and_data_with_452() {
        let ring = TestRing::new();
        let other = ring.open(400).unwrap(); // another session's message in progress
        let mut s = session(&ring, 100);
        let replies = talk(&mut s, b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
        assert!(
            replies.last().unwrap().starts_with("452 4.3.1"),
            "{replies:?}"
        );
        // Room at RCPT time, gone by DATA.
        ring.abort(other);
        let replies = talk(&mut s, b"RCPT TO:<c@d>\r\n");
        assert_eq!(codes(&replies), ["250"]);
        let other = ring.open(450).unwrap();
        let replies = talk(&mut s, b"DATA\r\n");
        assert!(replies[0].starts_with("452 4.3.1"), "{replies:?}");
        ring.abort(other);
        assert_eq!(ring.free(), 512);
    }

    #[test]
    fn rcpt_counts_the_envelope_so_that_data_finds_the_room_rcpt_promised() {
        let ring = TestRing::new();
        // Room for the content reserve but not for it with the envelope lines.
        let other = ring.open(376).unwrap();
        assert_eq!(ring.free(), 128);
        let mut s = session(&ring, 100);
        let replies = talk(&mut s, b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
        assert!(
            replies.last().unwrap().starts_with("452 4.3.1"),
            "{replies:?}"
        );
        ring.abort(other);
        let replies = talk(&mut s, b"RCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
        assert_eq!(codes(&replies), ["250", "354", "250"]);
    }

    #[test]
    fn message_larger_than_the_store_gets_552_and_is_dropped() {
        let ring = TestRing::new();
        let mut s = session(&ring, 10);
        let mut input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n".to_vec();
        for _ in 0..20 {
            input.extend_from_slice(&[b'x'; 48]);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b".\r\nMAIL FROM:<a@b> SIZE=600\r\n");
        let replies = talk(&mut s, &input);
        assert!(
            replies[replies.len() - 2].starts_with("552 5.3.4"),
            "{replies:?}"
        );
        assert!(
            replies[replies.len() - 1].starts_with("552 5.3.4"),
            "{replies:?}"
        );
        assert_eq!(stored(&ring), None);
        assert_eq!(ring.free(), 512);
    }

    #[test]
    fn message_that_no_longer_fits_gets_452_and_is_dropped() {
        let ring = TestRing::new();
        let mut s = session(&ring, 10);
        let head = talk(
            &mut s,
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
        );
        assert_eq!(head.last().unwrap(), "354 End data with <CR><LF>.<CR><LF>");
        let other = ring.open(300).unwrap(); // reserved after ours: ours cannot grow past it
        let mut body = vec![b'y'; 100];
        body.extend_from_slice(b"\r\n.\r\n");
        let replies = talk(&mut s, &body);
        assert!(replies[0].starts_with("452 4.3.1"), "{replies:?}");
        ring.abort(other);
        assert_eq!(ring.free(), 512);
    }

    #[test]
    fn reserve_larger_than_the_ring_still_accepts_what_fits() {
        let ring = TestRing::new();
        let mut s = session(&ring, 1 << 20);
        let replies = talk(
            &mut s,
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nsmall\r\n.\r\n",
        );
        assert_eq!(
            codes(&replies[replies.len() - 4..]),
            ["250", "250", "354", "250"]
        );
        assert!(stored(&ring).unwrap().ends_with(b"\r\nsmall\r\n"));
        // A declared size that fits the ring but not together with the envelope: 552.
        let replies = talk(
            &mut s,
            b"MAIL FROM:<a@b> SIZE=500\r\nRCPT TO:<c@d>\r\nDATA\r\n",
        );
        assert_eq!(codes(&replies[..2]), ["250", "250"]);
        assert!(replies[2].starts_with("552 5.3.4"), "{replies:?}");
        assert_eq!(ring.free(), 512);
    }

    #[test]
    fn disconnect_mid_message_stores_nothing() {
        let ring = TestRing::new();
        let mut s = session(&ring, 10);
        talk(
            &mut s,
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial\r\n",
        );
        block_on(s.handle_disconnect());
        assert_eq!(stored(&ring), None);
        assert_eq!(ring.free(), 512);
        // Dropping a session mid-message releases its record too.
        let mut s = session(&ring, 10);
        talk(
            &mut s,
            b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial\r\n",
        );
        drop(s);
        assert_eq!(ring.free(), 512);
    }
}
