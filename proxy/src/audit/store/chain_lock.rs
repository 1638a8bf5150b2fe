//! One live writer per chain. On PostgreSQL, where several instances share one database, each writer holds a
//! session advisory lock named after its schema and `chain_id` for as long as it runs: a second instance started
//! with a chain id already in use is refused at start with a clear error (rather than failing its first write on
//! the stored head's compare-and-set, which stays as the backstop), and a holder that dies, even by `kill -9`,
//! releases the lock with its connection, so a restart is never refused by a ghost. SQLite is one instance's
//! file; its chain guard triggers refuse a second writer's rows.

use sqlx::{Connection as _, PgConnection};

use super::{AuditStore, Backend};
use crate::audit::AuditError;

/// The lock on one chain, released when dropped (the connection holding it closes).
pub(crate) struct ChainLock {
    held: Option<PgConnection>,
}

impl ChainLock {
    /// Releases the lock now (closing the connection cleanly) rather than when dropped.
    pub(crate) async fn release(mut self) {
        if let Some(conn) = self.held.take() {
            let _ = conn.close().await;
        }
    }
}

impl AuditStore {
    /// Takes the lock on `chain_id` for this process, or refuses: [`AuditError::ChainHeld`] when a live
    /// instance holds it. The key is a 64-bit hash of the schema and the chain id, so schemas sharing a
    /// database (tests, tenants of a hosting team) never refuse each other.
    pub(crate) async fn lock_chain(&self, chain_id: &str) -> Result<ChainLock, AuditError> {
        let Backend::Postgres(s) = &self.backend else {
            return Ok(ChainLock { held: None });
        };
        // A connection of its own, out of the pool: the lock lives exactly as long as it does.
        let mut conn = s.pool.acquire().await.map_err(AuditError::Query)?.detach();
        let taken: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtextextended('toolgate.audit_chain/' || current_schema() || '/' || $1, 0))",
        )
        .bind(chain_id)
        .fetch_one(&mut conn)
        .await
        .map_err(AuditError::Query)?;
        if !taken {
            let _ = conn.close().await;
            return Err(AuditError::ChainHeld(chain_id.to_owned()));
        }
        Ok(ChainLock { held: Some(conn) })
    }
}
