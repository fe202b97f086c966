//! `qmp exec`: one command, its return value as JSON on stdout.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use qmpkit::{CallOptions, ClientBuilder};
use serde_json::{Map, Value};

use crate::common::{self, Failure, OK, Style};
use crate::kv;

/// Arguments of `qmp exec`.
#[derive(Debug, clap::Args)]
#[command(after_help = "ADDR is a unix socket path or host:port (it contains '/' or ':'); without it, $QMP_SOCKET.\n\
Values follow qmp-shell's rules: integers, true/false, JSON objects and arrays, else strings;\n\
dotted keys build nested objects (file.driver=file).\n\n\
Examples:\n  qmp exec /run/vm1.qmp query-status\n  qmp exec localhost:4444 human-monitor-command command-line='info block'\n  \
qmp exec ./qmp.sock blockdev-add --args '{\"driver\":\"null-co\",\"node-name\":\"n0\"}'\n  \
qmp exec ./qmp.sock getfd fdname=log --fd /tmp/log.txt\n\n\
Exit status: 0 ok, 1 QEMU refused (Class: desc on stderr), 2 connection or protocol failure, 64 usage.")]
pub(crate) struct ExecArgs {
    /// The words: an address (optional), the command and its `key=value` arguments.
    #[arg(value_name = "ARGS", required = true, num_args = 1.., help = "[ADDR] COMMAND [key=value ...]")]
    words: Vec<String>,
    /// Arguments as a JSON object (key=value words add to it).
    #[arg(long, value_name = "JSON")]
    args: Option<String>,
    /// Run out-of-band (exec-oob); the peer must offer `oob`.
    #[arg(long)]
    oob: bool,
    /// Pass this file's descriptor with the command (unix sockets only; repeatable).
    #[arg(long = "fd", value_name = "FILE")]
    fds: Vec<PathBuf>,
    /// Indented JSON even when piped.
    #[arg(short, long)]
    pretty: bool,
    /// Seconds the command may take.
    #[arg(long, value_name = "SECS", value_parser = common::parse_seconds)]
    timeout: Option<Duration>,
}

/// What the words and options asked for.
#[derive(Debug, PartialEq)]
struct Request {
    addr: Option<String>,
    name: String,
    arguments: Map<String, Value>,
}

/// Splits the words into an address, a command and its arguments, `--args` first.
fn parse(words: &[String], json: Option<&str>) -> Result<Request, String> {
    let (addr, rest) = match words.split_first() {
        Some((first, rest)) if common::is_address(first) => (Some(first.clone()), rest),
        _ => (None, words),
    };
    let (name, rest) = rest.split_first().ok_or("no command given (try query-status)")?;
    let mut arguments = kv::parse_arguments(rest).map_err(|e| e.to_string())?;
    if let Some(json) = json {
        let base = match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(base)) => base,
            Ok(_) => return Err("--args takes a JSON object".to_owned()),
            Err(e) => return Err(format!("--args is not valid JSON: {e}")),
        };
        for (key, value) in base {
            if arguments.contains_key(&key) {
                return Err(format!("cannot set \"{key}\" multiple times"));
            }
            arguments.insert(key, value);
        }
    }
    Ok(Request { addr, name: name.clone(), arguments })
}

/// Opens a file to pass: read-write when allowed, else read-only.
fn open_fd(path: &PathBuf) -> Result<OwnedFd, Failure> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .or_else(|_| std::fs::File::open(path))
        .map(OwnedFd::from)
        .map_err(|e| Failure::Usage(format!("cannot open {}: {e}", path.display())))
}

/// Runs `qmp exec` and returns the exit status.
pub(crate) fn run(args: ExecArgs) -> i32 {
    common::finish("exec", run_inner(args))
}

fn run_inner(args: ExecArgs) -> Result<i32, Failure> {
    let request = parse(&args.words, args.args.as_deref()).map_err(Failure::Usage)?;
    let fds = args.fds.iter().map(open_fd).collect::<Result<Vec<_>, _>>()?;
    let style = Style::for_stdout(args.pretty);
    common::runtime()?.block_on(async {
        let addr = common::address(request.addr);
        let client = common::connect_target(addr.as_deref(), ClientBuilder::new().oob(args.oob)).await?;
        let mut options = CallOptions::new().fds(fds);
        if args.timeout.is_some() {
            options = options.timeout(args.timeout);
        }
        if args.oob {
            options = options.oob();
        }
        let arguments = if request.arguments.is_empty() { Value::Null } else { Value::Object(request.arguments) };
        tracing::debug!(target: "qmp", execute = %request.name, %arguments, "->");
        let value = client.call(&request.name, &arguments, options).await?;
        tracing::debug!(target: "qmp", %value, "<- return");
        common::out(&style.json(&value));
        client.close().await;
        Ok(OK)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::common::words;

    #[test]
    fn words_and_json_arguments() {
        let r = parse(&words(&["./q.sock", "query-status"]), None).unwrap();
        assert_eq!((r.addr.as_deref(), r.name.as_str(), r.arguments.len()), (Some("./q.sock"), "query-status", 0));
        let r = parse(&words(&["blockdev-add", "node-name=n0"]), Some(r#"{"driver": "null-co"}"#)).unwrap();
        assert_eq!(r.addr, None);
        assert_eq!(Value::Object(r.arguments), json!({"node-name": "n0", "driver": "null-co"}));
        assert_eq!(parse(&words(&["x", "a=1"]), Some(r#"{"a": 2}"#)).unwrap_err(), "cannot set \"a\" multiple times");
        assert_eq!(parse(&words(&["x"]), Some("[1]")).unwrap_err(), "--args takes a JSON object");
        assert!(parse(&words(&["x"]), Some("{")).unwrap_err().starts_with("--args is not valid JSON"));
        assert_eq!(parse(&words(&["./s"]), None).unwrap_err(), "no command given (try query-status)");
        assert_eq!(parse(&words(&["x", "y"]), None).unwrap_err(), "expected key=value, got \"y\"");
    }
}
