//! `qmp shell` driven in a real pseudo-terminal against real QEMU. Every step waits for the
//! shell's output (expect patterns), never for time.

use std::path::Path;
use std::process::Command;

use common::{exec_ok, qemu_with_second_monitor, qmp};
use qmpkit::launch::Launcher;
use rexpect::session::{PtySession, spawn_command};

mod common;

/// How long one expectation may wait before the test fails.
const PATIENCE_MS: u64 = 20_000;

/// The shell's prompt in QMP mode.
const PROMPT: &str = "(QEMU) ";

/// The shell's prompt in HMP mode.
const HMP_PROMPT: &str = "(QEMU-HMP) ";

/// `command` in a pseudo-terminal.
fn pty(command: Command) -> PtySession {
    spawn_command(command, Some(PATIENCE_MS)).expect("start qmp in a pseudo-terminal")
}

/// `qmp shell ARGS...` on an `xterm`, its history under `data_home`.
fn shell(args: &[&str], data_home: &Path) -> PtySession {
    let mut command = qmp();
    command.arg("shell").args(args).env("TERM", "xterm").env("XDG_DATA_HOME", data_home);
    pty(command)
}

/// Types text and makes sure it reaches the terminal (rexpect buffers `send`).
fn type_in(p: &mut PtySession, text: &str) {
    p.send(text).unwrap();
    p.flush().unwrap();
}

/// Waits for each of `texts`, in this order.
#[track_caller]
fn expect(p: &mut PtySession, texts: &[&str]) {
    for text in texts {
        p.exp_string(text).unwrap();
    }
}

/// Types `typed`, then waits for each of `texts`, in this order.
#[track_caller]
fn step(p: &mut PtySession, typed: &str, texts: &[&str]) {
    type_in(p, typed);
    expect(p, texts);
}

/// Types `quit` and waits for the program to end.
#[track_caller]
fn quit(p: &mut PtySession) {
    type_in(p, "quit\r");
    p.exp_eof().unwrap();
}

#[test]
fn banner_completion_help_and_history_across_sessions() {
    let vm = qmpkit_tests::qemu_none();
    let addr = qmpkit_tests::socket(&vm);
    let data = tempfile::tempdir().unwrap();

    let mut p = shell(&[&addr], data.path());
    expect(&mut p, &["Welcome to the QMP low-level shell!", "Connected to QEMU 7.", PROMPT]);

    // A command name.
    step(&mut p, "query-statu\t", &["query-status"]);
    step(&mut p, "\r", &["\"status\": \"running\"", PROMPT]);

    // An argument name, then a quoted value with a space.
    step(&mut p, "human-monitor-command com\t", &["command-line="]);
    step(&mut p, "\"info version\"\r", &["\"return\": \"7.", PROMPT]);

    // An enum value, nested under a dotted argument.
    step(&mut p, "blockdev-add driver=null-c\t", &["driver=null-co"]);
    step(&mut p, "node-name=n1\r", &["\"return\": {}", PROMPT]);

    // Help from the schema, and a check before sending with QEMU's words.
    step(&mut p, "help query-status\r", &["query-status() -> {running: bool", PROMPT]);
    step(
        &mut p,
        "blockdev-add driver=nope\r",
        &["GenericError: Parameter 'driver' does not accept value 'nope' (not sent)", PROMPT],
    );
    quit(&mut p);

    let history = std::fs::read_to_string(data.path().join("qmpkit/history")).unwrap();
    assert!(history.contains("help query-status"), "{history}");

    // The second session finds the first one's lines with the up arrow.
    let mut p = shell(&[&addr], data.path());
    expect(&mut p, &[PROMPT]);
    step(&mut p, "\x1b[A", &["quit"]);
    step(&mut p, "\x1b[A", &["driver=nope"]);
    step(&mut p, "\x1b[A", &["help query-status"]);
    step(&mut p, "\r", &["query-status() -> {", PROMPT]);
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn events_while_idle_transactions_and_ctrl_c_during_a_slow_command() {
    let dir = tempfile::tempdir().unwrap();
    let (vm, second) = qemu_with_second_monitor(dir.path());
    let mut p = shell(&["-v", &qmpkit_tests::socket(&vm)], dir.path());
    expect(&mut p, &[PROMPT]);

    // An event shows up while the prompt waits, without Enter.
    exec_ok(&second, &["stop"]);
    expect(&mut p, &["\"event\":\"STOP\""]);

    // A transaction over several lines.
    step(&mut p, "transaction(\r", &["TRANS> "]);
    step(&mut p, "abort\r", &["TRANS> "]);
    step(&mut p, ")\r", &["Transaction aborted using Abort action", PROMPT]);

    // QEMU blocks opening a FIFO for reading; Ctrl-C gives the prompt back.
    let fifo = qmpkit_tests::fifo(&vm);
    type_in(&mut p, &format!("blockdev-add driver=file node-name=f0 read-only=true filename={}\r", fifo.display()));
    // -v echoes the command once the line editor has let the terminal go.
    expect(&mut p, &["\"execute\": \"blockdev-add\""]);
    p.send_control('c').unwrap();
    expect(&mut p, &["cancelled: the reply, when it comes, is dropped", PROMPT]);
    let _writer = qmpkit_tests::release_fifo(&fifo);
    step(&mut p, "query-name\r", &["\"return\": {}", PROMPT]);
    quit(&mut p);
}

#[test]
fn hmp_mode_with_cpu() {
    let vm = qmpkit_tests::qemu_pc_paused();
    let data = tempfile::tempdir().unwrap();
    let mut p = shell(&["-H", &qmpkit_tests::socket(&vm)], data.path());
    expect(&mut p, &[HMP_PROMPT]);
    // Completion from HMP's own `help`: an `info` subcommand.
    step(&mut p, "info statu\t", &["info status"]);
    step(&mut p, "\r", &["VM status: paused (prelaunch)", HMP_PROMPT]);
    step(&mut p, "cpu 7\r", &["GenericError: Parameter 'cpu-index' expects a CPU number", HMP_PROMPT]);
    step(&mut p, "cpu 0\r", &[HMP_PROMPT]);
    step(&mut p, "info cpus\r", &["* CPU #0"]);
    quit(&mut p);
}

#[test]
fn the_peer_goes_away_and_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vm.sock");
    let vm = qmpkit_tests::start(Launcher::system().qmp_socket(&path));
    let mut p = shell(&[path.to_str().unwrap()], dir.path());
    expect(&mut p, &[PROMPT]);
    drop(vm);
    expect(&mut p, &["the server went away (end of stream); `reconnect` connects again"]);
    step(&mut p, "query-status\r", &["not connected: type `reconnect`"]);

    let _vm = qmpkit_tests::start(Launcher::system().qmp_socket(&path));
    step(&mut p, "reconnect\r", &["Connected to QEMU 7.", PROMPT]);
    step(&mut p, "query-status\r", &["\"status\": \"running\""]);
    quit(&mut p);
}

#[test]
fn job_progress_and_ctrl_c_offers_to_cancel() {
    let vm = qmpkit_tests::qemu_none();
    let addr = qmpkit_tests::socket(&vm);
    for node in ["src", "dst"] {
        exec_ok(&addr, &["blockdev-add", "driver=null-co", &format!("node-name={node}"), "size=1073741824"]);
    }
    // One byte a second: the job runs until it is cancelled.
    let mut command = qmp();
    command.args(["job", &addr, "blockdev-backup", "job-id=j0", "device=src", "target=dst", "sync=full", "speed=1"]);
    command.env("TERM", "xterm");
    let mut p = pty(command);
    // The bar shows the job and its status.
    expect(&mut p, &["running"]);
    p.send_control('c').unwrap();
    expect(&mut p, &["cancel job j0? [y/N] "]);
    step(&mut p, "y\r", &["job j0 was cancelled"]);
    let status = p.process.wait().unwrap();
    assert_eq!(status, rexpect::process::wait::WaitStatus::Exited(p.process.child_pid, 1));
}

/// The README's first command: `qmp shell` with no address talks to the built-in simulator.
#[test]
fn the_shell_without_an_address_talks_to_the_simulator() {
    let data = tempfile::tempdir().unwrap();
    let mut p = shell(&[], data.path());
    expect(&mut p, &["qmp: no address given; talking to the built-in simulator", "Connected to QEMU 10.0", PROMPT]);
    step(&mut p, "query-statu\t", &["query-status"]);
    step(&mut p, "\r", &["\"status\": \"running\"", PROMPT]);
    step(&mut p, "stop\r", &["\"event\":\"STOP\"", PROMPT]);
    quit(&mut p);
}

/// On a terminal JSON is pretty and coloured; NO_COLOR turns the colour off.
#[test]
fn json_on_a_terminal_is_pretty_and_coloured() {
    for (no_color, coloured) in [(None, true), (Some("1"), false)] {
        let mut command = qmp();
        command.args(["exec", "query-status"]).env("TERM", "xterm").env_remove("NO_COLOR");
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let mut p = pty(command);
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
    let mut command = qmp();
    command
        .args(["wrap", "--", "-machine", "none", "-name", "wrapped"])
        .env("TERM", "xterm")
        .env("TMPDIR", tmp.path())
        .env("XDG_DATA_HOME", tmp.path().join("data"));
    let mut p = pty(command);
    expect(&mut p, &["Connected to QEMU 7.", PROMPT]);
    step(&mut p, "query-name\r", &["\"name\": \"wrapped\"", PROMPT]);
    step(&mut p, "reconnect\r", &["QEMU connected to this shell; it cannot be reconnected", PROMPT]);
    quit(&mut p);
    let left: Vec<_> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).filter(|name| name != "data").collect();
    assert!(left.is_empty(), "wrap removed its files: {left:?}");
}
