//! Writes the `endpoint` target's seed corpus: one file per scenario below, each a
//! sequence of steps that reaches a part of the endpoint a fuzzer would take long to find
//! from nothing (a whole download, a windowed one, an upload, the per-client cap, single-
//! port routing, a stop and a reload mid-transfer, ...).
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example endpoint_seeds -- fuzz/corpus/endpoint`
//! (`fuzz/gen-corpus` runs it).

use std::path::PathBuf;

use memtftpd_fuzz::endpoint::{
    Datagram, Input, Name, OptionPair, OptionValue, Setup, Source, Step, run,
};

fn setup(single_port: bool) -> Setup {
    Setup {
        single_port,
        overwrite: false,
        case_insensitive: false,
        allow_up_only: true,
        max_transfers: 4,
        max_transfers_per_client: 2,
        timeout_secs: 1,
        retries: 2,
        max_blksize: 4,
        max_windowsize: 4,
        max_file_size: 3000,
        max_total_size: 5000,
        shutdown_grace: 20,
    }
}

fn option(name: u8, value: u64) -> OptionPair {
    OptionPair {
        name,
        value: OptionValue::Number(value),
    }
}

fn request(write: bool, name: u8, mode: u8, options: Vec<OptionPair>) -> Datagram {
    Datagram::Request {
        write,
        name: Name::Known(name),
        mode,
        options,
    }
}

fn from(peer: u8, datagram: Datagram) -> Step {
    Step::Listener {
        peer,
        listener: 0,
        socket_fails: false,
        datagram,
    }
}

fn own(slot: u8, datagram: Datagram) -> Step {
    Step::Transfer {
        slot,
        from: Source::Own,
        datagram,
    }
}

fn ack(slot: u8, block: u16) -> Step {
    own(slot, Datagram::Ack { block })
}

fn data(slot: u8, block: u16, len: u16) -> Step {
    own(
        slot,
        Datagram::Data {
            block,
            len,
            fill: b'd',
        },
    )
}

fn scenarios() -> Vec<(&'static str, Vec<Step>)> {
    let blksize8 = || vec![option(0, 8), option(2, 0), option(3, 4), option(5, 1)];
    vec![
        // RRQ "a", DATA 1 (6 bytes), ACK 1: done.
        (
            "download",
            vec![from(0, request(false, 0, 0, vec![])), ack(0, 1)],
        ),
        // blksize 8, tsize, windowsize 4, timeout 1: OACK, ACK 0, then windows of 4.
        (
            "windowed-download",
            vec![
                from(3, request(false, 1, 0, blksize8())),
                ack(0, 0),
                ack(0, 4),
                ack(0, 8),
                ack(0, 6),
                Step::Advance { ms: 1500 },
                ack(0, 12),
            ],
        ),
        // netascii text with CR and LF.
        (
            "netascii-download",
            vec![
                from(5, request(false, 2, 1, vec![option(2, 0), option(0, 512)])),
                ack(0, 0),
                ack(0, 1),
                ack(0, 2),
            ],
        ),
        // A file of exactly one block ends with an empty one; an empty file is one empty block.
        (
            "block-and-empty",
            vec![
                from(0, request(false, 4, 0, vec![])),
                ack(0, 1),
                ack(0, 2),
                from(1, request(false, 3, 3, vec![])),
                ack(1, 1),
            ],
        ),
        // WRQ up/new with tsize: OACK, DATA 1 full, DATA 2 short: committed, then linger.
        (
            "upload",
            vec![
                from(0, request(true, 7, 0, vec![option(0, 512), option(2, 700)])),
                data(0, 1, 512),
                data(0, 2, 188),
                data(0, 2, 188),
                Step::Advance { ms: 5000 },
            ],
        ),
        // Uploads refused: too large by tsize, outside up/, over the total as data arrives.
        (
            "upload-refusals",
            vec![
                from(0, request(true, 8, 0, vec![option(2, 60000)])),
                from(1, request(true, 9, 0, vec![])),
                from(2, request(true, 8, 0, vec![])),
                data(0, 1, 512),
                data(0, 2, 512),
                data(0, 3, 512),
                data(0, 4, 512),
                data(0, 5, 512),
                data(0, 6, 512),
            ],
        ),
        // Nobody answers: the first packet and one retransmission, then silence.
        (
            "unverified",
            vec![
                from(6, request(false, 1, 0, vec![option(3, 8)])),
                from(4, request(true, 7, 0, vec![])),
                Step::Advance { ms: 10_000 },
                Step::Advance { ms: 60_000 },
            ],
        ),
        // One address from three ports and its mapped twin: the per-client cap.
        (
            "per-client-cap",
            vec![
                from(0, request(false, 0, 0, vec![])),
                from(1, request(false, 1, 0, vec![])),
                from(5, request(false, 2, 0, vec![])),
                from(3, request(false, 0, 0, vec![])),
                from(2, request(false, 0, 0, vec![])),
                ack(0, 1),
                from(5, request(false, 2, 0, vec![])),
            ],
        ),
        // Strangers on a transfer's port, and a handle that has ended.
        (
            "strangers-and-stale",
            vec![
                from(0, request(false, 1, 0, vec![])),
                Step::Transfer {
                    slot: 0,
                    from: Source::Peer(2),
                    datagram: Datagram::Ack { block: 1 },
                },
                Step::Transfer {
                    slot: 0,
                    from: Source::Peer(1),
                    datagram: Datagram::Error {
                        code: 0,
                        message: b"bye".to_vec(),
                    },
                },
                own(
                    0,
                    Datagram::Error {
                        code: 8,
                        message: b"probe".to_vec(),
                    },
                ),
                ack(0, 1),
            ],
        ),
        // Garbage, stray DATA and a mail-mode request at the listener; names refused.
        (
            "noise",
            vec![
                from(7, Datagram::Raw(vec![0, 9, 1, 2])),
                from(7, Datagram::Ack { block: 3 }),
                from(7, request(false, 0, 4, vec![])),
                from(2, request(false, 12, 0, vec![])),
                from(2, request(false, 13, 0, vec![])),
                from(
                    2,
                    Datagram::Request {
                        write: false,
                        name: Name::Raw(b"\xff\xfe".to_vec()),
                        mode: 0,
                        options: vec![],
                    },
                ),
                from(
                    2,
                    Datagram::Oack {
                        options: blksize8(),
                    },
                ),
            ],
        ),
        // The driver cannot open a transfer's socket.
        (
            "socket-fails",
            vec![
                Step::Listener {
                    peer: 0,
                    listener: 1,
                    socket_fails: true,
                    datagram: request(false, 0, 0, vec![]),
                },
                from(0, request(false, 0, 0, vec![])),
                ack(1, 1),
            ],
        ),
        // A stop with transfers running: they may finish within the grace, then not.
        (
            "stop",
            vec![
                from(0, request(false, 1, 0, vec![option(0, 512)])),
                from(3, request(true, 7, 0, vec![])),
                ack(0, 0),
                Step::Stop,
                from(2, request(false, 0, 0, vec![])),
                ack(0, 1),
                data(1, 1, 10),
                Step::Advance { ms: 3000 },
            ],
        ),
        // A reload mid-transfer, to the other case mode and without "a".
        (
            "reload",
            vec![
                from(0, request(false, 5, 0, vec![])),
                Step::Reload {
                    case_insensitive: true,
                    drop_a: true,
                },
                from(1, request(false, 6, 0, vec![])),
                from(2, request(false, 0, 0, vec![])),
                ack(0, 1),
                ack(1, 1),
            ],
        ),
        // Time passing with the driver busy, then many timers due at once.
        (
            "stall",
            vec![
                from(0, request(false, 1, 0, vec![option(0, 8)])),
                from(3, request(false, 1, 0, vec![option(3, 4), option(0, 16)])),
                ack(1, 0),
                Step::Stall { ms: 9000 },
                ack(0, 0),
                Step::Stall { ms: 700 },
                ack(1, 4),
            ],
        ),
    ]
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| {
        eprintln!("usage: endpoint_seeds DIRECTORY");
        std::process::exit(64);
    }));
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    for single_port in [false, true] {
        for (name, steps) in scenarios() {
            let input = Input {
                setup: setup(single_port),
                steps,
            };
            let bytes = input.encode();
            assert_eq!(Input::decode(&bytes), input, "{name} reads back");
            // A seed is a valid run: the invariants hold on it.
            run(&input);
            let mode = if single_port {
                "single-port"
            } else {
                "own-port"
            };
            let path = dir.join(format!("{name}-{mode}"));
            std::fs::write(&path, bytes).expect("write a seed");
        }
    }
}
