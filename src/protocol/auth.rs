//! Server-side client authentication: SCRAM-SHA-256 and md5 verification.
