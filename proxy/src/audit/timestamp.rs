//! The one spelling of audit timestamps (RFC 3339 UTC, microseconds, `Z`) and the parsing of range bounds.
//!
//! Stored timestamps are compared as strings, which orders them correctly only because every stored
//! timestamp has this exact fixed-width form; range bounds are therefore rewritten into it before use.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::AuditError;

/// Now, e.g. `2026-11-22T20:15:00.123456Z`.
pub(crate) fn now() -> String {
    format(OffsetDateTime::now_utc())
}

pub(crate) fn format(at: OffsetDateTime) -> String {
    // One spelling for logs and audit events alike.
    crate::telemetry::format_rfc3339(at)
}

/// A user-given RFC 3339 bound (any offset, any sub-second precision) in the stored spelling.
fn bound(what: &str, value: &str) -> Result<String, AuditError> {
    let parsed = OffsetDateTime::parse(value.trim(), &Rfc3339).map_err(|_| {
        AuditError::BadRange(format!(
            "{what} is not an RFC 3339 timestamp (e.g. 2026-11-22T20:15:00Z)"
        ))
    })?;
    Ok(format(parsed))
}

/// The inclusive `[start, end]` range in the stored spelling; either side may be open.
pub(crate) fn range(
    start: Option<&str>,
    end: Option<&str>,
) -> Result<(Option<String>, Option<String>), AuditError> {
    let start = start.map(|s| bound("start", s)).transpose()?;
    let end = end.map(|e| bound("end", e)).transpose()?;
    if let (Some(s), Some(e)) = (&start, &end) {
        if s > e {
            return Err(AuditError::BadRange("start is after end".to_owned()));
        }
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_has_the_fixed_width_form() {
        let t = now();
        assert_eq!(t.len(), "2026-11-22T20:15:00.123456Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[19] == b'.', "{t}");
    }

    #[test]
    fn bounds_are_normalised_to_utc_microseconds() {
        let (s, e) = range(
            Some("2026-11-22T21:15:00+01:00"),
            Some("2026-11-22T20:15:00.5Z"),
        )
        .unwrap();
        assert_eq!(s.as_deref(), Some("2026-11-22T20:15:00.000000Z"));
        assert_eq!(e.as_deref(), Some("2026-11-22T20:15:00.500000Z"));
    }

    #[test]
    fn bad_bounds_are_rejected() {
        assert!(matches!(
            range(Some("yesterday"), None),
            Err(AuditError::BadRange(_))
        ));
        assert!(matches!(
            range(Some("2026-11-23T00:00:00Z"), Some("2026-11-22T00:00:00Z")),
            Err(AuditError::BadRange(_))
        ));
    }
}
