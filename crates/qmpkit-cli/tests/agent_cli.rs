//! `qmp agent` against the real `qemu-ga` (unprivileged, machine-changing commands blocked;
//! see `qmpkit_tests::agent_fixture`).

use std::process::{Command, Output};

use qmpkit_tests::agent_fixture::RealAgent;
use serde_json::Value;

fn qmp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qmp")).args(args).env_remove("QGA_SOCKET").output().expect("run qmp")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("UTF-8 output")
}

#[test]
fn ping_exec_and_errors_against_the_real_agent() {
    let real = RealAgent::start();
    let addr = real.address();

    // --wait covers the agent's start-up.
    let out = qmp(&["agent", "--wait", "20", &addr, "guest-ping"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), serde_json::json!({}));

    let out = qmp(&["agent", &addr, "exec", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "the program's exit status passes through");
    assert_eq!((text(&out.stdout), text(&out.stderr)), ("out\n", "err\n"));

    let out = qmp(&["agent", &addr, "guest-shutdown"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "CommandNotFound: Command guest-shutdown has been disabled\n");
    assert!(out.stdout.is_empty());

    // Arguments with qmp-shell's rules, and the address from the environment.
    let file = real.dir().join("f.txt");
    let path = format!("path={}", file.display());
    let out = Command::new(env!("CARGO_BIN_EXE_qmp"))
        .args(["agent", "guest-file-open", &path, "mode=w"])
        .env("QGA_SOCKET", &addr)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let handle: i64 = serde_json::from_slice(&out.stdout).unwrap();
    let out = qmp(&["agent", &addr, "guest-file-write", &format!("handle={handle}"), "buf-b64=aGkK"]);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["count"], 3, "{}", text(&out.stderr));
    let out = qmp(&["agent", &addr, "guest-file-close", &format!("handle={handle}")]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read(&file).unwrap(), b"hi\n");
}

#[test]
fn usage_and_connection_failures_have_their_own_statuses() {
    let out = qmp(&["agent", "guest-ping"]);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        text(&out.stderr),
        "qmp agent: no agent address: give ADDR (a socket path or host:port) or set QGA_SOCKET\n"
    );
    let out = qmp(&["agent", "./sock", "guest-ping", "a=1", "a=2"]);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(text(&out.stderr), "qmp agent: cannot set \"a\" multiple times\n");

    let real = RealAgent::prepare();
    let out = qmp(&["agent", &real.address(), "guest-ping"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("qmp agent: cannot connect to ") && stderr.lines().count() == 1, "{stderr}");
}
