//! Set-up that the `qmp` end-to-end tests share: how `qmp` is started, and QEMU with a second
//! monitor to act on while `qmp` holds the first.

use std::path::Path;
use std::process::Command;

use qmpkit::launch::{Instance, Launcher};

/// `qmp`, with nothing from the test's own environment that would change what it prints or
/// where it connects: no `QMP_SOCKET`, no `RUST_LOG`, and `NO_COLOR` set.
pub(crate) fn qmp() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qmp"));
    command.env_remove("QMP_SOCKET").env_remove("RUST_LOG").env("NO_COLOR", "1");
    command
}

/// Runs `qmp exec ADDR ARGS...` and fails the test unless it succeeds.
pub(crate) fn exec_ok(addr: &str, args: &[&str]) {
    let out = qmp().arg("exec").arg(addr).args(args).output().expect("run qmp exec");
    assert_eq!(out.status.code(), Some(0), "qmp exec {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A QEMU with a second monitor, so that a test can act (and make events) while `qmp` holds
/// the first; the second monitor's address comes with it.
pub(crate) fn qemu_with_second_monitor(dir: &Path) -> (Instance, String) {
    let second = dir.join("second.sock");
    let instance = qmpkit_tests::start(Launcher::system().args([
        "-machine".to_owned(),
        "none".to_owned(),
        "-qmp".to_owned(),
        format!("unix:{},server=on,wait=off", second.display()),
    ]));
    (instance, second.display().to_string())
}
