//! `qmp bench sim`: the simulator (`qmp sim`) beside the real QEMU it stands in for
//! (`qemu-system-x86_64 -machine none`), in one run on the same machine, as ratios.
//!
//! Figures: time from process start to the QMP greeting (each side started ten times, best
//! and median), beside the floor of any `qmp` subcommand (`qmp --version`, start to exit);
//! resident memory per VM from `VmRSS` in `/proc/PID/status` with 1, 100 and
//! 10,000 simulated VMs in one `qmp sim --vms N` process, against one QEMU's RSS; and
//! `query-status` round trips, sequential and from 100 concurrent clients, with the
//! server's CPU time per op (all its threads, from `/proc/PID/task/*/schedstat`), against
//! the bare server library answering the same command (`qmp bench server`'s server), the
//! two taking turns over several rounds.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::server::{Load, raise_fd_limit, scenario_row, spawn_self};
use super::shared::{median, median_row, round_trip_cells, rss_bytes, run_and_report};

/// Arguments of `qmp bench sim`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
    /// Round trips per throughput scenario.
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Rounds of the throughput scenarios, the simulator and the bare library taking turns.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Skip the real QEMU (when it is not installed).
    #[arg(long)]
    no_qemu: bool,
}

/// Starts of each program for the greeting figure; the best and the median are reported, the
/// goal is judged on the best, which a noisy machine disturbs least.
const STARTS: usize = 10;

/// Runs the benchmark.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    raise_fd_limit();
    run_and_report("sim", args.json, |dir| measure(&args, dir), print_table)
}

/// A child process that is killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn measure(args: &Args, dir: &Path) -> anyhow::Result<Value> {
    let exe = std::env::current_exe()?;
    // Greeting.
    let mut sim_ms = Vec::new();
    for i in 0..STARTS {
        let path = dir.join(format!("greet-{i}.sock"));
        let start = Instant::now();
        let (child, _) = start_sim(&exe, &["--listen", path.to_str().context("path")?], 1)?;
        greeting(&path)?;
        sim_ms.push(start.elapsed().as_secs_f64() * 1e3);
        drop(child);
    }
    // The floor of any `qmp` subcommand: starting this binary and exiting, with no socket.
    let mut floor_ms = Vec::new();
    for _ in 0..STARTS {
        let start = Instant::now();
        let status = Command::new(&exe).arg("--version").stdout(Stdio::null()).status()?;
        floor_ms.push(start.elapsed().as_secs_f64() * 1e3);
        if !status.success() {
            bail!("qmp --version failed: {status}");
        }
    }
    let (cold_ms, warm_ms) = in_process(dir)?;
    let mut qemu_ms = Vec::new();
    let mut qemu_rss = None;
    if !args.no_qemu {
        for i in 0..STARTS {
            let path = dir.join(format!("qemu-{i}.sock"));
            let start = Instant::now();
            let child = start_qemu(&path)?;
            wait_greeting(&path, Duration::from_secs(30))?;
            qemu_ms.push(start.elapsed().as_secs_f64() * 1e3);
            qemu_rss = Some(rss_bytes(child.0.id())?);
        }
    }
    let best = |v: &[f64]| v.iter().copied().reduce(f64::min);
    let greeting = json!({
        "sim_best_ms": best(&sim_ms),
        "sim_median_ms": median(sim_ms),
        "floor_best_ms": best(&floor_ms),
        "floor_median_ms": median(floor_ms),
        "in_process_first_ms": cold_ms,
        "in_process_best_ms": warm_ms,
        "qemu_best_ms": best(&qemu_ms),
        "qemu_median_ms": if qemu_ms.is_empty() { Value::Null } else { json!(median(qemu_ms)) },
    });

    // Memory per VM.
    let mut memory = Vec::new();
    for vms in [1usize, 100, 10_000] {
        let listen = dir.join(format!("vms-{vms}"));
        let (child, _) =
            start_sim(&exe, &["--vms", &vms.to_string(), "--listen", listen.to_str().context("path")?], vms)?;
        // Every VM listens; let the runtime settle before reading RSS.
        std::thread::sleep(Duration::from_millis(200));
        let rss = rss_bytes(child.0.id())?;
        memory.push(json!({"vms": vms, "rss_bytes": rss, "bytes_per_vm": rss as f64 / vms as f64}));
    }
    let base = memory[0]["rss_bytes"].as_f64().unwrap_or(0.0);
    for row in &mut memory {
        let vms = row["vms"].as_f64().unwrap_or(1.0);
        if vms > 1.0 {
            row["marginal_bytes_per_vm"] = json!((row["rss_bytes"].as_f64().unwrap_or(0.0) - base) / (vms - 1.0));
        }
    }

    // Throughput: the simulator's query-status against the bare library's, both serving at
    // once and measured in turns (the order swapped every round), so that the machine's
    // noise falls on both alike; each figure is the median over the rounds.
    let n = args.n;
    let path = dir.join("sim.sock");
    let (sim, _) = start_sim(&exe, &["--many-clients", "--listen", path.to_str().context("path")?], 1)?;
    let bare_path = dir.join("bare.sock");
    let bare = Process(spawn_self(&["--serve"], &bare_path)?);
    let sides = [("qmp sim", sim.0.id(), &path), ("bare server", bare.0.id(), &bare_path)];
    let loads = [("sequential", Load::Sequential), ("100 concurrent clients", Load::Concurrent)];
    let mut samples: Vec<(String, Vec<Value>)> = Vec::new();
    for round in 0..args.rounds {
        for (load_name, load) in loads {
            let mut order = sides.to_vec();
            if round % 2 == 1 {
                order.reverse();
            }
            for (side, pid, path) in order {
                let name = format!("{side} {load_name}");
                let row = scenario_row(&name, pid, path, load, n)?;
                match samples.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, rows)) => rows.push(row),
                    None => samples.push((name, vec![row])),
                }
            }
        }
    }
    drop(sim);
    drop(bare);
    let keys = ["ops_per_s", "p50_us", "p99_us", "server_cpu_us_per_op"];
    let rows: Vec<Value> = samples.iter().map(|(_, rounds)| median_row(rounds, &keys)).collect();

    let figure = |name: &str, key: &str| rows.iter().find(|r| r["scenario"] == name).and_then(|r| r[key].as_f64());
    let ops = |name: &str| figure(name, "ops_per_s");
    let mut goals = serde_json::Map::new();
    if let (Some(sim), Some(qemu)) = (greeting["sim_best_ms"].as_f64(), greeting["qemu_best_ms"].as_f64()) {
        let ratio = qemu / sim;
        goals.insert("greeting_sooner_than_qemu".into(), json!({"ratio": ratio, "goal": 20, "met": ratio >= 20.0}));
        // The best ratio any `qmp` subcommand could reach on this machine.
        if let Some(floor) = greeting["floor_best_ms"].as_f64() {
            goals.insert("greeting_floor_ratio".into(), json!({"ratio": qemu / floor}));
        }
    }
    let at_10k = memory.last().and_then(|r| r["bytes_per_vm"].as_f64()).unwrap_or(f64::NAN);
    goals
        .insert("bytes_per_idle_vm_at_10000".into(), json!({"value": at_10k, "goal": 65536, "met": at_10k <= 65536.0}));
    for (label, sim, bare) in [
        ("sequential_vs_bare", "qmp sim sequential", "bare server sequential"),
        ("concurrent_vs_bare", "qmp sim 100 concurrent clients", "bare server 100 concurrent clients"),
    ] {
        if let (Some(s), Some(b)) = (ops(sim), ops(bare)) {
            let ratio = s / b;
            goals.insert(label.into(), json!({"ratio": ratio, "goal": 0.9, "met": ratio >= 0.9}));
        }
        // Server CPU per op, which a noisy machine disturbs less than wall-clock throughput:
        // the bare server's cost over the simulator's.
        let cpu = |name: &str| figure(name, "server_cpu_us_per_op");
        if let (Some(s), Some(b)) = (cpu(sim), cpu(bare)) {
            let ratio = b / s;
            goals.insert(format!("{label}_cpu"), json!({"ratio": ratio, "goal": 0.9, "met": ratio >= 0.9}));
        }
    }
    Ok(json!({
        "n": n,
        "rounds": args.rounds,
        "greeting": greeting,
        "memory": memory,
        "qemu_rss_bytes": qemu_rss,
        "round_trips": rows,
        "goals": goals,
    }))
}

/// Time from `Sim::builder().start()` to a greeting inside this process, as a test that
/// embeds the simulator pays it: the first simulator (which indexes the profile's schema)
/// and the best of the next ones.
fn in_process(dir: &Path) -> anyhow::Result<(f64, f64)> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let mut times = Vec::new();
        for i in 0..=STARTS {
            let path = dir.join(format!("in-process-{i}.sock"));
            let start = Instant::now();
            let sim =
                qmpkit_sim::Sim::builder().listen(qmpkit::transport::Endpoint::Unix(path.clone())).start().await?;
            let greeted = tokio::task::spawn_blocking(move || greeting(&path)).await?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
            greeted?;
            sim.stop().await?;
        }
        let first = times.remove(0);
        Ok((first, times.into_iter().reduce(f64::min).unwrap_or(f64::NAN)))
    })
}

/// Starts `qmp sim` with `args` and waits until it printed `lines` addresses (one per VM).
fn start_sim(exe: &Path, args: &[&str], lines: usize) -> anyhow::Result<(Process, Vec<String>)> {
    let mut child = Command::new(exe)
        .arg("sim")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let process = Process(child);
    let mut reader = BufReader::new(stdout);
    let mut printed = Vec::with_capacity(lines);
    for _ in 0..lines {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("qmp sim ended before it listened");
        }
        printed.push(line.trim().to_owned());
    }
    // Keep reading (and discarding) so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    Ok((process, printed))
}

/// `qemu-system-x86_64 -machine none`, as `qmp sim` stands in for it.
fn start_qemu(path: &Path) -> anyhow::Result<Process> {
    let qmp = format!("unix:{},server=on,wait=off", path.display());
    let child = Command::new("qemu-system-x86_64")
        .args(["-machine", "none", "-S", "-display", "none", "-nodefaults", "-qmp", &qmp])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting qemu-system-x86_64 (use --no-qemu to skip it)")?;
    Ok(Process(child))
}

/// Connects and reads the greeting.
fn greeting(path: &Path) -> anyhow::Result<()> {
    let mut stream = UnixStream::connect(path)?;
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("EOF before the greeting");
        }
        got.extend_from_slice(&buf[..n]);
    }
    if !got.starts_with(b"{\"QMP\"") {
        bail!("not a greeting: {}", String::from_utf8_lossy(&got));
    }
    Ok(())
}

/// As [`greeting`], retrying until the socket exists: QEMU says nothing when it listens.
fn wait_greeting(path: &Path, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        match greeting(path) {
            Ok(()) => return Ok(()),
            Err(_) if start.elapsed() < timeout => std::thread::sleep(Duration::from_micros(500)),
            Err(err) => return Err(err.context("QEMU gave no greeting")),
        }
    }
}

fn print_table(report: &Value) {
    let mib = |b: f64| b / 1048576.0;
    println!(
        "qmp bench sim: qmp sim vs qemu-system-x86_64 -machine none; {} round trips per scenario, medians of {} rounds",
        report["n"], report["rounds"]
    );
    println!();
    let g = &report["greeting"];
    let ms = |key: &str| g[key].as_f64().unwrap_or(f64::NAN);
    println!("| start to greeting | best ms | median ms |");
    println!("|---|---:|---:|");
    println!("| qmp sim | {:.1} | {:.1} |", ms("sim_best_ms"), ms("sim_median_ms"));
    println!("| QEMU | {:.1} | {:.1} |", ms("qemu_best_ms"), ms("qemu_median_ms"));
    println!(
        "| qmp --version (start and exit: the floor) | {:.1} | {:.1} |",
        ms("floor_best_ms"),
        ms("floor_median_ms")
    );
    println!("| Sim::start in process, first | {:.2} | - |", ms("in_process_first_ms"));
    println!("| Sim::start in process, later | {:.2} | - |", ms("in_process_best_ms"));
    println!();
    println!("| VMs in one process | RSS | per VM | marginal per VM |");
    println!("|---:|---:|---:|---:|");
    for row in report["memory"].as_array().into_iter().flatten() {
        println!(
            "| {} | {:.1} MiB | {:.1} KiB | {} |",
            row["vms"],
            mib(row["rss_bytes"].as_f64().unwrap_or(0.0)),
            row["bytes_per_vm"].as_f64().unwrap_or(0.0) / 1024.0,
            row["marginal_bytes_per_vm"].as_f64().map_or("-".to_owned(), |b| format!("{:.1} KiB", b / 1024.0)),
        );
    }
    if let Some(qemu) = report["qemu_rss_bytes"].as_f64() {
        println!("| QEMU (1 per process) | {:.1} MiB | {:.1} MiB | - |", mib(qemu), mib(qemu));
    }
    println!();
    println!("| query-status | ops/s | p50 µs | p99 µs | server CPU µs/op |");
    println!("|---|---:|---:|---:|---:|");
    for row in report["round_trips"].as_array().into_iter().flatten() {
        let cpu = row["server_cpu_us_per_op"].as_f64().unwrap_or(0.0);
        println!("{} | {cpu:.2} |", round_trip_cells(row));
    }
    println!();
    for (name, goal) in report["goals"].as_object().into_iter().flatten() {
        println!("goal {name}: {goal}");
    }
}
