//! One sync round: bring `<cache>/current` to the origin's generation, or leave it as it
//! was and say why.
//!
//! The steps, each of which either completes or leaves `current` untouched:
//! 1. fetch the manifest, with `If-None-Match` when the served generation's ETag is known;
//!    `304 Not Modified`, or a manifest of the generation already served, ends the round;
//! 2. fetch the objects the cache does not have, [`PARALLEL_FETCHES`] at a time, each into a
//!    temporary file that is checked against the manifest's size (no byte more is
//!    accepted) and SHA-256 before it is renamed into `objects/`;
//! 3. build the generation's tree of hard links and switch `current` to it atomically
//!    ([`Cache`]);
//! 4. prune what neither `current` nor `previous` needs.
//!
//! The network is behind [`Origin`], so the tests here run rounds against an origin in
//! memory that fails in every way a real one can, on a real file system.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use super::cache::{CURRENT_LINK, Cache};
use super::error::{OriginError, io_error};
use super::fetch::{FetchError, FetchFailure, ManifestReply, Origin};
use super::manifest::{Manifest, hex};
use super::publish::temporary_beside;

/// How many objects are fetched at once.
pub const PARALLEL_FETCHES: usize = 4;

/// How a round that succeeded ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoundOutcome {
    /// The origin's generation is the one served (a 304, or the same manifest).
    Unchanged {
        /// The generation served.
        generation: String,
    },
    /// `current` now points at a new generation.
    Switched {
        /// The generation now served.
        generation: String,
        /// The one served before, if any (now `previous`).
        previous: Option<String>,
        /// Objects downloaded by this round.
        objects_fetched: usize,
        /// Bytes downloaded by this round.
        bytes_fetched: u64,
        /// Objects pruned from the cache.
        objects_pruned: usize,
    },
}

impl RoundOutcome {
    /// The generation served after the round.
    pub fn generation(&self) -> &str {
        match self {
            RoundOutcome::Unchanged { generation } | RoundOutcome::Switched { generation, .. } => {
                generation
            }
        }
    }
}

/// Runs one round against `origin` in the locked `cache`.
///
/// # Errors
///
/// An [`OriginError`] saying why the origin's generation is not served; `current` is
/// then what it was before the round.
pub fn run_round(cache: &Cache, origin: &dyn Origin) -> Result<RoundOutcome, OriginError> {
    let served = cache.generation_at(CURRENT_LINK);
    let etag = served.as_deref().and_then(|g| cache.etag_for(g));
    let (body, etag) = match origin
        .manifest(etag.as_deref())
        .map_err(OriginError::Fetch)?
    {
        ManifestReply::NotModified => match served {
            Some(generation) => return Ok(RoundOutcome::Unchanged { generation }),
            // Only sent with the served generation's ETag, so not reached; fetch again.
            None => match origin.manifest(None).map_err(OriginError::Fetch)? {
                ManifestReply::Manifest { body, etag } => (body, etag),
                ManifestReply::NotModified => {
                    return Err(OriginError::Config(
                        "the origin answered 304 to a request without If-None-Match".into(),
                    ));
                }
            },
        },
        ManifestReply::Manifest { body, etag } => (body, etag),
    };
    let manifest = Manifest::parse(&body).map_err(OriginError::Manifest)?;
    let generation = manifest.generation().to_owned();
    if served.as_deref() == Some(generation.as_str()) {
        cache.record_etag(&generation, etag.as_deref())?;
        return Ok(RoundOutcome::Unchanged { generation });
    }

    let missing: Vec<(&str, u64)> = manifest
        .objects()
        .into_iter()
        .filter(|(sha256, size)| !cache.has_object(sha256, *size))
        .collect();
    fetch_all(cache, origin, &missing)?;
    let bytes_fetched = missing.iter().map(|(_, size)| size).sum();

    cache.build_generation(&manifest)?;
    let previous = cache.switch_to(&generation)?;
    cache.record_etag(&generation, etag.as_deref())?;
    let objects_pruned = cache.prune()?;
    Ok(RoundOutcome::Switched {
        generation,
        previous,
        objects_fetched: missing.len(),
        bytes_fetched,
        objects_pruned,
    })
}

/// Fetches every object of `missing` into the cache, [`PARALLEL_FETCHES`] at a time,
/// stopping at the first failure (whose error is returned).
fn fetch_all(
    cache: &Cache,
    origin: &dyn Origin,
    missing: &[(&str, u64)],
) -> Result<(), OriginError> {
    let queue = Mutex::new(missing.iter());
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<OriginError>> = Mutex::new(None);
    let work = || {
        while !failed.load(Ordering::Relaxed) {
            let next = queue.lock().ok().and_then(|mut q| q.next().copied());
            let Some((sha256, size)) = next else { break };
            if let Err(e) = fetch_object(cache, origin, sha256, size) {
                failed.store(true, Ordering::Relaxed);
                if let Ok(mut slot) = first_error.lock() {
                    slot.get_or_insert(e);
                }
            }
        }
    };
    std::thread::scope(|scope| {
        let threads = PARALLEL_FETCHES.min(missing.len());
        for _ in 1..threads {
            // A helper that cannot start leaves its share to this thread.
            let _ = std::thread::Builder::new().spawn_scoped(scope, work);
        }
        work();
    });
    match first_error.into_inner() {
        Ok(Some(e)) => Err(e),
        Ok(None) => Ok(()),
        Err(_) => Err(OriginError::Config("a fetch thread panicked".into())),
    }
}

/// Fetches one object into a temporary file, checks it and renames it into place.
fn fetch_object(
    cache: &Cache,
    origin: &dyn Origin,
    sha256: &str,
    size: u64,
) -> Result<(), OriginError> {
    let path = cache.object_path(sha256);
    let temporary = temporary_beside(&path);
    let result = (|| {
        let file = fs::File::create(&temporary).map_err(io_error("create", &temporary))?;
        let mut sink = CheckedSink {
            file,
            hasher: Sha256::new(),
            written: 0,
            limit: size,
            path: temporary.clone(),
        };
        match origin.object(sha256, size, &mut sink) {
            Ok(()) => {}
            Err(FetchError {
                failure: FetchFailure::Write(e),
                ..
            }) if e.kind() == io::ErrorKind::FileTooLarge => {
                return Err(OriginError::Object {
                    sha256: sha256.to_owned(),
                    reason: format!("the origin sent more than the manifest's {size} bytes"),
                });
            }
            Err(e) => return Err(OriginError::Fetch(e)),
        }
        if sink.written != size {
            return Err(OriginError::Object {
                sha256: sha256.to_owned(),
                reason: format!(
                    "{} bytes received, the manifest says {size} (truncated)",
                    sink.written
                ),
            });
        }
        let digest = hex(&sink.hasher.finalize());
        if digest != sha256 {
            return Err(OriginError::Object {
                sha256: sha256.to_owned(),
                reason: format!("its content has SHA-256 {digest}"),
            });
        }
        sink.file
            .sync_all()
            .map_err(io_error("flush", &temporary))?;
        cache.commit_object(&temporary, sha256)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// Writes an object's bytes to its temporary file while hashing them, and refuses
/// (with [`io::ErrorKind::FileTooLarge`]) any byte beyond the manifest's size.
struct CheckedSink {
    file: fs::File,
    hasher: Sha256,
    written: u64,
    limit: u64,
    path: PathBuf,
}

impl Write for CheckedSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "more bytes than the manifest says for {}",
                    self.path.display()
                ),
            ));
        }
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests;
