//! The per-client policy and `port-range` over real UDP on loopback, in-process: clients
//! on different loopback addresses (127.0.0.2, 127.0.0.3, ... are all local) get the
//! answers of their tables, through an IPv4 and a dual-stack listener; transfer sockets
//! stay inside the port range over a thousand transfers, and an exhausted range makes a
//! request wait (unanswered, as any transient limit) rather than fail. A table's upload
//! budget (`[client.upload] max-total-size`) bounds each of its clients' views.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use common::*;
use memtftpd::config::Config;
use memtftpd::endpoint::{PortRange, Settings};
use memtftpd::proto::{BlockNumber, MAX_DATAGRAM, Mode, Packet, TransferOptions};
use memtftpd::transfer::Outcome;

fn settings(text: &str) -> Settings {
    let mut settings = Config::parse(text, Path::new("/etc/tftpd.toml"))
        .expect("valid config")
        .endpoint;
    settings.transfer = common::settings().transfer;
    settings
}

fn from(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 0)
}

fn options(blksize: u16, windowsize: u16) -> TransferOptions {
    TransferOptions {
        blksize: Some(blksize),
        timeout: None,
        tsize: Some(0),
        windowsize: Some(windowsize),
    }
}

const TABLES: &str = r#"
    [[client]]
    name = "denied"
    networks = ["127.0.0.2"]
    read = false

    [[client]]
    name = "site-a"
    networks = ["127.0.0.3/32"]
    root = "site-a/"

    [[client]]
    name = "ironic"
    networks = ["127.0.0.4/32"]
    rewrite = [["^/tftpboot/", ""]]

    [[client]]
    name = "old-rom"
    networks = ["127.0.0.5/32"]
    max-blksize = 1024
    refuse-options = ["windowsize"]

    [[client]]
    name = "per-host"
    networks = ["127.0.0.6/31"]
    root = "hosts/{ip}"
    fallback = false
"#;

#[test]
fn clients_on_different_loopback_addresses_get_their_tables_answers() {
    let top = vec![1u8; 40_000];
    let site = vec![2u8; 30_000];
    let host = vec![3u8; 20_000];
    let store = store_with(
        &[
            ("boot.img", &top),
            ("site-a/boot.img", &site),
            ("hosts/127.0.0.6/boot.img", &host),
            ("only-top", b"at the top"),
        ],
        upload_policy(false),
    );
    // An IPv4 listener, and a dual-stack one that sees IPv4 clients as ::ffff:a.b.c.d.
    let mut binds = vec!["127.0.0.1:0"];
    if UdpSocket::bind("[::1]:0").is_ok() {
        binds.push("[::]:0");
    } else {
        eprintln!("no IPv6 here: the dual-stack listener is left out");
    }
    let server = start(&binds, store, settings(TABLES));
    for address in &server.addresses {
        // Both listeners take IPv4 clients at 127.0.0.1.
        let server_at = SocketAddr::new("127.0.0.1".parse().unwrap(), address.port());
        let get = |client: &str, name: &str, options| {
            fetch_from(from(client), server_at, name, Mode::Octet, options)
        };
        let plain = TransferOptions::default();
        let denied = get("127.0.0.2", "boot.img", plain);
        assert_eq!(
            denied.error_code(),
            Some(2),
            "{address}: {:?}",
            denied.outcome()
        );
        assert_eq!(
            get("127.0.0.3", "boot.img", plain).data.as_deref(),
            Some(&site[..])
        );
        // Fallback to the top for a name the view lacks.
        let missing_in_view = get("127.0.0.3", "only-top", plain);
        assert_eq!(missing_in_view.data.as_deref(), Some(&b"at the top"[..]));
        assert_eq!(
            get("127.0.0.4", "/tftpboot/boot.img", plain)
                .data
                .as_deref(),
            Some(&top[..])
        );
        let rom = get("127.0.0.5", "boot.img", options(8192, 16));
        assert_eq!(rom.data.as_deref(), Some(&top[..]));
        assert_eq!(
            (rom.report.options.blksize, rom.report.options.windowsize),
            (1024, 1)
        );
        assert_eq!(
            get("127.0.0.6", "boot.img", plain).data.as_deref(),
            Some(&host[..])
        );
        // 127.0.0.7 shares the table but has no file of its own, and no fallback.
        assert_eq!(get("127.0.0.7", "boot.img", plain).error_code(), Some(1));
        // No table: the top level, options as asked.
        let other = get("127.0.0.9", "boot.img", options(8192, 16));
        assert_eq!(other.data.as_deref(), Some(&top[..]));
        assert_eq!(
            (
                other.report.options.blksize,
                other.report.options.windowsize
            ),
            (8192, 16)
        );
    }
    let notes = server.stop();
    assert!(notes.iter().all(|n| !n.contains("panic")));
}

/// A free range of `len` ports on 127.0.0.1 below the kernel's ephemeral ports (no other
/// test's socket is handed one), found by trying (bounded).
fn free_range(from: u16, len: u16) -> PortRange {
    for first in (from..32_000).step_by(usize::from(len) + 1) {
        let last = first + len - 1;
        let probe: Vec<_> = (first..=last)
            .map(|p| UdpSocket::bind(("127.0.0.1", p)))
            .collect();
        if probe.iter().all(Result::is_ok) {
            return PortRange { first, last };
        }
    }
    panic!("no free range of {len} ports");
}

/// One lock-step read of a one-block file from a client socket of its own: the port the
/// DATA came from (the transfer's).
fn read_once(server: SocketAddr, name: &str) -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    // Sent again when unanswered, as a client does (a request over the admission
    // limits is dropped for its retransmission to get in).
    let (len, tid) = (0..20)
        .find_map(|_| {
            socket.send_to(&request(1, name, "octet"), server).unwrap();
            socket.recv_from(&mut buf).ok()
        })
        .unwrap_or_else(|| panic!("no answer from {server}"));
    assert!(matches!(
        Packet::parse(&buf[..len]),
        Ok(Packet::Data { .. })
    ));
    let len = Packet::Ack {
        block: BlockNumber(1),
    }
    .encode(&mut buf)
    .unwrap();
    socket.send_to(&buf[..len], tid).unwrap();
    tid.port()
}

#[test]
fn transfer_ports_stay_inside_the_port_range_over_a_thousand_transfers() {
    let range = free_range(22_000, 64);
    let store = store_with(&[("f", b"one block")], upload_policy(false));
    let settings = Settings {
        port_range: Some(range),
        ..common::settings()
    };
    let server = start(&["127.0.0.1:0"], store, settings);
    let at = server.addr();
    let mut seen = std::collections::HashSet::new();
    // Four clients at once, 250 transfers each.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || (0..250).map(|_| read_once(at, "f")).collect::<Vec<_>>())
        })
        .collect();
    for thread in threads {
        for port in thread.join().unwrap() {
            assert!(range.contains(port), "{port} outside {range}");
            seen.insert(port);
        }
    }
    // Drawn across the range, not one port over and over.
    assert!(seen.len() > 32, "{} ports of {}", seen.len(), range.len());
    server.stop();
}

#[test]
fn an_exhausted_port_range_makes_a_request_wait_not_fail() {
    let range = free_range(26_000, 2);
    let store = store_with(&[("f", &[5u8; 3000][..])], upload_policy(false));
    let settings = Settings {
        port_range: Some(range),
        ..common::settings()
    };
    let server = start(&["127.0.0.1:0"], store, settings);
    // Two transfers held open hold both ports.
    let held: Vec<RawRead> = (0..2).map(|_| RawRead::start(server.addr(), "f")).collect();
    for read in &held {
        assert!(range.contains(read.tid.port()));
    }
    // A third request is not answered while they run: no ERROR, nothing.
    let waiting = UdpSocket::bind("127.0.0.1:0").unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let rrq = request(1, "f", "octet");
    waiting.send_to(&rrq, server.addr()).unwrap();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let answer = waiting.recv_from(&mut buf);
    assert!(
        answer.is_err(),
        "answered: {:?}",
        answer.map(|(n, _)| Packet::parse(&buf[..n]).map(|p| format!("{p:?}")))
    );
    // One ends; the retransmitted request gets in, on the port that freed.
    let mut held = held.into_iter();
    let first = held.next().unwrap();
    let freed = first.tid.port();
    assert_eq!(first.finish(), vec![5u8; 3000]);
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answered = None;
    for _ in 0..20 {
        waiting.send_to(&rrq, server.addr()).unwrap();
        if let Ok((len, tid)) = waiting.recv_from(&mut buf) {
            answered = Some((
                Packet::parse(&buf[..len]).map(|p| matches!(p, Packet::Data { .. })),
                tid,
            ));
            break;
        }
    }
    let (is_data, tid) = answered.expect("the waiting request got in");
    assert_eq!(is_data, Ok(true));
    assert_eq!(tid.port(), freed);
    drop(held);
    server.stop();
}

#[test]
fn a_table_budget_bounds_the_uploads_of_its_clients_each_in_its_view() {
    // [upload] (the store's): uploads under uploads/, 1 MiB a file, 4 MiB in all.
    let store = store_with(&[], upload_policy(true));
    let text = r#"
        [[client]]
        name = "lab"
        networks = ["127.0.0.2/31"]
        root = "uploads/{ip}/"
        [client.upload]
        max-total-size = 3000
    "#;
    let server = start(&["127.0.0.1:0"], store.clone(), settings(text));
    let put = |client: &str, name: &str, len: usize, announce: bool| {
        let options = TransferOptions {
            tsize: announce.then_some(0),
            ..TransferOptions::default()
        };
        let data = vec![7u8; len];
        upload_from(
            from(client),
            server.addr(),
            name,
            Mode::Octet,
            &data,
            options,
        )
    };
    let completed = |result: &ClientResult| *result.outcome() == Outcome::Completed;
    assert!(completed(&put("127.0.0.2", "a", 2000, true)));
    // 1000 bytes left in the view: an announced 1500 is refused at once, an unannounced
    // one when its data passes what is left.
    assert_eq!(put("127.0.0.2", "b", 1500, true).error_code(), Some(3));
    assert_eq!(put("127.0.0.2", "b", 1500, false).error_code(), Some(3));
    assert!(completed(&put("127.0.0.2", "b", 1000, false)));
    assert_eq!(put("127.0.0.2", "c", 1, true).error_code(), Some(3));
    // The other client of the table has a view, and a budget, of its own.
    assert!(completed(&put("127.0.0.3", "a", 3000, true)));
    // A client no table matches has [upload] as it is.
    assert!(completed(&put("127.0.0.9", "uploads/big", 100_000, true)));
    let mut stored: Vec<(String, u64)> = store
        .files("", 100)
        .iter()
        .map(|f| (f.name.as_str().to_owned(), f.size))
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        [
            ("uploads/127.0.0.2/a".to_owned(), 2000),
            ("uploads/127.0.0.2/b".to_owned(), 1000),
            ("uploads/127.0.0.3/a".to_owned(), 3000),
            ("uploads/big".to_owned(), 100_000),
        ]
    );
    let notes = server.stop();
    assert!(notes.iter().all(|n| !n.contains("panic")));
}
