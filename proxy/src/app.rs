//! The running proxy's shared state, built once at start from a validated [`Config`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use toolgate_engine::dlp::Scanner;
use toolgate_engine::policy::Evaluator;

use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::escalation::Escalations;
use crate::mcp::http::HttpUpstream;
use crate::mcp::session::SessionStore;
use crate::mcp::stdio::StdioUpstream;
use crate::mcp::upstream::Upstream;
use crate::telemetry::Metrics;

/// Everything a request needs, shared by all connections.
pub struct App {
    pub config: Config,
    pub auth: Arc<Authenticator>,
    pub sessions: SessionStore,
    pub upstreams: HashMap<String, Upstream>,
    /// The serving policy set and its reloads.
    pub policies: Arc<crate::policy_reload::Policies>,
    pub scanner: Scanner,
    pub audit: AuditLog,
    pub metrics: Arc<Metrics>,
    pub escalations: Escalations,
    /// Tool definitions seen in `tools/list` answers, pinned against rug pulls (shared with the stdio children,
    /// whose `notifications/tools/list_changed` unverifies them).
    pub tools: Arc<crate::tools::ToolPins>,
    /// Agents seen, and the kill switch.
    pub agents: crate::agents::Agents,
    /// Behavioural and operational alerts.
    pub alerts: Arc<crate::alerts::Alerts>,
    /// Per-agent baselines, scores and prompt pins.
    pub behaviour: Arc<crate::behaviour::Behaviour>,
    /// The admin API's tokens: every tenant, or one tenant each.
    pub admin_tokens: crate::config::admin_tokens::AdminTokens,
    /// Agent runs, their calls counted in memory, and their timeout.
    pub runs: Arc<crate::runs::Runs>,
    /// The SIEM sinks and their delivery tasks.
    pub siem: Arc<crate::siem::Siem>,
    /// Changes committed by any instance sharing the database, for the caches above.
    pub bus: crate::shared_state::Bus,
}

impl App {
    /// Builds the proxy: policies compiled and smoke-evaluated, the audit log opened (its chain head loaded),
    /// stdio children started and handshaken. Any failure here stops start-up with a clear error.
    pub async fn start(config: Config) -> anyhow::Result<Arc<App>> {
        Self::start_with(config, crate::outbound::client()).await
    }

    /// [`App::start`] with the one outbound client `serve` built (and gave the OTLP exporter too).
    pub async fn start_with(
        config: Config,
        client: crate::outbound::HttpClient,
    ) -> anyhow::Result<Arc<App>> {
        config.validate_for_serve()?;
        let admin_tokens = crate::config::admin_tokens::AdminTokens::new(&config.admin);
        let metrics = Arc::new(Metrics::new(config.telemetry.metrics_max_agents));
        let auth = Arc::new(Authenticator::new(&config.auth).context("agent authentication")?);
        if let Some(url) = &config.auth.jwks_url {
            crate::auth::start_jwks_refresh(
                auth.clone(),
                url.clone(),
                Duration::from_secs(config.auth.jwks_refresh_seconds),
            )
            .await
            .context("fetching the JWKS")?;
        }
        let policies = crate::policy_reload::Policies::load(&config.policy.dir, metrics.clone())
            .map_err(|e| {
                anyhow::anyhow!("loading policies from {}: {e}", config.policy.dir.display())
            })?;
        let audit = AuditLog::open_with(&config.audit, metrics.audit(), client.clone())
            .await
            .context("opening the audit log")?;
        // Listening before the caches load: a change committed between a cache's load and the first
        // notification is then never missed.
        let bus = crate::shared_state::Bus::new();
        bus.listen(audit.store())
            .await
            .context("listening for the changes of other instances")?;
        let tools = crate::tools::ToolPins::load(
            audit.store().clone(),
            config.tools.pinning,
            metrics.tool_definitions.clone(),
        )
        .await
        .map(Arc::new)
        .context("loading the pinned tool definitions")?;
        let agents = crate::agents::Agents::load(audit.store().clone(), &config.agents.disabled)
            .await
            .context("loading the disabled agents")?;
        let alerts = crate::alerts::Alerts::load(
            audit.store().clone(),
            audit.clone(),
            metrics.alerts.clone(),
            metrics.audit_write_failures.clone(),
        )
        .await
        .map(Arc::new)
        .context("loading the open alerts")?;
        let behaviour = crate::behaviour::Behaviour::load(
            &config.behavior,
            audit.store().clone(),
            alerts.clone(),
            Arc::new(crate::behaviour::SystemClock),
        )
        .await
        .map(Arc::new)
        .context("loading the behaviour baselines")?;
        let mut upstreams = HashMap::new();
        for u in &config.upstreams {
            let upstream = match (&u.url, &u.command) {
                (Some(_), _) => {
                    let client = match &u.ca_file {
                        Some(ca) => crate::outbound::client_trusting(Some(ca))?,
                        None => client.clone(),
                    };
                    Upstream::Http(HttpUpstream::new(u, client)?)
                }
                (None, Some(command)) => {
                    let command = resolve_self(command);
                    let env: Vec<(String, String)> =
                        u.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    let child = StdioUpstream::start(&u.name, &command, &env, u.timeout())
                        .await
                        .with_context(|| format!("starting upstream {}", u.name))?;
                    let (pins, name) = (tools.clone(), u.name.clone());
                    child.on_tools_changed(move || {
                        let marked = pins.list_changed(&name);
                        tracing::info!(upstream = %name, marked, "tool definitions unverified until listed again");
                    });
                    Upstream::Stdio(child)
                }
                (None, None) => unreachable!("validated: url or command"),
            };
            upstreams.insert(u.name.clone(), upstream);
        }
        // One instance (SQLite) keeps its sessions in memory; instances sharing PostgreSQL share them.
        let sessions = if audit.store().is_shared() {
            SessionStore::shared(
                config.session.max_sessions,
                config.session.max_sessions_per_agent,
                config.session.idle_timeout(),
                crate::mcp::session::shared::Bindings::new(
                    audit.store().clone(),
                    audit.chain_id().to_owned(),
                    config.session.idle_timeout(),
                ),
            )
        } else {
            SessionStore::new(
                config.session.max_sessions,
                config.session.max_sessions_per_agent,
                config.session.idle_timeout(),
            )
        };
        let escalations = Escalations::load(
            audit.store().clone(),
            metrics.escalations_pending.clone(),
            &config.escalation,
        )
        .await
        .context("loading the escalations")?;
        // Settled escalations are kept as long as the events that record them, and at least as long as an
        // approval's answer waits for its retry.
        let keep_settled = (config.audit.retention_days > 0).then(|| {
            Duration::from_secs(u64::from(config.audit.retention_days) * 86_400)
                .max(Duration::from_secs(config.escalation.answer_ttl_seconds))
        });
        escalations.start_with(audit.clone(), keep_settled, &bus);
        let runs = Arc::new(crate::runs::Runs::new(
            audit.store().clone(),
            audit.clone(),
            metrics.clone(),
            alerts.clone(),
            &config.runs,
        ));
        crate::runs::start(&runs, &bus);
        let siem = crate::siem::Siem::start(&config.siem, &audit, &client, metrics.siem.clone())
            .context("starting the SIEM sinks")?;
        let app = Arc::new(App {
            auth,
            sessions,
            upstreams,
            policies,
            scanner: Scanner::new(),
            audit,
            metrics,
            escalations,
            tools,
            agents,
            alerts,
            behaviour,
            runs,
            admin_tokens,
            siem,
            config,
            bus,
        });
        app.policies.start();
        crate::agents::start(&app);
        if app.bus.is_listening() {
            crate::tools::follow(&app.tools, &app.bus);
            crate::behaviour::follow(&app.behaviour, &app.bus);
            tokio::spawn(follow_sessions(Arc::downgrade(&app), app.bus.subscribe()));
            // Whatever changed between a cache's load above and its subscription just now is read once more.
            app.bus.publish(crate::shared_state::Change::Resync);
            // Subscribed after that Resync: the policies were loaded from the folder just now.
            crate::policy_reload::follow(
                &app.policies,
                &app.bus,
                app.config.audit.effective_chain_id(),
            );
        }
        crate::alerts::start(&app.alerts, &app.bus);
        crate::behaviour::start(&app.behaviour);
        Ok(app)
    }

    /// The configuration of upstream `name` (workdir, timeout, …).
    pub fn upstream_settings(&self, name: &str) -> Option<&crate::config::UpstreamSettings> {
        self.config.upstreams.iter().find(|u| u.name == name)
    }

    /// The directory relative tool paths of upstream `name` are resolved against.
    pub fn workdir(&self, name: &str) -> &str {
        self.upstream_settings(name)
            .map(|u| u.workdir.as_str())
            .unwrap_or("/")
    }

    /// Runs `f` on this worker thread's own warm evaluator of the serving policy set.
    pub fn with_evaluator<T>(&self, f: impl FnOnce(&mut Evaluator) -> T) -> T {
        self.policies.with_evaluator(f)
    }
}

impl crate::agents::Host for App {
    fn agents(&self) -> &crate::agents::Agents {
        &self.agents
    }
    fn sessions(&self) -> &SessionStore {
        &self.sessions
    }
    fn audit(&self) -> &AuditLog {
        &self.audit
    }
    fn bus(&self) -> &crate::shared_state::Bus {
        &self.bus
    }
}

/// Forgets the cached sessions other instances ended (or every cached one when changes may have been missed:
/// they are read again on their next use). Ends with the app.
async fn follow_sessions(
    app: std::sync::Weak<App>,
    mut changes: crate::shared_state::Subscription,
) {
    while let Some(change) = changes.next().await {
        let Some(app) = app.upgrade() else { return };
        match change {
            crate::shared_state::Change::SessionEnded(hash) => app.sessions.forget(Some(&hash)),
            crate::shared_state::Change::Resync => app.sessions.forget(None),
            _ => {}
        }
    }
}

/// `command = ["toolgate", …]` means this very binary, so the default config works wherever toolgate is
/// installed (or run from `target/`) without a PATH entry.
fn resolve_self(command: &[String]) -> Vec<String> {
    let mut command = command.to_vec();
    if command.first().map(String::as_str) == Some("toolgate") {
        if let Ok(exe) = std::env::current_exe() {
            command[0] = exe.to_string_lossy().into_owned();
        }
    }
    command
}
