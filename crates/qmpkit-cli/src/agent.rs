//! `qmp agent`: one guest agent command from the shell.
//!
//! ```text
//! qmp agent [OPTIONS] [ADDR] COMMAND [key=value ...]     prints the command's return as JSON
//! qmp agent [OPTIONS] [ADDR] exec [--] PROGRAM [ARGS...] runs PROGRAM in the guest
//! ```
//!
//! ADDR is a unix socket path or `host:port`; it is recognised by containing `/` or `:`
//! (command names contain neither), so a socket in the current directory is `./sock`.
//! Without it, `$QGA_SOCKET` is used. Exit statuses: 0 done, 1 the agent refused (its
//! `Class: desc` on stderr), 2 the connection or the protocol failed, 64 a usage error; `exec`
//! passes the program's own status through (128 + N when signal N ended it).

use qmpkit::agent::{Agent, AgentBuilder, Exec};
use std::io::Write;

use crate::common::{FAILED, Failure, OK, USAGE, seconds};
use crate::kv;

/// Arguments of `qmp agent`.
#[derive(Debug, clap::Args)]
#[command(after_help = "ADDR is a unix socket path or host:port (it contains '/' or ':'); without it, $QGA_SOCKET.\n\
                  Examples:\n  qmp agent /run/vm1-qga.sock guest-ping\n  qmp agent ./qga.sock guest-exec-status pid=1234\n  \
                  qmp agent ./qga.sock exec -- /bin/sh -c 'echo hi; exit 3'\n\
                  Exit status: 0 ok, 1 the agent refused, 2 connection or protocol failure, 64 usage;\n\
                  exec passes the program's status through.")]
pub(crate) struct AgentArgs {
    /// Seconds each call may take (and the sync before it).
    #[arg(long, value_name = "SECONDS", default_value = "10")]
    timeout: String,
    /// Wait up to this many seconds for an agent that does not answer yet (a booting guest).
    #[arg(long, value_name = "SECONDS")]
    wait: Option<String>,
    /// The words: an address (optional), then a command and its arguments, or `exec`.
    #[arg(
        value_name = "ARGS",
        allow_hyphen_values = true,
        trailing_var_arg = true,
        num_args = 0..,
        help = "[ADDR] COMMAND [key=value ...] | [ADDR] exec [--] PROGRAM [ARGS...]"
    )]
    words: Vec<String>,
}

/// What the words asked for.
#[derive(Debug, PartialEq)]
enum Request {
    Command { name: String, arguments: serde_json::Map<String, serde_json::Value> },
    Exec { program: String, args: Vec<String> },
}

/// Splits the words into an address and a request.
fn parse(words: &[String], env_addr: Option<String>) -> Result<(String, Request), String> {
    let (addr, rest) = match words.split_first() {
        Some((first, rest)) if first.contains('/') || first.contains(':') => (Some(first.clone()), rest),
        _ => (None, words),
    };
    let addr = addr
        .or(env_addr.filter(|a| !a.is_empty()))
        .ok_or("no agent address: give ADDR (a socket path or host:port) or set QGA_SOCKET")?;
    let (name, rest) = rest.split_first().ok_or("no command given (try guest-ping, or exec -- PROGRAM)")?;
    if name == "exec" {
        let rest = match rest.split_first() {
            Some((dashes, after)) if dashes == "--" => after,
            _ => rest,
        };
        let (program, args) = rest.split_first().ok_or("exec needs a program: exec -- PROGRAM [ARGS...]")?;
        return Ok((addr, Request::Exec { program: program.clone(), args: args.to_vec() }));
    }
    let arguments = kv::parse_arguments(rest).map_err(|e| e.to_string())?;
    Ok((addr, Request::Command { name: name.clone(), arguments }))
}

/// Runs `qmp agent` and returns the process's exit status.
pub(crate) fn run(args: AgentArgs) -> i32 {
    let usage = |message: &str| {
        eprintln!("qmp agent: {message}");
        USAGE
    };
    let timeout = match seconds("timeout", &args.timeout) {
        Ok(t) => t,
        Err(e) => return usage(&e),
    };
    let wait = match args.wait.as_deref().map(|w| seconds("wait", w)).transpose() {
        Ok(w) => w,
        Err(e) => return usage(&e),
    };
    let (addr, request) = match parse(&args.words, std::env::var("QGA_SOCKET").ok()) {
        Ok(parsed) => parsed,
        Err(e) => return usage(&e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("qmp agent: cannot start the runtime: {e}");
            return FAILED;
        }
    };
    runtime.block_on(async {
        let agent = AgentBuilder::new().call_timeout(timeout).build(&addr);
        let ready = match wait {
            Some(wait) => agent.wait_ready(wait).await,
            None => agent.sync().await,
        };
        if let Err(err) = ready {
            return report(&err);
        }
        match request {
            Request::Command { name, arguments } => command(&agent, &name, arguments).await,
            Request::Exec { program, args } => exec(&agent, program, args).await,
        }
    })
}

async fn command(agent: &Agent, name: &str, arguments: serde_json::Map<String, serde_json::Value>) -> i32 {
    let arguments = if arguments.is_empty() { serde_json::Value::Null } else { serde_json::Value::Object(arguments) };
    match agent.execute(name, arguments).await {
        Ok(value) => {
            let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
            // A closed stdout (`| head`) is not worth a panic message.
            let _ = writeln!(std::io::stdout(), "{text}");
            OK
        }
        Err(err) => report(&err),
    }
}

async fn exec(agent: &Agent, program: String, args: Vec<String>) -> i32 {
    match agent.exec(Exec::new(program).args(args)).await {
        Ok(output) => {
            // The program's output goes out as it came, bytes and all.
            let _ = std::io::stdout().write_all(&output.stdout);
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().write_all(&output.stderr);
            match (output.exit_code, output.signal) {
                (Some(code), _) => code,
                (None, Some(signal)) => 128 + signal,
                (None, None) => OK,
            }
        }
        Err(err) => report(&err),
    }
}

/// Prints one line about an error and picks the exit status.
fn report(err: &qmpkit::Error) -> i32 {
    crate::common::finish("agent", Err(Failure::from(err)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::common::words;

    #[test]
    fn addresses_commands_and_exec() {
        let (addr, request) = parse(&words(&["/run/qga.sock", "guest-exec-status", "pid=7"]), None).unwrap();
        assert_eq!(addr, "/run/qga.sock");
        assert_eq!(
            request,
            Request::Command {
                name: "guest-exec-status".into(),
                arguments: json!({"pid": 7}).as_object().unwrap().clone()
            }
        );
        let (addr, request) = parse(&words(&["guest-ping"]), Some("localhost:4445".into())).unwrap();
        assert_eq!(addr, "localhost:4445");
        assert!(
            matches!(request, Request::Command { ref name, ref arguments } if name == "guest-ping" && arguments.is_empty())
        );
        let (_, request) = parse(&words(&["./s", "exec", "--", "/bin/sh", "-c", "exit 3"]), None).unwrap();
        assert_eq!(request, Request::Exec { program: "/bin/sh".into(), args: words(&["-c", "exit 3"]) });
        let (_, request) = parse(&words(&["./s", "exec", "/bin/true"]), None).unwrap();
        assert_eq!(request, Request::Exec { program: "/bin/true".into(), args: vec![] });
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&words(&["guest-ping"]), None).unwrap_err().contains("QGA_SOCKET"));
        assert!(parse(&words(&["./s"]), None).unwrap_err().contains("no command"));
        assert!(parse(&words(&["./s", "exec", "--"]), None).unwrap_err().contains("needs a program"));
        assert_eq!(parse(&words(&["./s", "guest-ping", "x"]), None).unwrap_err(), "expected key=value, got \"x\"");
        assert!(seconds("timeout", "soon").is_err());
        assert!(seconds("timeout", "-1").is_err());
        assert_eq!(seconds("wait", "1.5"), Ok(Duration::from_millis(1500)));
    }
}
