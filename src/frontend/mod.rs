//! The client session: startup, authentication, and the query loop.

pub mod cancel;
pub mod classify;
pub mod connection;
pub mod handshake;
pub mod prepared;
pub mod session;
pub mod settings;
