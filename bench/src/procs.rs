//! Child processes of a benchmark run: the mock upstream and the real `toolgate` release binary (nginx is in
//! [`crate::nginx`]), each on a loopback port, started, polled until ready (with a deadline) and stopped by their
//! own pid. Also what the run reads of them from `/proc`: resident size and CPU time.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a child may take to start answering.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// The HS256 secret the benchmark's toolgate trusts and its tokens are signed with.
pub const SECRET: &str = "toolgate-bench-secret-0123456789abcdef0123456789";

/// A child process that is stopped (SIGTERM, then SIGKILL after a grace period) when dropped.
pub struct Proc {
    child: Child,
    pub addr: SocketAddr,
    name: &'static str,
}

impl Proc {
    pub(crate) fn new(child: Child, addr: SocketAddr, name: &'static str) -> Proc {
        Proc { child, addr, name }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the process (all its threads) has used so far, in clock ticks; see [`cpu_ticks`].
    pub fn cpu_ticks(&self) -> anyhow::Result<u64> {
        cpu_ticks(self.pid()).with_context(|| format!("CPU time of {}", self.name))
    }

    /// Resident set size now and at its peak, in KiB, from `/proc/PID/status`.
    pub fn memory_kib(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .with_context(|| format!("reading /proc/{}/status of {}", self.pid(), self.name))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        match (field("VmRSS:"), field("VmHWM:")) {
            (Some(rss), Some(hwm)) => Ok((rss, hwm)),
            _ => bail!("no VmRSS/VmHWM in /proc/{}/status", self.pid()),
        }
    }

    /// How many times the process's threads were switched out so far (voluntary and involuntary context
    /// switches, summed over `/proc/PID/task/*/status`): each is a wake-up when the process is idle.
    pub fn context_switches(&self) -> anyhow::Result<u64> {
        let tasks = format!("/proc/{}/task", self.pid());
        let mut switches = 0;
        for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
            // A thread that ended between the listing and the read took its count with it.
            let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
                continue;
            };
            switches += status
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                })
                .filter_map(|n| n.trim().parse::<u64>().ok())
                .sum::<u64>();
        }
        Ok(switches)
    }

    /// Stops the child gracefully (toolgate drains its audit queue on SIGTERM) and waits for it.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// CPU time process `pid` (all its threads) has used so far, in clock ticks: `utime + stime` of
/// `/proc/PID/stat`. Divide by [`clock_ticks_per_sec`].
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields after its `)`.
    // There, field 3 (state) is index 0, so utime (14) and stime (15) are indexes 11 and 12.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("no `)` in /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(i)
            .context("/proc/PID/stat is too short")?
            .parse()?)
    };
    Ok(field(11)? + field(12)?)
}

/// CPU time in milliseconds from clock ticks (`/proc` times) at `clock_ticks` per second.
pub fn ticks_to_ms(ticks: u64, clock_ticks: u64) -> f64 {
    ticks as f64 * 1000.0 / clock_ticks.max(1) as f64
}

/// `sysconf(_SC_CLK_TCK)` through `getconf CLK_TCK` (no libc binding needed for one number); 100, Linux's
/// value for decades, if getconf is missing.
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Polls until something accepts TCP connections on `addr`, failing early if the child exits.
pub(crate) fn wait_listening(proc: &mut Proc, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_DEADLINE;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = proc.child.try_wait() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{} exited ({status}) at start:\n{tail}", proc.name);
        }
        if std::net::TcpStream::connect_timeout(&proc.addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "{} did not listen on {} within {START_DEADLINE:?}",
        proc.name,
        proc.addr
    )
}

/// A free loopback port (bound and released; the child binds it right after).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A binary built next to the running one (`target/release/<name>`).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running binary")?;
    let path = exe.with_file_name(name);
    anyhow::ensure!(path.exists(), "{} is not built", path.display());
    Ok(path)
}

/// Starts `mock-upstream`, which prints `listening <addr>` once bound.
pub fn start_upstream(binary: &Path) -> anyhow::Result<Proc> {
    let mut child = Command::new(binary)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("mock upstream stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("reading the mock upstream's address")?;
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("mock upstream said {line:?}"))?;
    Ok(Proc {
        child,
        addr,
        name: "mock-upstream",
    })
}

/// What a toolgate instance of the run is configured with.
#[derive(Clone, Copy)]
pub struct ToolgateSetup<'a> {
    pub binary: &'a Path,
    pub dir: &'a Path,
    pub policy_dir: &'a Path,
    pub upstream: SocketAddr,
    pub database_url: &'a str,
    pub chain_id: &'a str,
    pub otlp_endpoint: Option<&'a str>,
    /// `audit.durability`; toolgate's default (`full`) when `None`.
    pub durability: Option<&'a str>,
}

/// Writes a config into `dir` and starts `toolgate serve` on a free port, logs to `dir/toolgate.log`; returns
/// once `/health` answers.
pub fn start_toolgate(setup: &ToolgateSetup<'_>) -> anyhow::Result<Proc> {
    start_toolgate_with(setup, "")
}

/// [`start_toolgate`] with `extra` appended to the config (more tables, e.g. `[admin]` and `[[siem]]`).
pub fn start_toolgate_with(setup: &ToolgateSetup<'_>, extra: &str) -> anyhow::Result<Proc> {
    let port = free_port()?;
    let telemetry = match setup.otlp_endpoint {
        Some(endpoint) => format!(
            "[telemetry]\notlp_endpoint = {endpoint:?}\notlp_protocol = \"http/protobuf\"\n"
        ),
        None => String::new(),
    };
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\n\n[auth]\nhs256_secret = {SECRET:?}\n\n[policy]\ndir = {policy:?}\n\n\
         [audit]\ndatabase_url = {db:?}\nchain_id = {chain:?}\n{durability}\n{telemetry}\n\
         [[upstream]]\nname = \"bench\"\nurl = \"http://{up}/mcp\"\n{extra}",
        policy = setup.policy_dir.display().to_string(),
        db = setup.database_url,
        chain = setup.chain_id,
        up = setup.upstream,
        durability = setup
            .durability
            .map(|d| format!("durability = {d:?}\n"))
            .unwrap_or_default(),
    );
    let config_path = setup.dir.join("toolgate.toml");
    std::fs::write(&config_path, config).context("writing the toolgate config")?;
    let log = std::fs::File::create(setup.dir.join("toolgate.log"))?;
    let child = Command::new(setup.binary)
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .current_dir(setup.dir)
        // The environment must not override the benchmark's config.
        .env_remove("TOOLGATE_DATABASE_URL")
        .env_remove("TOOLGATE_OTLP_ENDPOINT")
        .env_remove("TOOLGATE_LISTEN")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", setup.binary.display()))?;
    let mut proc = Proc {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        name: "toolgate",
    };
    wait_healthy(&mut proc, &setup.dir.join("toolgate.log"))?;
    Ok(proc)
}

fn wait_healthy(proc: &mut Proc, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_DEADLINE;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = proc.child.try_wait() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            bail!("toolgate exited ({status}) at start:\n{tail}");
        }
        if health_ok(proc.addr) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("toolgate did not answer /health within {START_DEADLINE:?}")
}

fn health_ok(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}
