//! The SQL of the `tool_definitions` table: the pinned tool definitions that `crate::tools` caches. Rows carry
//! plain strings; the state machine that decides what to write lives in `crate::tools`.

use sqlx::{Postgres, Row, Sqlite};

use super::SqlStore;
use crate::audit::AuditError;

/// One row of `tool_definitions`, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolDefinitionRow {
    pub upstream: String,
    /// The tool name in its stored form (never a secret, at most 256 bytes).
    pub name: String,
    /// `new`, `pinned` or `changed`.
    pub status: String,
    pub pinned_hash: Option<String>,
    pub current_hash: String,
    /// A JSON array of poisoning marker names.
    pub poisoning: String,
    pub first_seen: String,
    pub last_seen: String,
    pub approved_at: Option<String>,
}

const COLUMNS: &str = "upstream, name, status, pinned_hash, current_hash, poisoning, first_seen, \
    last_seen, approved_at";

macro_rules! impl_tool_pins {
    ($module:ident, $db:ty) => {
        mod $module {
            use super::*;

            type DB = $db;

            fn decode(row: &<DB as sqlx::Database>::Row) -> Result<ToolDefinitionRow, sqlx::Error> {
                Ok(ToolDefinitionRow {
                    upstream: row.try_get(0)?,
                    name: row.try_get(1)?,
                    status: row.try_get(2)?,
                    pinned_hash: row.try_get(3)?,
                    current_hash: row.try_get(4)?,
                    poisoning: row.try_get(5)?,
                    first_seen: row.try_get(6)?,
                    last_seen: row.try_get(7)?,
                    approved_at: row.try_get(8)?,
                })
            }

            impl SqlStore<DB> {
                pub(super) async fn tool_definitions(&self) -> Result<Vec<ToolDefinitionRow>, AuditError> {
                    sqlx::query(&format!("SELECT {COLUMNS} FROM tool_definitions"))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(AuditError::Query)?
                        .iter()
                        .map(decode)
                        .collect::<Result<_, _>>()
                        .map_err(AuditError::Query)
                }

                pub(super) async fn tool_definition(
                    &self,
                    upstream: &str,
                    name: &str,
                ) -> Result<Option<ToolDefinitionRow>, AuditError> {
                    sqlx::query(&format!(
                        "SELECT {COLUMNS} FROM tool_definitions WHERE upstream = $1 AND name = $2"
                    ))
                    .bind(upstream.to_owned())
                    .bind(name.to_owned())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(AuditError::Query)?
                    .as_ref()
                    .map(decode)
                    .transpose()
                    .map_err(AuditError::Query)
                }

                pub(super) async fn insert_tool_definition(
                    &self,
                    row: &ToolDefinitionRow,
                ) -> Result<bool, AuditError> {
                    let inserted = sqlx::query(&format!(
                        "INSERT INTO tool_definitions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                         ON CONFLICT (upstream, name) DO NOTHING"
                    ))
                    .bind(row.upstream.clone())
                    .bind(row.name.clone())
                    .bind(row.status.clone())
                    .bind(row.pinned_hash.clone())
                    .bind(row.current_hash.clone())
                    .bind(row.poisoning.clone())
                    .bind(row.first_seen.clone())
                    .bind(row.last_seen.clone())
                    .bind(row.approved_at.clone())
                    .execute(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .map_err(AuditError::Query)?
                    .rows_affected();
                    Ok(inserted == 1)
                }

                pub(super) async fn update_tool_definition(
                    &self,
                    row: &ToolDefinitionRow,
                ) -> Result<bool, AuditError> {
                    let updated = sqlx::query(
                        "UPDATE tool_definitions SET status = $1, pinned_hash = $2, current_hash = $3, \
                         poisoning = $4, last_seen = $5, approved_at = $6 WHERE upstream = $7 AND name = $8",
                    )
                    .bind(row.status.clone())
                    .bind(row.pinned_hash.clone())
                    .bind(row.current_hash.clone())
                    .bind(row.poisoning.clone())
                    .bind(row.last_seen.clone())
                    .bind(row.approved_at.clone())
                    .bind(row.upstream.clone())
                    .bind(row.name.clone())
                    .execute(&mut *self.writer.conn().await.map_err(AuditError::Query)?)
                    .await
                    .map_err(AuditError::Query)?
                    .rows_affected();
                    Ok(updated == 1)
                }
            }
        }
    };
}

impl_tool_pins!(sqlite_tool_pins, Sqlite);
impl_tool_pins!(postgres_tool_pins, Postgres);

impl super::AuditStore {
    /// Every stored tool definition, in no particular order.
    pub(crate) async fn tool_definitions(&self) -> Result<Vec<ToolDefinitionRow>, AuditError> {
        dispatch!(self, s => s.tool_definitions().await)
    }

    /// The stored definition of `name` (stored form) of `upstream`.
    pub(crate) async fn tool_definition(
        &self,
        upstream: &str,
        name: &str,
    ) -> Result<Option<ToolDefinitionRow>, AuditError> {
        dispatch!(self, s => s.tool_definition(upstream, name).await)
    }

    /// Stores a first sighting; `false` when a row for the tool already exists (another instance sharing the
    /// database stored it first), which is then left as it is.
    pub(crate) async fn insert_tool_definition(
        &self,
        row: &ToolDefinitionRow,
    ) -> Result<bool, AuditError> {
        dispatch!(self, s => s.insert_tool_definition(row).await)
    }

    /// Overwrites the state of an existing row (every column but the key and `first_seen`); `false` when
    /// there is no such row.
    pub(crate) async fn update_tool_definition(
        &self,
        row: &ToolDefinitionRow,
    ) -> Result<bool, AuditError> {
        dispatch!(self, s => s.update_tool_definition(row).await)
    }
}
