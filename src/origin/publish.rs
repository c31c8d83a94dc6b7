//! `tftpd publish DIR OUT`: a directory turned into a published content set, ready to be
//! copied to any HTTP server or bucket: `OUT/objects/<sha256>` for each distinct content and
//! `OUT/manifest.json`.
//!
//! The directory is read by the preseed's own loader ([`load_preseed`]), so what is
//! published is exactly what the daemon would serve from that directory: the same name
//! rules, symlinks followed only inside it, loops and special files skipped (and reported);
//! a file that cannot be read fails the publish (`on-error = "fail"`) rather than being
//! left out of what the fleet gets.
//! Objects already in `OUT` are not rewritten, and `manifest.json` is rewritten only when
//! its text changes, so republishing an unchanged directory changes nothing in `OUT`, not
//! even a modification time (from which nginx derives its ETag).

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::error::{OriginError, io_error};
use super::manifest::{Manifest, ManifestFile, hex};
use crate::store::{OnError, PreseedSource, load_preseed};

/// The manifest's file name, in `OUT` and at the origin.
pub const MANIFEST_NAME: &str = "manifest.json";

/// The directory of the objects, in `OUT`, at the origin and in the cache.
pub const OBJECTS_DIR: &str = "objects";

/// What a publish did.
#[derive(Debug)]
pub struct Published {
    /// The manifest written (or found unchanged).
    pub manifest: Manifest,
    /// Objects written by this run.
    pub objects_written: usize,
    /// Bytes written into those objects.
    pub bytes_written: u64,
    /// Whether `manifest.json` was (re)written.
    pub manifest_written: bool,
    /// Entries of the directory the preseed rules leave out, each said as the daemon's
    /// warning says it.
    pub skipped: Vec<String>,
}

/// Publishes the directory `dir` into `out` (created if missing).
///
/// # Errors
///
/// [`OriginError::Store`] when `dir` cannot be read as a preseed directory would be, and
/// [`OriginError::Io`] when `out` cannot be written.
pub fn publish(dir: &Path, out: &Path) -> Result<Published, OriginError> {
    let source = PreseedSource {
        path: dir.to_path_buf(),
        prefix: String::new(),
        optional: false,
        // A file that cannot be read fails the publish: skipping it would send the fleet a
        // content set without it.
        on_error: OnError::Fail,
    };
    let preseed = load_preseed(&[source], false).map_err(OriginError::Store)?;
    let objects = out.join(OBJECTS_DIR);
    fs::create_dir_all(&objects).map_err(io_error("create the directory", &objects))?;

    let mut files = Vec::with_capacity(preseed.len());
    let mut objects_written = 0;
    let mut bytes_written = 0;
    for (name, data) in preseed.iter() {
        let sha256 = hex(&Sha256::digest(data));
        let path = objects.join(&sha256);
        let size = data.len() as u64;
        let present = fs::metadata(&path).is_ok_and(|m| m.is_file() && m.size() == size);
        if !present {
            write_atomically(&path, data)?;
            objects_written += 1;
            bytes_written += size;
        }
        files.push(ManifestFile {
            name: name.as_str().to_owned(),
            size,
            sha256,
        });
    }
    // Names from the preseed loader follow the name rules and a directory walk gives no
    // name that is both a file and a directory, so this cannot fail; still, say so if it did.
    let manifest = Manifest::new(files).map_err(OriginError::Manifest)?;
    let text = manifest.to_json();
    let manifest_path = out.join(MANIFEST_NAME);
    let manifest_written = fs::read(&manifest_path).ok().as_deref() != Some(&text[..]);
    if manifest_written {
        write_manifest(&manifest_path, &text)?;
    }
    let skipped = preseed
        .report()
        .skipped
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok(Published {
        manifest,
        objects_written,
        bytes_written,
        manifest_written,
        skipped,
    })
}

/// Writes a changed manifest with a modification time at least one whole second after the
/// one it replaces. nginx's ETag is the modification time in seconds and the size, and a
/// manifest's size rarely changes (digests have one length), so without this two publishes
/// within one second would give two manifests one ETag, and syncs would get `304` for the
/// second. `rsync -t` and the like carry the time over to the origin.
fn write_manifest(path: &Path, text: &[u8]) -> Result<(), OriginError> {
    let now = SystemTime::now();
    let modified = match fs::metadata(path).and_then(|m| m.modified()) {
        Ok(old) => {
            let next_second = old
                .duration_since(UNIX_EPOCH)
                .map_or(Duration::ZERO, |d| Duration::from_secs(d.as_secs() + 1));
            now.max(UNIX_EPOCH + next_second)
        }
        Err(_) => now,
    };
    let temporary = temporary_beside(path);
    let written = (|| {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(text)?;
        file.set_modified(modified)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&temporary);
        io_error("write", path)(e)
    })
}

/// Writes `data` to a temporary file beside `path`, flushes it to disk and renames it to
/// `path`, so that a reader (or an HTTP server) never sees it half written.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> Result<(), OriginError> {
    let temporary = temporary_beside(path);
    let written = (|| {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&temporary);
        io_error("write", path)(e)
    })
}

/// A temporary name beside `path`: `.NAME.tmp-PID`, which no object, manifest or
/// generation is ever called.
pub(crate) fn temporary_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, data) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, data).unwrap();
        }
        dir
    }

    #[test]
    fn publishing_writes_one_object_per_content_and_a_manifest() {
        let dir = tree(&[("a", b"same"), ("sub/b", b"same"), ("c", b"other")]);
        let out = tempfile::tempdir().unwrap();
        let p = publish(dir.path(), out.path()).unwrap();
        assert_eq!(p.objects_written, 2);
        assert!(p.manifest_written);
        let names: Vec<_> = p.manifest.files().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "sub/b"]);
        for f in p.manifest.files() {
            let object = fs::read(out.path().join(OBJECTS_DIR).join(&f.sha256)).unwrap();
            assert_eq!(hex(&Sha256::digest(&object)), f.sha256);
            assert_eq!(object, fs::read(dir.path().join(&f.name)).unwrap());
        }
        let text = fs::read(out.path().join(MANIFEST_NAME)).unwrap();
        assert_eq!(Manifest::parse(&text).unwrap(), p.manifest);
    }

    #[test]
    fn republishing_an_unchanged_directory_changes_nothing() {
        let dir = tree(&[("a", b"1"), ("b/c", b"2")]);
        let out = tempfile::tempdir().unwrap();
        publish(dir.path(), out.path()).unwrap();
        let manifest = out.path().join(MANIFEST_NAME);
        let before = (
            fs::read(&manifest).unwrap(),
            fs::metadata(&manifest).unwrap(),
        );
        let again = publish(dir.path(), out.path()).unwrap();
        assert_eq!((again.objects_written, again.manifest_written), (0, false));
        let after = (
            fs::read(&manifest).unwrap(),
            fs::metadata(&manifest).unwrap(),
        );
        assert_eq!(before.0, after.0);
        assert_eq!(before.1.ino(), after.1.ino());
        assert_eq!(before.1.mtime_nsec(), after.1.mtime_nsec());

        fs::write(dir.path().join("a"), b"changed").unwrap();
        let changed = publish(dir.path(), out.path()).unwrap();
        assert_eq!(
            (changed.objects_written, changed.manifest_written),
            (1, true)
        );
        assert_ne!(changed.manifest.generation(), again.manifest.generation());
        // Same size, published within the second: still another whole-second mtime, so
        // nginx's ETag (mtime-size) changes too.
        let mtime = |m: &fs::Metadata| m.mtime();
        assert_eq!(fs::read(&manifest).unwrap().len(), before.0.len());
        assert!(mtime(&fs::metadata(&manifest).unwrap()) > mtime(&before.1));
        fs::write(dir.path().join("a"), b"changee").unwrap();
        let at = mtime(&fs::metadata(&manifest).unwrap());
        publish(dir.path(), out.path()).unwrap();
        assert!(mtime(&fs::metadata(&manifest).unwrap()) > at);
    }

    #[test]
    fn symlinks_and_specials_follow_the_preseed_rules() {
        let dir = tree(&[("real/file", b"x")]);
        let outside = tree(&[("secret", b"s")]);
        symlink("real/file", dir.path().join("alias")).unwrap();
        symlink(outside.path().join("secret"), dir.path().join("escape")).unwrap();
        nix::unistd::mkfifo(&dir.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let out = tempfile::tempdir().unwrap();
        let p = publish(dir.path(), out.path()).unwrap();
        let names: Vec<_> = p.manifest.files().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["alias", "real/file"]);
        assert_eq!(p.skipped.len(), 2, "{:?}", p.skipped);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let out = tempfile::tempdir().unwrap();
        let e = publish(Path::new("/nonexistent/memtftpd"), out.path()).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/memtftpd"), "{e}");
    }
}
