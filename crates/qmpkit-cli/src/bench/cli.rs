//! `qmp bench cli`: the command line as a user meets it, whole processes against one real QEMU
//! that the bench starts, beside QEMU's own Python `qmp-shell` from the venv: one `query-status`
//! per process, and the time from starting a shell to its ready prompt in a pseudo-terminal.
//! The cases run in rotating order over the runs and each figure is a median, so the figures
//! can be read as ratios on a noisy machine.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use qmpkit::launch::Launcher;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::pty::OpenptFlags;
use serde::Serialize;

use super::find_python;

/// Arguments of `qmp bench cli`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Runs of every case; each figure is the median over runs.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// The Python whose venv holds qmp-shell (default: $QMPKIT_PYTHON, then target/venv/bin/python).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    json: bool,
}

/// The prompt both shells print when ready for a QMP command.
const PROMPT: &[u8] = b"(QEMU) ";

/// How long a shell may take to show its prompt before the bench gives up on it.
const PROMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// The cases, in the order of the table.
const CASES: [(&str, &str); 5] = [
    ("exec", "`qmp exec ADDR query-status`"),
    ("exec-sim", "`qmp exec query-status` (built-in simulator)"),
    ("qmp-shell-exec", "`qmp-shell ADDR` with `query-status` on stdin"),
    ("shell-prompt", "`qmp shell ADDR` to a ready prompt, schema loaded (pty)"),
    ("qmp-shell-prompt", "`qmp-shell ADDR` to its prompt (pty)"),
];

#[derive(Debug, Serialize)]
struct Report {
    qemu: String,
    runs: usize,
    /// Median wall time of each case, in milliseconds.
    median_ms: Vec<(String, f64)>,
    goals: Vec<Goal>,
}

#[derive(Debug, Serialize)]
struct Goal {
    what: &'static str,
    value: f64,
    goal: &'static str,
    met: bool,
}

/// Runs the benchmark.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let python = find_python(args.python)?;
    let qmp_shell = python.parent().map(|bin| bin.join("qmp-shell")).filter(|p| p.exists());
    let Some(qmp_shell) = qmp_shell else {
        bail!("no qmp-shell beside {} (the venv's bin/)", python.display());
    };
    let qmp = std::env::current_exe().context("finding this binary")?;
    let qemu = Launcher::system().start().context("starting QEMU")?;
    let socket = qemu.qmp_socket().display().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let version = runtime.block_on(async {
        let client = qmpkit::Client::connect(socket.clone()).await?;
        let version = client.query_version().await?;
        client.close().await;
        anyhow::Ok(version.qemu.to_string())
    })?;
    // The shells read (and may write) a history file under the home directory; a private one
    // keeps the user's own history untouched and makes every run start alike.
    let home = tempfile::tempdir().context("making a private home directory")?;

    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); CASES.len()];
    for run in 0..args.runs {
        // Rotate the order each run so that no case always runs first or last.
        for offset in 0..CASES.len() {
            let c = (offset + run) % CASES.len();
            let elapsed = match CASES[c].0 {
                "exec" => exec(Command::new(&qmp).args(["exec", &socket, "query-status"]), None)?,
                "exec-sim" => exec(Command::new(&qmp).args(["exec", "query-status"]).env_remove("QMP_SOCKET"), None)?,
                "qmp-shell-exec" => exec(Command::new(&qmp_shell).arg(&socket), Some(b"query-status\n"))?,
                "shell-prompt" => to_prompt(&qmp, &["shell", &socket], home.path())?,
                _ => to_prompt(&qmp_shell, &[&socket], home.path())?,
            };
            samples[c].push(elapsed);
        }
    }

    let medians: Vec<Duration> = samples.into_iter().map(median).collect();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let exec_ratio = ms(medians[2]) / ms(medians[0]);
    let prompt_ms = ms(medians[3]);
    let report = Report {
        qemu: version,
        runs: args.runs,
        median_ms: CASES.iter().zip(&medians).map(|((name, _), d)| ((*name).to_owned(), ms(*d))).collect(),
        goals: vec![
            Goal {
                what: "qmp-shell query-status / qmp exec query-status (wall, x)",
                value: exec_ratio,
                goal: ">= 20",
                met: exec_ratio >= 20.0,
            },
            Goal { what: "qmp shell to a ready prompt (ms)", value: prompt_ms, goal: "< 50", met: prompt_ms < 50.0 },
            Goal {
                what: "qmp-shell prompt / qmp shell prompt (wall, x)",
                value: ms(medians[4]) / prompt_ms,
                goal: "",
                met: true,
            },
        ],
    };
    drop(qemu);
    super::shared::report(args.json, &report, print_table)
}

fn print_table(report: &Report) {
    println!("qmp bench cli: QEMU {}, whole processes, median of {} runs", report.qemu, report.runs);
    println!();
    println!("| case | median wall ms |");
    println!("|---|---:|");
    for ((_, label), (_, value)) in CASES.iter().zip(&report.median_ms) {
        println!("| {label} | {value:.1} |");
    }
    println!();
    println!("| ratio or figure | value | goal | met |");
    println!("|---|---:|---|---|");
    for goal in &report.goals {
        let met = match (goal.goal.is_empty(), goal.met) {
            (true, _) => "",
            (false, true) => "met",
            (false, false) => "not met",
        };
        println!("| {} | {:.1} | {} | {met} |", goal.what, goal.value, goal.goal);
    }
}

/// The median of some durations (the mean of the middle two when their count is even); zero
/// when there are none.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    let n = samples.len();
    match n {
        0 => Duration::ZERO,
        _ if n % 2 == 1 => samples[n / 2],
        _ => (samples[n / 2 - 1] + samples[n / 2]) / 2,
    }
}

/// Whether a shell's output so far shows its prompt. Line editors wrap the prompt in escape
/// sequences (bracketed paste, colours), so the prompt text is looked for anywhere.
fn prompt_seen(output: &[u8]) -> bool {
    output.windows(PROMPT.len()).any(|w| w == PROMPT)
}

/// Runs one process to its end with `input` on stdin, and times it from spawn to exit.
fn exec(command: &mut Command, input: Option<&[u8]>) -> anyhow::Result<Duration> {
    let what = format!("{command:?}");
    command.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = command.spawn().with_context(|| format!("starting {what}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input)?;
    }
    let output = child.wait_with_output()?;
    let elapsed = start.elapsed();
    // Both print the reply; a run whose reply is missing measured a failure, not the work.
    if !output.status.success() || !String::from_utf8_lossy(&output.stdout).contains("status") {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(elapsed)
}

/// Starts a shell on a new pseudo-terminal, so that it believes it is interactive, and times
/// it from spawn to its prompt on the terminal; then kills it.
fn to_prompt(program: &Path, args: &[&str], home: &Path) -> anyhow::Result<Duration> {
    let what = format!("{} {}", program.display(), args.join(" "));
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let terminal = rustix::pty::ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    let (stdin, stdout) = (terminal.try_clone()?, terminal.try_clone()?);
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(terminal)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home)
        .env("TERM", "xterm")
        .env_remove("QMP_SOCKET");
    let start = Instant::now();
    let mut child = command.spawn().with_context(|| format!("starting {what}"))?;
    // The command still holds the terminal's descriptors; dropping them leaves the child the
    // only holder, so that the child's end shows as an error on the master rather than a hang.
    drop(command);
    let seen = read_to_prompt(&master, start);
    let elapsed = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    match seen {
        Ok(()) => Ok(elapsed),
        Err(output) => bail!("{what} showed no prompt: {}", String::from_utf8_lossy(&output)),
    }
}

/// Reads a terminal's output until the prompt appears; on a timeout or the end of the output,
/// gives back what was read.
fn read_to_prompt(master: &OwnedFd, start: Instant) -> Result<(), Vec<u8>> {
    let mut output = Vec::new();
    let mut buf = [0u8; 4096];
    while !prompt_seen(&output) {
        let Some(left) = PROMPT_TIMEOUT.checked_sub(start.elapsed()) else {
            return Err(output);
        };
        let timeout = Timespec::try_from(left).ok();
        let mut fds = [PollFd::new(master, PollFlags::IN)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(_) => return Err(output),
        }
        match rustix::io::read(master, &mut buf) {
            Ok(0) => return Err(output),
            Ok(n) => output.extend_from_slice(&buf[..n]),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => return Err(output),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_or_the_mean_of_the_middle_two() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(9), ms(1), ms(5)]), ms(5));
        assert_eq!(median(vec![ms(8), ms(2), ms(4), ms(100)]), ms(6));
        assert_eq!(median(vec![ms(3)]), ms(3));
        assert_eq!(median(Vec::new()), Duration::ZERO);
    }

    #[test]
    fn the_prompt_is_found_inside_escape_sequences_and_not_before_it_is_whole() {
        assert!(prompt_seen(b"Welcome\r\n\x1b[?2004h(QEMU) "));
        assert!(prompt_seen(b"(QEMU) "));
        assert!(!prompt_seen(b"Welcome\r\n(QEMU)"));
        assert!(!prompt_seen(b"(QEMU-HMP) "));
        assert!(!prompt_seen(b""));
    }
}
