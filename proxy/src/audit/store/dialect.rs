//! What differs between the databases: spellings, limits and the migration sets compiled into the binary.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationSource, MigrationType};

use super::hash_lookup::FIND_HASH_BEHIND;

/// The spellings that differ between databases.
pub(super) struct Dialect {
    /// Appended to a bound JSON text so the database stores it in its JSON column type.
    pub(super) json_cast: &'static str,
    /// Most bind parameters one statement may carry.
    pub(super) max_binds: usize,
    pub(super) migrations: &'static [(i64, &'static str, &'static str)],
    /// PostgreSQL: the `ts timestamptz` partition key is written beside `"timestamp"`, with this cast.
    pub(super) ts_cast: Option<&'static str>,
    /// Triggers keep each chain linked and move its stored head (SQLite migration 0003), so the writer
    /// inserts a batch in one padded statement (unbound placeholders read as NULL in SQLite; PostgreSQL
    /// refuses them) without a compare-and-set of its own.
    pub(super) chain_guard_triggers: bool,
    /// `(chain_id, seq, timestamp)` of the event whose `event_hash` is `$1`: see [`FIND_HASH_BEHIND`] and
    /// [`FIND_HASH_INDEXED`].
    pub(super) find_hash: &'static str,
}

/// PostgreSQL keeps a plain index on `event_hash` (migration 0002): it is built per daily partition, so the
/// B-tree a commit writes into is bounded by a day's events and PostgreSQL's shared buffers hold it.
const FIND_HASH_INDEXED: &str =
    "SELECT chain_id, seq, \"timestamp\" FROM audit_events WHERE event_hash = $1 \
     ORDER BY chain_id, seq LIMIT 1";

pub(super) const SQLITE: Dialect = Dialect {
    json_cast: "",
    // SQLITE_MAX_VARIABLE_NUMBER since 3.32 (the bundled library is newer).
    max_binds: 32_766,
    migrations: &[
        (
            1,
            "audit events",
            include_str!("../../../migrations/sqlite/0001_audit_events.sql"),
        ),
        (
            2,
            "checkpoints",
            include_str!("../../../migrations/sqlite/0002_checkpoints.sql"),
        ),
        (
            3,
            "chain guard",
            include_str!("../../../migrations/sqlite/0003_chain_guard.sql"),
        ),
        (
            4,
            "tool definitions",
            include_str!("../../../migrations/sqlite/0004_tool_definitions.sql"),
        ),
        (
            5,
            "escalations",
            include_str!("../../../migrations/sqlite/0005_escalations.sql"),
        ),
        (
            6,
            "agents",
            include_str!("../../../migrations/sqlite/0006_agents.sql"),
        ),
        (
            7,
            "behaviour",
            include_str!("../../../migrations/sqlite/0007_behaviour.sql"),
        ),
        (
            8,
            "agent runs",
            include_str!("../../../migrations/sqlite/0008_agent_runs.sql"),
        ),
        (
            9,
            "siem cursors",
            include_str!("../../../migrations/sqlite/0009_siem_cursors.sql"),
        ),
        (
            10,
            "mcp sessions",
            include_str!("../../../migrations/sqlite/0010_mcp_sessions.sql"),
        ),
        (
            11,
            "hash lookup by epoch",
            include_str!("../../../migrations/sqlite/0011_hash_lookup.sql"),
        ),
        (
            12,
            "hash lookup filled behind the writer",
            include_str!("../../../migrations/sqlite/0012_hash_lookup_behind.sql"),
        ),
    ],
    ts_cast: None,
    chain_guard_triggers: true,
    find_hash: FIND_HASH_BEHIND,
};

pub(super) const POSTGRES: Dialect = Dialect {
    json_cast: "::jsonb",
    max_binds: 65_535,
    migrations: &[
        (
            1,
            "audit events",
            include_str!("../../../migrations/postgres/0001_audit_events.sql"),
        ),
        (
            2,
            "partitions and checkpoints",
            include_str!("../../../migrations/postgres/0002_partitions_checkpoints.sql"),
        ),
        (
            3,
            "tool definitions",
            include_str!("../../../migrations/postgres/0003_tool_definitions.sql"),
        ),
        (
            4,
            "escalations",
            include_str!("../../../migrations/postgres/0004_escalations.sql"),
        ),
        (
            5,
            "agents",
            include_str!("../../../migrations/postgres/0005_agents.sql"),
        ),
        (
            6,
            "behaviour",
            include_str!("../../../migrations/postgres/0006_behaviour.sql"),
        ),
        (
            7,
            "agent runs",
            include_str!("../../../migrations/postgres/0007_agent_runs.sql"),
        ),
        (
            8,
            "siem cursors",
            include_str!("../../../migrations/postgres/0008_siem_cursors.sql"),
        ),
        (
            9,
            "shared state",
            include_str!("../../../migrations/postgres/0009_shared_state.sql"),
        ),
        (
            10,
            "runs and alerts changed",
            include_str!("../../../migrations/postgres/0010_runs_alerts_changed.sql"),
        ),
    ],
    ts_cast: Some("::timestamptz"),
    chain_guard_triggers: false,
    find_hash: FIND_HASH_INDEXED,
};

/// A migration set compiled into the binary (the `migrate!` macro needs sqlx's `macros` feature).
#[derive(Debug)]
pub(super) struct EmbeddedMigrations(pub(super) &'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for EmbeddedMigrations {
    fn resolve(
        self,
    ) -> futures_util::future::BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>>
    {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}
