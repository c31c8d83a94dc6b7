//! The spool writer: a thread of its own that makes completed uploads durable, so that
//! `fsync` never stalls the event loop. The loop hands it each
//! [`UploadCommit`](crate::endpoint::UploadCommit); it has the store check the upload,
//! writes it to the [`Spool`], swaps it into the store, and sends the result back as a
//! command, on which the loop has the endpoint send the final ACK or the ERROR.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::ServerHandle;
use super::control::Command;
use crate::endpoint::{TransferHandle, UploadCommit};
use crate::store::{Spool, Store, UploadRefusal};

/// What the writer made of one upload.
#[derive(Debug)]
pub(super) struct Committed {
    pub handle: TransferHandle,
    /// The file's path in the spool, or why it was not stored.
    pub result: Result<PathBuf, UploadRefusal>,
}

/// The writer thread and the queue to it.
#[derive(Debug)]
pub(super) struct SpoolWriter {
    jobs: Option<mpsc::Sender<UploadCommit>>,
    thread: Option<JoinHandle<()>>,
    spool: Arc<Spool>,
}

impl SpoolWriter {
    /// Starts the writer for `spool`, committing to `store` and answering through
    /// `handle`.
    pub fn start(spool: Arc<Spool>, store: Arc<Store>, handle: ServerHandle) -> io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<UploadCommit>();
        let thread_spool = Arc::clone(&spool);
        let thread = std::thread::Builder::new()
            .name("spool".into())
            .spawn(move || {
                for commit in queue {
                    let handle_of = commit.handle;
                    let result = write(&thread_spool, &store, commit);
                    handle.send(Command::Committed(Committed {
                        handle: handle_of,
                        result,
                    }));
                }
            })?;
        Ok(SpoolWriter {
            jobs: Some(jobs),
            thread: Some(thread),
            spool,
        })
    }

    /// The spool written to.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Queues an upload; gives it back if the writer is gone.
    pub fn submit(&self, commit: UploadCommit) -> Option<UploadCommit> {
        match &self.jobs {
            Some(jobs) => jobs.send(commit).err().map(|e| e.0),
            None => Some(commit),
        }
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        // The queue closes; the writer finishes what it has and ends.
        self.jobs = None;
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
