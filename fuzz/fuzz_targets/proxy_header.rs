//! `proxy_header::parse` on arbitrary connection openings.
//!
//! Checks, besides "no panic":
//! - a header's length lies within the input and within `MAX_HEADER`, and it is decided by
//!   its own octets: the header alone, or with anything after it, parses the same, and a
//!   shorter prefix of it asks for more;
//! - more input is asked for only below `MAX_HEADER` octets;
//! - a refusal stands: more input does not turn it into a header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd_core::proxy_header::{parse, MAX_HEADER};

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    let extended = [data, b"\r\nEHLO x\r\n"].concat();
    match parsed {
        Ok(Some((header, len))) => {
            assert!(len <= data.len() && len <= MAX_HEADER, "{len} of {data:?}");
            assert_eq!(parse(&data[..len]), parsed, "{data:?}");
            assert_eq!(parse(&extended), parsed, "{data:?}");
            for end in [0, len / 2, len - 1] {
                assert_eq!(parse(&data[..end]), Ok(None), "{:?} ({header:?})", &data[..end]);
            }
        }
        Ok(None) => assert!(data.len() < MAX_HEADER, "{} octets", data.len()),
        Err(error) => assert_eq!(parse(&extended), Err(error), "{data:?}"),
    }
});
