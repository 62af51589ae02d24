//! The client session: startup, authentication, and the query loop.
