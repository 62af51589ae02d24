//! Bounded tenant labels: the first `server.metrics_tenant_labels` tenants
//! seen keep their own label; every later one is folded into `other`, so a
//! proxy with a million tenants still exports a bounded number of series.

use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

/// Label of tenants past the cap.
pub const OTHER: &str = "other";
/// Label of sessions that have not chosen a tenant.
pub const NONE: &str = "none";

/// Which tenants have a label of their own.
#[derive(Debug)]
pub struct TenantLabels {
    cap: AtomicUsize,
    admitted: DashMap<Box<str>, ()>,
    count: AtomicUsize,
}

impl TenantLabels {
    /// At most `cap` tenants get their own label.
    pub fn new(cap: usize) -> TenantLabels {
        TenantLabels {
            cap: AtomicUsize::new(cap),
            admitted: DashMap::new(),
            count: AtomicUsize::new(0),
        }
    }

    /// Changes the cap (on reload). Tenants already admitted keep their label.
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    /// The label for `tenant`: its id while under the cap (first come, first
    /// served), [`OTHER`] past it, [`NONE`] for no tenant.
    pub fn label(&self, tenant: Option<&str>) -> String {
        let Some(t) = tenant else {
            return NONE.to_string();
        };
        if self.admitted.contains_key(t) {
            return t.to_string();
        }
        match self.admitted.entry(t.into()) {
            Entry::Occupied(_) => t.to_string(),
            Entry::Vacant(v) => {
                if self.count.fetch_add(1, Ordering::Relaxed) < self.cap.load(Ordering::Relaxed) {
                    v.insert(());
                    t.to_string()
                } else {
                    self.count.fetch_sub(1, Ordering::Relaxed);
                    OTHER.to_string()
                }
            }
        }
    }

    /// Number of tenants with a label of their own.
    pub fn admitted(&self) -> usize {
        self.admitted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_n_keep_their_label() {
        let l = TenantLabels::new(2);
        assert_eq!(l.label(Some("a")), "a");
        assert_eq!(l.label(Some("b")), "b");
        assert_eq!(l.label(Some("c")), OTHER);
        assert_eq!(l.label(Some("a")), "a");
        assert_eq!(l.label(None), NONE);
        assert_eq!(l.admitted(), 2);
        l.set_cap(3);
        assert_eq!(l.label(Some("c")), "c");
        assert_eq!(l.label(Some("d")), OTHER);
    }

    #[test]
    fn zero_cap_folds_everyone() {
        let l = TenantLabels::new(0);
        assert_eq!(l.label(Some("a")), OTHER);
    }
}
