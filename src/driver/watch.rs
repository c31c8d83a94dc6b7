//! The watch: inotify on every directory a preseed load walked and on each source's own entry
//! in its parent directory, so that files that change on disk are served as their new selves
//! without a reload.
//!
//! The event loop reads the inotify descriptor ([`Watch`]) and turns events into rescans,
//! which run the same incremental loader as SIGHUP and start-up. Only a file's state after it
//! is closed for writing (`IN_CLOSE_WRITE`) or moved in (`IN_MOVED_TO`) counts: a regular file
//! created or modified is *being written* until it is closed, and the loader serves on what it
//! read from there before (or nothing yet) while it is. The watcher is the loader's
//! [`WriteTracker`]: at the start of a load and again after its reads it first applies every
//! event the kernel has queued, so a file written to before the loader read it, or while it
//! did, is not taken from that load. Deletions,
//! renames, new directories, attribute changes (a file made readable) and a directory that
//! disappears ask for a rescan too. Bursts are debounced: the rescan starts once events have
//! been quiet for [`QUIET`], and at most [`MAX_DELAY`] after the first. A queue overflow
//! (`IN_Q_OVERFLOW`: events were lost) asks for a rescan as well, and the rescan walks every
//! source, so nothing is missed.
//!
//! After each load the daemon hands the new [`WatchList`] to [`Watcher::update`], which adds
//! watches for directories that appeared and removes those of directories that went.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};

use super::{Server, ServerError, WATCH};
use crate::store::{WatchList, WriteTracker};

/// How long events must have been quiet before a rescan starts.
pub const QUIET: Duration = Duration::from_millis(100);
/// The longest a rescan waits after the first event of a burst.
pub const MAX_DELAY: Duration = Duration::from_millis(500);
/// How long a load waits, after reading files, before it looks at the events a last time.
/// The kernel changes a file before it queues the event that says so (a truncation or a
/// write is visible to a reader a moment before its `IN_MODIFY`); a writer preempted in
/// between would otherwise go unseen by a load that read the file just then.
pub const SETTLE_GRACE: Duration = Duration::from_millis(50);
/// A file marked as being written with no event for this long is taken as it is (a writer
/// that died, or a hard link made with `ln`, which no close follows).
pub const WRITING_EXPIRY: Duration = Duration::from_secs(60);

/// What a watch asks the kernel for: a directory's entries coming, going and changing
/// mode, and, where file contents count, their writes.
fn mask(contents: bool) -> AddWatchFlags {
    let entries = AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR;
    if contents {
        entries | AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MODIFY
    } else {
        entries
    }
}

/// One watched directory: every entry counts (a walked directory), or only the named ones
/// (the parent of a source).
#[derive(Debug, Default)]
struct Watched {
    path: PathBuf,
    every_entry: bool,
    names: HashSet<OsString>,
    /// Watched with write events ([`Watched::wants_contents`] when last updated).
    contents: bool,
}

impl Watched {
    fn counts(&self, name: Option<&OsString>) -> bool {
        self.every_entry || name.is_some_and(|n| self.names.contains(n))
    }

    /// True when writes to files in it count: in a walked directory, and in a source's
    /// parent when the source is a file. A parent whose named entries are directories
    /// (or symlinks to them, as `<cache>/current`) asks for no write events, so that
    /// writes to its other files (a log beside the preseed) never wake the watch.
    fn wants_contents(&self) -> bool {
        self.every_entry
            || (self.names.iter())
                .any(|name| !std::fs::metadata(self.path.join(name)).is_ok_and(|m| m.is_dir()))
    }
}

#[derive(Debug, Default)]
struct State {
    by_wd: HashMap<WatchDescriptor, Watched>,
    by_path: HashMap<PathBuf, WatchDescriptor>,
    /// Regular files created or modified and not closed yet, with their last event.
    writing: HashMap<PathBuf, Instant>,
    /// Files with any event since the current load began.
    touched: HashSet<PathBuf>,
    /// Events read for a load asked for a rescan the event loop did not see.
    asked: bool,
    /// Times the kernel's event queue overflowed (events were lost).
    overflows: u64,
    /// Events read, in all.
    events: u64,
    /// The watch limit was reached (said once).
    limit_reported: bool,
}

/// The inotify instance, its watches and the files being written; shared by the event loop
/// and the loads (on the reload thread) that update it.
#[derive(Debug, Clone)]
pub struct Watcher {
    inotify: Arc<Inotify>,
    state: Arc<Mutex<State>>,
}

impl Watcher {
    /// A watcher with no watches yet.
    pub fn new() -> io::Result<Watcher> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        Ok(Watcher {
            inotify: Arc::new(inotify),
            state: Arc::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches what `list` names and nothing else; returns how many directories are watched
    /// now that were not before (a load after which something new is watched is followed by
    /// one more rescan, for what changed before its watch was in place).
    pub fn update(&self, list: &WatchList) -> usize {
        let mut wanted: HashMap<&Path, Watched> = HashMap::new();
        for dir in &list.directories {
            wanted.entry(dir).or_default().every_entry = true;
        }
        for (dir, name) in &list.entries {
            wanted.entry(dir).or_default().names.insert(name.clone());
        }
        let mut state = self.state();
        let stale: Vec<PathBuf> = (state.by_path.keys())
            .filter(|p| !wanted.contains_key(p.as_path()))
            .cloned()
            .collect();
        for path in stale {
            if let Some(wd) = state.by_path.remove(&path) {
                state.by_wd.remove(&wd);
                // Already gone when the directory was: nothing to undo then.
                let _ = self.inotify.rm_watch(wd);
            }
        }
        let mut added = 0;
        for (path, mut watched) in wanted {
            watched.path = path.to_path_buf();
            watched.contents = watched.wants_contents();
            let known = state.by_path.get(path).copied();
            if let Some(wd) = known
                && state
                    .by_wd
                    .get(&wd)
                    .is_some_and(|w| w.contents == watched.contents)
            {
                state.by_wd.insert(wd, watched);
                continue;
            }
            // Watching a watched directory again replaces its mask and keeps its descriptor.
            match self.inotify.add_watch(path, mask(watched.contents)) {
                Ok(wd) => {
                    added += usize::from(known.is_none());
                    state.by_path.insert(path.to_path_buf(), wd);
                    state.by_wd.insert(wd, watched);
                }
                // Gone since the walk: the rescan its deletion asks for follows.
                Err(Errno::ENOENT | Errno::ENOTDIR) => {}
                Err(Errno::ENOSPC) => {
                    if !std::mem::replace(&mut state.limit_reported, true) {
                        log::warn!(
                            "cannot watch {}: the limit of inotify watches is reached \
                             (sysctl fs.inotify.max_user_watches); changes there are seen at \
                             the next reload",
                            path.display()
                        );
                    }
                }
                Err(e) => log::warn!(
                    "cannot watch {}: {e}; changes there are seen at the next reload",
                    path.display()
                ),
            }
        }
        added
    }

    /// The files being written now (as the loader names them), for the loader to hold.
    pub fn writing(&self) -> HashSet<PathBuf> {
        let now = Instant::now();
        let state = self.state();
        (state.writing.iter())
            .filter(|(_, at)| now.duration_since(**at) < WRITING_EXPIRY)
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// True (once) when events read for a load asked for a rescan: the caller asks for one.
    pub fn take_asked(&self) -> bool {
        std::mem::take(&mut self.state().asked)
    }

    /// Reads what the kernel has queued (under the lock, so that events are applied in
    /// order whoever reads them); for a load, remembers whether they ask for a rescan.
    fn drain(&self, state: &mut State) {
        match read_queued(&self.inotify, state) {
            Ok(asks) => state.asked |= asks,
            Err(e) => log::warn!("reading the watch's events: {e}"),
        }
    }
}

/// What a load asks of the watch: every event up to this moment is applied first, so a file
/// written before the load read it is known.
impl WriteTracker for Watcher {
    fn begin(&self) -> HashSet<PathBuf> {
        {
            let mut state = self.state();
            self.drain(&mut state);
            state.touched.clear();
        }
        self.writing()
    }

    fn settle(&self) -> HashSet<PathBuf> {
        // On the reload thread: transfers go on meanwhile.
        std::thread::sleep(SETTLE_GRACE);
        let touched = {
            let mut state = self.state();
            self.drain(&mut state);
            state.touched.clone()
        };
        let mut late = self.writing();
        late.extend(touched);
        late
    }
}

impl Watcher {
    /// How many directories are watched.
    pub fn watched(&self) -> usize {
        self.state().by_path.len()
    }

    /// How many events were read, in all (each woke the event loop).
    pub fn events_read(&self) -> u64 {
        self.state().events
    }

    /// How many times the kernel's event queue overflowed (each time, a rescan walks every
    /// source).
    pub fn overflows(&self) -> u64 {
        self.state().overflows
    }

    /// When the oldest file marked as being written expires.
    fn next_expiry(&self) -> Option<Instant> {
        self.state()
            .writing
            .values()
            .min()
            .map(|at| *at + WRITING_EXPIRY)
    }

    fn expire(&self, now: Instant) {
        self.state()
            .writing
            .retain(|_, at| now.duration_since(*at) < WRITING_EXPIRY);
    }

    /// Reads every queued event; true when one of them asks for a rescan.
    fn read_events(&self) -> nix::Result<bool> {
        let mut state = self.state();
        read_queued(&self.inotify, &mut state)
    }
}

/// The watch as the event loop runs it: the loop reads the watcher's inotify descriptor
/// when it is readable and wakes at [`Watch::next_wake`]; a burst of events that asks for a
/// rescan is debounced into one ([`Watch::rescan_due`]). On the loop's own thread, so the
/// process has no thread of its own for the watch (a process with more than one thread
/// pays for it in every system call on a descriptor: the kernel counts references then).
#[derive(Debug)]
pub(super) struct Watch {
    watcher: Watcher,
    /// The first and the latest event of a burst that asks for a rescan.
    burst: Option<(Instant, Instant)>,
    /// When the oldest file marked as being written expires, as of the last look (so the
    /// loop takes no lock per wake-up; a load's reads mark files too: [`Watch::refresh`]).
    expiry: Option<Instant>,
}

impl Watch {
    pub(super) fn new(watcher: Watcher) -> Watch {
        Watch {
            watcher,
            burst: None,
            expiry: None,
        }
    }

    /// The descriptor to wait on for readability.
    pub(super) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.watcher.inotify.as_fd()
    }

    /// When the loop must look at the watch again without an event: the end of a burst,
    /// or the expiry of the oldest file marked as being written.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        let due = (self.burst).map(|(first, last)| (first + MAX_DELAY).min(last + QUIET));
        [due, self.expiry].into_iter().flatten().min()
    }

    /// Reads every queued event (the descriptor is readable).
    pub(super) fn read(&mut self, now: Instant) -> nix::Result<()> {
        if self.watcher.read_events()? {
            self.note(now);
        }
        self.refresh();
        Ok(())
    }

    /// Looks at the files marked as being written again (after a load, which reads the
    /// queued events itself).
    pub(super) fn refresh(&mut self) {
        self.expiry = self.watcher.next_expiry();
    }

    /// True when a burst has ended (quiet for [`QUIET`], or [`MAX_DELAY`] after its
    /// first event): the loop starts one rescan. A file marked as being written that
    /// expires is taken as it is, so its expiry asks for a rescan too.
    pub(super) fn rescan_due(&mut self, now: Instant) -> bool {
        if self.expiry.is_some_and(|at| at <= now) {
            self.watcher.expire(now);
            self.refresh();
            self.note(now);
        }
        match self.burst {
            Some((first, last)) if now >= first + MAX_DELAY || now >= last + QUIET => {
                self.burst = None;
                true
            }
            _ => false,
        }
    }

    fn note(&mut self, now: Instant) {
        self.burst = Some(self.burst.map_or((now, now), |(first, _)| (first, now)));
    }
}

/// The loop's side of the watch.
impl Server {
    /// Reads `watcher`'s events in the loop: a debounced burst of them starts a rescan.
    pub fn with_watch(mut self, watcher: Watcher) -> Result<Server, ServerError> {
        let watch = Watch::new(watcher);
        self.poller
            .add(watch.fd(), WATCH)
            .map_err(ServerError::Poll)?;
        self.watch = Some(watch);
        Ok(self)
    }

    /// Reads the watch's events; a watch that cannot be read stops (changes are then seen
    /// at reloads).
    pub(super) fn read_watch(&mut self, now: Instant) {
        let Some(watch) = &mut self.watch else {
            return;
        };
        if let Err(e) = watch.read(now) {
            log::error!("the watch stopped (read: {e}); changes are seen at reloads");
            let _ = self.poller.delete(watch.fd());
            self.watch = None;
        }
    }
}

/// Reads and applies every queued event; true when one of them asks for a rescan.
fn read_queued(inotify: &Inotify, state: &mut State) -> nix::Result<bool> {
    let mut asks = false;
    loop {
        let events = match inotify.read_events() {
            Ok(events) => events,
            Err(Errno::EAGAIN) => return Ok(asks),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        };
        if events.is_empty() {
            return Ok(asks);
        }
        state.events += events.len() as u64;
        for event in &events {
            asks |= handle_event(state, event, Instant::now());
        }
    }
}

/// Applies one event to the state; true when it asks for a rescan.
fn handle_event(state: &mut State, event: &InotifyEvent, now: Instant) -> bool {
    let mask = event.mask;
    if mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
        state.overflows += 1;
        log::warn!("the watch's event queue overflowed: every preseed source is walked again");
        return true;
    }
    if mask.contains(AddWatchFlags::IN_IGNORED) {
        // The directory is gone (or unwatched): the rescan drops it or finds it again.
        if let Some(watched) = state.by_wd.remove(&event.wd) {
            state.by_path.remove(&watched.path);
        }
        return true;
    }
    let Some(watched) = state.by_wd.get(&event.wd) else {
        return false;
    };
    if mask.intersects(AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF) {
        return true;
    }
    if !watched.counts(event.name.as_ref()) {
        return false;
    }
    let Some(name) = &event.name else {
        return true;
    };
    let path = watched.path.join(name);
    if mask.contains(AddWatchFlags::IN_ISDIR) {
        return true;
    }
    state.touched.insert(path.clone());
    if mask.contains(AddWatchFlags::IN_CREATE) {
        // A regular file just created is being written until it is closed; a hard link
        // (`ln`) to a file or a symlink is complete at once.
        return match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() && meta.nlink() == 1 => {
                state.writing.insert(path, now);
                false
            }
            _ => true,
        };
    }
    if mask.contains(AddWatchFlags::IN_MODIFY) {
        state.writing.insert(path, now);
        return false;
    }
    // Closed after writing, moved in or out, deleted, attributes changed.
    state.writing.remove(&path);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::load_preseed;
    use crate::store::{OnError, PreseedSource};
    use std::sync::mpsc;

    fn watching(dir: &Path) -> (Watcher, mpsc::Receiver<()>) {
        let source = PreseedSource {
            path: dir.to_path_buf(),
            prefix: String::new(),
            optional: false,
            on_error: OnError::Skip,
        };
        let preseed = load_preseed(&[source], false).expect("loads");
        let watcher = Watcher::new().expect("inotify");
        assert!(watcher.update(preseed.watch_list()) >= 2);
        let rx = run_watch(&watcher);
        (watcher, rx)
    }

    /// Runs the watch as the event loop does (waits for the descriptor or the next wake,
    /// reads, asks whether a rescan is due), on a thread of the test's; sends one message
    /// per rescan, for at most 30 s or until the receiver is gone.
    fn run_watch(watcher: &Watcher) -> mpsc::Receiver<()> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut watch = Watch::new(watcher.clone());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(30);
            while Instant::now() < end {
                let wait = (watch.next_wake())
                    .map_or(Duration::from_millis(100), |at| {
                        at.saturating_duration_since(Instant::now())
                    })
                    .min(Duration::from_millis(100));
                let millis = u16::try_from(wait.as_millis() + 1).unwrap_or(u16::MAX);
                let mut fds = [PollFd::new(watch.fd(), PollFlags::POLLIN)];
                poll(&mut fds, PollTimeout::from(millis)).expect("poll");
                let now = Instant::now();
                watch.read(now).expect("read");
                if watch.rescan_due(now) && tx.send(()).is_err() {
                    return;
                }
            }
        });
        rx
    }

    fn rescan_within(rx: &mpsc::Receiver<()>, what: &str) {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no rescan after {what}"));
    }

    #[test]
    fn a_burst_of_events_is_one_rescan_once_quiet_or_at_most_max_delay_after_its_first() {
        let mut watch = Watch::new(Watcher::new().expect("inotify"));
        let start = Instant::now();
        assert_eq!(watch.next_wake(), None, "nothing to wait for");
        assert!(!watch.rescan_due(start));
        // Events 50 ms apart: the burst goes on, up to MAX_DELAY after its first.
        let step = QUIET / 2;
        let mut at = start;
        while at + step < start + MAX_DELAY {
            watch.note(at);
            assert!(!watch.rescan_due(at), "a rescan in the middle of a burst");
            at += step;
        }
        assert_eq!(watch.next_wake(), Some(start + MAX_DELAY));
        assert!(
            watch.rescan_due(start + MAX_DELAY),
            "the burst ends at MAX_DELAY"
        );
        assert_eq!(watch.next_wake(), None, "one rescan per burst");
        // One event, then quiet: the rescan once QUIET has passed.
        let later = start + MAX_DELAY * 2;
        watch.note(later);
        assert!(!watch.rescan_due(later + QUIET / 2));
        assert_eq!(watch.next_wake(), Some(later + QUIET));
        assert!(watch.rescan_due(later + QUIET));
        assert!(!watch.rescan_due(later + QUIET * 2));
    }

    #[test]
    fn a_file_is_being_written_until_it_is_closed_and_its_close_asks_for_one_rescan() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        let (watcher, rx) = watching(dir.path());
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let path = root.join("sub/f");
        let mut file = std::fs::File::create(&path).expect("create");
        use std::io::Write;
        file.write_all(b"half").expect("write");
        // Seen by the watch in its own time: wait for the mark, bounded.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !watcher.writing().contains(&path) {
            assert!(Instant::now() < deadline, "never marked as being written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(rx.try_recv().is_err(), "no rescan while it is written");
        file.write_all(b" and the rest").expect("write");
        drop(file);
        rescan_within(&rx, "the close");
        assert!(!watcher.writing().contains(&path));
    }

    #[test]
    fn deletes_renames_and_new_directories_ask_for_a_rescan() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), b"a").expect("write");
        let (_watcher, rx) = watching(dir.path());
        std::fs::rename(dir.path().join("a"), dir.path().join("b")).expect("rename");
        rescan_within(&rx, "a rename");
        std::fs::remove_file(dir.path().join("b")).expect("remove");
        rescan_within(&rx, "a delete");
        std::fs::create_dir(dir.path().join("new")).expect("mkdir");
        rescan_within(&rx, "a new directory");
    }

    #[test]
    fn a_queue_overflow_asks_for_a_rescan_of_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let watcher = Watcher::new().expect("inotify");
        let list = WatchList {
            directories: vec![dir.path().to_path_buf()],
            entries: Vec::new(),
        };
        assert_eq!(watcher.update(&list), 1);
        // No event thread: more events than the kernel queues (fs.inotify.max_queued_events,
        // 16384 by default) pile up unread.
        let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(16384);
        let path = dir.path().join("f");
        for _ in 0..limit / 2 + 10 {
            std::fs::write(&path, b"x").expect("write");
            std::fs::remove_file(&path).expect("remove");
        }
        assert!(
            watcher.read_events().expect("read"),
            "a rescan is asked for"
        );
        assert_eq!(watcher.overflows(), 1);
    }

    #[test]
    fn writes_beside_a_directory_source_are_not_even_read_but_a_file_source_s_are() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("tree")).expect("mkdir");
        std::fs::write(dir.path().join("single.bin"), b"1").expect("write");
        let log = dir.path().join("server.log");
        std::fs::write(&log, b"").expect("create");
        let watcher = Watcher::new().expect("inotify");
        // The directory source's parent: only its entries count, and writes to a log
        // beside it are not asked of the kernel.
        let list = WatchList {
            directories: Vec::new(),
            entries: vec![(dir.path().to_path_buf(), "tree".into())],
        };
        assert_eq!(watcher.update(&list), 1);
        for _ in 0..3 {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("open");
            io::Write::write_all(&mut file, b"a line\n").expect("append");
        }
        assert!(!watcher.read_events().expect("read"));
        assert_eq!(
            watcher.events_read(),
            0,
            "a write beside the source woke the watch"
        );
        // A file source in the same parent: its writes count, so the same watch now asks
        // for them (the mask replaced, not a second watch).
        let list = WatchList {
            directories: Vec::new(),
            entries: vec![
                (dir.path().to_path_buf(), "tree".into()),
                (dir.path().to_path_buf(), "single.bin".into()),
            ],
        };
        assert_eq!(
            watcher.update(&list),
            0,
            "the same directory, watched again"
        );
        assert_eq!(watcher.watched(), 1);
        std::fs::write(dir.path().join("single.bin"), b"2").expect("write");
        assert!(
            watcher.read_events().expect("read"),
            "the file source's write"
        );
        assert!(watcher.events_read() > 0);
    }

    #[test]
    fn a_source_parent_counts_only_the_source_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let watcher = Watcher::new().expect("inotify");
        let list = WatchList {
            directories: Vec::new(),
            entries: vec![(dir.path().to_path_buf(), "current".into())],
        };
        assert_eq!(watcher.update(&list), 1);
        assert_eq!(watcher.update(&list), 0, "already watched");
        let rx = run_watch(&watcher);
        std::fs::write(dir.path().join("unrelated"), b"x").expect("write");
        assert!(
            rx.recv_timeout(MAX_DELAY * 2).is_err(),
            "another entry of the parent asks for nothing"
        );
        std::os::unix::fs::symlink("gen-2", dir.path().join("current.new")).expect("symlink");
        std::fs::rename(dir.path().join("current.new"), dir.path().join("current"))
            .expect("rename");
        rescan_within(&rx, "the source's symlink swapped by a rename");
        assert_eq!(watcher.update(&WatchList::default()), 0);
        assert_eq!(watcher.watched(), 0, "unwatched when no longer listed");
    }
}
