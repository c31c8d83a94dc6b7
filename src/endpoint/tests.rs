//! The endpoint in virtual time, with a real store: admission, routing, timers, drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::proto::{BlockNumber, MAX_DATAGRAM, Mode, Packet, Request, TransferOptions};
use crate::store::{Preseed, Store, UploadPolicy};
use crate::transfer::{Outcome, TransferConfig};

const TIMEOUT: Duration = Duration::from_secs(2);
const RETRIES: u32 = 3;

fn settings(single_port: bool) -> Settings {
    Settings {
        transfer: TransferConfig {
            timeout: TIMEOUT,
            retries: RETRIES,
            ..TransferConfig::default()
        },
        max_transfers: 4,
        max_transfers_per_client: 2,
        max_unverified_per_client: 2,
        ipv6_client_prefix: 64,
        single_port,
        shutdown_grace: Duration::from_secs(10),
        uploads_in_flight: UploadsInFlight::default(),
        policy: Default::default(),
        port_range: None,
    }
}

fn store() -> Arc<Store> {
    let mut preseed = Preseed::new(false);
    preseed.insert("small".parse().unwrap(), Bytes::from_static(b"hello"));
    preseed.insert("big".parse().unwrap(), Bytes::from(vec![7u8; 5000]));
    let upload = UploadPolicy {
        enabled: true,
        max_file_size: 1 << 20,
        max_total_size: 1 << 20,
        overwrite: false,
        allow: Vec::new(),
    };
    Arc::new(Store::new(preseed, upload))
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn local() -> Option<LocalEnd> {
    Some(LocalEnd {
        ip: addr("127.0.0.1:69").ip(),
        ifindex: 0,
        mtu: None,
    })
}

fn encode(packet: &Packet<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; packet.encoded_len()];
    packet.encode(&mut buf).unwrap();
    buf
}

fn rrq(name: &str) -> Vec<u8> {
    encode(&Packet::Rrq(Request {
        filename: name,
        mode: Mode::Octet,
        options: TransferOptions::default(),
    }))
}

/// A client's ERROR: it gives up.
fn give_up() -> Vec<u8> {
    encode(&Packet::Error {
        code: ErrorCode::NotDefined,
        message: "bye".into(),
    })
}

fn ack(block: u16) -> Vec<u8> {
    encode(&Packet::Ack {
        block: BlockNumber(block),
    })
}

/// An endpoint, a virtual clock, and what came out of it.
struct Harness {
    endpoint: Endpoint,
    t0: Instant,
    now: Instant,
    buf: Vec<u8>,
}

impl Harness {
    fn new(single_port: bool) -> Harness {
        Harness::with(store(), settings(single_port))
    }

    fn with(store: Arc<Store>, settings: Settings) -> Harness {
        let t0 = Instant::now();
        Harness {
            endpoint: Endpoint::new(store, settings),
            t0,
            now: t0,
            buf: vec![0u8; MAX_DATAGRAM],
        }
    }

    /// A datagram to listener 0.
    fn request(&mut self, peer: &str, datagram: &[u8]) -> Option<DatagramEvent> {
        self.endpoint
            .handle(self.now, 0, local(), addr(peer), datagram)
    }

    /// A new transfer's handle (the request must start one).
    fn start(&mut self, peer: &str, name: &str) -> TransferHandle {
        match self.request(peer, &rrq(name)) {
            Some(DatagramEvent::NewTransfer { handle, .. }) => handle,
            other => panic!("no transfer started: {other:?}"),
        }
    }

    /// Everything the endpoint sends now: (via, destination, packet bytes).
    fn sent(&mut self) -> Vec<(Via, SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(o) = self.endpoint.poll_transmit(&mut self.buf) {
            let bytes = self.buf[..o.transmit.len].to_vec();
            out.push((o.via, o.transmit.destination, bytes));
        }
        out
    }

    fn events(&mut self) -> Vec<EndpointEvent> {
        std::iter::from_fn(|| self.endpoint.poll_event()).collect()
    }

    /// Advances the virtual clock to the endpoint's next timer and runs it.
    fn wait_for_timer(&mut self) -> bool {
        let Some(at) = self.endpoint.poll_timeout() else {
            return false;
        };
        self.now = self.now.max(at);
        self.endpoint.handle_timeout(self.now);
        true
    }
}

fn error_message(bytes: &[u8]) -> String {
    match Packet::parse(bytes) {
        Ok(Packet::Error { message, .. }) => message.into_owned(),
        other => panic!("expected an ERROR, got {other:?}"),
    }
}

fn ended(events: &[EndpointEvent]) -> Vec<(TransferHandle, Outcome)> {
    events
        .iter()
        .filter_map(|e| match e {
            EndpointEvent::Ended { handle, report, .. } => Some((*handle, report.outcome.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_read_runs_on_its_own_route_and_ends_with_a_report() {
    let mut h = Harness::new(false);
    let handle = h.start("127.0.0.9:4000", "small");
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, Via::Transfer(handle));
    assert_eq!(sent[0].1, addr("127.0.0.9:4000"));
    assert_eq!(h.endpoint.counters().active, 1);
    h.endpoint
        .handle_transfer(h.now, handle, addr("127.0.0.9:4000"), &ack(1));
    assert!(h.sent().is_empty());
    assert_eq!(ended(&h.events()), [(handle, Outcome::Completed)]);
    let counters = h.endpoint.counters();
    assert_eq!((counters.active, counters.served), (0, 1));
    assert_eq!(
        h.endpoint.table.scheduled(),
        0,
        "nothing left in the schedule"
    );
}

/// The client of `handle` at `peer` acknowledges DATA 1: the transfer is verified.
fn answer(h: &mut Harness, handle: TransferHandle, peer: &str) {
    h.endpoint
        .handle_transfer(h.now, handle, addr(peer), &ack(1));
    h.sent();
}

fn outcomes(events: &[EndpointEvent]) -> Vec<Outcome> {
    ended(events).into_iter().map(|(_, o)| o).collect()
}

#[test]
fn a_full_table_of_verified_transfers_drops_requests_unanswered_until_one_ends() {
    let mut h = Harness::new(false);
    let peers: Vec<String> = (1..=4).map(|n| format!("127.0.0.{n}:4000")).collect();
    let handles: Vec<_> = peers.iter().map(|p| h.start(p, "big")).collect();
    h.sent();
    for (handle, peer) in handles.iter().zip(&peers) {
        answer(&mut h, *handle, peer);
    }
    // No ERROR, which a boot ROM would give up on: the client sends the request again.
    assert_eq!(h.request("127.0.0.9:4000", &rrq("big")), None);
    assert!(h.sent().is_empty());
    assert_eq!(h.endpoint.counters().dropped, 1);
    h.endpoint
        .handle_transfer(h.now, handles[0], addr(&peers[0]), &give_up());
    h.sent();
    h.events();
    h.start("127.0.0.9:4000", "big");
}

#[test]
fn a_full_table_makes_room_by_evicting_the_oldest_unverified_transfer() {
    let mut h = Harness::new(false);
    let handles: Vec<_> = (1..=4)
        .map(|n| h.start(&format!("127.0.0.{n}:4000"), "big"))
        .collect();
    h.sent();
    // The first one is real: its client answers.
    answer(&mut h, handles[0], "127.0.0.1:4000");
    h.start("127.0.0.9:4000", "big");
    assert_eq!(ended(&h.events()), [(handles[1], Outcome::Evicted)]);
    let sent = h.sent();
    assert!(sent.iter().all(|(_, to, _)| *to == addr("127.0.0.9:4000")));
    // Evicting again takes the next unverified one, never the verified one.
    h.start("127.0.0.10:4000", "big");
    assert_eq!(ended(&h.events()), [(handles[2], Outcome::Evicted)]);
    assert_eq!(h.endpoint.counters().active, 4);
}

#[test]
fn the_per_client_caps_count_addresses_not_ports_and_ipv6_clients_by_their_64() {
    let mut h = Harness::new(false);
    let first = h.start("127.0.0.5:1000", "big");
    let second = h.start("127.0.0.5:1001", "big");
    h.sent();
    // Two unverified from one address: a third waits while they may still answer, then,
    // once they have had their retransmission, evicts the oldest of them.
    assert_eq!(h.request("[::ffff:127.0.0.5]:1002", &rrq("big")), None);
    h.now += TIMEOUT;
    assert_eq!(h.request("[::ffff:127.0.0.5]:1002", &rrq("big")), None);
    h.now += TIMEOUT;
    let third = h.start("[::ffff:127.0.0.5]:1002", "big");
    assert_eq!(ended(&h.events()), [(first, Outcome::Evicted)]);
    h.sent();
    // Verified, they hold: the cap of 2 drops the next request unanswered.
    answer(&mut h, second, "127.0.0.5:1001");
    answer(&mut h, third, "127.0.0.5:1002");
    assert_eq!(h.request("127.0.0.5:1003", &rrq("big")), None);
    assert!(h.sent().is_empty());
    h.start("127.0.0.6:1000", "big");
    h.sent();
    h.events();
    // An IPv6 host with a whole /64 is one client: its third request evicts its first.
    // (The table holds 4: the one at the other /64 makes room by evicting too.)
    let v6 = h.start("[fd00::1]:1000", "small");
    h.start("[fd00::2]:1000", "small");
    h.now += 2 * TIMEOUT;
    h.start("[fd00::3]:1000", "small");
    assert!(outcomes(&h.events()).iter().all(|o| *o == Outcome::Evicted));
    assert!(h.endpoint.table.get_mut(v6).is_none(), "the oldest went");
    let (all, unverified) = h.endpoint.table.load_of("fd00::".parse().unwrap());
    assert!(all <= 2 && unverified <= 2);
}

#[test]
fn a_repeated_request_resends_the_first_packet_and_a_new_one_supersedes_it() {
    let mut h = Harness::new(false);
    let first = h.start("127.0.0.5:1000", "big");
    let data_1 = h.sent();
    assert_eq!(h.request("127.0.0.5:1000", &rrq("big")), None);
    assert_eq!(
        h.sent(),
        data_1,
        "the same DATA 1 again, from the same transfer"
    );
    assert_eq!(h.endpoint.counters().active, 1);
    // The client gave that one up and asks for another file from the same port.
    let second = h.start("127.0.0.5:1000", "small");
    assert_eq!(ended(&h.events()), [(first, Outcome::Superseded)]);
    assert_ne!(first, second);
    // Once verified, a repeat of the request is a duplicate and changes nothing.
    let third = h.start("127.0.0.6:1000", "big");
    h.sent();
    answer(&mut h, third, "127.0.0.6:1000");
    assert_eq!(h.request("127.0.0.6:1000", &rrq("big")), None);
    assert!(h.sent().is_empty());
}

#[test]
fn single_port_a_new_request_from_a_port_whose_upload_lingers_starts_at_once() {
    let mut h = Harness::new(true);
    let wrq = encode(&Packet::Wrq(Request {
        filename: "up/a",
        mode: Mode::Octet,
        options: TransferOptions::default(),
    }));
    let upload = match h.request("127.0.0.5:1000", &wrq) {
        Some(DatagramEvent::NewTransfer { handle, .. }) => handle,
        other => panic!("{other:?}"),
    };
    h.sent();
    let data = encode(&Packet::Data {
        block: BlockNumber(1),
        data: b"x",
    });
    h.request("127.0.0.5:1000", &data);
    h.sent();
    for event in h.events() {
        if let EndpointEvent::Commit(commit) = event {
            h.endpoint.commit(h.now, commit, None).expect("stored");
        }
    }
    h.sent();
    // Its last ACK went out; the upload lingers for a retransmitted last block. The
    // client's next request from the same port starts a transfer at once.
    let read = h.start("127.0.0.5:1000", "small");
    assert_eq!(ended(&h.events()), [(upload, Outcome::Completed)]);
    let sent = h.sent();
    assert!(matches!(
        Packet::parse(&sent[0].2),
        Ok(Packet::Data {
            block: BlockNumber(1),
            ..
        })
    ));
    assert_ne!(read, upload);
}

#[test]
fn single_port_routes_two_transfers_of_one_address_by_port_and_answers_strangers() {
    let mut h = Harness::new(true);
    let a = h.start("127.0.0.5:1000", "small");
    let b = h.start("127.0.0.5:1001", "big");
    let sent = h.sent();
    assert_eq!(sent.len(), 2);
    for (via, ..) in &sent {
        assert!(matches!(via, Via::Listener { listener: 0, .. }));
    }
    // b's ACK 1 moves b on; a is untouched.
    assert_eq!(
        h.request("127.0.0.5:1001", &ack(1)),
        Some(DatagramEvent::Routed(b))
    );
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, addr("127.0.0.5:1001"));
    assert!(matches!(
        Packet::parse(&sent[0].2),
        Ok(Packet::Data {
            block: BlockNumber(2),
            ..
        })
    ));
    assert_eq!(
        h.request("127.0.0.5:1000", &ack(1)),
        Some(DatagramEvent::Routed(a))
    );
    h.sent();
    assert_eq!(ended(&h.events()), [(a, Outcome::Completed)]);
    // An ACK from a port with no transfer is noise: ERROR 5, no transfer touched.
    assert_eq!(h.request("127.0.0.5:1002", &ack(1)), None);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert!(matches!(
        Packet::parse(&sent[0].2),
        Ok(Packet::Error {
            code: ErrorCode::UnknownTransferId,
            ..
        })
    ));
    assert_eq!(h.endpoint.counters().active, 1);
}

#[test]
fn a_peer_that_never_answers_gets_two_datagrams_and_its_slot_back_after_the_patience() {
    let mut h = Harness::new(false);
    let handle = h.start("127.0.0.5:1000", "big");
    let mut sends = h.sent().len();
    let mut steps = 0;
    while h.endpoint.counters().active > 0 && steps < 100 {
        assert!(h.wait_for_timer());
        sends += h.sent().len();
        steps += 1;
    }
    assert_eq!(ended(&h.events()), [(handle, Outcome::Unanswered)]);
    assert_eq!(sends, 2, "the first DATA and one retransmission");
    assert_eq!(h.now - h.t0, TIMEOUT * (RETRIES + 1));
    assert_eq!(h.endpoint.poll_timeout(), None);
    assert_eq!(h.endpoint.table.scheduled(), 0);
}

#[test]
fn the_schedule_holds_one_entry_per_transfer_and_none_once_it_ends() {
    let mut h = Harness::new(false);
    let peer = addr("127.0.0.5:1000");
    let handle = h.start("127.0.0.5:1000", "big");
    h.sent();
    for block in 1..=9u16 {
        h.now += Duration::from_millis(10);
        h.endpoint.handle_transfer(h.now, handle, peer, &ack(block));
        h.sent();
        assert_eq!(h.endpoint.table.scheduled(), 1);
    }
    h.endpoint.handle_transfer(h.now, handle, peer, &ack(10));
    h.sent();
    assert_eq!(ended(&h.events()), [(handle, Outcome::Completed)]);
    assert_eq!(h.endpoint.table.scheduled(), 0);
}

#[test]
fn a_stop_refuses_new_requests_and_aborts_what_runs_past_the_grace() {
    let mut h = Harness::new(true);
    let handle = h.start("127.0.0.5:1000", "big");
    h.sent();
    h.endpoint.begin_stop(h.now);
    assert!(h.endpoint.is_stopping() && !h.endpoint.is_stopped());
    // Dropped unanswered: the client tries again and finds the next instance.
    assert_eq!(h.request("127.0.0.6:1000", &rrq("big")), None);
    assert!(h.sent().is_empty());
    assert_eq!(h.endpoint.counters().dropped, 1);
    // The client keeps going slowly; at the end of the grace the transfer is aborted.
    h.now += Duration::from_secs(1);
    h.request("127.0.0.5:1000", &ack(1));
    h.sent();
    let mut steps = 0;
    while !h.endpoint.is_stopped() && steps < 100 {
        assert!(h.wait_for_timer());
        let sent = h.sent();
        if let Some((_, _, bytes)) = sent.last()
            && matches!(Packet::parse(bytes), Ok(Packet::Error { .. }))
        {
            assert!(error_message(bytes).contains("shutting down"));
        }
        steps += 1;
    }
    assert!(h.endpoint.is_stopped());
    assert!(h.now - h.t0 <= Duration::from_secs(10));
    let events = h.events();
    assert!(matches!(ended(&events)[..], [(done, _)] if done == handle));
}

#[test]
fn a_rejected_transfer_is_answered_from_the_listener_and_leaves_nothing() {
    let mut h = Harness::new(false);
    let handle = h.start("127.0.0.5:1000", "big");
    h.endpoint.reject(handle, 0, local(), "no sockets left");
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert!(matches!(sent[0].0, Via::Listener { listener: 0, .. }));
    assert!(error_message(&sent[0].2).contains("no sockets left"));
    assert_eq!(h.endpoint.counters().active, 0);
    assert_eq!(h.endpoint.counters().refused, 1);
    assert!(matches!(h.events()[..], [EndpointEvent::Refused(_)]));
}

#[test]
fn a_stale_handle_does_not_reach_the_transfer_that_reuses_its_index() {
    let mut h = Harness::new(false);
    let old = h.start("127.0.0.5:1000", "small");
    h.sent();
    h.endpoint
        .handle_transfer(h.now, old, addr("127.0.0.5:1000"), &ack(1));
    h.sent();
    h.events();
    let new = h.start("127.0.0.6:1000", "big");
    assert_eq!(old.index(), new.index());
    h.sent();
    h.endpoint
        .handle_transfer(h.now, old, addr("127.0.0.6:1000"), &ack(1));
    assert!(h.sent().is_empty(), "the old handle reaches nothing");
}

#[test]
fn noise_is_answered_and_logged_within_the_rate_limit() {
    let mut h = Harness::new(false);
    let (mut answered, mut logged) = (0, 0);
    for n in 0..1000u16 {
        h.request(&format!("127.0.0.7:{}", 1000 + n), b"\x00\x09junk");
        answered += h.sent().len();
        logged += h.events().len();
    }
    assert!(answered <= 100, "{answered} answers to a burst of junk");
    assert_eq!(logged, 10, "one client's burst in the log");
    h.now += Duration::from_secs(1);
    h.request("127.0.0.7:999", b"\x00\x09junk");
    let events = h.events();
    let [EndpointEvent::Refused(record)] = &events[..] else {
        panic!("one record: {events:?}");
    };
    assert_eq!(
        record.suppressed,
        answered as u64 - 10,
        "what the log left out"
    );
    assert_eq!(
        h.endpoint.counters().refused,
        0,
        "noise is not a refused request"
    );
}

#[test]
fn a_flood_of_refused_requests_logs_a_few_lines_counts_them_all_and_sums_up_later() {
    let mut h = Harness::new(false);
    let mut logged = 0;
    for n in 0..1000u16 {
        h.request(&format!("127.0.0.7:{}", 1000 + n), &rrq("missing"));
        let sent = h.sent();
        assert_eq!(sent.len(), 1, "every request is answered");
        assert!(error_message(&sent[0].2).contains("not found"));
        logged += h.events().len();
    }
    assert_eq!(logged, 10);
    assert_eq!(
        h.endpoint.counters().refused,
        1000,
        "the counters are exact"
    );
    // Quiet: the count of what the log left out is reported on its own.
    assert!(h.wait_for_timer());
    assert!(matches!(h.events()[..], [EndpointEvent::Suppressed(990)]));
}

fn wrq(name: &str, tsize: Option<u64>) -> Vec<u8> {
    encode(&Packet::Wrq(Request {
        filename: name,
        mode: Mode::Octet,
        options: TransferOptions {
            tsize,
            ..TransferOptions::default()
        },
    }))
}

fn data(block: u16, bytes: &[u8]) -> Vec<u8> {
    encode(&Packet::Data {
        block: BlockNumber(block),
        data: bytes,
    })
}

/// What came out, parsed.
fn packets(sent: &[(Via, SocketAddr, Vec<u8>)]) -> Vec<Packet<'_>> {
    sent.iter()
        .map(|(_, _, bytes)| Packet::parse(bytes).unwrap())
        .collect()
}

/// A write of `name` from `peer` that has sent its whole (one-block) file: returns its
/// handle and the commit the endpoint asks for.
fn upload_to_commit(h: &mut Harness, peer: &str, name: &str, bytes: &[u8]) -> UploadCommit {
    let Some(DatagramEvent::NewTransfer { handle, .. }) = h.request(peer, &wrq(name, None)) else {
        panic!("a write starts");
    };
    assert_eq!(
        packets(&h.sent()),
        [Packet::Ack {
            block: BlockNumber(0)
        }]
    );
    h.endpoint
        .handle_transfer(h.now, handle, addr(peer), &data(1, bytes));
    assert!(h.sent().is_empty(), "no final ACK before the store decides");
    let mut events = h.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let Some(EndpointEvent::Commit(commit)) = events.pop() else {
        panic!("the upload is handed on: {events:?}");
    };
    assert_eq!(commit.handle, handle);
    commit
}

#[test]
fn a_write_holds_its_final_ack_until_the_store_has_taken_the_file() {
    let store = store();
    let mut h = Harness::with(Arc::clone(&store), settings(false));
    let commit = upload_to_commit(&mut h, "127.0.0.5:1000", "up/file", b"backup");
    assert_eq!(commit.permit.name().as_str(), "up/file");
    assert_eq!(commit.data, b"backup");
    // Nothing times out while the store decides, however long it takes (a wake-up
    // scheduled before finds nothing to do).
    for _ in 0..3 {
        h.wait_for_timer();
        assert!(h.sent().is_empty());
    }
    assert_eq!(h.endpoint.poll_timeout(), None);
    let handle = commit.handle;
    let arrived = std::time::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
    h.endpoint
        .commit(h.now, commit, Some(arrived))
        .expect("stored");
    assert_eq!(
        packets(&h.sent()),
        [Packet::Ack {
            block: BlockNumber(1)
        }]
    );
    assert_eq!(
        &store.get(&"up/file".parse().unwrap()).unwrap().data()[..],
        b"backup"
    );
    // The file list says when it arrived.
    let listed = store.files("up/", 10);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].origin.loaded(), Some(arrived));
    // Then it lingers and completes as before.
    let mut events = Vec::new();
    while h.wait_for_timer() {
        h.sent();
        events.extend(h.events());
    }
    assert_eq!(ended(&events), [(handle, Outcome::Completed)]);
}

#[test]
fn a_commit_the_store_refuses_sends_its_error_instead_of_the_final_ack() {
    // A reload between the request and the last block: first the total is lowered
    // under the file, then uploads are turned off.
    let cases = [
        (
            UploadPolicy {
                enabled: true,
                max_file_size: 4,
                max_total_size: 4,
                overwrite: false,
                allow: Vec::new(),
            },
            ErrorCode::DiskFull,
        ),
        (UploadPolicy::disabled(), ErrorCode::AccessViolation),
    ];
    for (reloaded, code) in cases {
        let store = store();
        let mut h = Harness::with(Arc::clone(&store), settings(false));
        let commit = upload_to_commit(&mut h, "127.0.0.5:1000", "f", b"backup");
        store.replace_preseed(Preseed::new(false), reloaded);
        let handle = commit.handle;
        let refusal = h.endpoint.commit(h.now, commit, None).expect_err("refused");
        assert_eq!(refusal.error_code(), code);
        let sent = h.sent();
        assert!(
            matches!(packets(&sent)[..], [Packet::Error { code: c, .. }] if c == code),
            "{:?}",
            packets(&sent)
        );
        let events = h.events();
        assert!(
            matches!(&ended(&events)[..], [(ended, Outcome::Refused { code: c, .. })]
                if *ended == handle && *c == code),
            "logged as refused, not completed: {events:?}"
        );
        assert!(store.get(&"f".parse().unwrap()).is_none());
        assert_eq!(store.stats().reserved_bytes, 0);
        assert_eq!(h.endpoint.counters().refused, 1);
    }
}

#[test]
fn a_second_write_of_a_name_in_flight_is_refused_with_error_6_without_overwrite() {
    let store = store();
    let mut h = Harness::with(Arc::clone(&store), settings(false));
    let first = upload_to_commit(&mut h, "127.0.0.5:1000", "new", b"first");
    assert_eq!(h.request("127.0.0.6:1000", &wrq("new", None)), None);
    let sent = h.sent();
    assert!(
        matches!(
            packets(&sent)[..],
            [Packet::Error {
                code: ErrorCode::FileExists,
                ..
            }]
        ),
        "{:?}",
        packets(&sent)
    );
    h.endpoint
        .commit(h.now, first, None)
        .expect("the first wins");
    assert_eq!(
        &store.get(&"new".parse().unwrap()).unwrap().data()[..],
        b"first"
    );
}

#[test]
fn uploads_in_flight_reserve_against_the_total_so_it_is_promised_once() {
    // 1 MiB in all: three uploads announcing 300 KiB fit; the fourth waits unanswered
    // (the room is promised, not gone), and one that can never fit is refused at once.
    let store = store();
    let mut h = Harness::with(Arc::clone(&store), settings(false));
    for n in 1..=3 {
        let peer = format!("127.0.1.{n}:1000");
        let started = h.request(&peer, &wrq(&format!("u{n}"), Some(300 << 10)));
        assert!(
            matches!(started, Some(DatagramEvent::NewTransfer { .. })),
            "{n}"
        );
        h.sent();
    }
    assert_eq!(store.stats().reserved_bytes, 900 << 10);
    assert_eq!(
        h.request("127.0.1.4:1000", &wrq("u4", Some(300 << 10))),
        None
    );
    assert!(h.sent().is_empty(), "a request that waits is not answered");
    assert_eq!(h.endpoint.counters().dropped, 1);
    // Uploads already stored hold 0: only what the whole total cannot hold is refused.
    assert_eq!(
        h.request("127.0.1.5:1000", &wrq("u5", Some((1 << 20) + 1))),
        None
    );
    let sent = h.sent();
    assert!(
        matches!(
            packets(&sent)[..],
            [Packet::Error {
                code: ErrorCode::DiskFull,
                ..
            }]
        ),
        "{:?}",
        packets(&sent)
    );
    // Unanswered, they end, and their reservations go with them.
    while h.wait_for_timer() {
        h.sent();
        h.events();
    }
    assert_eq!(h.endpoint.counters().active, 0);
    assert_eq!(store.stats().reserved_bytes, 0);
    assert_eq!(store.stats().uploads_in_flight, 0);
}

#[test]
fn a_client_over_its_upload_cap_is_dropped_unanswered_and_ipv6_counts_by_prefix() {
    let store = store();
    let mut settings = settings(false);
    settings.uploads_in_flight.max_per_client = 1;
    let mut h = Harness::with(Arc::clone(&store), settings);
    let Some(DatagramEvent::NewTransfer { handle, .. }) =
        h.request("[2001:db8::1]:1000", &wrq("a", Some(10)))
    else {
        panic!("the first upload starts");
    };
    h.sent();
    // Another host of the same /64: the same client.
    assert_eq!(h.request("[2001:db8::2]:1000", &wrq("b", Some(10))), None);
    let sent = h.sent();
    assert!(
        sent.is_empty(),
        "dropped without an answer: {:?}",
        packets(&sent)
    );
    assert_eq!(h.endpoint.counters().dropped, 1);
    assert_eq!(
        store.stats().uploads_in_flight,
        1,
        "the dropped one reserved nothing"
    );
    // A read from the same client is not an upload.
    assert!(h.request("[2001:db8::2]:1001", &rrq("small")).is_some());
    // Another /64 is another client.
    assert!(
        h.request("[2001:db8:0:1::2]:1000", &wrq("c", Some(10)))
            .is_some()
    );
    // Once the first upload is over, the client gets in again.
    h.endpoint
        .handle_transfer(h.now, handle, addr("[2001:db8::1]:1000"), &give_up());
    h.sent();
    h.events();
    assert!(
        h.request("[2001:db8::2]:1000", &wrq("b", Some(10)))
            .is_some()
    );
}

#[test]
fn a_stop_waits_for_an_upload_the_store_is_taking_then_acknowledges_it() {
    let store = store();
    let mut h = Harness::with(Arc::clone(&store), settings(false));
    let commit = upload_to_commit(&mut h, "127.0.0.5:1000", "f", b"late");
    h.endpoint.begin_stop(h.now);
    h.sent();
    // Past the grace: the write holding its ACK is not aborted.
    h.now += Duration::from_secs(11);
    h.endpoint.handle_timeout(h.now);
    assert!(h.sent().is_empty());
    assert!(!h.endpoint.is_stopped());
    let handle = commit.handle;
    h.endpoint.commit(h.now, commit, None).expect("stored");
    assert_eq!(
        packets(&h.sent()),
        [Packet::Ack {
            block: BlockNumber(1)
        }]
    );
    assert_eq!(ended(&h.events()), [(handle, Outcome::Completed)]);
    assert!(h.endpoint.is_stopped());
}

#[test]
fn single_port_two_forged_datagrams_get_a_few_single_blocks_never_a_window() {
    let mut h = Harness::new(true);
    let victim = "127.0.0.7:5000";
    let request = encode(&Packet::Rrq(Request {
        filename: "big",
        mode: Mode::Octet,
        options: TransferOptions {
            blksize: Some(65464),
            windowsize: Some(64),
            ..TransferOptions::default()
        },
    }));
    // Forged: both from the victim's address, to the listening port.
    h.request(victim, &request);
    let mut to_victim = h.sent();
    h.request(victim, &ack(0));
    for _ in 0..100 {
        to_victim.extend(h.sent());
        if !h.wait_for_timer() {
            break;
        }
    }
    let kinds: Vec<String> = to_victim
        .iter()
        .map(|(_, _, bytes)| match Packet::parse(bytes) {
            Ok(Packet::Oack { .. }) => "OACK".to_owned(),
            Ok(Packet::Data { block, .. }) => format!("DATA {}", block.0),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["OACK", "DATA 1", "DATA 1"]);
    assert_eq!(h.endpoint.counters().active, 0);
}

#[test]
fn a_window_of_data_comes_as_one_run_of_equal_segments_within_the_limits() {
    let mut h = Harness::new(false);
    let client = "127.0.0.8:6000";
    // "big" is 5000 bytes: blocks 1-4 of 1024 and a short block 5 of 904.
    let request = encode(&Packet::Rrq(Request {
        filename: "big",
        mode: Mode::Octet,
        options: TransferOptions {
            blksize: Some(1024),
            windowsize: Some(8),
            ..TransferOptions::default()
        },
    }));
    let handle = match h.request(client, &request) {
        Some(DatagramEvent::NewTransfer { handle, .. }) => handle,
        other => panic!("no transfer started: {other:?}"),
    };
    assert!(matches!(
        h.sent()[..],
        [(_, _, ref oack)] if matches!(Packet::parse(oack), Ok(Packet::Oack { .. }))
    ));
    h.endpoint
        .handle_transfer(h.now, handle, addr(client), &ack(0));
    // At most three segments per run: blocks 1-3, then 4 and the short 5.
    let mut runs = Vec::new();
    while let Some(out) = h.endpoint.poll_transmit_segments(&mut h.buf, 3, 1 << 16) {
        assert_eq!(out.via, Via::Transfer(handle));
        assert_eq!(out.transmit.destination, addr(client));
        let blocks: Vec<(u16, usize)> = h.buf[..out.transmit.len]
            .chunks(out.segment)
            .map(|datagram| match Packet::parse(datagram) {
                Ok(Packet::Data { block, data }) => (block.0, data.len()),
                other => panic!("not DATA: {other:?}"),
            })
            .collect();
        runs.push(blocks);
    }
    assert_eq!(
        runs,
        [
            vec![(1, 1024), (2, 1024), (3, 1024)],
            vec![(4, 1024), (5, 904)]
        ]
    );
    // The byte limit cuts a run as well: the whole window again, two blocks a run.
    h.endpoint
        .handle_transfer(h.now, handle, addr(client), &ack(0));
    assert!(h.wait_for_timer());
    let mut sizes = Vec::new();
    while let Some(out) = h
        .endpoint
        .poll_transmit_segments(&mut h.buf, 64, 2 * 1028 + 1)
    {
        sizes.push(out.transmit.len.div_ceil(out.segment));
    }
    assert!(sizes.iter().all(|&n| n <= 2), "{sizes:?}");
    assert_eq!(
        sizes.iter().sum::<usize>(),
        5,
        "the window resent whole: {sizes:?}"
    );
}
