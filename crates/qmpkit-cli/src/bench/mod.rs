//! `qmp bench`: benchmarks that run qmpkit beside real QEMU and the Python reference client in
//! one run, so that their figures can be compared as ratios on a shared, noisy machine.

use clap::Subcommand;

mod client;
mod server;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// The client against a real QEMU, beside Python's qemu.qmp doing the same work.
    Client(client::Args),
    /// A server built with the library, beside a real QEMU, driven by the same raw client.
    Server(server::Args),
}

/// Runs a benchmark.
pub(crate) fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Client(args) => client::run(args),
        BenchCommand::Server(args) => server::run(args),
    }
}
