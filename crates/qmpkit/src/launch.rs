//! Starting a QEMU (or `qemu-storage-daemon`) with a QMP socket, for tests, benchmarks and
//! tools.
//!
//! QEMU is started with `-daemonize`: its first process exits only after QEMU has finished
//! initialising, so the QMP socket is listening by the time [`Launcher::start`] (blocking) or
//! [`Launcher::start_async`] returns, with no polling. The instance is killed when the
//! [`Instance`] is dropped, also on panic.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

pub use rustix::process::Signal;

use rustix::process::{Pid, kill_process, test_kill_process};

/// The environment variable that names the QEMU binary to use instead of the one on `PATH`.
pub const QEMU_ENV: &str = "QMPKIT_QEMU";

/// The system emulator used when [`QEMU_ENV`] is not set.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";

/// An error starting QEMU.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The binary was not found.
    #[error("QEMU binary {0:?} not found: install Debian's qemu-system-x86 (scripts/test does) or set {QEMU_ENV}")]
    NotFound(PathBuf),
    /// The binary ran but failed to start.
    #[error("QEMU failed to start ({status}): {stderr}")]
    Failed {
        /// How the process ended.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// An I/O error around the start.
    #[error("starting QEMU: {0}")]
    Io(#[from] std::io::Error),
}

/// Which QMP server to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// A system emulator, `qemu-system-*`.
    System,
    /// `qemu-storage-daemon`, whose monitor speaks the same QMP with a smaller schema.
    StorageDaemon,
}

/// Builds a QEMU command line with a QMP socket in a private temporary directory.
#[derive(Clone, Debug)]
#[must_use]
pub struct Launcher {
    binary: PathBuf,
    flavor: Flavor,
    args: Vec<OsString>,
    pretty: bool,
    connect_to: Option<PathBuf>,
    socket: Option<PathBuf>,
}

impl Launcher {
    /// A system emulator: [`QEMU_ENV`] if set, else [`DEFAULT_QEMU`] on `PATH`, with
    /// `-machine none`.
    pub fn system() -> Self {
        let binary = std::env::var_os(QEMU_ENV).map_or_else(|| PathBuf::from(DEFAULT_QEMU), PathBuf::from);
        Launcher { binary, flavor: Flavor::System, args: Vec::new(), pretty: false, connect_to: None, socket: None }
    }

    /// `qemu-storage-daemon` from `PATH`.
    pub fn storage_daemon() -> Self {
        Launcher {
            binary: PathBuf::from("qemu-storage-daemon"),
            flavor: Flavor::StorageDaemon,
            args: Vec::new(),
            pretty: false,
            connect_to: None,
            socket: None,
        }
    }

    /// Uses this binary.
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = binary.into();
        self
    }

    /// Adds arguments, for example `["-M", "pc", "-accel", "tcg", "-S", "-m", "64"]`; without
    /// any, a system emulator gets `-machine none`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Makes the monitor print pretty (multi-line) JSON, `pretty=on`.
    pub fn pretty(mut self, pretty: bool) -> Self {
        self.pretty = pretty;
        self
    }

    /// Makes QEMU connect to a unix socket that the caller listens on, instead of listening
    /// itself (QEMU's `-qmp unix:PATH` without `server`). The socket must be listening before
    /// [`Launcher::start`]; QEMU connects while it starts.
    pub fn connect_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.connect_to = Some(path.into());
        self
    }

    /// Listens on this unix socket path instead of one in the instance's private directory,
    /// so that a client can be started at the same time as QEMU (see
    /// [`ClientBuilder::connect_until_ready`](crate::ClientBuilder::connect_until_ready)).
    /// Ignored with [`Launcher::connect_to`].
    pub fn qmp_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket = Some(path.into());
        self
    }

    /// Starts QEMU and returns once its QMP socket is listening, blocking the thread while
    /// QEMU initialises. In async code, use [`Launcher::start_async`].
    ///
    /// # Errors
    /// [`LaunchError::NotFound`] when the binary does not exist, [`LaunchError::Failed`] when
    /// QEMU exits with an error, and [`LaunchError::Io`] for other failures.
    pub fn start(&self) -> Result<Instance, LaunchError> {
        let (mut cmd, started) = self.prepare()?;
        started.finish(cmd.output(), &self.binary)
    }

    /// Starts QEMU and returns once its QMP socket is listening, without blocking the async
    /// runtime: the wait for QEMU's first process (which exits when QEMU has initialised, with
    /// `-daemonize`) is a child-process wait of tokio's, not a sleep or a poll. Dropping the
    /// future before it completes leaves the QEMU being started running, unowned: await it.
    ///
    /// # Errors
    /// As [`Launcher::start`].
    pub async fn start_async(&self) -> Result<Instance, LaunchError> {
        let (cmd, started) = self.prepare()?;
        let output = tokio::process::Command::from(cmd).output().await;
        started.finish(output, &self.binary)
    }

    /// The command line, and the directory and paths it uses.
    fn prepare(&self) -> Result<(Command, Starting), LaunchError> {
        let dir = private_dir()?;
        let socket = self.connect_to.clone().or_else(|| self.socket.clone()).unwrap_or_else(|| dir.join("qmp.sock"));
        let pidfile = dir.join("qemu.pid");
        let mut cmd = Command::new(&self.binary);
        // qemu-storage-daemon takes only the double-dash spellings of the options.
        let dash = if self.flavor == Flavor::StorageDaemon { "--" } else { "-" };
        let chardev = match &self.connect_to {
            Some(path) => format!("socket,id=qmp0,path={}", path.display()),
            None => format!("socket,id=qmp0,path={},server=on,wait=off", socket.display()),
        };
        cmd.arg(format!("{dash}chardev")).arg(&chardev);
        match self.flavor {
            Flavor::System => {
                let mon = format!("chardev=qmp0,mode=control,pretty={}", if self.pretty { "on" } else { "off" });
                cmd.args(["-mon", &mon, "-nodefaults", "-display", "none"]);
                if self.args.is_empty() {
                    cmd.args(["-machine", "none"]);
                }
                cmd.arg("-daemonize");
            }
            Flavor::StorageDaemon => {
                let mon = format!("chardev=qmp0,pretty={}", if self.pretty { "on" } else { "off" });
                cmd.args(["--monitor", &mon, "--daemonize"]);
            }
        }
        cmd.arg(format!("{dash}pidfile")).arg(&pidfile);
        cmd.args(&self.args);
        Ok((cmd, Starting { dir, socket, pidfile }))
    }
}

/// A QEMU being started: what [`Launcher::prepare`] chose, until its first process has exited.
struct Starting {
    dir: PathBuf,
    socket: PathBuf,
    pidfile: PathBuf,
}

impl Starting {
    /// Turns the first process's exit into an [`Instance`], or an error after removing the
    /// directory.
    fn finish(self, output: std::io::Result<Output>, binary: &Path) -> Result<Instance, LaunchError> {
        let output = match output {
            Ok(output) => output,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&self.dir);
                return Err(if err.kind() == std::io::ErrorKind::NotFound {
                    LaunchError::NotFound(binary.to_owned())
                } else {
                    err.into()
                });
            }
        };
        if !output.status.success() {
            let _ = std::fs::remove_dir_all(&self.dir);
            return Err(LaunchError::Failed {
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let pid = std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .and_then(Pid::from_raw)
            .ok_or_else(|| std::io::Error::other("QEMU wrote no readable pid file"));
        match pid {
            Ok(pid) => Ok(Instance { pid, dir: self.dir, socket: self.socket }),
            Err(err) => {
                let _ = std::fs::remove_dir_all(&self.dir);
                Err(err.into())
            }
        }
    }
}

/// A running QEMU, killed when dropped.
#[derive(Debug)]
pub struct Instance {
    pid: Pid,
    dir: PathBuf,
    socket: PathBuf,
}

impl Instance {
    /// The path of its QMP unix socket.
    #[must_use]
    pub fn qmp_socket(&self) -> &Path {
        &self.socket
    }

    /// Its private temporary directory, removed when the instance is dropped.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its process id.
    #[must_use]
    pub fn pid(&self) -> i32 {
        self.pid.as_raw_nonzero().get()
    }

    /// Sends it a signal, for example [`Signal::KILL`], [`Signal::STOP`] or [`Signal::CONT`] in
    /// failure tests.
    ///
    /// # Errors
    /// The OS error when the signal cannot be delivered (for example, the process is gone).
    pub fn signal(&self, signal: Signal) -> std::io::Result<()> {
        kill_process(self.pid, signal).map_err(Into::into)
    }

    /// Whether the process still exists.
    #[must_use]
    pub fn is_alive(&self) -> bool {
        test_kill_process(self.pid).is_ok()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = kill_process(self.pid, Signal::KILL);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Numbers the private directories of this process.
static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How many names [`private_dir`] tries before it gives up.
const DIR_ATTEMPTS: u32 = 1000;

/// Makes a directory only this user can enter, for the socket.
///
/// A name already taken belongs to an earlier process that had the same pid and was killed
/// before it could clean up: it is skipped, never reused, since it is not ours.
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut attempts = 0;
    loop {
        let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("qmpkit-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && attempts < DIR_ATTEMPTS => attempts += 1,
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names left behind by a killed process with the same pid are passed over.
    #[test]
    fn private_dir_skips_names_an_earlier_process_left() {
        let next = DIR_COUNTER.load(Ordering::Relaxed);
        let stale: Vec<PathBuf> =
            (next..next + 3).map(|n| std::env::temp_dir().join(format!("qmpkit-{}-{n}", std::process::id()))).collect();
        for dir in &stale {
            std::fs::create_dir(dir).unwrap();
        }
        let made = private_dir();
        for dir in &stale {
            std::fs::remove_dir(dir).unwrap();
        }
        let made = made.expect("a fresh directory despite the stale ones");
        assert!(!stale.contains(&made), "{} was an earlier process's", made.display());
        std::fs::remove_dir(&made).unwrap();
    }
}
