//! `qmp bench proxy`: `qmp proxy` in front of a real QEMU, measured in one run against the same
//! QEMU without it, all driven by one raw blocking client written here.
//!
//! The proxy is this binary's `qmp proxy` in a process of its own, so that its CPU time is read
//! from `/proc` exactly as QEMU's is (`/proc/PID/task/*/schedstat`, nanoseconds, all threads).
//!
//! Beside it stand two floors, this binary in hidden modes that parse nothing: a byte
//! forwarder (two blocking threads copying bytes), the floor of any proxy in a process of its
//! own, and an event-loop forwarder (a tokio current-thread runtime that, per message, waits
//! for readiness, reads once and writes at once), the floor of any event-loop proxy, which
//! `qmp proxy` is. What they add, the hop costs on this machine whatever the proxy does.
//!
//! The single-client scenarios (direct, proxy, both forwarders) are measured side by side: QEMU
//! has a QMP monitor of its own for each (a monitor serves one client at a time), all their
//! connections are open at once, and they take their round trips in small blocks in turn, so
//! that a slow phase of this noisy host falls on all of them alike. Each round starts fresh
//! processes in front of QEMU, then runs the interleaved set, then the proxy with 10 and 100
//! concurrent clients. The table shows each figure's median over the rounds; the goals and
//! floors are medians of ratios taken within each round, which a slow round cannot skew the
//! way it skews a ratio of medians.

use std::ffi::{OsStr, OsString};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use qmpkit::launch::{Instance, Launcher};
use qmpkit::transport::{Socket, Stream};
use serde_json::{Map, Value, json};

use super::shared::{Raw, Wait, cpu_ns, median_row, round_trip_cells, run_and_report};

/// Round trips a single-client scenario takes in one turn before the next one has its turn.
/// A block lasts about 20 ms here and a turn of all four scenarios under 100 ms, short next
/// to the host's slow phases, so all scenarios see the same machine; longer blocks would let a
/// phase fall on one scenario only, and shorter ones would make the switch between
/// connections (and the `/proc` reads around each block) touch more of the round trips.
///
/// Each block starts with one round trip that is not counted with the others. The first round
/// trip after a scenario's pause finds its processes' caches cold, and with one in a hundred
/// it would be the p99 itself, a figure of the switching rather than of the path; every
/// scenario sets it apart alike, and the table shows the median of those first round trips
/// in a column of its own (what a client that sends a command now and then waits).
const BLOCK: usize = 100;

/// A process standing in front of QEMU in a single-client scenario.
struct Front {
    /// The row's name in the table.
    name: &'static str,
    /// The prefix of its ratios in the JSON, and the name of its sockets.
    key: &'static str,
    /// The hidden mode of `qmp bench proxy` it runs, or `None` for `qmp proxy` itself.
    mode: Option<&'static str>,
}

/// The processes in front of QEMU, in the order of the table's rows after the direct one: the
/// proxy first, then the two floors.
const FRONTS: [Front; 3] = [
    Front { name: "proxy, 1 client", key: "proxy", mode: None },
    Front { name: "byte forwarder (floor), 1 client", key: "byte_forwarder", mode: Some("--forward") },
    Front {
        name: "event-loop forwarder (floor), 1 client",
        key: "event_loop_forwarder",
        mode: Some("--forward-evented"),
    },
];

/// The numbers of concurrent clients the proxy serves after the single-client scenarios; the
/// last one's throughput is a goal.
const MANY_CLIENTS: [usize; 2] = [10, 100];

/// Arguments of `qmp bench proxy`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
    /// Round trips per scenario and round.
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Rounds of every scenario, each with fresh processes in front of QEMU; figures are medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Ask QEMU for no `oob` on any path: not the proxy upstream, nor the single clients that
    /// reach QEMU directly or through a forwarder (by default they all ask for it).
    #[arg(long)]
    no_oob: bool,
    /// Internal: forward clients byte for byte to the QEMU socket UPSTREAM from the socket
    /// LISTEN, one at a time, on two blocking threads (the byte forwarder's process).
    #[arg(long, hide = true, num_args = 2, value_names = ["UPSTREAM", "LISTEN"])]
    forward: Option<Vec<PathBuf>>,
    /// Internal: as `--forward`, on a tokio current-thread runtime (the event-loop
    /// forwarder's process).
    #[arg(long, hide = true, num_args = 2, value_names = ["UPSTREAM", "LISTEN"], conflicts_with = "forward")]
    forward_evented: Option<Vec<PathBuf>>,
}

/// Runs the benchmark.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if let Some([upstream, listen]) = args.forward.as_deref() {
        return forward(upstream, listen);
    }
    if let Some([upstream, listen]) = args.forward_evented.as_deref() {
        return forward_evented(upstream, listen);
    }
    run_and_report("proxy", args.json, |dir| measure(args.n, args.rounds, args.no_oob, dir), print_table)
}

/// Every round against one QEMU, whose sockets and the fronts' are in `dir`, and the report:
/// each scenario's medians over the rounds, each round's ratios, and the goals and floors
/// from the medians of those ratios.
fn measure(n: usize, rounds: usize, no_oob: bool, dir: &Path) -> anyhow::Result<Value> {
    let qemu = start_qemu(dir)?;
    let mut samples: Vec<Vec<Value>> = vec![Vec::new(); 1 + FRONTS.len() + MANY_CLIENTS.len()];
    let mut per_round = Vec::new();
    for _ in 0..rounds.max(1) {
        let rows = round(&qemu, n, no_oob, dir)?;
        per_round.push(relative(&rows));
        for (sample, row) in samples.iter_mut().zip(rows) {
            sample.push(row);
        }
    }
    let keys =
        ["ops_per_s", "p50_us", "p99_us", "first_after_pause_p50_us", "qemu_cpu_us_per_op", "proxy_cpu_us_per_op"];
    let rows: Vec<Value> = samples.iter().map(|rounds| median_row(rounds, &keys)).collect();
    let ratio_keys: Vec<&str> = per_round[0].as_object().into_iter().flatten().map(|(k, _)| k.as_str()).collect();
    let ratios = median_row(&per_round, &ratio_keys);
    Ok(json!({
        "n": n,
        "rounds": rounds,
        "block": BLOCK,
        "upstream_oob": !no_oob,
        "scenarios": rows,
        "per_round": per_round,
        "goals": goals(&ratios),
        "floors": floors(&ratios),
    }))
}

/// Starts QEMU with one QMP monitor more for each process in front of it, listening in `dir`
/// (a monitor serves one client at a time, and the single-client scenarios run side by side).
fn start_qemu(dir: &Path) -> anyhow::Result<Qemu> {
    let monitors: Vec<PathBuf> = FRONTS.iter().map(|front| dir.join(format!("qemu-{}.sock", front.key))).collect();
    // The launcher adds `-machine none` only when given no arguments.
    let mut args: Vec<OsString> = vec!["-machine".into(), "none".into()];
    for (front, path) in FRONTS.iter().zip(&monitors) {
        let chardev = format!("socket,id={},path={},server=on,wait=off", front.key, path.display());
        args.extend([
            "-chardev".into(),
            chardev.into(),
            "-mon".into(),
            format!("chardev={},mode=control", front.key).into(),
        ]);
    }
    let instance = Launcher::system().args(args).start().context("starting QEMU")?;
    Ok(Qemu { pid: instance.pid().unsigned_abs(), instance, monitors })
}

/// The QEMU under measurement.
struct Qemu {
    pid: u32,
    /// Killed when dropped.
    instance: Instance,
    /// The monitor of each of [`FRONTS`], in order; the direct scenario has the instance's own.
    monitors: Vec<PathBuf>,
}

/// One round: fresh processes in front of QEMU, the single-client scenarios side by side, then
/// the proxy with many clients. The rows are in the order of the table's.
fn round(qemu: &Qemu, n: usize, no_oob: bool, dir: &Path) -> anyhow::Result<Vec<Value>> {
    let fronts: Vec<Running> = FRONTS
        .iter()
        .zip(&qemu.monitors)
        .map(|(front, monitor)| Running::start(front, monitor, &dir.join(format!("{}.sock", front.key)), no_oob))
        .collect::<Result<_, _>>()?;
    // Every path asks QEMU for the same: with `oob` unless `--no-oob`, as the proxy does
    // upstream. QEMU works less per in-band command with `oob` on (it does not suspend and
    // resume the monitor around each one), so a direct client without it would make the
    // proxy look better than it is.
    let oob = !no_oob;
    let direct = connect(qemu.instance.qmp_socket(), oob)?;
    let mut lanes = vec![Lane { name: "direct, 1 client", raw: direct, front: None }];
    for (front, running) in FRONTS.iter().zip(&fronts) {
        lanes.push(Lane { name: front.name, raw: connect(&running.listen, oob)?, front: Some(running.pid()) });
    }
    let mut rows = interleaved(&mut lanes, qemu.pid, n)?;
    drop(lanes);
    let proxy = &fronts[0];
    for clients in MANY_CLIENTS {
        let name = format!("proxy, {clients} clients");
        let mut tally = Tally::default();
        tally.add(qemu.pid, Some(proxy.pid()), || concurrent(&proxy.listen, clients, n))?;
        rows.push(tally.row(&name));
    }
    Ok(rows)
}

/// A single-client scenario's connection, and the process in front of QEMU on its path.
struct Lane {
    name: &'static str,
    raw: Raw,
    front: Option<u32>,
}

/// The single-client scenarios side by side: `n` round trips each, taken in blocks of
/// [`BLOCK`] in turn. The scenario that goes first moves on by one each turn, so that none
/// always comes right after the same other one.
fn interleaved(lanes: &mut [Lane], qemu: u32, n: usize) -> anyhow::Result<Vec<Value>> {
    let mut tallies: Vec<Tally> = lanes.iter().map(|_| Tally::default()).collect();
    let mut done = 0;
    let mut turn = 0;
    while done < n {
        let block = BLOCK.min(n - done);
        for k in 0..lanes.len() {
            let i = (turn + k) % lanes.len();
            let lane = &mut lanes[i];
            tallies[i].first.extend(lane.raw.round_trips(1)?);
            tallies[i].add(qemu, lane.front, || lane.raw.round_trips(block))?;
        }
        done += block;
        turn += 1;
    }
    Ok(lanes.iter().zip(tallies).map(|(lane, tally)| tally.row(lane.name)).collect())
}

/// A scenario's latencies, wall time, and CPU time of QEMU and of the process in front of it,
/// gathered over one or more measured runs.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    /// The round trips that each come first after a pause, set apart (see [`BLOCK`]).
    first: Vec<Duration>,
    elapsed: Duration,
    qemu_ns: u64,
    front_ns: Option<u64>,
}

impl Tally {
    /// Runs `f` and adds its latencies and wall time, and the CPU time that QEMU (`qemu`) and
    /// the process in front of it (`front`) spent meanwhile.
    fn add(
        &mut self,
        qemu: u32,
        front: Option<u32>,
        f: impl FnOnce() -> anyhow::Result<Vec<Duration>>,
    ) -> anyhow::Result<()> {
        let qemu0 = cpu_ns(qemu)?;
        let front0 = front.map(cpu_ns).transpose()?;
        let start = Instant::now();
        self.latencies.extend(f()?);
        self.elapsed += start.elapsed();
        // A thread that ended meanwhile takes its time out of the sum; never count that as
        // negative time.
        self.qemu_ns += cpu_ns(qemu)?.saturating_sub(qemu0);
        if let (Some(pid), Some(before)) = (front, front0) {
            *self.front_ns.get_or_insert(0) += cpu_ns(pid)?.saturating_sub(before);
        }
        Ok(())
    }

    /// The scenario's row in the table.
    fn row(mut self, name: &str) -> Value {
        self.latencies.sort_unstable();
        let ops = self.latencies.len();
        // With no round trips (`--n 0`) the percentiles are NaN, which JSON shows as null.
        let pct = |p: f64| {
            let at = ((ops as f64 * p) as usize).min(ops.saturating_sub(1));
            self.latencies.get(at).map_or(f64::NAN, |l| l.as_secs_f64() * 1e6)
        };
        self.first.sort_unstable();
        let first_p50 = self.first.get(self.first.len() / 2).map(|l| l.as_secs_f64() * 1e6);
        json!({
            "scenario": name,
            "ops": ops,
            "ops_per_s": ops as f64 / self.elapsed.as_secs_f64(),
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
            "first_after_pause_p50_us": first_p50,
            "qemu_cpu_us_per_op": self.qemu_ns as f64 / 1e3 / ops as f64,
            "proxy_cpu_us_per_op": self.front_ns.map(|c| c as f64 / 1e3 / ops as f64),
        })
    }
}

/// One round's ratios, all against its direct scenario (the first row): for each process in
/// front of QEMU, the latency it adds at p50 and p99 and its CPU time per command as a fraction
/// of QEMU's, and the throughput of the proxy's most clients against one client direct.
fn relative(rows: &[Value]) -> Value {
    let figure = |row: &Value, key: &str| row[key].as_f64().unwrap_or(f64::NAN);
    let direct = &rows[0];
    let mut ratios = Map::new();
    for (front, row) in FRONTS.iter().zip(&rows[1..]) {
        let key = front.key;
        ratios.insert(format!("{key}_added_p50"), json!(figure(row, "p50_us") / figure(direct, "p50_us") - 1.0));
        ratios.insert(format!("{key}_added_p99"), json!(figure(row, "p99_us") / figure(direct, "p99_us") - 1.0));
        let cpu = figure(row, "proxy_cpu_us_per_op") / figure(direct, "qemu_cpu_us_per_op");
        ratios.insert(format!("{key}_cpu_vs_qemu"), json!(cpu));
    }
    let most = rows.last().map_or(f64::NAN, |row| figure(row, "ops_per_s"));
    ratios.insert("ops_100_clients_vs_direct_1_client".into(), json!(most / figure(direct, "ops_per_s")));
    Value::Object(ratios)
}

/// The goals for the proxy, from the medians of the rounds' ratios.
fn goals(ratios: &Value) -> Value {
    let r = |key: &str| ratios[key].as_f64().unwrap_or(f64::NAN);
    let (p50, p99, cpu) = (r("proxy_added_p50"), r("proxy_added_p99"), r("proxy_cpu_vs_qemu"));
    let throughput = r("ops_100_clients_vs_direct_1_client");
    json!({
        "added_latency_p50": {"measured": p50, "goal": "<= 0.10", "met": p50 <= 0.10},
        "added_latency_p99": {"measured": p99, "goal": "<= 0.10", "met": p99 <= 0.10},
        "ops_100_clients_vs_direct_1_client": {"measured": throughput, "goal": ">= 1.0", "met": throughput >= 1.0},
        "proxy_cpu_vs_qemu_cpu_per_command": {"measured": cpu, "goal": "<= 0.2", "met": cpu <= 0.2},
    })
}

/// What each floor adds, from the medians of the rounds' ratios, for reading the goals.
fn floors(ratios: &Value) -> Value {
    let floors: Map<String, Value> = FRONTS[1..]
        .iter()
        .map(|front| {
            let key = front.key;
            let floor = json!({
                "added_latency_p50": ratios[format!("{key}_added_p50")],
                "added_latency_p99": ratios[format!("{key}_added_p99")],
                "cpu_vs_qemu_cpu_per_command": ratios[format!("{key}_cpu_vs_qemu")],
            });
            (key.to_owned(), floor)
        })
        .collect();
    Value::Object(floors)
}

fn print_table(report: &Value) {
    let figure = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "qmp bench proxy: {} sequential query-status round trips per scenario and round, shared among \
         the clients; single-client scenarios side by side in blocks of {}; median of {} rounds; \
         oob with QEMU on every path: {}",
        report["n"], report["block"], report["rounds"], report["upstream_oob"]
    );
    println!();
    println!("| scenario | ops/s | p50 µs | p99 µs | first after a pause, p50 µs | QEMU CPU µs/op | proxy CPU µs/op |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let optional = |v: &Value, decimals: usize| v.as_f64().map_or(String::new(), |c| format!("{c:.decimals$}"));
    for row in report["scenarios"].as_array().into_iter().flatten() {
        let first = optional(&row["first_after_pause_p50_us"], 1);
        let proxy = optional(&row["proxy_cpu_us_per_op"], 2);
        println!("{} | {first} | {:.2} | {proxy} |", round_trip_cells(row), figure(&row["qemu_cpu_us_per_op"]));
    }
    println!();
    print_rounds(report);
    println!();
    let floor = |key: &str| {
        let f = &report["floors"][key];
        format!(
            "p50 {:+.1}%, p99 {:+.1}%, and spends {:.3} of QEMU's CPU per command",
            figure(&f["added_latency_p50"]) * 100.0,
            figure(&f["added_latency_p99"]) * 100.0,
            figure(&f["cpu_vs_qemu_cpu_per_command"]),
        )
    };
    println!("The floor of any proxy in a process of its own (the byte forwarder) adds {}.", floor("byte_forwarder"));
    println!("The floor of any event-loop proxy (the event-loop forwarder) adds {}.", floor("event_loop_forwarder"));
    println!();
    println!("| goal (median of the rounds' ratios) | measured | target | met |");
    println!("|---|---:|---|---|");
    for (name, goal) in report["goals"].as_object().into_iter().flatten() {
        println!(
            "| {name} | {:.3} | {} | {} |",
            figure(&goal["measured"]),
            goal["goal"].as_str().unwrap_or_default(),
            if goal["met"] == true { "yes" } else { "no" }
        );
    }
}

/// Each round's ratios against its own direct scenario: added p50 and p99, and CPU per command
/// as a fraction of QEMU's, for the proxy and each floor.
fn print_rounds(report: &Value) {
    let header: String = FRONTS.iter().map(|f| format!(" {0} p50 | {0} p99 | {0} CPU |", f.key)).collect();
    println!("| round |{header}");
    println!("|---:|{}", "---:|".repeat(3 * FRONTS.len()));
    for (i, round) in report["per_round"].as_array().into_iter().flatten().enumerate() {
        let cells: String = FRONTS
            .iter()
            .map(|f| {
                let r = |suffix: &str| round[format!("{}_{suffix}", f.key)].as_f64().unwrap_or(f64::NAN);
                format!(
                    " {:+.1}% | {:+.1}% | {:.3} |",
                    r("added_p50") * 100.0,
                    r("added_p99") * 100.0,
                    r("cpu_vs_qemu")
                )
            })
            .collect();
        println!("| {} |{cells}", i + 1);
    }
}

/// `qmp proxy`, or a forwarder, in a process of its own, killed when dropped.
struct Running {
    child: Child,
    /// Where it serves clients.
    listen: PathBuf,
}

impl Running {
    /// Starts `front` in front of QEMU's monitor at `upstream`, and waits until it serves a
    /// client on `listen`.
    fn start(front: &Front, upstream: &Path, listen: &Path, no_oob: bool) -> anyhow::Result<Running> {
        let mut args: Vec<&OsStr> = Vec::new();
        match front.mode {
            None => {
                args.push("proxy".as_ref());
                if no_oob {
                    args.push("--no-oob".as_ref());
                }
                args.extend(["--upstream".as_ref(), upstream.as_os_str(), "--listen".as_ref(), listen.as_os_str()]);
            }
            Some(mode) => args.extend([
                "bench".as_ref(),
                "proxy".as_ref(),
                mode.as_ref(),
                upstream.as_os_str(),
                listen.as_os_str(),
            ]),
        }
        let child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting the {}", front.key))?;
        let running = Running { child, listen: listen.to_owned() };
        // Ready when a client is served: the proxy listens before it reaches QEMU.
        let deadline = Instant::now() + Duration::from_secs(10);
        while connect(listen, false).is_err() {
            if Instant::now() > deadline {
                bail!("the {} did not serve within 10 s", front.key);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(running)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `clients` connections at once, each doing its share of `n` sequential round trips.
fn concurrent(path: &Path, clients: usize, n: usize) -> anyhow::Result<Vec<Duration>> {
    let per = n.div_ceil(clients);
    // Connect everyone first, so that the measured time is round trips only.
    let conns: Vec<Raw> = (0..clients).map(|_| connect(path, false)).collect::<Result<_, _>>()?;
    let threads: Vec<_> = conns.into_iter().map(|mut raw| std::thread::spawn(move || raw.round_trips(per))).collect();
    let mut all = Vec::with_capacity(per * clients);
    for t in threads {
        all.extend(t.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??);
    }
    Ok(all)
}

/// A negotiated connection, with `oob` if asked, whose reads give up after 30 s rather than
/// hang the benchmark on a proxy that stopped answering.
fn connect(path: &Path, oob: bool) -> anyhow::Result<Raw> {
    Raw::connect(path, oob, Wait::Read, Some(Duration::from_secs(30)))
}

/// Listens on `listen`, replacing the socket the previous round's forwarder (killed) left in
/// the bench's own folder.
fn bind(listen: &Path) -> anyhow::Result<UnixListener> {
    let _ = std::fs::remove_file(listen);
    UnixListener::bind(listen).with_context(|| format!("cannot listen on {}", listen.display()))
}

/// The byte forwarder's process: accepts one client at a time on `listen`, connects it to
/// QEMU at `upstream`, and copies bytes both ways on two blocking threads, parsing nothing.
fn forward(upstream: &Path, listen: &Path) -> anyhow::Result<()> {
    for client in bind(listen)?.incoming() {
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

/// The event-loop forwarder's process: as [`forward`], but one thread running a tokio
/// current-thread runtime, which per message makes the system calls any event loop must: a
/// wait for readiness (`epoll_wait`), one read, one write. The sockets are
/// [`qmpkit::transport::Socket`]s, registered for read readiness only, as `qmp proxy`'s
/// are: a socket registered for writing too would wake the loop each time QEMU, which reads a
/// byte per system call, makes room in the send buffer.
fn forward_evented(upstream: &Path, listen: &Path) -> anyhow::Result<()> {
    let listener = bind(listen)?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    runtime.block_on(async {
        let listener = tokio::net::UnixListener::from_std(listener)?;
        loop {
            let (client, _) = listener.accept().await?;
            let qemu = tokio::net::UnixStream::connect(upstream)
                .await
                .with_context(|| format!("cannot reach QEMU at {}", upstream.display()))?;
            let (client, qemu) = (Stream::Unix(client).into_socket()?, Stream::Unix(qemu).into_socket()?);
            // Both directions in this one task: a wake-up for one polls the other too, which
            // costs no system call while its socket has not been reported readable.
            let _ = tokio::try_join!(pump(&client, &qemu), pump(&qemu, &client));
        }
    })
}

/// Copies bytes from `from` to `to` until `from` ends, then ends `to`'s writing side. A read
/// that fills less than the buffer drained the socket, and `Socket::read` then waits for
/// readiness rather than read again only to hear "would block"; a write goes out at once.
async fn pump(from: &Socket, to: &Socket) -> std::io::Result<()> {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown_write();
        }
        let mut sent = 0;
        while sent < n {
            sent += to.write(&buf[sent..n], &[]).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A row with the figures `relative` reads.
    fn row(p50: f64, p99: f64, ops: f64, qemu_cpu: f64, front_cpu: Option<f64>) -> Value {
        json!({"p50_us": p50, "p99_us": p99, "ops_per_s": ops, "qemu_cpu_us_per_op": qemu_cpu, "proxy_cpu_us_per_op": front_cpu})
    }

    #[test]
    fn each_rounds_ratios_are_against_its_own_direct_row_and_feed_goals_and_floors() {
        let rows = [
            row(200.0, 400.0, 5000.0, 100.0, None),
            row(218.0, 500.0, 4500.0, 90.0, Some(30.0)),
            row(210.0, 380.0, 4700.0, 95.0, Some(20.0)),
            row(205.0, 440.0, 4600.0, 99.0, Some(10.0)),
            row(1000.0, 2000.0, 9000.0, 80.0, Some(25.0)),
            row(10000.0, 20000.0, 7500.0, 80.0, Some(25.0)),
        ];
        let ratios = relative(&rows);
        let r = |key: &str| ratios[key].as_f64().unwrap();
        assert!((r("proxy_added_p50") - 0.09).abs() < 1e-9);
        assert!((r("proxy_added_p99") - 0.25).abs() < 1e-9);
        assert!((r("proxy_cpu_vs_qemu") - 0.30).abs() < 1e-9);
        assert!((r("byte_forwarder_added_p99") + 0.05).abs() < 1e-9);
        assert!((r("event_loop_forwarder_added_p50") - 0.025).abs() < 1e-9);
        assert!((r("event_loop_forwarder_cpu_vs_qemu") - 0.10).abs() < 1e-9);
        // The throughput goal is the last row's (the most clients) against the direct one.
        assert!((r("ops_100_clients_vs_direct_1_client") - 1.5).abs() < 1e-9);

        let goals = goals(&ratios);
        assert_eq!(goals["added_latency_p50"]["met"], true);
        assert_eq!(goals["added_latency_p99"]["met"], false);
        assert_eq!(goals["proxy_cpu_vs_qemu_cpu_per_command"]["met"], false);
        assert_eq!(goals["ops_100_clients_vs_direct_1_client"]["met"], true);
        let floors = floors(&ratios);
        assert_eq!(floors.as_object().unwrap().keys().collect::<Vec<_>>(), ["byte_forwarder", "event_loop_forwarder"]);
        assert_eq!(floors["event_loop_forwarder"]["added_latency_p50"], ratios["event_loop_forwarder_added_p50"]);
    }

    #[tokio::test]
    async fn the_event_loop_forwarder_copies_both_ways_and_passes_the_end_on() {
        let (mut client, client_side) = tokio::net::UnixStream::pair().unwrap();
        let (qemu_side, mut qemu) = tokio::net::UnixStream::pair().unwrap();
        let forwarder = tokio::spawn(async move {
            let (client_side, qemu_side) =
                (Stream::Unix(client_side).into_socket()?, Stream::Unix(qemu_side).into_socket()?);
            tokio::try_join!(pump(&client_side, &qemu_side), pump(&qemu_side, &client_side)).map(|_| ())
        });
        let mut buf = [0; 64];
        client.write_all(b"{\"execute\":\"query-status\"}").await.unwrap();
        let n = qemu.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"{\"execute\":\"query-status\"}");
        qemu.write_all(b"{\"return\": {}}\r\n").await.unwrap();
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"{\"return\": {}}\r\n");
        // The client's end reaches QEMU, and QEMU's end reaches the client.
        client.shutdown().await.unwrap();
        assert_eq!(qemu.read(&mut buf).await.unwrap(), 0);
        drop(qemu);
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
        forwarder.await.unwrap().unwrap();
    }
}
