//! How long events are kept: `audit.retention_days` for every event, `audit.retention_days_by_tenant` for the
//! events of the tenants it names.
//!
//! Retention prunes a chain by prefix, behind a signed "pruned" checkpoint, so that what is left still verifies
//! from its first row; deleting single rows out of the middle of a chain would leave a chain nobody can verify.
//! So a chain is pruned through the last event before the first one that must still be kept: every event is
//! kept at least as long as its tenant's retention says, and an event past its own retention goes as soon as
//! every older event of its chain is past theirs (one tenant's longer retention holds back the deletion of other
//! tenants' events interleaved after its own, at most by the difference between the two retentions).

use std::collections::BTreeMap;

use sqlx::QueryBuilder;

use super::timestamp;
use crate::redaction::stored_text;

/// The retention in effect, tenants named in their stored form (as the audit log's `tenant_id` holds them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Days for events of every tenant not named below, and of no tenant; 0 keeps them forever.
    default_days: u32,
    by_tenant: BTreeMap<String, u32>,
}

impl Retention {
    pub fn new(default_days: u32, by_tenant: &BTreeMap<String, u32>) -> Retention {
        Retention {
            default_days,
            by_tenant: by_tenant
                .iter()
                .map(|(tenant, &days)| (stored_text(tenant.clone()), days))
                .collect(),
        }
    }

    /// Whether every event is kept forever: no retention task runs.
    pub fn keeps_everything(&self) -> bool {
        self.default_days == 0 && self.by_tenant.values().all(|&days| days == 0)
    }

    /// The days the events of `tenant` are kept (0: forever).
    pub fn days_for(&self, tenant: Option<&str>) -> u32 {
        tenant
            .and_then(|t| self.by_tenant.get(t))
            .copied()
            .unwrap_or(self.default_days)
    }

    /// The cut-offs as of `now`: an event stamped before its tenant's cut-off is past its retention.
    pub fn cutoffs(&self, now: time::OffsetDateTime) -> Cutoffs {
        let cutoff = |days: u32| (days > 0).then(|| now - time::Duration::days(i64::from(days)));
        Cutoffs {
            default: cutoff(self.default_days),
            by_tenant: self
                .by_tenant
                .iter()
                .map(|(tenant, &days)| (tenant.clone(), cutoff(days)))
                .collect(),
        }
    }
}

/// The retention's cut-offs at one moment; `None` keeps forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cutoffs {
    default: Option<time::OffsetDateTime>,
    by_tenant: Vec<(String, Option<time::OffsetDateTime>)>,
}

impl Cutoffs {
    /// The latest cut-off of all: no event stamped after it is past its retention (partitions of days after it
    /// are never dropped).
    pub fn latest(&self) -> Option<time::OffsetDateTime> {
        std::iter::once(self.default)
            .chain(self.by_tenant.iter().map(|(_, c)| *c))
            .flatten()
            .max()
    }

    /// Pushes a SQL condition true of a row that must still be kept: stamped at or after its tenant's cut-off.
    /// Stored timestamps compare as text in time order (one fixed-width spelling); a cut-off of "forever" is the
    /// empty string, before which no timestamp sorts.
    pub(super) fn push_kept<DB>(&self, query: &mut QueryBuilder<'_, DB>)
    where
        DB: sqlx::Database,
        String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        let text = |cutoff: &Option<time::OffsetDateTime>| {
            cutoff.map(timestamp::format).unwrap_or_default()
        };
        query.push("\"timestamp\" >= ");
        if self.by_tenant.is_empty() {
            query.push_bind(text(&self.default));
            return;
        }
        query.push("CASE");
        for (tenant, cutoff) in &self.by_tenant {
            query
                .push(" WHEN tenant_id = ")
                .push_bind(tenant.clone())
                .push(" THEN ")
                .push_bind(text(cutoff));
        }
        query
            .push(" ELSE ")
            .push_bind(text(&self.default))
            .push(" END");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> time::OffsetDateTime {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn each_tenant_has_its_cutoff_and_the_rest_the_default() {
        let by_tenant = BTreeMap::from([("t1".to_owned(), 1), ("t2".to_owned(), 0)]);
        let retention = Retention::new(10, &by_tenant);
        assert!(!retention.keeps_everything());
        assert_eq!(retention.days_for(Some("t1")), 1);
        assert_eq!(retention.days_for(Some("t2")), 0);
        assert_eq!(retention.days_for(Some("t3")), 10);
        assert_eq!(retention.days_for(None), 10);
        let cutoffs = retention.cutoffs(at("2026-11-28T12:00:00Z"));
        assert_eq!(cutoffs.default, Some(at("2026-11-18T12:00:00Z")));
        assert_eq!(
            cutoffs.by_tenant,
            vec![
                ("t1".to_owned(), Some(at("2026-11-27T12:00:00Z"))),
                ("t2".to_owned(), None),
            ]
        );
        assert_eq!(cutoffs.latest(), Some(at("2026-11-27T12:00:00Z")));
    }

    #[test]
    fn zero_everywhere_keeps_everything_and_a_tenant_alone_does_not() {
        assert!(Retention::new(0, &BTreeMap::new()).keeps_everything());
        let by_tenant = BTreeMap::from([("t1".to_owned(), 7)]);
        assert!(!Retention::new(0, &by_tenant).keeps_everything());
        assert_eq!(
            Retention::new(0, &BTreeMap::new())
                .cutoffs(at("2026-01-01T00:00:00Z"))
                .latest(),
            None
        );
    }

    #[test]
    fn a_tenant_named_with_a_secret_is_matched_in_its_stored_form() {
        let secret = "AKIAIOSFODNN7EXAMPLE";
        let by_tenant = BTreeMap::from([(secret.to_owned(), 3)]);
        let retention = Retention::new(10, &by_tenant);
        let stored = stored_text(secret.to_owned());
        assert_ne!(stored, secret);
        assert_eq!(retention.days_for(Some(&stored)), 3);
    }
}
