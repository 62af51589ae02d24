//! The registry of live client sessions behind `SHOW CLIENTS`, `SHOW POOLS`,
//! `SHOW SERVERS` and `KILL CLIENT`. A session registers after login and is
//! removed when its [`ClientGuard`] drops. What changes per transaction is
//! kept in atomics, so the session loop never takes a lock for it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::backend::from_unix_micros;

/// What a client is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Between transactions: holds no server connection.
    Idle,
    /// Waiting for a server connection (or for a pause to end).
    Waiting,
    /// Holds a server connection.
    Active,
}

impl ClientState {
    /// Name shown by the admin console.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Waiting => "waiting",
            ClientState::Active => "active",
        }
    }

    fn from_u8(v: u8) -> ClientState {
        match v {
            1 => ClientState::Waiting,
            2 => ClientState::Active,
            _ => ClientState::Idle,
        }
    }
}

/// Where a session's transactions go: changes only when its tenant does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Current tenant, if any.
    pub tenant: Option<String>,
    /// Shard of the current (or last) transaction.
    pub shard: String,
}

/// The server connection a client holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLink {
    /// tenantgate's id of the server connection.
    pub id: u64,
    /// Backend process id.
    pub pid: i32,
    /// When the server connection was opened.
    pub opened: SystemTime,
}

/// One live client session.
#[derive(Debug)]
pub struct ClientEntry {
    /// Who the client is (fixed at login).
    pub info: ClientInfo,
    /// When the client connected (wall clock).
    pub connect_time: SystemTime,
    /// Cancelled by `KILL CLIENT`: the session closes.
    pub kill: CancellationToken,
    state: AtomicU8,
    /// Microseconds since `info.connected` at the last transaction start; -1: none yet.
    request_us: AtomicI64,
    /// Microseconds since `info.connected` when the current wait began.
    wait_us: AtomicI64,
    server_id: AtomicU64,
    server_pid: AtomicI32,
    /// When the held server connection was opened: microseconds since the
    /// Unix epoch.
    server_opened_unix_us: AtomicI64,
    placement: Mutex<Placement>,
}

/// Who a client is: what is known of it at login and never changes.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Session id (as in logs).
    pub id: u64,
    /// Login user.
    pub user: String,
    /// Database asked for.
    pub database: String,
    /// Client address.
    pub addr: SocketAddr,
    /// `application_name` startup parameter (empty if none).
    pub application_name: String,
    /// Admin console session.
    pub admin: bool,
    /// When the TCP connection was accepted.
    pub connected: Instant,
}

fn micros_between(from: Instant, to: Instant) -> i64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_micros() as i64,
        None => -(from.duration_since(to).as_micros() as i64),
    }
}

impl ClientEntry {
    fn new(info: ClientInfo) -> ClientEntry {
        let connect_time = SystemTime::now()
            .checked_sub(info.connected.elapsed())
            .unwrap_or_else(SystemTime::now);
        ClientEntry {
            info,
            connect_time,
            kill: CancellationToken::new(),
            state: AtomicU8::new(0),
            request_us: AtomicI64::new(-1),
            wait_us: AtomicI64::new(0),
            server_id: AtomicU64::new(0),
            server_pid: AtomicI32::new(0),
            server_opened_unix_us: AtomicI64::new(0),
            placement: Mutex::new(Placement::default()),
        }
    }

    fn wall(&self, us: i64) -> SystemTime {
        if us >= 0 {
            self.connect_time + Duration::from_micros(us as u64)
        } else {
            self.connect_time - Duration::from_micros(us.unsigned_abs())
        }
    }

    /// What the client is doing.
    pub fn state(&self) -> ClientState {
        ClientState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// A transaction starts at `now`: the client waits for a server.
    pub fn set_waiting(&self, now: Instant) {
        let us = micros_between(self.info.connected, now);
        self.request_us.store(us, Ordering::Relaxed);
        self.wait_us.store(us, Ordering::Relaxed);
        self.state.store(1, Ordering::Relaxed);
    }

    /// The client got server connection `id` (backend `pid`, opened
    /// `opened_unix_us` microseconds after the Unix epoch).
    pub fn set_active(&self, id: u64, pid: i32, opened_unix_us: i64) {
        self.server_id.store(id, Ordering::Relaxed);
        self.server_pid.store(pid, Ordering::Relaxed);
        self.server_opened_unix_us
            .store(opened_unix_us, Ordering::Relaxed);
        self.state.store(2, Ordering::Relaxed);
    }

    /// The client gave its server connection back (or never got one).
    pub fn set_idle(&self) {
        self.server_id.store(0, Ordering::Relaxed);
        self.state.store(0, Ordering::Relaxed);
    }

    /// When the current (or last) transaction started.
    pub fn request_time(&self) -> Option<SystemTime> {
        let us = self.request_us.load(Ordering::Relaxed);
        (us >= 0).then(|| self.wall(us))
    }

    /// How long the client has been waiting, if it is waiting.
    pub fn waiting_for(&self) -> Option<Duration> {
        if self.state() != ClientState::Waiting {
            return None;
        }
        let since = self.wait_us.load(Ordering::Relaxed).max(0) as u64;
        Some(
            self.info
                .connected
                .elapsed()
                .saturating_sub(Duration::from_micros(since)),
        )
    }

    /// The server connection held right now.
    pub fn server(&self) -> Option<ServerLink> {
        let id = self.server_id.load(Ordering::Relaxed);
        (id != 0).then(|| ServerLink {
            id,
            pid: self.server_pid.load(Ordering::Relaxed),
            opened: from_unix_micros(self.server_opened_unix_us.load(Ordering::Relaxed)),
        })
    }

    /// Tenant and shard.
    pub fn placement(&self) -> Placement {
        self.placement.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Records a new tenant or shard.
    pub fn set_placement(&self, tenant: Option<&str>, shard: &str) {
        if let Ok(mut p) = self.placement.lock() {
            p.tenant = tenant.map(str::to_string);
            p.shard.clear();
            p.shard.push_str(shard);
        }
    }
}

/// Live sessions by id.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    map: Arc<DashMap<u64, Arc<ClientEntry>>>,
}

/// Removes its session from the registry when dropped.
#[derive(Debug)]
pub struct ClientGuard {
    map: Arc<DashMap<u64, Arc<ClientEntry>>>,
    /// The registered entry.
    pub entry: Arc<ClientEntry>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.map.remove(&self.entry.info.id);
    }
}

impl ClientRegistry {
    /// Registers a logged-in session.
    pub fn register(&self, c: ClientInfo) -> ClientGuard {
        let entry = Arc::new(ClientEntry::new(c));
        self.map.insert(entry.info.id, entry.clone());
        ClientGuard {
            map: self.map.clone(),
            entry,
        }
    }

    /// The session with `id`.
    pub fn get(&self, id: u64) -> Option<Arc<ClientEntry>> {
        self.map.get(&id).map(|e| e.clone())
    }

    /// Every live session, by id.
    pub fn list(&self) -> Vec<Arc<ClientEntry>> {
        let mut v: Vec<_> = self.map.iter().map(|e| e.value().clone()).collect();
        v.sort_by_key(|e| e.info.id);
        v
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::unix_micros;

    fn new_client(id: u64) -> ClientInfo {
        ClientInfo {
            id,
            user: "u".into(),
            database: "app".into(),
            addr: "127.0.0.1:5000".parse().unwrap(),
            application_name: String::new(),
            admin: false,
            connected: Instant::now(),
        }
    }

    #[test]
    fn guard_unregisters() {
        let r = ClientRegistry::default();
        let g = r.register(new_client(7));
        assert_eq!(r.len(), 1);
        assert!(r.get(7).is_some());
        drop(g);
        assert!(r.is_empty());
    }

    #[test]
    fn state_transitions() {
        let r = ClientRegistry::default();
        let g = r.register(new_client(1));
        let e = &g.entry;
        assert_eq!(e.state(), ClientState::Idle);
        assert!(e.request_time().is_none());
        e.set_waiting(Instant::now());
        assert_eq!(e.state(), ClientState::Waiting);
        assert!(e.waiting_for().is_some());
        let opened = SystemTime::now() - Duration::from_secs(60);
        e.set_active(3, 42, unix_micros(opened));
        assert_eq!(e.server().map(|s| (s.id, s.pid)), Some((3, 42)));
        let shown = e
            .server()
            .map(|s| s.opened)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let off = shown
            .duration_since(opened)
            .unwrap_or_else(|e| e.duration());
        assert!(off < Duration::from_millis(1), "{off:?}");
        assert!(e.waiting_for().is_none());
        e.set_idle();
        assert!(e.server().is_none());
        assert!(e.request_time().is_some());
        e.set_placement(Some("acme"), "s1");
        assert_eq!(e.placement().tenant.as_deref(), Some("acme"));
    }
}
