//! The per-client policy in the simulation: the real endpoint, configured from TOML
//! text, serving clients at IPv4, IPv6 and IPv4-mapped addresses over a virtual link,
//! with whole transfers (not only first answers) run to their end.

#![allow(clippy::unwrap_used)]

mod sim;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use memtftpd::config::Config;
use memtftpd::endpoint::Settings;
use memtftpd::proto::{ErrorCode, TransferOptions};
use memtftpd::transfer::{ClientConfig, Outcome};
use sim::{LinkFaults, Rng, World, store_with};

fn settings(text: &str) -> Settings {
    Config::parse(text, Path::new("/etc/tftpd.toml"))
        .expect("valid config")
        .endpoint
}

fn client(blksize: Option<u16>, windowsize: Option<u16>) -> ClientConfig {
    ClientConfig {
        options: TransferOptions {
            blksize,
            timeout: None,
            tsize: Some(0),
            windowsize,
        },
        timeout: Duration::from_secs(1),
        retries: 5,
        adaptive: true,
        max_download_size: 64 << 20,
    }
}

fn run(world: &mut World) {
    for _ in 0..2_000_000 {
        if !world.step() {
            world.flush();
            if world.is_idle() {
                return;
            }
        }
        world.flush();
    }
    panic!("the simulation ran away");
}

const POLICY: &str = r#"
    [[client]]
    name = "site-a"
    networks = ["10.1.0.0/16", "fd00:a::/32"]
    root = "site-a/"

    [[client]]
    name = "hosts"
    networks = ["10.0.0.0/8"]
    root = "hosts/{ip}/"
    fallback = false
    rewrite = [["^/tftpboot/", ""]]

    [[client]]
    name = "closed"
    networks = ["fd00::/8"]
    read = false
"#;

#[test]
fn clients_of_each_family_get_their_own_tables_answer_over_whole_transfers() {
    let mut rng = Rng::new(12);
    let top = Bytes::from(rng.bytes(30_000));
    let site = Bytes::from(rng.bytes(20_000));
    let host = Bytes::from(rng.bytes(10_000));
    let store = store_with(
        &[
            ("boot.img", top.clone()),
            ("site-a/boot.img", site.clone()),
            ("hosts/10.2.0.9/boot.img", host.clone()),
        ],
        1 << 20,
    );
    let mut world = World::new(store, settings(POLICY), LinkFaults::PERFECT, 1);
    let plain = client(None, None);
    // (IPv4-mapped clients are the endpoint tests' and the loopback tests' business: the
    // simulated link has no dual-stack socket to map them.)
    let cases: [(&str, &str, Option<&Bytes>); 6] = [
        ("10.1.0.5:40000", "boot.img", Some(&site)),
        ("[fd00:a::5]:40000", "boot.img", Some(&site)),
        ("10.2.0.9:40000", "/tftpboot/boot.img", Some(&host)),
        // No fallback under this view: the top-level file is not found.
        ("10.2.0.10:40000", "boot.img", None),
        ("[fd00:b::1]:40000", "boot.img", None),
        ("192.0.2.1:40000", "boot.img", Some(&top)),
    ];
    for (address, name, _) in cases {
        world.download(address, name, plain);
    }
    run(&mut world);
    for (n, (address, name, expected)) in cases.iter().enumerate() {
        let got = &world.clients[n];
        // Compared whole, shown by length.
        let same = got.received.as_deref() == expected.map(|b| &b[..]);
        let len = got.received.as_ref().map(Vec::len);
        assert!(same, "{address} {name}: got {len:?} bytes");
    }
    let code = |n: usize| match &world.clients[n].report.as_ref().unwrap().outcome {
        Outcome::PeerError { code, .. } => Some(*code),
        _ => None,
    };
    assert_eq!(code(3), Some(ErrorCode::FileNotFound));
    assert_eq!(code(4), Some(ErrorCode::AccessViolation));
}

#[test]
fn blocks_fit_the_mtu_the_driver_hands_in_and_the_file_arrives_whole_over_a_lossy_link() {
    let file = Bytes::from(Rng::new(13).bytes(300_000));
    let faults = LinkFaults {
        loss: 0.05,
        duplication: 0.02,
        delay: Duration::from_millis(2),
        jitter: Duration::from_millis(3),
        reorder: true,
    };
    for (address, mtu, expected) in [
        ("192.0.2.1:40000", 1500, 1468),
        ("[2001:db8::1]:40000", 1500, 1448),
        ("[2001:db8::1]:40001", 1280, 1228),
        ("192.0.2.1:40001", 9000, 8968),
    ] {
        let store = store_with(&[("f", file.clone())], 1 << 20);
        let mut world = World::new(store, settings(""), faults, 7);
        world.mtu = Some(mtu);
        world.download(address, "f", client(Some(65464), Some(8)));
        run(&mut world);
        let got = &world.clients[0];
        let len = got.received.as_ref().map(Vec::len);
        assert!(
            got.received.as_deref() == Some(&file[..]),
            "{address} at {mtu}: {len:?}"
        );
        let report = got.report.as_ref().unwrap();
        assert_eq!(report.options.blksize, expected, "{address} at {mtu}");
    }
}

#[test]
fn a_rom_that_needs_small_blocks_and_no_window_gets_them_from_its_table() {
    let file = Bytes::from(Rng::new(14).bytes(50_000));
    let store = store_with(&[("undionly.kpxe", file.clone())], 1 << 20);
    let policy = r#"
        [[client]]
        name = "old-rom"
        networks = ["10.9.0.0/16"]
        max-blksize = 1024
        refuse-options = ["windowsize"]
    "#;
    let mut world = World::new(store, settings(policy), LinkFaults::PERFECT, 3);
    world.mtu = Some(9000);
    world.download(
        "10.9.0.1:40000",
        "undionly.kpxe",
        client(Some(8192), Some(16)),
    );
    world.download(
        "10.8.0.1:40000",
        "undionly.kpxe",
        client(Some(8192), Some(16)),
    );
    run(&mut world);
    let old = world.clients[0].report.as_ref().unwrap();
    assert_eq!((old.options.blksize, old.options.windowsize), (1024, 1));
    let other = world.clients[1].report.as_ref().unwrap();
    assert_eq!(
        (other.options.blksize, other.options.windowsize),
        (8192, 16)
    );
    for c in &world.clients {
        assert!(c.received.as_deref() == Some(&file[..]), "{:?}", c.address);
    }
}
