//! Who an admin bearer token speaks for (the admin API turns it into its `Admin`): `admin.token` sees every
//! tenant; each `[[admin.tenant_tokens]]` token sees one tenant's objects only. The tenant tokens are read once,
//! when the configuration is loaded, from their environment variable or file; every presented token is compared
//! with every configured one through hashes, so neither the time taken nor the order of the list says which one
//! (or which tenant) came close.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::{AdminSettings, ConfigError};

/// Shortest tenant token accepted: a guessable token would give away a tenant's audit trail.
const MIN_TOKEN_LEN: usize = 16;

/// Whom an admin token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminScope {
    /// `admin.token`: every tenant.
    All,
    /// A `[[admin.tenant_tokens]]` token: this tenant only.
    Tenant(String),
}

/// Reads every tenant token (environment variable or file, one of the two, trimmed) when the configuration is
/// loaded; a missing, empty, short or reused token, an empty or repeated tenant, or one the audit log would not
/// store as it is stop start-up naming the tenant (never the token).
pub(super) fn resolve(
    admin: &mut AdminSettings,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let mut seen: Vec<([u8; 32], String)> = Vec::new();
    let all = admin.token.as_deref().map(digest);
    for entry in &mut admin.tenant_tokens {
        let tenant = entry.tenant.trim().to_owned();
        // Named as a log line may carry it: a name that looks like a secret is not printed.
        let shown = crate::redaction::loggable(&tenant).into_owned();
        let invalid = |message: String| ConfigError::Invalid {
            key: "admin.tenant_tokens".into(),
            message: format!("tenant {shown:?}: {message}"),
        };
        if tenant.is_empty() {
            return Err(invalid("the tenant is empty".into()));
        }
        // Events, escalations, agents, runs and alerts store the agents' tenant claim in the audit log's form
        // (redacted, capped), and the token's tenant is compared with that: a name the log would rewrite would
        // match no stored object, or the rewritten name of another tenant.
        if crate::redaction::stored_text(tenant.clone()) != tenant {
            return Err(invalid(format!(
                "the audit log would not store this tenant name as it is (part of it looks like a secret, or \
                 it is longer than {} bytes), so the token would see none of its events: rename the tenant",
                crate::redaction::FIELD_LIMIT
            )));
        }
        let token = super::secret::read(entry.token_env.as_ref(), entry.token_file.as_ref(), env)
            .map_err(invalid)?
            .ok_or_else(|| invalid("set token_env or token_file".into()))?;
        if token.expose().len() < MIN_TOKEN_LEN {
            return Err(invalid(format!(
                "the token is shorter than {MIN_TOKEN_LEN} characters"
            )));
        }
        let d = digest(token.expose());
        if all == Some(d) || seen.iter().any(|(other, _)| *other == d) {
            return Err(invalid(
                "the token is already used by another admin token".into(),
            ));
        }
        if seen.iter().any(|(_, t)| *t == tenant) {
            return Err(invalid("the tenant is listed twice".into()));
        }
        seen.push((d, tenant.clone()));
        entry.tenant = tenant;
        entry.token = Some(token);
    }
    Ok(())
}

/// The admin tokens in force, as SHA-256 digests.
pub struct AdminTokens {
    all: Option<[u8; 32]>,
    tenants: Vec<([u8; 32], String)>,
}

impl AdminTokens {
    /// The tokens of `admin` as loaded (a tenant entry whose token was never read matches nothing).
    pub fn new(admin: &AdminSettings) -> AdminTokens {
        AdminTokens {
            all: admin.token.as_deref().map(digest),
            tenants: admin
                .tenant_tokens
                .iter()
                .filter_map(|t| Some((digest(t.token.as_ref()?.expose()), t.tenant.clone())))
                .collect(),
        }
    }

    /// No token of any kind: the admin API is off.
    pub fn is_off(&self) -> bool {
        self.all.is_none() && self.tenants.is_empty()
    }

    /// Whom `presented` speaks for, if anyone.
    pub fn identify(&self, presented: &str) -> Option<AdminScope> {
        let presented = digest(presented);
        // Every entry is compared, whichever matches.
        let mut found = None;
        if self.all.is_some_and(|d| d == presented) {
            found = Some(AdminScope::All);
        }
        for (d, tenant) in &self.tenants {
            if *d == presented && found.is_none() {
                found = Some(AdminScope::Tenant(tenant.clone()));
            }
        }
        found
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TenantTokenSettings;

    fn settings(file: &std::path::Path) -> AdminSettings {
        AdminSettings {
            token: Some("all-tenants-admin-token".into()),
            tenant_tokens: vec![TenantTokenSettings {
                tenant: "t1".into(),
                token_env: None,
                token_file: Some(file.to_path_buf()),
                token: None,
            }],
        }
    }

    fn load(mut admin: AdminSettings, env: &[(&str, &str)]) -> Result<AdminTokens, String> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(&mut admin, &env).map_err(|e| e.to_string())?;
        Ok(AdminTokens::new(&admin))
    }

    #[test]
    fn each_token_names_its_admin_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t1.token");
        std::fs::write(&file, "tenant-one-secret-token\n").unwrap();
        let tokens = load(settings(&file), &[]).unwrap();
        assert_eq!(
            tokens.identify("all-tenants-admin-token"),
            Some(AdminScope::All)
        );
        assert_eq!(
            tokens.identify("tenant-one-secret-token"),
            Some(AdminScope::Tenant("t1".into()))
        );
        for wrong in [
            "",
            "tenant-one-secret-token\n",
            "TENANT-ONE-SECRET-TOKEN",
            "all-tenants-admin-toke",
        ] {
            assert_eq!(tokens.identify(wrong), None, "{wrong:?}");
        }
        // A tenant entry built without loading (no token read) matches nothing, not even an empty token.
        let unread = AdminTokens::new(&settings(&file));
        assert_eq!(unread.identify(""), None);
    }

    #[test]
    fn bad_tenant_tokens_stop_start_up_without_showing_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t1.token");
        for (content, says) in [
            ("tiny-1234", "shorter than"),
            ("all-tenants-admin-token", "already used"),
        ] {
            std::fs::write(&file, content).unwrap();
            let e = load(settings(&file), &[]).err().unwrap();
            assert!(
                e.contains(says) && e.contains("t1") && !e.contains(content),
                "{e}"
            );
        }
        std::fs::write(&file, "tenant-one-secret-token").unwrap();
        let mut both = settings(&file);
        both.tenant_tokens[0].token_env = Some("T1_TOKEN".into());
        assert!(load(both, &[("T1_TOKEN", "x")])
            .err()
            .unwrap()
            .contains("not both"));
        let mut unset = settings(&file);
        unset.tenant_tokens[0].token_file = None;
        unset.tenant_tokens[0].token_env = Some("T1_TOKEN".into());
        let e = load(unset.clone(), &[]).err().unwrap();
        assert!(e.contains("T1_TOKEN") && e.contains("not set"), "{e}");
        assert!(load(unset, &[("T1_TOKEN", "tenant-one-from-env-0001")]).is_ok());
        let mut twice = settings(&file);
        twice.tenant_tokens.push(twice.tenant_tokens[0].clone());
        let e = load(twice, &[]).err().unwrap();
        assert!(e.contains("already used") || e.contains("twice"), "{e}");
        let mut neither = settings(&file);
        neither.tenant_tokens[0].token_file = None;
        assert!(load(neither, &[])
            .err()
            .unwrap()
            .contains("token_env or token_file"));
    }

    #[test]
    fn a_tenant_the_log_would_not_store_as_it_is_stops_start_up_unprinted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t1.token");
        std::fs::write(&file, "tenant-one-secret-token").unwrap();
        let secret_like = ["AKIA", "QYLPMN5HFIQR7XYZ"].concat();
        for tenant in [format!("acme-{secret_like}"), "t".repeat(1025)] {
            let mut admin = settings(&file);
            admin.tenant_tokens[0].tenant = tenant.clone();
            let e = load(admin, &[]).err().expect("refused");
            assert!(e.contains("would not store this tenant name"), "{e}");
            assert!(!e.contains(&secret_like) && !e.contains(&tenant), "{e}");
        }
        // The longest name stored as it is, and one with spaces around it (trimmed), are taken.
        for tenant in ["t".repeat(1024), " t1 ".to_owned()] {
            let mut admin = settings(&file);
            admin.tenant_tokens[0].tenant = tenant.clone();
            let tokens = load(admin, &[]).unwrap();
            assert_eq!(
                tokens.identify("tenant-one-secret-token"),
                Some(AdminScope::Tenant(tenant.trim().to_owned()))
            );
        }
    }
}
