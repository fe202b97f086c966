//! What every subcommand shares: exit statuses, one-line errors, durations, the address of
//! the peer and the one place that decides what "no address" means, JSON output, tracing.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use qmpkit::{Client, ClientBuilder};
use serde_json::Value;

/// Exit status: done.
pub(crate) const OK: i32 = 0;
/// Exit status: the peer refused (a QMP error, `Class: desc` on stderr).
pub(crate) const REFUSED: i32 = 1;
/// Exit status: the connection or the protocol failed.
pub(crate) const FAILED: i32 = 2;
/// Exit status: the command line was wrong (BSD's `EX_USAGE`).
pub(crate) const USAGE: i32 = 64;

/// Why a subcommand stopped. Each variant prints as one line and has its exit status.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The command line was wrong.
    Usage(String),
    /// The peer answered with a QMP error.
    Refused {
        /// The error class, such as `GenericError`.
        class: String,
        /// QEMU's text.
        desc: String,
    },
    /// The connection or the protocol failed.
    Failed(String),
}

impl Failure {
    /// The exit status that goes with it.
    pub(crate) fn code(&self) -> i32 {
        match self {
            Failure::Usage(_) => USAGE,
            Failure::Refused { .. } => REFUSED,
            Failure::Failed(_) => FAILED,
        }
    }

    /// Prints the one line on stderr: `Class: desc` for a refusal (what QEMU said, as
    /// virsh and qmp-shell show it), `qmp SUBCOMMAND: message` otherwise.
    pub(crate) fn print(&self, subcommand: &str) {
        let line = match self {
            Failure::Refused { class, desc } => format!("{class}: {desc}"),
            Failure::Usage(message) | Failure::Failed(message) => format!("qmp {subcommand}: {message}"),
        };
        // Nothing better can be done when stderr itself is gone.
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

impl From<&qmpkit::Error> for Failure {
    fn from(err: &qmpkit::Error) -> Self {
        match err.qmp_error() {
            Some(refusal) => Failure::Refused { class: refusal.class.to_string(), desc: refusal.desc.clone() },
            None => Failure::Failed(err.to_string()),
        }
    }
}

impl From<qmpkit::Error> for Failure {
    fn from(err: qmpkit::Error) -> Self {
        Failure::from(&err)
    }
}

/// Prints a failure, if any, and returns the exit status.
pub(crate) fn finish(subcommand: &str, outcome: Result<i32, Failure>) -> i32 {
    outcome.unwrap_or_else(|failure| {
        failure.print(subcommand);
        failure.code()
    })
}

/// Reads a number of seconds given to `--OPTION`.
///
/// # Errors
/// A usage message when the text is not a non-negative number of seconds.
pub(crate) fn seconds(option: &str, text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("--{option} takes a number of seconds, got \"{text}\""))
}

/// A clap value parser for `--timeout SECS` and the like.
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    seconds("timeout", text).map_err(|_| format!("expected a number of seconds, got \"{text}\""))
}

/// Whether a command-line word is an address rather than a command name: command names
/// contain neither `/` nor `:`, socket paths and `host:port` contain one of them (a socket in
/// the current directory is `./sock`).
pub(crate) fn is_address(word: &str) -> bool {
    word.contains('/') || word.contains(':')
}

/// The address to use: the one given, else `$QMP_SOCKET` (qmp-shell's variable), else none.
pub(crate) fn address(given: Option<String>) -> Option<String> {
    given.or_else(|| std::env::var("QMP_SOCKET").ok()).filter(|a| !a.is_empty())
}

/// The simulated machine `qmp` talks to without an address: one per process, so that the
/// shell's `reconnect` finds the same machine again.
static SIMULATOR: std::sync::OnceLock<Result<qmpkit_sim::Sim, String>> = std::sync::OnceLock::new();

/// Connects to the peer at `addr` (a unix socket path or `host:port`), or, without one, to
/// the built-in simulator in this process (a QEMU 10.0 named `qmp-sim`), saying so on
/// stderr. This is the only place that decides what no address means.
///
/// # Errors
/// [`Failure::Failed`] when the connection or the handshake fails.
pub(crate) async fn connect_target(addr: Option<&str>, builder: ClientBuilder) -> Result<Client, Failure> {
    let Some(addr) = addr else {
        eprintln!("qmp: no address given; talking to the built-in simulator");
        let sim = SIMULATOR
            .get_or_init(|| qmpkit_sim::Sim::builder().name("qmp-sim").build().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Failure::Failed(format!("the built-in simulator cannot start: {e}")))?;
        return builder.over(sim.connect_pair()).await.map_err(|e| Failure::Failed(e.to_string()));
    };
    tracing::debug!(target: "qmp", %addr, "connecting");
    let client = builder.connect(addr).await.map_err(|e| Failure::Failed(e.to_string()))?;
    if let Some(greeting) = client.greeting() {
        tracing::debug!(target: "qmp", greeting = %greeting.to_value(), "<-");
    }
    Ok(client)
}

/// A single-threaded runtime for one subcommand.
///
/// # Errors
/// [`Failure::Failed`] when the runtime cannot start.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Failed(format!("cannot start the runtime: {e}")))
}

/// How JSON is written: coloured and pretty on a terminal, compact when piped, pretty when
/// asked; `NO_COLOR` turns colour off.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Style {
    /// Indented, several lines.
    pub(crate) pretty: bool,
    /// ANSI colours.
    pub(crate) color: bool,
}

impl Style {
    /// The style for stdout: pretty and coloured on a terminal; `pretty` forces indentation.
    pub(crate) fn for_stdout(pretty: bool) -> Style {
        let terminal = std::io::stdout().is_terminal();
        let color = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Style { pretty: pretty || terminal, color }
    }

    /// Renders a value.
    pub(crate) fn json(self, value: &Value) -> String {
        let mode = if self.color { colored_json::ColorMode::On } else { colored_json::ColorMode::Off };
        let text = if self.pretty {
            colored_json::ColoredFormatter::new(serde_json::ser::PrettyFormatter::new()).to_colored_json(value, mode)
        } else {
            colored_json::ColoredFormatter::new(serde_json::ser::CompactFormatter).to_colored_json(value, mode)
        };
        text.unwrap_or_else(|_| value.to_string())
    }
}

/// Writes a line to stdout; a closed stdout (`| head`) is not an error worth a message.
pub(crate) fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Sets up logging on stderr: `RUST_LOG` when set, else `-v` shows the protocol (every
/// message sent and received) and `-vv` everything qmpkit traces.
pub(crate) fn init_tracing(verbose: u8) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => tracing_subscriber::EnvFilter::new(filter),
        _ => tracing_subscriber::EnvFilter::new(match verbose {
            0 => "warn",
            1 => "warn,qmp=debug,qmpkit=debug",
            _ => "debug,qmp=trace,qmpkit=trace",
        }),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
}

/// A command line's words, as the parsers take them.
#[cfg(test)]
pub(crate) fn words(text: &[&str]) -> Vec<String> {
    text.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_seconds() {
        assert!(is_address("./sock") && is_address("/run/q.sock") && is_address("localhost:4444"));
        assert!(!is_address("query-status") && !is_address("sock"));
        assert_eq!(seconds("wait", "1.5"), Ok(Duration::from_millis(1500)));
        assert!(seconds("timeout", "soon").is_err() && seconds("timeout", "-1").is_err());
        let plain = Style { pretty: false, color: false };
        assert_eq!(plain.json(&serde_json::json!({"a": [1, "x"]})), r#"{"a":[1,"x"]}"#);
        assert_eq!(Style { pretty: true, color: false }.json(&serde_json::json!({"a": 1})), "{\n  \"a\": 1\n}");
        assert!(Style { pretty: false, color: true }.json(&serde_json::json!({"a": 1})).contains("\x1b["));
    }

    #[test]
    fn failures_have_their_statuses() {
        assert_eq!(Failure::Usage(String::new()).code(), USAGE);
        assert_eq!(Failure::Refused { class: "GenericError".into(), desc: String::new() }.code(), REFUSED);
        assert_eq!(Failure::Failed(String::new()).code(), FAILED);
    }
}
