//! Tool definitions pinned against rug pulls: each tool an upstream lists is remembered by the hash of its
//! definition, and a later listing with another hash marks it `changed` until the definition goes back or an
//! admin approves the new one.
//!
//! toolgate never asks an upstream for its tools itself: it only observes the `tools/list` answers passing
//! through ([`ToolPins::observe`]). The state lives in the audit database (`tool_definitions`) and in an
//! in-memory cache loaded at start, so a `tools/call` reads it ([`ToolPins::info`]) without I/O and a restart
//! keeps every pin. Instances sharing a database read the definitions back whenever another one stored,
//! approved or saw a change of one ([`follow`], on the state-change bus), so an approval anywhere counts
//! everywhere within a second.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;
use toolgate_engine::canonical::sha256_hex;
use toolgate_engine::dlp::Scanner;
use toolgate_engine::input::{DefinitionInfo, DefinitionStatus};

use crate::audit::store::ToolDefinitionRow;
use crate::audit::{AuditError, AuditStore};
use crate::shared_state::{Bus, Change};

#[cfg(test)]
mod tests;

/// How a definition seen for the first time is treated (`[tools] pinning`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pinning {
    /// Trust on first use: the first definition seen is pinned.
    #[default]
    Tofu,
    /// Every new definition waits (status `new`) until an admin approves it.
    Approve,
}

/// What changed when a definition was observed; the caller audits each one as a `tool_definition` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// A definition never seen before (or, while unapproved, a new version of it).
    New,
    /// A definition that differs from the pinned one, reported once per distinct hash.
    Changed,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::New => "new",
            Transition::Changed => "changed",
        }
    }
}

/// One tool definition as toolgate knows it (an item of `GET /api/v1/tools`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ToolRecord {
    pub upstream: String,
    /// The name as the upstream listed it, unless it held a secret or was longer than 256 bytes: then
    /// `[REDACTED]#<hash>` or a prefix and `#<hash>` (see [`ToolPins::stored_name`]).
    pub name: String,
    pub status: DefinitionStatus,
    /// The hash calls are trusted against; `None` until a first definition is pinned.
    pub pinned_hash: Option<String>,
    /// The hash of the definition as the upstream last listed it.
    pub current_hash: String,
    /// Poisoning markers of the current definition.
    pub poisoning: Vec<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub approved_at: Option<String>,
}

/// Why an approval was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("no tool {name} of upstream {upstream} has been listed")]
    NotFound { upstream: String, name: String },
    #[error("tool {name} of upstream {upstream} is already pinned")]
    AlreadyPinned { upstream: String, name: String },
    #[error(transparent)]
    Store(#[from] AuditError),
}

/// Longest stored tool name, in bytes.
const MAX_NAME_BYTES: usize = 256;
/// `#` and 16 hex digits of the name's SHA-256, appended to a shortened name.
const NAME_HASH_SUFFIX: usize = 17;
/// `last_seen` is kept exact in memory, and written to the database at most this often when nothing else
/// changes, so a `tools/list` of unchanged tools costs no write.
const LAST_SEEN_WRITE_EVERY: Duration = Duration::from_secs(60);

/// The pinned definitions: cached in memory, persisted in the audit database. `Send + Sync`, held in `App`.
pub struct ToolPins {
    store: AuditStore,
    pinning: Pinning,
    /// `toolgate_tool_definitions{status}`, set from the cache after every change.
    gauge: prometheus::IntGaugeVec,
    scanner: Scanner,
    /// upstream -> stored name -> entry. A std lock: held for map operations only, never across an await.
    cache: RwLock<HashMap<String, HashMap<String, Entry>>>,
    /// Serialises the changes (database write, then cache), so two observations of one tool cannot
    /// interleave between reading the cache and writing the row.
    changes: tokio::sync::Mutex<()>,
}

struct Entry {
    record: ToolRecord,
    /// When `record.last_seen` was last written to the database.
    written: Instant,
    /// The upstream said its tools changed (`notifications/tools/list_changed`) and this tool has not been
    /// listed since: its definition is unverified, so it is judged as `changed` until the next listing shows
    /// it (toolgate never asks the upstream itself). In memory only: a restart forgets it, and the next
    /// listing would settle it anyway.
    unverified: bool,
}

/// What one observation does to a record.
#[derive(Debug, PartialEq)]
enum Step {
    /// Nothing but `last_seen`.
    Same,
    Next {
        record: Box<ToolRecord>,
        transition: Option<Transition>,
    },
}

impl ToolPins {
    /// Loads every stored definition into the cache and sets the gauge.
    pub async fn load(
        store: AuditStore,
        pinning: Pinning,
        gauge: prometheus::IntGaugeVec,
    ) -> Result<ToolPins, AuditError> {
        let mut cache: HashMap<String, HashMap<String, Entry>> = HashMap::new();
        let now = Instant::now();
        for row in store.tool_definitions().await? {
            let record = from_row(row)?;
            cache.entry(record.upstream.clone()).or_default().insert(
                record.name.clone(),
                Entry {
                    record,
                    written: now,
                    unverified: false,
                },
            );
        }
        let pins = ToolPins {
            store,
            pinning,
            gauge,
            scanner: Scanner::new(),
            cache: RwLock::new(cache),
            changes: tokio::sync::Mutex::new(()),
        };
        pins.set_gauge();
        Ok(pins)
    }

    /// Records one tool as an upstream listed it: `hash` is the SHA-256 hex of the JCS of the tool object,
    /// `poisoning` the markers found in it. Returns the definition's state and what changed, if anything.
    ///
    /// Tofu: the first sighting is pinned; approve: it is stored as `new` until approved. A hash other than
    /// the pinned one makes it `changed` (reported once per distinct hash); the pinned hash listed again
    /// makes it `pinned` again. Nothing is cached unless the database took it.
    pub async fn observe(
        &self,
        upstream: &str,
        name: &str,
        hash: &str,
        poisoning: &[String],
    ) -> Result<(DefinitionInfo, Option<Transition>), AuditError> {
        let name = self.stored_name(name);
        let now = now();
        if let Some(info) = self.touch(upstream, &name, hash, &now) {
            return Ok((info, None));
        }
        let _change = self.changes.lock().await;
        // Decided again under the lock: another observation may have changed the record meanwhile.
        let (record, transition) = match self.record(upstream, &name) {
            Some(current) => {
                let step = step_from(&current, self.pinning, hash, poisoning, &now);
                self.write(current, step, &now).await?
            }
            None => {
                let record = first_sighting(self.pinning, upstream, &name, hash, poisoning, &now);
                if self.store.insert_tool_definition(&to_row(&record)).await? {
                    (record, Some(Transition::New))
                } else {
                    // Another instance sharing the database stored this tool first: its row is the pin.
                    let stored = self
                        .store
                        .tool_definition(upstream, &name)
                        .await?
                        .ok_or(AuditError::Query(sqlx::Error::RowNotFound))?;
                    let stored = from_row(stored)?;
                    let step = step_from(&stored, self.pinning, hash, poisoning, &now);
                    self.write(stored, step, &now).await?
                }
            }
        };
        let info = info_of(&record);
        self.put(record);
        Ok((info, transition))
    }

    /// Stores the result of one observation of the stored record `current`.
    async fn write(
        &self,
        current: ToolRecord,
        step: Step,
        now: &str,
    ) -> Result<(ToolRecord, Option<Transition>), AuditError> {
        let (record, transition) = match step {
            Step::Same => (
                ToolRecord {
                    last_seen: now.to_owned(),
                    ..current
                },
                None,
            ),
            Step::Next { record, transition } => (*record, transition),
        };
        self.store.update_tool_definition(&to_row(&record)).await?;
        Ok((record, transition))
    }

    /// The state of a tool's definition for a `tools/call`, from the cache (no I/O): `new` without a hash
    /// when the tool was never listed.
    pub fn info(&self, upstream: &str, name: &str) -> DefinitionInfo {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let by_name = cache.get(upstream);
        // A stored name is its own stored form, so the name as given is tried first and the DLP scan behind
        // `stored_name` is only paid for names not found that way.
        let entry = by_name
            .and_then(|m| m.get(name))
            .or_else(|| by_name.and_then(|m| m.get(self.stored_name(name).as_str())));
        match entry {
            Some(e) if e.unverified => DefinitionInfo {
                status: DefinitionStatus::Changed,
                ..info_of(&e.record)
            },
            Some(e) => info_of(&e.record),
            None => DefinitionInfo {
                hash: None,
                status: DefinitionStatus::New,
                poisoning: Vec::new(),
            },
        }
    }

    /// `notifications/tools/list_changed` from `upstream`: every definition of it is unverified until it is
    /// listed again. Returns how many were marked.
    pub fn list_changed(&self, upstream: &str) -> usize {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let Some(by_name) = cache.get_mut(upstream) else {
            return 0;
        };
        for entry in by_name.values_mut() {
            entry.unverified = true;
        }
        by_name.len()
    }

    /// Pins the tool's current definition (an admin's approval). The stored row is read first, so a change
    /// another instance observed is what gets approved.
    pub async fn approve(&self, upstream: &str, name: &str) -> Result<ToolRecord, ApproveError> {
        let name = self.stored_name(name);
        let _change = self.changes.lock().await;
        let stored = match self.store.tool_definition(upstream, &name).await? {
            Some(row) => from_row(row)?,
            None => {
                return Err(ApproveError::NotFound {
                    upstream: upstream.to_owned(),
                    name,
                })
            }
        };
        if stored.status == DefinitionStatus::Pinned {
            // The stored row may be newer than the cache (another instance approved it).
            self.put(stored);
            return Err(ApproveError::AlreadyPinned {
                upstream: upstream.to_owned(),
                name,
            });
        }
        let record = ToolRecord {
            status: DefinitionStatus::Pinned,
            pinned_hash: Some(stored.current_hash.clone()),
            approved_at: Some(now()),
            ..stored
        };
        self.store.update_tool_definition(&to_row(&record)).await?;
        self.put(record.clone());
        Ok(record)
    }

    /// Every definition seen: `changed` first, then `new`, then `pinned` (each by upstream and name); only
    /// those of `status` when given.
    pub fn list(&self, status: Option<DefinitionStatus>) -> Vec<ToolRecord> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let mut records: Vec<ToolRecord> = cache
            .values()
            .flat_map(HashMap::values)
            .map(|e| &e.record)
            .filter(|r| status.as_ref().is_none_or(|s| &r.status == s))
            .cloned()
            .collect();
        records.sort_by(|a, b| {
            (rank(&a.status), &a.upstream, &a.name).cmp(&(rank(&b.status), &b.upstream, &b.name))
        });
        records
    }

    /// The form a tool name is stored and looked up in: as given, unless the DLP scanner finds a secret in it
    /// (`[REDACTED]#<16 hex of its SHA-256>`) or it is longer than 256 bytes (a prefix, then `#<16 hex>`).
    /// A stored form is its own stored form, so an admin can pass a listed name back.
    pub fn stored_name(&self, name: &str) -> String {
        let digest = || sha256_hex(name.as_bytes())[..16].to_owned();
        if !self.scanner.scan(&json!(name)).is_empty() {
            return format!("[REDACTED]#{}", digest());
        }
        if name.len() <= MAX_NAME_BYTES {
            return name.to_owned();
        }
        let mut end = MAX_NAME_BYTES - NAME_HASH_SUFFIX;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}#{}", &name[..end], digest())
    }

    /// The fast path of `observe`: when the listing changes nothing, only `last_seen` moves in memory, and
    /// no database write is due yet. `None` when `observe` has to take the slow path.
    fn touch(&self, upstream: &str, name: &str, hash: &str, now: &str) -> Option<DefinitionInfo> {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let entry = cache.get_mut(upstream)?.get_mut(name)?;
        let same = matches!(
            step_from(&entry.record, self.pinning, hash, &[], now),
            Step::Same
        );
        if !same || entry.written.elapsed() >= LAST_SEEN_WRITE_EVERY {
            return None;
        }
        entry.record.last_seen = now.to_owned();
        // Listed again: whatever a `list_changed` said, this definition is verified now.
        entry.unverified = false;
        Some(info_of(&entry.record))
    }

    fn record(&self, upstream: &str, name: &str) -> Option<ToolRecord> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.get(upstream)?.get(name).map(|e| e.record.clone())
    }

    /// Reads every stored definition back, for what other instances sharing the database stored, approved or
    /// saw change: the cache takes the database's records, keeping what only this instance knows (a later
    /// `last_seen`, a `list_changed` mark).
    pub async fn reload(&self) -> Result<(), AuditError> {
        // Under the change lock, so a change made here cannot be overwritten by a read from before it.
        let _change = self.changes.lock().await;
        let rows = self.store.tool_definitions().await?;
        let records = rows
            .into_iter()
            .map(from_row)
            .collect::<Result<Vec<_>, _>>()?;
        {
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            for record in records {
                let by_name = cache.entry(record.upstream.clone()).or_default();
                match by_name.get_mut(&record.name) {
                    Some(entry) => {
                        let last_seen =
                            entry.record.last_seen.clone().max(record.last_seen.clone());
                        entry.record = ToolRecord {
                            last_seen,
                            ..record
                        };
                    }
                    None => {
                        by_name.insert(
                            record.name.clone(),
                            Entry {
                                record,
                                written: Instant::now(),
                                unverified: false,
                            },
                        );
                    }
                }
            }
        }
        self.set_gauge();
        Ok(())
    }

    /// Caches a record the database holds, and sets the gauge to the cache's exact counts.
    fn put(&self, record: ToolRecord) {
        {
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            cache.entry(record.upstream.clone()).or_default().insert(
                record.name.clone(),
                Entry {
                    record,
                    written: Instant::now(),
                    unverified: false,
                },
            );
        }
        self.set_gauge();
    }

    fn set_gauge(&self) {
        let mut counts = [0i64; 3];
        {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            for entry in cache.values().flat_map(HashMap::values) {
                counts[rank(&entry.record.status)] += 1;
            }
        }
        for status in [
            DefinitionStatus::Changed,
            DefinitionStatus::New,
            DefinitionStatus::Pinned,
        ] {
            self.gauge
                .with_label_values(&[status.as_str()])
                .set(counts[rank(&status)]);
        }
    }
}

/// Keeps `pins` in step with the definitions other instances store, approve or see change: each change
/// announced on the bus (a burst read once) reloads them. Ends with the bus, or once the pins are dropped.
pub fn follow(pins: &Arc<ToolPins>, bus: &Bus) {
    crate::shared_state::reload_on(
        bus,
        pins,
        |c| matches!(c, Change::Tools),
        "tool definitions",
        |p| async move { p.reload().await },
    );
}

/// The record of a tool never seen before: pinned at once (tofu) or waiting for an approval.
fn first_sighting(
    pinning: Pinning,
    upstream: &str,
    name: &str,
    hash: &str,
    poisoning: &[String],
    now: &str,
) -> ToolRecord {
    let pinned = pinning == Pinning::Tofu;
    ToolRecord {
        upstream: upstream.to_owned(),
        name: name.to_owned(),
        status: if pinned {
            DefinitionStatus::Pinned
        } else {
            DefinitionStatus::New
        },
        pinned_hash: pinned.then(|| hash.to_owned()),
        current_hash: hash.to_owned(),
        poisoning: poisoning.to_vec(),
        first_seen: now.to_owned(),
        last_seen: now.to_owned(),
        approved_at: None,
    }
}

/// The state machine of one observation of a tool seen before (`record`, as stored).
fn step_from(
    record: &ToolRecord,
    pinning: Pinning,
    hash: &str,
    poisoning: &[String],
    now: &str,
) -> Step {
    let listed = |status: DefinitionStatus, pinned_hash: Option<String>| {
        Box::new(ToolRecord {
            status,
            pinned_hash,
            current_hash: hash.to_owned(),
            poisoning: poisoning.to_vec(),
            last_seen: now.to_owned(),
            ..record.clone()
        })
    };
    let is_current = record.current_hash == hash;
    match record.status {
        DefinitionStatus::New if pinning == Pinning::Tofu => Step::Next {
            // Waiting for an approval when the pinning became tofu: the first use from now on pins it.
            record: listed(DefinitionStatus::Pinned, Some(hash.to_owned())),
            transition: (!is_current).then_some(Transition::New),
        },
        _ if is_current => Step::Same,
        // Not approved yet: each new version waits as it is, and is reported like the first one.
        DefinitionStatus::New => Step::Next {
            record: listed(DefinitionStatus::New, None),
            transition: Some(Transition::New),
        },
        _ if record.pinned_hash.as_deref() == Some(hash) => Step::Next {
            record: listed(DefinitionStatus::Pinned, record.pinned_hash.clone()),
            transition: None,
        },
        DefinitionStatus::Pinned | DefinitionStatus::Changed => Step::Next {
            record: listed(DefinitionStatus::Changed, record.pinned_hash.clone()),
            transition: Some(Transition::Changed),
        },
    }
}

fn info_of(record: &ToolRecord) -> DefinitionInfo {
    DefinitionInfo {
        hash: Some(record.current_hash.clone()),
        status: record.status,
        poisoning: record.poisoning.clone(),
    }
}

/// The order of `list`: changed, new, pinned (also the gauge's index).
fn rank(status: &DefinitionStatus) -> usize {
    match status {
        DefinitionStatus::Changed => 0,
        DefinitionStatus::New => 1,
        DefinitionStatus::Pinned => 2,
    }
}

/// A status as stored or as given in `?status=`.
pub fn parse_status(text: &str) -> Option<DefinitionStatus> {
    match text {
        "new" => Some(DefinitionStatus::New),
        "pinned" => Some(DefinitionStatus::Pinned),
        "changed" => Some(DefinitionStatus::Changed),
        _ => None,
    }
}

fn now() -> String {
    crate::telemetry::format_rfc3339(time::OffsetDateTime::now_utc())
}

fn to_row(record: &ToolRecord) -> ToolDefinitionRow {
    ToolDefinitionRow {
        upstream: record.upstream.clone(),
        name: record.name.clone(),
        status: record.status.as_str().to_owned(),
        pinned_hash: record.pinned_hash.clone(),
        current_hash: record.current_hash.clone(),
        poisoning: json!(record.poisoning).to_string(),
        first_seen: record.first_seen.clone(),
        last_seen: record.last_seen.clone(),
        approved_at: record.approved_at.clone(),
    }
}

fn from_row(row: ToolDefinitionRow) -> Result<ToolRecord, AuditError> {
    let status = parse_status(&row.status).ok_or_else(|| {
        AuditError::Query(sqlx::Error::Decode(
            format!(
                "tool_definitions.status {:?} is not new, pinned or changed",
                row.status
            )
            .into(),
        ))
    })?;
    Ok(ToolRecord {
        upstream: row.upstream,
        name: row.name,
        status,
        pinned_hash: row.pinned_hash,
        current_hash: row.current_hash,
        // Marker names only; a cell that is not a JSON array of strings carries none.
        poisoning: serde_json::from_str(&row.poisoning).unwrap_or_default(),
        first_seen: row.first_seen,
        last_seen: row.last_seen,
        approved_at: row.approved_at,
    })
}
