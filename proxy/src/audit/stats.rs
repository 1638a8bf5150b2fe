//! `GET /api/v1/audit/stats`: event counts by policy result, agent and tool per time bucket, computed by the
//! database (one grouped query) and folded into buckets here.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{timestamp, AuditError, AuditStore};

/// The width of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketWidth {
    Minute,
    Hour,
    Day,
}

impl std::str::FromStr for BucketWidth {
    type Err = AuditError;

    fn from_str(s: &str) -> Result<BucketWidth, AuditError> {
        match s {
            "minute" => Ok(BucketWidth::Minute),
            "hour" => Ok(BucketWidth::Hour),
            "day" => Ok(BucketWidth::Day),
            _ => Err(AuditError::BadBucket),
        }
    }
}

impl BucketWidth {
    /// The length of the stored-timestamp prefix that names a bucket (`2026-11-22T20` for an hour).
    fn prefix_len(self) -> i64 {
        match self {
            BucketWidth::Minute => 16,
            BucketWidth::Hour => 13,
            BucketWidth::Day => 10,
        }
    }

    /// The bucket's start as RFC 3339.
    fn start_of(self, prefix: &str) -> String {
        match self {
            BucketWidth::Minute => format!("{prefix}:00Z"),
            BucketWidth::Hour => format!("{prefix}:00:00Z"),
            BucketWidth::Day => format!("{prefix}T00:00:00Z"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            BucketWidth::Minute => "minute",
            BucketWidth::Hour => "hour",
            BucketWidth::Day => "day",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Bucket {
    pub start: String,
    /// Every event in the bucket.
    pub total: i64,
    /// Judged requests: each counted once, by its decision event (`tool_call`, `request`, `policy_deny`,
    /// `policy_escalate`); the `by_*` maps count these.
    pub decisions: i64,
    pub by_result: BTreeMap<String, i64>,
    pub by_agent: BTreeMap<String, i64>,
    pub by_tool: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    pub bucket: &'static str,
    pub start: Option<String>,
    pub end: Option<String>,
    pub buckets: Vec<Bucket>,
    /// True when the grouped rows hit the cap and later buckets are missing: narrow the range.
    pub truncated: bool,
}

/// Grouped rows read at most per request.
const MAX_ROWS: i64 = 100_000;

/// Counts of events in `[start, end]` (default: the last 24 hours) per `width` bucket: every event in `total`,
/// judged requests (once each, by their decision event) in `decisions` and by result, agent and tool. Outcomes,
/// session and system events count in `total` only. With `tenant`, only that tenant's events count.
pub async fn stats(
    store: &AuditStore,
    start: Option<&str>,
    end: Option<&str>,
    width: BucketWidth,
    tenant: Option<&str>,
) -> Result<Stats, AuditError> {
    let (mut start, end) = timestamp::range(start, end)?;
    if start.is_none() && end.is_none() {
        start = Some(timestamp::format(
            time::OffsetDateTime::now_utc() - time::Duration::days(1),
        ));
    }
    let rows = store
        .stats_rows(
            width.prefix_len(),
            start.clone(),
            end.clone(),
            tenant.map(str::to_owned),
            MAX_ROWS,
        )
        .await?;
    let truncated = rows.len() as i64 >= MAX_ROWS;
    let mut buckets: BTreeMap<String, Bucket> = BTreeMap::new();
    for row in rows {
        let bucket = buckets.entry(row.bucket.clone()).or_insert_with(|| Bucket {
            start: width.start_of(&row.bucket),
            ..Bucket::default()
        });
        bucket.total += row.count;
        if !row.decision {
            continue;
        }
        bucket.decisions += row.count;
        for (map, key) in [
            (&mut bucket.by_result, row.policy_result),
            (&mut bucket.by_agent, row.agent_id),
            (&mut bucket.by_tool, row.tool_name),
        ] {
            if let Some(key) = key {
                *map.entry(key).or_default() += row.count;
            }
        }
    }
    Ok(Stats {
        bucket: width.name(),
        start,
        end,
        buckets: buckets.into_values().collect(),
        truncated,
    })
}
