//! What the scale-out run reads of PostgreSQL: a database of its own per step (so `pg_stat_database` counts
//! only the run's transactions, whatever else the server is doing), its commit and row counters, and the CPU
//! time of the server's processes from `/proc/PID/stat`, split by what they serve.
//!
//! The server must run on this machine for the CPU figures (its processes' `/proc` entries are read); the
//! counters come from the statistics views and work anywhere.

use std::collections::HashMap;

use anyhow::Context;
use sqlx::Row;

use crate::procs;

/// A database created for one step of the run, dropped by [`ScaleDatabase::drop_now`].
pub struct ScaleDatabase {
    /// A connection pool on the server's base database: creates and drops, reads the statistics views.
    admin: sqlx::PgPool,
    pub name: String,
    /// The new database's URL, for the toolgate instances.
    pub url: String,
}

/// `pg_stat_database`'s counters of one database at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub commits: i64,
    pub inserted: i64,
    pub updated: i64,
}

impl Counters {
    pub fn minus(self, earlier: Counters) -> Counters {
        Counters {
            commits: self.commits - earlier.commits,
            inserted: self.inserted - earlier.inserted,
            updated: self.updated - earlier.updated,
        }
    }
}

/// What a PostgreSQL process serves, from `pg_stat_activity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// A backend (or autovacuum worker) of the run's database.
    Run,
    /// A server-wide helper: WAL writer, checkpointer, background writer, launchers; shared with every database.
    Auxiliary,
    /// Backends of other databases, the postmaster, anything not listed.
    Other,
}

/// CPU ticks of every `postgres` process on the machine at one moment.
pub struct CpuSample(HashMap<u32, u64>);

/// CPU ticks spent between two samples, by what the processes serve.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSplit {
    pub run: u64,
    pub auxiliary: u64,
    pub other: u64,
}

impl ScaleDatabase {
    pub async fn create(base: &str) -> anyhow::Result<ScaleDatabase> {
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(base)
            .await
            .context("connecting to TOOLGATE_TEST_POSTGRES_URL")?;
        let name = format!("toolgate_scale_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        let url = database_url(base, &name);
        Ok(ScaleDatabase { admin, name, url })
    }

    pub async fn drop_now(self) -> anyhow::Result<()> {
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&self.admin)
        .await?;
        self.admin.close().await;
        Ok(())
    }

    /// The database's commit and row counters. The server publishes a backend's counts when it goes idle, at
    /// most once a second, and an idle backend's within 10 s: read them after a pause that long.
    pub async fn counters(&self) -> anyhow::Result<Counters> {
        let row = sqlx::query(
            "SELECT xact_commit, tup_inserted, tup_updated FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&self.name)
        .fetch_one(&self.admin)
        .await?;
        Ok(Counters {
            commits: row.try_get(0)?,
            inserted: row.try_get(1)?,
            updated: row.try_get(2)?,
        })
    }

    /// Rows in the run database's `audit_events`, per chain.
    pub async fn events_by_chain(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let pool = sqlx::PgPool::connect(&self.url).await?;
        let rows = sqlx::query(
            "SELECT chain_id, count(*) FROM audit_events GROUP BY chain_id ORDER BY chain_id",
        )
        .fetch_all(&pool)
        .await;
        pool.close().await;
        rows?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// What each process listed in `pg_stat_activity` serves, by pid.
    pub async fn serving(&self) -> anyhow::Result<HashMap<u32, Serves>> {
        let rows = sqlx::query("SELECT pid, datname, backend_type FROM pg_stat_activity")
            .fetch_all(&self.admin)
            .await?;
        let mut map = HashMap::new();
        for row in rows {
            let pid: i32 = row.try_get(0)?;
            let datname: Option<String> = row.try_get(1)?;
            let backend_type: Option<String> = row.try_get(2)?;
            let serves = match (datname.as_deref(), backend_type.as_deref()) {
                (Some(d), _) if d == self.name => Serves::Run,
                (None, Some(t)) if t != "client backend" => Serves::Auxiliary,
                _ => Serves::Other,
            };
            map.insert(pid as u32, serves);
        }
        Ok(map)
    }

    /// `SHOW max_connections` and the server version, for the report.
    pub async fn server(&self) -> anyhow::Result<(i64, String)> {
        let max: String = sqlx::query_scalar("SHOW max_connections")
            .fetch_one(&self.admin)
            .await?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&self.admin)
            .await?;
        Ok((max.parse().unwrap_or(0), version))
    }
}

impl CpuSample {
    /// Reads the CPU ticks of every process named `postgres` (`/proc/PID/comm`).
    pub fn now() -> CpuSample {
        let mut ticks = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                if comm.trim() == "postgres" {
                    if let Ok(t) = procs::cpu_ticks(pid) {
                        ticks.insert(pid, t);
                    }
                }
            }
        }
        CpuSample(ticks)
    }

    /// Whether any PostgreSQL process was found (the server may run elsewhere).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Ticks spent from `earlier` to this sample, split by `serving`. A process that started in between counts
    /// from zero; one that exited in between is lost (the run's backends live as long as the pools).
    pub fn since(&self, earlier: &CpuSample, serving: &HashMap<u32, Serves>) -> CpuSplit {
        let mut split = CpuSplit::default();
        for (pid, now) in &self.0 {
            let spent = now.saturating_sub(earlier.0.get(pid).copied().unwrap_or(0));
            match serving.get(pid).copied().unwrap_or(Serves::Other) {
                Serves::Run => split.run += spent,
                Serves::Auxiliary => split.auxiliary += spent,
                Serves::Other => split.other += spent,
            }
        }
        split
    }
}

/// The URL of database `name` on the server of `base`: the path replaced, user, host and parameters kept.
pub fn database_url(base: &str, name: &str) -> String {
    let (url, query) = match base.split_once('?') {
        Some((u, q)) => (u, format!("?{q}")),
        None => (base, String::new()),
    };
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let root = match url[authority_start..].find('/') {
        Some(slash) => &url[..authority_start + slash],
        None => url,
    };
    format!("{root}/{name}{query}")
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_url_replaces_only_the_path() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            database_url("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
