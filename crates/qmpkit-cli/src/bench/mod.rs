//! `qmp bench`: benchmarks that run qmpkit beside real QEMU and the Python reference client in
//! one run, so that their figures can be compared as ratios on a shared, noisy machine.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;
use serde::Serialize;

mod cli;
mod client;
mod proxy;
mod server;
mod shared;
mod sim;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// The command line (`qmp exec`, `qmp shell`) as whole processes, beside QEMU's qmp-shell.
    Cli(cli::Args),
    /// The client against a real QEMU, beside Python's qemu.qmp doing the same work.
    Client(client::Args),
    /// A server built with the library, beside a real QEMU, driven by the same raw client.
    Server(server::Args),
    /// `qmp proxy` in front of a real QEMU, against the same QEMU without it.
    Proxy(proxy::Args),
    /// The simulator (`qmp sim`) beside the QEMU it stands in for, and the bare server library.
    Sim(sim::Args),
}

/// Runs a benchmark.
pub(crate) fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Cli(args) => cli::run(args),
        BenchCommand::Client(args) => client::run(args),
        BenchCommand::Server(args) => server::run(args),
        BenchCommand::Proxy(args) => proxy::run(args),
        BenchCommand::Sim(args) => sim::run(args),
    }
}

/// Throughput and CPU cost of one measured loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Figures {
    /// Operations per second of wall time.
    pub(crate) ops_per_sec: f64,
    /// CPU time (user + system) of the measuring process per operation, in microseconds.
    pub(crate) cpu_us_per_op: f64,
}

/// The CPU time this process has used, user and system together: what `getrusage` reports,
/// read from the process CPU clock, as Python's `time.process_time()` does.
pub(crate) fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

/// The median of each figure over several rounds.
pub(crate) fn median_figures(samples: &[Figures]) -> Figures {
    Figures {
        ops_per_sec: shared::median(samples.iter().map(|f| f.ops_per_sec)),
        cpu_us_per_op: shared::median(samples.iter().map(|f| f.cpu_us_per_op)),
    }
}

/// The Python interpreter with qemu.qmp: the one given, else `$QMPKIT_PYTHON`, else the venv
/// that scripts/test makes under target/.
pub(crate) fn find_python(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let candidates =
        [given, std::env::var_os("QMPKIT_PYTHON").map(PathBuf::from), Some("target/venv/bin/python".into())];
    match candidates.into_iter().flatten().find(|p| p.exists()) {
        Some(python) => Ok(python),
        None => bail!("no Python with qemu.qmp: run scripts/test (it makes target/venv), or pass --python"),
    }
}
