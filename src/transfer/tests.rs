//! Unit tests of the transfer state machines against a scripted peer: literal packets
//! in, literal packets out, virtual time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::proto::{BlockNumber, ErrorCode, MAX_DATAGRAM, Mode, Packet, Request, TransferOptions};

const T: Duration = Duration::from_secs(2);

fn client() -> SocketAddr {
    "127.0.0.1:40000".parse().expect("literal")
}

fn stranger() -> SocketAddr {
    "127.0.0.1:40001".parse().expect("literal")
}

fn config() -> TransferConfig {
    TransferConfig {
        timeout: T,
        retries: 3,
        max_blksize: 1468,
        max_windowsize: 16,
        max_timeout: 10,
        max_upload_size: 1000,
    }
}

fn request(mode: Mode, options: TransferOptions) -> Request<'static> {
    Request {
        filename: "f",
        mode,
        options,
    }
}

fn encode(packet: &Packet<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; packet.encoded_len()];
    packet.encode(&mut buf).expect("encodes");
    buf
}

/// ERROR 8 from the client: it declines the options.
fn decline(message: &str) -> Vec<u8> {
    encode(&Packet::Error {
        code: ErrorCode::OptionNegotiation,
        message: message.into(),
    })
}

fn ack(block: u16) -> Vec<u8> {
    encode(&Packet::Ack {
        block: BlockNumber(block),
    })
}

fn data(block: u16, bytes: &[u8]) -> Vec<u8> {
    encode(&Packet::Data {
        block: BlockNumber(block),
        data: bytes,
    })
}

/// Everything a machine wants to send now, as (destination, bytes).
macro_rules! drain {
    ($m:expr) => {{
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut out = Vec::new();
        while let Some(t) = $m.poll_transmit(&mut buf) {
            out.push((t.destination, buf[..t.len].to_vec()));
        }
        out
    }};
}

fn parsed(datagrams: &[(SocketAddr, Vec<u8>)]) -> Vec<Packet<'_>> {
    datagrams
        .iter()
        .map(|(_, bytes)| Packet::parse(bytes).expect("valid packet"))
        .collect()
}

fn data_blocks(datagrams: &[(SocketAddr, Vec<u8>)]) -> Vec<u16> {
    parsed(datagrams)
        .iter()
        .filter_map(|p| match p {
            Packet::Data { block, .. } => Some(block.0),
            _ => None,
        })
        .collect()
}

/// The block numbers of `datagrams`, which must all be ACKs.
fn acks(datagrams: &[(SocketAddr, Vec<u8>)]) -> Vec<u16> {
    parsed(datagrams)
        .iter()
        .map(|p| match p {
            Packet::Ack { block } => block.0,
            other => panic!("expected only ACKs, got {other:?}"),
        })
        .collect()
}

fn finished(events: impl FnMut() -> Option<Event>) -> Option<TransferReport> {
    std::iter::from_fn(events).find_map(|e| match e {
        Event::Finished(report) => Some(report),
        Event::Received(_) => None,
    })
}

fn read(now: Instant, file: &[u8], mode: Mode, options: TransferOptions) -> Transfer {
    let wire_len = match mode {
        Mode::Netascii => crate::proto::netascii_len(file),
        Mode::Octet => file.len() as u64,
    };
    Transfer::read(
        now,
        client(),
        &request(mode, options),
        Bytes::copy_from_slice(file),
        wire_len,
        &config(),
    )
}

#[test]
fn a_read_without_options_sends_data_1_at_once_and_completes_on_the_last_ack() {
    let t0 = Instant::now();
    let mut transfer = read(t0, &[1; 600], Mode::Octet, TransferOptions::default());
    let out = drain!(transfer);
    assert_eq!(
        parsed(&out),
        [Packet::Data {
            block: BlockNumber(1),
            data: &[1; 512]
        }]
    );
    assert_eq!(out[0].0, client());
    transfer.handle_datagram(t0, client(), &ack(1));
    assert_eq!(data_blocks(&drain!(transfer)), [2]);
    transfer.handle_datagram(t0, client(), &ack(2));
    assert!(transfer.is_finished());
    let report = finished(|| transfer.poll_event()).expect("report");
    assert_eq!(report.outcome, Outcome::Completed);
    assert_eq!(
        (report.bytes, report.blocks, report.retransmits),
        (600, 2, 0)
    );
}

#[test]
fn a_file_of_exact_blocks_ends_with_an_empty_block() {
    let t0 = Instant::now();
    let mut transfer = read(t0, &[1; 1024], Mode::Octet, TransferOptions::default());
    for block in 1..=2 {
        assert_eq!(data_blocks(&drain!(transfer)), [block]);
        transfer.handle_datagram(t0, client(), &ack(block));
    }
    assert_eq!(
        parsed(&drain!(transfer)),
        [Packet::Data {
            block: BlockNumber(3),
            data: &[]
        }]
    );
}

#[test]
fn a_read_with_options_sends_an_oack_and_waits_for_ack_0() {
    let t0 = Instant::now();
    let options = TransferOptions {
        blksize: Some(9000),
        timeout: Some(7),
        tsize: Some(0),
        windowsize: Some(100),
    };
    let mut transfer = read(t0, b"a\nb\n", Mode::Netascii, options);
    let out = drain!(transfer);
    // blksize and windowsize lowered to the caps; tsize is the netascii size.
    let granted = TransferOptions {
        blksize: Some(1468),
        timeout: Some(7),
        tsize: Some(6),
        windowsize: Some(16),
    };
    assert_eq!(parsed(&out), [Packet::Oack { options: granted }]);
    // Until the client answers, the OACK is resent at the configured timeout, not the
    // one it asked for.
    assert_eq!(transfer.poll_timeout(), Some(t0 + T));
    // Nothing but ACK 0 opens the data.
    transfer.handle_datagram(t0, client(), &ack(1));
    assert!(drain!(transfer).is_empty());
    assert!(!transfer.is_verified());
    transfer.handle_datagram(t0, client(), &ack(0));
    assert!(transfer.is_verified());
    assert_eq!(transfer.poll_timeout(), Some(t0 + Duration::from_secs(7)));
    assert_eq!(
        parsed(&drain!(transfer)),
        [Packet::Data {
            block: BlockNumber(1),
            data: b"a\r\nb\r\n"
        }]
    );
}

#[test]
fn error_8_after_an_oack_ends_the_transfer_quietly() {
    let t0 = Instant::now();
    let options = TransferOptions {
        blksize: Some(1024),
        ..TransferOptions::default()
    };
    let mut transfer = read(t0, &[0; 10], Mode::Octet, options);
    drain!(transfer);
    transfer.handle_datagram(t0, client(), &decline("no"));
    assert!(
        drain!(transfer).is_empty(),
        "nothing is sent after the client's ERROR"
    );
    let report = finished(|| transfer.poll_event()).expect("report");
    assert_eq!(
        report.outcome,
        Outcome::PeerError {
            code: ErrorCode::OptionNegotiation,
            message: "no".into()
        }
    );
}

#[test]
fn error_8_after_an_oack_with_tsize_and_before_data_is_a_size_probe() {
    let t0 = Instant::now();
    let options = TransferOptions {
        blksize: Some(1468),
        tsize: Some(0),
        windowsize: Some(4),
        ..TransferOptions::default()
    };
    let mut transfer = read(t0, &[0; 3000], Mode::Octet, options);
    drain!(transfer);
    transfer.handle_datagram(t0, client(), &decline("User aborted the transfer"));
    assert!(drain!(transfer).is_empty());
    let report = finished(|| transfer.poll_event()).expect("report");
    assert_eq!(report.outcome, Outcome::Probe);
    assert_eq!(report.outcome.as_str(), "probe");
}

#[test]
fn error_8_after_data_flowed_is_a_peer_error_even_with_tsize() {
    let t0 = Instant::now();
    let options = TransferOptions {
        tsize: Some(0),
        ..TransferOptions::default()
    };
    let mut transfer = read(t0, &[0; 3000], Mode::Octet, options);
    drain!(transfer);
    transfer.handle_datagram(t0, client(), &ack(0));
    drain!(transfer);
    transfer.handle_datagram(t0, client(), &ack(1));
    drain!(transfer);
    transfer.handle_datagram(t0, client(), &decline("late"));
    let report = finished(|| transfer.poll_event()).expect("report");
    assert_eq!(report.outcome.as_str(), "peer-error");
}

#[test]
fn a_timeout_above_max_timeout_is_left_out_of_the_oack() {
    let t0 = Instant::now();
    for (asked, granted) in [(10, Some(10)), (11, None), (255, None)] {
        let options = TransferOptions {
            timeout: Some(asked),
            tsize: Some(0),
            ..TransferOptions::default()
        };
        let mut transfer = read(t0, b"abc", Mode::Octet, options);
        let expected = TransferOptions {
            timeout: granted,
            tsize: Some(3),
            ..TransferOptions::default()
        };
        assert_eq!(
            parsed(&drain!(transfer)),
            [Packet::Oack { options: expected }],
            "asked {asked}"
        );
        transfer.handle_datagram(t0, client(), &ack(0));
        // Without the option, the adaptive timer: an instant round trip puts it at its
        // floor.
        let expected_timeout = granted.map_or(MIN_RTO, |t| Duration::from_secs(u64::from(t)));
        assert_eq!(transfer.poll_timeout(), Some(t0 + expected_timeout));
    }
}

#[test]
fn a_peer_that_never_answers_gets_one_retransmission_then_silence_at_the_configured_timeout() {
    let t0 = Instant::now();
    let options = TransferOptions {
        timeout: Some(10),
        tsize: Some(0),
        ..TransferOptions::default()
    };
    for options in [TransferOptions::default(), options] {
        let mut transfer = read(t0, &[0; 10], Mode::Octet, options);
        let first = drain!(transfer);
        assert_eq!(first.len(), 1);
        let due = transfer.poll_timeout().expect("a timer");
        assert_eq!(due, t0 + T, "the configured timeout, not the client's");
        // Early calls change nothing.
        transfer.handle_timeout(due - Duration::from_millis(1));
        assert!(drain!(transfer).is_empty());
        transfer.handle_timeout(due);
        assert_eq!(drain!(transfer), first, "the same packet once more");
        // Then silence for the rest of the configured patience.
        for n in 2..=4 {
            let due = transfer.poll_timeout().expect("a timer");
            assert_eq!(due, t0 + n * T);
            transfer.handle_timeout(due);
            assert!(drain!(transfer).is_empty(), "nothing more at {n} T");
        }
        assert_eq!(transfer.poll_timeout(), None);
        let report = finished(|| transfer.poll_event()).expect("report");
        assert_eq!(report.outcome, Outcome::Unanswered);
        assert_eq!((report.retransmits, report.longest_retry_streak), (1, 3));
        assert_eq!(report.duration, T * 4);
    }
}

/// Runs a verified read of 2,000 bytes (`options`) whose client answers the handshake (or
/// DATA 1) after `rtt` and then falls silent: the instants of the DATA 2 retransmissions,
/// counted from the last answer, and the report.
fn silent_after_one_answer(
    options: TransferOptions,
    rtt: Duration,
) -> (Vec<Duration>, TransferReport) {
    let t0 = Instant::now();
    let mut transfer = read(t0, &[0; 2000], Mode::Octet, options);
    drain!(transfer);
    let t1 = t0 + rtt;
    if options.is_empty() {
        transfer.handle_datagram(t1, client(), &ack(1));
    } else {
        transfer.handle_datagram(t1, client(), &ack(0));
        assert_eq!(data_blocks(&drain!(transfer)), [1]);
        transfer.handle_datagram(t1, client(), &ack(1));
    }
    assert!(transfer.is_verified());
    assert_eq!(data_blocks(&drain!(transfer)), [2]);
    let mut resent = Vec::new();
    for _ in 0..100 {
        let Some(due) = transfer.poll_timeout() else {
            break;
        };
        transfer.handle_timeout(due);
        let out = drain!(transfer);
        if !out.is_empty() {
            assert_eq!(data_blocks(&out), [2]);
            resent.push(due - t1);
        }
    }
    let report = finished(|| transfer.poll_event()).expect("report");
    assert_eq!(report.outcome, Outcome::TimedOut);
    assert_eq!(
        report.duration,
        rtt + T * 4,
        "given up after timeout x (retries + 1)"
    );
    (resent, report)
}

#[test]
fn a_verified_peer_that_falls_silent_is_given_up_after_the_same_silence_at_either_pace() {
    let ms = Duration::from_millis;
    // Adaptive: from the floor (a 10 ms round trip), doubling up to the configured 2 s.
    assert_eq!(MIN_RTO, ms(150));
    let (resent, report) = silent_after_one_answer(TransferOptions::default(), ms(10));
    let expected: Vec<Duration> = [150, 450, 1050, 2250, 4250, 6250].map(ms).to_vec();
    assert_eq!(resent, expected);
    assert_eq!((report.retransmits, report.timeouts), (6, 6));
    // A negotiated timeout of 2 s: exactly that, the configured 3 retries, the same end.
    let negotiated = TransferOptions {
        timeout: Some(2),
        ..TransferOptions::default()
    };
    let (resent, report) = silent_after_one_answer(negotiated, ms(10));
    assert_eq!(resent, [T, 2 * T, 3 * T]);
    assert_eq!((report.retransmits, report.longest_retry_streak), (3, 3));
}

#[test]
fn a_retransmitted_block_is_not_measured_and_its_back_off_lasts_until_a_fresh_block_is() {
    let ms = Duration::from_millis;
    let t0 = Instant::now();
    let mut transfer = read(t0, &[0; 2000], Mode::Octet, TransferOptions::default());
    drain!(transfer);
    // DATA 1 answered after 10 ms: verified, at the floor.
    let t1 = t0 + ms(10);
    transfer.handle_datagram(t1, client(), &ack(1));
    assert_eq!(data_blocks(&drain!(transfer)), [2]);
    assert_eq!(transfer.poll_timeout(), Some(t1 + MIN_RTO));
    transfer.handle_timeout(t1 + MIN_RTO);
    assert_eq!(data_blocks(&drain!(transfer)), [2]);
    // ACK 2 comes late: for the first DATA 2 or the second? Not measured (Karn), and the
    // doubled timeout stays for DATA 3.
    let t2 = t1 + ms(300);
    transfer.handle_datagram(t2, client(), &ack(2));
    assert_eq!(data_blocks(&drain!(transfer)), [3]);
    assert_eq!(transfer.poll_timeout(), Some(t2 + 2 * MIN_RTO));
    // DATA 3, sent once, measured: back to the floor.
    let t3 = t2 + ms(10);
    transfer.handle_datagram(t3, client(), &ack(3));
    assert_eq!(data_blocks(&drain!(transfer)), [4]);
    assert_eq!(transfer.poll_timeout(), Some(t3 + MIN_RTO));
}

#[test]
fn a_window_is_timed_from_its_first_block_to_the_ack_that_covers_it() {
    let ms = Duration::from_millis;
    let t0 = Instant::now();
    let options = TransferOptions {
        windowsize: Some(4),
        ..TransferOptions::default()
    };
    let mut transfer = read(t0, &[0; 512 * 20], Mode::Octet, options);
    drain!(transfer);
    transfer.handle_datagram(t0 + ms(10), client(), &ack(0));
    assert_eq!(data_blocks(&drain!(transfer)), [1, 2, 3, 4]);
    // A window that takes 200 ms to be acknowledged: the timer covers the window.
    let t1 = t0 + ms(210);
    transfer.handle_datagram(t1, client(), &ack(4));
    assert_eq!(data_blocks(&drain!(transfer)), [5, 6, 7, 8]);
    let rto = transfer.poll_timeout().expect("a timer") - t1;
    assert!(rto > ms(200) && rto < T, "{rto:?}");
    // Duplicates of that ACK neither resend nor move the timer.
    for _ in 0..3 {
        transfer.handle_datagram(t1 + ms(1), client(), &ack(4));
        assert!(drain!(transfer).is_empty());
    }
    assert_eq!(transfer.poll_timeout(), Some(t1 + rto));
}

#[test]
fn a_receiver_measures_from_its_ack_to_the_next_block_and_not_after_resending_it() {
    let ms = Duration::from_millis;
    let t0 = Instant::now();
    let options = TransferOptions {
        blksize: Some(100),
        ..TransferOptions::default()
    };
    let mut transfer = write(t0, options, Mode::Octet);
    assert_eq!(parsed(&drain!(transfer)), [Packet::Oack { options }]);
    let t1 = t0 + ms(10);
    transfer.handle_datagram(t1, client(), &data(1, &[1; 100]));
    assert_eq!(acks(&drain!(transfer)), [1]);
    assert_eq!(transfer.poll_timeout(), Some(t1 + MIN_RTO));
    transfer.handle_timeout(t1 + MIN_RTO);
    assert_eq!(acks(&drain!(transfer)), [1], "the ACK once more");
    // DATA 2 after the resent ACK: not measured, the doubled timeout stays.
    let t2 = t1 + ms(400);
    transfer.handle_datagram(t2, client(), &data(2, &[2; 100]));
    assert_eq!(acks(&drain!(transfer)), [2]);
    assert_eq!(transfer.poll_timeout(), Some(t2 + 2 * MIN_RTO));
    // DATA 3 answers an ACK sent once: measured, back to the floor.
    let t3 = t2 + ms(10);
    transfer.handle_datagram(t3, client(), &data(3, &[3; 100]));
    assert_eq!(acks(&drain!(transfer)), [3]);
    assert_eq!(transfer.poll_timeout(), Some(t3 + MIN_RTO));
    transfer.handle_datagram(t3, client(), &data(4, &[4; 10]));
    assert!(
        drain!(transfer).is_empty(),
        "the final ACK waits for the store"
    );
    assert!(matches!(transfer.poll_event(), Some(Event::Received(_))));
    transfer.commit_result(t3, Ok(()));
    assert_eq!(acks(&drain!(transfer)), [4]);
    // Complete: it lingers two configured timeouts, whatever the adaptive one is.
    assert_eq!(transfer.poll_timeout(), Some(t3 + 2 * T));
}

#[test]
fn a_client_measures_its_request_and_keeps_exactly_a_timeout_the_server_granted() {
    let ms = Duration::from_millis;
    let server: SocketAddr = "127.0.0.1:69".parse().expect("literal");
    let tid: SocketAddr = "127.0.0.1:50000".parse().expect("literal");
    let t0 = Instant::now();
    for (asked, expected) in [(None, MIN_RTO), (Some(3), Duration::from_secs(3))] {
        let config = ClientConfig {
            options: TransferOptions {
                timeout: asked,
                ..TransferOptions::default()
            },
            timeout: T,
            ..ClientConfig::default()
        };
        let mut download = Transfer::download(t0, server, "f", Mode::Octet, config);
        drain!(download);
        assert_eq!(
            download.poll_timeout(),
            Some(t0 + T),
            "the first timeout is the configured one"
        );
        let t1 = t0 + ms(10);
        if let Some(timeout) = asked {
            let granted = TransferOptions {
                timeout: Some(timeout),
                ..TransferOptions::default()
            };
            download.handle_datagram(t1, tid, &encode(&Packet::Oack { options: granted }));
            assert_eq!(acks(&drain!(download)), [0]);
            assert_eq!(download.poll_timeout(), Some(t1 + expected), "{asked:?}");
            download.handle_datagram(t1 + ms(10), tid, &data(1, &[1; 512]));
        } else {
            download.handle_datagram(t1, tid, &data(1, &[1; 512]));
        }
        let t2 = if asked.is_some() { t1 + ms(10) } else { t1 };
        assert_eq!(acks(&drain!(download)), [1]);
        assert_eq!(download.poll_timeout(), Some(t2 + expected), "{asked:?}");
    }
}

#[test]
fn an_unverified_read_sends_one_block_and_a_silent_window_shrinks_to_single_blocks() {
    let t0 = Instant::now();
    let options = TransferOptions {
        windowsize: Some(4),
        ..TransferOptions::default()
    };
    // In single-port mode ACK 0 may be forged with the request: the peer is not
    // verified by it, and gets one block, then one retransmission.
    let mut transfer = read(t0, &[0; 512 * 20], Mode::Octet, options);
    transfer.distrust_handshake();
    drain!(transfer);
    transfer.handle_datagram(t0, client(), &ack(0));
    assert!(!transfer.is_verified());
    assert_eq!(data_blocks(&drain!(transfer)), [1]);
    transfer.handle_timeout(t0 + T);
    assert_eq!(data_blocks(&drain!(transfer)), [1]);
    transfer.handle_timeout(t0 + 2 * T);
    assert!(drain!(transfer).is_empty(), "one retransmission only");
    // The client answers late: whole windows from now on.
    transfer.handle_datagram(t0 + 2 * T, client(), &ack(1));
    assert!(transfer.is_verified());
    assert_eq!(data_blocks(&drain!(transfer)), [2, 3, 4, 5]);
    // Silence: the window is resent whole twice, then single blocks.
    transfer.handle_timeout(t0 + 3 * T);
    assert_eq!(data_blocks(&drain!(transfer)), [2, 3, 4, 5]);
    transfer.handle_timeout(t0 + 4 * T);
    assert_eq!(data_blocks(&drain!(transfer)), [2, 3, 4, 5]);
    transfer.handle_timeout(t0 + 5 * T);
    assert_eq!(data_blocks(&drain!(transfer)), [2]);
    // An answer reopens the window.
    transfer.handle_datagram(t0 + 5 * T, client(), &ack(2));
    assert_eq!(data_blocks(&drain!(transfer)), [3, 4, 5, 6]);
}

#[test]
fn duplicate_and_stale_acks_never_cause_a_resend() {
    let t0 = Instant::now();
    let mut transfer = read(t0, &[0; 2000], Mode::Octet, TransferOptions::default());
    drain!(transfer);
    transfer.handle_datagram(t0, client(), &ack(1));
    assert_eq!(data_blocks(&drain!(transfer)), [2]);
    for stale in [1, 1, 0, 60000] {
        transfer.handle_datagram(t0, client(), &ack(stale));
        assert!(drain!(transfer).is_empty(), "ACK {stale} caused a send");
    }
}

#[test]
fn a_window_is_sent_whole_and_an_early_ack_resends_from_the_block_after_it() {
    let t0 = Instant::now();
    let options = TransferOptions {
        windowsize: Some(4),
        ..TransferOptions::default()
    };
    let mut transfer = read(t0, &[0; 512 * 10], Mode::Octet, options);
    drain!(transfer);
    transfer.handle_datagram(t0, client(), &ack(0));
    assert_eq!(data_blocks(&drain!(transfer)), [1, 2, 3, 4]);
    // The client saw 1 and 2, then a gap.
    transfer.handle_datagram(t0, client(), &ack(2));
    assert_eq!(data_blocks(&drain!(transfer)), [3, 4, 5, 6]);
    transfer.handle_datagram(t0, client(), &ack(6));
    assert_eq!(data_blocks(&drain!(transfer)), [7, 8, 9, 10]);
    // A timeout resends from the first unacknowledged block.
    transfer.handle_timeout(t0 + T);
    assert_eq!(data_blocks(&drain!(transfer)), [7, 8, 9, 10]);
    transfer.handle_datagram(t0 + T, client(), &ack(10));
    assert_eq!(data_blocks(&drain!(transfer)), [11]);
    transfer.handle_datagram(t0 + T, client(), &ack(11));
    let report = finished(|| transfer.poll_event()).expect("report");
    assert_eq!(report.outcome, Outcome::Completed);
    assert_eq!(report.retransmits, 6);
}

#[test]
fn a_stranger_gets_error_5_and_the_transfer_goes_on() {
    let t0 = Instant::now();
    let mut transfer = read(t0, &[0; 600], Mode::Octet, TransferOptions::default());
    drain!(transfer);
    transfer.handle_datagram(t0, stranger(), &ack(1));
    let out = drain!(transfer);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, stranger());
    assert!(matches!(
        Packet::parse(&out[0].1),
        Ok(Packet::Error {
            code: ErrorCode::UnknownTransferId,
            ..
        })
    ));
    // The stranger's ACK did not move the transfer; the client's does.
    transfer.handle_datagram(t0, client(), &ack(1));
    assert_eq!(data_blocks(&drain!(transfer)), [2]);
    // The client's port on another address is a stranger too.
    let other_ip: SocketAddr = "127.0.0.2:40000".parse().expect("literal");
    transfer.handle_datagram(t0, other_ip, &ack(2));
    assert_eq!(drain!(transfer)[0].0, other_ip);
    assert!(!transfer.is_finished());
}

#[test]
fn garbage_from_the_peer_is_dropped_without_disturbing_the_transfer() {
    let t0 = Instant::now();
    let mut transfer = read(t0, &[0; 600], Mode::Octet, TransferOptions::default());
    drain!(transfer);
    for garbage in [
        &b""[..],
        b"\x00",
        b"\x00\x09zz",
        b"\x00\x01f\x00octet\x00",
        b"\x00\x03\x00\x01x",
    ] {
        transfer.handle_datagram(t0, client(), garbage);
        assert!(drain!(transfer).is_empty());
    }
    transfer.handle_datagram(t0, client(), &ack(1));
    assert_eq!(data_blocks(&drain!(transfer)), [2]);
}

fn write(now: Instant, options: TransferOptions, mode: Mode) -> Transfer {
    Transfer::write(now, client(), &request(mode, options), u64::MAX, &config())
}

#[test]
fn a_write_without_options_acks_0_then_each_block() {
    let t0 = Instant::now();
    let mut transfer = write(t0, TransferOptions::default(), Mode::Octet);
    assert_eq!(acks(&drain!(transfer)), [0]);
    transfer.handle_datagram(t0, client(), &data(1, &[5; 512]));
    assert_eq!(acks(&drain!(transfer)), [1]);
    transfer.handle_datagram(t0, client(), &data(2, &[6; 10]));
    assert!(
        drain!(transfer).is_empty(),
        "the final ACK waits for the store"
    );
    let mut expected = vec![5; 512];
    expected.extend_from_slice(&[6; 10]);
    assert_eq!(transfer.poll_event(), Some(Event::Received(expected)));
    assert!(transfer.is_committing());
    transfer.commit_result(t0, Ok(()));
    assert_eq!(acks(&drain!(transfer)), [2]);
    assert!(!transfer.is_finished(), "lingers after the last block");
}

#[test]
fn a_write_the_store_refuses_gets_the_error_instead_of_the_final_ack() {
    let t0 = Instant::now();
    let mut transfer = write(t0, TransferOptions::default(), Mode::Octet);
    assert_eq!(acks(&drain!(transfer)), [0]);
    transfer.handle_datagram(t0, client(), &data(1, b"backup"));
    assert!(drain!(transfer).is_empty());
    assert_eq!(transfer.poll_timeout(), None, "nothing times out meanwhile");
    assert!(matches!(transfer.poll_event(), Some(Event::Received(_))));
    let message = "file \"f\" already exists and overwriting is disabled".to_owned();
    transfer.commit_result(t0 + T, Err((ErrorCode::FileExists, message.clone())));
    assert_eq!(
        parsed(&drain!(transfer)),
        [Packet::Error {
            code: ErrorCode::FileExists,
            message: message.as_str().into()
        }]
    );
    let report = finished(|| transfer.poll_event()).expect("report");
    assert_eq!(
        report.outcome,
        Outcome::Refused {
            code: ErrorCode::FileExists,
            message
        }
    );
}

#[test]
fn a_write_lingers_to_reack_a_retransmitted_last_block_then_completes() {
    let t0 = Instant::now();
    let mut transfer = write(t0, TransferOptions::default(), Mode::Octet);
    drain!(transfer);
    transfer.handle_datagram(t0, client(), &data(1, b"tiny"));
    transfer.commit_result(t0, Ok(()));
    drain!(transfer);
    // The client did not get our ACK and sends the last block again.
    transfer.handle_datagram(t0 + T, client(), &data(1, b"tiny"));
    assert_eq!(acks(&drain!(transfer)), [1]);
    assert_eq!(transfer.poll_timeout(), Some(t0 + 2 * T));
    transfer.handle_timeout(t0 + 2 * T);
    assert!(drain!(transfer).is_empty());
    assert!(matches!(transfer.poll_event(), Some(Event::Received(_))));
    let report = finished(|| transfer.poll_event()).expect("report");
    assert_eq!(report.outcome, Outcome::Completed);
    assert_eq!((report.bytes, report.blocks, report.retransmits), (4, 1, 1));
    assert_eq!(
        report.duration,
        Duration::ZERO,
        "the linger is not part of the duration"
    );
}

#[test]
fn a_write_with_options_answers_with_an_oack_instead_of_ack_0() {
    let t0 = Instant::now();
    let options = TransferOptions {
        blksize: Some(8),
        tsize: Some(12),
        ..TransferOptions::default()
    };
    let mut transfer = write(t0, options, Mode::Octet);
    assert_eq!(parsed(&drain!(transfer)), [Packet::Oack { options }]);
    // Silence: the OACK is what gets retransmitted.
    transfer.handle_timeout(t0 + T);
    assert_eq!(parsed(&drain!(transfer)), [Packet::Oack { options }]);
    transfer.handle_datagram(t0 + T, client(), &data(1, b"12345678"));
    assert_eq!(acks(&drain!(transfer)), [1]);
}

#[test]
fn a_write_announcing_a_size_over_the_limit_is_refused_with_error_3_before_data() {
    let t0 = Instant::now();
    let options = TransferOptions {
        tsize: Some(1001),
        ..TransferOptions::default()
    };
    let mut transfer = write(t0, options, Mode::Octet);
    let out = drain!(transfer);
    assert!(matches!(
        parsed(&out)[..],
        [Packet::Error {
            code: ErrorCode::DiskFull,
            ..
        }]
    ));
    assert!(transfer.is_finished());
    let report = finished(|| transfer.poll_event()).expect("report");
    assert!(matches!(
        report.outcome,
        Outcome::Refused {
            code: ErrorCode::DiskFull,
            ..
        }
    ));
}

#[test]
fn a_write_growing_past_the_limit_is_refused_with_error_3() {
    let t0 = Instant::now();
    let mut transfer = write(t0, TransferOptions::default(), Mode::Octet);
    drain!(transfer);
    for block in 1..=2 {
        transfer.handle_datagram(t0, client(), &data(block, &[0; 512]));
    }
    let out = drain!(transfer);
    assert!(matches!(
        parsed(&out)[..],
        [Packet::Error {
            code: ErrorCode::DiskFull,
            ..
        }]
    ));
    assert!(transfer.is_finished());
    let report = finished(|| transfer.poll_event()).expect("report, and no Received before it");
    assert_eq!(report.bytes, 512);
}

#[test]
fn a_netascii_write_is_translated_back() {
    let t0 = Instant::now();
    let options = TransferOptions {
        blksize: Some(8),
        ..TransferOptions::default()
    };
    let mut transfer = write(t0, options, Mode::Netascii);
    drain!(transfer);
    transfer.handle_datagram(t0, client(), &data(1, b"ab\r\ncd\r\r"));
    transfer.handle_datagram(t0, client(), &data(2, b"\0e\r\n"));
    assert_eq!(
        transfer.poll_event(),
        Some(Event::Received(b"ab\ncd\r\re\n".to_vec()))
    );
}

#[test]
fn a_write_acks_each_window_and_reports_a_gap_once() {
    let t0 = Instant::now();
    let options = TransferOptions {
        blksize: Some(8),
        windowsize: Some(4),
        ..TransferOptions::default()
    };
    let mut transfer = write(t0, options, Mode::Octet);
    drain!(transfer);
    for block in 1..=3 {
        transfer.handle_datagram(t0, client(), &data(block, &[0; 8]));
        assert!(drain!(transfer).is_empty());
    }
    transfer.handle_datagram(t0, client(), &data(4, &[0; 8]));
    assert_eq!(acks(&drain!(transfer)), [4]);
    // Block 5 lost: 6 reports the gap with ACK 4; 7 and 8 say nothing more.
    for block in 6..=8 {
        transfer.handle_datagram(t0, client(), &data(block, &[0; 8]));
    }
    assert_eq!(acks(&drain!(transfer)), [4]);
}

#[test]
fn block_numbers_wrap_from_65535_to_0() {
    let t0 = Instant::now();
    let options = TransferOptions {
        blksize: Some(8),
        ..TransferOptions::default()
    };
    let file = vec![3u8; 8 * 65537];
    let mut transfer = read(t0, &file, Mode::Octet, options);
    drain!(transfer);
    transfer.handle_datagram(t0, client(), &ack(0));
    let mut seen = Vec::new();
    for expected in (1u64..=65538).map(BlockNumber::from_absolute) {
        let blocks = data_blocks(&drain!(transfer));
        assert_eq!(blocks, [expected.0]);
        if expected.0 >= 65534 || expected.0 <= 2 {
            seen.push(expected.0);
        }
        transfer.handle_datagram(t0, client(), &ack(expected.0));
    }
    assert_eq!(seen, [1, 2, 65534, 65535, 0, 1, 2]);
    let report = finished(|| transfer.poll_event()).expect("report");
    assert_eq!(report.outcome, Outcome::Completed);
    assert_eq!(report.blocks, 65538);
}

#[test]
fn a_complete_write_can_stop_lingering_but_an_incomplete_one_cannot() {
    let t0 = Instant::now();
    let mut transfer = write(t0, TransferOptions::default(), Mode::Octet);
    drain!(transfer);
    transfer.handle_datagram(t0, client(), &data(1, &[1; 512]));
    transfer.stop_lingering(t0);
    assert!(!transfer.is_finished(), "the file is not complete yet");
    transfer.handle_datagram(t0, client(), &data(2, b"end"));
    transfer.stop_lingering(t0);
    assert!(
        !transfer.is_finished(),
        "the store has not taken the file yet"
    );
    transfer.commit_result(t0, Ok(()));
    assert_eq!(acks(&drain!(transfer)), [2]);
    transfer.stop_lingering(t0);
    assert!(transfer.is_finished());
    let report = finished(|| transfer.poll_event()).expect("report");
    assert_eq!(report.outcome, Outcome::Completed);
}

#[test]
fn a_write_follows_block_numbers_across_the_wrap_and_reacks_duplicates() {
    let t0 = Instant::now();
    let options = TransferOptions {
        blksize: Some(8),
        ..TransferOptions::default()
    };
    let mut transfer = Transfer::write(
        t0,
        client(),
        &request(Mode::Octet, options),
        u64::MAX,
        &TransferConfig {
            max_upload_size: u64::MAX,
            ..config()
        },
    );
    drain!(transfer);
    for n in 1u64..=65537 {
        let block = BlockNumber::from_absolute(n).0;
        transfer.handle_datagram(t0, client(), &data(block, &[n as u8; 8]));
        assert_eq!(acks(&drain!(transfer)), [block]);
        if block == 0 {
            // A duplicate of the block just acknowledged is acknowledged again.
            transfer.handle_datagram(t0, client(), &data(0, &[n as u8; 8]));
            assert_eq!(acks(&drain!(transfer)), [0]);
        }
    }
    transfer.handle_datagram(t0, client(), &data(2, b""));
    let Some(Event::Received(bytes)) = transfer.poll_event() else {
        panic!("the upload is complete");
    };
    assert_eq!(bytes.len(), 8 * 65537);
    assert_eq!(
        bytes[8 * 65535],
        0,
        "block 65536 (wire 0) holds its own bytes"
    );
}

#[test]
fn a_download_into_a_recycled_buffer_holds_only_the_new_file() {
    let t0 = Instant::now();
    let server: SocketAddr = "127.0.0.1:69".parse().expect("literal");
    let transfer_port: SocketAddr = "127.0.0.1:50000".parse().expect("literal");
    let config = ClientConfig {
        timeout: T,
        ..ClientConfig::default()
    };
    let mut download = Transfer::download(t0, server, "f", Mode::Octet, config)
        .with_buffer(b"left over from the last file".to_vec());
    drain!(download);
    download.handle_datagram(t0, transfer_port, &data(1, b"new"));
    assert_eq!(acks(&drain!(download)), [1]);
    let Some(Event::Received(bytes)) = download.poll_event() else {
        panic!("a short first block completes the download");
    };
    assert_eq!(bytes, b"new");
}

/// Drains `transfer`, checking before each poll that `has_data_to_send` foretells it:
/// true before every packet of the window (DATA, or the OACK that stands for block 0),
/// false before the poll that finds nothing.
fn drain_foretold(transfer: &mut Transfer) -> Vec<u16> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut blocks = Vec::new();
    loop {
        let foretold = transfer.has_data_to_send();
        let Some(t) = transfer.poll_transmit(&mut buf) else {
            assert!(!foretold, "foretold a block after {blocks:?}");
            return blocks;
        };
        match Packet::parse(&buf[..t.len]) {
            Ok(Packet::Data { block, .. }) => blocks.push(block.0),
            Ok(Packet::Error { .. }) => continue,
            _ => {}
        }
        assert!(foretold, "sent block {blocks:?} unforetold");
    }
}

#[test]
fn has_data_to_send_foretells_every_poll_of_a_window_through_acks_and_timeouts() {
    let t0 = Instant::now();
    let options = TransferOptions {
        windowsize: Some(4),
        ..TransferOptions::default()
    };
    let mut transfer = read(t0, &[7; 512 * 9 + 100], Mode::Octet, options);
    assert_eq!(drain_foretold(&mut transfer), [0u16; 0]);
    transfer.handle_datagram(t0, client(), &ack(0));
    assert_eq!(drain_foretold(&mut transfer), [1, 2, 3, 4]);
    transfer.handle_datagram(t0, client(), &ack(2));
    assert_eq!(drain_foretold(&mut transfer), [3, 4, 5, 6]);
    transfer.handle_timeout(t0 + T);
    assert_eq!(drain_foretold(&mut transfer), [3, 4, 5, 6]);
    transfer.handle_datagram(t0 + T, stranger(), &ack(6));
    assert_eq!(drain_foretold(&mut transfer), [0u16; 0]);
    transfer.handle_datagram(t0 + T, client(), &ack(6));
    assert_eq!(drain_foretold(&mut transfer), [7, 8, 9, 10]);
    transfer.handle_datagram(t0 + T, client(), &ack(10));
    assert_eq!(drain_foretold(&mut transfer), [0u16; 0]);
    assert!(!transfer.has_data_to_send());
}
