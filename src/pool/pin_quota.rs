//! How many server connections each tenant holds pinned in one pool.
//!
//! A pinned session (LISTEN, a session advisory lock, a temporary table, …)
//! keeps its server connection between transactions, so a tenant with as
//! many pinned sessions as the pool is large leaves every other tenant of
//! the shard waiting. Each pool counts its pins by tenant; a statement that
//! would pin one more than `max_pinned_per_tenant` is refused (53300), and
//! the tenant's other sessions keep working unpinned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Pinned connections by tenant, with the limit.
#[derive(Debug, Default)]
pub struct PinQuota {
    /// Most pinned connections one tenant may hold (0: no limit).
    limit: AtomicUsize,
    held: Mutex<HashMap<Arc<str>, usize>>,
}

impl PinQuota {
    /// A quota of `limit` per tenant (0: none).
    pub fn new(limit: usize) -> PinQuota {
        PinQuota {
            limit: AtomicUsize::new(limit),
            held: Mutex::default(),
        }
    }

    /// Sets the limit (a reload); pins already held stay.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// The limit (0: none).
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Pinned connections `tenant` holds now.
    pub fn held_by(&self, tenant: &str) -> usize {
        self.lock().get(tenant).copied().unwrap_or(0)
    }

    /// One more pin for `tenant`, if under the limit (or `force`: a pin the
    /// session cannot decline, counted all the same). `Err` carries the
    /// limit reached.
    pub fn take(self: &Arc<Self>, tenant: &str, force: bool) -> Result<PinLease, usize> {
        let limit = self.limit();
        let mut held = self.lock();
        let n = held.entry(Arc::from(tenant)).or_insert(0);
        if !force && limit > 0 && *n >= limit {
            return Err(limit);
        }
        *n += 1;
        Ok(PinLease {
            quota: self.clone(),
            tenant: Arc::from(tenant),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, usize>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One pinned connection counted for a tenant; dropping it uncounts it.
#[derive(Debug)]
pub struct PinLease {
    quota: Arc<PinQuota>,
    tenant: Arc<str>,
}

impl Drop for PinLease {
    fn drop(&mut self) {
        let mut held = self.quota.lock();
        if let Some(n) = held.get_mut(&*self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&*self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tenant_pins_up_to_the_limit() {
        let q = Arc::new(PinQuota::new(2));
        let a1 = q.take("a", false).expect("first");
        let _a2 = q.take("a", false).expect("second");
        assert_eq!(q.take("a", false).err(), Some(2));
        let _b = q.take("b", false).expect("another tenant");
        // A forced pin counts beyond the limit.
        let a3 = q.take("a", true).expect("forced");
        assert_eq!(q.held_by("a"), 3);
        drop(a3);
        drop(a1);
        assert_eq!(q.held_by("a"), 1);
        let _a = q.take("a", false).expect("room again");
        q.set_limit(0);
        let _more: Vec<_> = (0..5)
            .map(|_| q.take("a", false).expect("no limit"))
            .collect();
        assert_eq!(q.held_by("a"), 7);
        assert_eq!(q.held_by("c"), 0);
    }
}
