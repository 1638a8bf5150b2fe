//! A test database for the stores' tests: SQLite in a temporary folder always, PostgreSQL when
//! `TOOLGATE_TEST_POSTGRES_URL` is set (each test in its own schema, dropped afterwards). `on_both!(case)` makes
//! two tests of `async fn case(db: TestDb)`, one per database; the calling module imports `run` and `Kind` too,
//! which the macro names through `super::`.

use std::future::Future;
use std::sync::Arc;

use super::AuditStore;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

/// One test's database: its URL, and a temporary folder (the SQLite file, signing keys) kept while it lives.
pub(crate) struct TestDb {
    pub kind: Kind,
    pub url: String,
    pub dir: Arc<tempfile::TempDir>,
}

impl TestDb {
    /// A new connection (pool) to the database: one per simulated instance.
    pub async fn store(&self) -> AuditStore {
        AuditStore::connect(&self.url).await.unwrap()
    }
}

/// Runs `case` on SQLite and, when configured, on PostgreSQL.
macro_rules! on_both {
    ($case:ident) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::run(super::Kind::Sqlite, super::$case).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::run(super::Kind::Postgres, super::$case).await;
            }
        }
    };
}
pub(crate) use on_both;

pub(crate) async fn run<F, Fut>(kind: Kind, case: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = Arc::new(tempfile::tempdir().unwrap());
    match kind {
        Kind::Sqlite => {
            let url = format!("sqlite://{}", dir.path().join("audit.db").display());
            case(TestDb { kind, url, dir }).await;
        }
        Kind::Postgres => {
            let Ok(base) = std::env::var("TOOLGATE_TEST_POSTGRES_URL") else {
                eprintln!("skipped: TOOLGATE_TEST_POSTGRES_URL is not set");
                return;
            };
            let schema = format!("toolgate_test_{}", uuid::Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&base).await.unwrap();
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&admin)
                .await
                .unwrap();
            let separator = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
            // Run the case as a task so a failing assertion still lets the schema be dropped.
            let outcome = tokio::spawn(case(TestDb { kind, url, dir })).await;
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&admin)
                .await
                .unwrap();
            if let Err(e) = outcome {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}
