//! Guest agent test support: a real `qemu-ga` run safely on this machine, and a scripted agent
//! over an in-memory stream.
//!
//! # Safety of the real agent
//! The agent runs on the test machine itself, not in a guest, so [`RealAgent`]:
//! - runs it unprivileged: when the tests run as root it drops to `nobody` (uid and gid 65534)
//!   before `exec`, and everything it may touch is in a private temp dir owned by that user;
//! - blocks with `-b` every command that changes the machine ([`BLOCKED`]): shutdown, suspend,
//!   filesystem freeze and trim, clock, users, vCPUs, memory and SSH keys;
//! - kills it (SIGKILL) when the guard is dropped, even when a test fails.
//!
//! Tests only ever `exec` harmless programs and only touch files inside [`RealAgent::dir`].

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use qmpkit_proto::{FrameError, Framer, Limits, Mode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

/// Every command of qemu-ga 7.2 (and later) that changes the machine it runs on.
pub const BLOCKED: &[&str] = &[
    "guest-shutdown",
    "guest-suspend-disk",
    "guest-suspend-ram",
    "guest-suspend-hybrid",
    "guest-fsfreeze-freeze",
    "guest-fsfreeze-freeze-list",
    "guest-fsfreeze-thaw",
    "guest-fstrim",
    "guest-set-time",
    "guest-set-user-password",
    "guest-set-vcpus",
    "guest-set-memory-blocks",
    "guest-ssh-add-authorized-keys",
    "guest-ssh-remove-authorized-keys",
];

/// The unprivileged user the agent runs as when the tests run as root.
const NOBODY: u32 = 65534;

/// Finds `qemu-ga`: `$QMPKIT_QGA`, then `PATH`, then the sbin directories where Debian puts it.
///
/// # Panics
/// When it is not installed (scripts/test installs it; tests that need it never skip).
#[must_use]
pub fn qemu_ga() -> PathBuf {
    if let Some(path) = std::env::var_os("QMPKIT_QGA") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("qemu-ga"))
        .find(|candidate| candidate.is_file())
        .expect("qemu-ga is not installed: run scripts/test, which installs qemu-guest-agent, or set QMPKIT_QGA")
}

/// A real `qemu-ga` listening on a unix socket in a private directory, killed on drop.
pub struct RealAgent {
    dir: TempDir,
    child: Option<Child>,
}

impl RealAgent {
    /// Starts the agent. It is not ready when this returns: wait with
    /// `Agent::wait_ready`.
    ///
    /// # Panics
    /// When the agent cannot be started.
    #[must_use]
    pub fn start() -> RealAgent {
        let mut agent = RealAgent::prepare();
        agent.spawn();
        agent
    }

    /// Prepares the directory without starting the agent, for tests of an agent that comes
    /// up late; start it with [`RealAgent::spawn`].
    ///
    /// # Panics
    /// When the directory cannot be made.
    #[must_use]
    pub fn prepare() -> RealAgent {
        let dir = tempfile::Builder::new().prefix("qmpkit-qga-").tempdir().expect("temp dir");
        if running_as_root() {
            std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).expect("chown the agent's dir to nobody");
        }
        RealAgent { dir, child: None }
    }

    /// The private directory: the agent's state, its socket, and the only place tests touch.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The socket's path.
    #[must_use]
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("qga.sock")
    }

    /// The socket's path as an agent address.
    #[must_use]
    pub fn address(&self) -> String {
        self.socket().to_str().expect("temp paths are UTF-8").to_owned()
    }

    /// The agent's process id, while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts (or starts again) the agent process.
    ///
    /// # Panics
    /// When it is already running or cannot be started.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the agent is already running");
        // A socket file left by a killed agent would make the new one fail to bind.
        let _ = std::fs::remove_file(self.socket());
        let mut command = Command::new(qemu_ga());
        command
            .arg("-m")
            .arg("unix-listen")
            .arg("-p")
            .arg(self.socket())
            .arg("-t")
            .arg(self.dir())
            .arg("-f")
            .arg(self.dir().join("qga.pid"))
            .arg("-b")
            .arg(BLOCKED.join(","))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if running_as_root() {
            command.uid(NOBODY).gid(NOBODY);
        }
        self.child = Some(command.spawn().expect("start qemu-ga"));
    }

    /// Kills the agent at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the agent (SIGSTOP): it reads and answers nothing until [`RealAgent::resume`].
    ///
    /// # Panics
    /// When it is not running.
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Lets a paused agent go on (SIGCONT).
    ///
    /// # Panics
    /// When it is not running.
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = self.pid().expect("the agent is not running");
        let pid = rustix::process::Pid::from_raw(pid.try_into().expect("pid fits")).expect("a real pid");
        rustix::process::kill_process(pid, signal).expect("signal the agent");
    }
}

impl Drop for RealAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A unix socket relay between a client and an agent that reports every chunk the client
/// sends, so a test can act at the exact moment a command has reached the agent's socket.
pub struct Relay {
    path: PathBuf,
    _dir: TempDir,
    sent: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Listens on a socket of its own and, for each client, connects to `target` and copies
    /// bytes both ways until either side closes.
    ///
    /// # Panics
    /// When the socket cannot be made.
    #[must_use]
    pub fn start(target: PathBuf) -> Relay {
        let dir = tempfile::Builder::new().prefix("qmpkit-relay-").tempdir().expect("temp dir");
        let path = dir.path().join("relay.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind the relay");
        let (tx, sent) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(agent) = tokio::net::UnixStream::connect(&target).await else { continue };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let (mut client_rx, mut client_tx) = client.into_split();
                    let (mut agent_rx, mut agent_tx) = agent.into_split();
                    let upstream = async {
                        let mut buf = vec![0; 64 * 1024];
                        while let Ok(n @ 1..) = client_rx.read(&mut buf).await {
                            if agent_tx.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            let _ = tx.send(buf[..n].to_vec());
                        }
                    };
                    let downstream = async {
                        let _ = tokio::io::copy(&mut agent_rx, &mut client_tx).await;
                        let _ = client_tx.shutdown().await;
                    };
                    // When the agent side ends, the client sees the end of the stream.
                    tokio::select! {
                        () = upstream => {}
                        () = downstream => {}
                    }
                });
            }
        });
        Relay { path, _dir: dir, sent, task }
    }

    /// The relay's socket, as an agent address.
    #[must_use]
    pub fn address(&self) -> String {
        self.path.to_str().expect("temp paths are UTF-8").to_owned()
    }

    /// Waits until the client has sent bytes containing `needle` (in one chunk).
    ///
    /// # Panics
    /// When the relay stopped.
    pub async fn wait_for(&mut self, needle: &str) {
        loop {
            let chunk = self.sent.recv().await.expect("the relay stopped");
            if chunk.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return;
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A stream a scripted agent can use.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// What a client under test sent to a [`ScriptedAgent`].
#[derive(Debug, Clone, PartialEq)]
pub enum FromClient {
    /// The `0xFF` reset byte.
    Reset,
    /// A command.
    Command(Value),
}

/// The far end of an `Agent` under test: writes exactly what the test says and reports what
/// the client sent, reset bytes included.
pub struct ScriptedAgent {
    io: Box<dyn Io>,
    framer: Framer,
    buf: Vec<u8>,
}

impl ScriptedAgent {
    /// A connected pair: the stream for the client and the scripted agent.
    #[must_use]
    pub fn pair() -> (DuplexStream, ScriptedAgent) {
        let (client, agent) = tokio::io::duplex(64 * 1024);
        (client, ScriptedAgent::over(agent))
    }

    /// A scripted agent on a connected stream (a TCP connection a test accepted).
    #[must_use]
    pub fn over(stream: impl AsyncRead + AsyncWrite + Send + Unpin + 'static) -> ScriptedAgent {
        ScriptedAgent {
            io: Box::new(stream),
            framer: Framer::new(Mode::Server, Limits::default()),
            buf: vec![0; 64 * 1024],
        }
    }

    /// The next thing the client sent, or `None` when it closed.
    ///
    /// # Panics
    /// When the client sent malformed JSON other than the reset byte.
    pub async fn recv(&mut self) -> Option<FromClient> {
        loop {
            if let Some(frame) = self.framer.next_frame() {
                return Some(match frame {
                    Ok(frame) => FromClient::Command(serde_json::from_slice(frame.as_bytes()).expect("JSON command")),
                    Err(FrameError::Stray(bytes)) if bytes.contains(&0xFF) => FromClient::Reset,
                    Err(err) => panic!("the client sent malformed input: {err}"),
                });
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
    /// When the client sent something else.
    pub async fn expect(&mut self, name: &str) -> Value {
        match self.recv().await {
            Some(FromClient::Command(command)) if command["execute"] == name => command,
            other => panic!("expected {name}, got {other:?}"),
        }
    }

    /// Reads a resync (the reset byte, then `guest-sync-delimited`) and returns its id.
    ///
    /// # Panics
    /// When the client sent something else.
    pub async fn expect_sync(&mut self) -> i64 {
        assert_eq!(self.recv().await, Some(FromClient::Reset), "a resync starts with the reset byte");
        let sync = self.expect("guest-sync-delimited").await;
        sync["arguments"]["id"].as_i64().expect("an integer sync id")
    }

    /// Answers a sync as qemu-ga does: the sentinel, then the id.
    pub async fn sync_reply(&mut self, id: i64) {
        let mut bytes = vec![0xFF];
        bytes.extend_from_slice(format!("{{\"return\": {id}}}\n").as_bytes());
        self.send(&bytes).await;
    }

    /// Reads a resync and answers it.
    pub async fn accept_sync(&mut self) {
        let id = self.expect_sync().await;
        self.sync_reply(id).await;
    }

    /// Answers a command with a value, echoing its id as qemu-ga does.
    pub async fn reply(&mut self, command: &Value, value: Value) {
        self.send_json(&json!({"return": value, "id": command["id"]})).await;
    }

    /// Answers a command with an error.
    pub async fn refuse(&mut self, command: &Value, class: &str, desc: &str) {
        self.send_json(&json!({"error": {"class": class, "desc": desc}, "id": command["id"]})).await;
    }

    /// Writes a JSON value and `\n`, as qemu-ga does.
    pub async fn send_json(&mut self, value: &Value) {
        let mut bytes = serde_json::to_vec(value).expect("serializable");
        bytes.push(b'\n');
        self.send(&bytes).await;
    }

    /// Writes raw bytes.
    ///
    /// # Panics
    /// When the client is gone.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("the client is gone");
    }

    /// Closes the stream, as an agent that exits does.
    pub async fn close(mut self) {
        let _ = self.io.shutdown().await;
    }
}
