//! Helpers shared by the store's tests: names, preseeds, upload policies, files on disk.

use std::fs;
use std::path::Path;

use bytes::Bytes;

use super::{Preseed, PreseedSource, Store, UploadPolicy};
use crate::name::{FileName, normalize_name};

pub(super) fn name(raw: &str) -> FileName {
    normalize_name(raw).expect("test name is valid")
}

pub(super) fn source(path: &Path, prefix: &str) -> PreseedSource {
    PreseedSource {
        path: path.to_path_buf(),
        prefix: prefix.to_owned(),
        optional: false,
        on_error: super::OnError::Skip,
    }
}

pub(super) fn preseed_of(files: &[(&str, &[u8])], case_insensitive: bool) -> Preseed {
    let mut preseed = Preseed::new(case_insensitive);
    for (n, data) in files {
        preseed.insert(name(n), Bytes::copy_from_slice(data));
    }
    preseed
}

pub(super) fn uploads(max_file_size: u64, max_total_size: u64) -> UploadPolicy {
    UploadPolicy {
        enabled: true,
        max_file_size,
        max_total_size,
        overwrite: false,
        allow: Vec::new(),
    }
}

pub(super) fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create test dir");
    }
    fs::write(path, data).expect("write test file");
}

pub(super) fn get(store: &Store, raw: &str) -> Option<Vec<u8>> {
    store.get(&name(raw)).map(|f| f.data().to_vec())
}
