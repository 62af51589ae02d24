//! The rewrite cache: statement text → rewrite outcome (refusals included),
//! bounded by bytes. Two generations: entries live in `current`; when it holds
//! half the budget it becomes `previous` and a fresh `current` starts; a hit
//! in `previous` is promoted. Lookups are lock-free reads of sharded maps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use dashmap::DashMap;

use super::Rewritten;
use crate::error::ProxyError;

/// A cached outcome.
pub type Outcome = Arc<Result<Rewritten, ProxyError>>;

/// Cache key: the rules that vary per session on one shard, and the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Tenant session (strict) or trusted session.
    pub strict: bool,
    /// Schema-per-tenant schema, if any.
    pub schema: Option<Arc<str>>,
    /// The statement text as the client sent it.
    pub text: Box<str>,
}

#[derive(Debug, Default)]
struct Generations {
    current: Arc<DashMap<Key, Outcome>>,
    previous: Arc<DashMap<Key, Outcome>>,
}

/// Counters for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to rewrite.
    pub misses: u64,
    /// Approximate bytes held.
    pub bytes: usize,
    /// Entries held.
    pub entries: usize,
}

/// A bounded rewrite cache.
#[derive(Debug)]
pub struct RewriteCache {
    generations: ArcSwap<Generations>,
    bytes: AtomicUsize,
    budget: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl RewriteCache {
    /// A cache holding about `budget` bytes.
    pub fn new(budget: usize) -> RewriteCache {
        RewriteCache {
            generations: ArcSwap::from_pointee(Generations::default()),
            bytes: AtomicUsize::new(0),
            budget: budget.max(4096),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached outcome for `key`, or the result of `compute` (cached).
    pub fn get_or_insert(
        &self,
        key: Key,
        compute: impl FnOnce() -> Result<Rewritten, ProxyError>,
    ) -> Outcome {
        let g = self.generations.load();
        if let Some(v) = g.current.get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return v.clone();
        }
        if let Some(v) = g.previous.get(&key).map(|v| v.clone()) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            self.insert(&g, key, v.clone());
            return v;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let v: Outcome = Arc::new(compute());
        self.insert(&g, key, v.clone());
        v
    }

    fn insert(&self, g: &Generations, key: Key, v: Outcome) {
        let size = key.text.len()
            + 96
            + match v.as_ref() {
                Ok(Rewritten::Template(t)) => t.size(),
                _ => 64,
            };
        g.current.insert(key, v);
        let total = self.bytes.fetch_add(size, Ordering::Relaxed) + size;
        if total > self.budget / 2 {
            self.rotate();
        }
    }

    fn rotate(&self) {
        let old = self.generations.load_full();
        let next = Arc::new(Generations {
            current: Arc::new(DashMap::new()),
            previous: old.current.clone(),
        });
        // Only one rotation wins; the others find the counter already reset.
        let prev = self.generations.compare_and_swap(&old, next);
        if Arc::ptr_eq(&prev, &old) {
            self.bytes.store(0, Ordering::Relaxed);
        }
    }

    /// Hit/miss counts and size.
    pub fn stats(&self) -> CacheStats {
        let g = self.generations.load();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            entries: g.current.len() + g.previous.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &str) -> Key {
        Key {
            strict: true,
            schema: None,
            text: t.into(),
        }
    }

    #[test]
    fn hits_and_misses() {
        let c = RewriteCache::new(1 << 20);
        let mut calls = 0;
        for _ in 0..3 {
            c.get_or_insert(key("select 1"), || {
                calls += 1;
                Ok(Rewritten::Unchanged)
            });
        }
        assert_eq!(calls, 1);
        let s = c.stats();
        assert_eq!((s.hits, s.misses), (2, 1));
    }

    #[test]
    fn stays_bounded() {
        let c = RewriteCache::new(64 * 1024);
        for i in 0..10_000 {
            c.get_or_insert(key(&format!("select {i}")), || Ok(Rewritten::Unchanged));
        }
        let s = c.stats();
        // Two generations of at most half the budget each.
        assert!(s.entries < 1_000, "{s:?}");
        // Recent entries are still there.
        let mut recomputed = false;
        c.get_or_insert(key("select 9999"), || {
            recomputed = true;
            Ok(Rewritten::Unchanged)
        });
        assert!(!recomputed);
    }
}
