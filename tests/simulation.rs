//! The protocol engine proven by simulation: thousands of seeded transfers over a lossy,
//! duplicating, reordering virtual link, plus the hard paths one at a time.

#![allow(clippy::unwrap_used)]

mod sim;

use std::time::Duration;

use bytes::Bytes;
use memtftpd::endpoint::Settings;
use memtftpd::proto::{Mode, Packet, TransferOptions};
use memtftpd::store::Preseed;
use memtftpd::transfer::{ClientConfig, Outcome, TransferConfig};
use sim::{CLIENT, World, addr, open_settings, store_with};
use sim::{Direction, LinkFaults, Rng, Scenario, cut_off_by_retries, run};

const BLKSIZES: [u16; 4] = [8, 512, 1468, 65464];
const WINDOWS: [u16; 3] = [1, 4, 64];

fn server_config(retries: u32) -> TransferConfig {
    TransferConfig {
        timeout: Duration::from_secs(1),
        retries,
        max_blksize: 65464,
        max_windowsize: 64,
        max_timeout: 255,
        max_upload_size: 64 << 20,
    }
}

fn client_config(blksize: u16, windowsize: u16, retries: u32) -> ClientConfig {
    ClientConfig {
        options: TransferOptions {
            blksize: (blksize != 512).then_some(blksize),
            timeout: None,
            tsize: Some(0),
            windowsize: (windowsize != 1).then_some(windowsize),
        },
        timeout: Duration::from_secs(1),
        retries,
        adaptive: true,
        max_download_size: 64 << 20,
    }
}

/// A file size for a run: the edges (empty, exact multiples, one short) most of the
/// time, several MiB now and then where the block size keeps that affordable.
fn pick_size(rng: &mut Rng, blksize: u16) -> usize {
    let b = usize::from(blksize);
    match rng.below(100) {
        0..=9 => 0,
        10..=29 => b * (1 + rng.below(4) as usize),
        30..=49 => b * (1 + rng.below(4) as usize) - 1,
        50..=89 => rng.below(8 * b as u64 + 1) as usize,
        90..=98 => rng.below(64 * 1024) as usize,
        _ if blksize >= 1468 => (2 << 20) + rng.below(2 << 20) as usize,
        _ => rng.below(256 * 1024) as usize,
    }
}

/// Text-like content for netascii runs (plenty of CR and LF), random bytes otherwise.
fn pick_content(rng: &mut Rng, len: usize, mode: Mode) -> Bytes {
    let mut bytes = rng.bytes(len);
    if mode == Mode::Netascii {
        for b in bytes.iter_mut() {
            *b = match *b % 8 {
                0 => b'\n',
                1 => b'\r',
                _ => b'a' + (*b % 26),
            };
        }
    }
    Bytes::from(bytes)
}

#[test]
fn ten_thousand_seeded_runs_deliver_identical_bytes_within_the_patience() {
    let retries = 12;
    let runs = 10_000u64;
    let (mut completed, mut cut_off, mut bytes_moved) = (0u64, 0u64, 0u64);
    let mut cut_off_by_loss = [0u64; 4];
    for seed in 0..runs {
        let mut rng = Rng::new(seed);
        let blksize = rng.pick(&BLKSIZES);
        let windowsize = rng.pick(&WINDOWS);
        let mode = rng.pick(&[Mode::Octet, Mode::Netascii]);
        let direction = rng.pick(&[Direction::Download, Direction::Upload]);
        // Huge blocks with a wide window make 4 MiB windows; keep those files small.
        let mut size = pick_size(&mut rng, blksize);
        if blksize == 8 {
            size = size.min(4096);
        }
        let file = pick_content(&mut rng, size, mode);
        let loss_level = rng.below(4) as usize;
        let faults = LinkFaults {
            loss: [0.0, 0.01, 0.05, 0.2][loss_level],
            duplication: rng.pick(&[0.0, 0.1]),
            delay: Duration::from_millis(1 + rng.below(20)),
            jitter: Duration::from_millis(rng.pick(&[0, 5, 50])),
            reorder: true,
        };
        let scenario = Scenario {
            direction,
            mode,
            file: file.clone(),
            server: server_config(retries),
            client: client_config(blksize, windowsize, retries),
            faults,
            seed,
            trace: false,
        };
        let result = run(&scenario);
        for stray in &result.strays {
            assert_eq!(stray.blocks, 0, "seed {seed}: a stray transfer moved data");
        }
        for report in result
            .strays
            .iter()
            .chain(&result.server)
            .chain([&result.client])
        {
            // Both ends run the adaptive timer under a timeout of 1 s: nobody waits
            // longer than 1 s x (retries + 1) for progress.
            let patience = Duration::from_secs(1) * (retries + 1);
            assert!(
                report.longest_silence <= patience,
                "seed {seed}: {:?} without progress, patience {patience:?}",
                report.longest_silence
            );
        }
        if let Some(delivered) = &result.delivered {
            assert!(
                delivered[..] == file[..],
                "seed {seed}: delivered bytes differ ({scenario:?})"
            );
        }
        if cut_off_by_retries(&result) {
            cut_off += 1;
            cut_off_by_loss[loss_level] += 1;
            continue;
        }
        assert_eq!(
            result.client.outcome,
            Outcome::Completed,
            "seed {seed}: {scenario:?}"
        );
        assert!(
            result.delivered.is_some(),
            "seed {seed}: completed without delivery"
        );
        completed += 1;
        bytes_moved += file.len() as u64;
    }
    println!(
        "{runs} runs: {completed} completed, {cut_off} cut off by the retry limit \
         (by loss 0/1/5/20%: {cut_off_by_loss:?}), {bytes_moved} bytes delivered"
    );
    assert_eq!(
        cut_off_by_loss[0], 0,
        "a run without loss ran out of retries"
    );
    assert!(cut_off <= runs / 50, "too many runs cut off: {cut_off}");
}

/// DATA block numbers the server sent, in order.
fn server_data_blocks(log: &[sim::Sent]) -> Vec<u16> {
    let client: std::net::SocketAddr = CLIENT.parse().expect("literal");
    log.iter()
        .filter(|s| s.to == client)
        .filter_map(|s| match Packet::parse(&s.bytes) {
            Ok(Packet::Data { block, .. }) => Some(block.0),
            _ => None,
        })
        .collect()
}

#[test]
fn a_transfer_of_more_than_65535_blocks_wraps_and_completes_both_ways() {
    let size = 40 << 20; // 81,921 blocks of 512 bytes
    let mut rng = Rng::new(40);
    let file = Bytes::from(rng.bytes(size));
    for direction in [Direction::Download, Direction::Upload] {
        let scenario = Scenario {
            direction,
            mode: Mode::Octet,
            file: file.clone(),
            server: server_config(5),
            client: ClientConfig {
                options: TransferOptions::default(),
                ..client_config(512, 1, 5)
            },
            faults: LinkFaults {
                loss: 0.01,
                ..LinkFaults::PERFECT
            },
            seed: 40,
            trace: direction == Direction::Download,
        };
        let result = run(&scenario);
        assert_eq!(result.client.outcome, Outcome::Completed, "{direction:?}");
        assert_eq!(result.client.blocks, 81_921, "{direction:?}");
        assert!(
            result.delivered.as_deref() == Some(&file[..]),
            "{direction:?}: bytes differ"
        );
        if direction == Direction::Download {
            let blocks = server_data_blocks(&result.log);
            let wrap = blocks
                .windows(2)
                .position(|w| w == [65535, 0])
                .expect("DATA 65535 followed by DATA 0");
            assert_eq!(blocks[wrap + 2], 1, "and then DATA 1 again");
        }
    }
}

#[test]
fn duplicated_datagrams_cost_no_extra_data_sends() {
    for windowsize in WINDOWS {
        let file = Bytes::from(Rng::new(7).bytes(512 * 100 + 17));
        let scenario = Scenario {
            direction: Direction::Download,
            mode: Mode::Octet,
            file: file.clone(),
            server: server_config(5),
            client: client_config(512, windowsize, 5),
            // Every datagram arrives twice, in order: every ACK is duplicated, and every
            // DATA too (so the receiver re-acknowledges what it already has).
            faults: LinkFaults {
                duplication: 1.0,
                ..LinkFaults::PERFECT
            },
            seed: 7,
            trace: true,
        };
        let result = run(&scenario);
        assert_eq!(result.client.outcome, Outcome::Completed);
        let server = result.server.expect("a server transfer");
        assert_eq!(server.retransmits, 0, "window {windowsize}");
        let sent = server_data_blocks(&result.log).len() as u64;
        assert_eq!(
            sent, server.blocks,
            "window {windowsize}: DATA sent vs blocks"
        );
        assert_eq!(server.blocks, 101);
    }
}

#[test]
fn a_silent_client_gets_two_oacks_and_is_given_up_after_the_configured_patience() {
    // The client sent its request and fell silent: the server's OACK is never answered.
    let t0 = std::time::Instant::now();
    let request = memtftpd::proto::Request {
        filename: "f",
        mode: Mode::Octet,
        options: TransferOptions {
            tsize: Some(0),
            ..TransferOptions::default()
        },
    };
    let config = server_config(4);
    let mut transfer = memtftpd::transfer::Transfer::read(
        t0,
        CLIENT.parse().expect("literal"),
        &request,
        Bytes::from_static(b"data"),
        4,
        &config,
    );
    let mut buf = vec![0u8; memtftpd::proto::MAX_DATAGRAM];
    let mut sends = Vec::new();
    let mut now = t0;
    for _ in 0..100 {
        while let Some(t) = transfer.poll_transmit(&mut buf) {
            assert!(matches!(
                Packet::parse(&buf[..t.len]),
                Ok(Packet::Oack { .. })
            ));
            sends.push(now - t0);
        }
        let Some(due) = transfer.poll_timeout() else {
            break;
        };
        now = due;
        transfer.handle_timeout(now);
    }
    let secs: Vec<u64> = sends.iter().map(|d| d.as_secs()).collect();
    assert_eq!(
        secs,
        [0, 1],
        "the OACK and one retransmission: the client never answered"
    );
    assert_eq!(
        now - t0,
        Duration::from_secs(5),
        "given up after the same silence as a verified peer"
    );
    let report = std::iter::from_fn(|| transfer.poll_event())
        .find_map(|e| match e {
            memtftpd::transfer::Event::Finished(r) => Some(r),
            _ => None,
        })
        .expect("a report");
    assert_eq!(report.outcome, Outcome::Unanswered);
    assert_eq!(report.retransmits, 1);
}

// --- The endpoint in the loop: what only a simulation of the whole server can show. ---

fn perfect_world(files: &[(&str, Bytes)], settings: Settings) -> World {
    World::new(store_with(files, 1 << 20), settings, LinkFaults::PERFECT, 1)
}

fn plain_client() -> ClientConfig {
    ClientConfig {
        options: TransferOptions::default(),
        ..client_config(512, 1, 5)
    }
}

/// Runs `world` until idle; returns the most transfers it ever held at once.
fn run_counting(world: &mut World) -> usize {
    let mut most = 0;
    for _ in 0..1_000_000 {
        let more = world.step();
        world.flush();
        most = most.max(world.endpoint.counters().active);
        if !more || world.is_idle() {
            return most;
        }
    }
    panic!("the simulation ran away");
}

#[test]
fn past_max_transfers_clients_wait_unanswered_and_all_get_their_file() {
    let file = Bytes::from(Rng::new(3).bytes(20_000));
    let settings = Settings {
        max_transfers: 2,
        ..open_settings(server_config(5), false)
    };
    let mut world = perfect_world(&[("f", file.clone())], settings);
    for n in 0..5 {
        world.download(&format!("127.0.0.{}:40000", 10 + n), "f", plain_client());
    }
    assert!(run_counting(&mut world) <= 2, "the table never held more");
    for client in &world.clients {
        // No ERROR (a boot ROM would give up): the client's retransmitted request got in.
        assert_eq!(client.received.as_deref(), Some(&file[..]), "{client:?}");
    }
}

#[test]
fn past_the_per_client_cap_that_client_waits_and_others_go_on() {
    let file = Bytes::from(Rng::new(4).bytes(20_000));
    let settings = Settings {
        max_transfers_per_client: 1,
        max_unverified_per_client: 1,
        ..open_settings(server_config(5), false)
    };
    let mut world = perfect_world(&[("f", file.clone())], settings);
    for address in ["127.0.0.10:40000", "127.0.0.10:40001", "127.0.0.11:40000"] {
        world.download(address, "f", plain_client());
    }
    run_counting(&mut world);
    for client in &world.clients {
        assert_eq!(client.received.as_deref(), Some(&file[..]), "{client:?}");
    }
    // The two clients of 127.0.0.10 could not run side by side: one was evicted
    // unanswered or waited, and sent its request again.
    let evicted = (world.server_reports.iter())
        .filter(|(_, r)| r.outcome == Outcome::Evicted)
        .count() as u64;
    assert!(world.endpoint.counters().dropped + evicted >= 1);
}

#[test]
fn a_stranger_on_a_transfers_port_gets_error_5_and_the_transfer_completes() {
    let file = Bytes::from(Rng::new(5).bytes(50_000));
    let mut world = perfect_world(
        &[("f", file.clone())],
        open_settings(server_config(5), false),
    );
    world.link.trace = true;
    let client = world.download(CLIENT, "f", plain_client());
    let stranger = addr("127.0.0.66:6666");
    let mut stranger_sent = false;
    for _ in 0..100_000 {
        if !world.step() || world.is_idle() {
            break;
        }
        // Once the transfer runs, a third party pokes its port with an ACK.
        let tid = world.clients[client].report.is_none().then(|| {
            (world.link.log.iter().rev())
                .find(|s| s.to == addr(CLIENT) && s.from != world.listen)
                .map(|s| s.from)
        });
        if let Some(Some(tid)) = tid
            && !stranger_sent
        {
            let ack = [0, 4, 0, 1];
            world.link.send(world.now, stranger, tid, &ack);
            stranger_sent = true;
        }
    }
    assert!(stranger_sent);
    assert_eq!(world.clients[client].received.as_deref(), Some(&file[..]));
    let answers: Vec<_> = world.link.log.iter().filter(|s| s.to == stranger).collect();
    assert_eq!(answers.len(), 1);
    assert!(matches!(
        Packet::parse(&answers[0].bytes),
        Ok(Packet::Error {
            code: memtftpd::proto::ErrorCode::UnknownTransferId,
            ..
        })
    ));
}

#[test]
fn two_transfers_from_one_address_run_side_by_side_in_single_port_mode() {
    let a = Bytes::from(Rng::new(6).bytes(30_000));
    let b = Bytes::from(Rng::new(7).bytes(45_000));
    let faults = LinkFaults {
        loss: 0.05,
        duplication: 0.05,
        delay: Duration::from_millis(2),
        jitter: Duration::from_millis(5),
        reorder: true,
    };
    let store = store_with(&[("a", a.clone()), ("b", b.clone())], 1 << 20);
    let mut world = World::new(store, open_settings(server_config(12), true), faults, 6);
    world.link.trace = true;
    let first = world.download("127.0.0.2:40000", "a", client_config(1468, 4, 12));
    let second = world.download("127.0.0.2:40001", "b", client_config(512, 1, 12));
    world.run(1_000_000);
    assert_eq!(world.clients[first].received.as_deref(), Some(&a[..]));
    assert_eq!(world.clients[second].received.as_deref(), Some(&b[..]));
    let listen = world.listen;
    assert!(
        world
            .link
            .log
            .iter()
            .all(|s| s.from == listen || s.to == listen),
        "every server datagram leaves from the listening address"
    );
}

#[test]
fn a_reload_swapping_the_store_mid_transfer_leaves_the_running_transfer_its_bytes() {
    let old = Bytes::from(Rng::new(8).bytes(200_000));
    let new = Bytes::from(Rng::new(9).bytes(100_000));
    let mut world = perfect_world(
        &[("f", old.clone())],
        open_settings(server_config(5), false),
    );
    let running = world.download("127.0.0.10:40000", "f", plain_client());
    for _ in 0..200 {
        assert!(world.step());
    }
    assert!(world.clients[running].report.is_none(), "still running");
    let mut preseed = Preseed::new(false);
    preseed.insert("f".parse().unwrap(), new.clone());
    world
        .store
        .replace_preseed(preseed, upload_policy_for_sim());
    let after = world.download("127.0.0.11:40000", "f", plain_client());
    world.run(1_000_000);
    assert_eq!(world.clients[running].received.as_deref(), Some(&old[..]));
    assert_eq!(world.clients[after].received.as_deref(), Some(&new[..]));
}

fn upload_policy_for_sim() -> memtftpd::store::UploadPolicy {
    memtftpd::store::UploadPolicy {
        enabled: true,
        max_file_size: 1 << 20,
        max_total_size: u64::MAX,
        overwrite: false,
        allow: Vec::new(),
    }
}

#[test]
fn a_silent_peers_slot_is_freed_at_the_expected_virtual_time() {
    let settings = Settings {
        max_transfers: 1,
        ..open_settings(server_config(4), false)
    };
    let mut world = perfect_world(&[("f", Bytes::from_static(b"data"))], settings);
    world.link.trace = true;
    // A request from a host that never answers (no client there).
    let rrq = [&[0u8, 1][..], b"f\0octet\0"].concat();
    let listen = world.listen;
    world
        .link
        .send(world.now, addr("127.0.0.99:9999"), listen, &rrq);
    let sent_at = world.now;
    let mut freed_at = None;
    for _ in 0..1000 {
        let more = world.step();
        world.flush();
        if freed_at.is_none() && world.endpoint.counters().active == 0 {
            freed_at = Some(world.now);
        }
        if !more {
            break;
        }
    }
    let (_, report) = &world.server_reports[0];
    assert_eq!(report.outcome, Outcome::Unanswered);
    // Delivered after the link's delay; the DATA and one retransmission; given up after
    // timeout x (retries + 1) of silence.
    let delay = LinkFaults::PERFECT.delay;
    assert_eq!(freed_at, Some(sent_at + delay + Duration::from_secs(5)));
    assert_eq!(report.retransmits, 1);
    let to_requester = (world.link.log.iter())
        .filter(|s| s.to == addr("127.0.0.99:9999"))
        .count();
    assert_eq!(
        to_requester, 2,
        "two datagrams to a requester that never answers"
    );
    assert_eq!(world.endpoint.counters().active, 0);
    // The slot is free: the next client gets in.
    let next = world.download("127.0.0.10:40000", "f", plain_client());
    world.run(10_000);
    assert_eq!(world.clients[next].received.as_deref(), Some(&b"data"[..]));
}

// --- The retransmission timer: adaptive (RFC 6298) against the fixed one. ---

/// The server and client of the timer comparisons: the shipped defaults (timeout 2 s,
/// retries 5) at both ends, blksize 1468 and tsize; `fixed` asks for `timeout 2`, which
/// the server grants and both ends then keep exactly (RFC 2349): the fixed timer every
/// transfer had before the adaptive one.
fn timer_configs(windowsize: u16, fixed: bool) -> (TransferConfig, ClientConfig) {
    let server = TransferConfig::default();
    let client = ClientConfig {
        options: TransferOptions {
            blksize: Some(1468),
            timeout: fixed.then_some(2),
            tsize: Some(0),
            windowsize: (windowsize > 1).then_some(windowsize),
        },
        timeout: server.timeout,
        retries: server.retries,
        adaptive: true,
        max_download_size: 64 << 20,
    };
    (server, client)
}

/// What a batch of runs gave.
#[derive(Debug, Default, Clone, Copy)]
struct Batch {
    runs: u64,
    completed: u64,
    /// Summed over the completed runs.
    time: Duration,
    blocks: u64,
    /// Retransmissions by both ends, and timer expiries.
    retransmits: u64,
    timeouts: u64,
}

impl Batch {
    fn mean(&self) -> Duration {
        self.time / self.completed.max(1) as u32
    }

    fn add(&mut self, scenario: &Scenario, result: &sim::Run) {
        self.runs += 1;
        let server = result.server.as_ref();
        self.retransmits += result.client.retransmits + server.map_or(0, |s| s.retransmits);
        self.timeouts += result.client.timeouts + server.map_or(0, |s| s.timeouts);
        if result.client.outcome == Outcome::Completed
            && result.delivered.as_deref() == Some(&scenario.file[..])
        {
            self.completed += 1;
            self.time += result.client.duration;
            self.blocks += result.client.blocks;
        }
    }
}

/// `runs` transfers of 256 KiB (179 blocks) at `loss` each way with 5 ms of delay and up
/// to 10 ms of jitter (a queue's: no reordering, which a window would take for loss),
/// half of them downloads, a third windowed (windowsize 8).
fn lossy_batch(loss: f64, runs: u64, fixed: bool) -> Batch {
    let mut batch = Batch::default();
    for seed in 0..runs {
        let windowsize = if seed % 3 == 2 { 8 } else { 1 };
        let (server, client) = timer_configs(windowsize, fixed);
        let scenario = Scenario {
            direction: [Direction::Download, Direction::Upload][seed as usize % 2],
            mode: Mode::Octet,
            file: Bytes::from(Rng::new(seed).bytes(256 << 10)),
            server,
            client,
            faults: LinkFaults {
                loss,
                duplication: 0.0,
                delay: Duration::from_millis(5),
                jitter: Duration::from_millis(10),
                reorder: false,
            },
            seed: 1000 + seed,
            trace: false,
        };
        batch.add(&scenario, &run(&scenario));
    }
    batch
}

#[test]
fn the_adaptive_timer_at_least_halves_the_mean_transfer_time_at_every_loss_rate() {
    for loss in [0.01, 0.05, 0.10, 0.20] {
        let adaptive = lossy_batch(loss, 60, false);
        let fixed = lossy_batch(loss, 60, true);
        println!(
            "loss {:>2.0}%: adaptive {}/{} completed, mean {:.2} s, {:.1} retransmits/run; \
             fixed {}/{} completed, mean {:.2} s, {:.1} retransmits/run; ratio {:.2}",
            loss * 100.0,
            adaptive.completed,
            adaptive.runs,
            adaptive.mean().as_secs_f64(),
            adaptive.retransmits as f64 / adaptive.runs as f64,
            fixed.completed,
            fixed.runs,
            fixed.mean().as_secs_f64(),
            fixed.retransmits as f64 / fixed.runs as f64,
            adaptive.mean().as_secs_f64() / fixed.mean().as_secs_f64(),
        );
        assert!(
            adaptive.completed >= fixed.completed,
            "loss {loss}: {} completed with the adaptive timer, {} with the fixed one",
            adaptive.completed,
            fixed.completed
        );
        assert!(
            adaptive.mean() * 2 <= fixed.mean(),
            "loss {loss}: mean {:?} adaptive against {:?} fixed",
            adaptive.mean(),
            fixed.mean()
        );
    }
}

#[test]
fn a_clean_link_with_jitter_has_almost_no_spurious_retransmissions() {
    // No loss, no duplication, 1 to 20 ms of delay each way and up to 5, 20 or 50 ms of
    // jitter, both ways: a spurious retransmission is a DATA block sent again that the
    // receiver already had. Lock-step with jitter that reorders and with jitter that only
    // delays (a queue); windowed (8) with the latter: RFC 7440 makes a receiver report a
    // block that overtook another as a gap and the sender resend from it, whatever the
    // timer, so reordering would measure that, not the timer.
    let kinds = [(1u16, true), (1, false), (8, false)];
    let mut totals = [(0u64, 0u64); 3];
    let mut seed = 0;
    for delay in [1, 5, 20] {
        for jitter in [5, 20, 50] {
            for (k, (windowsize, reorder)) in kinds.into_iter().enumerate() {
                for direction in [Direction::Download, Direction::Upload] {
                    seed += 1;
                    let (server, client) = timer_configs(windowsize, false);
                    let scenario = Scenario {
                        direction,
                        mode: Mode::Octet,
                        file: Bytes::from(Rng::new(seed).bytes(1 << 20)),
                        server,
                        client,
                        faults: LinkFaults {
                            loss: 0.0,
                            duplication: 0.0,
                            delay: Duration::from_millis(delay),
                            jitter: Duration::from_millis(jitter),
                            reorder,
                        },
                        seed,
                        trace: true,
                    };
                    let result = run(&scenario);
                    assert_eq!(result.client.outcome, Outcome::Completed, "{scenario:?}");
                    let spurious = sim::spurious_data(&result, direction);
                    totals[k].0 += spurious;
                    totals[k].1 += result.client.blocks;
                }
            }
        }
    }
    let per_thousand = |(n, blocks): (u64, u64)| n as f64 * 1000.0 / blocks as f64;
    for ((windowsize, reorder), total) in kinds.into_iter().zip(totals) {
        println!(
            "clean link with jitter (windowsize {windowsize}, reordering {reorder}): {} spurious \
             retransmissions in {} blocks, {:.3} per 1,000",
            total.0,
            total.1,
            per_thousand(total)
        );
    }
    for total in totals {
        assert!(per_thousand(total) <= 1.0, "{total:?}");
    }
}

#[test]
fn a_peer_that_falls_silent_mid_transfer_is_given_up_after_the_same_silence_at_either_pace() {
    let file = Bytes::from(Rng::new(21).bytes(1 << 20));
    for fixed in [false, true] {
        let (server, client) = timer_configs(1, fixed);
        let store = store_with(&[("f", file.clone())], 1 << 20);
        let faults = LinkFaults {
            loss: 0.0,
            duplication: 0.0,
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(5),
            reorder: true,
        };
        let mut world = World::new(store, open_settings(server, false), faults, 21);
        world.download(CLIENT, "f", client);
        // A hundred blocks or so in, the link goes dead both ways.
        for _ in 0..300 {
            assert!(world.step());
        }
        assert!(world.clients[0].report.is_none(), "still running");
        world.link.set_faults(LinkFaults {
            loss: 1.0,
            ..faults
        });
        world.run(100_000);
        let patience = server.timeout * (server.retries + 1);
        let (_, report) = &world.server_reports[0];
        assert_eq!(report.outcome, Outcome::TimedOut, "fixed {fixed}");
        assert_eq!(report.longest_silence, patience, "fixed {fixed}");
        let client = world.clients[0].report.as_ref().expect("the client ended");
        assert_eq!(client.outcome, Outcome::TimedOut, "fixed {fixed}");
        assert_eq!(client.longest_silence, patience, "fixed {fixed}");
        if fixed {
            assert_eq!(report.longest_retry_streak, server.retries);
        } else {
            // The same silence holds more, earlier retransmissions.
            assert!(report.longest_retry_streak > server.retries);
        }
    }
}
