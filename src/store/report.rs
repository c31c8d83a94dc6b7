//! What a preseed load left out or overrode: the [`PreseedReport`] that
//! [`load_preseed`](super::load_preseed) returns with the files, and its items. Nothing here
//! is fatal; each item has a `Display` for the daemon's warnings.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::StoreError;
use crate::name::{FileName, NameError};

/// What [`load_preseed`](super::load_preseed) left out or overrode. Nothing here is fatal;
/// the daemon logs each item as a warning (every item has a `Display` that says what
/// happened, without a `preseed:` prefix: the daemon's log line adds that once).
#[derive(Debug, Default)]
pub struct PreseedReport {
    /// Optional sources that could not be loaded; none of their files are in the preseed.
    pub skipped_sources: Vec<SkippedSource>,
    /// Entries inside loaded sources that were skipped: symlinks pointing outside, loops,
    /// fifos, sockets, devices, names that cannot be served.
    pub skipped: Vec<Skipped>,
    /// Names given twice (exactly, or ignoring case in case-insensitive mode); the later
    /// one won.
    pub collisions: Vec<Collision>,
}

impl PreseedReport {
    /// True when nothing was skipped or overridden.
    pub fn is_clean(&self) -> bool {
        self.skipped_sources.is_empty() && self.skipped.is_empty() && self.collisions.is_empty()
    }

    /// How many entries and optional sources were left out (collisions not counted: their
    /// name is served), as `STATUS=` shows it.
    pub fn skipped_count(&self) -> usize {
        self.skipped_sources.len() + self.skipped.len()
    }
}

/// An optional preseed source that could not be loaded.
#[derive(Debug)]
pub struct SkippedSource {
    /// The source's path, as configured.
    pub path: PathBuf,
    /// What went wrong; the same error a non-optional source would have stopped on.
    pub error: StoreError,
}

impl fmt::Display for SkippedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "optional source {} skipped: {}",
            self.path.display(),
            self.error
        )
    }
}

/// An entry inside a preseed source that was not loaded.
#[derive(Debug)]
pub struct Skipped {
    /// The entry's path on disk (the link itself for a symlink).
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: SkipReason,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipped {}: {}", self.path.display(), self.reason)
    }
}

/// Why [`Skipped`] entry was left out.
#[derive(Debug)]
pub enum SkipReason {
    /// A symlink whose canonical target is outside the preseeded directory.
    SymlinkOutside {
        /// Where the link points, canonicalised.
        target: PathBuf,
    },
    /// A symlink that cannot be resolved: dangling, a loop, or not searchable.
    SymlinkUnresolvable(io::Error),
    /// A directory that is one of its own ancestors in the walk, reached through a symlink
    /// or a bind mount: following it would loop.
    Loop {
        /// The directory, canonicalised.
        target: PathBuf,
    },
    /// Not a regular file or directory.
    NotRegular {
        /// What it is: "fifo", "socket", "block device", "character device" or "special file".
        kind: &'static str,
    },
    /// The file name is not valid UTF-8, so no TFTP request could name it reliably.
    NotUtf8,
    /// It could not be read: permission denied, an I/O error, too large for memory.
    Unreadable(io::Error),
    /// It was listed, then gone before it could be read (removed during the walk).
    Vanished,
    /// The name the file would be served under is refused by
    /// [`normalize_name`](crate::name::normalize_name).
    BadName {
        /// The name as built from the prefix and the relative path.
        name: String,
        /// Why it was refused.
        error: NameError,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::SymlinkOutside { target } => write!(
                f,
                "symlink points to {}, outside the preseeded directory",
                target.display()
            ),
            SkipReason::SymlinkUnresolvable(e) => write!(f, "cannot resolve symlink: {e}"),
            SkipReason::Loop { target } => write!(
                f,
                "directory {} contains itself (symlink or bind-mount loop)",
                target.display()
            ),
            SkipReason::NotRegular { kind } => write!(f, "{kind}, not a regular file"),
            SkipReason::NotUtf8 => f.write_str("the file name is not valid UTF-8"),
            SkipReason::Unreadable(e) if e.kind() == io::ErrorKind::PermissionDenied => write!(
                f,
                "cannot read it: {e}; tftpd runs as {}, which needs read permission on the \
                 file and search (x) permission on each directory above it (e.g. chmod o+r \
                 on the file, or a group the user is in; directories need r and x)",
                runs_as()
            ),
            SkipReason::Unreadable(e) => write!(f, "cannot read it: {e}"),
            SkipReason::Vanished => f.write_str("removed while the directory was being read"),
            SkipReason::BadName { name, error } => {
                write!(f, "cannot be served as {name:?}: {error}")
            }
        }
    }
}

/// The user the process runs as, for the hint on a permission error: `user NAME (uid N)`,
/// looked up once. Under systemd's `DynamicUser=` the name is the unit's; where no name
/// service knows it (no `libnss-systemd`), systemd's `$USER` for the service says it.
fn runs_as() -> &'static str {
    static RUNS_AS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUNS_AS.get_or_init(|| {
        let uid = nix::unistd::geteuid();
        let name = match nix::unistd::User::from_uid(uid) {
            Ok(Some(user)) => Some(user.name),
            _ => std::env::var("USER").ok().filter(|n| !n.is_empty()),
        };
        match name {
            Some(name) => format!("user {name} (uid {uid})"),
            None => format!("uid {uid}"),
        }
    })
}

/// Two preseeded files mapped to the same name (or, in case-insensitive mode, to names that
/// differ only in ASCII case). The later one replaced the earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    /// The name that is served now.
    pub kept: FileName,
    /// The name whose file was replaced (equal to `kept`, or equal ignoring case).
    pub replaced: FileName,
}

impl fmt::Display for Collision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kept == self.replaced {
            write!(
                f,
                "{:?} is provided more than once; the later one wins",
                self.kept.as_str()
            )
        } else {
            write!(
                f,
                "{:?} and {:?} differ only in case and lookups ignore case; \
                 the later one, {:?}, wins",
                self.replaced.as_str(),
                self.kept.as_str(),
                self.kept.as_str()
            )
        }
    }
}
