//! The server over real UDP on loopback, in-process: fetches, uploads, every refusal,
//! strangers, garbage, limits, single-port mode, IPv6, reload and drain.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use memtftpd::proto::{MAX_DATAGRAM, Mode, Packet, TransferOptions};
use memtftpd::store::Preseed;
use memtftpd::transfer::Outcome;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn options(blksize: Option<u16>, windowsize: Option<u16>) -> TransferOptions {
    TransferOptions {
        blksize,
        timeout: None,
        tsize: Some(0),
        windowsize,
    }
}

#[test]
fn files_are_served_whole_with_and_without_options() {
    let big = pattern(3 << 20);
    let small = b"hello\nworld\r\n".to_vec();
    let long: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    let server = start(
        &["127.0.0.1:0"],
        store_with(
            &[
                ("big.bin", &big),
                ("dir/small.txt", &small),
                ("dir/long.txt", &long),
            ],
            upload_policy(false),
        ),
        settings(),
    );
    for (blksize, windowsize) in [
        (None, None),
        (Some(1468), None),
        (Some(1468), Some(16)),
        (Some(8192), Some(64)),
    ] {
        let result = fetch(
            server.addr(),
            "big.bin",
            Mode::Octet,
            options(blksize, windowsize),
        );
        assert_eq!(
            result.outcome(),
            &Outcome::Completed,
            "{blksize:?}/{windowsize:?}"
        );
        assert!(
            result.data.as_deref() == Some(&big[..]),
            "{blksize:?}/{windowsize:?}: bytes differ"
        );
    }
    let text = fetch(
        server.addr(),
        "/dir//small.txt",
        Mode::Netascii,
        TransferOptions::default(),
    );
    assert_eq!(
        text.data.as_deref(),
        Some(&small[..]),
        "netascii round trip"
    );
    // Translated blocks are not slices of the stored file: they travel whole, windowed.
    let long_text = fetch(
        server.addr(),
        "dir/long.txt",
        Mode::Netascii,
        options(Some(1468), Some(16)),
    );
    assert!(
        long_text.data.as_deref() == Some(&long[..]),
        "windowed netascii round trip"
    );
    let notes = server.stop();
    assert!(notes.iter().any(|n| n.starts_with("stopping")));
}

#[test]
fn a_missing_file_gets_error_1_and_a_traversal_gets_error_2() {
    let server = start(
        &["127.0.0.1:0"],
        store_with(&[("a", b"x")], upload_policy(false)),
        settings(),
    );
    let missing = fetch(
        server.addr(),
        "nope",
        Mode::Octet,
        TransferOptions::default(),
    );
    assert_eq!(missing.error_code(), Some(1));
    for name in ["../etc/passwd", "a/../../etc/passwd", "..\\..\\windows"] {
        let result = fetch(server.addr(), name, Mode::Octet, TransferOptions::default());
        assert_eq!(result.error_code(), Some(2), "{name}");
    }
}

#[test]
fn malformed_requests_get_error_4_and_the_server_goes_on() {
    let server = start(
        &["127.0.0.1:0"],
        store_with(&[("a", b"x")], upload_policy(false)),
        settings(),
    );
    let mail = exchange(server.addr(), &request(1, "a", "mail")).expect("an answer");
    assert_eq!(error_code(&mail.0), Some(4));
    let unterminated = exchange(server.addr(), b"\x00\x01a\x00octet").expect("an answer");
    assert_eq!(error_code(&unterminated.0), Some(4));
    let unknown_opcode = exchange(server.addr(), b"\x00\x09hello").expect("an answer");
    assert_eq!(error_code(&unknown_opcode.0), Some(4));
    let stray_ack = exchange(server.addr(), b"\x00\x04\x00\x01").expect("an answer");
    assert_eq!(error_code(&stray_ack.0), Some(5));
    let fine = fetch(server.addr(), "a", Mode::Octet, TransferOptions::default());
    assert_eq!(fine.data.as_deref(), Some(&b"x"[..]));
}

#[test]
fn uploads_are_refused_unless_enabled_allowed_new_and_small_enough() {
    let disabled = start(
        &["127.0.0.1:0"],
        store_with(&[], upload_policy(false)),
        settings(),
    );
    let result = upload(
        disabled.addr(),
        "uploads/x",
        Mode::Octet,
        b"data",
        TransferOptions::default(),
    );
    assert_eq!(result.error_code(), Some(2), "uploads off");

    let server = start(
        &["127.0.0.1:0"],
        store_with(&[("uploads/old", b"old")], upload_policy(true)),
        settings(),
    );
    let outside = upload(
        server.addr(),
        "elsewhere/x",
        Mode::Octet,
        b"data",
        TransferOptions::default(),
    );
    assert_eq!(outside.error_code(), Some(2), "outside allow");
    let exists = upload(
        server.addr(),
        "uploads/old",
        Mode::Octet,
        b"new",
        TransferOptions::default(),
    );
    assert_eq!(exists.error_code(), Some(6), "overwrite refused");
    let announced = upload(
        server.addr(),
        "uploads/big",
        Mode::Octet,
        &pattern(2 << 20),
        options(Some(1468), None),
    );
    assert_eq!(announced.error_code(), Some(3), "tsize over the limit");
    assert_eq!(announced.report.blocks, 0, "refused before any data moved");
    let no_tsize = TransferOptions {
        blksize: Some(1468),
        ..TransferOptions::default()
    };
    let unannounced = upload(
        server.addr(),
        "uploads/big",
        Mode::Octet,
        &pattern(2 << 20),
        no_tsize,
    );
    assert_eq!(unannounced.error_code(), Some(3), "data over the limit");
    let missing = fetch(
        server.addr(),
        "uploads/big",
        Mode::Octet,
        TransferOptions::default(),
    );
    assert_eq!(
        missing.error_code(),
        Some(1),
        "a refused upload leaves nothing behind"
    );
    let old = fetch(
        server.addr(),
        "uploads/old",
        Mode::Octet,
        TransferOptions::default(),
    );
    assert_eq!(
        old.data.as_deref(),
        Some(&b"old"[..]),
        "the old file is intact"
    );
}

#[test]
fn an_upload_round_trips_and_is_visible_as_soon_as_it_is_acknowledged() {
    let server = start(
        &["127.0.0.1:0"],
        store_with(&[], upload_policy(true)),
        settings(),
    );
    let data = pattern(300_000);
    for (name, mode, opts) in [
        ("uploads/plain", Mode::Octet, TransferOptions::default()),
        (
            "uploads/windowed",
            Mode::Octet,
            options(Some(1468), Some(8)),
        ),
        ("uploads/text", Mode::Netascii, options(Some(512), None)),
    ] {
        let sent = upload(server.addr(), name, mode, &data, opts);
        assert_eq!(sent.outcome(), &Outcome::Completed, "{name}");
        let back = fetch(server.addr(), name, mode, opts);
        assert!(
            back.data.as_deref() == Some(&data[..]),
            "{name}: bytes differ"
        );
    }
}

#[test]
fn a_stranger_mid_transfer_gets_error_5_and_the_transfer_completes() {
    let file = pattern(5000);
    let server = start(
        &["127.0.0.1:0"],
        store_with(&[("f", &file)], upload_policy(false)),
        settings(),
    );
    let read = RawRead::start(server.addr(), "f");
    assert_ne!(read.tid, server.addr(), "the transfer has its own port");
    // A stranger writes to the transfer's port.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stranger.send_to(b"\x00\x04\x00\x01", read.tid).unwrap();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let (len, from) = stranger.recv_from(&mut buf).unwrap();
    assert_eq!(error_code(&buf[..len]), Some(5));
    assert_eq!(from, read.tid);
    // The real client goes on to the end.
    assert_eq!(read.finish(), file);
}

/// Sends `datagram` from `socket` to `server` and waits `patience` for an answer.
fn answer_within(
    socket: &UdpSocket,
    server: SocketAddr,
    datagram: &[u8],
    patience: Duration,
) -> Option<Vec<u8>> {
    socket.set_read_timeout(Some(patience)).unwrap();
    socket.send_to(datagram, server).unwrap();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    Some(buf[..len].to_vec())
}

#[test]
fn past_max_transfers_a_request_is_dropped_unanswered_and_gets_in_once_room_frees() {
    let mut busy = settings();
    busy.max_transfers = 1;
    let file = pattern(10_000);
    let server = start(
        &["127.0.0.1:0"],
        store_with(&[("f", &file)], upload_policy(false)),
        busy,
    );
    // One verified transfer holds the only place.
    let mut first = RawRead::start(server.addr(), "f");
    first.step();
    let waiting = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rrq = request(1, "f", "octet");
    // No ERROR (a boot ROM would give up on it): silence, as for a lost datagram. Three
    // server timeouts are more than enough for an answer to have come.
    let silence = answer_within(&waiting, server.addr(), &rrq, Duration::from_millis(1500));
    assert_eq!(silence, None);
    assert_eq!(first.finish(), file);
    // The client sends its request again, as it would, and gets in.
    let answer = answer_within(&waiting, server.addr(), &rrq, Duration::from_secs(5));
    assert!(matches!(
        answer.as_deref().map(Packet::parse),
        Some(Ok(Packet::Data { .. }))
    ));
}

#[test]
fn windows_of_the_largest_blocks_arrive_whole() {
    // Two blocks of 65464 bytes do not fit in one send buffer next to each other: a window
    // of them must still leave whole, not one block with the rest counted as sent.
    let file = pattern(65464 * 5 + 7);
    let server = start(
        &["127.0.0.1:0"],
        store_with(&[("huge", &file)], upload_policy(false)),
        settings(),
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rrq = request(1, "huge", "octet");
    rrq.extend_from_slice(b"blksize\x0065464\x00windowsize\x002\x00");
    socket.send_to(&rrq, server.addr()).unwrap();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let (len, tid) = socket.recv_from(&mut buf).unwrap();
    assert!(matches!(
        Packet::parse(&buf[..len]),
        Ok(Packet::Oack { .. })
    ));
    socket.send_to(b"\x00\x04\x00\x00", tid).unwrap();
    // The first window, without an ACK: DATA 1 and DATA 2, not DATA 1 and its
    // retransmission.
    let mut blocks = Vec::new();
    for _ in 0..2 {
        let (len, _) = socket.recv_from(&mut buf).unwrap();
        match Packet::parse(&buf[..len]) {
            Ok(Packet::Data { block, data }) => {
                assert_eq!(data.len(), 65464);
                blocks.push(block.0);
            }
            other => panic!("expected DATA, got {other:?}"),
        }
    }
    assert_eq!(blocks, [1, 2]);
    // And the whole file arrives, windowed.
    let result = fetch(
        server.addr(),
        "huge",
        Mode::Octet,
        options(Some(65464), Some(2)),
    );
    assert!(result.data.as_deref() == Some(&file[..]), "bytes differ");
}

#[test]
fn a_full_table_of_unanswered_requests_makes_room_for_a_new_client() {
    let mut busy = settings();
    busy.max_transfers = 1;
    let server = start(
        &["127.0.0.1:0"],
        store_with(&[("f", &pattern(10_000))], upload_policy(false)),
        busy,
    );
    // A request whose sender never answers (a forged address, as far as the server
    // knows) holds the place only until someone else asks.
    let _silent = RawRead::start(server.addr(), "f");
    let _next = RawRead::start(server.addr(), "f");
}

#[test]
fn past_max_transfers_per_client_that_client_is_dropped_and_others_are_served() {
    let mut limited = settings();
    limited.max_transfers_per_client = 2;
    let server = start(
        &["127.0.0.1:0"],
        store_with(&[("f", &pattern(10_000))], upload_policy(false)),
        limited,
    );
    let mut held = [
        RawRead::start(server.addr(), "f"),
        RawRead::start(server.addr(), "f"),
    ];
    for read in &mut held {
        read.step();
    }
    let third = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rrq = request(1, "f", "octet");
    let silence = answer_within(&third, server.addr(), &rrq, Duration::from_millis(1500));
    assert_eq!(silence, None);
    // Another client address is still served.
    let Ok(other) = UdpSocket::bind("127.0.0.2:0") else {
        eprintln!("skipped the second client: no 127.0.0.2 here");
        return;
    };
    other
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    other
        .send_to(&request(1, "f", "octet"), server.addr())
        .unwrap();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let (len, _) = other.recv_from(&mut buf).unwrap();
    assert!(matches!(
        Packet::parse(&buf[..len]),
        Ok(Packet::Data { .. })
    ));
}

#[test]
fn single_port_mode_runs_transfers_on_the_listening_socket() {
    let mut single = settings();
    single.single_port = true;
    let file = pattern(100_000);
    let server = start(
        &["127.0.0.1:0"],
        store_with(&[("f", &file)], upload_policy(true)),
        single,
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .send_to(&request(1, "f", "octet"), server.addr())
        .unwrap();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let (_, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(from, server.addr(), "DATA comes from the listening port");
    drop(client);
    let result = fetch(
        server.addr(),
        "f",
        Mode::Octet,
        options(Some(1468), Some(4)),
    );
    assert!(result.data.as_deref() == Some(&file[..]));
    let sent = upload(
        server.addr(),
        "uploads/u",
        Mode::Octet,
        &file,
        TransferOptions::default(),
    );
    assert_eq!(sent.outcome(), &Outcome::Completed);
    assert!(
        fetch(
            server.addr(),
            "uploads/u",
            Mode::Octet,
            TransferOptions::default()
        )
        .data
        .as_deref()
            == Some(&file[..])
    );
}

#[test]
fn ipv6_and_dual_stack_listeners_serve_both_families() {
    let file = pattern(20_000);
    let Ok(probe) = UdpSocket::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    };
    drop(probe);
    let server = start(
        &["[::]:0"],
        store_with(&[("f", &file)], upload_policy(false)),
        settings(),
    );
    let port = server.addr().port();
    for target in [format!("[::1]:{port}"), format!("127.0.0.1:{port}")] {
        let result = fetch(
            target.parse().unwrap(),
            "f",
            Mode::Octet,
            options(Some(1468), None),
        );
        assert!(result.data.as_deref() == Some(&file[..]), "{target}");
        assert_eq!(
            result.report.peer.ip(),
            target.parse::<SocketAddr>().unwrap().ip(),
            "replies from the address asked"
        );
    }
}

#[test]
fn shutdown_lets_a_transfer_in_flight_finish() {
    let file = pattern(200_000);
    let server = start(
        &["127.0.0.1:0"],
        store_with(&[("f", &file)], upload_policy(false)),
        settings(),
    );
    let read = RawRead::start(server.addr(), "f");
    // The transfer is in flight: ask the server to stop, then carry on.
    server.handle.shutdown();
    server.recorder.wait_for("STOPPING", |n| n == "stopping");
    assert_eq!(read.finish(), file);
    let notes = server.stop();
    assert!(notes.iter().any(|n| n == "stopping"));
}

#[test]
fn a_reload_swaps_the_store_and_keeps_uploads() {
    let store = store_with(&[("old", b"old")], upload_policy(true));
    let for_reload = Arc::clone(&store);
    let reloader: memtftpd::driver::Reloader = Arc::new(move |_cause| {
        let mut preseed = Preseed::new(false);
        preseed.insert("new".parse().unwrap(), bytes::Bytes::from_static(b"new"));
        let changes = for_reload.replace_preseed(preseed, upload_policy(true));
        Ok(memtftpd::driver::Reloaded {
            settings: settings(),
            changes,
        })
    });
    let server = start_with(&["127.0.0.1:0"], store, settings(), Some(reloader));
    let sent = upload(
        server.addr(),
        "uploads/kept",
        Mode::Octet,
        b"up",
        TransferOptions::default(),
    );
    assert_eq!(sent.outcome(), &Outcome::Completed);
    server.handle.reload();
    server
        .recorder
        .wait_for("reloaded", |n| n.starts_with("reloaded"));
    assert_eq!(
        fetch(
            server.addr(),
            "new",
            Mode::Octet,
            TransferOptions::default()
        )
        .data
        .as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(
        fetch(
            server.addr(),
            "old",
            Mode::Octet,
            TransferOptions::default()
        )
        .error_code(),
        Some(1)
    );
    assert_eq!(
        fetch(
            server.addr(),
            "uploads/kept",
            Mode::Octet,
            TransferOptions::default()
        )
        .data
        .as_deref(),
        Some(&b"up"[..])
    );
    // A rescan runs the same reloader, without a reload's notifications.
    server.handle.rescan();
    server
        .recorder
        .wait_for("rescanned", |n| n.starts_with("rescanned Ok("));
    let notes = server.stop();
    let reloading = notes.iter().position(|n| n == "reloading").unwrap();
    let reloaded = notes
        .iter()
        .position(|n| n.starts_with("reloaded Ok("))
        .unwrap();
    assert!(reloading < reloaded);
    assert!(
        notes[reloaded].contains("generation: 3"),
        "made, an upload, a reload: {}",
        notes[reloaded]
    );
    assert_eq!(notes.iter().filter(|n| *n == "reloading").count(), 1);
}

#[test]
fn a_large_windowed_upload_arrives_without_retransmissions() {
    let mut big_uploads = settings();
    big_uploads.transfer.max_upload_size = 8 << 20;
    let mut policy = upload_policy(true);
    policy.max_file_size = 8 << 20;
    policy.max_total_size = 8 << 20;
    let server = start(&["127.0.0.1:0"], store_with(&[], policy), big_uploads);
    let data = pattern(4 << 20);
    let sent = upload(
        server.addr(),
        "uploads/big",
        Mode::Octet,
        &data,
        options(Some(8192), Some(64)),
    );
    assert_eq!(sent.outcome(), &Outcome::Completed);
    assert_eq!(
        sent.report.retransmits, 0,
        "the server's socket dropped part of a window"
    );
}
