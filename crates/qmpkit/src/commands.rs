//! Typed commands: each QMP command a small type that knows its name, its arguments and what
//! it returns, run with [`Client::run`](crate::Client::run) or, with per-call options,
//! [`Client::run_with`](crate::Client::run_with).
//!
//! The types follow QEMU's QAPI schema: a command's type is its argument struct (members
//! renamed to their QAPI names, optional members skipped when absent), [`Command::NAME`] is
//! its QAPI name and [`Command::Returns`] its result type from [`crate::types`]. Results
//! tolerate schema drift: unknown members are ignored and members newer QEMUs add are optional.
//! This is the shape that commands generated from a schema will take; until then the common
//! commands are written here, and a command of one's own is a few lines:
//!
//! ```no_run
//! use qmpkit::commands::Command;
//!
//! /// `balloon`: sets the guest's memory target.
//! #[derive(serde::Serialize)]
//! struct Balloon {
//!     value: i64,
//! }
//!
//! impl Command for Balloon {
//!     const NAME: &'static str = "balloon";
//!     type Returns = qmpkit::types::Empty;
//! }
//!
//! # async fn demo(qmp: qmpkit::Client) -> Result<(), qmpkit::Error> {
//! qmp.run(Balloon { value: 512 << 20 }).await?;
//! let status = qmp.run(qmpkit::commands::QueryStatus).await?;
//! # Ok(()) }
//! ```
//!
//! Commands that pass file descriptors ([`Getfd`], [`AddFd`]) hold them in a field that is not
//! serialized and hand them over in [`Command::take_fds`]; the client sends them with
//! `SCM_RIGHTS` in the same `sendmsg` as the command.

use std::os::fd::OwnedFd;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::types::{
    AddFdInfo, BlockInfo, CommandInfo, CpuInfoFast, Empty, FdsetInfo, JobInfo, KvmInfo, NameInfo, ObjectPropertyInfo,
    StatusInfo, UuidInfo, Version,
};

/// A QMP command: its arguments (the value itself, serialized to a JSON object, or to nothing
/// for a unit struct), its name and its result type.
pub trait Command: Serialize {
    /// The command's name on the wire, as in QEMU's schema.
    const NAME: &'static str;

    /// What a successful reply's `return` decodes into ([`Empty`] for commands that return
    /// nothing).
    type Returns: DeserializeOwned;

    /// Takes the file descriptors to send with the command. It is called once, before the
    /// arguments are serialized; commands without descriptors keep the default, which has none.
    fn take_fds(&mut self) -> Vec<OwnedFd> {
        Vec::new()
    }
}

/// Declares commands without arguments: unit structs that serialize to nothing.
macro_rules! no_arguments {
    ($($(#[$meta:meta])* $name:ident = $wire:literal -> $returns:ty;)*) => {$(
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct $name;

        impl Command for $name {
            const NAME: &'static str = $wire;
            type Returns = $returns;
        }
    )*};
}

/// Implements [`Command`] for argument structs without file descriptors.
macro_rules! command {
    ($($name:ident = $wire:literal -> $returns:ty;)*) => {$(
        impl Command for $name {
            const NAME: &'static str = $wire;
            type Returns = $returns;
        }
    )*};
}

no_arguments! {
    /// `query-version`.
    QueryVersion = "query-version" -> Version;
    /// `query-status`.
    QueryStatus = "query-status" -> StatusInfo;
    /// `stop`: pauses the VM (a `STOP` event follows when it was running).
    Stop = "stop" -> Empty;
    /// `cont`: resumes the VM (a `RESUME` event follows when it was paused).
    Cont = "cont" -> Empty;
    /// `system_reset` (a `RESET` event follows).
    SystemReset = "system_reset" -> Empty;
    /// `system_powerdown`: asks the guest to power down; it may ignore the request.
    SystemPowerdown = "system_powerdown" -> Empty;
    /// `system_wakeup`: wakes a suspended guest.
    SystemWakeup = "system_wakeup" -> Empty;
    /// `quit`: QEMU exits. The end of the stream that follows counts as success.
    Quit = "quit" -> Empty;
    /// `query-kvm`.
    QueryKvm = "query-kvm" -> KvmInfo;
    /// `query-name`.
    QueryName = "query-name" -> NameInfo;
    /// `query-uuid`.
    QueryUuid = "query-uuid" -> UuidInfo;
    /// `query-commands`.
    QueryCommands = "query-commands" -> Vec<CommandInfo>;
    /// `query-qmp-schema`: the schema's entities, which
    /// [`qmpkit_schema::Schema::from_infos`] indexes.
    QueryQmpSchema = "query-qmp-schema" -> Vec<qmpkit_schema::SchemaInfo>;
    /// `query-fdsets`.
    QueryFdsets = "query-fdsets" -> Vec<FdsetInfo>;
    /// `query-cpus-fast`.
    QueryCpusFast = "query-cpus-fast" -> Vec<CpuInfoFast>;
    /// `query-block`.
    QueryBlock = "query-block" -> Vec<BlockInfo>;
    /// `query-jobs`.
    QueryJobs = "query-jobs" -> Vec<JobInfo>;
}

/// `qmp_capabilities`. The client negotiates by itself when it connects; sending it again
/// yields QEMU's `CommandNotFound` error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QmpCapabilities {
    /// The capabilities to enable, such as `oob`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable: Option<Vec<String>>,
}

/// `human-monitor-command`: runs an HMP command line and returns its output. HMP reports its
/// own errors as output text, not as QMP errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HumanMonitorCommand {
    /// The HMP command line.
    #[serde(rename = "command-line")]
    pub command_line: String,
    /// The CPU HMP commands act on, when not the default.
    #[serde(rename = "cpu-index", skip_serializing_if = "Option::is_none")]
    pub cpu_index: Option<i64>,
}

impl HumanMonitorCommand {
    /// The command line on the default CPU.
    pub fn new(command_line: impl Into<String>) -> Self {
        HumanMonitorCommand { command_line: command_line.into(), cpu_index: None }
    }
}

/// `getfd`: gives QEMU a file descriptor under a name.
#[derive(Debug, Serialize)]
pub struct Getfd {
    /// The name QEMU files the descriptor under.
    pub fdname: String,
    /// The descriptor, sent with `SCM_RIGHTS`.
    #[serde(skip)]
    pub fd: Option<OwnedFd>,
}

impl Getfd {
    /// Gives `fd` to QEMU as `fdname`.
    pub fn new(fdname: impl Into<String>, fd: OwnedFd) -> Self {
        Getfd { fdname: fdname.into(), fd: Some(fd) }
    }
}

impl Command for Getfd {
    const NAME: &'static str = "getfd";
    type Returns = Empty;
    fn take_fds(&mut self) -> Vec<OwnedFd> {
        self.fd.take().into_iter().collect()
    }
}

/// `closefd`: closes a descriptor given with [`Getfd`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Closefd {
    /// The descriptor's name.
    pub fdname: String,
}

/// `add-fd`: adds a file descriptor to an fd set (a new one when `fdset_id` is `None`).
#[derive(Debug, Default, Serialize)]
pub struct AddFd {
    /// The fd set to add to; a new one when absent.
    #[serde(rename = "fdset-id", skip_serializing_if = "Option::is_none")]
    pub fdset_id: Option<i64>,
    /// A note kept with the descriptor, shown by `query-fdsets`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opaque: Option<String>,
    /// The descriptor, sent with `SCM_RIGHTS`.
    #[serde(skip)]
    pub fd: Option<OwnedFd>,
}

impl AddFd {
    /// Adds `fd` to a new fd set, without a note.
    pub fn new(fd: OwnedFd) -> Self {
        AddFd { fdset_id: None, opaque: None, fd: Some(fd) }
    }
}

impl Command for AddFd {
    const NAME: &'static str = "add-fd";
    type Returns = AddFdInfo;
    fn take_fds(&mut self) -> Vec<OwnedFd> {
        self.fd.take().into_iter().collect()
    }
}

/// `remove-fd`: removes one descriptor, or the whole set when `fd` is `None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemoveFd {
    /// The fd set.
    #[serde(rename = "fdset-id")]
    pub fdset_id: i64,
    /// The descriptor; the whole set when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<i64>,
}

/// `qom-list`: the properties of the object at `path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QomList {
    /// The object's QOM path.
    pub path: String,
}

/// `qom-get`: a property's value, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QomGet {
    /// The object's QOM path.
    pub path: String,
    /// The property.
    pub property: String,
}

/// `qom-set`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QomSet {
    /// The object's QOM path.
    pub path: String,
    /// The property.
    pub property: String,
    /// The new value.
    pub value: Value,
}

/// `device_add` with a driver, an optional id and any further device properties.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceAdd {
    /// Further device properties. Serialized first, so that `driver` and `id` win over
    /// members of the same names here.
    #[serde(flatten)]
    pub properties: Map<String, Value>,
    /// The device's driver, such as `virtio-rng-pci`.
    pub driver: String,
    /// The device's id, needed to remove it later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `device_del`: asks for a device's removal, which completes with `DEVICE_DELETED`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceDel {
    /// The device's id or QOM path.
    pub id: String,
}

command! {
    QmpCapabilities = "qmp_capabilities" -> Empty;
    HumanMonitorCommand = "human-monitor-command" -> String;
    Closefd = "closefd" -> Empty;
    RemoveFd = "remove-fd" -> Empty;
    QomList = "qom-list" -> Vec<ObjectPropertyInfo>;
    QomGet = "qom-get" -> Value;
    QomSet = "qom-set" -> Empty;
    DeviceAdd = "device_add" -> Empty;
    DeviceDel = "device_del" -> Empty;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn arguments<C: Command>(command: &C) -> Value {
        serde_json::to_value(command).unwrap()
    }

    /// Members carry their QAPI names, absent optional members are left out, and commands
    /// without arguments send none.
    #[test]
    fn arguments_are_shaped_as_qemus_schema() {
        assert_eq!(arguments(&QueryStatus), Value::Null);
        assert_eq!(arguments(&HumanMonitorCommand::new("info status")), json!({"command-line": "info status"}));
        assert_eq!(arguments(&RemoveFd { fdset_id: 1, fd: None }), json!({"fdset-id": 1}));
        let (_read, write) = std::io::pipe().unwrap();
        let mut add = AddFd { opaque: Some("note".into()), ..AddFd::new(write.into()) };
        assert_eq!(arguments(&add), json!({"opaque": "note"}));
        assert_eq!(add.take_fds().len(), 1);
        assert!(add.take_fds().is_empty());
        let mut properties = Map::new();
        properties.insert("driver".into(), "ignored".into());
        properties.insert("bus".into(), "pci.0".into());
        let device = DeviceAdd { properties, driver: "virtio-rng-pci".into(), id: Some("rng0".into()) };
        assert_eq!(arguments(&device), json!({"driver": "virtio-rng-pci", "bus": "pci.0", "id": "rng0"}));
    }

    /// Results decode what newer QEMUs send: an empty return may grow members.
    #[test]
    fn results_tolerate_drift() {
        let empty: <Stop as Command>::Returns = serde_json::from_str(r#"{"new-member": 1}"#).unwrap();
        assert_eq!(empty, Empty);
        let version: <QueryVersion as Command>::Returns =
            serde_json::from_str(r#"{"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": "", "x": []}"#).unwrap();
        assert_eq!(version.qemu.to_string(), "10.0.2");
        assert!(serde_json::from_str::<Version>(r#"{"package": ""}"#).is_err());
    }
}
