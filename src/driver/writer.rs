//! The spool writer: a thread that makes completed uploads durable, so that `fsync` never
//! stalls the event loop. The loop hands it each
//! [`UploadCommit`](crate::endpoint::UploadCommit); it has the store check the upload,
//! writes it to the [`Spool`], swaps it into the store, and sends the result back as a
//! command, on which the loop has the endpoint send the final ACK or the ERROR.
//!
//! The thread runs while there are uploads to write: it starts with the first one queued
//! and ends once the queue has been empty for [`IDLE`], so a daemon that takes no uploads
//! has one thread (a second one costs every system call on a descriptor). Whether it runs
//! is decided under the queue's lock, by the thread as it ends with nothing queued and by
//! the loop as it queues: no upload is left in a queue nobody reads.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::ServerHandle;
use super::control::Command;
use crate::endpoint::{TransferHandle, UploadCommit};
use crate::store::{Spool, Store, UploadRefusal};

/// How long the writer thread waits for another upload before it ends.
pub const IDLE: Duration = Duration::from_secs(5);

/// What the writer made of one upload.
#[derive(Debug)]
pub(super) struct Committed {
    pub handle: TransferHandle,
    /// The file's path in the spool, or why it was not stored.
    pub result: Result<PathBuf, UploadRefusal>,
}

/// The uploads to write, and whether a thread is there to write them.
#[derive(Debug, Default)]
struct Queue {
    jobs: VecDeque<UploadCommit>,
    running: bool,
    /// The writer is dropped: the thread ends as soon as the queue is empty.
    closing: bool,
}

/// What the loop and the writer thread share.
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    queued: Condvar,
    spool: Arc<Spool>,
    store: Arc<Store>,
    handle: ServerHandle,
    idle: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer: its queue and its thread, while it runs.
#[derive(Debug)]
pub(super) struct SpoolWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl SpoolWriter {
    /// A writer for `spool`, committing to `store` and answering through `handle`; its
    /// thread starts with the first upload.
    pub fn new(spool: Arc<Spool>, store: Arc<Store>, handle: ServerHandle) -> SpoolWriter {
        SpoolWriter::with_idle(spool, store, handle, IDLE)
    }

    fn with_idle(
        spool: Arc<Spool>,
        store: Arc<Store>,
        handle: ServerHandle,
        idle: Duration,
    ) -> SpoolWriter {
        SpoolWriter {
            shared: Arc::new(Shared {
                queue: Mutex::default(),
                queued: Condvar::new(),
                spool,
                store,
                handle,
                idle,
            }),
            thread: None,
        }
    }

    /// The spool written to.
    pub fn spool(&self) -> &Spool {
        &self.shared.spool
    }

    /// Queues an upload, starting the thread if it is not running; gives the upload back
    /// if no thread can be started.
    pub fn submit(&mut self, commit: UploadCommit) -> Option<UploadCommit> {
        let mut queue = self.shared.lock();
        if queue.running {
            queue.jobs.push_back(commit);
            self.shared.queued.notify_one();
            return None;
        }
        // The thread that ran last has ended, or is ending with nothing to do.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let shared = Arc::clone(&self.shared);
        match std::thread::Builder::new()
            .name("spool".into())
            .spawn(move || shared.run())
        {
            Ok(thread) => {
                queue.jobs.push_back(commit);
                queue.running = true;
                self.thread = Some(thread);
                None
            }
            Err(e) => {
                log::error!("cannot start the spool writer: {e}");
                Some(commit)
            }
        }
    }

    /// True while the writer thread runs.
    #[cfg(test)]
    fn running(&self) -> bool {
        self.shared.lock().running
    }
}

impl Shared {
    /// The thread: writes what is queued, and ends once nothing has come for `idle`.
    fn run(&self) {
        // Should a write panic, the next upload starts a thread for what is queued.
        struct Ended<'a>(&'a Shared);
        impl Drop for Ended<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.lock().running = false;
                }
            }
        }
        let _ended = Ended(self);
        let mut queue = self.lock();
        loop {
            if let Some(commit) = queue.jobs.pop_front() {
                drop(queue);
                let handle_of = commit.handle;
                let result = write(&self.spool, &self.store, commit);
                self.handle.send(Command::Committed(Committed {
                    handle: handle_of,
                    result,
                }));
                queue = self.lock();
                continue;
            }
            if queue.closing {
                queue.running = false;
                return;
            }
            let (guard, wait) = (self.queued)
                .wait_timeout(queue, self.idle)
                .unwrap_or_else(PoisonError::into_inner);
            queue = guard;
            if wait.timed_out() && queue.jobs.is_empty() {
                queue.running = false;
                return;
            }
        }
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        // The thread finishes what is queued, then ends.
        self.shared.lock().closing = true;
        self.shared.queued.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Checks, writes and stores one upload.
fn write(spool: &Spool, store: &Store, commit: UploadCommit) -> Result<PathBuf, UploadRefusal> {
    let UploadCommit {
        permit,
        data,
        client,
        ..
    } = commit;
    let len = data.len();
    let arrived = Some(std::time::SystemTime::now());
    let written = store.commit_upload_with(permit, data, arrived, |name, data| {
        spool.write(name, data).map_err(|e| {
            log::error!(
                "upload from {client} of {len} bytes not stored: cannot write {}: {e}",
                spool.path_of(name).display()
            );
            UploadRefusal::Storage {
                reason: e.to_string(),
            }
        })
    });
    let (path, replaced) = written?;
    if let Some(old) = replaced
        && let Err(e) = spool.remove(&old)
    {
        log::warn!(
            "cannot remove {} (replaced by an upload of another case): {e}",
            spool.path_of(&old).display()
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::poller::{Poller, Waker};
    use crate::name::normalize_name;
    use crate::store::{Preseed, UploadPolicy};
    use std::sync::mpsc;
    use std::time::Instant;

    fn commit(store: &Store, name: &str, index: usize) -> UploadCommit {
        let name = normalize_name(name).unwrap();
        UploadCommit {
            handle: TransferHandle::detached(index),
            permit: store.check_upload(&name, Some(3)).unwrap(),
            data: b"abc".to_vec(),
            client: "127.0.0.1:1000".parse().unwrap(),
        }
    }

    fn committed(commands: &mpsc::Receiver<Command>) -> Committed {
        match commands.recv_timeout(Duration::from_secs(10)) {
            Ok(Command::Committed(committed)) => committed,
            other => panic!("no commit answered: {other:?}"),
        }
    }

    /// Waits (bounded) until the writer thread has ended.
    fn ended(writer: &SpoolWriter) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while writer.running() {
            assert!(Instant::now() < deadline, "the writer thread never ended");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_writer_thread_runs_while_there_are_uploads_and_starts_again_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path()).unwrap());
        let policy = UploadPolicy {
            enabled: true,
            max_file_size: 100,
            max_total_size: 1000,
            overwrite: false,
            allow: Vec::new(),
        };
        let store = Arc::new(Store::new(Preseed::new(false), policy));
        let poller = Poller::new().unwrap();
        let (tx, commands) = mpsc::channel();
        let handle = ServerHandle {
            commands: tx,
            waker: Arc::new(Waker::new(&poller, 0).unwrap()),
        };
        let idle = Duration::from_millis(50);
        let mut writer =
            SpoolWriter::with_idle(Arc::clone(&spool), Arc::clone(&store), handle, idle);
        assert!(!writer.running(), "no thread before the first upload");
        assert!(writer.submit(commit(&store, "a", 1)).is_none());
        assert!(writer.submit(commit(&store, "b", 2)).is_none());
        for expected in [1, 2] {
            let done = committed(&commands);
            assert_eq!(done.handle, TransferHandle::detached(expected));
            let path = done.result.expect("written");
            assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        }
        ended(&writer);
        // Another upload after the thread ended: a new thread writes it.
        assert!(writer.submit(commit(&store, "c", 3)).is_none());
        assert!(committed(&commands).result.is_ok());
        assert!(store.get(&normalize_name("c").unwrap()).is_some());
        // Dropped with an upload queued: it is written before the drop returns.
        assert!(writer.submit(commit(&store, "d", 4)).is_none());
        drop(writer);
        assert_eq!(committed(&commands).handle, TransferHandle::detached(4));
        assert_eq!(
            std::fs::read(spool.path_of(&normalize_name("d").unwrap())).unwrap(),
            b"abc"
        );
    }
}
