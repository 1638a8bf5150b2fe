//! The bodies of `toolgate audit verify` and `toolgate audit export`; argument parsing lives in the CLI module.
//! Long runs show a progress line on stderr when stderr is a terminal (never in pipes, logs or CI).

use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt;

use super::checkpoint::read_file;
use super::export::{HashingWriter, Manifest};
use super::{AuditSettings, AuditStore, ExportFormat};

async fn connect(settings: &AuditSettings) -> anyhow::Result<AuditStore> {
    let trusted = settings.trusted_keys()?;
    if trusted.is_empty() {
        eprintln!(
            "toolgate: warning: no trusted checkpoint key (no {} and no audit.trusted_public_keys): checkpoints are ignored, a cut tail goes unnoticed",
            settings.signing_key_path().display()
        );
    }
    Ok(AuditStore::connect(&settings.database_url)
        .await?
        .with_trusted_keys(trusted))
}

/// Recomputes the chains (against the stored checkpoints and, when given, a checkpoint file kept outside the
/// database) and prints the verify JSON on stdout. `Ok(false)` means a chain is broken.
pub async fn verify_command(
    settings: &AuditSettings,
    start: Option<&str>,
    end: Option<&str>,
    checkpoint: Option<&Path>,
) -> anyhow::Result<bool> {
    let store = connect(settings).await?;
    let external = checkpoint.map(read_file).transpose()?;
    let progress = Progress::start(&store, "verified");
    let result = store.verify_against(start, end, external.as_slice()).await;
    progress.finish();
    let result = result?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(result.chain_intact)
}

/// Streams an export to `output`, or to stdout when none is given; with `manifest`, also writes the export's
/// manifest (SHA-256 of the exact bytes written, newest signed checkpoints) to that file.
pub async fn export_command(
    settings: &AuditSettings,
    format: ExportFormat,
    start: Option<&str>,
    end: Option<&str>,
    output: Option<&Path>,
    manifest: Option<&Path>,
) -> anyhow::Result<()> {
    let store = connect(settings).await?;
    let progress = Progress::start(&store, "exported");
    let (events, sha256) = match output {
        Some(path) => {
            let file = tokio::fs::File::create(path)
                .await
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = HashingWriter::new(tokio::io::BufWriter::new(file));
            let events = store.export(format, start, end, &mut out).await?;
            out.flush()
                .await
                .with_context(|| format!("cannot write {}", path.display()))?;
            let (sha256, out) = out.finish();
            out.into_inner()
                .sync_all()
                .await
                .with_context(|| format!("cannot write {}", path.display()))?;
            (events, sha256)
        }
        None => {
            let mut out = HashingWriter::new(tokio::io::BufWriter::new(tokio::io::stdout()));
            let events = store.export(format, start, end, &mut out).await?;
            out.flush().await.context("cannot write to stdout")?;
            let (sha256, _) = out.finish();
            (events, sha256)
        }
    };
    progress.finish();
    if let Some(path) = manifest {
        let manifest = Manifest::build(&store, format, start, end, events, sha256).await?;
        let text = serde_json::to_string_pretty(&manifest)?;
        tokio::fs::write(path, format!("{text}\n"))
            .await
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// A spinner with the number of events read, redrawn from the store's counter; inert unless stderr is a TTY.
struct Progress {
    task: Option<(tokio::task::JoinHandle<()>, indicatif::ProgressBar)>,
}

impl Progress {
    fn start(store: &AuditStore, verb: &'static str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { task: None };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {{pos}} events {verb} ({{per_sec}}, {{elapsed}})"
        )) {
            bar.set_style(style);
        }
        let counter = store.progress();
        let base = counter.load(Ordering::Relaxed);
        let shown = bar.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                shown.set_position(counter.load(Ordering::Relaxed).saturating_sub(base));
                shown.tick();
            }
        });
        Progress {
            task: Some((task, bar)),
        }
    }

    fn finish(self) {
        if let Some((task, bar)) = self.task {
            task.abort();
            bar.finish_and_clear();
        }
    }
}
