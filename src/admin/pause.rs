//! `PAUSE` / `RESUME`: new transactions of a paused scope (everything, one
//! shard, one tenant) wait before taking a server connection, bounded by
//! `server.query_wait_timeout`; transactions already running finish. With no
//! pause in force the check is one atomic load.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::error::ProxyError;

/// What a `PAUSE` or `RESUME` applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every transaction.
    All,
    /// Transactions on this shard.
    Shard(String),
    /// Transactions of this tenant.
    Tenant(String),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::All => f.write_str("tenantgate"),
            Scope::Shard(s) => write!(f, "shard \"{s}\""),
            Scope::Tenant(t) => write!(f, "tenant \"{t}\""),
        }
    }
}

impl Scope {
    /// Whether a transaction of `tenant` on `shard` falls under this scope.
    pub fn covers(&self, tenant: Option<&str>, shard: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Shard(s) => s == shard,
            Scope::Tenant(t) => tenant == Some(t.as_str()),
        }
    }
}

/// The pauses in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PauseSet {
    /// Everything is paused.
    pub all: bool,
    /// Paused shards.
    pub shards: BTreeSet<String>,
    /// Paused tenants.
    pub tenants: BTreeSet<String>,
}

impl PauseSet {
    /// What stops a transaction of `tenant` on `shard`, if anything.
    pub fn blocker(&self, tenant: Option<&str>, shard: &str) -> Option<String> {
        if self.all {
            Some("tenantgate".to_string())
        } else if self.shards.contains(shard) {
            Some(format!("shard \"{shard}\""))
        } else {
            tenant
                .filter(|t| self.tenants.contains(*t))
                .map(|t| format!("tenant \"{t}\""))
        }
    }

    fn is_empty(&self) -> bool {
        !self.all && self.shards.is_empty() && self.tenants.is_empty()
    }
}

/// Pauses shared by every session.
#[derive(Debug)]
pub struct Pauses {
    any: AtomicBool,
    tx: watch::Sender<PauseSet>,
}

impl Default for Pauses {
    fn default() -> Self {
        Pauses {
            any: AtomicBool::new(false),
            tx: watch::Sender::new(PauseSet::default()),
        }
    }
}

impl Pauses {
    /// Pauses `scope`.
    pub fn pause(&self, scope: &Scope) {
        self.update(|p| match scope {
            Scope::All => p.all = true,
            Scope::Shard(s) => {
                p.shards.insert(s.clone());
            }
            Scope::Tenant(t) => {
                p.tenants.insert(t.clone());
            }
        });
    }

    /// Resumes `scope`; [`Scope::All`] lifts every pause.
    pub fn resume(&self, scope: &Scope) {
        self.update(|p| match scope {
            Scope::All => *p = PauseSet::default(),
            Scope::Shard(s) => {
                p.shards.remove(s);
            }
            Scope::Tenant(t) => {
                p.tenants.remove(t);
            }
        });
    }

    fn update(&self, f: impl FnOnce(&mut PauseSet)) {
        self.tx.send_modify(|p| {
            f(p);
            self.any.store(!p.is_empty(), Ordering::Release);
        });
    }

    /// Whether `scope` is still paused (by its own pause or a wider one).
    pub fn holds(&self, scope: &Scope) -> bool {
        let p = self.tx.borrow();
        p.all
            || match scope {
                Scope::All => false,
                Scope::Shard(s) => p.shards.contains(s),
                Scope::Tenant(t) => p.tenants.contains(t),
            }
    }

    /// The pauses in force.
    pub fn current(&self) -> PauseSet {
        self.tx.borrow().clone()
    }

    /// Whether any pause is in force (one atomic load).
    #[inline]
    pub fn is_active(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Whether a transaction of `tenant` on `shard` is paused now.
    #[inline]
    pub fn blocks(&self, tenant: Option<&str>, shard: &str) -> bool {
        self.is_active() && self.tx.borrow().blocker(tenant, shard).is_some()
    }

    /// Waits while a transaction of `tenant` on `shard` is paused, at most
    /// `timeout`; then fails with 57014. `Ok(true)` when it waited (the
    /// routing table may have changed meanwhile), `Ok(false)` when nothing
    /// was paused.
    pub async fn wait(
        &self,
        tenant: Option<&str>,
        shard: &str,
        timeout: Duration,
    ) -> Result<bool, ProxyError> {
        if !self.is_active() {
            return Ok(false);
        }
        let mut rx = self.tx.subscribe();
        let Some(what) = rx.borrow_and_update().blocker(tenant, shard) else {
            return Ok(false);
        };
        tracing::info!(paused = %what, "transaction waits: paused by the admin console");
        let resumed = rx.wait_for(|p| p.blocker(tenant, shard).is_none());
        match tokio::time::timeout(timeout, resumed).await {
            Ok(_) => Ok(true),
            Err(_) => Err(ProxyError::paused_timeout(&what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_holds_until_resumed() {
        let p = Pauses::default();
        let s0 = Scope::Shard("s0".into());
        assert!(!p.holds(&s0));
        p.pause(&s0);
        assert!(p.holds(&s0));
        assert!(!p.holds(&Scope::All));
        p.pause(&Scope::All);
        p.resume(&s0);
        assert!(p.holds(&s0), "the wider pause still holds it");
        p.resume(&Scope::All);
        assert!(!p.holds(&s0) && !p.holds(&Scope::All));
    }

    #[test]
    fn blockers() {
        let p = Pauses::default();
        assert!(!p.is_active());
        p.pause(&Scope::Tenant("a".into()));
        assert!(p.is_active());
        let set = p.current();
        assert!(set.blocker(Some("a"), "s0").is_some());
        assert!(set.blocker(Some("b"), "s0").is_none());
        assert!(set.blocker(None, "s0").is_none());
        p.pause(&Scope::Shard("s1".into()));
        assert!(p.current().blocker(Some("b"), "s1").is_some());
        p.resume(&Scope::Tenant("a".into()));
        p.resume(&Scope::Shard("s1".into()));
        assert!(!p.is_active());
        p.pause(&Scope::All);
        assert!(p.current().blocker(None, "s9").is_some());
        p.resume(&Scope::All);
        assert!(!p.is_active());
    }

    #[tokio::test]
    async fn waits_until_resumed_or_times_out() {
        let p = std::sync::Arc::new(Pauses::default());
        assert!(
            !p.wait(Some("a"), "s0", Duration::from_millis(1))
                .await
                .unwrap()
        );
        p.pause(&Scope::Tenant("a".into()));
        let e = p
            .wait(Some("a"), "s0", Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(e.code.code(), "57014");
        let q = p.clone();
        let waiter =
            tokio::spawn(async move { q.wait(Some("a"), "s0", Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        p.resume(&Scope::Tenant("a".into()));
        assert!(waiter.await.unwrap().unwrap(), "it waited");
    }

    #[test]
    fn scopes_cover_their_transactions() {
        assert!(Scope::All.covers(None, "s0"));
        assert!(Scope::Shard("s0".into()).covers(Some("a"), "s0"));
        assert!(!Scope::Shard("s0".into()).covers(Some("a"), "s1"));
        assert!(Scope::Tenant("a".into()).covers(Some("a"), "s1"));
        assert!(!Scope::Tenant("a".into()).covers(None, "s1"));
        assert!(!Scope::Tenant("a".into()).covers(Some("b"), "s1"));
    }
}
