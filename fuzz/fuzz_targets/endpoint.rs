//! The endpoint fed arbitrary datagram sequences from a few peers in virtual time, with
//! a real store: see `memtftpd_fuzz::endpoint` for the steps and the invariants checked
//! after each.

#![no_main]

use libfuzzer_sys::fuzz_target;
use memtftpd_fuzz::endpoint::{Input, run};

fuzz_target!(|input: Input| run(&input));
