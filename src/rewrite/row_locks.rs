//! Row locks on global tables, refused in tenant sessions.
//!
//! Global tables are read by every tenant of a shard and written by none
//! of them. A `FOR UPDATE` or `FOR SHARE` that reaches a global table's rows
//! would let one tenant, holding its transaction open, block every other
//! tenant's locks on those rows (and, with a foreign key to the global
//! table, their writes that reference them). Which rows a lock clause
//! reaches follows Postgres: a clause without `OF` locks every relation in
//! its query level's `FROM`, subqueries there included, whole; a clause
//! with `OF` locks the relations and subqueries it names (by alias, or by
//! relation name where there is none). Subqueries in expressions are not
//! reached.
//!
//! sqlparser keeps only the first name of an `OF` list (the rest are read
//! by `lock_strength`): the others count for every query level with an
//! `OF` clause, which can refuse a lock that would not reach a global
//! table, never miss one that would.

use sqlparser::ast::{Query, TableAlias};

use super::{Rewriter, fold};
use crate::error::ProxyError;

/// What the lock clauses in force at the query level at hand reach.
#[derive(Debug, Default, Clone)]
pub(super) struct LockScope {
    /// Every relation of the level's `FROM`.
    all: bool,
    /// The names `OF` lists give (folded).
    names: Vec<String>,
}

impl LockScope {
    /// Whether the relation or subquery visible as `name` is locked.
    fn reaches(&self, name: &str) -> bool {
        self.all || self.names.iter().any(|n| n == name)
    }
}

impl Rewriter<'_> {
    /// Enters query `q`'s level; `inherited` when a lock of the level
    /// around it reaches it whole (it is a subquery in a locked `FROM`).
    /// Returns the scope to give back to [`Rewriter::leave_lock_scope`].
    pub(super) fn enter_lock_scope(&mut self, q: &Query, inherited: bool) -> LockScope {
        let mut scope = LockScope {
            all: inherited,
            names: Vec::new(),
        };
        for clause in &q.locks {
            match clause.of.as_ref().and_then(|name| name.0.last()) {
                Some(sqlparser::ast::ObjectNamePart::Identifier(last)) => {
                    scope.names.push(fold(last));
                    match &self.more_of {
                        Some(more) => scope.names.extend(more.iter().cloned()),
                        None => scope.all = true,
                    }
                }
                // No `OF` (or a name it cannot read): everything.
                _ => scope.all = true,
            }
        }
        std::mem::replace(&mut self.lock_scope, scope)
    }

    /// Leaves a query level, giving back the scope around it.
    pub(super) fn leave_lock_scope(&mut self, outer: LockScope) {
        self.lock_scope = outer;
    }

    /// Whether a lock of the level at hand reaches the subquery in `FROM`
    /// visible as `alias` (a subquery has no other name).
    pub(super) fn lock_reaches_subquery(&self, alias: Option<&TableAlias>) -> bool {
        match alias {
            Some(a) => self.lock_scope.reaches(&fold(&a.name)),
            None => self.lock_scope.all,
        }
    }

    /// Whether a lock of the level at hand reaches anything: a query body
    /// in brackets is taken as locked whole then.
    pub(super) fn lock_reaches_any(&self) -> bool {
        self.lock_scope.all || !self.lock_scope.names.is_empty()
    }

    /// Refuses a lock that reaches the global relation `display`, visible
    /// as `visible` in its `FROM`.
    pub(super) fn check_global_row_lock(
        &self,
        display: &str,
        visible: &str,
    ) -> Result<(), ProxyError> {
        if self.strict && self.lock_scope.reaches(visible) {
            return Err(ProxyError::global_row_lock(display));
        }
        Ok(())
    }
}

/// The relation names of an `OF` list's remainder as written (`, b, s."C"`):
/// the last part of each, folded; `None` if one cannot be read (then the
/// lock is taken to reach everything).
pub(super) fn of_names(more_of: &str) -> Option<Vec<String>> {
    more_of
        .split(',')
        .filter(|name| !name.trim().is_empty())
        .map(|name| super::scope::regclass_parts(name)?.pop())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_lists_give_their_last_parts() {
        assert_eq!(
            of_names(", b, s.C,\"D\"\"x\", \"a.b\"").unwrap(),
            ["b", "c", "D\"x", "a.b"]
        );
        assert_eq!(of_names(""), Some(vec![]));
        assert_eq!(of_names(", a b"), None);
    }
}
