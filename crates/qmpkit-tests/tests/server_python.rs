//! Python's reference client, qemu.qmp, against a server built with the library (its own
//! commands, in the first test) and against the simulator (`qmp-shell`): connect,
//! negotiate with `oob`, execute, receive an event, run a command out-of-band, get a
//! validation error, pass an fd with `send_fd_scm` then `getfd`, disconnect.
//!
//! The venv comes from `scripts/test` (`QMPKIT_PYTHON`), or `target/venv` for local runs;
//! without it the test fails, it is not skipped.

use qmpkit_tests::server_fixture as fixture;

use std::io::Write;
use std::time::Duration;

use qmpkit::server::{CommandDef, EventDef, MemberDef, QmpError, Registry, Server};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_qmp_against_our_server() {
    let python = qmpkit_tests::python();
    let mut registry = Registry::new();
    registry.fd_commands().unwrap();
    registry.event(EventDef::new("STOP")).unwrap();
    registry
        .command(CommandDef::new("query-status").returns("any"), |(): ()| async {
            Ok::<_, QmpError>(json!({"status": "running", "running": true}))
        })
        .unwrap();
    registry
        .command_with_context(CommandDef::new("stop"), |ctx, (): ()| async move {
            ctx.events().emit_value("STOP", None);
            Ok::<_, QmpError>(())
        })
        .unwrap();
    registry
        .command(CommandDef::new("query-yank").returns("any").allow_oob(), |(): ()| async {
            Ok::<_, QmpError>(json!([{"type": "chardev", "id": "compat_monitor0"}]))
        })
        .unwrap();
    registry
        .command(
            CommandDef::new("human-monitor-command").arg(MemberDef::new("command-line", "str")).returns("str"),
            |_: Value| async { Ok::<_, QmpError>(String::new()) },
        )
        .unwrap();
    registry
        .command_with_context(
            CommandDef::new("x-write-fd").arg(MemberDef::new("fdname", "str")).arg(MemberDef::new("text", "str")),
            |ctx, args: Value| async move {
                let name = args["fdname"].as_str().unwrap_or_default();
                let fd = ctx
                    .dup_named_fd(name)
                    .ok_or_else(|| QmpError::generic(format!("File descriptor named '{name}' not found")))?
                    .map_err(|e| QmpError::generic(e.to_string()))?;
                let mut file = std::fs::File::from(fd);
                file.write_all(args["text"].as_str().unwrap_or_default().as_bytes())
                    .map_err(|e| QmpError::generic(e.to_string()))?;
                Ok::<_, QmpError>(())
            },
        )
        .unwrap();
    let server = Server::builder().version(10, 0, 2).package(fixture::PACKAGE).registry(registry).build().unwrap();
    let (_dir, path, serving) = fixture::serve_on_unix(&server).await;

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("py/qmp_peer.py");
    let run = tokio::process::Command::new(&python).arg(&script).arg(&path).output();
    let output = tokio::time::timeout(Duration::from_secs(60), run).await.expect("qmp_peer.py finishes").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "qmp_peer.py failed ({}):\n{stdout}\n{stderr}", output.status);
    for step in [
        "connected and negotiated",
        "event: STOP",
        "exec-oob query-yank",
        "validation error",
        "getfd: hello",
        "disconnected",
    ] {
        assert!(stdout.contains(step), "missing step {step:?} in:\n{stdout}");
    }

    server.shutdown();
    serving.await.unwrap().unwrap();
    assert!(!path.exists(), "the socket file is removed at shutdown");
}

/// qmp-shell, the interactive shell that ships with qemu.qmp, driven through its standard
/// input as in the lab's transcripts: it greets, negotiates, and prints each reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qmp_shell_against_our_server() {
    let shell = qmpkit_tests::python().with_file_name("qmp-shell");
    let (server, _sim) = fixture::qemu_like();
    let (_dir, path, _serving) = fixture::serve_on_unix(&server).await;
    let mut child = tokio::process::Command::new(&shell)
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", shell.display()));
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"query-status\nquery-version\nno-such-command\n").await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("Welcome to the QMP low-level shell!"), "{stdout}");
    assert!(stdout.contains("Connected to QEMU 10.0.2"), "{stdout}");
    assert!(stdout.contains(r#"{"return": {"status": "running", "running": true}}"#), "{stdout}");
    assert!(stdout.contains(r#""package": "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1""#), "{stdout}");
    assert!(stdout.contains("The command no-such-command has not been found"), "{stdout}");
}
