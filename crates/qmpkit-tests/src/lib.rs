//! Support for qmpkit's cross-crate tests: a scripted QMP peer over an in-memory stream, and
//! helpers that start real QEMU instances for the tests that need one.

pub mod agent_fixture;
pub mod server_fixture;

use std::path::PathBuf;

use qmpkit::launch::{Instance, Launcher};
use qmpkit_proto::{Framer, Limits, Mode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// A greeting like QEMU 7.2's, offering `oob`.
pub const GREETING_OOB: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n";

/// A greeting offering no capabilities.
pub const GREETING_PLAIN: &[u8] =
    b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n";

/// The far end of a client under test: a scripted server that writes exactly the bytes a test
/// gives it and reads what the client sends, command by command.
pub struct Peer {
    io: DuplexStream,
    framer: Framer,
    buf: Vec<u8>,
}

impl Peer {
    /// A connected pair: the stream for the client and the scripted peer. The pipe holds
    /// `capacity` bytes each way, so tests can make writes block.
    #[must_use]
    pub fn pair(capacity: usize) -> (DuplexStream, Peer) {
        let (client, server) = tokio::io::duplex(capacity);
        (client, Peer { io: server, framer: Framer::new(Mode::Server, Limits::default()), buf: vec![0; 64 * 1024] })
    }

    /// Writes bytes to the client.
    ///
    /// # Panics
    /// When the client side is gone.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("the client is gone");
    }

    /// Reads the next command the client sent, or `None` when it closed the stream.
    ///
    /// # Panics
    /// When the client sent something that is not a JSON object.
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            if let Some(frame) = self.framer.next_frame() {
                let frame = frame.expect("the client sent malformed JSON");
                return Some(serde_json::from_slice(frame.as_bytes()).expect("the client sent invalid JSON"));
            }
            let n = self.io.read(&mut self.buf).await.expect("read from the client");
            if n == 0 {
                return None;
            }
            self.framer.push(&self.buf[..n]);
        }
    }

    /// Reads the next command and checks its name.
    ///
    /// # Panics
    /// When the client closed or sent another command.
    pub async fn expect(&mut self, name: &str) -> Value {
        let command = self.recv().await.unwrap_or_else(|| panic!("the client closed; expected {name}"));
        let got = command.get("execute").or_else(|| command.get("exec-oob")).and_then(Value::as_str);
        assert_eq!(got, Some(name), "unexpected command {command}");
        command
    }

    /// Sends the greeting, answers `qmp_capabilities`, and returns what it asked to enable.
    pub async fn handshake(&mut self, greeting: &[u8]) -> Value {
        self.send(greeting).await;
        let negotiate = self.expect("qmp_capabilities").await;
        let reply = serde_json::json!({"return": {}, "id": negotiate["id"]});
        self.send_json(&reply).await;
        negotiate.get("arguments").cloned().unwrap_or(Value::Null)
    }

    /// Writes a JSON value and CRLF, as QEMU does.
    pub async fn send_json(&mut self, value: &Value) {
        let mut bytes = serde_json::to_vec(value).expect("serializable");
        bytes.extend_from_slice(b"\r\n");
        self.send(&bytes).await;
    }

    /// Answers a command with a return value, echoing its id.
    pub async fn reply(&mut self, command: &Value, value: Value) {
        self.send_json(&serde_json::json!({"return": value, "id": command["id"]})).await;
    }

    /// Closes the stream, as a server that exits does.
    pub async fn close(mut self) {
        let _ = self.io.shutdown().await;
    }
}

/// Starts a QEMU with `-machine none`. Fails loudly when QEMU is missing: scripts/test
/// installs it, and tests that need it never skip.
///
/// # Panics
/// When QEMU cannot be started.
#[must_use]
pub fn qemu_none() -> Instance {
    start(Launcher::system())
}

/// Starts a QEMU with a PC machine under TCG, paused (`-S`), 64 MiB of memory: a real VM for
/// run-state events.
///
/// # Panics
/// When QEMU cannot be started.
#[must_use]
pub fn qemu_pc_paused() -> Instance {
    start(Launcher::system().args(["-M", "pc", "-accel", "tcg", "-S", "-m", "64"]))
}

/// Starts a QEMU from a launcher.
///
/// # Panics
/// When QEMU cannot be started, with the launcher's message.
#[must_use]
pub fn start(launcher: Launcher) -> Instance {
    launcher.start().unwrap_or_else(|e| panic!("this test needs QEMU: {e}"))
}

/// Starts a QEMU with `-machine none` from async code, without blocking the runtime.
///
/// # Panics
/// When QEMU cannot be started.
pub async fn qemu_none_async() -> Instance {
    start_async(Launcher::system()).await
}

/// [`qemu_pc_paused`] from async code, without blocking the runtime.
///
/// # Panics
/// When QEMU cannot be started.
pub async fn qemu_pc_paused_async() -> Instance {
    start_async(Launcher::system().args(["-M", "pc", "-accel", "tcg", "-S", "-m", "64"])).await
}

/// [`start`] from async code, without blocking the runtime.
///
/// # Panics
/// When QEMU cannot be started, with the launcher's message.
pub async fn start_async(launcher: Launcher) -> Instance {
    launcher.start_async().await.unwrap_or_else(|e| panic!("this test needs QEMU: {e}"))
}

/// The QMP socket of an instance, as a string for [`qmpkit::Client::connect`].
#[must_use]
pub fn socket(instance: &Instance) -> String {
    instance.qmp_socket().display().to_string()
}

/// A named pipe in the instance's directory. Opening it for reading blocks until a writer
/// opens it, so `blockdev-add` of a file driver on it blocks QEMU's main loop until the test
/// opens the pipe for writing: a deterministic slow command.
///
/// # Panics
/// When the pipe cannot be made.
#[must_use]
pub fn fifo(instance: &Instance) -> PathBuf {
    let path = instance.dir().join("block.fifo");
    rustix::fs::mkfifoat(rustix::fs::CWD, &path, rustix::fs::Mode::from_raw_mode(0o600)).expect("mkfifo");
    path
}

/// Unblocks a QEMU that is opening [`fifo`] for reading.
///
/// # Panics
/// When the pipe cannot be opened.
pub fn release_fifo(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new().write(true).open(path).expect("open the FIFO for writing")
}

/// The Python interpreter of the venv that scripts/test makes, with qemu.qmp in it.
///
/// # Panics
/// When there is none: these tests never skip.
#[must_use]
pub fn python() -> PathBuf {
    let candidates = [
        std::env::var_os("QMPKIT_PYTHON").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/venv/bin/python")),
    ];
    candidates.into_iter().flatten().find(|p| p.exists()).unwrap_or_else(|| {
        panic!("this test needs the Python venv with qemu.qmp: run scripts/test, or set QMPKIT_PYTHON")
    })
}
