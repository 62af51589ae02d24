//! Throwaway local Postgres clusters (initdb / pg_ctl) for the demo and tests.
