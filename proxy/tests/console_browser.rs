//! The web console at `/ui/`: its HTTP answers, and the whole console driven in Debian's headless Chromium
//! against the real server.
//!
//! The browser half runs `proxy/tests/console/console.spec.mjs` (playwright-core with `/usr/bin/chromium`, both
//! installed by `proxy/tests/console/setup.sh`) and answers its requests on stdin: the script signs in, watches
//! agent calls arrive in the live feed, approves an escalation, disables an agent, asks this side to break the
//! policy folder (and mend it) around a reload, and to tamper with one audit row before it runs Verify chain
//! again. Screenshots of each page go to
//! `target/ui-screenshots/`. Without Chromium or playwright-core the browser tests print a skip notice and
//! pass, unless `TOOLGATE_REQUIRE_BROWSER_TESTS=1` (CI), where they fail.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{send, start, token, Options, ADMIN};
use hyper::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// The browser script's whole run: Chromium's start, about forty page steps, a dozen agent calls.
const SCRIPT_LIMIT: Duration = Duration::from_secs(180);
const CHROMIUM: &str = "/usr/bin/chromium";

fn console_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

/// `target/ui-screenshots`, in the target folder this test was built in.
fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("ui-screenshots")
}

fn node_runs() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `needs` are installed; otherwise a skip notice (false), or a failure under `require`.
fn present(needs: &[(&str, bool)], require: &str) -> bool {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(w, _)| *w)
        .collect();
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(", ");
    if std::env::var(require).as_deref() == Ok("1") {
        panic!("{require}=1 but not installed: {what}; run proxy/tests/console/setup.sh");
    }
    // Straight to stderr, not eprintln!: the test harness captures the print macros of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: console browser test: not installed: {what}; run proxy/tests/console/setup.sh to include it"
    );
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_a_strict_content_security_policy() {
    let proxy = start(Options::default()).await;
    let page = send(Method::GET, &proxy.url("/ui/"), &[], "").await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "the page itself needs no token"
    );
    assert_eq!(
        page.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert_eq!(
        page.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        page.header("referrer-policy").as_deref(),
        Some("no-referrer")
    );

    // Every file the page names is served, with its type, an ETag and the same policy.
    let html = String::from_utf8_lossy(&page.body).into_owned();
    let mut named: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css") || s.ends_with(".svg"))
        .filter(|s| !s.contains('/'))
        .collect();
    named.dedup();
    assert!(
        named.contains(&"app.js") && named.contains(&"console.css"),
        "{named:?}"
    );
    for name in named {
        let asset = send(Method::GET, &proxy.url(&format!("/ui/{name}")), &[], "").await;
        assert_eq!(asset.status, StatusCode::OK, "{name}");
        assert!(asset.header("etag").is_some(), "{name}");
        assert!(asset.header("content-security-policy").is_some(), "{name}");
        let ct = asset.header("content-type").unwrap();
        let expected = match name.rsplit('.').next() {
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            _ => "image/svg+xml",
        };
        assert!(ct.starts_with(expected), "{name}: {ct}");
    }
    // app.js imports the other modules by relative path: each must be served too.
    let app = send(Method::GET, &proxy.url("/ui/app.js"), &[], "").await;
    let app = String::from_utf8_lossy(&app.body).into_owned();
    for import in app.split("from './").skip(1) {
        let name = &import[..import.find('\'').unwrap()];
        let module = send(Method::GET, &proxy.url(&format!("/ui/{name}")), &[], "").await;
        assert_eq!(module.status, StatusCode::OK, "{name}");
    }

    let bare = send(Method::GET, &proxy.url("/ui"), &[], "").await;
    assert_eq!(bare.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(bare.header("location").as_deref(), Some("/ui/"));
    for path in [
        "/ui/missing.js",
        "/ui/%2e%2e/Cargo.toml",
        "/ui/..%2fCargo.toml",
    ] {
        let r = send(Method::GET, &proxy.url(path), &[], "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(r.header("content-security-policy").is_some(), "{path}");
    }
    let post = send(Method::POST, &proxy.url("/ui/"), &[], "").await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    proxy.stop().await;
}

/// The console's SSE parser against the wire format's corners (needs node only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_parses_the_sse_wire_format() {
    if !present(&[("node", node_runs())], "TOOLGATE_REQUIRE_BROWSER_TESTS") {
        return;
    }
    let out = Command::new("node")
        .arg(console_dir().join("sse_parser.mjs"))
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("checks passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let needs = [
        ("node", node_runs()),
        (CHROMIUM, Path::new(CHROMIUM).exists()),
        (
            "playwright-core in proxy/tests/console/node_modules",
            console_dir()
                .join("node_modules/playwright-core/package.json")
                .exists(),
        ),
    ];
    if !present(&needs, "TOOLGATE_REQUIRE_BROWSER_TESTS") {
        return;
    }
    // The shipped policies: reads under /workspace pass, /etc/passwd is denied, writes are escalated; the
    // reviewer's answer applies to the agent's identical retry (no hold).
    let policies = tempfile::tempdir().unwrap();
    common::copy_dir(&common::repo_root().join("policies"), policies.path());
    let tenant_token_file = policies.path().join("t1.admin-token");
    std::fs::write(&tenant_token_file, TENANT_ADMIN).unwrap();
    let proxy = start(Options {
        policy_dir: Some(policies.path().to_owned()),
        extra_toml: format!(
            "[[admin.tenant_tokens]]\ntenant = \"t1\"\ntoken_file = \"{}\"\n",
            tenant_token_file.display()
        ),
        ..Default::default()
    })
    .await;
    let tenant_agent = toolgate::auth::mint_hs256(
        &toolgate::auth::AuthSettings {
            hs256_secret: Some(common::SECRET.into()),
            ..Default::default()
        },
        "tenant-agent",
        Some("t1"),
        &[],
        Duration::from_secs(3600),
    )
    .unwrap();
    let broken = policies.path().join("toolgate/console_broken.rego");
    let tokens = json!({
        "reader": token("reader", &[]),
        "writer": token("writer", &[]),
        "victim": token("victim", &[]),
        "hostile": token("hostile", &[]),
        "tenant": tenant_agent,
    });
    let shots = screenshot_dir();
    let mut child = Command::new("node")
        .arg(console_dir().join("console.spec.mjs"))
        .current_dir(console_dir())
        .env("TOOLGATE_URL", format!("http://{}", proxy.addr))
        .env("TOOLGATE_ADMIN_TOKEN", ADMIN)
        .env("TOOLGATE_TENANT_ADMIN_TOKEN", TENANT_ADMIN)
        .env("TOOLGATE_AGENT_TOKENS", tokens.to_string())
        .env("SCREENSHOT_DIR", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    let mut steps = Vec::new();
    let mut tampered = None;
    let mut done = false;
    let run = async {
        while let Some(line) = stdout.next_line().await.expect("script output") {
            if let Some(event_id) = line.strip_prefix("TAMPER ") {
                tamper(&proxy, event_id).await;
                tampered = Some(event_id.to_owned());
                stdin.write_all(b"TAMPERED\n").await.unwrap();
                stdin.flush().await.unwrap();
            } else if line == "BREAK_POLICY" || line == "FIX_POLICY" {
                if line == "BREAK_POLICY" {
                    std::fs::write(&broken, BROKEN_REGO).unwrap();
                } else {
                    std::fs::remove_file(&broken).unwrap();
                }
                stdin.write_all(b"OK\n").await.unwrap();
                stdin.flush().await.unwrap();
            } else if line.starts_with("SKIP ") {
                let _ = writeln!(std::io::stderr(), "console browser test: {line}");
            } else if line == "DONE" {
                done = true;
            }
            steps.push(line);
        }
        child.wait().await.expect("script exits")
    };
    let status = tokio::time::timeout(SCRIPT_LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("the browser script did not finish within {SCRIPT_LIMIT:?}"));
    let errors = errors.await.unwrap();
    assert!(
        status.success() && done,
        "the browser script failed ({status}) after:\n{}\n{errors}",
        steps.join("\n")
    );

    // What the script reported is what happened here too.
    let tampered = tampered.expect("the script asked for the tamper step");
    let verify = send(
        Method::GET,
        &proxy.url("/api/v1/audit/verify"),
        &[("authorization", &format!("Bearer {ADMIN}"))],
        "",
    )
    .await
    .json();
    assert_eq!(verify["chain_intact"], false);
    assert_eq!(verify["first_bad_row"]["id"], tampered.as_str());
    for page in [
        "login",
        "overview",
        "feed",
        "event",
        "escalations",
        "agents",
        "runs",
        "policy",
        "policy-error",
        "tenant-event",
    ] {
        let file = shots.join(format!("{page}.png"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", file.display());
    }
    proxy.stop().await;
}

/// The admin token of tenant `t1`.
const TENANT_ADMIN: &str = "console-tenant-one-admin-token";

/// A module regorus refuses: the rule's body never closes (line 4).
const BROKEN_REGO: &str = "package toolgate.console_broken\n\nimport rego.v1\n\nbroken if {\n";

/// Changes one stored field of an event behind toolgate's back, as an attacker with database access would.
async fn tamper(proxy: &common::Proxy, event_id: &str) {
    let db = format!("sqlite://{}", proxy.dir.path().join("audit.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let changed =
        sqlx::query("UPDATE audit_events SET target = '/workspace/innocent.txt' WHERE id = ?")
            .bind(event_id)
            .execute(&pool)
            .await
            .unwrap()
            .rows_affected();
    pool.close().await;
    assert_eq!(changed, 1, "the event {event_id} is in the database");
}
