//! `qmp`: the QMP command-line tool.
//!
//! Each subcommand is a thin layer over the libraries: parse arguments, call the library,
//! turn the outcome into output and an exit code.

use clap::{Parser, Subcommand};

mod agent;
mod bench;
mod kv;
mod proxy;

/// The QEMU Monitor Protocol from the command line.
#[derive(Debug, Parser)]
#[command(name = "qmp", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one command on a guest agent (qemu-ga), or a program in the guest with `exec`.
    Agent(agent::AgentArgs),
    /// Measure qmpkit against real QEMU and the Python reference client.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Share one QEMU monitor among many clients, with a policy per listener.
    Proxy(proxy::ProxyArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `qmp agent` keeps exit status 2 for connection failures: its usage errors are 64.
        Err(err) if std::env::args().nth(1).as_deref() == Some("agent") => {
            let _ = err.print();
            std::process::exit(if err.use_stderr() { 64 } else { 0 });
        }
        Err(err) => err.exit(),
    };
    match cli.command {
        Command::Agent(args) => std::process::exit(agent::run(args)),
        Command::Bench(command) => bench::run(command),
        Command::Proxy(args) => proxy::run(args),
    }
}
