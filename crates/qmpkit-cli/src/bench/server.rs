//! `qmp bench server` (being written).

/// Arguments of `qmp bench server`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    anyhow::bail!("qmp bench server is not written yet (json: {})", args.json)
}
