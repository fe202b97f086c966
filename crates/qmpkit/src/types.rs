//! Typed results and events for the commands most clients use.
//!
//! These types never fail on what a newer QEMU adds: unknown members are ignored, enum values
//! this library does not know are kept as text ([`RunState::Other`]), and an event that is not
//! listed here, or whose data no longer fits, is still delivered as [`QmpEvent::Other`] with
//! its raw JSON.

use std::fmt;

use qmpkit_proto::{Event, VersionInfo};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A string enum that keeps values it does not know.
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A value this library does not know, as sent.
            Other(String),
        }

        impl $name {
            /// The wire name.
            #[must_use]
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $wire,)*
                    $name::Other(other) => other,
                }
            }

            /// The value with this wire name.
            #[must_use]
            pub fn from_wire(text: &str) -> Self {
                match text {
                    $($wire => $name::$variant,)*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Ok($name::from_wire(&String::deserialize(deserializer)?))
            }
        }
    };
}

open_enum! {
    /// The run state of a VM (`query-status`).
    RunState {
        /// QEMU is running a debugger.
        Debug = "debug",
        /// Waiting for an incoming migration.
        Inmigrate = "inmigrate",
        /// An internal error stopped the VM.
        InternalError = "internal-error",
        /// An I/O error stopped the VM.
        IoError = "io-error",
        /// Paused by `stop`.
        Paused = "paused",
        /// Stopped after an outgoing migration.
        Postmigrate = "postmigrate",
        /// Started with `-S`, not yet run.
        Prelaunch = "prelaunch",
        /// Finishing an outgoing migration.
        FinishMigrate = "finish-migrate",
        /// Restoring a snapshot.
        RestoreVm = "restore-vm",
        /// Running.
        Running = "running",
        /// Saving a snapshot.
        SaveVm = "save-vm",
        /// Shut down (with `-no-shutdown`).
        Shutdown = "shutdown",
        /// Suspended (ACPI S3).
        Suspended = "suspended",
        /// Stopped by a watchdog.
        Watchdog = "watchdog",
        /// The guest panicked.
        GuestPanicked = "guest-panicked",
        /// In COLO mode.
        Colo = "colo",
    }
}

/// The result of a command that returns nothing: `{}` on the wire.
///
/// Any value is accepted, so a command that starts returning something in a newer QEMU still
/// succeeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Empty;

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Empty)
    }
}

impl Serialize for Empty {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        serializer.serialize_map(Some(0))?.end()
    }
}

/// `query-version`: the protocol core's [`VersionInfo`] (as in the greeting), decodable with
/// serde. It dereferences to the [`VersionInfo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version(pub VersionInfo);

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        VersionInfo::from_value(&value).map(Version).map_err(serde::de::Error::custom)
    }
}

impl std::ops::Deref for Version {
    type Target = VersionInfo;
    fn deref(&self) -> &VersionInfo {
        &self.0
    }
}

impl From<Version> for VersionInfo {
    fn from(version: Version) -> VersionInfo {
        version.0
    }
}

/// `query-status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// Whether the VM runs.
    pub running: bool,
    /// The run state.
    pub status: RunState,
    /// Whether single-stepping is on (removed in QEMU 8.1's wire format; absent then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub singlestep: Option<bool>,
}

/// `query-kvm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvmInfo {
    /// Whether KVM is in use.
    pub enabled: bool,
    /// Whether KVM is available.
    pub present: bool,
}

/// `query-name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameInfo {
    /// The VM's name, when it has one.
    #[serde(default)]
    pub name: Option<String>,
}

/// `query-uuid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UuidInfo {
    /// The VM's UUID (all zeros when none was set).
    #[serde(rename = "UUID")]
    pub uuid: String,
}

/// An entry of `query-commands`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// The command's name.
    pub name: String,
}

/// `add-fd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddFdInfo {
    /// The fd set the descriptor joined.
    #[serde(rename = "fdset-id")]
    pub fdset_id: i64,
    /// The descriptor's number inside QEMU.
    pub fd: i64,
}

/// A descriptor in an fd set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdsetFdInfo {
    /// The descriptor's number inside QEMU.
    pub fd: i64,
    /// The caller's note, when it gave one.
    #[serde(default)]
    pub opaque: Option<String>,
}

/// An entry of `query-fdsets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdsetInfo {
    /// The set's id.
    #[serde(rename = "fdset-id")]
    pub fdset_id: i64,
    /// Its descriptors.
    pub fds: Vec<FdsetFdInfo>,
}

/// An entry of `query-cpus-fast`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuInfoFast {
    /// The CPU's index.
    #[serde(rename = "cpu-index")]
    pub cpu_index: i64,
    /// Its QOM path.
    #[serde(rename = "qom-path")]
    pub qom_path: String,
    /// The host thread running it.
    #[serde(rename = "thread-id")]
    pub thread_id: i64,
    /// The target architecture.
    pub target: String,
    /// Its topology properties, when the machine has them.
    #[serde(default)]
    pub props: Option<Value>,
}

/// An entry of `query-block`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// The device name (may be empty for devices created with `-blockdev`).
    pub device: String,
    /// The qdev id or QOM path of the device it is attached to.
    #[serde(default)]
    pub qdev: Option<String>,
    /// The device type (always `unknown` in recent QEMU).
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether the medium can be removed.
    pub removable: bool,
    /// Whether the medium is locked.
    pub locked: bool,
    /// The inserted medium, as QEMU describes it.
    #[serde(default)]
    pub inserted: Option<Value>,
    /// Whether the tray is open.
    #[serde(default)]
    pub tray_open: Option<bool>,
    /// The I/O status (`ok`, `failed`, `nospace`).
    #[serde(rename = "io-status", default)]
    pub io_status: Option<String>,
}

/// An entry of `query-jobs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    /// The job's id.
    pub id: String,
    /// Its type, such as `mirror` or `backup`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Its status, such as `running` or `concluded`.
    pub status: String,
    /// Progress so far.
    #[serde(rename = "current-progress")]
    pub current_progress: i64,
    /// Progress at the end.
    #[serde(rename = "total-progress")]
    pub total_progress: i64,
    /// Why it failed, when it did.
    #[serde(default)]
    pub error: Option<String>,
}

/// An entry of `qom-list`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectPropertyInfo {
    /// The property's name.
    pub name: String,
    /// Its type, such as `child<pc-i440fx>` or `bool`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Its description, when it has one.
    #[serde(default)]
    pub description: Option<String>,
    /// Its default value, when it has one.
    #[serde(rename = "default-value", default)]
    pub default_value: Option<Value>,
}

/// Why a VM shut down or reset (`SHUTDOWN`, `RESET`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownInfo {
    /// Whether the guest asked for it.
    #[serde(default)]
    pub guest: bool,
    /// Why, such as `host-qmp-quit` or `guest-reset`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `DEVICE_DELETED`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDeletedInfo {
    /// The device's id, when it had one.
    #[serde(default)]
    pub device: Option<String>,
    /// Its QOM path.
    pub path: String,
}

/// `RTC_CHANGE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtcChangeInfo {
    /// The RTC's offset from the host's UTC, in seconds.
    pub offset: i64,
    /// The RTC device's QOM path (QEMU 8.2 and later).
    #[serde(rename = "qom-path", default)]
    pub qom_path: Option<String>,
}

/// `WATCHDOG`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchdogInfo {
    /// What the watchdog did, such as `reset` or `pause`.
    pub action: String,
}

/// `BLOCK_IO_ERROR`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockIoErrorInfo {
    /// The device (may be empty).
    #[serde(default)]
    pub device: String,
    /// The node name, when there is one.
    #[serde(rename = "node-name", default)]
    pub node_name: Option<String>,
    /// `read` or `write`.
    pub operation: String,
    /// `ignore`, `report` or `stop`.
    pub action: String,
    /// Whether the error was for lack of space.
    #[serde(default)]
    pub nospace: Option<bool>,
    /// The error's text.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `JOB_STATUS_CHANGE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatusChangeInfo {
    /// The job's id.
    pub id: String,
    /// Its new status.
    pub status: String,
}

/// `GUEST_PANICKED` and `GUEST_CRASHLOADED`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestPanicInfo {
    /// What QEMU did: `pause`, `poweroff` or `run`.
    pub action: String,
    /// What the guest reported, when it did.
    #[serde(default)]
    pub info: Option<Value>,
}

/// `MEMORY_FAILURE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryFailureInfo {
    /// Who received the failure: `hypervisor` or `guest`.
    pub recipient: String,
    /// What was done: `ignore`, `inject`, `fatal` or `reset`.
    pub action: String,
    /// `action-required` and `recursive`.
    #[serde(default)]
    pub flags: Option<Value>,
}

/// `DEVICE_TRAY_MOVED`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrayMovedInfo {
    /// The block device (may be empty).
    #[serde(default)]
    pub device: String,
    /// The device's QOM path.
    pub id: String,
    /// Whether the tray is now open.
    #[serde(rename = "tray-open")]
    pub tray_open: bool,
}

/// `BLOCK_JOB_COMPLETED`, `BLOCK_JOB_CANCELLED` and `BLOCK_JOB_READY`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockJobInfo {
    /// The job type, such as `mirror`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The job's id (named `device` for history's sake).
    pub device: String,
    /// The total amount of work.
    pub len: i64,
    /// The work done.
    pub offset: i64,
    /// The rate limit, 0 for none.
    pub speed: i64,
    /// Why it failed (`BLOCK_JOB_COMPLETED` only).
    #[serde(default)]
    pub error: Option<String>,
}

/// `BLOCK_JOB_ERROR`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockJobErrorInfo {
    /// The job's id.
    pub device: String,
    /// `read` or `write`.
    pub operation: String,
    /// `ignore`, `report` or `stop`.
    pub action: String,
}

/// `BLOCK_JOB_PENDING`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockJobPendingInfo {
    /// The job type.
    #[serde(rename = "type")]
    pub type_: String,
    /// The job's id.
    pub id: String,
}

/// `MIGRATION`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationInfo {
    /// The migration's status, such as `active` or `completed`.
    pub status: String,
}

/// `MIGRATION_PASS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationPassInfo {
    /// The pass number.
    pub pass: i64,
}

/// `BALLOON_CHANGE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonChangeInfo {
    /// The guest's memory, in bytes.
    pub actual: i64,
}

/// A VNC client or server address (`VNC_*` events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VncInfo {
    /// The server's side.
    pub server: Value,
    /// The client's side.
    pub client: Value,
}

/// An event, typed when this library knows it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum QmpEvent {
    /// The VM shut down.
    Shutdown(ShutdownInfo),
    /// The VM was asked to power down (ACPI).
    Powerdown,
    /// The VM reset.
    Reset(ShutdownInfo),
    /// The VM stopped.
    Stop,
    /// The VM resumed.
    Resume,
    /// The guest suspended.
    Suspend,
    /// The guest suspended to disk.
    SuspendDisk,
    /// The guest woke up.
    Wakeup,
    /// The guest changed its real-time clock.
    RtcChange(RtcChangeInfo),
    /// A watchdog fired.
    Watchdog(WatchdogInfo),
    /// A device was removed.
    DeviceDeleted(DeviceDeletedInfo),
    /// A block device had an I/O error.
    BlockIoError(BlockIoErrorInfo),
    /// A job changed status.
    JobStatusChange(JobStatusChangeInfo),
    /// The guest panicked.
    GuestPanicked(GuestPanicInfo),
    /// The guest loaded a crash kernel after a panic.
    GuestCrashloaded(GuestPanicInfo),
    /// A memory failure was reported.
    MemoryFailure(MemoryFailureInfo),
    /// A removable medium's tray moved.
    DeviceTrayMoved(TrayMovedInfo),
    /// A block job finished.
    BlockJobCompleted(BlockJobInfo),
    /// A block job was cancelled.
    BlockJobCancelled(BlockJobInfo),
    /// A block job is ready to complete.
    BlockJobReady(BlockJobInfo),
    /// A block job hit an error.
    BlockJobError(BlockJobErrorInfo),
    /// A block job waits to be finalised.
    BlockJobPending(BlockJobPendingInfo),
    /// Migration changed status.
    Migration(MigrationInfo),
    /// Migration started a new pass over memory.
    MigrationPass(MigrationPassInfo),
    /// The balloon changed the guest's memory.
    BalloonChange(BalloonChangeInfo),
    /// A VNC client connected.
    VncConnected(VncInfo),
    /// A VNC client finished authenticating.
    VncInitialized(VncInfo),
    /// A VNC client disconnected.
    VncDisconnected(VncInfo),
    /// Any other event, or a known one whose data did not fit.
    Other(Event),
}

impl QmpEvent {
    /// Types an event. This never fails: what does not fit stays [`QmpEvent::Other`].
    #[must_use]
    pub fn from_event(event: Event) -> Self {
        fn data<T: serde::de::DeserializeOwned>(event: &Event) -> Option<T> {
            serde_json::from_value(event.data.clone().unwrap_or_else(|| Value::Object(Default::default()))).ok()
        }
        let typed = match event.name.as_str() {
            "SHUTDOWN" => data(&event).map(QmpEvent::Shutdown),
            "POWERDOWN" => Some(QmpEvent::Powerdown),
            "RESET" => data(&event).map(QmpEvent::Reset),
            "STOP" => Some(QmpEvent::Stop),
            "RESUME" => Some(QmpEvent::Resume),
            "SUSPEND" => Some(QmpEvent::Suspend),
            "SUSPEND_DISK" => Some(QmpEvent::SuspendDisk),
            "GUEST_PANICKED" => data(&event).map(QmpEvent::GuestPanicked),
            "GUEST_CRASHLOADED" => data(&event).map(QmpEvent::GuestCrashloaded),
            "MEMORY_FAILURE" => data(&event).map(QmpEvent::MemoryFailure),
            "DEVICE_TRAY_MOVED" => data(&event).map(QmpEvent::DeviceTrayMoved),
            "BLOCK_JOB_COMPLETED" => data(&event).map(QmpEvent::BlockJobCompleted),
            "BLOCK_JOB_CANCELLED" => data(&event).map(QmpEvent::BlockJobCancelled),
            "BLOCK_JOB_READY" => data(&event).map(QmpEvent::BlockJobReady),
            "BLOCK_JOB_ERROR" => data(&event).map(QmpEvent::BlockJobError),
            "BLOCK_JOB_PENDING" => data(&event).map(QmpEvent::BlockJobPending),
            "MIGRATION" => data(&event).map(QmpEvent::Migration),
            "MIGRATION_PASS" => data(&event).map(QmpEvent::MigrationPass),
            "BALLOON_CHANGE" => data(&event).map(QmpEvent::BalloonChange),
            "WAKEUP" => Some(QmpEvent::Wakeup),
            "RTC_CHANGE" => data(&event).map(QmpEvent::RtcChange),
            "WATCHDOG" => data(&event).map(QmpEvent::Watchdog),
            "DEVICE_DELETED" => data(&event).map(QmpEvent::DeviceDeleted),
            "BLOCK_IO_ERROR" => data(&event).map(QmpEvent::BlockIoError),
            "JOB_STATUS_CHANGE" => data(&event).map(QmpEvent::JobStatusChange),
            "VNC_CONNECTED" => data(&event).map(QmpEvent::VncConnected),
            "VNC_INITIALIZED" => data(&event).map(QmpEvent::VncInitialized),
            "VNC_DISCONNECTED" => data(&event).map(QmpEvent::VncDisconnected),
            _ => None,
        };
        typed.unwrap_or(QmpEvent::Other(event))
    }
}

impl From<Event> for QmpEvent {
    fn from(event: Event) -> Self {
        QmpEvent::from_event(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qmpkit_proto::Timestamp;
    use serde_json::json;

    fn event(name: &str, data: Option<Value>) -> Event {
        Event { name: name.into(), data, timestamp: Timestamp::UNKNOWN }
    }

    #[test]
    fn results_survive_what_newer_qemu_adds() {
        let v72: StatusInfo =
            serde_json::from_value(json!({"status": "running", "singlestep": false, "running": true})).unwrap();
        let v10: StatusInfo =
            serde_json::from_value(json!({"status": "future-state", "running": false, "new": 1})).unwrap();
        assert_eq!((v72.status, v72.singlestep), (RunState::Running, Some(false)));
        assert_eq!(v10.status, RunState::Other("future-state".into()));
        assert_eq!(serde_json::to_value(&v10.status).unwrap(), json!("future-state"));
    }

    #[test]
    fn events_are_typed_or_kept_raw() {
        let cases = [
            (event("STOP", None), QmpEvent::Stop),
            (
                event("SHUTDOWN", Some(json!({"guest": false, "reason": "host-qmp-quit"}))),
                QmpEvent::Shutdown(ShutdownInfo { guest: false, reason: Some("host-qmp-quit".into()) }),
            ),
            (
                event(
                    "BLOCK_JOB_COMPLETED",
                    Some(json!({"type": "mirror", "device": "j0", "len": 10, "offset": 10, "speed": 0})),
                ),
                QmpEvent::BlockJobCompleted(BlockJobInfo {
                    type_: "mirror".into(),
                    device: "j0".into(),
                    len: 10,
                    offset: 10,
                    speed: 0,
                    error: None,
                }),
            ),
            (
                event("MIGRATION", Some(json!({"status": "completed"}))),
                QmpEvent::Migration(MigrationInfo { status: "completed".into() }),
            ),
            (
                event("DEVICE_DELETED", Some(json!({"device": "nic0", "path": "/machine/peripheral/nic0", "x": 1}))),
                QmpEvent::DeviceDeleted(DeviceDeletedInfo {
                    device: Some("nic0".into()),
                    path: "/machine/peripheral/nic0".into(),
                }),
            ),
        ];
        for (raw, typed) in cases {
            assert_eq!(QmpEvent::from_event(raw), typed);
        }
        let unknown = event("X_NEW_EVENT", Some(json!({"a": 1})));
        assert_eq!(QmpEvent::from_event(unknown.clone()), QmpEvent::Other(unknown));
        let misshapen = event("WATCHDOG", Some(json!({"action": 5})));
        assert_eq!(QmpEvent::from_event(misshapen.clone()), QmpEvent::Other(misshapen));
    }
}
