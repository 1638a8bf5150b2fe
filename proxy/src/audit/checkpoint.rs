//! Signed checkpoints: the ed25519 key, the checkpoint object and its signature over JCS, the set of trusted
//! public keys verification accepts, and the external sinks (a folder, an HTTP endpoint) checkpoints are
//! copied to so that someone who controls the database cannot quietly rewrite them.
//!
//! A bare hash chain cannot show that its newest rows were deleted: the shorter chain is still a valid chain.
//! A signed checkpoint of the head, kept outside the database, can.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use toolgate_engine::canonical::to_jcs;

/// What a checkpoint vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointKind {
    /// The chain's head at `timestamp`: every event through `seq` existed, the one at `seq` with `head_hash`.
    Head,
    /// Events through `seq` were deleted by retention; the next stored event must follow `head_hash`.
    Pruned,
}

impl CheckpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Head => "head",
            CheckpointKind::Pruned => "pruned",
        }
    }
}

/// The signed statement. Its JCS (RFC 8785) text is what the signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub chain_id: String,
    pub kind: CheckpointKind,
    /// The last event covered.
    pub seq: i64,
    /// That event's `event_hash`.
    pub head_hash: String,
    /// Events in the chain from seq 1 through `seq` (equal to `seq` in a gap-free chain).
    pub count: i64,
    /// When it was signed (RFC 3339 UTC, microseconds).
    pub timestamp: String,
}

impl Checkpoint {
    /// The signed bytes.
    pub fn jcs(&self) -> String {
        // A Checkpoint holds only strings and integers, which always serialise.
        to_jcs(&serde_json::to_value(self).unwrap_or_default())
    }
}

/// A checkpoint with its signature: the JSON of the checkpoint files, the HTTP sink and the export manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// The ed25519 signature over `checkpoint`'s JCS text, 128 hex digits.
    pub signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read the audit signing key {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the audit signing key {path}: {source}")]
    CreateKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the audit signing key {0} is not 64 hex digits (an ed25519 seed)")]
    BadKey(PathBuf),
    #[error("trusted public key {0:?} is not 64 hex digits of an ed25519 public key")]
    BadPublicKey(String),
    #[error("checkpoint signature does not verify")]
    BadSignature,
    #[error("checkpoint is signed by a key that is not trusted (not the signing key, not in audit.trusted_public_keys)")]
    UntrustedKey,
    #[error("cannot read checkpoint file {path}: {reason}")]
    ReadFile { path: PathBuf, reason: String },
}

/// The instance's signing key.
pub struct Signer {
    key: SigningKey,
}

impl Signer {
    /// Loads the key, or creates it (with a warning: checkpoints signed by a fresh key prove nothing about
    /// what was signed by a lost one) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Signer, CheckpointError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Signer {
                key: SigningKey::from_bytes(
                    &parse_hex32(&text).ok_or_else(|| CheckpointError::BadKey(path.to_owned()))?,
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let seed: [u8; 32] = rand::random();
                write_private(path, &format!("{}\n", hex::encode(seed))).map_err(|source| {
                    CheckpointError::CreateKey {
                        path: path.to_owned(),
                        source,
                    }
                })?;
                tracing::warn!(
                    path = %path.display(),
                    "audit signing key created; keep it (and a copy of its public key) safe: checkpoints are only as trustworthy as this key"
                );
                Ok(Signer {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            Err(source) => Err(CheckpointError::ReadKey {
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub fn from_seed(seed: [u8; 32]) -> Signer {
        Signer {
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, checkpoint: Checkpoint) -> SignedCheckpoint {
        let signature = self.key.sign(checkpoint.jcs().as_bytes());
        SignedCheckpoint {
            public_key: hex::encode(self.key.verifying_key().to_bytes()),
            signature: hex::encode(signature.to_bytes()),
            checkpoint,
        }
    }
}

/// The public half of the key at `path`, if that file exists (verification never creates a key).
pub fn public_key_of(path: &Path) -> Result<Option<VerifyingKey>, CheckpointError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let seed =
                parse_hex32(&text).ok_or_else(|| CheckpointError::BadKey(path.to_owned()))?;
            Ok(Some(SigningKey::from_bytes(&seed).verifying_key()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CheckpointError::ReadKey {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The public keys whose checkpoints verification accepts. Checkpoints signed by any other key are ignored.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(Vec<VerifyingKey>);

impl TrustedKeys {
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> TrustedKeys {
        TrustedKeys(keys.into_iter().collect())
    }

    /// Parses `audit.trusted_public_keys` entries (64 hex digits each).
    pub fn parse_all(hex_keys: &[String]) -> Result<Vec<VerifyingKey>, CheckpointError> {
        hex_keys
            .iter()
            .map(|k| {
                parse_hex32(k)
                    .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                    .ok_or_else(|| CheckpointError::BadPublicKey(k.chars().take(80).collect()))
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks that `signed` is signed by a trusted key over its checkpoint's JCS text.
    pub fn verify(&self, signed: &SignedCheckpoint) -> Result<(), CheckpointError> {
        let key = parse_hex32(&signed.public_key)
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or(CheckpointError::BadSignature)?;
        if !self.0.contains(&key) {
            return Err(CheckpointError::UntrustedKey);
        }
        let bytes: [u8; 64] = hex::decode(signed.signature.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(CheckpointError::BadSignature)?;
        key.verify_strict(
            signed.checkpoint.jcs().as_bytes(),
            &Signature::from_bytes(&bytes),
        )
        .map_err(|_| CheckpointError::BadSignature)
    }
}

/// Reads a checkpoint file (the JSON a [`Sink::Dir`] writes).
pub fn read_file(path: &Path) -> Result<SignedCheckpoint, CheckpointError> {
    let err = |reason: String| CheckpointError::ReadFile {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}

/// Where checkpoints are copied besides the database.
#[derive(Clone)]
pub enum Sink {
    /// One JSON file per checkpoint, plus `<chain>-latest.json`, each written atomically.
    Dir(PathBuf),
    /// `POST` of the JSON to this URL, with the proxy's one outbound client.
    Url(String, Box<crate::outbound::HttpClient>),
}

impl Sink {
    /// Copies `signed` to the sink; errors are logged, never event content.
    pub async fn publish(&self, signed: &SignedCheckpoint) {
        let json = serde_json::to_string_pretty(signed).unwrap_or_default();
        match self {
            Sink::Dir(dir) => {
                let cp = &signed.checkpoint;
                let chain = file_safe(&cp.chain_id);
                let name = format!("{chain}-{}-{:020}.json", cp.kind.as_str(), cp.seq);
                let result = async {
                    tokio::fs::create_dir_all(dir).await?;
                    write_atomic(&dir.join(&name), &json).await?;
                    if cp.kind == CheckpointKind::Head {
                        write_atomic(&dir.join(format!("{chain}-latest.json")), &json).await?;
                    }
                    Ok::<_, std::io::Error>(())
                }
                .await;
                if let Err(e) = result {
                    tracing::warn!(dir = %dir.display(), error = %e, "audit checkpoint sink failed");
                }
            }
            Sink::Url(url, client) => {
                let request = hyper::Request::post(url.as_str())
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(json)));
                let request = match request {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "audit checkpoint sink URL is invalid");
                        return;
                    }
                };
                match tokio::time::timeout(Duration::from_secs(10), client.request(request)).await {
                    Ok(Ok(resp)) if resp.status().is_success() => {}
                    Ok(Ok(resp)) => {
                        tracing::warn!(
                            status = resp.status().as_u16(),
                            "audit checkpoint sink refused the checkpoint"
                        )
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "audit checkpoint sink failed"),
                    Err(_) => tracing::warn!("audit checkpoint sink did not answer within 10 s"),
                }
            }
        }
    }
}

fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

async fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    tokio::fs::write(&tmp, text).await?;
    tokio::fs::rename(&tmp, path).await
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    hex::decode(text.trim()).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            chain_id: "c".into(),
            kind: CheckpointKind::Head,
            seq: 7,
            head_hash: "ab".repeat(32),
            count: 7,
            timestamp: "2026-11-22T20:15:00.000000Z".into(),
        }
    }

    #[test]
    fn jcs_is_sorted_and_signature_verifies_only_unchanged() {
        let cp = checkpoint();
        assert!(cp
            .jcs()
            .starts_with("{\"chain_id\":\"c\",\"count\":7,\"head_hash\":"));
        let signer = Signer::from_seed([7; 32]);
        let trusted = TrustedKeys::new([signer.verifying_key()]);
        let signed = signer.sign(cp);
        trusted.verify(&signed).unwrap();

        let mut changed = signed.clone();
        changed.checkpoint.seq = 6;
        assert!(matches!(
            trusted.verify(&changed),
            Err(CheckpointError::BadSignature)
        ));

        let other = Signer::from_seed([8; 32]).sign(checkpoint());
        assert!(matches!(
            trusted.verify(&other),
            Err(CheckpointError::UntrustedKey)
        ));
        assert!(TrustedKeys::default().verify(&signed).is_err());
    }

    #[test]
    fn key_file_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.key");
        assert!(public_key_of(&path).unwrap().is_none());
        let created = Signer::load_or_create(&path).unwrap();
        let loaded = Signer::load_or_create(&path).unwrap();
        assert_eq!(created.verifying_key(), loaded.verifying_key());
        assert_eq!(public_key_of(&path).unwrap(), Some(created.verifying_key()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            Signer::load_or_create(&path),
            Err(CheckpointError::BadKey(_))
        ));
    }

    #[tokio::test]
    async fn dir_sink_writes_files() {
        let dir = tempfile::tempdir().unwrap();
        let signed = Signer::from_seed([1; 32]).sign(checkpoint());
        Sink::Dir(dir.path().to_owned()).publish(&signed).await;
        let latest = read_file(&dir.path().join("c-latest.json")).unwrap();
        assert_eq!(latest, signed);
        assert!(dir.path().join("c-head-00000000000000000007.json").exists());
    }
}
