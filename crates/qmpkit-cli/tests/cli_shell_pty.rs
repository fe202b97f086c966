//! `qmp shell` driven in a real pseudo-terminal against real QEMU. Every step waits for the
//! shell's output (expect patterns), never for time.

use std::path::Path;
use std::process::Command;

use qmpkit::launch::{Instance, Launcher};
use rexpect::session::{PtySession, spawn_command};

/// How long one expectation may wait before the test fails.
const PATIENCE_MS: u64 = 20_000;

fn shell(args: &[&str], data_home: &Path) -> PtySession {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qmp"));
    command
        .arg("shell")
        .args(args)
        .env_remove("QMP_SOCKET")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .env("XDG_DATA_HOME", data_home);
    spawn_command(command, Some(PATIENCE_MS)).expect("start qmp shell in a pseudo-terminal")
}

/// Types text and makes sure it reaches the terminal (rexpect buffers `send`).
fn type_in(p: &mut PtySession, text: &str) {
    p.send(text).unwrap();
    p.flush().unwrap();
}

fn exec(addr: &str, command: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_qmp")).args(["exec", addr, command]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn banner_completion_help_and_history_across_sessions() {
    let vm = qmpkit_tests::qemu_none();
    let addr = qmpkit_tests::socket(&vm);
    let data = tempfile::tempdir().unwrap();

    let mut p = shell(&[&addr], data.path());
    p.exp_string("Welcome to the QMP low-level shell!").unwrap();
    p.exp_string("Connected to QEMU 7.").unwrap();
    p.exp_string("(QEMU) ").unwrap();

    // A command name.
    type_in(&mut p, "query-statu\t");
    p.exp_string("query-status").unwrap();
    type_in(&mut p, "\r");
    p.exp_string("\"status\": \"running\"").unwrap();
    p.exp_string("(QEMU) ").unwrap();

    // An argument name, then a quoted value with a space.
    type_in(&mut p, "human-monitor-command com\t");
    p.exp_string("command-line=").unwrap();
    type_in(&mut p, "\"info version\"\r");
    p.exp_string("\"return\": \"7.").unwrap();
    p.exp_string("(QEMU) ").unwrap();

    // An enum value, nested under a dotted argument.
    type_in(&mut p, "blockdev-add driver=null-c\t");
    p.exp_string("driver=null-co").unwrap();
    type_in(&mut p, "node-name=n1\r");
    p.exp_string("\"return\": {}").unwrap();
    p.exp_string("(QEMU) ").unwrap();

    // Help from the schema, and a check before sending with QEMU's words.
    type_in(&mut p, "help query-status\r");
    p.exp_string("query-status() -> {running: bool").unwrap();
    p.exp_string("(QEMU) ").unwrap();
    type_in(&mut p, "blockdev-add driver=nope\r");
    p.exp_string("GenericError: Parameter 'driver' does not accept value 'nope' (not sent)").unwrap();
    p.exp_string("(QEMU) ").unwrap();
    type_in(&mut p, "quit\r");
    p.exp_eof().unwrap();

    let history = std::fs::read_to_string(data.path().join("qmpkit/history")).unwrap();
    assert!(history.contains("help query-status"), "{history}");

    // The second session finds the first one's lines with the up arrow.
    let mut p = shell(&[&addr], data.path());
    p.exp_string("(QEMU) ").unwrap();
    type_in(&mut p, "\x1b[A");
    p.exp_string("quit").unwrap();
    type_in(&mut p, "\x1b[A");
    p.exp_string("driver=nope").unwrap();
    type_in(&mut p, "\x1b[A");
    p.exp_string("help query-status").unwrap();
    type_in(&mut p, "\r");
    p.exp_string("query-status() -> {").unwrap();
    p.exp_string("(QEMU) ").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}

/// A QEMU with a second monitor, so that the test can act while the shell holds the first.
fn qemu_with_second_monitor(dir: &Path) -> (Instance, String) {
    let second = dir.join("second.sock");
    let instance = qmpkit_tests::start(Launcher::system().args([
        "-machine".to_owned(),
        "none".to_owned(),
        "-qmp".to_owned(),
        format!("unix:{},server=on,wait=off", second.display()),
    ]));
    (instance, second.display().to_string())
}

#[test]
fn events_while_idle_transactions_and_ctrl_c_during_a_slow_command() {
    let dir = tempfile::tempdir().unwrap();
    let (vm, second) = qemu_with_second_monitor(dir.path());
    let mut p = shell(&["-v", &qmpkit_tests::socket(&vm)], dir.path());
    p.exp_string("(QEMU) ").unwrap();

    // An event shows up while the prompt waits, without Enter.
    exec(&second, "stop");
    p.exp_string("\"event\":\"STOP\"").unwrap();

    // A transaction over several lines.
    type_in(&mut p, "transaction(\r");
    p.exp_string("TRANS> ").unwrap();
    type_in(&mut p, "abort\r");
    p.exp_string("TRANS> ").unwrap();
    type_in(&mut p, ")\r");
    p.exp_string("Transaction aborted using Abort action").unwrap();
    p.exp_string("(QEMU) ").unwrap();

    // QEMU blocks opening a FIFO for reading; Ctrl-C gives the prompt back.
    let fifo = qmpkit_tests::fifo(&vm);
    type_in(&mut p, &format!("blockdev-add driver=file node-name=f0 read-only=true filename={}\r", fifo.display()));
    // -v echoes the command once the line editor has let the terminal go.
    p.exp_string("\"execute\": \"blockdev-add\"").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("cancelled: the reply, when it comes, is dropped").unwrap();
    p.exp_string("(QEMU) ").unwrap();
    let _writer = qmpkit_tests::release_fifo(&fifo);
    type_in(&mut p, "query-name\r");
    p.exp_string("\"return\": {}").unwrap();
    p.exp_string("(QEMU) ").unwrap();
    type_in(&mut p, "quit\r");
    p.exp_eof().unwrap();
}

#[test]
fn hmp_mode_with_cpu() {
    let vm = qmpkit_tests::qemu_pc_paused();
    let data = tempfile::tempdir().unwrap();
    let mut p = shell(&["-H", &qmpkit_tests::socket(&vm)], data.path());
    p.exp_string("(QEMU-HMP) ").unwrap();
    // Completion from HMP's own `help`: an `info` subcommand.
    type_in(&mut p, "info statu\t");
    p.exp_string("info status").unwrap();
    type_in(&mut p, "\r");
    p.exp_string("VM status: paused (prelaunch)").unwrap();
    p.exp_string("(QEMU-HMP) ").unwrap();
    type_in(&mut p, "cpu 7\r");
    p.exp_string("GenericError: Parameter 'cpu-index' expects a CPU number").unwrap();
    p.exp_string("(QEMU-HMP) ").unwrap();
    type_in(&mut p, "cpu 0\r");
    p.exp_string("(QEMU-HMP) ").unwrap();
    type_in(&mut p, "info cpus\r");
    p.exp_string("* CPU #0").unwrap();
    type_in(&mut p, "quit\r");
    p.exp_eof().unwrap();
}

#[test]
fn the_peer_goes_away_and_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vm.sock");
    let vm = qmpkit_tests::start(Launcher::system().qmp_socket(&path));
    let mut p = shell(&[path.to_str().unwrap()], dir.path());
    p.exp_string("(QEMU) ").unwrap();
    drop(vm);
    p.exp_string("the server went away (end of stream); `reconnect` connects again").unwrap();
    type_in(&mut p, "query-status\r");
    p.exp_string("not connected: type `reconnect`").unwrap();

    let _vm = qmpkit_tests::start(Launcher::system().qmp_socket(&path));
    type_in(&mut p, "reconnect\r");
    p.exp_string("Connected to QEMU 7.").unwrap();
    p.exp_string("(QEMU) ").unwrap();
    type_in(&mut p, "query-status\r");
    p.exp_string("\"status\": \"running\"").unwrap();
    type_in(&mut p, "quit\r");
    p.exp_eof().unwrap();
}

#[test]
fn job_progress_and_ctrl_c_offers_to_cancel() {
    let vm = qmpkit_tests::qemu_none();
    let addr = qmpkit_tests::socket(&vm);
    for node in ["src", "dst"] {
        let out = Command::new(env!("CARGO_BIN_EXE_qmp"))
            .args(["exec", &addr, "blockdev-add", "driver=null-co", &format!("node-name={node}"), "size=1073741824"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // One byte a second: the job runs until it is cancelled.
    let mut command = Command::new(env!("CARGO_BIN_EXE_qmp"));
    command.args(["job", &addr, "blockdev-backup", "job-id=j0", "device=src", "target=dst", "sync=full", "speed=1"]);
    command.env("NO_COLOR", "1").env("TERM", "xterm");
    let mut p = spawn_command(command, Some(PATIENCE_MS)).unwrap();
    // The bar shows the job and its status.
    p.exp_string("running").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("cancel job j0? [y/N] ").unwrap();
    type_in(&mut p, "y\r");
    p.exp_string("job j0 was cancelled").unwrap();
    let status = p.process.wait().unwrap();
    assert_eq!(status, rexpect::process::wait::WaitStatus::Exited(p.process.child_pid, 1));
}

/// The README's first command: `qmp shell` with no address talks to the built-in simulator.
#[test]
fn the_shell_without_an_address_talks_to_the_simulator() {
    let data = tempfile::tempdir().unwrap();
    let mut p = shell(&[], data.path());
    p.exp_string("qmp: no address given; talking to the built-in simulator").unwrap();
    p.exp_string("Connected to QEMU 10.0").unwrap();
    p.exp_string("(QEMU) ").unwrap();
    type_in(&mut p, "query-statu\t");
    p.exp_string("query-status").unwrap();
    type_in(&mut p, "\r");
    p.exp_string("\"status\": \"running\"").unwrap();
    p.exp_string("(QEMU) ").unwrap();
    type_in(&mut p, "stop\r");
    p.exp_string("\"event\":\"STOP\"").unwrap();
    p.exp_string("(QEMU) ").unwrap();
    type_in(&mut p, "quit\r");
    p.exp_eof().unwrap();
}

/// On a terminal JSON is pretty and coloured; NO_COLOR turns the colour off.
#[test]
fn json_on_a_terminal_is_pretty_and_coloured() {
    for (no_color, coloured) in [(None, true), (Some("1"), false)] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_qmp"));
        command.args(["exec", "query-status"]).env_remove("QMP_SOCKET").env("TERM", "xterm").env_remove("NO_COLOR");
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let mut p = spawn_command(command, Some(PATIENCE_MS)).unwrap();
        let all = p.exp_eof().unwrap();
        assert!(all.contains("running"), "{all:?}");
        assert!(all.contains("\r\n  "), "indented: {all:?}");
        assert_eq!(all.contains("\x1b["), coloured, "{all:?}");
    }
}

/// `qmp wrap` on a terminal: QEMU started, the shell on it, nothing left behind.
#[test]
fn wrap_opens_the_shell_on_a_new_qemu() {
    let tmp = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_qmp"));
    command
        .args(["wrap", "--", "-machine", "none", "-name", "wrapped"])
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .env("TMPDIR", tmp.path())
        .env("XDG_DATA_HOME", tmp.path().join("data"));
    let mut p = spawn_command(command, Some(PATIENCE_MS)).unwrap();
    p.exp_string("Connected to QEMU 7.").unwrap();
    p.exp_string("(QEMU) ").unwrap();
    type_in(&mut p, "query-name\r");
    p.exp_string("\"name\": \"wrapped\"").unwrap();
    p.exp_string("(QEMU) ").unwrap();
    type_in(&mut p, "reconnect\r");
    p.exp_string("QEMU connected to this shell; it cannot be reconnected").unwrap();
    p.exp_string("(QEMU) ").unwrap();
    type_in(&mut p, "quit\r");
    p.exp_eof().unwrap();
    let left: Vec<_> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).filter(|name| name != "data").collect();
    assert!(left.is_empty(), "wrap removed its files: {left:?}");
}
