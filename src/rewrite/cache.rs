//! The rewrite cache: statement text → rewrite outcome (refusals included),
//! and statement shape → [`ShapeTemplate`], each bounded by bytes. Each is
//! kept in two generations: entries live in `current`; when it holds half
//! its budget it becomes `previous` and a fresh `current` starts; a hit in
//! `previous` is promoted. Lookups are lock-free reads of sharded maps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use dashmap::DashMap;

use super::shape::{self, ShapeTemplate};
use super::{RewriteRules, Rewritten};
use crate::error::ProxyError;

/// A cached outcome.
pub type Outcome = Arc<Result<Rewritten, ProxyError>>;

/// What the shape tier holds for a shape.
#[derive(Debug, Clone)]
enum ShapeEntry {
    /// One statement of the shape was seen. A shape is built only when a
    /// second one comes (building costs a second rewrite, wasted on
    /// statements whose shape never comes back).
    Seen,
    /// The shape could not be shown to rewrite like its statements: they
    /// take the text path, and it is not tried again while the entry lives.
    Refused,
    /// The template every statement of the shape is filled into.
    Ready(Arc<ShapeTemplate>),
}

/// Cache key: the rules that vary per session on one shard, and the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Tenant session (strict) or trusted session.
    pub strict: bool,
    /// Schema-per-tenant schema, if any.
    pub schema: Option<Arc<str>>,
    /// The statement text as the client sent it.
    pub text: Box<str>,
    /// Rewritten with every tenant relation fenced (see
    /// [`super::RewriteRules::fence`]).
    pub fence: bool,
}

impl Key {
    /// The key of the fenced rewrite of the same statement.
    pub fn fenced(self) -> Key {
        Key {
            fence: true,
            ..self
        }
    }
}

/// Bytes an entry is counted for.
trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for Outcome {
    fn weight(&self) -> usize {
        match self.as_ref() {
            Ok(Rewritten::Template(t)) => t.size(),
            _ => 64,
        }
    }
}

impl Weigh for ShapeEntry {
    fn weight(&self) -> usize {
        match self {
            ShapeEntry::Ready(s) => s.size(),
            ShapeEntry::Seen | ShapeEntry::Refused => 16,
        }
    }
}

#[derive(Debug)]
struct Generations<V> {
    current: Arc<DashMap<Key, V>>,
    previous: Arc<DashMap<Key, V>>,
}

impl<V> Default for Generations<V> {
    fn default() -> Self {
        Generations {
            current: Arc::new(DashMap::new()),
            previous: Arc::new(DashMap::new()),
        }
    }
}

/// One map, bounded by bytes, in two generations.
#[derive(Debug)]
struct Tier<V> {
    generations: ArcSwap<Generations<V>>,
    bytes: AtomicUsize,
    budget: usize,
}

impl<V: Clone + Weigh> Tier<V> {
    fn new(budget: usize) -> Tier<V> {
        Tier {
            generations: ArcSwap::from_pointee(Generations::default()),
            bytes: AtomicUsize::new(0),
            budget: budget.max(4096),
        }
    }

    fn get(&self, key: &Key) -> Option<V> {
        let g = self.generations.load();
        if let Some(v) = g.current.get(key) {
            return Some(v.clone());
        }
        let v = g.previous.get(key).map(|v| v.clone())?;
        self.insert(key.clone(), v.clone());
        Some(v)
    }

    fn insert(&self, key: Key, v: V) {
        let size = key.text.len() + 96 + v.weight();
        let g = self.generations.load();
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

    fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    fn entries(&self) -> usize {
        let g = self.generations.load();
        g.current.len() + g.previous.len()
    }
}

/// Counters for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache (by text or by shape).
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
    text: Tier<Outcome>,
    shapes: Tier<ShapeEntry>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl RewriteCache {
    /// A cache holding about `budget` bytes: three quarters for statement
    /// texts, one quarter for shapes.
    pub fn new(budget: usize) -> RewriteCache {
        RewriteCache {
            text: Tier::new(budget - budget / 4),
            shapes: Tier::new(budget / 4),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached outcome for `key`, or the result of `compute` (cached).
    /// By text only.
    pub fn get_or_insert(
        &self,
        key: Key,
        compute: impl FnOnce() -> Result<Rewritten, ProxyError>,
    ) -> Outcome {
        if let Some(v) = self.text.get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return v;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let v: Outcome = Arc::new(compute());
        self.text.insert(key, v.clone());
        v
    }

    /// The rewrite of `key.text` if the text tier holds it (counted as a
    /// hit): an answer that needs neither parsing nor lexing.
    pub fn cached(&self, key: &Key) -> Option<Result<Rewritten, ProxyError>> {
        let v = self.text.get(key)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(v.as_ref().clone())
    }

    /// The rewrite of `key.text` under `rules`: from the cache by text, else
    /// by shape (a statement that differs from earlier ones only in its
    /// numbers), else rewritten now and cached by text; the second statement
    /// of a shape also builds the shape.
    pub fn rewrite(&self, key: Key, rules: &RewriteRules<'_>) -> Result<Rewritten, ProxyError> {
        if let Some(hit) = self.cached(&key) {
            return hit;
        }
        let Some(literals) = shape::number_literals(&key.text) else {
            return self.rewrite_text(key, rules).as_ref().clone();
        };
        let shape_key = Key {
            strict: key.strict,
            schema: key.schema.clone(),
            text: shape::key_text(&key.text, &literals),
            fence: key.fence,
        };
        match self.shapes.get(&shape_key) {
            Some(ShapeEntry::Ready(shape)) => {
                if let Some(r) = shape.instance(&key.text, &literals) {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(r);
                }
                self.rewrite_text(key, rules).as_ref().clone()
            }
            Some(ShapeEntry::Refused) => self.rewrite_text(key, rules).as_ref().clone(),
            Some(ShapeEntry::Seen) => {
                let outcome = self.rewrite_text(key.clone(), rules);
                let entry = match ShapeTemplate::build(&key.text, &literals, &outcome, rules) {
                    Some(shape) => ShapeEntry::Ready(Arc::new(shape)),
                    None => ShapeEntry::Refused,
                };
                self.shapes.insert(shape_key, entry);
                outcome.as_ref().clone()
            }
            None => {
                self.shapes.insert(shape_key, ShapeEntry::Seen);
                self.rewrite_text(key, rules).as_ref().clone()
            }
        }
    }

    /// Rewrites `key.text` and caches the outcome by text.
    fn rewrite_text(&self, key: Key, rules: &RewriteRules<'_>) -> Outcome {
        self.misses.fetch_add(1, Ordering::Relaxed);
        let v: Outcome = Arc::new(super::rewrite(&key.text, rules));
        self.text.insert(key, v.clone());
        v
    }

    /// Hit/miss counts and size (both tiers).
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: self.text.bytes() + self.shapes.bytes(),
            entries: self.text.entries() + self.shapes.entries(),
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
            fence: false,
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
