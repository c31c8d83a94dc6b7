//! The preseed loader's tests: walking, names, symlinks, skips, and incremental loads.

use super::super::testing::*;
use super::super::{Store, UploadPolicy};
use super::*;
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixListener;

#[test]
fn case_insensitive_collision_keeps_the_later_file_and_reports_it() {
    let preseed = preseed_of(&[("README", b"first"), ("readme", b"second")], true);
    assert_eq!(preseed.len(), 1);
    assert_eq!(preseed.total_bytes(), 6);
    let collisions = &preseed.report().collisions;
    assert_eq!(
        collisions,
        &[Collision {
            kept: name("readme"),
            replaced: name("README"),
        }]
    );
    assert!(collisions[0].to_string().contains("case"));
    let store = Store::new(preseed, UploadPolicy::disabled());
    assert_eq!(get(&store, "ReadMe").as_deref(), Some(&b"second"[..]));
}

#[test]
fn preseed_of_a_directory_tree_uses_prefix_and_relative_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("pxelinux.0"), b"pxe");
    write(&dir.path().join("pxelinux.cfg/default"), b"menu");
    write(&dir.path().join("a/b/c/deep.bin"), &[7; 3000]);
    fs::create_dir(dir.path().join("empty")).expect("mkdir");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    fs::write(file.path(), b"single").expect("write");

    let single_name = file
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 temp name");
    let preseed = load_preseed(
        &[source(dir.path(), "boot/"), source(file.path(), "extra-")],
        false,
    )
    .expect("preseed loads");
    assert!(preseed.report().is_clean(), "{:?}", preseed.report());
    assert_eq!(preseed.len(), 4);
    assert_eq!(preseed.total_bytes(), 3 + 4 + 3000 + 6);

    let store = Store::new(preseed, UploadPolicy::disabled());
    assert_eq!(get(&store, "boot/pxelinux.0").as_deref(), Some(&b"pxe"[..]));
    assert_eq!(
        get(&store, "/boot/pxelinux.cfg/default").as_deref(),
        Some(&b"menu"[..])
    );
    assert_eq!(get(&store, "boot\\a\\b\\c\\deep.bin"), Some(vec![7; 3000]));
    assert_eq!(
        get(&store, &format!("extra-{single_name}")).as_deref(),
        Some(&b"single"[..])
    );
    assert_eq!(get(&store, "pxelinux.0"), None);
}

#[test]
fn later_source_wins_a_name_collision() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    write(&a.path().join("f"), b"from a");
    write(&b.path().join("f"), b"from b");
    let preseed =
        load_preseed(&[source(a.path(), ""), source(b.path(), "")], false).expect("preseed loads");
    assert_eq!(preseed.report().collisions.len(), 1);
    assert_eq!(
        preseed.get(&name("f")).map(|b| &b[..]),
        Some(&b"from b"[..])
    );
}

#[test]
fn missing_path_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-dir");
    let err = load_preseed(&[source(&missing, "")], false).expect_err("must fail");
    assert!(
        matches!(&err, StoreError::Io { path, source }
            if path == &missing && source.kind() == io::ErrorKind::NotFound),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("No such file"), "{message}");
}

#[test]
fn optional_missing_source_is_skipped_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("present"), b"here");
    let missing = dir.path().join("no-such-dir");
    let sources = [
        PreseedSource {
            optional: true,
            ..source(&missing, "")
        },
        source(dir.path(), ""),
    ];
    let preseed = load_preseed(&sources, false).expect("optional source is skipped");
    assert_eq!(preseed.len(), 1);
    let skipped = &preseed.report().skipped_sources;
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].path, missing);
    assert!(skipped[0].to_string().contains("no-such-dir"));
}

#[test]
fn bad_prefix_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = load_preseed(&[source(dir.path(), "../")], false).expect_err("must fail");
    assert!(matches!(
        err,
        StoreError::BadPrefix {
            error: NameError::Traversal,
            ..
        }
    ));
}

#[test]
fn symlink_inside_the_directory_is_followed_and_outside_is_refused() {
    let outside = tempfile::tempdir().expect("tempdir");
    write(&outside.path().join("secret"), b"secret");
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("real/file"), b"inside");
    symlink("real/file", dir.path().join("alias")).expect("symlink");
    symlink("real", dir.path().join("dir-alias")).expect("symlink");
    symlink(outside.path().join("secret"), dir.path().join("escape")).expect("symlink");
    symlink("../../", dir.path().join("real/up")).expect("symlink");
    symlink("nowhere", dir.path().join("dangling")).expect("symlink");

    let preseed = load_preseed(&[source(dir.path(), "")], false).expect("preseed loads");
    let names: Vec<&str> = preseed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["alias", "dir-alias/file", "real/file"]);
    assert!(
        !names
            .iter()
            .any(|n| n.contains("escape") || n.contains("secret"))
    );
    assert_eq!(
        preseed.get(&name("alias")).map(|b| &b[..]),
        Some(&b"inside"[..])
    );
    // Alias and target share one buffer.
    let alias = preseed.get(&name("alias")).expect("alias");
    let real = preseed.get(&name("real/file")).expect("real");
    assert_eq!(alias.as_ptr(), real.as_ptr());

    let report = preseed.report();
    let reason_of = |file: &str| {
        report
            .skipped
            .iter()
            .find(|s| s.path.ends_with(file))
            .map(|s| &s.reason)
    };
    assert!(matches!(
        reason_of("escape"),
        Some(SkipReason::SymlinkOutside { .. })
    ));
    assert!(matches!(
        reason_of("up"),
        Some(SkipReason::SymlinkOutside { .. })
    ));
    assert!(matches!(
        reason_of("dangling"),
        Some(SkipReason::SymlinkUnresolvable(_))
    ));
    // `dir-alias` and `real` are the same directory: walked once.
}

#[test]
fn symlink_loop_inside_the_directory_terminates() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("a/f"), b"f");
    symlink("..", dir.path().join("a/parent")).expect("symlink");
    symlink("self-loop", dir.path().join("self-loop")).expect("symlink");
    let preseed = load_preseed(&[source(dir.path(), "")], false).expect("preseed loads");
    assert_eq!(preseed.len(), 1);
    let reasons: Vec<&SkipReason> = preseed.report().skipped.iter().map(|s| &s.reason).collect();
    assert!(reasons.iter().any(|r| matches!(r, SkipReason::Loop { .. })));
    assert!(
        reasons
            .iter()
            .any(|r| matches!(r, SkipReason::SymlinkUnresolvable(_)))
    );
}

#[test]
fn directory_whose_files_would_have_too_long_names_is_skipped_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "d".repeat(200);
    write(&dir.path().join(&long).join("x"), b"fits");
    write(
        &dir.path().join(&long).join("e".repeat(60)).join("f"),
        b"too long",
    );
    let preseed = load_preseed(&[source(dir.path(), "")], false).expect("preseed loads");
    assert_eq!(preseed.len(), 1);
    let skipped = &preseed.report().skipped;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(matches!(
        skipped[0].reason,
        SkipReason::BadName {
            error: NameError::TooLong { .. },
            ..
        }
    ));
}

#[test]
fn hard_links_share_one_buffer() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("a"), b"same");
    fs::hard_link(dir.path().join("a"), dir.path().join("b")).expect("hard link");
    let preseed = load_preseed(&[source(dir.path(), "")], false).expect("preseed loads");
    let a = preseed.get(&name("a")).expect("a");
    let b = preseed.get(&name("b")).expect("b");
    assert_eq!(a.as_ptr(), b.as_ptr());
}

#[test]
fn non_regular_files_are_skipped_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("regular"), b"r");
    let _listener = UnixListener::bind(dir.path().join("sock")).expect("bind unix socket");
    let preseed = load_preseed(&[source(dir.path(), "")], false).expect("preseed loads");
    assert_eq!(preseed.len(), 1);
    let skipped = &preseed.report().skipped;
    assert_eq!(skipped.len(), 1);
    assert!(matches!(
        skipped[0].reason,
        SkipReason::NotRegular { kind: "socket" }
    ));
    assert!(skipped[0].to_string().contains("socket"));
}

#[test]
fn a_socket_as_source_is_an_error_unless_optional() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sock");
    let _listener = UnixListener::bind(&path).expect("bind unix socket");
    let err = load_preseed(&[source(&path, "")], false).expect_err("must fail");
    assert!(matches!(
        err,
        StoreError::NotFileOrDirectory { kind: "socket", .. }
    ));
    let optional = PreseedSource {
        optional: true,
        ..source(&path, "")
    };
    let preseed = load_preseed(&[optional], false).expect("optional is skipped");
    assert_eq!(preseed.report().skipped_sources.len(), 1);
}

#[test]
fn a_second_load_reads_only_what_changed_and_keeps_the_other_buffers() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("big.img"), &[1; 100_000]);
    write(&dir.path().join("cfg/default"), b"menu v1");
    write(&dir.path().join("gone"), b"gone");
    let sources = [source(dir.path(), "")];
    let mut loader = PreseedLoader::new();
    let first = loader.load(&sources, false, &Unwatched).expect("loads");
    assert_eq!(first.load_stats().files_read, 3);
    assert_eq!(first.load_stats().bytes_read, 100_000 + 7 + 4);

    // An edit that keeps the size (and the inode): the modification time tells.
    let cfg = dir.path().join("cfg/default");
    fs::write(&cfg, b"menu v2").expect("edit");
    let file = fs::File::options().write(true).open(&cfg).expect("open");
    let later = fs::metadata(&cfg).expect("meta").modified().expect("mtime")
        + std::time::Duration::from_secs(1);
    file.set_modified(later).expect("set mtime");
    fs::remove_file(dir.path().join("gone")).expect("remove");
    write(&dir.path().join("new"), b"new");
    let second = loader.load(&sources, false, &Unwatched).expect("loads");
    let stats = second.load_stats();
    assert_eq!(
        (stats.files_read, stats.bytes_read),
        (2, 7 + 3),
        "{stats:?}"
    );
    assert_eq!(stats.files_kept, 1);
    let old = first.get(&name("big.img")).expect("big");
    let new = second.get(&name("big.img")).expect("big");
    assert_eq!(
        old.as_ptr(),
        new.as_ptr(),
        "the unchanged file keeps its buffer"
    );
    assert_eq!(
        second.get(&name("cfg/default")).map(|b| &b[..]),
        Some(&b"menu v2"[..])
    );
    assert!(second.get(&name("gone")).is_none());

    // Swapped into the store: one added, one changed, one removed.
    let store = Store::new(first, UploadPolicy::disabled());
    let changes = store.replace_preseed(second, UploadPolicy::disabled());
    assert_eq!(changes.added, vec![name("new")]);
    assert_eq!(changes.changed, vec![name("cfg/default")]);
    assert_eq!(changes.removed, vec![name("gone")]);

    // Nothing changed: nothing read.
    let third = loader.load(&sources, false, &Unwatched).expect("loads");
    assert_eq!(third.load_stats().files_read, 0);
    assert_eq!(third.load_stats().files_kept, 3);
}

/// A tracker that says what it is told: being written at the start, and written since.
struct Writing(HashSet<PathBuf>, HashSet<PathBuf>);

impl WriteTracker for Writing {
    fn begin(&self) -> HashSet<PathBuf> {
        self.0.clone()
    }
    fn settle(&self) -> HashSet<PathBuf> {
        self.0.union(&self.1).cloned().collect()
    }
}

#[test]
fn a_file_written_during_the_load_is_not_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("f"), b"complete");
    let sources = [source(dir.path(), "")];
    let mut loader = PreseedLoader::new();
    loader.load(&sources, false, &Unwatched).expect("loads");
    let root = fs::canonicalize(dir.path()).expect("canonical");
    write(&root.join("f"), b"half written, longer");
    write(&root.join("new"), b"hal");
    // The watch learns of both writes only after the files were read.
    let late = Writing(HashSet::new(), [root.join("f"), root.join("new")].into());
    let preseed = loader.load(&sources, false, &late).expect("loads");
    assert_eq!(
        preseed.get(&name("f")).map(|b| &b[..]),
        Some(&b"complete"[..])
    );
    assert!(preseed.get(&name("new")).is_none());
    let done = loader.load(&sources, false, &Unwatched).expect("loads");
    assert_eq!(
        done.get(&name("f")).map(|b| &b[..]),
        Some(&b"half written, longer"[..])
    );
}

#[test]
fn a_file_being_written_serves_its_previous_version_or_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("f"), b"complete");
    let sources = [source(dir.path(), "")];
    let mut loader = PreseedLoader::new();
    loader.load(&sources, false, &Unwatched).expect("loads");
    let root = fs::canonicalize(dir.path()).expect("canonical");
    fs::write(root.join("f"), b"half").expect("rewrite");
    write(&root.join("new"), b"hal");
    let writing = Writing([root.join("f"), root.join("new")].into(), HashSet::new());
    let held = loader.load(&sources, false, &writing).expect("loads");
    assert_eq!(held.get(&name("f")).map(|b| &b[..]), Some(&b"complete"[..]));
    assert!(
        held.get(&name("new")).is_none(),
        "a new file waits for its close"
    );
    assert_eq!(held.load_stats().files_held, 2);
    assert_eq!(held.load_stats().files_read, 0);
    let done = loader.load(&sources, false, &Unwatched).expect("loads");
    assert_eq!(done.get(&name("f")).map(|b| &b[..]), Some(&b"half"[..]));
    assert_eq!(done.get(&name("new")).map(|b| &b[..]), Some(&b"hal"[..]));
}

#[test]
fn the_watch_list_names_every_walked_directory_and_each_source_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("a/b/f"), b"f");
    fs::create_dir(dir.path().join("empty")).expect("mkdir");
    let single = dir.path().join("single");
    write(&single, b"s");
    let missing = dir.path().join("later");
    let sources = [
        source(&dir.path().join("a"), ""),
        source(&single, "x-"),
        PreseedSource {
            optional: true,
            ..source(&missing, "")
        },
    ];
    let preseed = load_preseed(&sources, false).expect("loads");
    let root = fs::canonicalize(dir.path()).expect("canonical");
    let watch = preseed.watch_list();
    assert_eq!(watch.directories, vec![root.join("a"), root.join("a/b")]);
    let entries: Vec<(&Path, &str)> = watch
        .entries
        .iter()
        .map(|(d, n)| (d.as_path(), n.to_str().expect("utf-8")))
        .collect();
    assert_eq!(
        entries,
        [
            (dir.path(), "a"),
            (dir.path(), "single"),
            (dir.path(), "later")
        ]
    );
}

/// What [`SourceLoader::unreadable`] makes of `error` for `source`: the skip it reports,
/// or the load's error.
fn unreadable(source: &PreseedSource, path: &Path, error: io::Error) -> Result<String, StoreError> {
    let (mut loaded, previous, mut next) =
        (HashMap::new(), DiskCache::default(), DiskCache::default());
    let (held, mut stats, mut watch) = (HashSet::new(), LoadStats::default(), WatchList::default());
    let mut loader = SourceLoader {
        source,
        root: PathBuf::new(),
        files: Vec::new(),
        skipped: Vec::new(),
        jobs: Vec::new(),
        job_index: HashMap::new(),
        ancestors: Vec::new(),
        entries: 0,
        loaded: &mut loaded,
        previous: &previous,
        next: &mut next,
        held: &held,
        writing: &Unwatched,
        stats: &mut stats,
        watch: &mut watch,
    };
    loader.unreadable(path, error)?;
    Ok(loader.skipped.iter().map(ToString::to_string).collect())
}

#[test]
fn an_unreadable_entry_is_skipped_with_a_hint_or_with_on_error_fail_is_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f");
    let denied = || io::Error::from(io::ErrorKind::PermissionDenied);
    let shown = unreadable(&source(dir.path(), ""), &path, denied()).expect("skipped");
    assert!(
        shown.starts_with(&format!("skipped {}: cannot read it: ", path.display())),
        "{shown}"
    );
    assert!(
        shown.contains("tftpd runs as ") && shown.contains("uid"),
        "{shown}"
    );
    assert!(shown.contains("chmod o+r"), "{shown}");
    let gone = io::Error::from(io::ErrorKind::NotFound);
    let shown = unreadable(&source(dir.path(), ""), &path, gone).expect("skipped");
    assert!(
        shown.ends_with("removed while the directory was being read"),
        "{shown}"
    );

    let strict = PreseedSource {
        on_error: OnError::Fail,
        ..source(dir.path(), "")
    };
    let error = unreadable(&strict, &path, denied()).expect_err("fails");
    assert!(
        matches!(&error, StoreError::Io { path: p, .. } if p == &path),
        "{error}"
    );
}
