//! `qmp bench server`: a server built with `qmpkit::server`, answering `query-status` as QEMU
//! does, measured in one run beside a real QEMU and a bare unix-socket ping-pong, all driven
//! by the same raw blocking client written here.
//!
//! Each server runs in its own process (ours is this binary re-executed with a hidden
//! `--serve` flag, on a current-thread runtime), so that its CPU time and memory can be read
//! from `/proc` exactly as QEMU's are: CPU from `/proc/PID/task/*/schedstat` (nanoseconds,
//! all threads), memory from `VmRSS` in `/proc/PID/status`.
//!
//! Scenarios: sequential round trips; pipelined with `oob` negotiated and 8 requests in
//! flight; 100 concurrent connections (ours only: a QEMU monitor serves one client at a
//! time); idle connections, 1,000 and 10,000 (ours only, for the same reason).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// Arguments of `qmp bench server`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
    /// Round trips per scenario.
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Skip the real QEMU (when it is not installed).
    #[arg(long)]
    no_qemu: bool,
    /// Internal: serve on this unix socket and exit when stdin closes.
    #[arg(long, hide = true)]
    serve: Option<PathBuf>,
    /// Internal: run the ping-pong echo server on this unix socket.
    #[arg(long, hide = true)]
    echo: Option<PathBuf>,
}

const REQUEST: &[u8] = b"{\"execute\":\"query-status\"}";
/// QEMU 10.0's reply, which this library's server reproduces byte for byte.
const REPLY: &[u8] = b"{\"return\": {\"status\": \"running\", \"running\": true}}\r\n";

/// Runs the benchmark.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if let Some(path) = &args.serve {
        return serve(path);
    }
    if let Some(path) = &args.echo {
        return echo(path);
    }
    raise_fd_limit();
    let dir = std::env::temp_dir().join(format!("qmp-bench-server-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn measure(args: &Args, dir: &Path) -> anyhow::Result<Value> {
    let n = args.n;
    let mut rows = Vec::new();

    let echo_path = dir.join("echo.sock");
    let echo_child = spawn_self(&["--echo"], &echo_path)?;
    rows.push(scenario("ping-pong floor (unix socket, 2 processes)", &echo_child, || floor(&echo_path, n))?);
    drop(echo_child);

    let ours_path = dir.join("qmpkit.sock");
    let ours = spawn_self(&["--serve"], &ours_path)?;
    rows.push(scenario("qmpkit sequential", &ours, || sequential(&ours_path, n))?);
    rows.push(scenario("qmpkit pipelined (oob, 8 in flight)", &ours, || pipelined(&ours_path, n))?);
    rows.push(scenario("qmpkit 100 concurrent connections", &ours, || concurrent(&ours_path, 100, n))?);
    let idle: Vec<Value> =
        [1_000, 10_000].iter().map(|&k| idle_memory(&ours, &ours_path, k)).collect::<Result<_, _>>()?;
    drop(ours);

    if !args.no_qemu {
        let qemu = qmpkit::launch::Launcher::system().start().context("starting QEMU (use --no-qemu to skip it)")?;
        let pid = qemu.pid() as u32;
        let path = qemu.qmp_socket().to_owned();
        rows.push(scenario_pid("QEMU sequential", pid, || sequential(&path, n))?);
        rows.push(scenario_pid("QEMU pipelined (oob, 8 in flight)", pid, || pipelined(&path, n))?);
    }

    let find = |name: &str| rows.iter().find(|r| r["scenario"] == name).cloned();
    let floor_ops = find("ping-pong floor (unix socket, 2 processes)").map(|r| r["ops_per_s"].as_f64().unwrap_or(0.0));
    let seq = find("qmpkit sequential");
    let qemu_seq = find("QEMU sequential");
    let mut goals = serde_json::Map::new();
    if let (Some(floor), Some(seq)) = (floor_ops, &seq) {
        let ratio = seq["ops_per_s"].as_f64().unwrap_or(0.0) / floor;
        goals.insert("sequential_vs_floor".into(), json!({"ratio": ratio, "goal": 0.8, "met": ratio >= 0.8}));
    }
    if let (Some(seq), Some(qemu)) = (&seq, &qemu_seq) {
        let ratio =
            seq["server_cpu_us_per_op"].as_f64().unwrap_or(0.0) / qemu["server_cpu_us_per_op"].as_f64().unwrap_or(1.0);
        goals.insert("cpu_vs_qemu".into(), json!({"ratio": ratio, "goal": 0.05, "met": ratio <= 0.05}));
    }
    let worst = idle.iter().filter_map(|i| i["bytes_per_connection"].as_f64()).fold(0.0, f64::max);
    goals.insert("idle_bytes_per_connection".into(), json!({"worst": worst, "goal": 16384, "met": worst <= 16384.0}));
    Ok(json!({"n": n, "round_trips": rows, "idle_connections": idle, "goals": goals}))
}

/// One measured run of `f` against the server process `child`.
fn scenario(name: &str, child: &Child, f: impl FnOnce() -> anyhow::Result<Vec<Duration>>) -> anyhow::Result<Value> {
    scenario_pid(name, child.id(), f)
}

pub(super) fn scenario_pid(
    name: &str,
    pid: u32,
    f: impl FnOnce() -> anyhow::Result<Vec<Duration>>,
) -> anyhow::Result<Value> {
    let cpu0 = cpu_ns(pid)?;
    let start = Instant::now();
    let mut latencies = f()?;
    let elapsed = start.elapsed();
    let cpu = cpu_ns(pid)? - cpu0;
    latencies.sort_unstable();
    let ops = latencies.len();
    let pct = |p: f64| latencies[((ops as f64 * p) as usize).min(ops - 1)].as_secs_f64() * 1e6;
    Ok(json!({
        "scenario": name,
        "ops": ops,
        "ops_per_s": ops as f64 / elapsed.as_secs_f64(),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "server_cpu_us_per_op": cpu as f64 / 1e3 / ops as f64,
    }))
}

fn print_table(report: &Value) {
    println!("qmp bench server: {} round trips per scenario, query-status", report["n"]);
    println!();
    println!("| scenario | ops/s | p50 µs | p99 µs | server CPU µs/op |");
    println!("|---|---:|---:|---:|---:|");
    for row in report["round_trips"].as_array().into_iter().flatten() {
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.2} |",
            row["scenario"].as_str().unwrap_or_default(),
            row["ops_per_s"].as_f64().unwrap_or(0.0),
            row["p50_us"].as_f64().unwrap_or(0.0),
            row["p99_us"].as_f64().unwrap_or(0.0),
            row["server_cpu_us_per_op"].as_f64().unwrap_or(0.0),
        );
    }
    println!();
    println!("| idle connections (qmpkit, negotiated) | server RSS growth | bytes per connection |");
    println!("|---:|---:|---:|");
    for row in report["idle_connections"].as_array().into_iter().flatten() {
        println!(
            "| {} | {:.1} MiB | {:.0} |",
            row["connections"],
            row["rss_growth_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
            row["bytes_per_connection"].as_f64().unwrap_or(0.0)
        );
    }
    println!();
    for (name, goal) in report["goals"].as_object().into_iter().flatten() {
        println!("goal {name}: {goal}");
    }
}

/// Starts this binary in a hidden server mode on `path` and waits until it listens.
pub(super) fn spawn_self(mode: &[&str], path: &Path) -> anyhow::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["bench", "server"])
        .args(mode)
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().context("child stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("the benchmark server did not start: {line:?}");
    }
    Ok(child)
}

/// The server under test: the library with one command, `query-status`, answering as QEMU 10.0.
fn serve(path: &Path) -> anyhow::Result<()> {
    use qmpkit::server::{CommandDef, MemberDef, ObjectDef, QmpError, Registry, Server};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut registry = Registry::new();
        registry.type_(
            ObjectDef::new("StatusInfo")
                .member(MemberDef::new("running", "bool"))
                .member(MemberDef::new("status", "str")),
        )?;
        registry.command(CommandDef::new("query-status").returns("StatusInfo"), |(): ()| async {
            Ok::<_, QmpError>(json!({"status": "running", "running": true}))
        })?;
        let server = Server::builder().registry(registry).build()?;
        let listener = server.bind(&qmpkit::transport::Endpoint::Unix(path.to_owned())).await?;
        println!("ready");
        let stdin_closed = async {
            // The parent closes our stdin (or dies) when it is done with us.
            let _ = tokio::task::spawn_blocking(|| std::io::stdin().read(&mut [0u8; 1])).await;
        };
        server.serve([listener], stdin_closed).await?;
        anyhow::Ok(())
    })
}

/// The floor: an echo server that answers each request with a reply of QEMU's size.
fn echo(path: &Path) -> anyhow::Result<()> {
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    println!("ready");
    std::thread::spawn(|| {
        let _ = std::io::stdin().read(&mut [0u8; 1]);
        std::process::exit(0);
    });
    // One connection at a time on the main thread, so that its CPU time stays in
    // /proc/PID/task after the connection closes.
    for stream in listener.incoming() {
        let mut stream = stream?;
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if stream.write_all(REPLY).is_err() {
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// A blocking QMP connection that reads CRLF-terminated messages.
struct Raw {
    stream: UnixStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Raw {
    fn connect(path: &Path, oob: bool) -> anyhow::Result<Raw> {
        let stream = UnixStream::connect(path)?;
        let mut raw = Raw { stream, buf: vec![0; 64 * 1024], start: 0, end: 0 };
        raw.message()?;
        let negotiate: &[u8] = if oob {
            b"{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}"
        } else {
            b"{\"execute\":\"qmp_capabilities\"}"
        };
        raw.stream.write_all(negotiate)?;
        let reply = raw.message()?;
        if !reply.starts_with(b"{\"return\": {}") {
            bail!("negotiation failed: {}", String::from_utf8_lossy(&reply));
        }
        Ok(raw)
    }

    /// Reads one message (up to CRLF).
    fn message(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            if let Some(at) = self.buf[self.start..self.end].windows(2).position(|w| w == b"\r\n") {
                let msg = self.buf[self.start..self.start + at].to_vec();
                self.start += at + 2;
                return Ok(msg);
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self.stream.read(&mut self.buf[self.end..])?;
            if n == 0 {
                bail!("EOF from the server");
            }
            self.end += n;
        }
    }
}

fn floor(path: &Path, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut stream = UnixStream::connect(path)?;
    let mut buf = [0u8; 4096];
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        stream.write_all(REQUEST)?;
        let mut got = 0;
        while got < REPLY.len() {
            got += stream.read(&mut buf[got..])?;
        }
        latencies.push(t.elapsed());
    }
    Ok(latencies)
}

pub(super) fn sequential(path: &Path, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut raw = Raw::connect(path, false)?;
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        raw.stream.write_all(REQUEST)?;
        let reply = raw.message()?;
        latencies.push(t.elapsed());
        if !reply.starts_with(b"{\"return\": {\"status\": \"running\"") {
            bail!("unexpected reply {}", String::from_utf8_lossy(&reply));
        }
    }
    Ok(latencies)
}

fn pipelined(path: &Path, n: usize) -> anyhow::Result<Vec<Duration>> {
    const IN_FLIGHT: usize = 8;
    let mut raw = Raw::connect(path, true)?;
    let mut sent_at = vec![Instant::now(); n];
    let mut latencies = Vec::with_capacity(n);
    let mut next = 0;
    let send = |raw: &mut Raw, i: usize, sent_at: &mut Vec<Instant>| -> anyhow::Result<()> {
        sent_at[i] = Instant::now();
        write!(raw.stream, "{{\"execute\":\"query-status\",\"id\":{i}}}")?;
        Ok(())
    };
    while next < IN_FLIGHT.min(n) {
        send(&mut raw, next, &mut sent_at)?;
        next += 1;
    }
    while latencies.len() < n {
        let reply = raw.message()?;
        let value: Value = serde_json::from_slice(&reply)?;
        let id = value["id"].as_u64().context("reply without id")? as usize;
        latencies.push(sent_at[id].elapsed());
        if next < n {
            send(&mut raw, next, &mut sent_at)?;
            next += 1;
        }
    }
    Ok(latencies)
}

pub(super) fn concurrent(path: &Path, clients: usize, n: usize) -> anyhow::Result<Vec<Duration>> {
    let per = n.div_ceil(clients);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let path = path.to_owned();
            std::thread::spawn(move || sequential(&path, per))
        })
        .collect();
    let mut all = Vec::with_capacity(per * clients);
    for t in threads {
        all.extend(t.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??);
    }
    Ok(all)
}

/// Opens `k` negotiated connections and reports how much the server's RSS grew.
fn idle_memory(child: &Child, path: &Path, k: usize) -> anyhow::Result<Value> {
    let before = rss_bytes(child.id())?;
    let mut conns = Vec::with_capacity(k);
    for _ in 0..k {
        conns.push(Raw::connect(path, false)?);
    }
    // The server has answered every negotiation, so each connection is idle and registered.
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_bytes(child.id())?;
    drop(conns);
    std::thread::sleep(Duration::from_millis(200));
    let growth = after.saturating_sub(before);
    Ok(json!({"connections": k, "rss_growth_bytes": growth, "bytes_per_connection": growth as f64 / k as f64}))
}

/// CPU time of every thread of a process, in nanoseconds.
fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        total += stat.split_whitespace().next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    }
    Ok(total)
}

pub(super) fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("no VmRSS")?;
    Ok(kib * 1024)
}

/// 10,000 idle connections need 10,000 descriptors in this process and in the server.
pub(super) fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        let _ = setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(max), maximum: Some(max) });
    }
}
