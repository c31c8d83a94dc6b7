//! The store's tests: lookup and case, upload permits and commits, reservations, the
//! netascii length, reloads and the generation.

use super::testing::*;
use super::*;
use crate::proto::ErrorCode;

#[test]
fn case_insensitive_lookup_ignores_ascii_case_and_keeps_the_stored_name() {
    let preseed = preseed_of(&[("Boot/PXELinux.0", b"pxe")], true);
    assert_eq!(
        preseed.iter().next().map(|(n, _)| n.as_str()),
        Some("Boot/PXELinux.0")
    );
    let store = Store::new(preseed, UploadPolicy::disabled());
    assert_eq!(get(&store, "boot/pxelinux.0").as_deref(), Some(&b"pxe"[..]));
    assert_eq!(get(&store, "BOOT/PXELINUX.0").as_deref(), Some(&b"pxe"[..]));
    assert_eq!(get(&store, "Boot/PXELinux.0").as_deref(), Some(&b"pxe"[..]));
}

#[test]
fn case_sensitive_lookup_needs_the_exact_case() {
    let store = Store::new(
        preseed_of(&[("PXELinux.0", b"pxe")], false),
        UploadPolicy::disabled(),
    );
    assert_eq!(get(&store, "pxelinux.0"), None);
    assert_eq!(get(&store, "PXELinux.0").as_deref(), Some(&b"pxe"[..]));
}

#[test]
fn commit_rechecks_limits_and_keeps_the_old_file_on_refusal() {
    let policy = UploadPolicy {
        overwrite: true,
        ..uploads(10, 1000)
    };
    let store = Store::new(preseed_of(&[("f", b"old")], false), policy);
    let permit = store.check_upload(&name("f"), None).expect("permit");
    let refusal = store
        .commit_upload(permit, vec![0; 11])
        .expect_err("over max-file-size");
    assert_eq!(
        refusal,
        UploadRefusal::TooLarge {
            size: 11,
            limit: 10
        }
    );
    assert_eq!(get(&store, "f").as_deref(), Some(&b"old"[..]));
    assert_eq!(store.stats().uploaded_files, 0);
}

#[test]
fn a_second_upload_of_a_name_in_flight_is_refused_without_overwrite() {
    let store = Store::new(Preseed::new(false), uploads(10, 1000));
    let first = store.check_upload(&name("f"), None).expect("permit");
    let refusal = store.check_upload(&name("f"), None).expect_err("in flight");
    assert_eq!(refusal, UploadRefusal::InFlight { name: name("f") });
    assert_eq!(refusal.error_code(), ErrorCode::FileExists);
    // Once the first is given up, the name is free again.
    drop(first);
    let again = store.check_upload(&name("f"), None).expect("free again");
    store
        .commit_upload(again, b"first".to_vec())
        .expect("commit");
    assert_eq!(get(&store, "f").as_deref(), Some(&b"first"[..]));
}

#[test]
fn with_overwrite_two_racing_uploads_both_land_and_the_later_commit_wins() {
    let policy = UploadPolicy {
        overwrite: true,
        ..uploads(10, 1000)
    };
    let store = Store::new(Preseed::new(false), policy);
    let first = store.check_upload(&name("f"), None).expect("permit");
    let second = store.check_upload(&name("f"), None).expect("permit");
    store
        .commit_upload(second, b"second".to_vec())
        .expect("commit");
    store
        .commit_upload(first, b"first".to_vec())
        .expect("commit");
    assert_eq!(get(&store, "f").as_deref(), Some(&b"first"[..]));
    assert_eq!(store.stats().uploaded_bytes, 5);
    assert_eq!(store.stats().reserved_bytes, 0);
}

#[test]
fn uploads_in_flight_reserve_their_permitted_size_until_committed_or_dropped() {
    // 48 unfinished uploads against a 4 MiB total: the total is promised once, not 48
    // times over.
    let store = Store::new(Preseed::new(false), uploads(1 << 20, 4 << 20));
    let mut permits = Vec::new();
    let mut refused = 0;
    for n in 0..48 {
        match store.check_upload(&name(&format!("u{n}")), Some(1 << 20)) {
            Ok(permit) => permits.push(permit),
            Err(refusal) => {
                // The room is promised, not gone: the request waits for it.
                assert_eq!(refusal, UploadRefusal::Reserved { reserved: 4 << 20 });
                assert!(refusal.is_transient());
                refused += 1;
            }
        }
    }
    assert_eq!((permits.len(), refused), (4, 44));
    assert_eq!(store.stats().reserved_bytes, 4 << 20);
    assert_eq!(store.stats().uploads_in_flight, 4);
    // Without tsize, nothing is left to promise either, for now.
    let refusal = store.check_upload(&name("x"), None).expect_err("no room");
    assert_eq!(refusal, UploadRefusal::Reserved { reserved: 4 << 20 });
    // More than stored uploads leave can never fit: refused for good.
    let refusal = store.check_upload(&name("y"), Some(5 << 20));
    assert!(matches!(
        refusal,
        Err(UploadRefusal::TooLarge { .. } | UploadRefusal::TotalExceeded { .. })
    ));
    // A commit turns its reservation into stored bytes; a drop frees it.
    let first = permits.remove(0);
    store.commit_upload(first, vec![1; 1000]).expect("commit");
    permits.pop();
    let stats = store.stats();
    assert_eq!(
        (stats.uploaded_bytes, stats.reserved_bytes),
        (1000, 2 << 20)
    );
    let permit = store.check_upload(&name("x"), None).expect("room again");
    assert_eq!(permit.max_size(), 1 << 20);
    drop(permits);
    drop(permit);
    assert_eq!(store.stats().reserved_bytes, 0);
    assert_eq!(store.stats().uploads_in_flight, 0);
}

#[test]
fn an_announced_size_is_the_permits_limit() {
    let store = Store::new(Preseed::new(false), uploads(100, 1000));
    let permit = store.check_upload(&name("a"), Some(10)).expect("permit");
    assert_eq!(permit.max_size(), 10);
    assert_eq!(store.stats().reserved_bytes, 10);
    let refusal = store
        .commit_upload(permit, vec![0; 11])
        .expect_err("over its permit, though within max-file-size");
    assert_eq!(
        refusal,
        UploadRefusal::TooLarge {
            size: 11,
            limit: 10
        }
    );
    assert_eq!(store.stats().reserved_bytes, 0);
}

#[test]
fn a_durable_commit_that_fails_leaves_the_store_unchanged_and_frees_the_reservation() {
    let store = Store::new(
        preseed_of(&[("f", b"old")], false),
        UploadPolicy {
            overwrite: true,
            ..uploads(100, 1000)
        },
    );
    let permit = store.check_upload(&name("f"), None).expect("permit");
    let refusal = store
        .commit_upload_with(permit, b"new".to_vec(), None, |_, _| -> Result<(), _> {
            Err(UploadRefusal::Storage {
                reason: "No space left on device".into(),
            })
        })
        .expect_err("persist failed");
    assert_eq!(refusal.error_code(), ErrorCode::DiskFull);
    assert_eq!(get(&store, "f").as_deref(), Some(&b"old"[..]));
    assert_eq!(store.stats().reserved_bytes, 0);
}

#[test]
fn restored_uploads_count_against_the_total() {
    let store = Store::new(preseed_of(&[("f", b"preseeded")], false), uploads(100, 100));
    let bytes = store.restore_uploads(vec![(name("f"), Bytes::from(vec![1; 60]))]);
    assert_eq!(bytes, 60);
    assert_eq!(get(&store, "f").as_deref(), Some(&[1; 60][..]));
    let refusal = store.check_upload(&name("g"), Some(50)).expect_err("over");
    assert_eq!(refusal.error_code(), ErrorCode::DiskFull);
}

#[test]
fn commit_swaps_the_file_in_whole_and_readers_keep_their_bytes() {
    let policy = UploadPolicy {
        overwrite: true,
        ..uploads(1 << 20, 1 << 30)
    };
    let store = Store::new(preseed_of(&[("f", b"old")], false), policy);
    let held = store.get(&name("f")).expect("file");
    let permit = store.check_upload(&name("f"), None).expect("permit");
    assert_eq!(
        get(&store, "f").as_deref(),
        Some(&b"old"[..]),
        "not visible before commit"
    );
    store
        .commit_upload(permit, b"new".to_vec())
        .expect("commit");
    assert_eq!(&held.data()[..], b"old");
    assert_eq!(get(&store, "f").as_deref(), Some(&b"new"[..]));
}

/// `n` newlines among `len` bytes: a netascii wire length of `len + n`.
fn with_newlines(len: usize, n: usize) -> Vec<u8> {
    (0..len).map(|i| if i < n { b'\n' } else { b'x' }).collect()
}

#[test]
fn the_netascii_length_is_computed_once_per_version_and_shared_by_every_copy() {
    let policy = UploadPolicy {
        overwrite: true,
        ..uploads(100, 1000)
    };
    let store = Store::new(preseed_of(&[("f", b"a\nb\r")], false), policy);
    let first = store.get(&name("f")).expect("file");
    let second = store.get(&name("f")).expect("file");
    assert!(Arc::ptr_eq(&first.netascii_len, &second.netascii_len));
    assert_eq!(
        second.netascii_len.get(),
        None,
        "not computed before it is asked for"
    );
    assert_eq!(first.netascii_len(), 6);
    assert_eq!(
        second.netascii_len.get(),
        Some(&6),
        "computed by the first copy, seen by the second"
    );
    let later = store.get(&name("f")).expect("file");
    assert_eq!(later.netascii_len.get(), Some(&6), "and by later lookups");

    let permit = store.check_upload(&name("f"), None).expect("permit");
    store
        .commit_upload(permit, b"\n\n".to_vec())
        .expect("commit");
    let new = store.get(&name("f")).expect("file");
    assert!(!Arc::ptr_eq(&new.netascii_len, &first.netascii_len));
    assert_eq!(new.netascii_len.get(), None, "a new version starts afresh");
    assert_eq!(new.netascii_len(), 4);
    assert_eq!(first.netascii_len(), 6, "the old copy keeps its own length");

    store.replace_preseed(preseed_of(&[("g", b"\n")], false), uploads(100, 1000));
    let reloaded = store.get(&name("g")).expect("file");
    assert_eq!(reloaded.netascii_len.get(), None);
    let kept = store
        .get(&name("f"))
        .expect("the upload survives the reload");
    assert!(Arc::ptr_eq(&kept.netascii_len, &new.netascii_len));
}

#[test]
fn concurrent_readers_get_the_netascii_length_of_the_version_they_hold() {
    let policy = UploadPolicy {
        overwrite: true,
        ..uploads(1 << 20, 1 << 30)
    };
    let store = Store::new(preseed_of(&[("f", &with_newlines(4096, 0))], false), policy);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let file = store.get(&name("f")).expect("always present");
                    assert_eq!(file.netascii_len(), netascii_len(file.data()));
                }
            });
        }
        for round in 1..=200 {
            let permit = store.check_upload(&name("f"), None).expect("permit");
            store
                .commit_upload(permit, with_newlines(4096, round))
                .expect("commit");
            // Ask as a transfer would, so that the next version replaces a version
            // whose length is known.
            let file = store.get(&name("f")).expect("file");
            assert_eq!(file.netascii_len(), 4096 + round as u64);
        }
        done.store(true, Ordering::Relaxed);
    });
}

#[test]
fn reload_keeps_uploads_and_readers_keep_old_bytes() {
    let policy = UploadPolicy {
        overwrite: true,
        ..uploads(100, 1000)
    };
    let store = Store::new(
        preseed_of(
            &[("old", b"old preseed"), ("shadowed", b"preseeded")],
            false,
        ),
        policy.clone(),
    );
    let permit = store.check_upload(&name("up"), None).expect("permit");
    store
        .commit_upload(permit, b"uploaded".to_vec())
        .expect("commit");
    let permit = store.check_upload(&name("shadowed"), None).expect("permit");
    store
        .commit_upload(permit, b"uploaded over".to_vec())
        .expect("commit");
    let held = store.get(&name("old")).expect("old");

    let changes = store.replace_preseed(
        preseed_of(
            &[("new", b"new preseed"), ("shadowed", b"preseeded again")],
            false,
        ),
        policy,
    );
    assert!(changes.dropped_uploads.is_empty());
    // "shadowed" is the upload's before and after: no change that lookups see.
    assert_eq!(changes.added, vec![name("new")]);
    assert!(changes.changed.is_empty());
    assert_eq!(changes.removed, vec![name("old")]);
    assert_eq!(&held.data()[..], b"old preseed");
    assert_eq!(get(&store, "old"), None);
    assert_eq!(get(&store, "new").as_deref(), Some(&b"new preseed"[..]));
    assert_eq!(get(&store, "up").as_deref(), Some(&b"uploaded"[..]));
    assert_eq!(
        get(&store, "shadowed").as_deref(),
        Some(&b"uploaded over"[..])
    );
    assert_eq!(
        store.stats(),
        StoreStats {
            files: 3,
            bytes: 11 + 8 + 13,
            uploaded_files: 2,
            uploaded_bytes: 8 + 13,
            reserved_bytes: 0,
            uploads_in_flight: 0,
            // Made, two uploads, one reload.
            generation: 4,
            skipped: 0,
        }
    );
}

#[test]
fn reload_applies_the_new_upload_policy_and_case_mode() {
    let store = Store::new(Preseed::new(false), uploads(100, 1000));
    for n in ["A", "a"] {
        let permit = store.check_upload(&name(n), None).expect("permit");
        store
            .commit_upload(permit, n.as_bytes().to_vec())
            .expect("commit");
    }
    let changes = store.replace_preseed(Preseed::new(true), UploadPolicy::disabled());
    assert_eq!(changes.dropped_uploads, vec![name("A")]);
    assert_eq!(get(&store, "A").as_deref(), Some(&b"a"[..]));
    assert_eq!(store.stats().uploaded_bytes, 1);
    assert_eq!(
        store.check_upload(&name("b"), None).err(),
        Some(UploadRefusal::Disabled)
    );
}

#[test]
fn stats_count_preseeded_and_uploaded_files() {
    let store = Store::new(
        preseed_of(&[("a", b"12345"), ("b", b"123")], false),
        uploads(100, 1000),
    );
    assert_eq!(
        store.stats(),
        StoreStats {
            files: 2,
            bytes: 8,
            uploaded_files: 0,
            uploaded_bytes: 0,
            reserved_bytes: 0,
            uploads_in_flight: 0,
            generation: 1,
            skipped: 0,
        }
    );
    let permit = store.check_upload(&name("c"), Some(2)).expect("permit");
    store.commit_upload(permit, b"12".to_vec()).expect("commit");
    assert_eq!(
        store.stats(),
        StoreStats {
            files: 3,
            bytes: 10,
            uploaded_files: 1,
            uploaded_bytes: 2,
            reserved_bytes: 0,
            uploads_in_flight: 0,
            generation: 2,
            skipped: 0,
        }
    );
}

#[test]
fn a_reload_keeps_unchanged_buffers_reports_what_changed_and_moves_the_generation() {
    let kept = Bytes::from_static(b"kept");
    let mut first = Preseed::new(false);
    first.insert(name("kept"), kept.clone());
    first.insert(name("edited"), Bytes::from_static(b"v1"));
    first.insert(name("gone"), Bytes::from_static(b"gone"));
    let store = Store::new(first, UploadPolicy::disabled());
    assert_eq!(store.generation(), 1);
    let held = store.get(&name("kept")).expect("kept");
    assert_eq!(held.netascii_len(), 4);

    let mut second = Preseed::new(false);
    second.insert(name("kept"), kept.clone());
    // Equal bytes in another buffer: read again, so a change.
    second.insert(name("edited"), Bytes::from(b"v1".to_vec()));
    second.insert(name("new"), Bytes::from_static(b"new"));
    let changes = store.replace_preseed(second, UploadPolicy::disabled());
    assert_eq!(changes.added, vec![name("new")]);
    assert_eq!(changes.changed, vec![name("edited")]);
    assert_eq!(changes.removed, vec![name("gone")]);
    assert_eq!(changes.generation, 2);
    assert_eq!(store.generation(), 2);
    assert_eq!(changes.to_string(), "1 added, 1 changed, 1 removed");
    let after = store.get(&name("kept")).expect("kept");
    assert_eq!(after.data().as_ptr(), held.data().as_ptr());
    assert!(
        Arc::ptr_eq(&after.netascii_len, &held.netascii_len),
        "an unchanged file keeps its StoredFile"
    );

    // The same buffers again: nothing changed, the generation stays.
    let mut third = Preseed::new(false);
    for n in ["kept", "edited", "new"] {
        let data = store.get(&name(n)).expect("present").data().clone();
        third.insert(name(n), data);
    }
    let changes = store.replace_preseed(third, UploadPolicy::disabled());
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(store.generation(), 2);
}

#[test]
fn every_committed_upload_moves_the_generation() {
    let policy = UploadPolicy {
        overwrite: true,
        ..uploads(100, 1000)
    };
    let store = Store::new(Preseed::new(false), policy);
    for round in 1..=3 {
        let permit = store.check_upload(&name("f"), None).expect("permit");
        store.commit_upload(permit, vec![round]).expect("commit");
        assert_eq!(store.generation(), 1 + u64::from(round));
    }
    let permit = store.check_upload(&name("g"), None).expect("permit");
    store
        .commit_upload(permit, vec![0; 101])
        .expect_err("too large");
    assert_eq!(store.generation(), 4, "a refused commit changes nothing");
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<Preseed>();
}
