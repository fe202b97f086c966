//! Typed calls and results for the agent's common commands.
//!
//! Results follow `qga/qapi-schema.json`; members a newer agent adds are ignored, and members
//! the schema marks optional (or that older agents lack) are `Option`s or default to empty.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::Agent;
use crate::error::Error;

/// What `guest-info` says about the agent.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct GuestInfo {
    /// The agent's version, such as `7.2.22`.
    pub version: String,
    /// Every command the agent knows.
    #[serde(default)]
    pub supported_commands: Vec<GuestCommandInfo>,
}

impl GuestInfo {
    /// The entry for a command, when the agent knows it.
    #[must_use]
    pub fn command(&self, name: &str) -> Option<&GuestCommandInfo> {
        self.supported_commands.iter().find(|c| c.name == name)
    }
}

/// One command in `guest-info`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct GuestCommandInfo {
    /// The command's name.
    pub name: String,
    /// Whether it may be run (`false` when blocked with `qemu-ga -b`).
    pub enabled: bool,
    /// Whether it answers on success (`false` for `guest-shutdown` and `guest-suspend-*`).
    #[serde(rename = "success-response", default = "yes")]
    pub success_response: bool,
}

fn yes() -> bool {
    true
}

/// What `guest-get-osinfo` says; every member is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct GuestOsInfo {
    /// `uname -r`.
    pub kernel_release: Option<String>,
    /// `uname -v`.
    pub kernel_version: Option<String>,
    /// `uname -m`.
    pub machine: Option<String>,
    /// `ID` from os-release.
    pub id: Option<String>,
    /// `NAME` from os-release.
    pub name: Option<String>,
    /// `PRETTY_NAME` from os-release.
    pub pretty_name: Option<String>,
    /// `VERSION` from os-release.
    pub version: Option<String>,
    /// `VERSION_ID` from os-release.
    pub version_id: Option<String>,
    /// `VARIANT` from os-release.
    pub variant: Option<String>,
    /// `VARIANT_ID` from os-release.
    pub variant_id: Option<String>,
}

/// A network interface from `guest-network-get-interfaces`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct GuestNetworkInterface {
    /// The interface's name, such as `eth0`.
    pub name: String,
    /// The MAC address, when it has one.
    pub hardware_address: Option<String>,
    /// Its addresses.
    #[serde(default)]
    pub ip_addresses: Vec<GuestIpAddress>,
    /// Traffic counters, as the agent reports them.
    pub statistics: Option<Value>,
}

/// An address of a [`GuestNetworkInterface`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct GuestIpAddress {
    /// The address.
    pub ip_address: String,
    /// `ipv4` or `ipv6`.
    pub ip_address_type: String,
    /// The prefix length.
    pub prefix: i64,
}

/// A mounted filesystem from `guest-get-fsinfo`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct GuestFilesystemInfo {
    /// The device name, such as `vda1`.
    pub name: String,
    /// Where it is mounted.
    pub mountpoint: String,
    /// The filesystem type, such as `ext4`.
    #[serde(rename = "type")]
    pub fs_type: String,
    /// Bytes used, when known.
    pub used_bytes: Option<u64>,
    /// Total bytes, when known.
    pub total_bytes: Option<u64>,
    /// The disks it lives on.
    #[serde(default)]
    pub disk: Vec<GuestDiskAddress>,
}

/// Where a filesystem's disk is attached.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct GuestDiskAddress {
    /// The bus type, such as `virtio` or `scsi`.
    pub bus_type: Option<String>,
    /// The bus number.
    pub bus: Option<i64>,
    /// The target number.
    pub target: Option<i64>,
    /// The unit number.
    pub unit: Option<i64>,
    /// The device node, such as `/dev/vda`.
    pub dev: Option<String>,
    /// The disk's serial number.
    pub serial: Option<String>,
    /// The PCI controller's address, as the agent reports it.
    pub pci_controller: Option<Value>,
}

/// `guest-fsfreeze-status`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsfreezeStatus {
    /// Filesystems are not frozen.
    Thawed,
    /// Filesystems are frozen.
    Frozen,
    /// A state this version does not know.
    #[serde(other)]
    Unknown,
}

/// A program to run in the guest with [`Agent::exec`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exec {
    path: String,
    #[serde(rename = "arg", skip_serializing_if = "Vec::is_empty")]
    args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env: Vec<String>,
    #[serde(rename = "input-data", skip_serializing_if = "Option::is_none")]
    input: Option<String>,
    #[serde(rename = "capture-output")]
    capture_output: bool,
    #[serde(skip)]
    timeout: Option<Duration>,
}

impl Exec {
    /// Runs `path` (the agent does not search `PATH` on every system: give a full path),
    /// capturing its output.
    #[must_use]
    pub fn new(path: impl Into<String>) -> Exec {
        Exec { path: path.into(), args: Vec::new(), env: Vec::new(), input: None, capture_output: true, timeout: None }
    }

    /// Appends an argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<String>) -> Exec {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    #[must_use]
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Exec {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable (`NAME=value`).
    #[must_use]
    pub fn env(mut self, var: impl Into<String>) -> Exec {
        self.env.push(var.into());
        self
    }

    /// Gives the program this standard input.
    #[must_use]
    pub fn input(mut self, bytes: &[u8]) -> Exec {
        self.input = Some(BASE64.encode(bytes));
        self
    }

    /// Whether to capture standard output and error (the default).
    #[must_use]
    pub fn capture_output(mut self, capture: bool) -> Exec {
        self.capture_output = capture;
        self
    }

    /// How long [`Agent::exec`] waits for the program to exit; without it, it waits as long as
    /// the agent keeps answering (each poll has the call deadline).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Exec {
        self.timeout = Some(timeout);
        self
    }
}

/// `guest-exec-status`, as the agent sends it (output still in base64).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub struct ExecStatus {
    /// Whether the program has exited.
    pub exited: bool,
    /// Its exit code, once it exited normally.
    pub exitcode: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// Standard output, base64.
    pub out_data: Option<String>,
    /// Standard error, base64.
    pub err_data: Option<String>,
    /// Whether the agent cut standard output short.
    #[serde(default)]
    pub out_truncated: bool,
    /// Whether the agent cut standard error short.
    #[serde(default)]
    pub err_truncated: bool,
}

/// What a program run with [`Agent::exec`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecOutput {
    /// The guest's process id.
    pub pid: i64,
    /// The exit code, when it exited normally.
    pub exit_code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Whether the agent cut standard output short (it keeps at most 16 MiB).
    pub stdout_truncated: bool,
    /// Whether the agent cut standard error short.
    pub stderr_truncated: bool,
}

#[derive(Deserialize)]
struct Pid {
    pid: i64,
}

#[derive(Deserialize)]
struct HostName {
    #[serde(rename = "host-name")]
    host_name: String,
}

#[derive(Deserialize)]
struct FileRead {
    #[serde(rename = "buf-b64")]
    buf: String,
    #[serde(default)]
    eof: bool,
}

#[derive(Deserialize)]
struct FileWrite {
    count: usize,
}

/// How much one `guest-file-read` or `guest-file-write` moves.
const FILE_CHUNK: usize = 1 << 20;

fn decode_base64(command: &str, text: &str) -> Result<Vec<u8>, Error> {
    BASE64.decode(text).map_err(|e| Error::Decode { command: command.to_owned(), reason: format!("bad base64: {e}") })
}

impl Agent {
    /// `guest-ping`: whether the agent answers.
    ///
    /// # Errors
    /// As [`Agent::execute`].
    pub async fn ping(&self) -> Result<(), Error> {
        self.execute("guest-ping", ()).await.map(drop)
    }

    /// `guest-info`: the agent's version and commands. What it says about commands that send
    /// no reply on success is remembered for later calls.
    ///
    /// # Errors
    /// As [`Agent::execute_as`].
    pub async fn info(&self) -> Result<GuestInfo, Error> {
        let info: GuestInfo = self.execute_as("guest-info", ()).await?;
        self.learn(&info);
        Ok(info)
    }

    /// `guest-get-osinfo`.
    ///
    /// # Errors
    /// As [`Agent::execute_as`].
    pub async fn osinfo(&self) -> Result<GuestOsInfo, Error> {
        self.execute_as("guest-get-osinfo", ()).await
    }

    /// `guest-get-host-name`.
    ///
    /// # Errors
    /// As [`Agent::execute_as`].
    pub async fn host_name(&self) -> Result<String, Error> {
        self.execute_as::<HostName>("guest-get-host-name", ()).await.map(|h| h.host_name)
    }

    /// `guest-get-time`: the guest's clock, in nanoseconds since the epoch.
    ///
    /// # Errors
    /// As [`Agent::execute_as`].
    pub async fn time(&self) -> Result<i64, Error> {
        self.execute_as("guest-get-time", ()).await
    }

    /// `guest-network-get-interfaces`.
    ///
    /// # Errors
    /// As [`Agent::execute_as`].
    pub async fn network_interfaces(&self) -> Result<Vec<GuestNetworkInterface>, Error> {
        self.execute_as("guest-network-get-interfaces", ()).await
    }

    /// `guest-get-fsinfo`.
    ///
    /// # Errors
    /// As [`Agent::execute_as`].
    pub async fn fsinfo(&self) -> Result<Vec<GuestFilesystemInfo>, Error> {
        self.execute_as("guest-get-fsinfo", ()).await
    }

    /// `guest-fsfreeze-status`.
    ///
    /// # Errors
    /// As [`Agent::execute_as`].
    pub async fn fsfreeze_status(&self) -> Result<FsfreezeStatus, Error> {
        self.execute_as("guest-fsfreeze-status", ()).await
    }

    /// `guest-fsfreeze-freeze`: freezes every guest filesystem; returns how many.
    ///
    /// # Errors
    /// As [`Agent::execute_as`].
    pub async fn fsfreeze_freeze(&self) -> Result<i64, Error> {
        self.execute_as("guest-fsfreeze-freeze", ()).await
    }

    /// `guest-fsfreeze-freeze-list`: freezes the filesystems at these mount points.
    ///
    /// # Errors
    /// As [`Agent::execute_as`].
    pub async fn fsfreeze_freeze_list(&self, mountpoints: &[&str]) -> Result<i64, Error> {
        self.execute_as("guest-fsfreeze-freeze-list", json!({"mountpoints": mountpoints})).await
    }

    /// `guest-fsfreeze-thaw`: returns how many filesystems were thawed.
    ///
    /// # Errors
    /// As [`Agent::execute_as`].
    pub async fn fsfreeze_thaw(&self) -> Result<i64, Error> {
        self.execute_as("guest-fsfreeze-thaw", ()).await
    }

    /// `guest-shutdown` with an optional mode (`powerdown`, `halt`, `reboot`). The agent sends
    /// nothing when it succeeds, so this returns once the grace period passed without a
    /// refusal (or the connection ended).
    ///
    /// # Errors
    /// As [`Agent::execute`]: a refusal within the grace period is [`Error::Qmp`].
    pub async fn shutdown(&self, mode: Option<&str>) -> Result<(), Error> {
        let arguments = mode.map(|mode| json!({"mode": mode}));
        self.execute("guest-shutdown", arguments).await.map(drop)
    }

    /// `guest-exec`: starts a program and returns its guest pid without waiting.
    ///
    /// # Errors
    /// As [`Agent::execute_as`].
    pub async fn exec_start(&self, exec: &Exec) -> Result<i64, Error> {
        self.execute_as::<Pid>("guest-exec", exec).await.map(|p| p.pid)
    }

    /// `guest-exec-status` for a pid from [`Agent::exec_start`].
    ///
    /// # Errors
    /// As [`Agent::execute_as`].
    pub async fn exec_status(&self, pid: i64) -> Result<ExecStatus, Error> {
        self.execute_as("guest-exec-status", json!({"pid": pid})).await
    }

    /// Runs a program in the guest and waits for it to exit, polling `guest-exec-status`
    /// (first after 1 ms, then twice as long each time, at most every 200 ms), and returns its decoded
    /// output and exit status. Another caller's commands may run between the polls.
    ///
    /// # Errors
    /// As [`Agent::execute_as`]; [`Error::Timeout`] when the program outlived
    /// [`Exec::timeout`] (it keeps running in the guest); [`Error::Decode`] when its output is
    /// not valid base64.
    pub async fn exec(&self, exec: Exec) -> Result<ExecOutput, Error> {
        let pid = self.exec_start(&exec).await?;
        let deadline = exec.timeout.map(|t| Instant::now() + t);
        let mut pause = Duration::from_millis(1);
        loop {
            let status = self.exec_status(pid).await?;
            if status.exited {
                let stdout = decode_base64("guest-exec-status", status.out_data.as_deref().unwrap_or(""))?;
                let stderr = decode_base64("guest-exec-status", status.err_data.as_deref().unwrap_or(""))?;
                return Ok(ExecOutput {
                    pid,
                    exit_code: status.exitcode,
                    signal: status.signal,
                    stdout,
                    stderr,
                    stdout_truncated: status.out_truncated,
                    stderr_truncated: status.err_truncated,
                });
            }
            if let (Some(deadline), Some(after)) = (deadline, exec.timeout) {
                if Instant::now() + pause > deadline {
                    return Err(Error::Timeout { what: format!("guest-exec {}", exec.path), after });
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Reads a whole file from the guest (`guest-file-open`, `-read` until the end, `-close`).
    /// The handle is closed even when reading fails.
    ///
    /// # Errors
    /// As [`Agent::execute`] for each step; [`Error::Decode`] when the file is larger than
    /// [`super::AgentBuilder::max_file_bytes`] or a chunk is not valid base64.
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, Error> {
        let handle: i64 = self.execute_as("guest-file-open", json!({"path": path, "mode": "r"})).await?;
        let limit = self.inner.config.max_file_bytes;
        let read = async {
            let mut data = Vec::new();
            loop {
                let chunk: FileRead =
                    self.execute_as("guest-file-read", json!({"handle": handle, "count": FILE_CHUNK})).await?;
                data.extend_from_slice(&decode_base64("guest-file-read", &chunk.buf)?);
                if data.len() > limit {
                    return Err(Error::Decode {
                        command: "guest-file-read".into(),
                        reason: format!("{path} is larger than the limit of {limit} bytes"),
                    });
                }
                if chunk.eof || chunk.buf.is_empty() {
                    return Ok(data);
                }
            }
        }
        .await;
        let closed = self.close_file(handle).await;
        let data = read?;
        closed?;
        Ok(data)
    }

    /// Writes a whole file in the guest, replacing it (`guest-file-open` with mode `w`,
    /// `-write` in chunks, `-close`). The handle is closed even when writing fails.
    ///
    /// # Errors
    /// As [`Agent::execute`] for each step; [`Error::Decode`] when the agent wrote nothing.
    pub async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), Error> {
        let handle: i64 = self.execute_as("guest-file-open", json!({"path": path, "mode": "w"})).await?;
        let write = async {
            let mut rest = contents;
            while !rest.is_empty() {
                let chunk = &rest[..rest.len().min(FILE_CHUNK)];
                let arguments = json!({"handle": handle, "buf-b64": BASE64.encode(chunk), "count": chunk.len()});
                let written: FileWrite = self.execute_as("guest-file-write", arguments).await?;
                if written.count == 0 || written.count > chunk.len() {
                    return Err(Error::Decode {
                        command: "guest-file-write".into(),
                        reason: format!("the agent wrote {} of {} bytes", written.count, chunk.len()),
                    });
                }
                rest = &rest[written.count..];
            }
            Ok(())
        }
        .await;
        let closed = self.close_file(handle).await;
        write?;
        closed
    }

    async fn close_file(&self, handle: i64) -> Result<(), Error> {
        self.execute("guest-file-close", json!({"handle": handle})).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_ignore_unknown_members_and_tolerate_missing_optional_ones() {
        let info: GuestInfo = serde_json::from_value(json!({
            "version": "99.0", "future": 1,
            "supported_commands": [{"name": "guest-shutdown", "enabled": false, "success-response": false, "new": true},
                                   {"name": "guest-ping", "enabled": true}]
        }))
        .unwrap();
        assert!(!info.command("guest-shutdown").unwrap().success_response);
        assert!(info.command("guest-ping").unwrap().success_response);
        let os: GuestOsInfo = serde_json::from_value(json!({"id": "debian", "new-member": []})).unwrap();
        assert_eq!(os.id.as_deref(), Some("debian"));
        assert_eq!(os.kernel_release, None);
        let fs: GuestFilesystemInfo =
            serde_json::from_value(json!({"name": "vda", "mountpoint": "/", "type": "ext4", "disk": [{"bus-type": "virtio", "bus": 0, "x": 1}]}))
                .unwrap();
        assert_eq!(fs.used_bytes, None);
        assert_eq!(fs.disk[0].bus_type.as_deref(), Some("virtio"));
        let status: FsfreezeStatus = serde_json::from_value(json!("half-frozen")).unwrap();
        assert_eq!(status, FsfreezeStatus::Unknown);
        let exec: ExecStatus = serde_json::from_value(json!({"exited": false})).unwrap();
        assert!(!exec.exited && !exec.out_truncated && exec.exitcode.is_none());
    }

    #[test]
    fn exec_arguments_are_the_agents() {
        let exec = Exec::new("/bin/sh").args(["-c", "cat"]).input(b"hi").env("A=1");
        assert_eq!(
            serde_json::to_value(&exec).unwrap(),
            json!({"path": "/bin/sh", "arg": ["-c", "cat"], "env": ["A=1"], "input-data": "aGk=", "capture-output": true})
        );
        assert_eq!(
            serde_json::to_value(Exec::new("/bin/true")).unwrap(),
            json!({"path": "/bin/true", "capture-output": true})
        );
    }
}
