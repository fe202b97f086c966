//! `qmp`: the QMP command-line tool.
//!
//! Each subcommand is a thin layer over the libraries: parse arguments, call the library,
//! turn the outcome into output and an exit code. What they share (exit statuses, the
//! address, output style, tracing) is in `common`; the `key=value` reader in `kv`.

use clap::{CommandFactory, Parser, Subcommand};

mod agent;
mod bench;
mod common;
mod events;
mod exec;
mod info;
mod job;
mod kv;
mod proxy;
mod shell;
mod sim;
mod wrap;

/// The QEMU Monitor Protocol from the command line.
#[derive(Debug, Parser)]
#[command(
    name = "qmp",
    version,
    about,
    after_help = "ADDR is a unix socket path or host:port; without it, $QMP_SOCKET.\n\
Examples:\n  qmp shell /run/vm1.qmp\n  qmp exec /run/vm1.qmp query-status\n  qmp events ./qmp.sock --name STOP --count 1\n  \
qmp info localhost:4444\n\n\
Exit status: 0 ok, 1 QEMU refused, 2 connection or protocol failure, 64 usage."
)]
struct Cli {
    /// Trace the protocol on stderr (-vv: everything); RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// An interactive QMP shell (qmp-shell's syntax) with completion, help and live events.
    Shell(shell::ShellArgs),
    /// Run one command and print its return value as JSON.
    Exec(exec::ExecArgs),
    /// Print events as JSON lines as they arrive.
    Events(events::EventsArgs),
    /// Show what a VM is: version, name, status, kvm, balloon, cpus, block devices, jobs.
    Info(info::InfoArgs),
    /// Start QEMU connected to a private socket and open the shell on it (qmp-shell-wrap).
    Wrap(wrap::WrapArgs),
    /// Run a command that starts a job and follow it to its end with a progress bar.
    Job(job::JobArgs),
    /// Run one command on a guest agent (qemu-ga), or a program in the guest with `exec`.
    Agent(agent::AgentArgs),
    /// Print a completion script for a shell: bash, zsh, fish, elvish or powershell.
    #[command(after_help = "Examples:\n  qmp completions bash > ~/.local/share/bash-completion/completions/qmp\n  \
                            qmp completions fish > ~/.config/fish/completions/qmp.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Measure qmpkit against real QEMU and the Python reference client.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Serve simulated QEMU monitors (QEMU 7.2 or 10.0) for testing QMP clients.
    Sim(sim::Args),
    /// Share one QEMU monitor among many clients, with a policy per listener.
    Proxy(proxy::ProxyArgs),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            // --help and --version are not errors; a wrong command line is EX_USAGE, so that
            // 2 keeps meaning "the connection failed".
            std::process::exit(if err.use_stderr() { common::USAGE } else { common::OK });
        }
    };
    // `qmp proxy -v` logs its exchanges as JSON lines (its own log, not tracing's).
    let tracing_level = if matches!(cli.command, Command::Proxy(_)) { 0 } else { cli.verbose };
    common::init_tracing(tracing_level);
    let code = match cli.command {
        Command::Shell(args) => shell::run(args, cli.verbose),
        Command::Exec(args) => exec::run(args),
        Command::Events(args) => events::run(args),
        Command::Info(args) => info::run(args),
        Command::Wrap(args) => wrap::run(args, cli.verbose),
        Command::Job(args) => job::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "qmp", &mut std::io::stdout());
            common::OK
        }
        Command::Bench(command) => status("bench", bench::run(command)),
        Command::Proxy(args) => status("proxy", proxy::run(args, cli.verbose > 0)),
        Command::Sim(args) => status("sim", sim::run(args)),
    };
    std::process::exit(code);
}

/// The exit status of a subcommand whose errors carry no status of their own: 0, or the error
/// on one line and [`common::FAILED`].
fn status(subcommand: &str, outcome: anyhow::Result<()>) -> i32 {
    match outcome {
        Ok(()) => common::OK,
        Err(err) => {
            eprintln!("qmp {subcommand}: {err:#}");
            common::FAILED
        }
    }
}
