//! Property tests of the wire codec: parsing never panics, and every packet kind
//! round-trips encode -> parse -> encode.

#![allow(clippy::unwrap_used)]

use memtftpd::proto::{
    BlockNumber, ErrorCode, MAX_DATAGRAM, Mode, Packet, Request, TransferOptions,
};
use proptest::prelude::*;

fn options() -> impl Strategy<Value = TransferOptions> {
    (
        proptest::option::of(8u16..=65464),
        proptest::option::of(1u8..=255),
        proptest::option::of(any::<u64>()),
        proptest::option::of(1u16..=65535),
    )
        .prop_map(|(blksize, timeout, tsize, windowsize)| TransferOptions {
            blksize,
            timeout,
            tsize,
            windowsize,
        })
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Octet), Just(Mode::Netascii)]
}

/// Owned inputs from which a borrowed `Packet` is built inside the test.
#[derive(Debug, Clone)]
enum Spec {
    Rrq(String, Mode, TransferOptions),
    Wrq(String, Mode, TransferOptions),
    Data(u16, Vec<u8>),
    Ack(u16),
    Error(u16, String),
    Oack(TransferOptions),
}

fn spec() -> impl Strategy<Value = Spec> {
    let name = "[^\u{0}]{0,64}";
    prop_oneof![
        (name, mode(), options()).prop_map(|(n, m, o)| Spec::Rrq(n, m, o)),
        (name, mode(), options()).prop_map(|(n, m, o)| Spec::Wrq(n, m, o)),
        (
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..1500)
        )
            .prop_map(|(b, d)| Spec::Data(b, d)),
        any::<u16>().prop_map(Spec::Ack),
        (0u16..=8, name).prop_map(|(c, m)| Spec::Error(c, m)),
        options().prop_map(Spec::Oack),
    ]
}

fn packet(spec: &Spec) -> Packet<'_> {
    match spec {
        Spec::Rrq(filename, mode, options) => Packet::Rrq(Request {
            filename,
            mode: *mode,
            options: *options,
        }),
        Spec::Wrq(filename, mode, options) => Packet::Wrq(Request {
            filename,
            mode: *mode,
            options: *options,
        }),
        Spec::Data(block, data) => Packet::Data {
            block: BlockNumber(*block),
            data,
        },
        Spec::Ack(block) => Packet::Ack {
            block: BlockNumber(*block),
        },
        Spec::Error(code, message) => Packet::Error {
            code: ErrorCode::from_u16(*code),
            message: message.as_str().into(),
        },
        Spec::Oack(options) => Packet::Oack { options: *options },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Packet::parse(&bytes);
    }

    #[test]
    fn parsing_bytes_with_a_valid_opcode_never_panics(
        opcode in 0u16..=7,
        body in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>(), Just(b'1')], 0..200),
    ) {
        let mut bytes = opcode.to_be_bytes().to_vec();
        bytes.extend_from_slice(&body);
        if let Ok(packet) = Packet::parse(&bytes) {
            // Whatever parsed can be encoded again.
            let mut buf = vec![0u8; packet.encoded_len()];
            prop_assert_eq!(packet.encode(&mut buf), Ok(buf.len()));
        }
    }

    #[test]
    fn every_packet_kind_round_trips(spec in spec()) {
        let original = packet(&spec);
        let mut first = vec![0u8; MAX_DATAGRAM + 1024];
        let len = original.encode(&mut first).expect("encodes");
        prop_assert_eq!(len, original.encoded_len());
        let parsed = Packet::parse(&first[..len]).expect("parses");
        prop_assert_eq!(&parsed, &original);
        let mut second = vec![0u8; len];
        prop_assert_eq!(parsed.encode(&mut second), Ok(len));
        prop_assert_eq!(&first[..len], &second[..]);
    }

    #[test]
    fn encoding_never_panics_into_a_short_buffer(spec in spec(), len in 0usize..64) {
        let mut buf = vec![0u8; len];
        let _ = packet(&spec).encode(&mut buf);
    }
}

mod handlers {
    //! The request handler and the transfer state machines, fed arbitrary datagrams.

    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use memtftpd::endpoint::{DatagramEvent, Endpoint, Settings};
    use memtftpd::proto::{MAX_DATAGRAM, Mode, Request, TransferOptions};
    use memtftpd::store::{Preseed, Store, UploadPolicy};
    use memtftpd::transfer::{Transfer, TransferConfig};
    use proptest::prelude::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    fn store() -> Arc<Store> {
        let mut preseed = Preseed::new(false);
        preseed.insert("a".parse().unwrap(), Bytes::from_static(b"hello"));
        let upload = UploadPolicy {
            enabled: true,
            max_file_size: 1 << 20,
            max_total_size: 1 << 20,
            overwrite: false,
            allow: Vec::new(),
        };
        Arc::new(Store::new(preseed, upload))
    }

    /// Datagrams that are often almost valid: a real opcode, NULs and digits.
    fn datagram() -> impl Strategy<Value = Vec<u8>> {
        (
            0u16..=7,
            proptest::collection::vec(
                prop_oneof![
                    Just(0u8),
                    Just(b'a'),
                    Just(b'1'),
                    Just(b'/'),
                    Just(b'.'),
                    any::<u8>()
                ],
                0..80,
            ),
        )
            .prop_map(|(op, body)| {
                let mut bytes = op.to_be_bytes().to_vec();
                bytes.extend(body);
                bytes
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn the_endpoint_never_panics_and_keeps_its_caps(
            datagrams in proptest::collection::vec((datagram(), 0u8..6, 0u16..4, any::<bool>()), 1..60),
            single_port in any::<bool>(),
        ) {
            let settings = Settings {
                transfer: TransferConfig::default(),
                max_transfers: 4,
                max_transfers_per_client: 2,
                max_unverified_per_client: 2,
                ipv6_client_prefix: 64,
                single_port,
                shutdown_grace: Duration::from_secs(1),
                policy: Default::default(),
                port_range: None,
            };
            let mut endpoint = Endpoint::new(store(), settings);
            let t0 = Instant::now();
            let mut handles = Vec::new();
            let mut buf = vec![0u8; MAX_DATAGRAM];
            for (n, (bytes, host, port, to_transfer)) in datagrams.iter().enumerate() {
                let now = t0 + Duration::from_millis(n as u64 * 700);
                let peer = SocketAddr::from(([127, 0, 0, 1 + host], 4000 + port));
                match handles.last() {
                    Some(&handle) if *to_transfer => endpoint.handle_transfer(now, handle, peer, bytes),
                    _ => {
                        if let Some(DatagramEvent::NewTransfer { handle, .. }) =
                            endpoint.handle(now, 0, None, peer, bytes)
                        {
                            handles.push(handle);
                        }
                    }
                }
                if endpoint.poll_timeout().is_some_and(|at| at <= now) {
                    endpoint.handle_timeout(now);
                }
                while endpoint.poll_transmit(&mut buf).is_some() {}
                while endpoint.poll_event().is_some() {}
                prop_assert!(endpoint.counters().active <= 4);
            }
        }

        #[test]
        fn transfers_never_panic_on_arbitrary_datagrams(
            datagrams in proptest::collection::vec(datagram(), 1..40),
            netascii in any::<bool>(),
            windowsize in prop_oneof![Just(None), Just(Some(4u16))],
        ) {
            let t0 = Instant::now();
            let mode = if netascii { Mode::Netascii } else { Mode::Octet };
            let request = Request {
                filename: "f",
                mode,
                options: TransferOptions { blksize: Some(8), windowsize, ..TransferOptions::default() },
            };
            let config = TransferConfig::default();
            let file = Bytes::from_static(b"some\nfile\r\ncontents");
            let wire_len = memtftpd::proto::netascii_len(&file);
            let mut read = Transfer::read(t0, peer(), &request, file, wire_len, &config);
            let mut write = Transfer::write(t0, peer(), &request, 64, &config);
            let mut buf = vec![0u8; MAX_DATAGRAM];
            for (n, bytes) in datagrams.iter().enumerate() {
                let now = t0 + Duration::from_millis(n as u64 * 300);
                read.handle_datagram(now, peer(), bytes);
                write.handle_datagram(now, peer(), bytes);
                read.handle_timeout(now);
                write.handle_timeout(now);
                while read.poll_transmit(&mut buf).is_some() {}
                while write.poll_transmit(&mut buf).is_some() {}
                while read.poll_event().is_some() {}
                while write.poll_event().is_some() {}
            }
        }
    }
}
