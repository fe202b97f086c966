//! `qmp sim` as a process: the addresses it prints, independent VMs from one process, Python's
//! `qemu.qmp` and our client talking to it, and its end (after `quit`, or on SIGTERM) with
//! its sockets removed.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts `qmp sim` with `args` and returns it with the first `lines` lines it prints.
async fn start(args: &[&str], lines: usize) -> (Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qmp"))
        .arg("sim")
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("qmp runs");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    while out.len() < lines {
        let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line()).await.expect("qmp sim prints");
        out.push(line.unwrap().expect("an address line"));
    }
    (child, out)
}

async fn exits(child: &mut Child) -> std::process::ExitStatus {
    tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("qmp sim ends").unwrap()
}

/// qemu.qmp drives the first VM; the second must not see any of it.
const PYTHON: &str = r#"
import asyncio, sys
from qemu.qmp import EventListener, ExecuteError, QMPClient

async def main(first, second):
    a = QMPClient("a")
    await a.connect(first)
    v = a.greeting._asdict()["QMP"]["version"]["qemu"]
    assert (v["major"], v["minor"]) == (7, 2), v
    status = await a.execute("query-status")
    assert status == {"status": "prelaunch", "singlestep": False, "running": False}, status
    print("prelaunch", flush=True)
    listener = EventListener()
    with a.listen(listener):
        assert await a.execute("cont") == {}
        event = await asyncio.wait_for(listener.get(), 10)
    assert event["event"] == "RESUME", event
    print("event: RESUME", flush=True)
    assert await a.execute("query-name") == {"name": "vm-0001"}
    try:
        await a.execute("balloon", {"value": "x"})
        raise AssertionError("accepted")
    except ExecuteError as err:
        assert err.error.error.desc == "Invalid parameter type for 'value', expected: integer"
    print("validation error", flush=True)
    yank = await a.execute("query-yank", oob=True)
    assert yank == [{"type": "chardev", "id": "compat_monitor0"}], yank
    print("oob", flush=True)

    b = QMPClient("b")
    await b.connect(second)
    status = await b.execute("query-status")
    assert status["status"] == "prelaunch", status
    assert await b.execute("query-name") == {"name": "vm-0002"}
    print("independent", flush=True)
    await b.disconnect()

    with a.listen(listener):
        await a.execute("__org.qmpkit_guest-reset")
        event = await asyncio.wait_for(listener.get(), 10)
    assert event["event"] == "RESET" and event["data"] == {"guest": True, "reason": "guest-reset"}, event
    print("fault: RESET", flush=True)
    await a.execute("quit")
    try:
        await a.disconnect()
    except EOFError:
        pass  # the server closed first, as QEMU does after quit; qemu.qmp reports it so
    print("quit", flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_qmp_drives_two_vms_from_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let sockets = dir.path().join("vms");
    let listen = sockets.to_str().unwrap();
    let (mut child, lines) =
        start(&["--vms", "2", "--listen", listen, "--json", "--paused", "--version", "7.2", "--faults"], 2).await;
    let printed: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).expect("JSON lines")).collect();
    let first = sockets.join("vm-0001.sock");
    let second = sockets.join("vm-0002.sock");
    assert_eq!(printed[0]["address"], first.to_str().unwrap());
    assert_eq!(printed[0]["transport"], "unix");
    assert_eq!(printed[0]["name"], "vm-0001");
    assert_eq!(printed[1]["address"], second.to_str().unwrap());
    assert_eq!(printed[1]["qemu"], "7.2.22");

    let run = Command::new(qmpkit_tests::python()).arg("-c").arg(PYTHON).arg(&first).arg(&second).output();
    let output = tokio::time::timeout(Duration::from_secs(60), run).await.expect("the script ends").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout, "prelaunch\nevent: RESUME\nvalidation error\noob\nindependent\nfault: RESET\nquit\n");

    // The first VM quit; the second one still serves.
    let qmp = qmpkit::Client::connect(second.to_str().unwrap()).await.unwrap();
    assert_eq!(qmp.query_name().await.unwrap().name.as_deref(), Some("vm-0002"));
    qmp.quit().await.unwrap();
    assert!(exits(&mut child).await.success(), "qmp sim ends when its last VM quits");
    assert!(!first.exists() && !second.exists(), "every socket is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_unix_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qmp.sock");
    let (mut child, lines) =
        start(&["--listen", "127.0.0.1:0", "--listen", socket.to_str().unwrap(), "--name", "n", "--many-clients"], 2)
            .await;
    let tcp = &lines[0];
    assert!(tcp.starts_with("127.0.0.1:") && !tcp.ends_with(":0"), "the real port is printed: {tcp}");
    assert_eq!(lines[1], socket.to_str().unwrap());

    let over_tcp = qmpkit::Client::connect(tcp).await.unwrap();
    let over_unix = qmpkit::Client::connect(socket.to_str().unwrap()).await.unwrap();
    over_tcp.stop().await.unwrap();
    // Both addresses reach the same machine (two clients at once: `--many-clients`).
    assert_eq!(over_unix.query_status().await.unwrap().status, qmpkit::types::RunState::Paused);
    assert_eq!(over_unix.query_name().await.unwrap().name.as_deref(), Some("n"));

    let mut events = over_tcp.subscribe(qmpkit::EventFilter::names(["SHUTDOWN"]));
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    // As QEMU's: SHUTDOWN with reason host-signal, then the end of the connection.
    let event = events.next_event().await.expect("SHUTDOWN before the end");
    assert_eq!(event.data, Some(serde_json::json!({"guest": false, "reason": "host-signal"})));
    over_unix.closed().await;
    assert!(exits(&mut child).await.success());
    assert!(!socket.exists(), "the socket is removed on SIGTERM");
}

#[tokio::test]
async fn refuses_unknown_versions_and_non_loopback_addresses() {
    for (args, message) in [
        (&["--version", "9.1"][..], "no simulator profile for QEMU version '9.1' (known: 7.2, 10.0)"),
        (&["--listen", "192.0.2.1:4444"][..], "loopback addresses only"),
        (&["--vms", "2", "--listen", "127.0.0.1:4444"][..], "--vms needs exactly one --listen DIR"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_qmp")).arg("sim").args(args).output().await.unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
