//! Sync rounds against an origin in memory that fails in every way a real one can, on a
//! real file system: the served tree is always one whole published generation.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::origin::cache::PREVIOUS_LINK;
use crate::origin::manifest::ManifestFile;

/// How the fake origin misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    None,
    /// Every request fails as a refused connection would.
    Down,
    /// Objects come back with one byte flipped.
    Corrupt,
    /// Objects come back one byte short.
    Truncated,
    /// Objects come back one byte long.
    Long,
    /// Objects are 404: the manifest names objects the origin does not have.
    MissingObject,
    /// The manifest is cut in half.
    BadManifest,
}

#[derive(Debug, Default)]
struct Published {
    manifest: Vec<u8>,
    etag: String,
    objects: HashMap<String, Vec<u8>>,
}

#[derive(Debug)]
struct FakeOrigin {
    published: Mutex<Published>,
    failure: Mutex<Failure>,
    manifest_requests: Mutex<usize>,
    objects_requested: Mutex<Vec<String>>,
}

impl FakeOrigin {
    fn new() -> FakeOrigin {
        FakeOrigin {
            published: Mutex::new(Published::default()),
            failure: Mutex::new(Failure::None),
            manifest_requests: Mutex::new(0),
            objects_requested: Mutex::new(Vec::new()),
        }
    }

    /// Publishes `files` and returns them as the tree a sync must serve.
    fn publish(&self, files: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        let mut published = self.published.lock().unwrap();
        let mut list = Vec::new();
        for (name, data) in files {
            let sha256 = hex(&Sha256::digest(data));
            published.objects.insert(sha256.clone(), data.to_vec());
            list.push(ManifestFile {
                name: (*name).to_owned(),
                size: data.len() as u64,
                sha256,
            });
        }
        let manifest = Manifest::new(list).unwrap();
        published.manifest = manifest.to_json();
        published.etag = format!("\"{}\"", &manifest.generation()[..16]);
        files
            .iter()
            .map(|(n, d)| ((*n).to_owned(), d.to_vec()))
            .collect()
    }

    fn fail(&self, failure: Failure) {
        *self.failure.lock().unwrap() = failure;
    }

    fn take_objects_requested(&self) -> Vec<String> {
        let mut list = std::mem::take(&mut *self.objects_requested.lock().unwrap());
        list.sort();
        list
    }

    fn down(&self, url: &str) -> FetchError {
        FetchError {
            url: url.to_owned(),
            failure: FetchFailure::Transport("connection refused".into()),
        }
    }
}

impl Origin for FakeOrigin {
    fn manifest(&self, etag: Option<&str>) -> Result<ManifestReply, FetchError> {
        *self.manifest_requests.lock().unwrap() += 1;
        let failure = *self.failure.lock().unwrap();
        if failure == Failure::Down {
            return Err(self.down("manifest.json"));
        }
        let published = self.published.lock().unwrap();
        if etag == Some(published.etag.as_str()) {
            return Ok(ManifestReply::NotModified);
        }
        let mut body = published.manifest.clone();
        if failure == Failure::BadManifest {
            body.truncate(body.len() / 2);
        }
        Ok(ManifestReply::Manifest {
            body,
            etag: Some(published.etag.clone()),
        })
    }

    fn object(&self, sha256: &str, _size: u64, sink: &mut dyn Write) -> Result<(), FetchError> {
        self.objects_requested
            .lock()
            .unwrap()
            .push(sha256.to_owned());
        let failure = *self.failure.lock().unwrap();
        let url = format!("objects/{sha256}");
        let mut data = match (failure, self.published.lock().unwrap().objects.get(sha256)) {
            (Failure::Down, _) => return Err(self.down(&url)),
            (Failure::MissingObject, _) | (_, None) => {
                return Err(FetchError {
                    url,
                    failure: FetchFailure::Status(404),
                });
            }
            (_, Some(data)) => data.clone(),
        };
        match failure {
            Failure::Corrupt if !data.is_empty() => data[0] ^= 1,
            Failure::Corrupt => data.push(0),
            Failure::Truncated if !data.is_empty() => {
                data.pop();
            }
            Failure::Truncated => {}
            Failure::Long => data.push(b'!'),
            _ => {}
        }
        sink.write_all(&data).map_err(|e| FetchError {
            url,
            failure: FetchFailure::Write(e),
        })
    }
}

/// The tree `<cache>/current` serves: every file under it, by its `/`-separated name.
fn served(root: &Path) -> Option<BTreeMap<String, Vec<u8>>> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &rel, out);
            } else {
                out.insert(rel, fs::read(entry.path()).unwrap());
            }
        }
    }
    let current = root.join(CURRENT_LINK);
    fs::symlink_metadata(&current).ok()?;
    let mut out = BTreeMap::new();
    walk(&current, "", &mut out);
    Some(out)
}

fn objects_in(root: &Path) -> usize {
    fs::read_dir(root.join("objects")).unwrap().count()
}

#[test]
fn a_first_round_fetches_every_object_and_serves_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let origin = FakeOrigin::new();
    let tree = origin.publish(&[("pxelinux.0", b"loader"), ("boot/vmlinuz", b"kernel")]);
    let cache = Cache::open(dir.path()).unwrap();
    let outcome = run_round(&cache, &origin).unwrap();
    let RoundOutcome::Switched {
        previous,
        objects_fetched,
        bytes_fetched,
        ..
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!((previous, *objects_fetched, *bytes_fetched), (&None, 2, 12));
    assert_eq!(served(dir.path()), Some(tree));
    assert_eq!(origin.take_objects_requested().len(), 2);
}

#[test]
fn an_unchanged_origin_answers_304_and_nothing_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let origin = FakeOrigin::new();
    origin.publish(&[("a", b"1")]);
    let cache = Cache::open(dir.path()).unwrap();
    let first = run_round(&cache, &origin).unwrap();
    origin.take_objects_requested();
    let again = run_round(&cache, &origin).unwrap();
    assert_eq!(
        again,
        RoundOutcome::Unchanged {
            generation: first.generation().to_owned()
        }
    );
    assert!(origin.take_objects_requested().is_empty());
}

#[test]
fn a_republish_fetches_only_the_changed_object_and_keeps_the_previous_generation() {
    let dir = tempfile::tempdir().unwrap();
    let origin = FakeOrigin::new();
    origin.publish(&[("a", b"1"), ("b", b"2"), ("c/d", b"3")]);
    let cache = Cache::open(dir.path()).unwrap();
    let first = run_round(&cache, &origin).unwrap();
    origin.take_objects_requested();

    let tree = origin.publish(&[("a", b"1"), ("b", b"two"), ("c/d", b"3")]);
    let second = run_round(&cache, &origin).unwrap();
    assert_eq!(
        origin.take_objects_requested(),
        [hex(&Sha256::digest(b"two"))]
    );
    assert_eq!(served(dir.path()), Some(tree.clone()));
    assert_eq!(
        cache.generation_at(PREVIOUS_LINK).as_deref(),
        Some(first.generation())
    );
    // The previous generation still needs "2": nothing pruned yet.
    assert_eq!(objects_in(dir.path()), 4);

    let third_tree = origin.publish(&[("a", b"1"), ("b", b"three"), ("c/d", b"3")]);
    let third = run_round(&cache, &origin).unwrap();
    assert_eq!(served(dir.path()), Some(third_tree));
    assert_eq!(
        cache.generation_at(PREVIOUS_LINK).as_deref(),
        Some(second.generation())
    );
    let RoundOutcome::Switched { objects_pruned, .. } = third else {
        panic!("{third:?}")
    };
    assert_eq!(objects_pruned, 1, "only the first generation's \"2\" goes");
    let generations: Vec<_> = fs::read_dir(dir.path().join("generations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".json"))
        .collect();
    assert_eq!(generations.len(), 2, "{generations:?}");
    drop(tree);
}

#[test]
fn every_failure_leaves_the_served_generation_untouched() {
    for failure in [
        Failure::Down,
        Failure::Corrupt,
        Failure::Truncated,
        Failure::Long,
        Failure::MissingObject,
        Failure::BadManifest,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let origin = FakeOrigin::new();
        let good = origin.publish(&[("a", b"good"), ("b", b"kept")]);
        let cache = Cache::open(dir.path()).unwrap();
        run_round(&cache, &origin).unwrap();
        origin.publish(&[("a", b"newer"), ("b", b"kept")]);
        origin.fail(failure);
        let e = run_round(&cache, &origin).expect_err("the round must fail");
        assert_eq!(served(dir.path()).as_ref(), Some(&good), "{failure:?}: {e}");
        let shown = e.to_string();
        match failure {
            Failure::Corrupt => assert!(shown.contains("SHA-256"), "{shown}"),
            Failure::Truncated => assert!(shown.contains("truncated"), "{shown}"),
            Failure::Long => assert!(shown.contains("more than"), "{shown}"),
            Failure::MissingObject => assert!(shown.contains("404"), "{shown}"),
            Failure::BadManifest => assert!(matches!(e, OriginError::Manifest(_)), "{shown}"),
            _ => {}
        }
        // Nothing half-fetched is left among the objects.
        assert_eq!(objects_in(dir.path()), 2, "{failure:?}");
        origin.fail(Failure::None);
        run_round(&cache, &origin).unwrap();
        assert_eq!(served(dir.path()).unwrap()["a"], b"newer");
    }
}

#[test]
fn a_second_sync_on_the_same_cache_is_refused_while_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let e = Cache::open(dir.path()).unwrap_err();
    assert!(matches!(e, OriginError::Locked(_)), "{e}");
    drop(cache);
    Cache::open(dir.path()).unwrap();
}

#[test]
fn leftovers_of_a_dead_run_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let origin = FakeOrigin::new();
    origin.publish(&[("a", b"1")]);
    let cache = Cache::open(dir.path()).unwrap();
    run_round(&cache, &origin).unwrap();
    fs::write(dir.path().join("objects/.dead.tmp-1"), b"half").unwrap();
    fs::create_dir(dir.path().join("generations/.dead.tmp-1")).unwrap();
    origin.publish(&[("a", b"2")]);
    run_round(&cache, &origin).unwrap();
    assert!(!dir.path().join("objects/.dead.tmp-1").exists());
    assert!(!dir.path().join("generations/.dead.tmp-1").exists());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the origin publishes and however it fails, `current` is always exactly
    /// the last generation a round switched to: never a mix, never a partial tree.
    #[test]
    fn any_sequence_of_manifests_and_failures_serves_one_whole_generation(
        steps in proptest::collection::vec(
            (
                proptest::collection::btree_map("[ab]{1,2}(/[ab]){0,1}", 0u8..4, 0..5),
                prop_oneof![
                    3 => Just(Failure::None),
                    1 => Just(Failure::Down),
                    1 => Just(Failure::Corrupt),
                    1 => Just(Failure::Truncated),
                    1 => Just(Failure::Long),
                    1 => Just(Failure::MissingObject),
                    1 => Just(Failure::BadManifest),
                ],
            ),
            1..8,
        )
    ) {
        let dir = tempfile::tempdir().unwrap();
        let origin = FakeOrigin::new();
        let cache = Cache::open(dir.path()).unwrap();
        let mut last_good: Option<BTreeMap<String, Vec<u8>>> = None;
        for (files, failure) in steps {
            // A name that is also a directory ("a" and "a/b") cannot be published.
            let contents: Vec<(String, Vec<u8>)> = files
                .iter()
                .map(|(n, v)| (n.clone(), vec![*v; usize::from(*v)]))
                .collect();
            let names: Vec<&str> = contents.iter().map(|(n, _)| n.as_str()).collect();
            if names.iter().any(|n| names.iter().any(|m| m.starts_with(&format!("{n}/")))) {
                continue;
            }
            let borrowed: Vec<(&str, &[u8])> =
                contents.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
            let tree = origin.publish(&borrowed);
            origin.fail(failure);
            if run_round(&cache, &origin).is_ok() {
                last_good = Some(tree);
            }
            prop_assert_eq!(served(dir.path()), last_good.clone());
        }
    }
}
