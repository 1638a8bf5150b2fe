//! The detectors' names and severities, and the per-value tally that turns their hits into findings.

use super::{Finding, Severity};

/// The detectors, in a fixed order used to index per-value tallies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Email,
    CreditCard,
    UsSsn,
    Iban,
    AwsAccessKey,
    AwsSecretKey,
    PrivateKey,
    Jwt,
    GithubToken,
    SlackToken,
    StripeKey,
    GoogleApiKey,
    GenericSecret,
}

pub(super) const KIND_COUNT: usize = 13;

impl Kind {
    pub(super) const ALL: [Kind; KIND_COUNT] = [
        Kind::Email,
        Kind::CreditCard,
        Kind::UsSsn,
        Kind::Iban,
        Kind::AwsAccessKey,
        Kind::AwsSecretKey,
        Kind::PrivateKey,
        Kind::Jwt,
        Kind::GithubToken,
        Kind::SlackToken,
        Kind::StripeKey,
        Kind::GoogleApiKey,
        Kind::GenericSecret,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::CreditCard => "credit_card",
            Kind::UsSsn => "us_ssn",
            Kind::Iban => "iban",
            Kind::AwsAccessKey => "aws_access_key",
            Kind::AwsSecretKey => "aws_secret_key",
            Kind::PrivateKey => "private_key",
            Kind::Jwt => "jwt",
            Kind::GithubToken => "github_token",
            Kind::SlackToken => "slack_token",
            Kind::StripeKey => "stripe_key",
            Kind::GoogleApiKey => "google_api_key",
            Kind::GenericSecret => "generic_secret",
        }
    }

    pub(super) fn severity(self) -> Severity {
        match self {
            Kind::Email => Severity::Medium,
            Kind::CreditCard | Kind::UsSsn | Kind::Iban | Kind::Jwt | Kind::GoogleApiKey => {
                Severity::High
            }
            Kind::GenericSecret => Severity::High,
            Kind::AwsAccessKey
            | Kind::AwsSecretKey
            | Kind::PrivateKey
            | Kind::GithubToken
            | Kind::SlackToken
            | Kind::StripeKey => Severity::Critical,
        }
    }
}

/// Counts per detector for the value being scanned; turned into findings once the value is done.
#[derive(Default, Clone)]
pub(super) struct Tally {
    counts: [u32; KIND_COUNT],
    severity: [Option<Severity>; KIND_COUNT],
}

impl Tally {
    pub(super) fn add(&mut self, kind: Kind, severity: Severity) {
        let i = kind as usize;
        self.counts[i] = self.counts[i].saturating_add(1);
        // Several hits of one kind at one path with different severities (a live and a test Stripe key)
        // are one finding; the worst one speaks for it.
        self.severity[i] = Some(self.severity[i].map_or(severity, |s| s.max(severity)));
    }

    pub(super) fn hit(&mut self, kind: Kind) {
        self.add(kind, kind.severity());
    }

    /// The severity counted for `kind` (its own when it was not counted).
    pub(super) fn severity_of(&self, kind: Kind) -> Severity {
        self.severity[kind as usize].unwrap_or(kind.severity())
    }

    /// Folds in what a second pass over the same text (its normalised view) `seen`: per detector, the
    /// larger of the two passes' counts (what both saw is counted once), and the worse severity.
    /// `before` is this tally as it was before the first pass.
    pub(super) fn add_unseen(&mut self, before: &Tally, seen: &Tally) {
        for i in 0..KIND_COUNT {
            if seen.counts[i] == 0 {
                continue;
            }
            let first = self.counts[i] - before.counts[i];
            if seen.counts[i] > first {
                self.counts[i] = before.counts[i].saturating_add(seen.counts[i]);
            }
            self.severity[i] = self.severity[i].max(seen.severity[i]);
        }
    }

    pub(super) fn count(&self, kind: Kind) -> u32 {
        self.counts[kind as usize]
    }

    pub(super) fn total(&self) -> u32 {
        self.counts.iter().fold(0u32, |a, &c| a.saturating_add(c))
    }

    /// The most severe kind counted (the first in [`Kind::ALL`] order among equals): the one that names a
    /// redacted key or a value redacted whole.
    pub(super) fn worst(&self) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|&k| self.counts[k as usize] > 0)
            .fold(None, |best: Option<(Kind, Severity)>, k| {
                let s = self.severity[k as usize].unwrap_or(k.severity());
                match best {
                    Some((_, b)) if b >= s => best,
                    _ => Some((k, s)),
                }
            })
            .map(|(k, _)| k)
    }

    pub(super) fn emit(&self, path: &str, out: &mut Vec<Finding>) {
        for kind in Kind::ALL {
            let i = kind as usize;
            if self.counts[i] > 0 {
                out.push(Finding {
                    kind: kind.name().to_owned(),
                    severity: self.severity[i].unwrap_or(kind.severity()),
                    path: path.to_owned(),
                    count: self.counts[i],
                });
            }
        }
    }
}
