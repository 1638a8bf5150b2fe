//! The feed's `id:`: an opaque cursor that holds, for every chain of the database, the seq up to which the
//! client has been sent every event of that chain (or passed over it, when its filters refused it).
//!
//! Seqs are per chain and there is no ordering across chains (each instance writes its own chain, in its own
//! time), so a position in the feed is a vector: "everything committed after what this client saw" is, for
//! each chain, the events above its seq in the cursor, and for a chain the cursor does not name (one that
//! appeared after the cursor was made), all of them. On the wire it is base64url (no padding) of
//! `{"feed":1,"chains":{"<chain_id>":<seq>,…}}`; clients must treat it as opaque.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Most chains a cursor may name: far more than instances share a database.
const MAX_CHAINS: usize = 1024;
/// Most bytes of an encoded cursor (a header or query value).
const MAX_ENCODED: usize = 64 * 1024;
/// The cursor format this server writes and reads.
const VERSION: u32 = 1;

/// A position in the feed: a seq per chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct FeedCursor {
    positions: BTreeMap<String, i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    feed: u32,
    chains: BTreeMap<String, i64>,
}

/// Why a `Last-Event-ID` was refused; the message names the problem, never the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum BadCursor {
    #[error("Last-Event-ID is not a feed id of this server (it must be an `id:` the feed sent, unchanged)")]
    Garbled,
    #[error("Last-Event-ID is longer than {MAX_ENCODED} bytes")]
    TooLong,
    #[error("Last-Event-ID names more than {MAX_CHAINS} chains")]
    TooManyChains,
    #[error("Last-Event-ID names a chain this audit database does not hold")]
    UnknownChain,
    #[error("Last-Event-ID is ahead of the audit log (was the database replaced?)")]
    Ahead,
}

impl FeedCursor {
    /// The position at the stored heads: everything stored so far counts as seen.
    pub fn at(heads: &[(String, i64)]) -> FeedCursor {
        FeedCursor {
            positions: heads.iter().cloned().collect(),
        }
    }

    /// Parses a cursor this server issued. It says nothing yet about this database: see [`FeedCursor::check`].
    pub fn decode(text: &str) -> Result<FeedCursor, BadCursor> {
        let text = text.trim();
        if text.len() > MAX_ENCODED {
            return Err(BadCursor::TooLong);
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| BadCursor::Garbled)?;
        let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| BadCursor::Garbled)?;
        if wire.feed != VERSION
            || wire
                .chains
                .iter()
                .any(|(chain, seq)| chain.is_empty() || *seq < 0)
        {
            return Err(BadCursor::Garbled);
        }
        if wire.chains.len() > MAX_CHAINS {
            return Err(BadCursor::TooManyChains);
        }
        Ok(FeedCursor {
            positions: wire.chains,
        })
    }

    /// Refuses a cursor that does not fit the database's `heads`: a chain it does not hold, or a seq past a
    /// chain's head. Either way the cursor was not made from this database, and resuming from it would
    /// silently skip events.
    pub fn check(&self, heads: &[(String, i64)]) -> Result<(), BadCursor> {
        for (chain, seq) in &self.positions {
            match heads.iter().find(|(c, _)| c == chain) {
                None => return Err(BadCursor::UnknownChain),
                Some((_, head)) if seq > head => return Err(BadCursor::Ahead),
                Some(_) => {}
            }
        }
        Ok(())
    }

    pub fn encode(&self) -> String {
        let wire = serde_json::json!({ "feed": VERSION, "chains": self.positions });
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(wire.to_string())
    }

    /// The seq of `chain` up to which the client has everything; 0 (from its first event) for a chain the
    /// cursor does not name.
    pub fn position(&self, chain: &str) -> i64 {
        self.positions.get(chain).copied().unwrap_or(0)
    }

    /// Moves `chain` forward to `seq`; a position never moves back.
    pub fn advance(&mut self, chain: &str, seq: i64) {
        match self.positions.get_mut(chain) {
            Some(position) => *position = (*position).max(seq),
            None => {
                self.positions.insert(chain.to_owned(), seq);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads() -> Vec<(String, i64)> {
        vec![("a".into(), 10), ("b".into(), 3)]
    }

    #[test]
    fn a_cursor_round_trips_and_moves_only_forward() {
        let mut cursor = FeedCursor::at(&heads());
        cursor.advance("a", 12);
        cursor.advance("a", 11);
        cursor.advance("new", 2);
        let again = FeedCursor::decode(&cursor.encode()).unwrap();
        assert_eq!(again, cursor);
        assert_eq!(again.position("a"), 12);
        assert_eq!(again.position("new"), 2);
        assert_eq!(again.position("unnamed"), 0);
        assert!(!cursor.encode().contains(['+', '/', '=', '\n']));
    }

    #[test]
    fn foreign_and_garbled_ids_are_refused() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        for bad in [
            "",
            "not base64!",
            "42",
            &b64("{}"),
            &b64("[1,2]"),
            &b64(r#"{"feed":2,"chains":{}}"#),
            &b64(r#"{"feed":1,"chains":{"a":-1}}"#),
            &b64(r#"{"feed":1,"chains":{"":1}}"#),
            &b64(r#"{"feed":1,"chains":{"a":1},"more":true}"#),
            &b64(r#"{"feed":1,"chains":{"a":"1"}}"#),
        ] {
            assert_eq!(FeedCursor::decode(bad), Err(BadCursor::Garbled), "{bad}");
        }
        assert_eq!(
            FeedCursor::decode(&"A".repeat(MAX_ENCODED + 1)),
            Err(BadCursor::TooLong)
        );
        let many: BTreeMap<String, i64> = (0..=MAX_CHAINS).map(|i| (format!("c{i}"), 1)).collect();
        let many = b64(&serde_json::json!({ "feed": 1, "chains": many }).to_string());
        assert_eq!(FeedCursor::decode(&many), Err(BadCursor::TooManyChains));
    }

    #[test]
    fn a_cursor_must_fit_the_database() {
        let ok = FeedCursor::decode(&b64(r#"{"feed":1,"chains":{"a":10}}"#)).unwrap();
        assert_eq!(ok.check(&heads()), Ok(()));
        let ahead = FeedCursor::decode(&b64(r#"{"feed":1,"chains":{"a":11}}"#)).unwrap();
        assert_eq!(ahead.check(&heads()), Err(BadCursor::Ahead));
        let unknown = FeedCursor::decode(&b64(r#"{"feed":1,"chains":{"z":1}}"#)).unwrap();
        assert_eq!(unknown.check(&heads()), Err(BadCursor::UnknownChain));
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }
}
