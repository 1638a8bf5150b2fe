//! The outcome of one delivery attempt, named the way the retry loop acts on it: `Ok`, `Retry(why)` (a passing
//! failure: timeout, refused connection, 429, 5xx), `DontRetry(why)` (the sink refuses the batch as it is: a
//! 4xx) or `Partial` (some events acknowledged, the others failed). `why.reason` is the metric label, from a
//! fixed set; `why.detail` the human text (no credential, no URL userinfo).

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Why {
    /// `timeout`, `refused`, `connect`, `io`, `status_3xx`, `status_4xx`, `status_429`, `status_5xx`,
    /// `bad_response` or `items`.
    pub reason: &'static str,
    pub detail: String,
}

impl Why {
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Why {
        Why {
            reason,
            detail: detail.into(),
        }
    }
}

/// Every reason a failure may be counted under, so each series exists from the first scrape.
pub use crate::telemetry::siem::FAILURE_REASONS as REASONS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Every event of the attempt was acknowledged.
    Ok,
    /// Nothing acknowledged, for a reason that may pass: try again after the back-off.
    Retry(Why),
    /// Nothing acknowledged, and the sink says the same batch will be refused again. The events are not
    /// skipped (the cursor stays): the sink is reported failing and tried again only at the back-off cap.
    DontRetry(Why),
    /// The events at `failed` (indices into the attempt's events) were not acknowledged, the others were;
    /// `retry` says whether every failure may pass.
    Partial {
        failed: Vec<usize>,
        why: Why,
        retry: bool,
    },
}

impl Attempt {
    /// What an HTTP status says, for sinks whose answer is all in the status.
    pub fn from_status(status: u16) -> Attempt {
        match status {
            200..=299 => Attempt::Ok,
            408 | 429 => Attempt::Retry(Why::new(
                if status == 429 {
                    "status_429"
                } else {
                    "status_4xx"
                },
                format!("status {status}"),
            )),
            500..=599 => Attempt::Retry(Why::new("status_5xx", format!("status {status}"))),
            300..=399 => Attempt::DontRetry(Why::new(
                "status_3xx",
                format!("status {status}: redirects are not followed, fix the url"),
            )),
            _ => Attempt::DontRetry(Why::new("status_4xx", format!("status {status}"))),
        }
    }

    /// `ok`, `retry`, `dont_retry` or `partial`.
    pub fn name(&self) -> &'static str {
        match self {
            Attempt::Ok => "ok",
            Attempt::Retry(_) => "retry",
            Attempt::DontRetry(_) => "dont_retry",
            Attempt::Partial { .. } => "partial",
        }
    }

    pub fn why_mut(&mut self) -> Option<&mut Why> {
        match self {
            Attempt::Ok => None,
            Attempt::Retry(why) | Attempt::DontRetry(why) | Attempt::Partial { why, .. } => {
                Some(why)
            }
        }
    }

    pub fn why(&self) -> Option<&Why> {
        match self {
            Attempt::Ok => None,
            Attempt::Retry(why) | Attempt::DontRetry(why) | Attempt::Partial { why, .. } => {
                Some(why)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_named() {
        assert_eq!(Attempt::from_status(204), Attempt::Ok);
        assert_eq!(Attempt::from_status(503).name(), "retry");
        assert_eq!(
            Attempt::from_status(429).why().unwrap().reason,
            "status_429"
        );
        assert_eq!(Attempt::from_status(401).name(), "dont_retry");
        assert_eq!(
            Attempt::from_status(302).why().unwrap().reason,
            "status_3xx"
        );
        for attempt in [503, 429, 401, 302, 408].map(Attempt::from_status) {
            assert!(REASONS.contains(&attempt.why().unwrap().reason));
        }
    }
}
