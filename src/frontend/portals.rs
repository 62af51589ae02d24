//! The client's portals that mean something to the proxy when executed:
//! those bound to a statement with session effects (a prepared `SET`
//! counts each time it runs) and those of a prepared `SHOW` of the tenant
//! variable (a `SELECT` on the server, whose CommandComplete is to say
//! `SHOW`). Every other portal is the server's business alone.
//!
//! Portals follow Postgres's lifetimes: binding a name again replaces the
//! portal, a Close of it or a simple Query (for the unnamed one) drops it,
//! and none outlives its transaction.

use std::sync::Arc;

use super::classify::Effect;
use super::prepared::name_key;

/// Portals followed at once; beyond this many (a client binding that many
/// SETs without running them), a client whose portal has session effects
/// keeps its server connection instead (see [`Portals::bind`]).
const MAX_TRACKED: usize = 64;

/// What executing one tracked portal means.
#[derive(Debug, Clone, Default)]
pub(super) struct PortalMeaning {
    /// The session effects of its statement.
    pub effects: Option<Arc<[Effect]>>,
    /// Its statement is a `SHOW` of the tenant variable.
    pub shows: bool,
}

/// The tracked portals of one session, by name (cut as Postgres cuts
/// portal names, see [`name_key`]).
#[derive(Debug, Default)]
pub(super) struct Portals {
    list: Vec<(Vec<u8>, PortalMeaning)>,
}

/// A portal with session effects beyond what is followed: only its server
/// connection knows the session's state from here on.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TooMany;

impl Portals {
    /// No portal is followed (the common case, checked before any work).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// A Bind of `name` to a statement meaning `meaning`: replaces any
    /// portal of that name. `Err(TooMany)` when a portal with effects
    /// cannot be followed; one that only shows is then left untracked
    /// (its tag stays the server's).
    pub fn bind(&mut self, name: &[u8], meaning: PortalMeaning) -> Result<(), TooMany> {
        let tracked = meaning.effects.is_some() || meaning.shows;
        if !tracked && self.list.is_empty() {
            return Ok(());
        }
        self.remove(name);
        if !tracked {
            return Ok(());
        }
        if self.list.len() < MAX_TRACKED {
            self.list.push((name_key(name).to_vec(), meaning));
            Ok(())
        } else if meaning.effects.is_some() {
            Err(TooMany)
        } else {
            Ok(())
        }
    }

    /// What executing `name` means, if it is followed.
    pub fn get(&self, name: &[u8]) -> Option<&PortalMeaning> {
        let name = name_key(name);
        self.list.iter().find(|(p, _)| p == name).map(|(_, m)| m)
    }

    /// The portal `name` is gone (closed, or run once for good).
    pub fn remove(&mut self, name: &[u8]) {
        if !self.list.is_empty() {
            let name = name_key(name);
            self.list.retain(|(p, _)| p != name);
        }
    }

    /// A simple Query drops the unnamed portal.
    pub fn drop_unnamed(&mut self) {
        self.remove(b"");
    }

    /// No transaction is open: no portal is left.
    pub fn clear(&mut self) {
        self.list.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effects() -> PortalMeaning {
        PortalMeaning {
            effects: Some(Arc::from(vec![Effect::ResetAll])),
            shows: false,
        }
    }

    fn shows() -> PortalMeaning {
        PortalMeaning {
            effects: None,
            shows: true,
        }
    }

    #[test]
    fn binding_a_name_again_replaces_the_portal() {
        let mut portals = Portals::default();
        assert_eq!(portals.bind(b"p", shows()), Ok(()));
        assert!(portals.get(b"p").is_some_and(|m| m.shows));
        assert_eq!(portals.bind(b"p", effects()), Ok(()));
        let meaning = portals.get(b"p").cloned().unwrap_or_default();
        assert!(!meaning.shows && meaning.effects.is_some());
        assert_eq!(portals.bind(b"p", PortalMeaning::default()), Ok(()));
        assert!(portals.get(b"p").is_none());
        assert!(portals.is_empty());
    }

    #[test]
    fn a_simple_query_drops_only_the_unnamed_portal() {
        let mut portals = Portals::default();
        assert_eq!(portals.bind(b"", shows()), Ok(()));
        assert_eq!(portals.bind(b"named", effects()), Ok(()));
        portals.drop_unnamed();
        assert!(portals.get(b"").is_none());
        assert!(portals.get(b"named").is_some());
        portals.remove(b"named");
        assert!(portals.is_empty());
    }

    #[test]
    fn only_portals_with_effects_beyond_the_limit_are_refused() {
        let mut portals = Portals::default();
        for i in 0..MAX_TRACKED {
            assert_eq!(portals.bind(format!("p{i}").as_bytes(), shows()), Ok(()));
        }
        assert_eq!(portals.bind(b"extra", shows()), Ok(()));
        assert!(portals.get(b"extra").is_none());
        assert_eq!(portals.bind(b"extra", effects()), Err(TooMany));
        // Rebinding a followed name stays within the limit.
        assert_eq!(portals.bind(b"p0", effects()), Ok(()));
        assert!(portals.get(b"p0").is_some_and(|m| m.effects.is_some()));
        portals.clear();
        assert!(portals.is_empty());
    }
}
