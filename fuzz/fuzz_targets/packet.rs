//! The packet parser on arbitrary datagrams: parsing never panics; every packet that
//! parses encodes into exactly `encoded_len` bytes (and fails cleanly into one byte
//! less), parses back to itself, and encodes again to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use memtftpd::proto::{EncodeError, Packet};

fuzz_target!(|data: &[u8]| {
    let packet = match Packet::parse(data) {
        Ok(packet) => packet,
        Err(error) => {
            // Every refusal can be told and answered.
            let _ = (error.to_string(), error.error_code());
            return;
        }
    };
    let len = packet.encoded_len();
    // A parsed packet never grows on the way out (options are dropped or shortened,
    // never lengthened): the server can always echo what it understood. An ERROR may
    // gain the final NUL it lacked, and a message that was not UTF-8 grows by the
    // replacement characters (three bytes for each byte it replaces).
    let bound = match &packet {
        Packet::Error { .. } => 4 + 3 * data.len().saturating_sub(4) + 1,
        _ => data.len(),
    };
    assert!(
        len <= bound,
        "{packet:?}: {len} bytes encoded from {} parsed",
        data.len()
    );

    let mut first = vec![0u8; len];
    match packet.encode(&mut first) {
        Ok(written) => assert_eq!(written, len, "{packet:?}"),
        Err(error) => panic!("{packet:?} does not encode into its encoded_len ({len}): {error}"),
    }
    if len > 0 {
        let mut short = vec![0u8; len - 1];
        assert_eq!(
            packet.encode(&mut short),
            Err(EncodeError::BufferTooSmall { needed: len }),
            "{packet:?} into {} bytes",
            len - 1
        );
    }

    let reparsed = Packet::parse(&first)
        .unwrap_or_else(|error| panic!("{packet:?} encoded as {first:?} does not parse: {error}"));
    assert_eq!(reparsed, packet, "encoded as {first:?}");
    let mut second = vec![0u8; reparsed.encoded_len()];
    assert_eq!(reparsed.encode(&mut second), Ok(len), "{reparsed:?}");
    assert_eq!(first, second, "{packet:?} encodes two ways");
});
