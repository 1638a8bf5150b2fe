//! The listening side of the state-change channel. On PostgreSQL, triggers on the shared tables (migration
//! 0009) send `pg_notify('toolgate_state', '<schema> <kind> <key>')` in the transaction of each change; this is
//! the one connection per instance that `LISTEN`s for them. What the notifications mean, and who reacts, lives
//! in `crate::shared_state`. SQLite has no listener: its file's writes are watched instead
//! (`crate::shared_state`'s `file_watch`).

use sqlx::postgres::{PgListener, PgPoolOptions};

use super::{AuditStore, Backend};
use crate::audit::AuditError;

/// The channel every instance listens on.
pub const CHANNEL: &str = "toolgate_state";

/// One change another instance (or this one) committed: `kind` names the table's concern, `key` the row (a
/// hash or an id, never a secret) or `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: String,
    pub key: String,
}

/// A `LISTEN` connection of its own (outside the store's pool, so it never holds a pooled connection).
pub struct StateListener {
    listener: PgListener,
    /// Notifications of other schemas sharing the database (other deployments, tests) are skipped.
    schema: String,
}

/// What one wait on the listener gave.
#[derive(Debug)]
pub enum Heard {
    Notice(Notice),
    /// The connection was lost: notifications may have been missed. It is back and listening again.
    Lost,
    /// A notification of another schema sharing the database: nothing for this instance.
    Elsewhere,
}

impl StateListener {
    /// Waits for the next notification. An error means the connection failed and could not be made again
    /// (the database is away): start a new listener.
    pub async fn next(&mut self) -> Result<Heard, AuditError> {
        let Some(n) = self.listener.try_recv().await.map_err(AuditError::Query)? else {
            return Ok(Heard::Lost);
        };
        let mut parts = n.payload().splitn(3, ' ');
        Ok(match (parts.next(), parts.next(), parts.next()) {
            (Some(schema), Some(kind), Some(key)) if schema == self.schema => {
                Heard::Notice(Notice {
                    kind: kind.to_owned(),
                    key: key.to_owned(),
                })
            }
            _ => Heard::Elsewhere,
        })
    }
}

impl AuditStore {
    /// Starts listening for state changes: `None` on SQLite (nothing to listen to).
    pub(crate) async fn state_listener(&self) -> Result<Option<StateListener>, AuditError> {
        let Backend::Postgres(s) = &self.backend else {
            return Ok(None);
        };
        let options = (*s.pool.connect_options()).clone();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(AuditError::Query)?;
        listener.listen(CHANNEL).await.map_err(AuditError::Query)?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&s.pool)
            .await
            .map_err(AuditError::Query)?;
        Ok(Some(StateListener { listener, schema }))
    }

    /// Announces a change that no table's trigger sees (`kind`, `key`: never a secret) to every instance
    /// listening on this database's schema, this one included. Nothing to do on SQLite: no other instance listens.
    pub(crate) async fn announce(&self, kind: &str, key: &str) -> Result<(), AuditError> {
        let Backend::Postgres(s) = &self.backend else {
            return Ok(());
        };
        sqlx::query("SELECT pg_notify($1, current_schema() || ' ' || $2 || ' ' || $3)")
            .bind(CHANNEL)
            .bind(kind)
            .bind(key)
            .execute(&s.pool)
            .await
            .map(|_| ())
            .map_err(AuditError::Query)
    }

    /// Whether instances sharing this database may change what this one caches (PostgreSQL).
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The database's file, for a SQLite file (not in memory): other processes may write it, and its writes
    /// are what tells of their changes (`crate::shared_state`).
    pub(crate) fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        match &self.backend {
            // Only files checkpoint their write-ahead log.
            Backend::Sqlite(s) if s.wal_checkpoints => {
                Some(s.pool.connect_options().get_filename().to_owned())
            }
            _ => None,
        }
    }
}
