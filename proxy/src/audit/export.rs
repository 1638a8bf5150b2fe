//! The export formats of the audit log: NDJSON, one JSON array, and CSV guarded against formula injection.
//!
//! Rendering is separate from the database so it can be tested without one; the store streams rows through an
//! [`EventEncoder`] and writes each piece as it comes.

use std::str::FromStr;

use toolgate_engine::chain::AuditEvent;

/// The format of `toolgate audit export` and the export endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Header row, then one row per event; JSON columns as JSON text.
    Csv,
    /// One JSON array of events.
    Json,
    /// One event JSON per line, both hashes included: the input of `tools/verify-audit.py`.
    Ndjson,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown export format {0:?}: expected csv, json or ndjson")]
pub struct UnknownExportFormat(String);

impl FromStr for ExportFormat {
    type Err = UnknownExportFormat;

    fn from_str(s: &str) -> Result<ExportFormat, UnknownExportFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(ExportFormat::Csv),
            "json" => Ok(ExportFormat::Json),
            "ndjson" | "jsonl" => Ok(ExportFormat::Ndjson),
            _ => Err(UnknownExportFormat(s.chars().take(32).collect())),
        }
    }
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
            ExportFormat::Ndjson => "ndjson",
        }
    }

    /// The HTTP content type of an export in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Json => "application/json",
            ExportFormat::Ndjson => "application/x-ndjson",
        }
    }
}

/// Refuses a range the export cannot use (a bound that is not RFC 3339, or start after end) with
/// [`super::AuditError::BadRange`], before anything of an export is written.
pub fn check_range(start: Option<&str>, end: Option<&str>) -> Result<(), super::AuditError> {
    super::timestamp::range(start, end).map(|_| ())
}

/// The CSV header: the contract's field names, in contract order.
const CSV_HEADER: [&str; 28] = AuditEvent::FIELDS;

/// Turns a stream of events into the pieces of one export document.
pub(crate) struct EventEncoder {
    format: ExportFormat,
    count: u64,
}

impl EventEncoder {
    pub(crate) fn new(format: ExportFormat) -> EventEncoder {
        EventEncoder { format, count: 0 }
    }

    pub(crate) fn begin(&self) -> String {
        match self.format {
            ExportFormat::Csv => csv_line(CSV_HEADER.iter().map(|h| h.to_string())),
            ExportFormat::Json => "[".to_owned(),
            ExportFormat::Ndjson => String::new(),
        }
    }

    pub(crate) fn event(&mut self, event: &AuditEvent) -> String {
        self.count += 1;
        match self.format {
            ExportFormat::Csv => csv_line(csv_cells(event)),
            ExportFormat::Json => {
                let separator = if self.count == 1 { "\n" } else { ",\n" };
                format!("{separator}{}", event_json(event))
            }
            ExportFormat::Ndjson => format!("{}\n", event_json(event)),
        }
    }

    pub(crate) fn end(&self) -> String {
        match self.format {
            ExportFormat::Csv | ExportFormat::Ndjson => String::new(),
            ExportFormat::Json if self.count == 0 => "]\n".to_owned(),
            ExportFormat::Json => "\n]\n".to_owned(),
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }
}

fn event_json(event: &AuditEvent) -> String {
    // An AuditEvent holds only strings, integers and JSON values, which always serialise.
    serde_json::to_string(event).unwrap_or_default()
}

fn csv_cells(e: &AuditEvent) -> Vec<String> {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let int = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    vec![
        e.id.clone(),
        e.chain_id.clone(),
        e.seq.to_string(),
        e.timestamp.clone(),
        e.event_type.clone(),
        text(&e.agent_id),
        text(&e.session_id),
        text(&e.tenant_id),
        text(&e.workflow_id),
        text(&e.requester_id),
        text(&e.tool_name),
        text(&e.mcp_server),
        text(&e.action),
        text(&e.target),
        text(&e.input_hash),
        text(&e.policy_result),
        text(&e.policy_id),
        text(&e.policy_reason),
        text(&e.behavioral_score),
        e.dlp_findings.to_string(),
        text(&e.dlp_action),
        int(e.response_code),
        int(e.latency_us),
        text(&e.error),
        text(&e.trace_id),
        e.extra.to_string(),
        e.previous_hash.clone(),
        e.event_hash.clone(),
    ]
}

/// One RFC 4180 line (CRLF-terminated).
fn csv_line(cells: impl IntoIterator<Item = String>) -> String {
    let mut line = String::new();
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&csv_cell(&cell));
    }
    line.push_str("\r\n");
    line
}

/// A cell guarded against formula injection, then quoted when needed.
///
/// Spreadsheets run a cell that starts with `=`, `+`, `-`, `@`, TAB or CR as a formula; agent-controlled text
/// (tool names, targets, error messages) must not become one, so such a cell is prefixed with `'`. A spreadsheet
/// opening the file with another separator (`;` in many locales, TAB) would split an unquoted cell there and
/// start a new cell, perhaps with a formula character: every cell holding a `,`, `;`, TAB, quote, CR or LF is
/// therefore quoted, and a quoted cell is never split.
fn csv_cell(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if guarded.contains([',', ';', '\t', '"', '\r', '\n']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// Passes bytes on to `inner` while hashing them (SHA-256), so an export's digest costs no second pass.
pub struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W> HashingWriter<W> {
    pub fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: sha2::Digest::new(),
        }
    }

    /// The lowercase hex SHA-256 of everything written, and the inner writer.
    pub fn finish(self) -> (String, W) {
        (hex::encode(sha2::Digest::finalize(self.hasher)), self.inner)
    }
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for HashingWriter<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let poll = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &poll {
            sha2::Digest::update(&mut this.hasher, &buf[..*n]);
        }
        poll
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The companion of an export for auditors: what was exported, the SHA-256 of the exact bytes, and the
/// newest signed head checkpoint of every chain (verify the export against them offline).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub events: u64,
    pub sha256: String,
    pub checkpoints: Vec<super::checkpoint::SignedCheckpoint>,
}

impl Manifest {
    /// The manifest of an export of `events` events whose bytes hash to `sha256`, with the store's newest
    /// trusted checkpoints.
    pub async fn build(
        store: &super::AuditStore,
        format: ExportFormat,
        start: Option<&str>,
        end: Option<&str>,
        events: u64,
        sha256: String,
    ) -> Result<Manifest, super::AuditError> {
        let mut checkpoints = Vec::new();
        for chain in store.chains().await? {
            if let Some(signed) = store.newest_signed_checkpoint(&chain).await? {
                checkpoints.push(signed);
            }
        }
        Ok(Manifest {
            format: format.name().to_owned(),
            start: start.map(str::to_owned),
            end: end.map(str::to_owned),
            events,
            sha256,
            checkpoints,
        })
    }

    /// Renders the export once more into a hash only (no bytes kept) and builds its manifest. The export is
    /// reproducible, and so is its hash, when `end` lies in the past.
    pub async fn compute(
        store: &super::AuditStore,
        format: ExportFormat,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<Manifest, super::AuditError> {
        let mut out = HashingWriter::new(tokio::io::sink());
        let events = store.export(format, start, end, &mut out).await?;
        let (sha256, _) = out.finish();
        Manifest::build(store, format, start, end, events, sha256).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_prefixed() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("\tx"), "\"'\tx\"");
        assert_eq!(csv_cell("\rx"), "\"'\rx\"");
        assert_eq!(csv_cell("read_file"), "read_file");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
    }

    #[test]
    fn a_cell_is_never_split_into_a_formula_cell_at_another_separator() {
        for value in [
            "a;=HYPERLINK(\"http://x\")",
            "a;+1",
            "x;-2;@SUM(A1)",
            "a\t=1+1",
            "a;\t=1",
        ] {
            let cell = csv_cell(value);
            assert!(
                cell.starts_with('"') && cell.ends_with('"'),
                "{value:?} -> {cell:?} is not quoted"
            );
        }
        assert_eq!(csv_cell("a;=1+1"), "\"a;=1+1\"");
        assert_eq!(csv_cell("=1;2"), "\"'=1;2\"");
        // A whole line: the separators inside values stay inside their quoted cells.
        let line = csv_line(["ok".to_owned(), "b;=cmd|' /C calc'!A0".to_owned()]);
        assert_eq!(line, "ok,\"b;=cmd|' /C calc'!A0\"\r\n");
    }

    #[test]
    fn a_bad_range_is_refused_before_exporting() {
        assert!(check_range(None, None).is_ok());
        assert!(check_range(Some("2026-01-01T00:00:00Z"), Some("2026-01-02T00:00:00Z")).is_ok());
        for (start, end) in [
            (Some("yesterday"), None),
            (None, Some("2026-13-01")),
            (Some("2026-01-02T00:00:00Z"), Some("2026-01-01T00:00:00Z")),
        ] {
            assert!(matches!(
                check_range(start, end),
                Err(crate::audit::AuditError::BadRange(_))
            ));
        }
    }

    #[test]
    fn formats_parse() {
        assert_eq!("CSV".parse::<ExportFormat>().unwrap(), ExportFormat::Csv);
        assert_eq!("json".parse::<ExportFormat>().unwrap(), ExportFormat::Json);
        assert_eq!(
            "ndjson".parse::<ExportFormat>().unwrap(),
            ExportFormat::Ndjson
        );
        assert!("xml".parse::<ExportFormat>().is_err());
    }
}
