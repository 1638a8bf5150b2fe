//! PostgreSQL daily partitions of `audit_events` (by `ts`): detection at start, creation ahead of time and on
//! demand before an insert, and dropping whole days for retention. A TimescaleDB hypertable (chosen by the
//! migration when the extension is installed) manages its own chunks, so all of this is skipped for it.

use sqlx::{Postgres, Row};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, UtcOffset};

use super::SqlStore;
use crate::audit::AuditError;

/// The partition holding `day` (UTC).
fn partition_name(day: Date) -> String {
    format!(
        "audit_events_{:04}{:02}{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn day_literal(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02} 00:00:00+00",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn parse_partition_day(name: &str) -> Option<Date> {
    let digits = name.strip_prefix("audit_events_")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year = digits[0..4].parse().ok()?;
    let month = digits[4..6].parse::<u8>().ok()?.try_into().ok()?;
    Date::from_calendar_date(year, month, digits[6..8].parse().ok()?).ok()
}

impl SqlStore<Postgres> {
    /// Whether `audit_events` is a declaratively partitioned table (relkind `p`).
    pub(super) async fn detect_partitioning(&self) -> Result<bool, AuditError> {
        let kind: Option<String> = sqlx::query_scalar(
            "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass('audit_events')",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(AuditError::Query)?;
        Ok(kind.as_deref() == Some("p"))
    }

    /// Makes sure the partitions of the (UTC) days of `timestamps` exist.
    pub(super) async fn ensure_partitions<'a>(
        &self,
        timestamps: impl Iterator<Item = &'a str>,
    ) -> Result<(), sqlx::Error> {
        if !self.partitioned {
            return Ok(());
        }
        let days: Vec<Date> = timestamps
            .filter_map(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .map(|t| t.to_offset(UtcOffset::UTC).date())
            .collect();
        self.ensure_days(days.into_iter()).await
    }

    pub(super) async fn ensure_days(
        &self,
        days: impl Iterator<Item = Date>,
    ) -> Result<(), sqlx::Error> {
        if !self.partitioned {
            return Ok(());
        }
        let missing: Vec<Date> = {
            let known = self.days.lock().unwrap_or_else(|e| e.into_inner());
            let mut missing: Vec<Date> = days.filter(|d| !known.contains(d)).collect();
            missing.sort();
            missing.dedup();
            missing
        };
        for day in missing {
            let Some(next) = day.next_day() else { continue };
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS \"{}\" PARTITION OF audit_events FOR VALUES FROM ('{}') TO ('{}')",
                partition_name(day),
                day_literal(day),
                day_literal(next)
            );
            match sqlx::query(&sql).execute(&self.pool).await {
                Ok(_) => {}
                // Another instance created it at the same moment: duplicate table / duplicate type row.
                Err(sqlx::Error::Database(e))
                    if matches!(e.code().as_deref(), Some("42P07") | Some("23505")) => {}
                Err(e) => return Err(e),
            }
            self.days
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(day);
        }
        Ok(())
    }

    /// Drops every partition that lies wholly before `cutoff` and holds nothing but events of `chain` through
    /// `seq` (which a signed "pruned" checkpoint already covers); returns how many were dropped.
    pub(in crate::audit) async fn drop_partitions(
        &self,
        chain: &str,
        seq: i64,
        cutoff: Date,
    ) -> Result<u64, AuditError> {
        if !self.partitioned {
            return Ok(0);
        }
        let names: Vec<String> = sqlx::query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = to_regclass('audit_events')",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(AuditError::Query)?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(AuditError::Query)?;
        let mut dropped = 0;
        for name in names {
            let Some(day) = parse_partition_day(&name) else {
                continue;
            };
            if day.next_day().is_none_or(|next| next > cutoff) {
                continue;
            }
            // The name was built by toolgate from digits only, so quoting it is enough.
            let foreign: Option<i32> = sqlx::query_scalar(&format!(
                "SELECT 1 FROM \"{name}\" WHERE chain_id <> $1 OR seq > $2 LIMIT 1"
            ))
            .bind(chain.to_owned())
            .bind(seq)
            .fetch_optional(&self.pool)
            .await
            .map_err(AuditError::Query)?;
            if foreign.is_some() {
                continue;
            }
            sqlx::query(&format!("DROP TABLE \"{name}\""))
                .execute(&self.pool)
                .await
                .map_err(AuditError::Query)?;
            self.days
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&day);
            dropped += 1;
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        let day = Date::from_calendar_date(2026, time::Month::January, 5).unwrap();
        assert_eq!(partition_name(day), "audit_events_20260105");
        assert_eq!(parse_partition_day("audit_events_20260105"), Some(day));
        assert_eq!(day_literal(day), "2026-01-05 00:00:00+00");
        assert_eq!(parse_partition_day("audit_events_unpartitioned"), None);
    }
}
