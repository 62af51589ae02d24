//! The client session: startup, authentication, and the query loop.

mod buffers;
pub mod cancel;
pub mod classify;
mod client_messages;
pub mod connection;
mod deallocate;
mod error_position;
pub mod handshake;
pub mod isolation;
mod portals;
pub mod prepared;
mod rls;
mod server_messages;
pub mod session;
pub mod settings;
mod stops;
