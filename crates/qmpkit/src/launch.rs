//! Starting a QEMU (or `qemu-storage-daemon`) with a QMP socket, for tests, benchmarks and
//! tools.
//!
//! QEMU is started with `-daemonize`: its first process exits only after QEMU has finished
//! initialising, so the QMP socket is listening by the time [`Launcher::start`] returns, with
//! no polling. The instance is killed when the [`Instance`] is dropped, also on panic.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
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
}

impl Launcher {
    /// A system emulator: [`QEMU_ENV`] if set, else [`DEFAULT_QEMU`] on `PATH`, with
    /// `-machine none`.
    pub fn system() -> Self {
        let binary = std::env::var_os(QEMU_ENV).map_or_else(|| PathBuf::from(DEFAULT_QEMU), PathBuf::from);
        Launcher { binary, flavor: Flavor::System, args: Vec::new(), pretty: false, connect_to: None }
    }

    /// `qemu-storage-daemon` from `PATH`.
    pub fn storage_daemon() -> Self {
        Launcher {
            binary: PathBuf::from("qemu-storage-daemon"),
            flavor: Flavor::StorageDaemon,
            args: Vec::new(),
            pretty: false,
            connect_to: None,
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

    /// Starts QEMU and returns once its QMP socket is listening.
    ///
    /// # Errors
    /// [`LaunchError::NotFound`] when the binary does not exist, [`LaunchError::Failed`] when
    /// QEMU exits with an error, and [`LaunchError::Io`] for other failures.
    pub fn start(&self) -> Result<Instance, LaunchError> {
        let dir = private_dir()?;
        let socket = self.connect_to.clone().unwrap_or_else(|| dir.join("qmp.sock"));
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
        let output = match cmd.output() {
            Ok(output) => output,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(LaunchError::NotFound(self.binary.clone()));
            }
            Err(err) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(err.into());
            }
        };
        if !output.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(LaunchError::Failed {
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let pid = std::fs::read_to_string(&pidfile)?
            .trim()
            .parse()
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| std::io::Error::other("QEMU wrote an unreadable pid file"))?;
        Ok(Instance { pid, dir, socket })
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

/// Makes a directory only this user can enter, for the socket.
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("qmpkit-{}-{n}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}
