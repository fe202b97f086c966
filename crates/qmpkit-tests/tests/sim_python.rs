//! Python's `qemu.qmp` and its `qmp-shell` drive the simulator: `qmp-shell -H` (HMP mode,
//! which asks `help` and `info` for its completion and switches CPUs with `cpu-index`), and
//! file descriptors passed with `send_fd_scm` for `getfd` and `add-fd`.
//!
//! The venv comes from `scripts/test` (`QMPKIT_PYTHON`), or `target/venv` for local runs;
//! without it the test fails, it is not skipped.

use std::time::Duration;

use qmpkit_sim::{RunState, Sim};

/// Runs `program` with `args`, feeding `stdin`, and returns its standard output.
async fn output(program: &std::path::Path, args: &[&str], stdin: &[u8]) -> String {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let mut input = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut input, stdin).await.unwrap();
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qmp_shell_hmp_mode_drives_the_simulator() {
    let shell = qmpkit_tests::python().with_file_name("qmp-shell");
    let sim = Sim::builder().start().await.unwrap();
    let path = sim.socket_paths()[0].to_str().unwrap().to_owned();
    let stdin = b"info status\nstop\ninfo status\nhelp stop\ninfo name\ncpu 1\ncpu 0\ninfo version\n";
    let stdout = output(&shell, &["-H", &path], stdin).await;
    for expected in [
        "Welcome to the HMP shell!",
        "Connected to QEMU 10.0.2",
        "VM status: running",
        "VM status: paused",
        "stop|s  -- stop emulation",
        // `cpu 1` checks the index with `info version` on CPU 1, which QEMU refuses.
        "bad CPU index",
        "10.0.2qmpkit-sim",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert_eq!(sim.machine().run_state(), RunState::Paused, "HMP `stop` reached the machine");
    sim.stop().await.unwrap();
}

/// qemu.qmp passes a pipe's write end with `send_fd_scm`; `getfd` names it, `add-fd` puts
/// another in an fd set, and both come back as QEMU shows them.
const FDS: &str = r#"
import asyncio, os, sys
from qemu.qmp import QMPClient, ExecuteError

async def main(path):
    qmp = QMPClient("fds")
    await qmp.connect(path)
    r, w = os.pipe()
    qmp.send_fd_scm(w)
    assert await qmp.execute("getfd", {"fdname": "pipe"}) == {}
    try:
        await qmp.execute("getfd", {"fdname": "again"})
        raise SystemExit("getfd without an fd succeeded")
    except ExecuteError as err:
        print("no fd:", err.error.error.desc)
    qmp.send_fd_scm(w)
    added = await qmp.execute("add-fd", {"fdset-id": 3, "opaque": "log"})
    assert added["fdset-id"] == 3, added
    sets = await qmp.execute("query-fdsets")
    assert sets == [{"fdset-id": 3, "fds": [{"fd": added["fd"], "opaque": "log"}]}], sets
    print("fdset:", sets[0]["fds"][0]["opaque"])
    assert await qmp.execute("closefd", {"fdname": "pipe"}) == {}
    assert await qmp.execute("remove-fd", {"fdset-id": 3}) == {}
    assert await qmp.execute("query-fdsets") == []
    await qmp.disconnect()
    print("done")

asyncio.run(main(sys.argv[1]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_qmp_passes_fds_to_the_simulator() {
    let sim = Sim::builder().start().await.unwrap();
    let path = sim.socket_paths()[0].to_str().unwrap().to_owned();
    let stdout = output(&qmpkit_tests::python(), &["-c", FDS, &path], b"").await;
    assert_eq!(stdout, "no fd: No file descriptor supplied via SCM_RIGHTS\nfdset: log\ndone\n");
    sim.stop().await.unwrap();
}
