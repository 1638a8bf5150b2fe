//! The audit stores (SQLite, PostgreSQL), the single writer task that owns the chain head, verify and export.
