//! One server connection: connect, authenticate, ParameterStatus, cancel keys.

mod cancel;
mod connection;

pub use cancel::send_cancel;
pub use connection::{BackendError, BackendTarget, ServerConn, from_unix_micros, unix_micros};
