//! Push rounds against a target in memory that can be down, on a real spool and cache.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::name::normalize_name;
use crate::store::Spool;

/// An origin in memory: what it stores, every PUT it received, and whether it is up.
#[derive(Default)]
struct Memory {
    stored: Mutex<BTreeMap<String, Vec<u8>>>,
    puts: Mutex<Vec<String>>,
    down: Mutex<bool>,
}

impl Memory {
    fn puts(&self) -> Vec<String> {
        self.puts.lock().unwrap().clone()
    }
    fn set_down(&self, down: bool) {
        *self.down.lock().unwrap() = down;
    }
    fn unreachable(&self, name: &str) -> Result<(), FetchError> {
        if *self.down.lock().unwrap() {
            return Err(FetchError {
                url: name.to_owned(),
                failure: FetchFailure::Transport("connection refused".into()),
            });
        }
        Ok(())
    }
}

impl PushTarget for Memory {
    fn put_new(&self, name: &str, body: &[u8], sha256: &str) -> Result<PutReply, FetchError> {
        self.unreachable(name)?;
        assert_eq!(sha256, hex(&Sha256::digest(body)));
        self.puts.lock().unwrap().push(name.to_owned());
        let mut stored = self.stored.lock().unwrap();
        if stored.contains_key(name) {
            return Ok(PutReply::Exists);
        }
        stored.insert(name.to_owned(), body.to_vec());
        Ok(PutReply::Stored)
    }

    fn get(&self, name: &str, _limit: u64) -> Result<Option<Vec<u8>>, FetchError> {
        self.unreachable(name)?;
        Ok(self.stored.lock().unwrap().get(name).cloned())
    }
}

fn spool_with(root: &Path, files: &[(&str, &[u8])]) -> Spool {
    let spool = Spool::open(root).unwrap();
    for (name, data) in files {
        spool.write(&normalize_name(name).unwrap(), data).unwrap();
    }
    spool
}

fn round(cache: &Path, spool: &Path, target: &Memory) -> PushOutcome {
    // A new lock each round, as each `tftpd sync` run takes it.
    let cache = Cache::open(cache).unwrap();
    run_push(&cache, spool, target).unwrap()
}

#[test]
fn an_acknowledged_upload_is_not_sent_again_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, spool) = (dir.path().join("cache"), dir.path().join("spool"));
    spool_with(&spool, &[("sw/a.cfg", b"hostname a"), ("b.bin", b"bbbb")]);
    let target = Memory::default();
    let first = round(&cache, &spool, &target);
    assert_eq!((first.pushed, first.bytes), (2, 14), "{first:?}");
    assert!(first.complete());
    assert_eq!(target.puts(), ["b.bin", "sw/a.cfg"]);
    let again = round(&cache, &spool, &target);
    assert_eq!((again.pushed, again.unchanged), (0, 2), "{again:?}");
    assert_eq!(target.puts().len(), 2, "nothing sent twice");
    // A file touched with the same bytes is not sent either; a new upload is.
    let s = spool_with(&spool, &[("sw/a.cfg", b"hostname a"), ("c", b"c")]);
    let third = round(&cache, &spool, &target);
    assert_eq!((third.pushed, third.unchanged), (1, 2), "{third:?}");
    assert_eq!(target.puts(), ["b.bin", "sw/a.cfg", "c"]);
    drop(s);
}

#[test]
fn an_origin_that_is_down_gets_the_uploads_on_a_later_round() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, spool) = (dir.path().join("cache"), dir.path().join("spool"));
    spool_with(&spool, &[("a", b"1"), ("b", b"2"), ("c", b"3")]);
    let target = Memory::default();
    target.set_down(true);
    let down = round(&cache, &spool, &target);
    assert_eq!(down.pushed, 0);
    // One failed request, and the rest deferred: a down origin costs one timeout.
    assert_eq!((down.failed.len(), down.deferred), (1, 2), "{down:?}");
    assert!(!down.complete());
    assert!(down.failed[0].1.contains("connection refused"), "{down:?}");
    target.set_down(false);
    let up = round(&cache, &spool, &target);
    assert_eq!(up.pushed, 3, "{up:?}");
    assert!(up.complete());
    assert_eq!(target.stored.lock().unwrap().get("b").unwrap(), b"2");
}

#[test]
fn a_412_is_a_lost_acknowledgement_when_the_bytes_match_and_a_conflict_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, spool) = (dir.path().join("cache"), dir.path().join("spool"));
    spool_with(&spool, &[("same", b"s"), ("other", b"mine")]);
    let target = Memory::default();
    target
        .stored
        .lock()
        .unwrap()
        .insert("same".into(), b"s".to_vec());
    target
        .stored
        .lock()
        .unwrap()
        .insert("other".into(), b"theirs".to_vec());
    let first = round(&cache, &spool, &target);
    assert_eq!(first.already_there, 1, "{first:?}");
    assert_eq!(first.conflicts, ["other"]);
    assert_eq!(first.conflicts_recorded, 1);
    assert!(first.complete(), "a conflict is decided, not retried");
    assert_eq!(
        target.stored.lock().unwrap().get("other").unwrap(),
        b"theirs",
        "never overwritten"
    );
    // Neither is sent again; the conflict stays counted.
    let again = round(&cache, &spool, &target);
    assert_eq!(target.puts().len(), 2, "{:?}", target.puts());
    assert_eq!((again.conflicts.len(), again.conflicts_recorded), (0, 1));
    // A new version of the upload is a new try (still refused: the name is taken).
    spool_with(&spool, &[("other", b"mine, again")]);
    let changed = round(&cache, &spool, &target);
    assert_eq!(changed.conflicts, ["other"]);
    assert_eq!(target.puts().len(), 3);
}

#[test]
fn the_push_leaves_the_spool_as_the_daemon_wrote_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, spool) = (dir.path().join("cache"), dir.path().join("spool"));
    spool_with(&spool, &[("d/f", b"f")]);
    // A write in progress: not sent, not removed.
    fs::write(spool.join("d/.tftpd-spool-9-0.tmp"), b"half").unwrap();
    let listing = |p: &Path| {
        let mut names: Vec<_> = walk(p);
        names.sort();
        names
    };
    let before = listing(&spool);
    let target = Memory::default();
    let outcome = round(&cache, &spool, &target);
    assert_eq!(target.puts(), ["d/f"], "{outcome:?}");
    assert_eq!(listing(&spool), before);
    // And what the daemon loads back is what it wrote.
    let load = Spool::open(&spool).unwrap().load().unwrap();
    assert_eq!(load.files.len(), 1);
    assert_eq!(load.files[0].0.as_str(), "d/f");
    // The state is the sync's own, in the cache.
    let state = fs::read_to_string(cache.join(STATE_FILE)).unwrap();
    assert!(
        state.contains("\"d/f\"") && state.contains("acknowledged"),
        "{state}"
    );
}

#[test]
fn a_removed_upload_is_forgotten_and_an_unreadable_state_only_costs_a_412() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, spool) = (dir.path().join("cache"), dir.path().join("spool"));
    let s = spool_with(&spool, &[("a", b"1"), ("b", b"2")]);
    let target = Memory::default();
    round(&cache, &spool, &target);
    s.remove(&normalize_name("b").unwrap()).unwrap();
    round(&cache, &spool, &target);
    let state = fs::read_to_string(cache.join(STATE_FILE)).unwrap();
    assert!(!state.contains("\"b\""), "{state}");
    fs::write(cache.join(STATE_FILE), b"{ not json").unwrap();
    let again = round(&cache, &spool, &target);
    assert_eq!((again.pushed, again.already_there), (0, 1), "{again:?}");
    assert!(again.conflicts.is_empty());
}

/// Every path below `root`, with each file's bytes.
fn walk(root: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
                out.push((path, Vec::new()));
            } else {
                let data = fs::read(&path).unwrap();
                out.push((path, data));
            }
        }
    }
    out
}

#[test]
fn only_an_upload_gone_since_the_listing_is_passed_over_without_a_word() {
    let dir = tempfile::tempdir().unwrap();
    let missing = open_upload(&dir.path().join("missing")).unwrap_err();
    assert!(is_gone(&missing), "{missing}");
    std::os::unix::fs::symlink("elsewhere", dir.path().join("link")).unwrap();
    let link = open_upload(&dir.path().join("link")).unwrap_err();
    assert!(is_gone(&link), "a link swapped in: {link}");
    for errno in [nix::libc::EACCES, nix::libc::EIO] {
        let error = std::io::Error::from_raw_os_error(errno);
        assert!(!is_gone(&error), "{error} is a failure of the round");
    }
}
