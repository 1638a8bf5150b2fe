//! nginx as the load balancer in front of several toolgate instances, configured as `deploy/replicas.sh` does
//! for stateless traffic: round robin over one upstream group shared by the workers (`zone`), HTTP/1.1
//! keep-alive to the instances, no buffering of streamed answers, and a response header naming the instance
//! that answered, so the load generator can keep each instance's latencies apart.
//!
//! Like [`crate::nginx`], it runs as the current user from a scratch folder (`-c CONF -p PREFIX -e ERRLOG`,
//! `daemon off`); nothing of the system's nginx is used.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::procs::{self, Proc};

/// The response header nginx adds with `$upstream_addr`, the instance that answered.
pub const ROUTE_HEADER: &str = "x-toolgate-replica";

/// How nginx picks an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Every request to the next instance: for stateless (2026-07-28) calls.
    RoundRobin,
    /// `hash $http_authorization consistent`: every request of one agent token to one instance, so 2025-era
    /// sessions, which live in the memory of the instance that opened them, keep working.
    Agent,
}

impl Balance {
    pub fn label(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round robin",
            Balance::Agent => "agent hash",
        }
    }

    fn directive(self) -> &'static str {
        match self {
            Balance::RoundRobin => "",
            Balance::Agent => "        hash $http_authorization consistent;\n",
        }
    }
}

fn config(prefix: &Path, listen: SocketAddr, instances: &[SocketAddr], balance: Balance) -> String {
    let p = prefix.display();
    let balance = balance.directive();
    let servers: String = instances
        .iter()
        .map(|a| format!("        server {a} max_fails=1 fail_timeout=5s;\n"))
        .collect();
    format!(
        r#"worker_processes auto;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    keepalive_requests 1000000;
    upstream toolgate {{
        zone toolgate_replicas 64k;
{balance}{servers}        keepalive 256;
        keepalive_requests 1000000;
        keepalive_timeout 50s;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://toolgate;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_next_upstream error timeout;
            add_header X-Toolgate-Replica $upstream_addr always;
        }}
    }}
}}
"#
    )
}

/// Starts nginx in `dir` in front of `instances`, balanced as `balance` says, on a free loopback port; returns
/// once it listens.
pub fn start(
    binary: &Path,
    dir: &Path,
    instances: &[SocketAddr],
    balance: Balance,
) -> anyhow::Result<Proc> {
    let listen = SocketAddr::from(([127, 0, 0, 1], procs::free_port()?));
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, listen, instances, balance)).context("writing nginx.conf")?;
    let log = dir.join("stderr.log");
    let out = std::fs::File::create(&log)?;
    let child = Command::new(binary)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut proc = Proc::new(child, listen, "nginx");
    procs::wait_listening(&mut proc, &log)?;
    Ok(proc)
}
