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
        single_port,
        shutdown_grace: Duration::from_secs(10),
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
        let t0 = Instant::now();
        Harness {
            endpoint: Endpoint::new(store(), settings(single_port)),
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

#[test]
fn max_transfers_turns_requests_away_until_a_transfer_ends() {
    let mut h = Harness::new(false);
    let handles: Vec<_> = (0..4)
        .map(|n| h.start(&format!("127.0.0.{}:4000", n + 1), "big"))
        .collect();
    h.sent();
    assert_eq!(h.request("127.0.0.9:4000", &rrq("big")), None);
    let refusal = h.sent();
    assert_eq!(refusal.len(), 1);
    assert!(matches!(refusal[0].0, Via::Listener { listener: 0, .. }));
    assert!(error_message(&refusal[0].2).contains("server busy"));
    // The first client gives up: its slot is free for the next request.
    h.endpoint
        .handle_transfer(h.now, handles[0], addr("127.0.0.1:4000"), &give_up());
    h.sent();
    h.events();
    h.start("127.0.0.9:4000", "big");
}

#[test]
fn the_per_client_cap_counts_addresses_not_ports_and_frees_with_the_transfer() {
    let mut h = Harness::new(false);
    let first = h.start("127.0.0.5:1000", "big");
    h.start("127.0.0.5:1001", "big");
    h.sent();
    assert_eq!(h.request("127.0.0.5:1002", &rrq("big")), None);
    assert!(error_message(&h.sent()[0].2).contains("from your address"));
    h.start("127.0.0.6:1000", "big");
    // A dual-stack socket's mapped address is the same client.
    assert_eq!(h.request("[::ffff:127.0.0.5]:1003", &rrq("big")), None);
    h.sent();
    h.endpoint
        .handle_transfer(h.now, first, addr("127.0.0.5:1000"), &give_up());
    h.sent();
    h.events();
    h.start("127.0.0.5:1002", "big");
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
    assert_eq!(ended(&h.events()), [(handle, Outcome::TimedOut)]);
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
    assert_eq!(h.request("127.0.0.6:1000", &rrq("big")), None);
    assert!(error_message(&h.sent()[0].2).contains("shutting down"));
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
    assert_eq!(logged, answered);
    h.now += Duration::from_secs(1);
    h.request("127.0.0.7:999", b"\x00\x09junk");
    let events = h.events();
    let [EndpointEvent::Refused(record)] = &events[..] else {
        panic!("one record: {events:?}");
    };
    assert_eq!(record.suppressed, 1000 - answered as u64);
    assert_eq!(
        h.endpoint.counters().refused,
        0,
        "noise is not a refused request"
    );
}

#[test]
fn a_write_hands_its_file_and_permit_on_when_complete() {
    let mut h = Harness::new(false);
    let wrq = encode(&Packet::Wrq(Request {
        filename: "up/file",
        mode: Mode::Octet,
        options: TransferOptions::default(),
    }));
    let Some(DatagramEvent::NewTransfer {
        handle,
        window_bytes,
        ..
    }) = h.request("127.0.0.5:1000", &wrq)
    else {
        panic!("a write starts");
    };
    assert_eq!(window_bytes, Some(516));
    h.sent();
    let data = encode(&Packet::Data {
        block: BlockNumber(1),
        data: b"backup",
    });
    h.endpoint
        .handle_transfer(h.now, handle, addr("127.0.0.5:1000"), &data);
    h.sent();
    let events = h.events();
    let [EndpointEvent::Upload { permit, data, .. }] = &events[..] else {
        panic!("the upload is handed on: {events:?}");
    };
    assert_eq!(permit.name().as_str(), "up/file");
    assert_eq!(data, b"backup");
}
