//! The per-client policy through the endpoint, with policies read from configuration
//! text and a real store: table matching (IPv4, IPv6, IPv4-mapped), first match,
//! read and write denial, views with and without fallback, rewrites, refused options,
//! the MTU clamp and the narrowed uploads.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::*;
use crate::config::Config;
use crate::proto::{MAX_DATAGRAM, Mode, Packet, Request, TransferOptions};
use crate::store::{Preseed, Store, UploadPolicy};

fn store() -> Arc<Store> {
    let mut preseed = Preseed::new(false);
    for (name, data) in [
        ("boot.cfg", &b"top"[..]),
        ("only-top", b"only at the top"),
        ("site-a/boot.cfg", b"site a"),
        ("hosts/10.0.0.7/boot.cfg", b"host 10.0.0.7"),
        ("hosts/fd00::7/boot.cfg", b"host fd00::7"),
        ("big", &[9u8; 100_000]),
    ] {
        preseed.insert(name.parse().unwrap(), Bytes::copy_from_slice(data));
    }
    let upload = UploadPolicy {
        enabled: true,
        max_file_size: 1 << 20,
        max_total_size: 1 << 20,
        overwrite: false,
        allow: Vec::new(),
    };
    Arc::new(Store::new(preseed, upload))
}

/// An endpoint whose policy is that of the configuration `text`.
fn endpoint(text: &str) -> Endpoint {
    let config = Config::parse(text, Path::new("/etc/tftpd.toml")).expect("valid config");
    Endpoint::new(store(), config.endpoint)
}

fn packet(request: Request<'_>, write: bool) -> Vec<u8> {
    let packet = if write {
        Packet::Wrq(request)
    } else {
        Packet::Rrq(request)
    };
    let mut buf = vec![0u8; packet.encoded_len()];
    packet.encode(&mut buf).unwrap();
    buf
}

fn rrq(name: &str, options: TransferOptions) -> Vec<u8> {
    let request = Request {
        filename: name,
        mode: Mode::Octet,
        options,
    };
    packet(request, false)
}

fn wrq(name: &str, options: TransferOptions) -> Vec<u8> {
    let request = Request {
        filename: name,
        mode: Mode::Octet,
        options,
    };
    packet(request, true)
}

/// What the endpoint answers `datagram` from `peer` with, first: the packet parsed into
/// an owned description, and the events.
fn answer(
    endpoint: &mut Endpoint,
    peer: &str,
    datagram: &[u8],
    mtu: Option<u32>,
) -> (String, Vec<EndpointEvent>) {
    let peer: SocketAddr = peer.parse().unwrap();
    let local = LocalEnd {
        ip: if canonical(peer).is_ipv4() {
            "127.0.0.1".parse().unwrap()
        } else {
            "::1".parse().unwrap()
        },
        ifindex: 0,
        mtu,
    };
    endpoint.handle(Instant::now(), 0, Some(local), peer, datagram);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let first = endpoint
        .poll_transmit(&mut buf)
        .map(|out| describe(&buf[..out.transmit.len]))
        .unwrap_or_default();
    while endpoint.poll_transmit(&mut buf).is_some() {}
    let events = std::iter::from_fn(|| endpoint.poll_event()).collect();
    (first, events)
}

fn describe(bytes: &[u8]) -> String {
    match Packet::parse(bytes).unwrap() {
        Packet::Error { code, message } => format!("ERROR {} {message}", code.as_u16()),
        Packet::Data { data, .. } => format!("DATA {}", String::from_utf8_lossy(data)),
        Packet::Oack { options } => {
            let pairs: Vec<String> = options.pairs().map(|(n, v)| format!("{n}={v}")).collect();
            format!("OACK {}", pairs.join(" "))
        }
        Packet::Ack { block } => format!("ACK {}", block.0),
        other => format!("{other:?}"),
    }
}

fn read(endpoint: &mut Endpoint, peer: &str, name: &str) -> String {
    answer(endpoint, peer, &rrq(name, TransferOptions::default()), None).0
}

const TABLES: &str = r#"
    [[client]]
    name = "admin"
    networks = ["10.0.0.0/24", "fd00::/64"]
    root = "hosts/{ip}"

    [[client]]
    name = "lab"
    networks = ["10.0.0.0/8"]
    read = false

    [[client]]
    networks = ["fd00::/8"]
    write = false
    root = "site-a/"
    fallback = false

    [upload]
    enabled = true
"#;

#[test]
fn tables_match_ipv4_ipv6_and_mapped_clients_and_the_first_match_decides() {
    let mut e = endpoint(TABLES);
    // The admin network is inside the lab's: the first table decides.
    assert_eq!(
        read(&mut e, "10.0.0.7:1000", "boot.cfg"),
        "DATA host 10.0.0.7"
    );
    assert_eq!(
        read(&mut e, "[::ffff:10.0.0.7]:1001", "boot.cfg"),
        "DATA host 10.0.0.7"
    );
    assert_eq!(
        read(&mut e, "[fd00::7]:1002", "boot.cfg"),
        "DATA host fd00::7"
    );
    // The lab may not read, as IPv4 or as a dual-stack socket sees it.
    assert_eq!(
        read(&mut e, "10.9.0.1:1003", "boot.cfg"),
        "ERROR 2 access violation"
    );
    assert_eq!(
        read(&mut e, "[::ffff:10.9.0.1]:1004", "boot.cfg"),
        "ERROR 2 access violation"
    );
    // No table: the top level.
    assert_eq!(read(&mut e, "192.0.2.1:1005", "boot.cfg"), "DATA top");
    assert_eq!(read(&mut e, "[2001:db8::1]:1006", "boot.cfg"), "DATA top");
}

#[test]
fn a_denied_request_is_logged_with_its_table_within_the_log_limits() {
    let mut e = endpoint(TABLES);
    let mut logged = 0;
    for port in 0..100u16 {
        let (sent, events) = answer(
            &mut e,
            &format!("10.9.0.1:{}", 2000 + port),
            &rrq("boot.cfg", TransferOptions::default()),
            None,
        );
        assert_eq!(sent, "ERROR 2 access violation");
        for event in events {
            if let EndpointEvent::Refused(record) = event {
                assert_eq!(record.table.as_deref(), Some("lab"));
                assert_eq!(record.refusal.code, ErrorCode::AccessViolation);
                logged += 1;
            }
        }
    }
    // Every one answered and counted; the log gets the per-client burst.
    assert_eq!(e.counters().refused, 100);
    assert_eq!(logged, 10);
}

#[test]
fn writes_are_denied_by_table_and_land_in_the_view() {
    let mut e = endpoint(TABLES);
    let (sent, _) = answer(
        &mut e,
        "[fd00:1::9]:1000",
        &wrq("new", TransferOptions::default()),
        None,
    );
    assert_eq!(sent, "ERROR 2 access violation");
    let (sent, _) = answer(
        &mut e,
        "10.0.0.8:1000",
        &wrq("new", TransferOptions::default()),
        None,
    );
    assert_eq!(sent, "ACK 0");
    // The upload goes under the client's view.
    let table = &e.table;
    let permits: Vec<String> = table
        .handles()
        .into_iter()
        .filter_map(|h| table.get(h)?.permit.as_ref().map(|p| p.name().to_string()))
        .collect();
    assert_eq!(permits, vec!["hosts/10.0.0.8/new".to_owned()]);
}

#[test]
fn views_fall_back_to_the_top_unless_told_not_to() {
    let mut e = endpoint(TABLES);
    // admin: view hosts/{ip}/ with the default fallback.
    assert_eq!(
        read(&mut e, "10.0.0.7:1000", "only-top"),
        "DATA only at the top"
    );
    assert_eq!(read(&mut e, "10.0.0.8:1000", "boot.cfg"), "DATA top");
    // fd00::/8 but not fd00::/64: view site-a/ without fallback.
    assert_eq!(read(&mut e, "[fd00:1::9]:1000", "boot.cfg"), "DATA site a");
    assert_eq!(
        read(&mut e, "[fd00:1::9]:1001", "only-top"),
        "ERROR 1 file not found: site-a/only-top"
    );
}

#[test]
fn the_journal_entry_carries_the_table_the_names_and_the_view() {
    let mut e = endpoint(
        r#"
        [[client]]
        name = "ironic"
        networks = ["10.0.0.0/8"]
        root = "hosts/{ip}"
        rewrite = [["^/tftpboot/", ""]]
        "#,
    );
    let (sent, mut events) = answer(
        &mut e,
        "10.0.0.7:1000",
        &rrq("/tftpboot/boot.cfg", TransferOptions::default()),
        None,
    );
    assert_eq!(sent, "DATA host 10.0.0.7");
    let client: SocketAddr = "10.0.0.7:1000".parse().unwrap();
    let handle = e.table.handles()[0];
    e.handle_transfer(Instant::now(), handle, client, &[0, 4, 0, 1]);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while e.poll_transmit(&mut buf).is_some() {}
    events.extend(std::iter::from_fn(|| e.poll_event()));
    let applied = events
        .iter()
        .find_map(|event| match event {
            EndpointEvent::Ended { applied, .. } => Some(applied.as_ref().clone()),
            _ => None,
        })
        .expect("the transfer ended");
    assert_eq!(
        applied,
        Applied {
            table: "ironic".to_owned(),
            requested: "/tftpboot/boot.cfg".to_owned(),
            rewritten: Some("boot.cfg".to_owned()),
            view: Some("hosts/10.0.0.7/".to_owned()),
            stored: Some("hosts/10.0.0.7/boot.cfg".to_owned()),
        }
    );
}

#[test]
fn rewrites_run_in_order_on_the_name_as_sent_with_the_client_address() {
    let mut e = endpoint(
        r#"
        rewrite = [["^/tftpboot/", ""], ["^mine$", "hosts/{ip}/boot.cfg"], ["\\.CFG$", ".cfg"]]
        "#,
    );
    assert_eq!(
        read(&mut e, "10.0.0.7:1000", "/tftpboot/mine"),
        "DATA host 10.0.0.7"
    );
    assert_eq!(read(&mut e, "[fd00::7]:1000", "mine"), "DATA host fd00::7");
    // Before normalisation: the second rule sees what the first left, not a cleaned name.
    assert_eq!(
        read(&mut e, "10.0.0.7:1001", "/tftpboot//mine"),
        "ERROR 1 file not found: mine"
    );
    assert_eq!(
        read(&mut e, "192.0.2.1:1000", "site-a/boot.CFG"),
        "DATA site a"
    );
    // A table that sets its own rules replaces the top level's.
    let mut e = endpoint(
        r#"
        rewrite = [["^/tftpboot/", ""]]
        [[client]]
        networks = ["10.0.0.0/8"]
        rewrite = [["^x/", "site-a/"]]
        "#,
    );
    assert_eq!(read(&mut e, "10.0.0.7:1000", "x/boot.cfg"), "DATA site a");
    assert_eq!(
        read(&mut e, "10.0.0.7:1001", "/tftpboot/boot.cfg"),
        "ERROR 1 file not found: tftpboot/boot.cfg"
    );
    assert_eq!(
        read(&mut e, "192.0.2.1:1000", "/tftpboot/boot.cfg"),
        "DATA top"
    );
}

fn options(blksize: u16, windowsize: u16) -> TransferOptions {
    TransferOptions {
        blksize: Some(blksize),
        windowsize: Some(windowsize),
        tsize: Some(0),
        ..TransferOptions::default()
    }
}

#[test]
fn refused_options_are_left_out_of_the_oack() {
    let mut e = endpoint(
        r#"
        [[client]]
        networks = ["10.0.0.0/8"]
        refuse-options = ["windowsize", "tsize"]
        max-blksize = 1024
        "#,
    );
    let asked = rrq("big", options(8192, 16));
    let (sent, _) = answer(&mut e, "10.0.0.1:1000", &asked, None);
    assert_eq!(sent, "OACK blksize=1024");
    let (sent, _) = answer(&mut e, "192.0.2.1:1000", &asked, None);
    assert_eq!(sent, "OACK blksize=8192 tsize=100000 windowsize=16");
    // Every option refused: no OACK at all, the plain protocol.
    let mut e = endpoint("refuse-options = [\"blksize\", \"windowsize\", \"tsize\"]");
    let (sent, _) = answer(&mut e, "10.0.0.1:1000", &asked, None);
    assert_eq!(sent, format!("DATA {}", "\t".repeat(512)));
}

#[test]
fn the_block_fits_the_link_mtu_less_the_headers() {
    let mut e = endpoint("");
    let asked = rrq("big", options(65464, 1));
    assert!(e.wants_mtu("10.0.0.1:1000".parse().unwrap(), &asked));
    assert!(!e.wants_mtu(
        "10.0.0.1:1000".parse().unwrap(),
        &rrq("big", TransferOptions::default())
    ));
    let oack = |e: &mut Endpoint, peer: &str, mtu| answer(e, peer, &asked, mtu).0;
    assert_eq!(
        oack(&mut e, "10.0.0.1:1000", Some(1500)),
        "OACK blksize=1468 tsize=100000 windowsize=1"
    );
    assert_eq!(
        oack(&mut e, "[::ffff:10.0.0.1]:1001", Some(1500)),
        "OACK blksize=1468 tsize=100000 windowsize=1"
    );
    assert_eq!(
        oack(&mut e, "[fd00::1]:1000", Some(1500)),
        "OACK blksize=1448 tsize=100000 windowsize=1"
    );
    assert_eq!(
        oack(&mut e, "[fd00::1]:1001", Some(9000)),
        "OACK blksize=8948 tsize=100000 windowsize=1"
    );
    // Loopback's MTU: the protocol's largest block.
    assert_eq!(
        oack(&mut e, "10.0.0.1:1002", Some(65536)),
        "OACK blksize=65464 tsize=100000 windowsize=1"
    );
    // A smaller request is granted as it is.
    let (sent, _) = answer(
        &mut e,
        "10.0.0.1:1003",
        &rrq("big", options(1024, 1)),
        Some(1500),
    );
    assert_eq!(sent, "OACK blksize=1024 tsize=100000 windowsize=1");
    // A table with a fixed limit needs no MTU.
    let mut e = endpoint(
        "[[client]]\nnetworks = [\"10.0.0.0/8\"]\nmax-blksize = 1024\nmax-windowsize = 4\n",
    );
    assert!(!e.wants_mtu("10.0.0.1:1000".parse().unwrap(), &asked));
    assert!(e.wants_mtu("192.0.2.1:1000".parse().unwrap(), &asked));
    let asked = rrq("big", options(65464, 64));
    let (sent, _) = answer(&mut e, "10.0.0.1:1004", &asked, Some(1500));
    assert_eq!(sent, "OACK blksize=1024 tsize=100000 windowsize=4");
    let (sent, _) = answer(&mut e, "192.0.2.1:1000", &asked, Some(1500));
    assert_eq!(sent, "OACK blksize=1468 tsize=100000 windowsize=64");
}

#[test]
fn a_table_narrows_uploads_by_prefix_and_size() {
    let mut e = endpoint(
        r#"
        [[client]]
        networks = ["10.0.0.0/8"]
        [client.upload]
        allow = ["backups"]
        max-file-size = 1000

        [upload]
        enabled = true
        "#,
    );
    let tsize = |size| TransferOptions {
        tsize: Some(size),
        ..TransferOptions::default()
    };
    let (sent, _) = answer(
        &mut e,
        "10.0.0.1:1000",
        &wrq("elsewhere/x", tsize(10)),
        None,
    );
    assert!(sent.starts_with("ERROR 2 "), "{sent}");
    let (sent, _) = answer(
        &mut e,
        "10.0.0.1:1001",
        &wrq("backups/x", tsize(1001)),
        None,
    );
    assert!(sent.starts_with("ERROR 3 "), "{sent}");
    let (sent, _) = answer(
        &mut e,
        "10.0.0.1:1002",
        &wrq("backups/x", tsize(1000)),
        None,
    );
    assert_eq!(sent, "OACK tsize=1000");
    // Others get [upload] as it is.
    let (sent, _) = answer(
        &mut e,
        "192.0.2.1:1000",
        &wrq("elsewhere/x", tsize(5000)),
        None,
    );
    assert_eq!(sent, "OACK tsize=5000");
}

#[test]
fn a_table_budget_bounds_its_clients_uploads_per_view_and_never_the_others() {
    let mut e = endpoint(
        r#"
        [[client]]
        name = "lab"
        networks = ["10.0.0.0/8"]
        root = "lab/{ip}/"
        [client.upload]
        max-total-size = 1000

        [[client]]
        name = "guests"
        networks = ["192.0.2.0/24"]
        [client.upload]
        allow = ["guests"]
        max-total-size = 500

        [upload]
        enabled = true
        "#,
    );
    let tsize = |size| TransferOptions {
        tsize: Some(size),
        ..TransferOptions::default()
    };
    let mut write = |peer: &str, name: &str, size: Option<u64>| {
        let options = size.map_or_else(TransferOptions::default, tsize);
        answer(&mut e, peer, &wrq(name, options), None).0
    };
    // More than the table's budget can never fit: refused, though [upload] has room.
    let sent = write("10.0.0.1:1000", "big", Some(1001));
    assert!(sent.starts_with("ERROR 3 "), "{sent}");
    assert!(sent.contains("1000 bytes left"), "{sent}");
    // 600 of the budget promised to an upload in flight: the next one waits for it.
    assert_eq!(write("10.0.0.1:1001", "a", Some(600)), "OACK tsize=600");
    assert_eq!(
        write("10.0.0.1:1002", "b", Some(500)),
        "",
        "waits, unanswered"
    );
    assert_eq!(write("10.0.0.1:1003", "c", Some(400)), "OACK tsize=400");
    // Its view is full: an upload of unknown size waits too.
    assert_eq!(write("10.0.0.1:1004", "d", None), "");
    // Another lab client has a view, and so a budget, of its own.
    assert_eq!(write("10.0.0.2:1000", "a", Some(1000)), "OACK tsize=1000");
    // A table with `allow` budgets the prefixes, shared by its clients.
    assert_eq!(
        write("192.0.2.1:1000", "guests/x", Some(300)),
        "OACK tsize=300"
    );
    assert_eq!(write("192.0.2.2:1000", "guests/y", Some(300)), "");
    assert_eq!(write("192.0.2.2:1001", "guests/y", None), "ACK 0");
    // Clients no table matches get [upload] as it is: 1 MiB.
    assert_eq!(
        write("203.0.113.1:1000", "top", Some(100_000)),
        "OACK tsize=100000"
    );
    let table = &e.table;
    let mut permits: Vec<(String, u64)> = (table.handles().into_iter())
        .filter_map(|h| {
            let permit = table.get(h)?.permit.as_ref()?;
            Some((permit.name().to_string(), permit.max_size()))
        })
        .collect();
    permits.sort();
    assert_eq!(
        permits,
        [
            ("guests/x".to_owned(), 300),
            ("guests/y".to_owned(), 200),
            ("lab/10.0.0.1/a".to_owned(), 600),
            ("lab/10.0.0.1/c".to_owned(), 400),
            ("lab/10.0.0.2/a".to_owned(), 1000),
            ("top".to_owned(), 100_000),
        ]
    );
}
