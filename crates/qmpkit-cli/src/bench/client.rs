//! `qmp bench client`: qmpkit's client against a real QEMU it starts, beside a raw client
//! (the floor: write the command, read one line, parse it) and Python's `qemu.qmp`, all doing
//! the same work against the same QEMU in one run, in rotating order, so the figures can be
//! read as ratios on a noisy machine.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use qmpkit::launch::{Instance, Launcher};
use serde::Serialize;

use super::{Figures, cpu_time, find_python, median_figures};

/// The Python side, run from the venv.
const PYTHON_CLIENT: &str = include_str!("qemu_qmp_client.py");

/// Arguments of `qmp bench client`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Round trips per measured loop (schema fetches are a twentieth of this).
    #[arg(long, default_value_t = 5000)]
    count: usize,
    /// Rounds; each figure is the median over rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The Python with qemu.qmp (default: $QMPKIT_PYTHON, then target/venv/bin/python).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Run only these clients (raw, qmpkit, qemu.qmp).
    #[arg(long, value_delimiter = ',')]
    clients: Option<Vec<String>>,
    /// Run only these workloads (seq, concurrent, schema).
    #[arg(long, value_delimiter = ',')]
    workloads: Option<Vec<String>>,
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
}

const WORKLOADS: [&str; 3] = ["seq", "concurrent", "schema"];
/// `raw` sends what a minimal client sends (`{"execute":"query-status"}`); `raw-id` sends
/// exactly qmpkit's bytes (the same command with an integer id). QEMU reads its input one
/// byte per system call, so the few bytes of an id cost QEMU time; comparing with `raw-id`
/// separates the client's own overhead from the size of what it sends. `qmpkit` decodes each
/// result into a `serde_json::Value` (`Client::execute`); `qmpkit-json` takes it as undecoded
/// JSON text (`Client::execute_raw_json`), the way to fetch a large result that is passed on or
/// decoded into one's own types. `qmpkit-lean` sends in-band commands without ids
/// (`ClientBuilder::in_band_ids(false)`), the same bytes as `raw`.
const CLIENTS: [&str; 6] = ["raw", "raw-id", "qmpkit", "qmpkit-lean", "qmpkit-json", "qemu.qmp"];

#[derive(Debug, Serialize)]
struct Report {
    qemu: String,
    count: usize,
    rounds: usize,
    /// Figures by workload, then by client.
    results: Vec<(String, Vec<(String, Figures)>)>,
    ratios: Ratios,
}

#[derive(Debug, Serialize)]
struct Ratios {
    /// qmpkit's sequential ops/s over the raw client's (goal: at least 0.95).
    seq_ops_vs_raw: f64,
    /// qmpkit's sequential ops/s over the raw client sending the same bytes.
    seq_ops_vs_raw_id: f64,
    /// qmpkit without in-band ids: sequential ops/s over the raw client's (the same bytes).
    lean_seq_ops_vs_raw: f64,
    /// qmpkit's CPU per sequential op over qemu.qmp's (goal: at most 1/6).
    seq_cpu_vs_qemu_qmp: f64,
    /// qmpkit's CPU per concurrent op over qemu.qmp's.
    concurrent_cpu_vs_qemu_qmp: f64,
    /// qmpkit's CPU per schema fetch decoded into a `Value`, in microseconds.
    schema_cpu_us: f64,
    /// qmpkit's CPU per schema fetch as undecoded JSON, in microseconds (goal: at most 1000).
    schema_json_cpu_us: f64,
    /// qmpkit's CPU per schema fetch over qemu.qmp's.
    schema_cpu_vs_qemu_qmp: f64,
}

/// Runs the benchmark.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let wanted = |list: &Option<Vec<String>>, item: &str| list.as_ref().is_none_or(|l| l.iter().any(|x| x == item));
    let python = find_python(args.python.clone())?;
    let qemu = Launcher::system().start().context("starting QEMU")?;
    let socket = qemu.qmp_socket().to_path_buf();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let version = runtime.block_on(async {
        let client = qmpkit::Client::connect(socket.display().to_string()).await?;
        let version = client.query_version().await?;
        client.close().await;
        anyhow::Ok(version.qemu.to_string())
    })?;

    let mut samples: Vec<Vec<Vec<Figures>>> = vec![vec![Vec::new(); CLIENTS.len()]; WORKLOADS.len()];
    for round in 0..args.rounds {
        for (w, workload) in WORKLOADS.iter().enumerate() {
            if !wanted(&args.workloads, workload) {
                continue;
            }
            let count = if *workload == "schema" { (args.count / 20).max(1) } else { args.count };
            // Rotate the order each round so that no client always runs first or last.
            for offset in 0..CLIENTS.len() {
                let c = (offset + round) % CLIENTS.len();
                if !wanted(&args.clients, CLIENTS[c]) {
                    continue;
                }
                let figures = match CLIENTS[c] {
                    "raw" | "raw-id" if *workload == "concurrent" => continue,
                    "raw" => raw(&socket, workload, count, false)?,
                    "raw-id" => raw(&socket, workload, count, true)?,
                    "qmpkit-lean" if *workload == "schema" => continue,
                    client @ ("qmpkit" | "qmpkit-json" | "qmpkit-lean") => {
                        let (socket, workload) = (socket.clone(), (*workload).to_owned());
                        let variant = client.to_owned();
                        // As a spawned task, not as `block_on`'s own future, which the
                        // current-thread runtime polls with extra I/O checks.
                        let task = async move { qmpkit_client(&socket, &workload, count, &variant).await };
                        runtime.block_on(runtime.spawn(task))??
                    }
                    _ => python_client(&python, &qemu, workload, count)?,
                };
                samples[w][c].push(figures);
            }
        }
    }

    let results: Vec<(String, Vec<(String, Figures)>)> = WORKLOADS
        .iter()
        .zip(&samples)
        .map(|(workload, by_client)| {
            let figures = CLIENTS
                .iter()
                .zip(by_client)
                .filter(|(_, s)| !s.is_empty())
                .map(|(client, s)| ((*client).to_owned(), median_figures(s)))
                .collect();
            ((*workload).to_owned(), figures)
        })
        .collect();
    let get = |workload: &str, client: &str| -> Figures {
        results
            .iter()
            .find(|(w, _)| w == workload)
            .and_then(|(_, f)| f.iter().find(|(c, _)| c == client))
            .map(|(_, f)| *f)
            .unwrap_or_default()
    };
    let ratios = Ratios {
        seq_ops_vs_raw: get("seq", "qmpkit").ops_per_sec / get("seq", "raw").ops_per_sec,
        seq_ops_vs_raw_id: get("seq", "qmpkit").ops_per_sec / get("seq", "raw-id").ops_per_sec,
        lean_seq_ops_vs_raw: get("seq", "qmpkit-lean").ops_per_sec / get("seq", "raw").ops_per_sec,
        seq_cpu_vs_qemu_qmp: get("seq", "qmpkit").cpu_us_per_op / get("seq", "qemu.qmp").cpu_us_per_op,
        concurrent_cpu_vs_qemu_qmp: get("concurrent", "qmpkit").cpu_us_per_op
            / get("concurrent", "qemu.qmp").cpu_us_per_op,
        schema_cpu_us: get("schema", "qmpkit").cpu_us_per_op,
        schema_json_cpu_us: get("schema", "qmpkit-json").cpu_us_per_op,
        schema_cpu_vs_qemu_qmp: get("schema", "qmpkit").cpu_us_per_op / get("schema", "qemu.qmp").cpu_us_per_op,
    };
    let report = Report { qemu: version, count: args.count, rounds: args.rounds, results, ratios };
    super::shared::report(args.json, &report, print_table)
}

fn print_table(report: &Report) {
    println!(
        "qmp bench client: QEMU {}, {} round trips per loop ({} schema fetches), median of {} rounds",
        report.qemu,
        report.count,
        (report.count / 20).max(1),
        report.rounds
    );
    println!();
    println!("| workload | client | ops/s | client CPU µs/op |");
    println!("|---|---|---:|---:|");
    for (workload, figures) in &report.results {
        for (client, f) in figures {
            println!("| {workload} | {client} | {:.0} | {:.1} |", f.ops_per_sec, f.cpu_us_per_op);
        }
    }
    let r = &report.ratios;
    println!();
    println!("| ratio | value | goal |");
    println!("|---|---:|---|");
    println!("| qmpkit seq ops/s / raw seq ops/s | {:.3} | >= 0.95 |", r.seq_ops_vs_raw);
    println!("| qmpkit seq ops/s / raw-id seq ops/s (same bytes) | {:.3} | |", r.seq_ops_vs_raw_id);
    println!("| qmpkit-lean seq ops/s / raw seq ops/s (same bytes) | {:.3} | >= 0.95 |", r.lean_seq_ops_vs_raw);
    println!(
        "| qmpkit seq CPU/op / qemu.qmp seq CPU/op | {:.3} (1/{:.1}) | <= 1/6 |",
        r.seq_cpu_vs_qemu_qmp,
        1.0 / r.seq_cpu_vs_qemu_qmp
    );
    println!(
        "| qmpkit concurrent CPU/op / qemu.qmp concurrent CPU/op | {:.3} (1/{:.1}) | |",
        r.concurrent_cpu_vs_qemu_qmp,
        1.0 / r.concurrent_cpu_vs_qemu_qmp
    );
    println!("| qmpkit CPU per schema fetch, as a Value (µs) | {:.0} | |", r.schema_cpu_us);
    println!("| qmpkit CPU per schema fetch, as JSON text (µs) | {:.0} | <= 1000 |", r.schema_json_cpu_us);
    println!(
        "| qmpkit schema CPU / qemu.qmp schema CPU | {:.3} (1/{:.1}) | |",
        r.schema_cpu_vs_qemu_qmp,
        1.0 / r.schema_cpu_vs_qemu_qmp
    );
}

fn figures(ops: usize, wall: Duration, cpu: Duration) -> Figures {
    #[allow(clippy::cast_precision_loss)]
    let ops = ops as f64;
    Figures { ops_per_sec: ops / wall.as_secs_f64(), cpu_us_per_op: cpu.as_secs_f64() * 1e6 / ops }
}

/// The floor: a blocking socket, one command written, one line read and parsed. With `ids`,
/// each command carries an integer id, exactly as qmpkit writes it.
fn raw(socket: &std::path::Path, workload: &str, count: usize, ids: bool) -> anyhow::Result<Figures> {
    let stream = UnixStream::connect(socket)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = Vec::new();
    let mut read_reply = |line: &mut Vec<u8>| -> anyhow::Result<serde_json::Value> {
        loop {
            line.clear();
            reader.read_until(b'\n', line)?;
            let value: serde_json::Value = serde_json::from_slice(line)?;
            if value.get("event").is_none() {
                return Ok(value);
            }
        }
    };
    read_reply(&mut line)?;
    writer.write_all(b"{\"execute\":\"qmp_capabilities\"}")?;
    read_reply(&mut line)?;
    let name = if workload == "schema" { "query-qmp-schema" } else { "query-status" };
    let plain = format!("{{\"execute\":\"{name}\"}}");
    let mut command = Vec::with_capacity(64);
    let (wall0, cpu0) = (Instant::now(), cpu_time());
    for n in 0..count {
        command.clear();
        if ids {
            write!(command, "{{\"execute\":\"{name}\",\"id\":{n}}}")?;
        } else {
            command.extend_from_slice(plain.as_bytes());
        }
        writer.write_all(&command)?;
        let reply = read_reply(&mut line)?;
        if reply.get("return").is_none() {
            bail!("raw client: unexpected reply {reply}");
        }
    }
    Ok(figures(count, wall0.elapsed(), cpu_time() - cpu0))
}

async fn qmpkit_client(
    socket: &std::path::Path,
    workload: &str,
    count: usize,
    variant: &str,
) -> anyhow::Result<Figures> {
    let json = variant == "qmpkit-json";
    let builder = qmpkit::Client::builder().in_band_ids(variant != "qmpkit-lean");
    let client = builder.connect(socket.display().to_string()).await?;
    let call = move |client: qmpkit::Client, name: &'static str| async move {
        if json { client.execute_raw_json(name, ()).await.map(drop) } else { client.execute(name, ()).await.map(drop) }
    };
    let (wall0, cpu0) = (Instant::now(), cpu_time());
    let ops = match workload {
        "seq" => {
            for _ in 0..count {
                call(client.clone(), "query-status").await?;
            }
            count
        }
        "concurrent" => {
            let per_task = count / 8;
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        for _ in 0..per_task {
                            call(client.clone(), "query-status").await?;
                        }
                        anyhow::Ok(())
                    })
                })
                .collect();
            for task in tasks {
                task.await??;
            }
            per_task * 8
        }
        _ => {
            for _ in 0..count {
                call(client.clone(), "query-qmp-schema").await?;
            }
            count
        }
    };
    let result = figures(ops, wall0.elapsed(), cpu_time() - cpu0);
    client.close().await;
    Ok(result)
}

fn python_client(python: &std::path::Path, qemu: &Instance, workload: &str, count: usize) -> anyhow::Result<Figures> {
    let output = Command::new(python)
        .arg("-c")
        .arg(PYTHON_CLIENT)
        .arg(qemu.qmp_socket())
        .arg(workload)
        .arg(count.to_string())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !output.status.success() {
        bail!("the qemu.qmp client failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    #[derive(serde::Deserialize)]
    struct Out {
        ops: usize,
        wall: f64,
        cpu: f64,
    }
    let out: Out = serde_json::from_slice(&output.stdout).context("reading the qemu.qmp client's figures")?;
    Ok(figures(out.ops, Duration::from_secs_f64(out.wall), Duration::from_secs_f64(out.cpu)))
}
