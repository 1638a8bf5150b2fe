//! The bodies of `toolgate audit verify` and `toolgate audit export`; argument parsing lives in the CLI module.

use std::path::Path;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt;

use super::{AuditStore, ExportFormat};

/// Recomputes the chains and prints the verify JSON on stdout. `Ok(false)` means a chain is broken.
pub async fn verify_command(
    database_url: &str,
    start: Option<&str>,
    end: Option<&str>,
) -> anyhow::Result<bool> {
    let store = AuditStore::connect(database_url).await?;
    let result = store.verify(start, end).await?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(result.chain_intact)
}

/// Streams an export to `output`, or to stdout when none is given.
pub async fn export_command(
    database_url: &str,
    format: ExportFormat,
    start: Option<&str>,
    end: Option<&str>,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let store = AuditStore::connect(database_url).await?;
    match output {
        Some(path) => {
            let file = tokio::fs::File::create(path)
                .await
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = tokio::io::BufWriter::new(file);
            store.export(format, start, end, &mut out).await?;
            out.flush()
                .await
                .with_context(|| format!("cannot write {}", path.display()))?;
            out.into_inner()
                .sync_all()
                .await
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            let mut out = tokio::io::BufWriter::new(tokio::io::stdout());
            store.export(format, start, end, &mut out).await?;
            out.flush().await.context("cannot write to stdout")?;
        }
    }
    Ok(())
}
