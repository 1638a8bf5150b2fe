//! nginx as a bare reverse-proxy hop in front of the mock upstream: the reference for what one HTTP hop that
//! does nothing but forward costs on this machine, measured in the same run as direct and toolgate.
//!
//! The bench writes its own config into a scratch folder and runs nginx there as the current user
//! (`nginx -c CONF -p PREFIX -e ERRLOG -g 'daemon off;'`): pid file, error log and temp paths all inside the
//! folder, nothing of the system's nginx is used or touched. `access_log off` (toolgate logs to a file, but an
//! access log is not what nginx would be deployed for here), HTTP/1.1 keep-alive to the upstream (as toolgate's
//! pooled client), `worker_processes auto` (one per CPU, as toolgate's tokio runtime has one worker thread per
//! CPU), request and response buffering on (nginx's default, and what a plain `proxy_pass` deployment runs).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::procs::{self, Proc};

/// The worker count the config asks for, as written into the report.
pub const WORKER_PROCESSES: &str = "auto";

/// The nginx binary: on the PATH, or where Debian puts it (`/usr/sbin`, not on a normal user's PATH).
pub fn find() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        [
            "/usr/sbin/nginx",
            "/usr/local/sbin/nginx",
            "/usr/local/nginx/sbin/nginx",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    })
}

/// `nginx -v`'s answer (`nginx version: nginx/1.22.1`), for the report.
pub fn version(binary: &Path) -> String {
    Command::new(binary)
        .arg("-v")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default()
}

/// The whole config: one server on `listen`, `proxy_pass` to `upstream`, everything writable under `prefix`.
fn config(prefix: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let p = prefix.display();
    format!(
        r#"worker_processes {WORKER_PROCESSES};
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
    upstream mock {{
        server {upstream};
        keepalive 256;
        keepalive_requests 1000000;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    )
}

/// Starts nginx in `dir` in front of `upstream` on a free loopback port; returns once it accepts connections.
pub fn start(binary: &Path, dir: &Path, upstream: SocketAddr) -> anyhow::Result<Proc> {
    let listen = SocketAddr::from(([127, 0, 0, 1], procs::free_port()?));
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, listen, upstream)).context("writing nginx.conf")?;
    let log = dir.join("stderr.log");
    let out = std::fs::File::create(&log)?;
    let child = Command::new(binary)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        // Before it reads the config nginx opens its compiled-in error log; -e keeps even that in `dir`.
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
