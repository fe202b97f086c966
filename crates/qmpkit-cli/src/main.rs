//! `qmp`: the QMP command-line tool.
//!
//! Each subcommand is a thin layer over the libraries: parse arguments, call the library,
//! turn the outcome into output and an exit code.

use clap::{Parser, Subcommand};

mod bench;
mod sim;

/// The QEMU Monitor Protocol from the command line.
#[derive(Debug, Parser)]
#[command(name = "qmp", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure qmpkit against real QEMU and the Python reference client.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Serve simulated QEMU monitors (QEMU 7.2 or 10.0) for testing QMP clients.
    Sim(sim::Args),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(command) => bench::run(command),
        Command::Sim(args) => sim::run(args),
    }
}
