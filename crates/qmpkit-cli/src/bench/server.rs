//! `qmp bench server`: a server built with `qmpkit::server`, answering `query-status` as QEMU
//! does, measured in one run beside a real QEMU and two bare echo servers, all driven by the
//! same raw client written here (a blocking socket; it waits for replies with `poll` by default).
//!
//! Each server runs in its own process (ours is this binary re-executed with a hidden
//! `--serve` flag, on a current-thread runtime), so that its CPU time and memory can be read
//! from `/proc` exactly as QEMU's are: CPU from `/proc/PID/task/*/schedstat` (nanoseconds,
//! all threads), memory from `VmRSS` in `/proc/PID/status`.
//!
//! Scenarios: the floor (a blocking echo server of QEMU's reply size); a tokio echo server
//! (the floor plus what any tokio server pays: epoll and the runtime's park and wake); ours
//! sequential, pipelined with `oob` and 8 requests in flight, and with 100 concurrent
//! connections; QEMU sequential and pipelined; idle connections, 1,000 and 10,000 (ours only:
//! a QEMU monitor serves one client at a time).
//!
//! The machine this runs on is shared and noisy, so every round-trip scenario runs once per
//! round, in an order rotated by one each round, and the figures are medians over rounds; the
//! ratios to the floor are taken within each round (the same conditions) and their median is
//! reported.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::{Value, json};

use super::shared::{REQUEST, Raw, Wait, cpu_ns, median, rss_bytes, run_and_report, switches, wait_readable};

/// Arguments of `qmp bench server`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
    /// Round trips per scenario and round.
    #[arg(long, default_value_t = 10_000)]
    n: usize,
    /// Rounds; each figure is the median over rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// How the client waits for a reply: `poll` (wait for readability, then read, as an event
    /// loop does) or `read` (block in `read`, which a unix socket also wakes whenever the
    /// server consumes the client's request: see the README).
    #[arg(long, value_enum, default_value_t = Wait::Poll)]
    client_wait: Wait,
    /// Skip the real QEMU (when it is not installed).
    #[arg(long)]
    no_qemu: bool,
    /// Internal: serve on this unix socket and exit when stdin closes.
    #[arg(long, hide = true)]
    serve: Option<PathBuf>,
    /// Internal: run the blocking echo server on this unix socket.
    #[arg(long, hide = true)]
    echo: Option<PathBuf>,
    /// Internal: run the tokio echo server on this unix socket.
    #[arg(long, hide = true)]
    tokio_echo: Option<PathBuf>,
}

/// QEMU 10.0's reply, which this library's server reproduces byte for byte.
const REPLY: &[u8] = b"{\"return\": {\"status\": \"running\", \"running\": true}}\r\n";

/// A round trip slower than this counts as a stall in the `stalls` column.
const STALL: Duration = Duration::from_micros(500);

/// Which server a scenario measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Floor,
    TokioEcho,
    Ours,
    Qemu,
}

/// What the client does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Load {
    /// Bare round trips without QMP (the echo servers).
    Echo,
    /// One connection, one request at a time.
    Sequential,
    /// One connection, oob negotiated, eight requests in flight.
    Pipelined,
    /// A hundred connections, each sequential.
    Concurrent,
}

const FLOOR: &str = "floor: blocking echo (unix socket, 2 processes)";
const TOKIO_ECHO: &str = "tokio echo (current-thread runtime)";
const OURS_SEQ: &str = "qmpkit sequential";

/// The round-trip scenarios, in the order of the first round.
const SCENARIOS: [(&str, Target, Load); 7] = [
    (FLOOR, Target::Floor, Load::Echo),
    (TOKIO_ECHO, Target::TokioEcho, Load::Echo),
    (OURS_SEQ, Target::Ours, Load::Sequential),
    ("qmpkit pipelined (oob, 8 in flight)", Target::Ours, Load::Pipelined),
    ("qmpkit 100 concurrent connections", Target::Ours, Load::Concurrent),
    ("QEMU sequential", Target::Qemu, Load::Sequential),
    ("QEMU pipelined (oob, 8 in flight)", Target::Qemu, Load::Pipelined),
];

/// The figures of one scenario in one round, or their medians over rounds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Sample {
    ops_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    /// The share of round trips slower than 500 µs.
    stalls: f64,
    server_cpu_us_per_op: f64,
    /// Context switches of the server's threads per round trip, voluntary (it waited) and
    /// involuntary (it was preempted, typically by the client it had just woken).
    server_switches_per_op: Switches,
    /// Context switches of the client's threads per round trip (for a single connection: the
    /// threads of the 100-connection scenario are gone before they are counted).
    client_switches_per_op: Switches,
}

/// Context switches, from `/proc/.../status`.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Switches {
    voluntary: f64,
    involuntary: f64,
}

#[derive(Debug, Serialize)]
struct Row {
    scenario: &'static str,
    /// Medians over rounds.
    median: Sample,
    rounds: Vec<Sample>,
}

/// qmpkit sequential over the floor, within each round.
#[derive(Debug, Default, Serialize)]
struct Ratio {
    ops_per_s: f64,
    p50: f64,
    p99: f64,
}

#[derive(Debug, Serialize)]
struct RatioRow {
    /// Medians of the per-round ratios.
    median: Ratio,
    rounds: Vec<Ratio>,
}

#[derive(Debug, Serialize)]
struct Goal {
    name: &'static str,
    measured: f64,
    goal: f64,
    met: bool,
}

#[derive(Debug, Serialize)]
struct Idle {
    connections: usize,
    rss_growth_bytes: u64,
    bytes_per_connection: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    n: usize,
    rounds: usize,
    client_wait: Wait,
    round_trips: Vec<Row>,
    /// qmpkit sequential over the floor (`floor`) and over the tokio echo server (`tokio_echo`).
    sequential_vs_floor: RatioRow,
    sequential_vs_tokio_echo: RatioRow,
    idle_connections: Vec<Idle>,
    goals: Vec<Goal>,
}

/// Runs the benchmark.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if let Some(path) = &args.serve {
        return serve(path);
    }
    if let Some(path) = &args.echo {
        return echo(path);
    }
    if let Some(path) = &args.tokio_echo {
        return tokio_echo(path);
    }
    if args.rounds == 0 || args.n == 0 {
        bail!("--rounds and --n must be at least 1");
    }
    raise_fd_limit();
    run_and_report("server", args.json, |dir| measure(&args, dir), print_table)
}

/// A server process and the socket it listens on.
struct Server {
    pid: u32,
    path: PathBuf,
}

fn measure(args: &Args, dir: &Path) -> anyhow::Result<Report> {
    let n = args.n;
    let floor_path = dir.join("echo.sock");
    let floor_child = spawn_self(&["--echo"], &floor_path)?;
    let tokio_path = dir.join("tokio-echo.sock");
    let tokio_child = spawn_self(&["--tokio-echo"], &tokio_path)?;
    let ours_path = dir.join("qmpkit.sock");
    let ours_child = spawn_self(&["--serve"], &ours_path)?;
    let qemu = if args.no_qemu {
        None
    } else {
        Some(qmpkit::launch::Launcher::system().start().context("starting QEMU (use --no-qemu to skip it)")?)
    };
    let server = |target: Target| -> Option<Server> {
        match target {
            Target::Floor => Some(Server { pid: floor_child.id(), path: floor_path.clone() }),
            Target::TokioEcho => Some(Server { pid: tokio_child.id(), path: tokio_path.clone() }),
            Target::Ours => Some(Server { pid: ours_child.id(), path: ours_path.clone() }),
            Target::Qemu => qemu.as_ref().map(|q| Server { pid: q.pid() as u32, path: q.qmp_socket().to_owned() }),
        }
    };
    let scenarios: Vec<_> = SCENARIOS.iter().filter(|(_, target, _)| server(*target).is_some()).collect();

    let mut samples = vec![Vec::with_capacity(args.rounds); scenarios.len()];
    for round in 0..args.rounds {
        for k in 0..scenarios.len() {
            let i = (k + round) % scenarios.len();
            let (_, target, load) = scenarios[i];
            let server = server(*target).context("the server of a scenario")?;
            samples[i].push(scenario(&server, *load, n, args.client_wait)?);
        }
    }
    let idle =
        [1_000, 10_000].iter().map(|&k| idle_memory(ours_child.id(), &ours_path, k)).collect::<Result<Vec<_>, _>>()?;
    drop((floor_child, tokio_child, ours_child, qemu));

    let round_trips: Vec<Row> = scenarios
        .iter()
        .zip(samples)
        .map(|((name, _, _), rounds)| Row { scenario: name, median: median_sample(&rounds), rounds })
        .collect();
    let find = |name: &str| round_trips.iter().find(|r| r.scenario == name);
    let seq = find(OURS_SEQ).context("no sequential scenario")?;
    let sequential_vs_floor = ratios(seq, find(FLOOR).context("no floor")?);
    let sequential_vs_tokio_echo = ratios(seq, find(TOKIO_ECHO).context("no tokio echo")?);

    let mut goals = vec![
        goal("sequential ops/s vs floor (at least)", sequential_vs_floor.median.ops_per_s, 0.8, true),
        goal("sequential p50 vs floor (at most)", sequential_vs_floor.median.p50, 2.0, false),
        goal("sequential p99 vs floor (at most)", sequential_vs_floor.median.p99, 3.0, false),
    ];
    if let Some(qemu) = find("QEMU sequential") {
        let ratio = seq.median.server_cpu_us_per_op / qemu.median.server_cpu_us_per_op;
        goals.push(goal("sequential server CPU vs QEMU (at most)", ratio, 0.05, false));
    }
    let worst = idle.iter().map(|i| i.bytes_per_connection).fold(0.0, f64::max);
    goals.push(goal("bytes per idle connection (at most)", worst, 16384.0, false));
    Ok(Report {
        n,
        rounds: args.rounds,
        client_wait: args.client_wait,
        round_trips,
        sequential_vs_floor,
        sequential_vs_tokio_echo,
        idle_connections: idle,
        goals,
    })
}

fn goal(name: &'static str, measured: f64, goal: f64, at_least: bool) -> Goal {
    Goal { name, measured, goal, met: if at_least { measured >= goal } else { measured <= goal } }
}

/// `a` over `b` within each round, and the medians of those ratios.
fn ratios(a: &Row, b: &Row) -> RatioRow {
    let rounds: Vec<Ratio> = a
        .rounds
        .iter()
        .zip(&b.rounds)
        .map(|(a, b)| Ratio {
            ops_per_s: a.ops_per_s / b.ops_per_s,
            p50: a.p50_us / b.p50_us,
            p99: a.p99_us / b.p99_us,
        })
        .collect();
    let median = Ratio {
        ops_per_s: median(rounds.iter().map(|r| r.ops_per_s)),
        p50: median(rounds.iter().map(|r| r.p50)),
        p99: median(rounds.iter().map(|r| r.p99)),
    };
    RatioRow { median, rounds }
}

fn median_sample(rounds: &[Sample]) -> Sample {
    Sample {
        ops_per_s: median(rounds.iter().map(|s| s.ops_per_s)),
        p50_us: median(rounds.iter().map(|s| s.p50_us)),
        p99_us: median(rounds.iter().map(|s| s.p99_us)),
        stalls: median(rounds.iter().map(|s| s.stalls)),
        server_cpu_us_per_op: median(rounds.iter().map(|s| s.server_cpu_us_per_op)),
        server_switches_per_op: Switches {
            voluntary: median(rounds.iter().map(|s| s.server_switches_per_op.voluntary)),
            involuntary: median(rounds.iter().map(|s| s.server_switches_per_op.involuntary)),
        },
        client_switches_per_op: Switches {
            voluntary: median(rounds.iter().map(|s| s.client_switches_per_op.voluntary)),
            involuntary: median(rounds.iter().map(|s| s.client_switches_per_op.involuntary)),
        },
    }
}

/// One measured run of `load` against the server process `pid` listening on `path`, with the
/// client waiting in `poll`, as a JSON row (`scenario`, `ops_per_s`, `p50_us`, `p99_us`,
/// `server_cpu_us_per_op`): for benchmarks of other servers built on this one's clients.
pub(super) fn scenario_row(name: &str, pid: u32, path: &Path, load: Load, n: usize) -> anyhow::Result<Value> {
    let sample = scenario(&Server { pid, path: path.to_owned() }, load, n, Wait::Poll)?;
    Ok(json!({
        "scenario": name,
        "ops_per_s": sample.ops_per_s,
        "p50_us": sample.p50_us,
        "p99_us": sample.p99_us,
        "server_cpu_us_per_op": sample.server_cpu_us_per_op,
    }))
}

/// One measured run of `load` against `server`, after a short unmeasured warm-up.
fn scenario(server: &Server, load: Load, n: usize, wait: Wait) -> anyhow::Result<Sample> {
    let run = |n: usize| match load {
        Load::Echo => floor(&server.path, n, wait),
        Load::Sequential => sequential(&server.path, n, wait),
        Load::Pipelined => pipelined(&server.path, n, wait),
        Load::Concurrent => concurrent(&server.path, 100, n, wait),
    };
    run((n / 20).max(1))?;
    let cpu0 = cpu_ns(server.pid)?;
    let server0 = switches(&format!("/proc/{}/task", server.pid))?;
    let client0 = switches("/proc/self/task")?;
    let start = Instant::now();
    let mut latencies = run(n)?;
    let elapsed = start.elapsed();
    let cpu = cpu_ns(server.pid)? - cpu0;
    let server1 = switches(&format!("/proc/{}/task", server.pid))?;
    let client1 = switches("/proc/self/task")?;
    latencies.sort_unstable();
    let ops = latencies.len();
    let pct = |p: f64| latencies[((ops as f64 * p) as usize).min(ops - 1)].as_secs_f64() * 1e6;
    Ok(Sample {
        ops_per_s: ops as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        stalls: latencies.iter().filter(|&&l| l > STALL).count() as f64 / ops as f64,
        server_cpu_us_per_op: cpu as f64 / 1e3 / ops as f64,
        server_switches_per_op: per_op(server0, server1, ops),
        client_switches_per_op: per_op(client0, client1, ops),
    })
}

fn print_table(report: &Report) {
    println!(
        "qmp bench server: query-status, {} round trips per scenario and round, medians over {} rounds, client waits with {:?}",
        report.n, report.rounds, report.client_wait
    );
    println!();
    println!(
        "| scenario | ops/s | p50 µs | p99 µs | > 0.5 ms | server CPU µs/op | switches/op server (waits+preempted) | client |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in &report.round_trips {
        let m = &row.median;
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.2}% | {:.2} | {:.2}+{:.2} | {:.2}+{:.2} |",
            row.scenario,
            m.ops_per_s,
            m.p50_us,
            m.p99_us,
            m.stalls * 100.0,
            m.server_cpu_us_per_op,
            m.server_switches_per_op.voluntary,
            m.server_switches_per_op.involuntary,
            m.client_switches_per_op.voluntary,
            m.client_switches_per_op.involuntary,
        );
    }
    println!();
    println!("| qmpkit sequential over | ops/s | p50 | p99 | per round (ops/s, p50, p99) |");
    println!("|---|---:|---:|---:|---|");
    for (name, ratio) in [("floor", &report.sequential_vs_floor), ("tokio echo", &report.sequential_vs_tokio_echo)] {
        let rounds: Vec<String> =
            ratio.rounds.iter().map(|r| format!("{:.2} {:.2} {:.2}", r.ops_per_s, r.p50, r.p99)).collect();
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {} |",
            ratio.median.ops_per_s,
            ratio.median.p50,
            ratio.median.p99,
            rounds.join("; ")
        );
    }
    println!();
    println!("| idle connections (qmpkit, negotiated) | server RSS growth | bytes per connection |");
    println!("|---:|---:|---:|");
    for row in &report.idle_connections {
        println!(
            "| {} | {:.1} MiB | {:.0} |",
            row.connections,
            row.rss_growth_bytes as f64 / 1048576.0,
            row.bytes_per_connection
        );
    }
    println!();
    println!("| goal | measured | target | |");
    println!("|---|---:|---:|---|");
    for goal in &report.goals {
        let met = if goal.met { "met" } else { "NOT met" };
        println!("| {} | {:.2} | {} | {met} |", goal.name, goal.measured, goal.goal);
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

/// The floor plus what any tokio server pays: the same echo on a current-thread runtime, with
/// epoll, the runtime's park and wake, and tokio's `UnixStream`.
fn tokio_echo(path: &Path) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::UnixListener::bind(path)?;
        println!("ready");
        tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read(&mut [0u8; 1]);
            std::process::exit(0);
        });
        loop {
            let (mut stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(REPLY).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

fn floor(path: &Path, n: usize, wait: Wait) -> anyhow::Result<Vec<Duration>> {
    let mut stream = UnixStream::connect(path)?;
    let mut buf = [0u8; 4096];
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        stream.write_all(REQUEST)?;
        let mut got = 0;
        while got < REPLY.len() {
            wait_readable(&stream, wait)?;
            got += stream.read(&mut buf[got..])?;
        }
        latencies.push(t.elapsed());
    }
    Ok(latencies)
}

fn sequential(path: &Path, n: usize, wait: Wait) -> anyhow::Result<Vec<Duration>> {
    Raw::connect(path, false, wait, None)?.round_trips(n)
}

fn pipelined(path: &Path, n: usize, wait: Wait) -> anyhow::Result<Vec<Duration>> {
    const IN_FLIGHT: usize = 8;
    let mut raw = Raw::connect(path, true, wait, None)?;
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

fn concurrent(path: &Path, clients: usize, n: usize, wait: Wait) -> anyhow::Result<Vec<Duration>> {
    let per = n.div_ceil(clients);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let path = path.to_owned();
            std::thread::spawn(move || sequential(&path, per, wait))
        })
        .collect();
    let mut all = Vec::with_capacity(per * clients);
    for t in threads {
        all.extend(t.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??);
    }
    Ok(all)
}

/// Opens `k` negotiated connections and reports how much the server's RSS grew.
fn idle_memory(pid: u32, path: &Path, k: usize) -> anyhow::Result<Idle> {
    let before = rss_bytes(pid)?;
    let mut conns = Vec::with_capacity(k);
    for _ in 0..k {
        // Only the negotiation is read here, so how the client waits does not matter.
        conns.push(Raw::connect(path, false, Wait::Read, None)?);
    }
    // The server has answered every negotiation, so each connection is idle and registered.
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_bytes(pid)?;
    drop(conns);
    std::thread::sleep(Duration::from_millis(200));
    let growth = after.saturating_sub(before);
    Ok(Idle { connections: k, rss_growth_bytes: growth, bytes_per_connection: growth as f64 / k as f64 })
}

fn per_op(before: (u64, u64), after: (u64, u64), ops: usize) -> Switches {
    Switches {
        voluntary: after.0.saturating_sub(before.0) as f64 / ops as f64,
        involuntary: after.1.saturating_sub(before.1) as f64 / ops as f64,
    }
}

/// 10,000 idle connections need 10,000 descriptors in this process and in the server.
pub(super) fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        let _ = setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(max), maximum: Some(max) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ops_per_s: f64, p50_us: f64, p99_us: f64) -> Sample {
        Sample { ops_per_s, p50_us, p99_us, ..Sample::default() }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), 2.5);
        assert!(median(std::iter::empty()).is_nan());
    }

    #[test]
    fn ratios_are_taken_within_each_round() {
        // The floor is slow in round 2 (a noisy moment) and so is ours: within the round
        // the ratio stays what it is in the other rounds, while a ratio of medians would not.
        let ours = Row {
            scenario: OURS_SEQ,
            median: Sample::default(),
            rounds: vec![sample(50.0, 20.0, 40.0), sample(10.0, 100.0, 200.0), sample(40.0, 25.0, 50.0)],
        };
        let floor = Row {
            scenario: FLOOR,
            median: Sample::default(),
            rounds: vec![sample(100.0, 10.0, 20.0), sample(20.0, 50.0, 100.0), sample(80.0, 12.5, 25.0)],
        };
        let r = ratios(&ours, &floor);
        assert_eq!(r.rounds.len(), 3);
        assert_eq!((r.median.ops_per_s, r.median.p50, r.median.p99), (0.5, 2.0, 2.0));
    }

    #[test]
    fn switches_are_counted_per_op() {
        let s = per_op((10, 4), (30, 5), 10);
        assert_eq!((s.voluntary, s.involuntary), (2.0, 0.1));
        // Counters of threads that exited in between cannot make a figure negative.
        let s = per_op((10, 4), (5, 4), 10);
        assert_eq!((s.voluntary, s.involuntary), (0.0, 0.0));
    }
}
