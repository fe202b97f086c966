//! Python's reference client, qemu.qmp, against a server built with the library: connect,
//! negotiate with `oob`, execute, receive an event, run a command out-of-band, get a
//! validation error, pass an fd with `send_fd_scm` then `getfd`, disconnect.
//!
//! The venv comes from `scripts/test` (`QMPKIT_PYTHON`), or `target/venv` for local runs;
//! without it the test fails, it is not skipped.

use qmpkit_tests::server_fixture as fixture;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use qmpkit::server::{CommandDef, MemberDef, QmpError, Server};
use serde_json::Value;

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("QMPKIT_PYTHON") {
        return python.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with qemu.qmp: run scripts/test, or create the venv: \
         python3 -m venv target/venv && target/venv/bin/pip install qemu.qmp (or set QMPKIT_PYTHON)"
    );
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_qmp_against_our_server() {
    let python = python();
    let blocker = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let mut registry = fixture::qemu_registry(blocker);
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

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/qmp_peer.py");
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
