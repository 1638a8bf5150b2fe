//! The audit-log SQL of docs/observability.md, run as written against audit logs filled by real proxy calls:
//! SQLite always, PostgreSQL when `TOOLGATE_TEST_POSTGRES_URL` is set. Each answer is compared with the same
//! answer computed in Rust from the events themselves. Also: the stack's compose config is a valid config.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use common::{start, token, Agent, Options};
use serde_json::{json, Value};
use sqlx::{Column, Row};

/// One fenced block of the docs whose info string is `sql sqlite` or `sql postgres`.
#[derive(Debug, Clone)]
struct Block {
    dialect: String,
    /// The block's first line, a `-- name` comment; it pairs the two spellings of one question.
    name: String,
    sql: String,
}

fn doc_blocks() -> Vec<Block> {
    let path = common::repo_root().join("docs/observability.md");
    let text = std::fs::read_to_string(&path).expect("docs/observability.md is readable");
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.trim().strip_prefix("```sql") else {
            continue;
        };
        let dialect = info.trim().to_owned();
        assert!(
            dialect == "sqlite" || dialect == "postgres",
            "a ```sql block in docs/observability.md needs the dialect `sqlite` or `postgres`, got {dialect:?}"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        let name = body
            .first()
            .and_then(|l| l.strip_prefix("-- "))
            .unwrap_or_else(|| panic!("a {dialect} block must start with `-- name`: {body:?}"))
            .trim()
            .to_owned();
        blocks.push(Block {
            dialect,
            name,
            sql: body.join("\n"),
        });
    }
    blocks
}

const DENIAL_RATE: &str = "denial rate, last hour";
const TOP_DENIED: &str = "top denied agents, last 24 hours";
const LATENCY: &str = "latency percentiles, last hour";
const DLP: &str = "DLP findings by severity, last 24 hours";

fn blocks_of(dialect: &str) -> Vec<Block> {
    doc_blocks()
        .into_iter()
        .filter(|b| b.dialect == dialect)
        .collect()
}

#[test]
fn every_question_has_both_spellings() {
    let blocks = doc_blocks();
    let names = |d: &str| -> Vec<String> {
        blocks
            .iter()
            .filter(|b| b.dialect == d)
            .map(|b| b.name.clone())
            .collect()
    };
    let want = vec![
        DENIAL_RATE.to_owned(),
        TOP_DENIED.to_owned(),
        LATENCY.to_owned(),
        DLP.to_owned(),
    ];
    assert_eq!(names("sqlite"), want);
    assert_eq!(names("postgres"), want);
}

/// A result row: column name -> value (integers, reals, text or null).
type Rows = Vec<BTreeMap<String, Value>>;

macro_rules! decode_rows {
    ($rows:expr) => {
        $rows
            .iter()
            .map(|row| {
                row.columns()
                    .iter()
                    .map(|c| {
                        let i = c.ordinal();
                        let v = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                            json!(v)
                        } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                            json!(v)
                        } else {
                            json!(row
                                .try_get::<Option<String>, _>(i)
                                .unwrap_or_else(|e| panic!("column {}: {e}", c.name())))
                        };
                        (c.name().to_owned(), v)
                    })
                    .collect::<BTreeMap<String, Value>>()
            })
            .collect::<Rows>()
    };
}

/// The calls behind the audit log the queries read: allowed, denied, escalated, DLP findings, two agents.
async fn make_calls(proxy: &common::Proxy) {
    let mut d = Agent::new(proxy, "demo", token("agent-d", &["dev"]));
    let mut e = Agent::new(proxy, "demo", token("agent-e", &[]));
    let ok = |a: &common::Answer| assert!(a.message().get("result").is_some(), "{:?}", a.message());
    ok(&d.call_stateless("echo", json!({ "text": "hello" })).await);
    ok(&d
        .call_stateless(
            "echo",
            json!({ "text": "mail alice@example.com or bob@example.com" }),
        )
        .await);
    for path in ["/etc/passwd", "/etc/shadow"] {
        let denied = d.call_stateless("read_file", json!({ "path": path })).await;
        assert_eq!(denied.error_code(), Some(-31001));
    }
    let escalated = d
        .call_stateless("echo", json!({ "text": "card 4111 1111 1111 1111" }))
        .await;
    assert_eq!(
        escalated.error_code(),
        Some(-31002),
        "{:?}",
        escalated.message()
    );
    let denied = e
        .call_stateless("read_file", json!({ "path": "/root/notes" }))
        .await;
    assert_eq!(denied.error_code(), Some(-31001));
    ok(&e.call_stateless("echo", json!({ "text": "e" })).await);
}

/// Every audit event, once the outcomes of the 3 allowed calls (queued after the answer) are in.
async fn events(proxy: &common::Proxy) -> Vec<Value> {
    let app = proxy.app.clone();
    common::eventually(Duration::from_secs(10), || {
        let app = app.clone();
        async move {
            let page = app
                .audit
                .store()
                .query(&toolgate::audit::EventFilter {
                    limit: Some(1000),
                    ..Default::default()
                })
                .await
                .ok()?;
            let v = serde_json::to_value(page).ok()?;
            let events = v.get("events").cloned().unwrap_or(v).as_array()?.clone();
            let results = events
                .iter()
                .filter(|e| e["event_type"] == "tool_result")
                .count();
            (results == 3).then_some(events)
        }
    })
    .await
}

const DECISIONS: [&str; 3] = ["tool_call", "policy_deny", "policy_escalate"];

/// The four answers computed from the events in Rust, in the shape the queries return.
fn expected(events: &[Value]) -> HashMap<&'static str, Rows> {
    let row = |pairs: Vec<(&str, Value)>| -> BTreeMap<String, Value> {
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    };
    let decisions: Vec<&Value> = events
        .iter()
        .filter(|e| DECISIONS.contains(&e["event_type"].as_str().unwrap_or("")))
        .collect();
    let denied = decisions
        .iter()
        .filter(|e| e["policy_result"] == "deny")
        .count();
    let denial = vec![row(vec![
        ("decisions", json!(decisions.len())),
        ("denied", json!(denied)),
        ("deny_rate", json!(denied as f64 / decisions.len() as f64)),
    ])];

    let mut by_agent: BTreeMap<String, (i64, BTreeSet<String>, String)> = BTreeMap::new();
    for e in events.iter().filter(|e| e["event_type"] == "policy_deny") {
        let entry = by_agent
            .entry(e["agent_id"].as_str().unwrap().to_owned())
            .or_default();
        entry.0 += 1;
        entry.1.insert(e["tool_name"].as_str().unwrap().to_owned());
        entry.2 = entry
            .2
            .clone()
            .max(e["timestamp"].as_str().unwrap().to_owned());
    }
    let mut agents: Vec<_> = by_agent.into_iter().collect();
    agents.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
    let top = agents
        .into_iter()
        .take(10)
        .map(|(agent, (n, tools, last))| {
            row(vec![
                ("agent_id", json!(agent)),
                ("denials", json!(n)),
                ("tools", json!(tools.len())),
                ("last_denied_at", json!(last)),
            ])
        })
        .collect();

    let mut latencies: Vec<i64> = events
        .iter()
        .filter(|e| e["event_type"] == "tool_result")
        .filter_map(|e| e["latency_us"].as_i64())
        .collect();
    latencies.sort_unstable();
    // Nearest rank: the smallest value whose rank is at least p * n.
    let rank = |p: f64| latencies[((p * latencies.len() as f64).ceil() as usize).max(1) - 1];
    let latency = vec![row(vec![
        ("calls", json!(latencies.len())),
        ("p50_us", json!(rank(0.50))),
        ("p95_us", json!(rank(0.95))),
        ("p99_us", json!(rank(0.99))),
    ])];

    let mut dlp: BTreeMap<(String, String), (i64, BTreeSet<String>)> = BTreeMap::new();
    for e in &decisions {
        for f in e["dlp_findings"].as_array().unwrap() {
            let key = (
                f["severity"].as_str().unwrap().to_owned(),
                f["type"].as_str().unwrap().to_owned(),
            );
            let entry = dlp.entry(key).or_default();
            entry.0 += f["count"].as_i64().unwrap();
            entry.1.insert(e["id"].as_str().unwrap().to_owned());
        }
    }
    let severity_rank = |s: &str| match s {
        "critical" => 0,
        "high" => 1,
        "medium" => 2,
        _ => 3,
    };
    let mut dlp: Vec<_> = dlp.into_iter().collect();
    dlp.sort_by(|((sa, ta), (oa, _)), ((sb, tb), (ob, _))| {
        severity_rank(sa)
            .cmp(&severity_rank(sb))
            .then(ob.cmp(oa))
            .then(ta.cmp(tb))
    });
    let dlp = dlp
        .into_iter()
        .map(|((severity, kind), (occurrences, calls))| {
            row(vec![
                ("severity", json!(severity)),
                ("type", json!(kind)),
                ("occurrences", json!(occurrences)),
                ("calls", json!(calls.len())),
            ])
        })
        .collect();

    HashMap::from([
        (DENIAL_RATE, denial),
        (TOP_DENIED, top),
        (LATENCY, latency),
        (DLP, dlp),
    ])
}

/// Compares one query's rows with the expected rows; reals within 1e-9.
fn assert_rows(name: &str, dialect: &str, got: &Rows, want: &Rows) {
    assert_eq!(
        got.len(),
        want.len(),
        "{dialect} {name}: {got:?} != {want:?}"
    );
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            w.keys().collect::<Vec<_>>(),
            "{dialect} {name}: columns"
        );
        for (k, wv) in w {
            let gv = &g[k];
            match (gv.as_f64(), wv.as_f64()) {
                (Some(a), Some(b)) if !(gv.is_i64() && wv.is_i64()) => {
                    assert!((a - b).abs() < 1e-9, "{dialect} {name}.{k}: {a} != {b}")
                }
                _ => assert_eq!(gv, wv, "{dialect} {name}.{k}: {got:?}"),
            }
        }
    }
}

/// The facts of [`make_calls`], checked on the expected answers so the comparison cannot pass vacuously.
fn assert_scenario(want: &HashMap<&'static str, Rows>) {
    assert_eq!(want[DENIAL_RATE][0]["decisions"], json!(7));
    assert_eq!(want[DENIAL_RATE][0]["denied"], json!(3));
    let top: Vec<(&Value, &Value)> = want[TOP_DENIED]
        .iter()
        .map(|r| (&r["agent_id"], &r["denials"]))
        .collect();
    assert_eq!(
        top,
        [
            (&json!("agent-d"), &json!(2)),
            (&json!("agent-e"), &json!(1))
        ]
    );
    assert_eq!(want[LATENCY][0]["calls"], json!(3));
    let dlp: Vec<(&str, &str, i64)> = want[DLP]
        .iter()
        .map(|r| {
            (
                r["severity"].as_str().unwrap(),
                r["type"].as_str().unwrap(),
                r["calls"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(dlp, [("high", "credit_card", 1), ("medium", "email", 1)]);
    assert_eq!(want[DLP][1]["occurrences"], json!(2), "two addresses");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doc_sql_answers_on_sqlite() {
    let proxy = start(Options::default()).await;
    make_calls(&proxy).await;
    let events = events(&proxy).await;
    let want = expected(&events);
    assert_scenario(&want);
    let db = proxy.dir.path().join("audit.db");
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .read_only(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .expect("the audit database opens read-only");
    let blocks = blocks_of("sqlite");
    assert_eq!(blocks.len(), 4);
    for block in blocks {
        let rows = sqlx::query(&block.sql)
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("sqlite {}: {e}\n{}", block.name, block.sql));
        assert_rows(
            &block.name,
            "sqlite",
            &decode_rows!(rows),
            &want[block.name.as_str()],
        );
    }
    pool.close().await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doc_sql_answers_on_postgres() {
    let Ok(base) = std::env::var("TOOLGATE_TEST_POSTGRES_URL") else {
        eprintln!("skipped: TOOLGATE_TEST_POSTGRES_URL is not set");
        return;
    };
    // A schema of its own, so other tests' events in the same database do not change the answers.
    let schema = format!("toolgate_obs_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&base)
        .await
        .expect("PostgreSQL is reachable");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    // Run as a task so a failed assertion still lets the schema be dropped.
    let case = tokio::spawn(async move {
        let proxy = start(Options {
            database_url: Some(url.clone()),
            ..Default::default()
        })
        .await;
        make_calls(&proxy).await;
        let events = events(&proxy).await;
        let want = expected(&events);
        assert_scenario(&want);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let blocks = blocks_of("postgres");
        assert_eq!(blocks.len(), 4);
        for block in blocks {
            let rows = sqlx::query(&block.sql)
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("postgres {}: {e}\n{}", block.name, block.sql));
            assert_rows(
                &block.name,
                "postgres",
                &decode_rows!(rows),
                &want[block.name.as_str()],
            );
        }
        pool.close().await;
        proxy.stop().await;
    })
    .await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    if let Err(e) = case {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[test]
fn compose_config_is_a_valid_toolgate_config() {
    let path = common::repo_root().join("deploy/toolgate.compose.toml");
    let config = toolgate::config::Config::load(&path, &HashMap::new())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
    assert!(config.audit.database_url.starts_with("postgres://"));
    assert_eq!(
        config.telemetry.otlp_endpoint.as_deref(),
        Some("http://otel-collector:4317")
    );
    assert_eq!(config.upstreams.len(), 1);
    assert_eq!(config.upstreams[0].name, "demo");
}
