//! The Postgres wire protocol: framing, startup packets, the messages tenantgate
//! writes itself, typed SQLSTATEs and client authentication.

pub mod auth;
pub mod framing;
pub mod messages;
pub mod sqlstate;
pub mod startup;
