//! What tenantgate knows about a shard's schema: which relations carry the
//! tenant column (and its type), which are system catalogs, which functions
//! are user-defined, and the search path unqualified names resolve through.

mod discover;

use std::collections::{HashMap, HashSet};

pub use discover::{CatalogError, discover};

/// The kind of a relation, as far as isolation is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelationKind {
    /// A user relation (table, view, …) that has the tenant column, of this
    /// SQL type (as `format_type` spells it, e.g. `text`, `bigint`, `uuid`).
    Tenant(String),
    /// A user relation without the tenant column.
    Plain,
    /// A relation in `pg_catalog` or `information_schema`.
    System,
}

/// A relation a name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<'a> {
    /// Schema holding it.
    pub schema: &'a str,
    /// Relation name.
    pub name: &'a str,
    /// What it is.
    pub kind: &'a RelationKind,
}

/// One shard's catalog snapshot.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    relations: HashMap<(String, String), RelationKind>,
    system: HashSet<String>,
    search_path: Vec<String>,
    user_functions: HashSet<String>,
}

const SYSTEM: RelationKind = RelationKind::System;

impl Catalog {
    /// Builds a catalog from parts (discovery and tests use this).
    pub fn new(
        relations: impl IntoIterator<Item = (String, String, RelationKind)>,
        system_relations: impl IntoIterator<Item = String>,
        search_path: Vec<String>,
        user_functions: impl IntoIterator<Item = String>,
    ) -> Catalog {
        Catalog {
            relations: relations.into_iter().map(|(s, n, k)| ((s, n), k)).collect(),
            system: system_relations.into_iter().collect(),
            search_path,
            user_functions: user_functions.into_iter().collect(),
        }
    }

    /// Resolves a relation name as Postgres would: `pg_catalog` first for
    /// unqualified names, then the search path. Names are already folded.
    pub fn resolve<'a>(&'a self, schema: Option<&'a str>, name: &'a str) -> Option<Resolved<'a>> {
        match schema {
            Some(s) if s == "pg_catalog" => self.system.contains(name).then_some(Resolved {
                schema: s,
                name,
                kind: &SYSTEM,
            }),
            Some(s) if s == "information_schema" => Some(Resolved {
                schema: s,
                name,
                kind: &SYSTEM,
            }),
            Some(s) => self
                .relations
                .get_key_value(&(s.to_string(), name.to_string()))
                .map(|((s, n), k)| Resolved {
                    schema: s,
                    name: n,
                    kind: k,
                }),
            None => {
                if self.system.contains(name) {
                    return Some(Resolved {
                        schema: "pg_catalog",
                        name,
                        kind: &SYSTEM,
                    });
                }
                self.search_path.iter().find_map(|s| {
                    self.relations
                        .get_key_value(&(s.clone(), name.to_string()))
                        .map(|((s, n), k)| Resolved {
                            schema: s,
                            name: n,
                            kind: k,
                        })
                })
            }
        }
    }

    /// Whether `name` (folded, unqualified) is a function defined outside
    /// the system schemas.
    pub fn is_user_function(&self, name: &str) -> bool {
        self.user_functions.contains(name)
    }

    /// The search path unqualified names resolve through.
    pub fn search_path(&self) -> &[String] {
        &self.search_path
    }

    /// Types of the tenant column across tenant relations.
    pub fn tenant_column_types(&self) -> HashSet<&str> {
        self.relations
            .values()
            .filter_map(|k| match k {
                RelationKind::Tenant(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Number of user relations known.
    pub fn relation_count(&self) -> usize {
        self.relations.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Catalog {
        Catalog::new(
            [
                (
                    "public".into(),
                    "orders".into(),
                    RelationKind::Tenant("text".into()),
                ),
                ("public".into(), "plans".into(), RelationKind::Plain),
                ("other".into(), "orders".into(), RelationKind::Plain),
                ("public".into(), "pg_class".into(), RelationKind::Plain),
            ],
            ["pg_class".to_string(), "pg_stats".to_string()],
            vec!["public".into()],
            ["my_fn".to_string()],
        )
    }

    #[test]
    fn resolves_like_postgres() {
        let c = sample();
        assert_eq!(
            c.resolve(None, "orders").map(|r| r.kind.clone()),
            Some(RelationKind::Tenant("text".into()))
        );
        assert_eq!(
            c.resolve(Some("other"), "orders").map(|r| r.kind.clone()),
            Some(RelationKind::Plain)
        );
        // pg_catalog comes first for unqualified names.
        assert_eq!(
            c.resolve(None, "pg_class").map(|r| r.schema),
            Some("pg_catalog")
        );
        assert_eq!(
            c.resolve(Some("public"), "pg_class")
                .map(|r| r.kind.clone()),
            Some(RelationKind::Plain)
        );
        assert!(c.resolve(None, "nope").is_none());
        assert!(c.resolve(Some("pg_catalog"), "orders").is_none());
        assert!(c.is_user_function("my_fn"));
        assert_eq!(c.tenant_column_types().len(), 1);
    }
}
