//! `tenantgate demo`: local shards, sample tenants, proxy on 127.0.0.1:6432.
