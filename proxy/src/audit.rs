//! The audit stores (SQLite, PostgreSQL), the single writer task that owns the chain head, verify and export.
//!
//! # Layout
//! - [`writer`]: [`AuditLog`], the handle callers append through, and the one task that seals, commits and
//!   acknowledges events in batches (group commit).
//! - [`stored`]: [`StoredDraft`], the only form the writer seals: every field redacted of what DLP flags and
//!   capped in size, before hashing.
//! - [`store`]: [`AuditStore`], the read side and the SQL behind both sides, one implementation generic over
//!   the sqlx database so SQLite and PostgreSQL run the same statements.
//! - [`export`]: the CSV, JSON and NDJSON renderings of events.
//! - [`checkpoint`]: the ed25519 key, signed checkpoints and their external sinks.
//! - [`stats`]: event counts by result, agent and tool over time buckets.
//! - [`retention`]: how long events are kept, by tenant, and what that means for a hash chain.
//! - [`cli`]: the bodies of `toolgate audit verify` and `toolgate audit export`.
//!
//! The hashing and the verification rules live in `toolgate_engine::chain`; this module only moves events
//! between the pipeline, the database and the readers.

pub mod checkpoint;
pub mod cli;
pub mod export;
pub mod retention;
pub mod stats;
pub mod store;
pub mod stored;
#[cfg(test)]
pub(crate) mod test_db;
pub(crate) mod timestamp;
pub mod writer;

#[cfg(test)]
mod tests;

pub use export::{ExportFormat, UnknownExportFormat};
pub use store::{cursor_after, AuditStore, EventFilter, VerifyResult};
pub use stored::StoredDraft;
pub use writer::{AuditLog, Durable, RetentionHold};

/// How long a commit waits before the database may call it done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// SQLite `synchronous=FULL`, PostgreSQL `synchronous_commit=on`: an acknowledged event survives a power
    /// loss.
    #[default]
    Full,
    /// SQLite `synchronous=NORMAL` (WAL), PostgreSQL `synchronous_commit=off`: an acknowledged event survives a
    /// process crash, but the last commits may be lost on a power loss or OS crash.
    Normal,
}

/// The `[audit]` section of the configuration.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// `sqlite://…` or `postgres://…` / `postgresql://…`.
    pub database_url: String,
    /// The chain this instance appends to; instances sharing a database need distinct ids. `None` = `toolgate`.
    pub chain_id: Option<String>,
    /// Most events sealed and committed in one transaction.
    pub batch_max: usize,
    /// Appends waiting for the writer; when full, `append` waits (back-pressure), it never drops.
    pub queue_capacity: usize,
    pub durability: Durability,
    /// The ed25519 key that signs checkpoints (64 hex digits of a seed); created with a warning if absent.
    /// `None`: beside a SQLite database file (`<file>.signing-key`), else `toolgate-audit.signing-key`.
    pub signing_key_file: Option<std::path::PathBuf>,
    /// Public keys (64 hex digits) of other instances whose checkpoints verification accepts.
    pub trusted_public_keys: Vec<String>,
    /// Seconds between signed checkpoints of the chain head (one more is signed at shutdown).
    pub checkpoint_interval_seconds: u64,
    /// A folder every checkpoint is also written to (one JSON file each, plus `<chain>-latest.json`).
    pub checkpoint_dir: Option<std::path::PathBuf>,
    /// An HTTP(S) endpoint every checkpoint is also POSTed to.
    pub checkpoint_url: Option<String>,
    /// Events older than this many days are pruned (after a signed "pruned" checkpoint); 0 keeps everything.
    pub retention_days: u32,
    /// The days the events of a tenant are kept, for the tenants named (the others follow `retention_days`);
    /// see [`retention`] for how this meets the hash chain.
    pub retention_days_by_tenant: std::collections::BTreeMap<String, u32>,
    /// Requests per minute one client IP may make to `/api/v1/public/verify`.
    pub public_verify_per_minute: u32,
    /// Seconds a database call waits for a connection before the write fails (fail closed).
    pub connect_timeout_seconds: u64,
    /// Milliseconds the writer may hold events nobody waits for (outcomes) so that they share the next
    /// write-ahead commit instead of taking one of their own; 0 commits them at once.
    pub hold_outcomes_ms: u64,
}

impl Default for AuditSettings {
    fn default() -> AuditSettings {
        AuditSettings {
            database_url: "sqlite://toolgate-audit.db".to_owned(),
            chain_id: None,
            batch_max: 512,
            queue_capacity: 8192,
            durability: Durability::Full,
            signing_key_file: None,
            trusted_public_keys: Vec::new(),
            checkpoint_interval_seconds: 60,
            checkpoint_dir: None,
            checkpoint_url: None,
            retention_days: 90,
            retention_days_by_tenant: std::collections::BTreeMap::new(),
            public_verify_per_minute: 30,
            connect_timeout_seconds: 5,
            hold_outcomes_ms: 20,
        }
    }
}

impl AuditSettings {
    /// The chain id in effect (`toolgate` when none is configured).
    pub fn effective_chain_id(&self) -> &str {
        self.chain_id.as_deref().unwrap_or(DEFAULT_CHAIN_ID)
    }

    /// The signing key file in effect.
    pub fn signing_key_path(&self) -> std::path::PathBuf {
        if let Some(path) = &self.signing_key_file {
            return path.clone();
        }
        match self.database_url.strip_prefix("sqlite://") {
            Some(file) if !file.is_empty() && !file.contains(":memory:") => {
                let file = file.split('?').next().unwrap_or(file);
                std::path::PathBuf::from(format!("{file}.signing-key"))
            }
            _ => std::path::PathBuf::from("toolgate-audit.signing-key"),
        }
    }

    /// The keys verification trusts: this instance's own (when its key file exists) and the configured ones.
    pub fn trusted_keys(&self) -> Result<checkpoint::TrustedKeys, checkpoint::CheckpointError> {
        let mut keys = checkpoint::TrustedKeys::parse_all(&self.trusted_public_keys)?;
        if let Some(own) = checkpoint::public_key_of(&self.signing_key_path())? {
            keys.push(own);
        }
        Ok(checkpoint::TrustedKeys::new(keys))
    }
}

const DEFAULT_CHAIN_ID: &str = "toolgate";

pub use crate::telemetry::AuditMetrics;

/// Everything that can go wrong in the audit log. Messages never carry event content or credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("unsupported audit database URL: expected sqlite://, postgres:// or postgresql://")]
    UnsupportedUrl,
    #[error("audit database migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The batch holding the event was not committed; the event is not recorded.
    #[error("audit write failed: {0}")]
    Write(String),
    #[error("the audit writer has stopped")]
    Closed,
    #[error("audit query failed: {0}")]
    Query(#[source] sqlx::Error),
    #[error("bad time range: {0}")]
    BadRange(String),
    #[error("bad cursor: not one this server issued")]
    BadCursor,
    #[error("audit export failed: {0}")]
    Export(#[source] std::io::Error),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("bad stats bucket: expected minute, hour or day")]
    BadBucket,
    #[error("audit chain {0:?} is held by another live toolgate instance on this database: give each instance its own audit.chain_id")]
    ChainHeld(String),
}
