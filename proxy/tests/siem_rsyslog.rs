//! Debian's rsyslog as a real syslog receiver: toolgate's `syslog` sink (RFC 5424 over TCP with octet counting)
//! and its `cef` sink deliver to an rsyslogd the test starts on a loopback port, and rsyslog's own parser must
//! find every header field where RFC 5424 puts it and every event's JSON intact. Skipped with a notice when
//! rsyslogd is not installed (`scripts/install-test-deps.sh`), unless `TOOLGATE_REQUIRE_RSYSLOG=1`.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, start, token, Agent, Options};
use serde_json::{json, Value};

fn rsyslogd() -> Option<String> {
    ["rsyslogd", "/usr/sbin/rsyslogd"]
        .into_iter()
        .find(|bin| {
            Command::new(bin)
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(str::to_owned)
}

/// An rsyslogd of the test's own, killed when dropped.
struct Rsyslog(Child);

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_parses_what_the_syslog_and_cef_sinks_send() {
    let Some(bin) = rsyslogd() else {
        assert!(
            std::env::var("TOOLGATE_REQUIRE_RSYSLOG").as_deref() != Ok("1"),
            "rsyslogd is not installed and TOOLGATE_REQUIRE_RSYSLOG=1 (run scripts/install-test-deps.sh)"
        );
        eprintln!("skipped: rsyslogd not found (run scripts/install-test-deps.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("received.log");
    // One line per message: rsyslog's parsed RFC 5424 fields, `|`-separated, then MSG.
    let conf = format!(
        r#"global(workDirectory="{work}")
module(load="imtcp")
template(name="fields" type="string" string="%pri%|%protocol-version%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="toolgate")
ruleset(name="toolgate") {{
  action(type="omfile" file="{out}" template="fields")
}}
"#,
        work = dir.path().display(),
        out = out.display(),
    );
    let conf_path = dir.path().join("rsyslog.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let _rsyslog = Rsyslog(
        Command::new(&bin)
            .args(["-n", "-f"])
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path().join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;

    let sinks = format!(
        "[[siem]]\nname = \"rsyslog\"\nkind = \"syslog\"\nurl = \"tcp://127.0.0.1:{port}\"\npoll_ms = 100\nbackoff_initial_ms = 50\nbackoff_max_seconds = 1\n\
         [[siem]]\nname = \"rsyslog-cef\"\nkind = \"cef\"\nurl = \"tcp://127.0.0.1:{port}\"\nfacility = 16\npoll_ms = 100\nbackoff_initial_ms = 50\nbackoff_max_seconds = 1\n"
    );
    let proxy = start(Options {
        extra_toml: sinks,
        ..Default::default()
    })
    .await;
    let mut agent = Agent::new(&proxy, "demo", token("agent-r", &["dev"]));
    for i in 0..3 {
        agent
            .call_stateless("echo", json!({ "text": format!("line {i}\nwith a break") }))
            .await;
    }
    agent
        .call_stateless("run_shell", json!({ "command": "id" }))
        .await;

    let lines = eventually(Duration::from_secs(30), || async {
        let events = proxy_events(&proxy).await;
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let syslog_hashes: Vec<String> = lines
            .iter()
            .filter(|l| l.split('|').nth(4) == Some("toolgate") && !l.contains("CEF:0"))
            .filter_map(|l| {
                let msg: Value =
                    serde_json::from_str(l.splitn(9, '|').nth(8)?.trim_start()).ok()?;
                msg["event_hash"].as_str().map(str::to_owned)
            })
            .collect();
        let cef = lines
            .iter()
            .filter(|l| l.contains("CEF:0|toolgate|toolgate|"))
            .count();
        (!events.is_empty()
            && events
                .iter()
                .all(|e| syslog_hashes.contains(&e["event_hash"].as_str().unwrap().to_owned()))
            && cef >= events.len())
        .then_some(lines)
    })
    .await;
    let events: HashMap<String, Value> = proxy_events(&proxy)
        .await
        .into_iter()
        .map(|e| (e["event_hash"].as_str().unwrap().to_owned(), e))
        .collect();
    for line in lines.iter().filter(|l| !l.contains("CEF:0")) {
        let f: Vec<&str> = line.splitn(9, '|').collect();
        let msg: Value = serde_json::from_str(f[8].trim_start()).unwrap();
        let event = &events[msg["event_hash"].as_str().unwrap()];
        assert_eq!(&msg, event, "the event JSON arrives intact");
        assert_eq!(f[1], "1", "RFC 5424 version");
        assert_eq!(f[4], "toolgate", "APP-NAME");
        assert!(f[5].parse::<u32>().is_ok(), "PROCID {}", f[5]);
        assert_eq!(f[6], event["event_type"], "MSGID");
        assert_eq!(f[7], "-", "no structured data");
        let facility = f[0].parse::<u16>().unwrap() / 8;
        assert_eq!(facility, 13, "log audit");
        // rsyslog re-renders the timestamp; the same instant to the second.
        assert_eq!(&f[2][..19], &event["timestamp"].as_str().unwrap()[..19]);
    }
    let cef: Vec<&String> = lines.iter().filter(|l| l.contains("CEF:0")).collect();
    assert!(cef
        .iter()
        .all(|l| l.starts_with(&format!("{}|", 16 * 8 + 6))
            || l.starts_with(&format!("{}|", 16 * 8 + 4))
            || l.starts_with(&format!("{}|", 16 * 8 + 3))));
    for hash in events.keys() {
        assert!(
            cef.iter()
                .any(|l| l.contains(&format!("externalId={hash} "))),
            "a CEF record for {hash}"
        );
    }
    proxy.stop().await;
}

async fn proxy_events(proxy: &common::Proxy) -> Vec<Value> {
    let store = proxy.app.audit.store();
    let mut all = Vec::new();
    for (chain, head) in store.chain_heads().await.unwrap() {
        for e in store
            .chain_events(&chain, 0, head, &Default::default(), 100_000)
            .await
            .unwrap()
        {
            all.push(serde_json::to_value(e).unwrap());
        }
    }
    all
}
