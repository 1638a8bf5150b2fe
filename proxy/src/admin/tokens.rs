//! Who an admin bearer token names: `admin.token` sees every tenant; each `[[admin.tenant_tokens]]` token sees
//! one tenant's objects only. The tenant tokens are read once at start from their environment variable or file,
//! and every presented token is compared with every configured one through hashes, so neither the time taken nor
//! the order of the list says which one (or which tenant) came close.

use anyhow::{bail, Context as _};
use sha2::{Digest, Sha256};

use super::Admin;
use crate::config::AdminSettings;

/// Shortest tenant token accepted: a guessable token would give away a tenant's audit trail.
const MIN_TOKEN_LEN: usize = 16;

/// The admin tokens in force, as SHA-256 digests.
pub struct AdminTokens {
    all: Option<[u8; 32]>,
    tenants: Vec<([u8; 32], String)>,
}

impl AdminTokens {
    /// Reads every tenant token (environment variable or file, one of the two, trimmed); a missing, empty,
    /// short or duplicated token stops start-up with the tenant it belongs to (never the token).
    pub fn load(settings: &AdminSettings) -> anyhow::Result<AdminTokens> {
        let mut tenants: Vec<([u8; 32], String)> = Vec::new();
        for entry in &settings.tenant_tokens {
            let tenant = entry.tenant.trim();
            if tenant.is_empty() {
                bail!("admin.tenant_tokens: an entry has an empty tenant");
            }
            let token = match (&entry.token_env, &entry.token_file) {
                (Some(var), None) => std::env::var(var).with_context(|| {
                    format!("admin.tenant_tokens of tenant {tenant:?}: environment variable {var} is not set")
                })?,
                (None, Some(path)) => std::fs::read_to_string(path).with_context(|| {
                    format!("admin.tenant_tokens of tenant {tenant:?}: reading {}", path.display())
                })?,
                _ => bail!("admin.tenant_tokens of tenant {tenant:?}: set exactly one of token_env and token_file"),
            };
            let token = token.trim();
            if token.len() < MIN_TOKEN_LEN {
                bail!("admin.tenant_tokens of tenant {tenant:?}: the token is shorter than {MIN_TOKEN_LEN} characters");
            }
            let digest = digest(token);
            if settings
                .token
                .as_deref()
                .is_some_and(|t| digest == self::digest(t))
                || tenants.iter().any(|(d, _)| *d == digest)
            {
                bail!("admin.tenant_tokens of tenant {tenant:?}: the token is already used by another admin token");
            }
            if tenants.iter().any(|(_, t)| t == tenant) {
                bail!("admin.tenant_tokens: tenant {tenant:?} is listed twice");
            }
            tenants.push((digest, tenant.to_owned()));
        }
        Ok(AdminTokens {
            all: settings.token.as_deref().map(digest),
            tenants,
        })
    }

    /// No token of any kind: the admin API is off.
    pub fn is_off(&self) -> bool {
        self.all.is_none() && self.tenants.is_empty()
    }

    /// The admin `presented` names, if any.
    pub fn identify(&self, presented: &str) -> Option<Admin> {
        let presented = digest(presented);
        // Every entry is compared, whichever matches.
        let mut found = None;
        if self.all.is_some_and(|d| d == presented) {
            found = Some(Admin::all());
        }
        for (d, tenant) in &self.tenants {
            if *d == presented && found.is_none() {
                found = Some(Admin::of_tenant(tenant));
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
            }],
        }
    }

    #[test]
    fn each_token_names_its_admin_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t1.token");
        std::fs::write(&file, "tenant-one-secret-token\n").unwrap();
        let tokens = AdminTokens::load(&settings(&file)).unwrap();
        assert_eq!(
            tokens.identify("all-tenants-admin-token"),
            Some(Admin::all())
        );
        let t1 = tokens.identify("tenant-one-secret-token").unwrap();
        assert_eq!(t1.tenant.as_deref(), Some("t1"));
        assert_ne!(t1.name, "admin");
        for wrong in [
            "",
            "tenant-one-secret-token\n",
            "TENANT-ONE-SECRET-TOKEN",
            "all-tenants-admin-toke",
        ] {
            assert_eq!(tokens.identify(wrong), None, "{wrong:?}");
        }
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
            let e = AdminTokens::load(&settings(&file))
                .err()
                .unwrap()
                .to_string();
            assert!(
                e.contains(says) && e.contains("t1") && !e.contains(content),
                "{e}"
            );
        }
        let mut both = settings(&file);
        both.tenant_tokens[0].token_env = Some("TOOLGATE_TEST_NO_SUCH_VAR".into());
        let e = AdminTokens::load(&both).err().unwrap().to_string();
        assert!(e.contains("exactly one"), "{e}");
        let mut unset = settings(&file);
        unset.tenant_tokens[0].token_file = None;
        unset.tenant_tokens[0].token_env = Some("TOOLGATE_TEST_NO_SUCH_VAR_2".into());
        let e = AdminTokens::load(&unset).err().unwrap().to_string();
        assert!(e.contains("TOOLGATE_TEST_NO_SUCH_VAR_2 is not set"), "{e}");
        std::fs::write(&file, "tenant-one-secret-token").unwrap();
        let mut twice = settings(&file);
        twice.tenant_tokens.push(twice.tenant_tokens[0].clone());
        let e = AdminTokens::load(&twice).err().unwrap().to_string();
        assert!(e.contains("already used") || e.contains("twice"), "{e}");
    }
}
