//! `qmp bench proxy`: `qmp proxy` in front of a real QEMU, measured in one run against the same
//! QEMU without it, all driven by one raw blocking client written here.
//!
//! The proxy is this binary's `qmp proxy` in a process of its own, so that its CPU time is read
//! from `/proc` exactly as QEMU's is (`/proc/PID/task/*/schedstat`, nanoseconds, all threads).
//! Scenarios: sequential `query-status` round trips straight to QEMU, then the same through the
//! proxy with 1, 10 and 100 concurrent clients (a QEMU monitor serves one client at a time, so
//! only the proxy can have more). Each round runs them all, direct and proxied taking turns
//! at going first, with a fresh proxy; the table shows each figure's median over the rounds.
//!
//! Beside them, the floor of any proxy in a process of its own: a byte forwarder (this binary
//! in a hidden mode: two blocking threads copying bytes between the client and QEMU, with no
//! parsing at all), measured in the same rounds. What it adds in latency and CPU, the extra
//! hop through a process costs on this machine whatever the proxy does.

use std::ffi::OsStr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::shared::{Raw, Wait, cpu_ns, median_row, round_trip_cells, run_and_report};

/// Arguments of `qmp bench proxy`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
    /// Round trips per scenario.
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Rounds of every scenario (direct and proxied runs take turns); figures are medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Run the proxy without `oob` upstream.
    #[arg(long)]
    no_oob: bool,
    /// Internal: forward clients byte for byte to the QEMU socket UPSTREAM from the socket
    /// LISTEN, one at a time (the floor scenario's process).
    #[arg(long, hide = true, num_args = 2, value_names = ["UPSTREAM", "LISTEN"])]
    forward: Option<Vec<PathBuf>>,
}

/// Runs the benchmark.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if let Some([upstream, listen]) = args.forward.as_deref() {
        return forward(upstream, listen);
    }
    run_and_report("proxy", args.json, |dir| measure(args.n, args.rounds, args.no_oob, dir), print_table)
}

fn measure(n: usize, rounds: usize, no_oob: bool, dir: &Path) -> anyhow::Result<Value> {
    let qemu = qmpkit::launch::Launcher::system().start().context("starting QEMU")?;
    let qemu_pid = qemu.pid().unsigned_abs();
    let qemu_path = qemu.qmp_socket().to_owned();
    let proxy_path = dir.join("proxy.sock");
    // Direct and proxied runs take turns, first one then the other, so that a change in the
    // machine's load (or QEMU warming up) does not fall on one side only.
    let forward_path = dir.join("forward.sock");
    let mut samples: Vec<Vec<Value>> = vec![Vec::new(); 5];
    for round in 0..rounds.max(1) {
        let direct = || scenario("direct, 1 client", qemu_pid, None, || concurrent(&qemu_path, 1, n));
        if round % 2 == 0 {
            samples[0].push(direct()?);
        }
        let mut args = vec![OsStr::new("proxy")];
        if no_oob {
            args.push(OsStr::new("--no-oob"));
        }
        args.extend([OsStr::new("--upstream"), qemu_path.as_os_str(), OsStr::new("--listen"), proxy_path.as_os_str()]);
        let proxy = Proxy::start(&args, &proxy_path)?;
        for (i, clients) in [1, 10, 100].into_iter().enumerate() {
            let name = format!("proxy, {clients} client{}", if clients == 1 { "" } else { "s" });
            samples[i + 1].push(scenario(&name, qemu_pid, Some(proxy.0.id()), || concurrent(&proxy_path, clients, n))?);
        }
        drop(proxy);
        let args = ["bench", "proxy", "--forward"].map(OsStr::new);
        let forwarder =
            Proxy::start(&[&args[..], &[qemu_path.as_os_str(), forward_path.as_os_str()]].concat(), &forward_path)?;
        let name = "byte forwarder (floor), 1 client";
        samples[4].push(scenario(name, qemu_pid, Some(forwarder.0.id()), || concurrent(&forward_path, 1, n))?);
        drop(forwarder);
        if round % 2 == 1 {
            samples[0].push(direct()?);
        }
    }
    let keys = ["ops_per_s", "p50_us", "p99_us", "qemu_cpu_us_per_op", "proxy_cpu_us_per_op"];
    let rows: Vec<Value> = samples.iter().map(|rounds| median_row(rounds, &keys)).collect();

    let figure = |row: usize, key: &str| rows[row][key].as_f64().unwrap_or(f64::NAN);
    let added_p50 = figure(1, "p50_us") / figure(0, "p50_us") - 1.0;
    let added_p99 = figure(1, "p99_us") / figure(0, "p99_us") - 1.0;
    let throughput = figure(3, "ops_per_s") / figure(0, "ops_per_s");
    let cpu = figure(1, "proxy_cpu_us_per_op") / figure(0, "qemu_cpu_us_per_op");
    let goals = json!({
        "added_latency_p50": {"measured": added_p50, "goal": "<= 0.10", "met": added_p50 <= 0.10},
        "added_latency_p99": {"measured": added_p99, "goal": "<= 0.10", "met": added_p99 <= 0.10},
        "ops_100_clients_vs_direct_1_client": {"measured": throughput, "goal": ">= 1.0", "met": throughput >= 1.0},
        "proxy_cpu_vs_qemu_cpu_per_command": {"measured": cpu, "goal": "<= 0.2", "met": cpu <= 0.2},
    });
    // What any proxy in a process of its own adds here, for reading the goals above.
    let floors = json!({
        "added_latency_p50": figure(4, "p50_us") / figure(0, "p50_us") - 1.0,
        "added_latency_p99": figure(4, "p99_us") / figure(0, "p99_us") - 1.0,
        "cpu_vs_qemu_cpu_per_command": figure(4, "proxy_cpu_us_per_op") / figure(0, "qemu_cpu_us_per_op"),
    });
    Ok(
        json!({"n": n, "rounds": rounds, "upstream_oob": !no_oob, "scenarios": rows, "goals": goals, "forwarder_floor": floors}),
    )
}

/// `qmp proxy` (or the byte forwarder) in a process of its own, killed when dropped.
struct Proxy(Child);

impl Proxy {
    /// Runs this binary with `args` and waits until it serves a client on `listen`.
    fn start(args: &[&OsStr], listen: &Path) -> anyhow::Result<Proxy> {
        let child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .context("starting qmp proxy")?;
        let proxy = Proxy(child);
        // Ready when a client is served: the proxy listens before it reaches QEMU.
        let deadline = Instant::now() + Duration::from_secs(10);
        while connect(listen).is_err() {
            if Instant::now() > deadline {
                bail!("qmp proxy did not serve within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(proxy)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One measured run of `f`, with the CPU time QEMU and the proxy spent on it.
fn scenario(
    name: &str,
    qemu: u32,
    proxy: Option<u32>,
    f: impl FnOnce() -> anyhow::Result<Vec<Duration>>,
) -> anyhow::Result<Value> {
    let qemu0 = cpu_ns(qemu)?;
    let proxy0 = proxy.map(cpu_ns).transpose()?.unwrap_or(0);
    let start = Instant::now();
    let mut latencies = f()?;
    let elapsed = start.elapsed();
    let qemu_cpu = cpu_ns(qemu)? - qemu0;
    let proxy_cpu = proxy.map(cpu_ns).transpose()?.map(|c| c - proxy0);
    latencies.sort_unstable();
    let ops = latencies.len();
    let pct = |p: f64| latencies[((ops as f64 * p) as usize).min(ops - 1)].as_secs_f64() * 1e6;
    Ok(json!({
        "scenario": name,
        "ops": ops,
        "ops_per_s": ops as f64 / elapsed.as_secs_f64(),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "qemu_cpu_us_per_op": qemu_cpu as f64 / 1e3 / ops as f64,
        "proxy_cpu_us_per_op": proxy_cpu.map(|c| c as f64 / 1e3 / ops as f64),
    }))
}

fn print_table(report: &Value) {
    println!(
        "qmp bench proxy: {} sequential query-status round trips per scenario, shared among the clients; \
         median of {} rounds; oob upstream: {}",
        report["n"], report["rounds"], report["upstream_oob"]
    );
    println!();
    println!("| scenario | ops/s | p50 µs | p99 µs | QEMU CPU µs/op | proxy CPU µs/op |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in report["scenarios"].as_array().into_iter().flatten() {
        let proxy = row["proxy_cpu_us_per_op"].as_f64().map_or("".to_owned(), |c| format!("{c:.2}"));
        let qemu = row["qemu_cpu_us_per_op"].as_f64().unwrap_or(0.0);
        println!("{} | {qemu:.2} | {proxy} |", round_trip_cells(row));
    }
    println!();
    let floor = &report["forwarder_floor"];
    println!(
        "The floor (a byte forwarder in a process of its own) adds p50 {:+.1}%, p99 {:+.1}%, and spends {:.3} of QEMU's CPU per command.",
        floor["added_latency_p50"].as_f64().unwrap_or(f64::NAN) * 100.0,
        floor["added_latency_p99"].as_f64().unwrap_or(f64::NAN) * 100.0,
        floor["cpu_vs_qemu_cpu_per_command"].as_f64().unwrap_or(f64::NAN),
    );
    println!();
    println!("| goal | measured | target | met |");
    println!("|---|---:|---|---|");
    for (name, goal) in report["goals"].as_object().into_iter().flatten() {
        println!(
            "| {name} | {:.3} | {} | {} |",
            goal["measured"].as_f64().unwrap_or(f64::NAN),
            goal["goal"].as_str().unwrap_or_default(),
            if goal["met"] == true { "yes" } else { "no" }
        );
    }
}

/// `clients` connections at once, each doing its share of `n` sequential round trips.
fn concurrent(path: &Path, clients: usize, n: usize) -> anyhow::Result<Vec<Duration>> {
    let per = n.div_ceil(clients);
    // Connect everyone first, so that the measured time is round trips only.
    let conns: Vec<Raw> = (0..clients).map(|_| connect(path)).collect::<Result<_, _>>()?;
    let threads: Vec<_> = conns.into_iter().map(|mut raw| std::thread::spawn(move || raw.round_trips(per))).collect();
    let mut all = Vec::with_capacity(per * clients);
    for t in threads {
        all.extend(t.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??);
    }
    Ok(all)
}

/// A negotiated connection without `oob`, whose reads give up after 30 s rather than hang the
/// benchmark on a proxy that stopped answering.
fn connect(path: &Path) -> anyhow::Result<Raw> {
    Raw::connect(path, false, Wait::Read, Some(Duration::from_secs(30)))
}

/// The floor scenario's process: accepts one client at a time on `listen`, connects it to
/// QEMU at `upstream`, and copies bytes both ways on two blocking threads, parsing nothing.
fn forward(upstream: &Path, listen: &Path) -> anyhow::Result<()> {
    // The previous round's forwarder was killed and left its socket in the bench's own folder.
    let _ = std::fs::remove_file(listen);
    let listener = UnixListener::bind(listen).with_context(|| format!("cannot listen on {}", listen.display()))?;
    for client in listener.incoming() {
        let client = client?;
        let qemu =
            UnixStream::connect(upstream).with_context(|| format!("cannot reach QEMU at {}", upstream.display()))?;
        let (mut from_client, mut to_qemu) = (client.try_clone()?, qemu.try_clone()?);
        let up = std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_client, &mut to_qemu);
            let _ = to_qemu.shutdown(std::net::Shutdown::Write);
        });
        let (mut from_qemu, mut to_client) = (qemu, client);
        let _ = std::io::copy(&mut from_qemu, &mut to_client);
        let _ = to_client.shutdown(std::net::Shutdown::Both);
        let _ = up.join();
    }
    Ok(())
}
