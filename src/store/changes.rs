//! What a swap of the preseeded files changed: the [`StoreChanges`] that
//! [`Store::replace_preseed`](super::Store::replace_preseed) returns, for the reload and watch
//! log lines and the control interface.

use std::fmt;

use crate::name::FileName;

/// The names a preseed swap added, changed and removed (each list in name order), the
/// uploads it had to drop, and the store's generation after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreChanges {
    /// Names served now that were not before.
    pub added: Vec<FileName>,
    /// Names served before and now, with other bytes.
    pub changed: Vec<FileName>,
    /// Names no longer served.
    pub removed: Vec<FileName>,
    /// Uploads dropped because the case mode changed and their names collide.
    pub dropped_uploads: Vec<FileName>,
    /// The store's [generation](super::Store::generation) after the swap.
    pub generation: u64,
}

impl StoreChanges {
    /// True when the swap changed nothing that lookups see.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && self.dropped_uploads.is_empty()
    }

    pub(super) fn sort(&mut self) {
        self.added.sort_unstable();
        self.changed.sort_unstable();
        self.removed.sort_unstable();
        self.dropped_uploads.sort_unstable();
    }
}

/// `2 added, 1 changed, 0 removed` (and the dropped uploads when there are any).
impl fmt::Display for StoreChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} added, {} changed, {} removed",
            self.added.len(),
            self.changed.len(),
            self.removed.len()
        )?;
        if !self.dropped_uploads.is_empty() {
            write!(f, ", {} uploads dropped", self.dropped_uploads.len())?;
        }
        Ok(())
    }
}
