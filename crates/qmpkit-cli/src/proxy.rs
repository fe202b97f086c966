//! `qmp proxy`: many clients on one QEMU monitor, with a policy per listener.
//!
//! ```text
//! qmp proxy --upstream ADDR --listen ADDR [--listen ADDR ...] [--policy FILE] [-v] [--log FILE]
//! ```
//!
//! The work is `qmpkit::proxy`'s; this parses the arguments and the policy file, binds the
//! listeners and writes the exchange log.

use std::collections::HashMap;
use std::io::{LineWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use qmpkit::proxy::{Exchange, Policy, PolicyFile, Proxy};
use qmpkit::transport::{Endpoint, Listener};

/// Arguments of `qmp proxy`.
#[derive(Debug, clap::Args)]
#[command(after_help = "ADDR is a unix socket path or host:port.\n\
                  The policy file (TOML, or JSON when it ends in .json) has one entry per listener:\n  \
                  [[listener]]\n  address = \"/run/vm1/qmp-ro.sock\"   # as given to --listen\n  \
                  allow = [\"query-*\"]                # globs; absent allows all\n  \
                  deny = [\"query-qmp-schema\"]        # globs\n  \
                  events = [\"STOP\", \"RESUME\"]        # globs; absent passes all")]
pub(crate) struct ProxyArgs {
    /// QEMU's QMP socket.
    #[arg(long, value_name = "ADDR")]
    upstream: String,
    /// Where clients connect; repeat for several listeners.
    #[arg(long, value_name = "ADDR", required = true)]
    listen: Vec<String>,
    /// Per-listener policies (TOML or JSON).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Write the exchange log to this file (without it, `qmp -v proxy` logs every request,
    /// reply and event with the client it concerns to stderr, as JSON lines).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Do not enable `oob` with QEMU (nor offer it to clients).
    #[arg(long)]
    no_oob: bool,
    /// Permission bits of the unix sockets the proxy listens on.
    #[arg(long, value_name = "OCTAL", default_value = "600")]
    mode: String,
    /// First pause before reconnecting to QEMU, in milliseconds; it doubles up to --backoff-max.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    backoff_initial: u64,
    /// Longest pause between attempts to reconnect to QEMU, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    backoff_max: u64,
    /// Bytes that may wait to be written to one client before it is disconnected for not
    /// reading.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    output_limit: usize,
}

/// Reads a policy file: TOML, or JSON when its name ends in `.json`.
fn read_policies(path: &Path) -> anyhow::Result<HashMap<String, Policy>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: PolicyFile = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("{} is not a valid policy", path.display()))?
    } else {
        toml::from_str(&text).with_context(|| format!("{} is not a valid policy", path.display()))?
    };
    let mut policies = HashMap::new();
    for entry in &file.listener {
        if policies.insert(entry.address.clone(), entry.to_policy()?).is_some() {
            bail!("{}: the listener {} has two entries", path.display(), entry.address);
        }
    }
    Ok(policies)
}

/// Runs `qmp proxy` until interrupted.
pub(crate) fn run(args: ProxyArgs, verbose: bool) -> anyhow::Result<()> {
    let upstream: Endpoint = args.upstream.parse().context("--upstream")?;
    let mode = u32::from_str_radix(&args.mode, 8).with_context(|| format!("--mode {} is not octal", args.mode))?;
    let mut policies = match &args.policy {
        Some(path) => read_policies(path)?,
        None => HashMap::new(),
    };
    let log: Option<Box<dyn Write + Send>> = match (&args.log, verbose) {
        (Some(path), _) => Some(Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        )),
        (None, true) => Some(Box::new(std::io::stderr())),
        (None, false) => None,
    };
    // One thread: the proxy's work per message is small, and a single thread spends no CPU
    // handing tasks between threads.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut builder = Proxy::builder(upstream)
            .backoff(Duration::from_millis(args.backoff_initial), Duration::from_millis(args.backoff_max))
            .output_limit(args.output_limit)
            .upstream_oob(!args.no_oob);
        for address in &args.listen {
            let endpoint: Endpoint = address.parse().with_context(|| format!("--listen {address}"))?;
            let listener =
                Listener::bind(&endpoint, mode).await.with_context(|| format!("cannot listen on {address}"))?;
            let policy = policies.remove(address).unwrap_or_default();
            builder = builder.listener(address.clone(), listener, policy);
        }
        if let Some(address) = policies.keys().next() {
            bail!("the policy names {address}, which is not a --listen address");
        }
        if let Some(out) = log {
            let out = Mutex::new(LineWriter::new(out));
            builder = builder.on_exchange(move |exchange| log_line(&out, exchange));
        }
        let proxy = builder.build();
        // The upstream connection's changes go to stderr whatever the log level: an operator
        // needs to see that QEMU went away and came back.
        let mut status = proxy.status();
        let upstream = args.upstream.clone();
        tokio::spawn(async move {
            while status.changed().await.is_ok() {
                let now = status.borrow_and_update().clone();
                match (now.connected, now.last_error) {
                    (true, _) => {
                        eprintln!("qmp proxy: connected to QEMU at {upstream} (connection {})", now.generation)
                    }
                    (false, Some(reason)) => eprintln!("qmp proxy: QEMU at {upstream}: {reason}; retrying"),
                    (false, None) => {}
                }
            }
        });
        proxy.run(shutdown()).await;
        Ok(())
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match &mut term {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// Writes one exchange as a JSON line: time, client, listener, direction, message.
fn log_line(out: &Mutex<LineWriter<Box<dyn Write + Send>>>, exchange: &Exchange<'_>) {
    let time = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let client = exchange.client.map_or("null".to_owned(), |c| c.to_string());
    let listener = serde_json::to_string(&exchange.listener).unwrap_or_else(|_| "null".into());
    // The message is JSON already (QEMU's text or the request re-encoded), so it goes in as is.
    let line = format!(
        "{{\"time\": {time:.6}, \"client\": {client}, \"listener\": {listener}, \"dir\": \"{}\", \"message\": {}}}\n",
        exchange.direction.as_str(),
        exchange.message
    );
    let mut out = out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // A full disk or a closed stderr must not stop the proxy.
    let _ = out.write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn policies_read_from_toml_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let toml = write(
            dir.path(),
            "p.toml",
            "[[listener]]\naddress = \"ro.sock\"\nallow = [\"query-*\"]\nevents = [\"STOP\"]\n",
        );
        let policies = read_policies(&toml).unwrap();
        let ro = &policies["ro.sock"];
        assert!(ro.allows_command("query-status") && !ro.allows_command("stop"));
        assert!(ro.allows_event("STOP") && !ro.allows_event("RESUME"));
        let json = write(dir.path(), "p.json", r#"{"listener": [{"address": "a", "deny": ["quit"]}]}"#);
        assert!(!read_policies(&json).unwrap()["a"].allows_command("quit"));
    }

    #[test]
    fn bad_policies_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let twice = write(dir.path(), "t.toml", "[[listener]]\naddress = \"a\"\n[[listener]]\naddress = \"a\"\n");
        assert!(read_policies(&twice).unwrap_err().to_string().contains("two entries"));
        let typo = write(dir.path(), "u.toml", "[[listener]]\naddress = \"a\"\nalow = []\n");
        assert!(format!("{:#}", read_policies(&typo).unwrap_err()).contains("alow"));
        let glob = write(dir.path(), "g.toml", "[[listener]]\naddress = \"a\"\nallow = [\"[x\"]\n");
        assert!(read_policies(&glob).unwrap_err().to_string().contains("bad pattern"));
    }
}
