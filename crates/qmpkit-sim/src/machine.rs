//! The simulated machine: QEMU's run states and their transitions, devices, drives, the
//! balloon, block jobs and a small QOM tree, with the events QEMU emits for each change.
//!
//! Every operation takes the state lock, decides, emits its events while still holding it (so
//! that two operations' events never interleave) and releases it before anything waits.
//! Commands emit their events before they return, which is the order real QEMU's replies
//! show (the event is queued on the monitor before the command's return). What a guest does
//! later (acknowledge an unplug, adjust the balloon, a job's progress) runs in tasks of its
//! own on the tokio runtime.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use qmpkit::server::{ErrorClass, EventSender, QmpError};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::profile::Profile;
use crate::schema::{self, Prepared};

pub use qmpkit::types::RunState;

/// Whether `cont` must be preceded by `system_reset` (QEMU's `runstate_needs_reset`).
fn needs_reset(state: &RunState) -> bool {
    matches!(state, RunState::InternalError | RunState::Shutdown)
}

/// A device on the simulated machine, as `device_add` created it.
#[derive(Clone, Debug)]
struct Device {
    id: String,
    driver: String,
    /// `device_del` asked for it and the guest has not acknowledged yet.
    unplugging: bool,
}

/// A drive: a block backend with a node and, optionally, the device that uses it.
#[derive(Clone, Debug)]
struct Drive {
    device: &'static str,
    node: &'static str,
    size: u64,
    qdev: &'static str,
}

const DRIVES: [Drive; 2] = [
    Drive { device: "drive0", node: "node0", size: 1 << 30, qdev: "/machine/peripheral/disk0/virtio-backend" },
    Drive { device: "drive1", node: "node1", size: 2 << 30, qdev: "/machine/peripheral/disk1/virtio-backend" },
];

/// Device models `device_add` accepts.
const DEVICE_MODELS: [&str; 8] = [
    "virtio-balloon-pci",
    "virtio-blk-pci",
    "virtio-net-pci",
    "virtio-serial-pci",
    "virtio-rng-pci",
    "e1000",
    "usb-tablet",
    "i6300esb",
];

/// A block job's status (`JobStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobStatus {
    Created,
    Running,
    Paused,
    Waiting,
    Pending,
    Aborting,
    Concluded,
    Null,
}

impl JobStatus {
    fn as_str(self) -> &'static str {
        match self {
            JobStatus::Created => "created",
            JobStatus::Running => "running",
            JobStatus::Paused => "paused",
            JobStatus::Waiting => "waiting",
            JobStatus::Pending => "pending",
            JobStatus::Aborting => "aborting",
            JobStatus::Concluded => "concluded",
            JobStatus::Null => "null",
        }
    }
}

/// The verbs of QEMU's job state machine (`JobVerb`), with the states that accept each
/// (`job.c`'s `JobVerbTable`, restricted to the states a backup job goes through).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Cancel,
    Pause,
    Resume,
    Complete,
    Finalize,
    Dismiss,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Cancel => "cancel",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Complete => "complete",
            Verb::Finalize => "finalize",
            Verb::Dismiss => "dismiss",
        }
    }

    fn allowed(self, status: JobStatus) -> bool {
        use JobStatus::*;
        match self {
            Verb::Cancel => matches!(status, Created | Running | Paused | Waiting | Pending),
            Verb::Pause | Verb::Resume => matches!(status, Created | Running | Paused),
            Verb::Complete => false,
            Verb::Finalize => status == Pending,
            Verb::Dismiss => status == Concluded,
        }
    }
}

#[derive(Clone, Debug)]
struct Job {
    id: String,
    status: JobStatus,
    offset: u64,
    len: u64,
    speed: u64,
    auto_finalize: bool,
    auto_dismiss: bool,
    user_paused: bool,
    error: Option<String>,
}

/// Options fixed when the machine starts.
#[derive(Clone, Debug)]
pub(crate) struct MachineConfig {
    pub(crate) profile: Profile,
    pub(crate) paused: bool,
    pub(crate) name: Option<String>,
    pub(crate) uuid: String,
    pub(crate) no_shutdown: bool,
    pub(crate) acpi_guest: bool,
    pub(crate) ram: u64,
}

struct State {
    run: RunState,
    devices: Vec<Device>,
    balloon_target: u64,
    balloon_actual: u64,
    jobs: Vec<Job>,
    dump_guest_core: bool,
    stats_polling_interval: i64,
    next_anon: usize,
}

/// The simulated machine. Cloning gives another handle to the same machine.
#[derive(Clone)]
pub struct Machine {
    inner: Arc<Inner>,
}

struct Inner {
    config: MachineConfig,
    /// The profile's schema, looked up on first use (it is made once per process, while
    /// the first simulator greets its clients).
    prepared: OnceLock<Arc<Prepared>>,
    state: Mutex<State>,
    /// The server's event sender, handed over once the server exists (the server is built
    /// from the registry, whose handlers hold the machine).
    events: OnceLock<EventSender>,
    /// Set when QEMU would exit (`quit`, a guest shutdown without `-no-shutdown`).
    exit: watch::Sender<bool>,
    /// What the `hold` test hook waits for.
    held: Semaphore,
    /// How often a running job moves on, and how far it moves without a speed limit.
    job_tick: Duration,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine").field("run_state", &self.run_state()).finish_non_exhaustive()
    }
}

/// The most devices and jobs a machine holds, so that a client cannot grow the simulator
/// without bound; beyond them `device_add` and `blockdev-backup` fail.
const MAX_DEVICES: usize = 1024;
const MAX_JOBS: usize = 256;

/// How many bytes a job without a speed limit copies per tick.
const JOB_CHUNK: u64 = 64 << 20;

impl Machine {
    pub(crate) fn new(config: MachineConfig) -> Self {
        let run = if config.paused { RunState::Prelaunch } else { RunState::Running };
        let state = State {
            run,
            devices: vec![
                Device { id: "disk0".into(), driver: "virtio-blk-pci".into(), unplugging: false },
                Device { id: "disk1".into(), driver: "virtio-blk-pci".into(), unplugging: false },
                Device { id: "balloon0".into(), driver: "virtio-balloon-pci".into(), unplugging: false },
            ],
            balloon_target: config.ram,
            balloon_actual: config.ram,
            jobs: Vec::new(),
            dump_guest_core: true,
            stats_polling_interval: 0,
            next_anon: 0,
        };
        let (exit, _) = watch::channel(false);
        Machine {
            inner: Arc::new(Inner {
                config,
                prepared: OnceLock::new(),
                state: Mutex::new(state),
                events: OnceLock::new(),
                held: Semaphore::new(0),
                exit,
                job_tick: Duration::from_millis(100),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this file; the state stays usable.
        self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connects the machine to its server's events; events before this go nowhere.
    pub(crate) fn attach(&self, events: EventSender) {
        let _ = self.inner.events.set(events);
    }

    /// QEMU exits: whoever serves the machine sees the exit signal and stops the server.
    /// A command that made the machine exit stops it itself before its reply (see
    /// `commands::on_machine`), so that nothing is answered after it, as in QEMU.
    fn exit(&self) {
        self.inner.exit.send_replace(true);
    }

    /// The `hold` test hook: waits until [`Machine::release_held`] lets it go.
    pub(crate) async fn hold(&self) {
        if let Ok(permit) = self.inner.held.acquire().await {
            permit.forget();
        }
    }

    /// Lets `n` commands held by the `__org.qmpkit_hold` test hook (offered with
    /// [`crate::SimBuilder::faults`]) finish, now or when they come.
    pub fn release_held(&self, n: usize) {
        self.inner.held.add_permits(n);
    }

    fn emit(&self, name: &str, data: Option<Value>) {
        if let Some(events) = self.inner.events.get() {
            events.emit_value(name, data);
        }
    }

    /// The current run state.
    #[must_use]
    pub fn run_state(&self) -> RunState {
        self.state().run.clone()
    }

    /// The profile the machine imitates.
    #[must_use]
    pub fn profile(&self) -> Profile {
        self.inner.config.profile
    }

    /// The profile's schema; `None` only for a damaged profile, whose commands did not
    /// register either (and the log said so).
    fn prepared(&self) -> Option<&Prepared> {
        if let Some(prepared) = self.inner.prepared.get() {
            return Some(prepared);
        }
        let prepared = schema::prepared(&self.inner.config.profile).ok()?;
        Some(self.inner.prepared.get_or_init(|| prepared))
    }

    /// A receiver that turns `true` when QEMU would have exited.
    pub(crate) fn exit_signal(&self) -> watch::Receiver<bool> {
        self.inner.exit.subscribe()
    }

    /// Whether the machine has exited (by `quit` or a guest shutdown).
    #[must_use]
    pub fn has_exited(&self) -> bool {
        *self.inner.exit.borrow()
    }

    // ---- run states -------------------------------------------------------------------

    /// `query-status`.
    pub(crate) fn query_status(&self) -> Value {
        let run = self.run_state();
        let running = run == RunState::Running;
        let run = run.as_str();
        if self.prepared().is_some_and(|p| p.status_has_singlestep) {
            json!({"status": run, "singlestep": false, "running": running})
        } else {
            json!({"status": run, "running": running})
        }
    }

    /// Moves a running machine to `to`, with the `STOP` event (QEMU's `vm_stop`).
    fn vm_stop(&self, state: &mut State, to: RunState) {
        if state.run == RunState::Running {
            state.run = to;
            self.emit("STOP", None);
        }
    }

    /// `stop`: pauses a running machine; anything else stays as it is, without an event.
    pub fn stop(&self) {
        let mut state = self.state();
        self.vm_stop(&mut state, RunState::Paused);
    }

    /// `cont`: resumes the machine.
    ///
    /// # Errors
    /// QEMU's error when the machine needs a reset first.
    pub fn cont(&self) -> Result<(), QmpError> {
        let mut state = self.state();
        if needs_reset(&state.run) {
            return Err(QmpError::generic("Resetting the Virtual Machine is required"));
        }
        match &state.run {
            RunState::Suspended | RunState::Running => Ok(()),
            _ => {
                state.run = RunState::Running;
                self.emit("RESUME", None);
                drop(state);
                self.guest_started();
                Ok(())
            }
        }
    }

    /// A reset: the `RESET` event with the cause, and a machine that was not running comes
    /// back in `prelaunch` (QEMU's main loop does the same after any reset).
    fn reset(&self, guest: bool, reason: &str) {
        let mut state = self.state();
        self.emit("RESET", Some(json!({"guest": guest, "reason": reason})));
        if state.run != RunState::Running {
            state.run = RunState::Prelaunch;
        }
        state.balloon_target = self.inner.config.ram;
        state.balloon_actual = self.inner.config.ram;
    }

    /// `system_reset`.
    pub fn system_reset(&self) {
        self.reset(false, "host-qmp-system-reset");
    }

    /// `system_powerdown`: presses the ACPI power button. By default nothing in the guest
    /// reacts (as QEMU without a guest OS); with an ACPI guest
    /// ([`crate::SimBuilder::acpi_guest`]) a running guest shuts down shortly after.
    pub fn system_powerdown(&self) {
        let state = self.state();
        self.emit("POWERDOWN", None);
        if self.inner.config.acpi_guest && state.run == RunState::Running {
            let machine = self.clone();
            tokio::spawn(async move {
                // The guest's ACPI daemon takes a moment to power off.
                tokio::time::sleep(Duration::from_millis(10)).await;
                if machine.run_state() == RunState::Running {
                    machine.guest_shutdown();
                }
            });
        }
    }

    /// `system_wakeup`.
    ///
    /// # Errors
    /// QEMU's error when the guest is not suspended.
    pub fn system_wakeup(&self) -> Result<(), QmpError> {
        let mut state = self.state();
        if state.run != RunState::Suspended {
            return Err(QmpError::generic("Unable to wake up: guest is not in suspended state"));
        }
        state.run = RunState::Running;
        self.emit("WAKEUP", None);
        Ok(())
    }

    /// `quit`: the `SHUTDOWN` event, then the machine exits (the command still returns).
    pub fn quit(&self) {
        let _state = self.state();
        self.emit("SHUTDOWN", Some(json!({"guest": false, "reason": "host-qmp-quit"})));
        self.exit();
    }

    /// QEMU got SIGTERM or SIGINT: the `SHUTDOWN` event with reason `host-signal`, then the
    /// machine exits.
    pub fn host_signal(&self) {
        let _state = self.state();
        self.emit("SHUTDOWN", Some(json!({"guest": false, "reason": "host-signal"})));
        self.exit();
    }

    /// A shutdown request, as QEMU's main loop handles it: `SHUTDOWN`, then either exit or,
    /// with `-no-shutdown`, a stop in the `shutdown` state.
    fn shutdown_request(&self, state: &mut State, guest: bool, reason: &str) {
        self.emit("SHUTDOWN", Some(json!({"guest": guest, "reason": reason})));
        if self.inner.config.no_shutdown {
            self.vm_stop(state, RunState::Shutdown);
        } else {
            self.exit();
        }
    }

    // ---- guest-side happenings --------------------------------------------------------

    /// The guest powers itself off (ACPI shutdown).
    pub fn guest_shutdown(&self) {
        let mut state = self.state();
        self.shutdown_request(&mut state, true, "guest-shutdown");
    }

    /// The guest resets itself.
    pub fn guest_reset(&self) {
        self.reset(true, "guest-reset");
    }

    /// The guest suspends to RAM: `SUSPEND`, state `suspended` (only from `running`).
    pub fn guest_suspend(&self) {
        let mut state = self.state();
        if state.run == RunState::Running {
            state.run = RunState::Suspended;
            self.emit("SUSPEND", None);
        }
    }

    /// The guest panics. With `-no-shutdown` the panic action pauses it
    /// (`GUEST_PANICKED` `pause`, `STOP`, state `guest-panicked`); otherwise QEMU's default
    /// powers it off (`GUEST_PANICKED` `poweroff`, `STOP`, `SHUTDOWN` `guest-panic`, exit).
    pub fn guest_panic(&self) {
        let mut state = self.state();
        let action = if self.inner.config.no_shutdown { "pause" } else { "poweroff" };
        self.emit("GUEST_PANICKED", Some(json!({"action": action})));
        self.vm_stop(&mut state, RunState::GuestPanicked);
        if !self.inner.config.no_shutdown {
            self.shutdown_request(&mut state, true, "guest-panic");
        }
    }

    /// The watchdog fires with `action` (QEMU's `WatchdogAction`: `reset`, `shutdown`,
    /// `poweroff`, `pause`, `debug`, `none`, `inject-nmi`).
    pub fn watchdog(&self, action: &str) {
        self.emit("WATCHDOG", Some(json!({"action": action})));
        match action {
            "reset" => self.reset(true, "guest-reset"),
            // QEMU presses the power button for `shutdown` and exits at once for `poweroff`.
            "shutdown" => self.system_powerdown(),
            "poweroff" => {
                self.exit();
            }
            "pause" => {
                let mut state = self.state();
                self.vm_stop(&mut state, RunState::Watchdog);
            }
            _ => {}
        }
    }

    /// The guest moves its real-time clock: `RTC_CHANGE` (rate-limited to one per second,
    /// as in QEMU).
    pub fn rtc_change(&self, offset: i64) {
        self.emit("RTC_CHANGE", Some(json!({"offset": offset, "qom-path": "/machine/unattached/device[9]"})));
    }

    /// A disk reports an I/O error: `BLOCK_IO_ERROR` with `action` (`report`, `ignore`,
    /// `stop`); `stop` pauses the machine in the `io-error` state.
    ///
    /// # Errors
    /// QEMU's error when no drive has that name.
    pub fn block_io_error(&self, device: &str, action: &str, nospace: bool) -> Result<(), QmpError> {
        let drive = find_drive(device)?;
        let mut state = self.state();
        let mut data = serde_json::Map::new();
        if self.prepared().is_some_and(|p| p.schema.event_members("BLOCK_IO_ERROR").iter().any(|m| m == "qom-path")) {
            data.insert("qom-path".into(), drive.qdev.into());
        }
        data.insert("device".into(), drive.device.into());
        data.insert("node-name".into(), drive.node.into());
        data.insert("operation".into(), "write".into());
        data.insert("action".into(), action.into());
        if nospace {
            data.insert("nospace".into(), true.into());
        }
        let reason = if nospace { "No space left on device" } else { "Input/output error" };
        data.insert("reason".into(), reason.into());
        self.emit("BLOCK_IO_ERROR", Some(Value::Object(data)));
        if action == "stop" {
            self.vm_stop(&mut state, RunState::IoError);
        }
        Ok(())
    }

    /// What the guest does when it starts running again: acknowledge pending unplugs and
    /// follow the balloon target.
    fn guest_started(&self) {
        let unplugging: Vec<String> =
            self.state().devices.iter().filter(|d| d.unplugging).map(|d| d.id.clone()).collect();
        for id in unplugging {
            self.schedule_unplug(id);
        }
        self.schedule_balloon();
    }

    // ---- queries -----------------------------------------------------------------------

    /// `query-name`.
    pub(crate) fn query_name(&self) -> Value {
        match &self.inner.config.name {
            Some(name) => json!({"name": name}),
            None => json!({}),
        }
    }

    /// `query-uuid`.
    pub(crate) fn query_uuid(&self) -> Value {
        json!({"UUID": self.inner.config.uuid})
    }

    /// `query-kvm`: KVM present, not used (TCG), as QEMU here.
    pub(crate) fn query_kvm(&self) -> Value {
        json!({"enabled": false, "present": true})
    }

    /// `query-cpus-fast`: one x86_64 CPU.
    pub(crate) fn query_cpus_fast(&self) -> Value {
        json!([{
            "thread-id": std::process::id(),
            "props": {"core-id": 0, "thread-id": 0, "socket-id": 0},
            "qom-path": "/machine/unattached/device[0]",
            "cpu-index": 0,
            "target": "x86_64",
        }])
    }

    /// `query-block`: two null-co drives on virtio-blk devices.
    pub(crate) fn query_block(&self) -> Value {
        let list: Vec<Value> = DRIVES
            .iter()
            .map(|d| {
                let file = format!("json:{{\"driver\": \"null-co\", \"size\": \"{}\"}}", d.size);
                json!({
                    "io-status": "ok",
                    "device": d.device,
                    "locked": false,
                    "removable": false,
                    "inserted": {
                        "iops_rd": 0, "detect_zeroes": "off",
                        "image": {"virtual-size": d.size, "filename": file, "format": "null-co", "actual-size": 0},
                        "iops_wr": 0, "ro": false, "node-name": d.node, "backing_file_depth": 0, "drv": "null-co",
                        "iops": 0, "bps_wr": 0, "write_threshold": 0, "encrypted": false, "bps": 0, "bps_rd": 0,
                        "cache": {"no-flush": false, "direct": false, "writeback": true}, "file": file,
                    },
                    "qdev": d.qdev,
                    "type": "unknown",
                })
            })
            .collect();
        Value::Array(list)
    }

    // ---- balloon -----------------------------------------------------------------------

    fn balloon_active(state: &State) -> bool {
        state.devices.iter().any(|d| d.driver == "virtio-balloon-pci")
    }

    /// `query-balloon`.
    ///
    /// # Errors
    /// QEMU's `DeviceNotActive` error without a balloon device.
    pub(crate) fn query_balloon(&self) -> Result<Value, QmpError> {
        let state = self.state();
        if !Self::balloon_active(&state) {
            return Err(no_balloon());
        }
        Ok(json!({"actual": state.balloon_actual}))
    }

    /// `balloon`: sets the target; a running guest follows it shortly after, with
    /// `BALLOON_CHANGE`.
    ///
    /// # Errors
    /// QEMU's errors for a missing balloon or a target that is not a size.
    pub(crate) fn balloon(&self, value: i64) -> Result<(), QmpError> {
        let mut state = self.state();
        if !Self::balloon_active(&state) {
            return Err(no_balloon());
        }
        let Ok(target @ 1..) = u64::try_from(value) else {
            return Err(QmpError::generic("Parameter 'target' expects a size"));
        };
        state.balloon_target = target.min(self.inner.config.ram);
        let running = state.run == RunState::Running;
        drop(state);
        if running {
            self.schedule_balloon();
        }
        Ok(())
    }

    fn schedule_balloon(&self) {
        let machine = self.clone();
        tokio::spawn(async move {
            // The guest's balloon driver takes a moment to give or take the pages.
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut state = machine.state();
            if state.run == RunState::Running && state.balloon_actual != state.balloon_target {
                state.balloon_actual = state.balloon_target;
                machine.emit("BALLOON_CHANGE", Some(json!({"actual": state.balloon_actual})));
            }
        });
    }

    // ---- devices -----------------------------------------------------------------------

    /// `device_add`.
    ///
    /// # Errors
    /// QEMU's errors for an unknown model or a duplicate id.
    pub(crate) fn device_add(&self, driver: &str, id: Option<&str>) -> Result<(), QmpError> {
        let mut state = self.state();
        if !DEVICE_MODELS.contains(&driver) {
            return Err(QmpError::generic(format!("'{driver}' is not a valid device model name")));
        }
        if state.devices.len() >= MAX_DEVICES {
            return Err(QmpError::generic(format!("The simulator holds at most {MAX_DEVICES} devices")));
        }
        let id = match id {
            Some(id) => {
                if state.devices.iter().any(|d| d.id == id) {
                    return Err(QmpError::generic(format!("Duplicate device ID '{id}'")));
                }
                id.to_owned()
            }
            None => {
                state.next_anon += 1;
                format!("device[{}]", state.next_anon - 1)
            }
        };
        state.devices.push(Device { id, driver: driver.to_owned(), unplugging: false });
        Ok(())
    }

    /// `device_del`: asks the guest to release the device; a running guest does so shortly
    /// after, and `DEVICE_DELETED` follows (for a virtio device, first for its backend).
    ///
    /// # Errors
    /// QEMU's errors for an unknown device or one already being unplugged.
    pub(crate) fn device_del(&self, id: &str) -> Result<(), QmpError> {
        let mut state = self.state();
        let running = state.run == RunState::Running;
        let Some(device) = state.devices.iter_mut().find(|d| d.id == id) else {
            return Err(QmpError::new(ErrorClass::DeviceNotFound, format!("Device '{id}' not found")));
        };
        if device.unplugging {
            return Err(QmpError::generic(format!("Device {id} is already in the process of unplug")));
        }
        device.unplugging = true;
        drop(state);
        if running {
            self.schedule_unplug(id.to_owned());
        }
        Ok(())
    }

    fn schedule_unplug(&self, id: String) {
        let machine = self.clone();
        tokio::spawn(async move {
            // The guest's ACPI handler ejects the device a moment later.
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut state = machine.state();
            let Some(i) = state.devices.iter().position(|d| d.id == id && d.unplugging) else { return };
            if state.run != RunState::Running {
                return;
            }
            let device = state.devices.remove(i);
            let path = device_path(&device.id);
            if device.driver.starts_with("virtio-") {
                machine.emit("DEVICE_DELETED", Some(json!({"path": format!("{path}/virtio-backend")})));
            }
            let data = if device.id.starts_with("device[") {
                json!({"path": path})
            } else {
                json!({"device": id, "path": path})
            };
            machine.emit("DEVICE_DELETED", Some(data));
        });
    }

    // ---- QOM ---------------------------------------------------------------------------

    /// The properties of the object at `path`: (name, type, value, writable).
    fn qom_node(&self, state: &State, path: &str) -> Option<(String, Vec<Property>)> {
        let machine_type = self.inner.config.profile.machine_type;
        let child = |name: &str, ty: &str, path: &str| (name.to_owned(), format!("child<{ty}>"), json!(path), false);
        let typ = |ty: &str| ("type".to_owned(), "string".to_owned(), json!(ty), false);
        let path = path.trim_end_matches('/');
        match path {
            "" => Some((
                "container".into(),
                vec![
                    typ("container"),
                    child("objects", "container", "/objects"),
                    child("machine", machine_type, "/machine"),
                    child("chardevs", "container", "/chardevs"),
                ],
            )),
            "/machine" => Some((
                machine_type.into(),
                vec![
                    typ(machine_type),
                    ("dump-guest-core".into(), "bool".into(), json!(state.dump_guest_core), true),
                    child("peripheral", "container", "/machine/peripheral"),
                    child("peripheral-anon", "container", "/machine/peripheral-anon"),
                    child("unattached", "container", "/machine/unattached"),
                ],
            )),
            "/objects" | "/machine/unattached" => Some(("container".into(), vec![typ("container")])),
            "/chardevs" => Some((
                "container".into(),
                vec![typ("container"), child("compat_monitor0", "chardev-socket", "/chardevs/compat_monitor0")],
            )),
            "/chardevs/compat_monitor0" => Some(("chardev-socket".into(), vec![typ("chardev-socket")])),
            "/machine/peripheral" | "/machine/peripheral-anon" => {
                let anon = path.ends_with("-anon");
                let mut props = vec![typ("container")];
                for d in state.devices.iter().filter(|d| d.id.starts_with("device[") == anon) {
                    props.push(child(&d.id, &d.driver, &device_path(&d.id)));
                }
                Some(("container".into(), props))
            }
            _ => {
                let device = state.devices.iter().find(|d| device_path(&d.id) == path)?;
                let mut props = vec![typ(&device.driver), ("realized".into(), "bool".into(), json!(true), false)];
                if device.driver == "virtio-balloon-pci" {
                    let interval = json!(state.stats_polling_interval);
                    props.push(("guest-stats-polling-interval".into(), "int".into(), interval, true));
                }
                Some((device.driver.clone(), props))
            }
        }
    }

    /// `qom-list`.
    ///
    /// # Errors
    /// `DeviceNotFound` for a path with no object.
    pub(crate) fn qom_list(&self, path: &str) -> Result<Value, QmpError> {
        let state = self.state();
        let (_, props) = self.qom_node(&state, path).ok_or_else(|| qom_not_found(path))?;
        Ok(props.into_iter().map(|(name, ty, _, _)| json!({"name": name, "type": ty})).collect())
    }

    /// `qom-get`.
    ///
    /// # Errors
    /// QEMU's errors for an unknown path or property.
    pub(crate) fn qom_get(&self, path: &str, property: &str) -> Result<Value, QmpError> {
        let state = self.state();
        let (ty, props) = self.qom_node(&state, path).ok_or_else(|| qom_not_found(path))?;
        props
            .into_iter()
            .find(|(name, ..)| name == property)
            .map(|(_, _, value, _)| value)
            .ok_or_else(|| QmpError::generic(format!("Property '{ty}.{property}' not found")))
    }

    /// `qom-set`: the writable properties are `/machine`'s `dump-guest-core` (bool) and a
    /// balloon's `guest-stats-polling-interval` (int).
    ///
    /// # Errors
    /// QEMU's errors for an unknown path or property, a read-only property or a value of the
    /// wrong type.
    pub(crate) fn qom_set(&self, path: &str, property: &str, value: &Value) -> Result<(), QmpError> {
        let mut state = self.state();
        let (ty, props) = self.qom_node(&state, path).ok_or_else(|| qom_not_found(path))?;
        let Some((_, kind, _, writable)) = props.into_iter().find(|(name, ..)| name == property) else {
            return Err(QmpError::generic(format!("Property '{ty}.{property}' not found")));
        };
        if !writable {
            return Err(QmpError::generic(format!("Property '{ty}.{property}' is not writable")));
        }
        match kind.as_str() {
            "bool" => {
                let Some(b) = value.as_bool() else {
                    return Err(QmpError::generic(format!(
                        "Invalid parameter type for '{property}', expected: boolean"
                    )));
                };
                state.dump_guest_core = b;
            }
            _ => {
                let Some(interval) = value.as_i64() else {
                    return Err(QmpError::generic(format!(
                        "Invalid parameter type for '{property}', expected: integer"
                    )));
                };
                state.stats_polling_interval = interval;
            }
        }
        Ok(())
    }

    // ---- jobs --------------------------------------------------------------------------

    fn job_event(&self, job: &Job) {
        self.emit("JOB_STATUS_CHANGE", Some(json!({"status": job.status.as_str(), "id": job.id})));
    }

    fn set_job_status(&self, job: &mut Job, status: JobStatus) {
        job.status = status;
        self.job_event(job);
    }

    /// `query-jobs`.
    pub(crate) fn query_jobs(&self) -> Value {
        let state = self.state();
        state
            .jobs
            .iter()
            .map(|j| {
                let mut info = json!({
                    "current-progress": j.offset, "status": j.status.as_str(),
                    "total-progress": j.len, "type": "backup", "id": j.id,
                });
                if let Some(error) = &j.error {
                    info["error"] = json!(error);
                }
                info
            })
            .collect()
    }

    /// `blockdev-backup`: a backup job that copies the source's size, moving every 100 ms
    /// (by `speed` bytes per second, or 64 MiB a tick without a limit).
    ///
    /// # Errors
    /// QEMU's errors for unknown nodes, a negative speed or a job id in use.
    pub(crate) fn blockdev_backup(&self, args: &BackupArgs) -> Result<(), QmpError> {
        let source = find_drive(&args.device)?;
        find_drive(&args.target)?;
        let id = args.job_id.clone().unwrap_or_else(|| source.device.to_owned());
        let mut state = self.state();
        if state.jobs.iter().any(|j| j.id == id) {
            return Err(QmpError::generic(format!("Job ID '{id}' already in use")));
        }
        if state.jobs.len() >= MAX_JOBS {
            return Err(QmpError::generic(format!("The simulator holds at most {MAX_JOBS} jobs")));
        }
        let mut job = Job {
            id,
            status: JobStatus::Created,
            offset: 0,
            len: source.size,
            speed: 0,
            auto_finalize: args.auto_finalize.unwrap_or(true),
            auto_dismiss: args.auto_dismiss.unwrap_or(true),
            user_paused: false,
            error: None,
        };
        self.job_event(&job);
        match args.speed {
            Some(speed) if speed < 0 => {
                self.set_job_status(&mut job, JobStatus::Null);
                return Err(QmpError::generic("Parameter 'speed' expects a non-negative value"));
            }
            Some(speed) => job.speed = speed.unsigned_abs(),
            None => {}
        }
        self.set_job_status(&mut job, JobStatus::Running);
        let id = job.id.clone();
        state.jobs.push(job);
        drop(state);
        tokio::spawn(Machine::run_job(Arc::downgrade(&self.inner), id));
        Ok(())
    }

    /// Moves a job on every tick until it finishes. It holds the machine weakly: a machine
    /// whose server and handles are gone, or that exited, stops its jobs.
    async fn run_job(machine: Weak<Inner>, id: String) {
        let Some(tick) = machine.upgrade().map(|inner| inner.job_tick) else { return };
        let mut tick = tokio::time::interval(tick);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(inner) = machine.upgrade() else { return };
            let this = Machine { inner };
            if this.has_exited() {
                return;
            }
            let mut state = this.state();
            let Some(i) = state.jobs.iter().position(|j| j.id == id) else { return };
            let job = &mut state.jobs[i];
            match job.status {
                JobStatus::Running => {}
                JobStatus::Paused => continue,
                _ => return,
            }
            let step = if job.speed == 0 { JOB_CHUNK } else { (job.speed / 10).max(1) };
            job.offset = (job.offset + step).min(job.len);
            if job.offset == job.len {
                let mut job = job.clone();
                this.set_job_status(&mut job, JobStatus::Waiting);
                this.set_job_status(&mut job, JobStatus::Pending);
                state.jobs[i] = job;
                if state.jobs[i].auto_finalize {
                    this.finalize(&mut state, i);
                }
                return;
            }
        }
    }

    /// Finalises job `i` (pending): `BLOCK_JOB_COMPLETED`, `concluded`, and with
    /// auto-dismiss `null` and gone.
    fn finalize(&self, state: &mut State, i: usize) {
        let mut job = state.jobs[i].clone();
        let mut data =
            json!({"device": job.id, "len": job.len, "offset": job.offset, "speed": job.speed, "type": "backup"});
        if let Some(error) = &job.error {
            data["error"] = json!(error);
        }
        self.emit("BLOCK_JOB_COMPLETED", Some(data));
        self.conclude(state, i, &mut job);
    }

    fn conclude(&self, state: &mut State, i: usize, job: &mut Job) {
        self.set_job_status(job, JobStatus::Concluded);
        if job.auto_dismiss {
            self.set_job_status(job, JobStatus::Null);
            state.jobs.remove(i);
        } else {
            state.jobs[i] = job.clone();
        }
    }

    fn job_index(state: &State, id: &str, verb: Verb) -> Result<usize, QmpError> {
        let i = state.jobs.iter().position(|j| j.id == id).ok_or_else(|| QmpError::generic("Job not found"))?;
        let job = &state.jobs[i];
        if !verb.allowed(job.status) {
            return Err(QmpError::generic(format!(
                "Job '{}' in state '{}' cannot accept command verb '{}'",
                job.id,
                job.status.as_str(),
                verb.as_str()
            )));
        }
        Ok(i)
    }

    /// `job-pause`.
    ///
    /// # Errors
    /// QEMU's job errors.
    pub(crate) fn job_pause(&self, id: &str) -> Result<(), QmpError> {
        let mut state = self.state();
        let i = Self::job_index(&state, id, Verb::Pause)?;
        let job = &mut state.jobs[i];
        if job.user_paused {
            return Err(QmpError::generic("Job is already paused"));
        }
        job.user_paused = true;
        let mut job = job.clone();
        self.set_job_status(&mut job, JobStatus::Paused);
        state.jobs[i] = job;
        Ok(())
    }

    /// `job-resume`.
    ///
    /// # Errors
    /// QEMU's job errors.
    pub(crate) fn job_resume(&self, id: &str) -> Result<(), QmpError> {
        let mut state = self.state();
        let i = Self::job_index(&state, id, Verb::Resume)?;
        if !state.jobs[i].user_paused {
            return Err(QmpError::generic("Can't resume a job that was not paused"));
        }
        let mut job = state.jobs[i].clone();
        job.user_paused = false;
        self.set_job_status(&mut job, JobStatus::Running);
        state.jobs[i] = job;
        Ok(())
    }

    /// `job-cancel`: `aborting`, `BLOCK_JOB_CANCELLED`, `concluded` (and `null`).
    ///
    /// # Errors
    /// QEMU's job errors.
    pub(crate) fn job_cancel(&self, id: &str) -> Result<(), QmpError> {
        let mut state = self.state();
        let i = Self::job_index(&state, id, Verb::Cancel)?;
        let mut job = state.jobs[i].clone();
        self.set_job_status(&mut job, JobStatus::Aborting);
        self.emit(
            "BLOCK_JOB_CANCELLED",
            Some(json!({"device": job.id, "len": job.len, "offset": job.offset, "speed": job.speed, "type": "backup"})),
        );
        self.conclude(&mut state, i, &mut job);
        Ok(())
    }

    /// `job-complete`: a backup job never becomes ready, so this always fails as in QEMU.
    ///
    /// # Errors
    /// QEMU's job errors.
    pub(crate) fn job_complete(&self, id: &str) -> Result<(), QmpError> {
        let state = self.state();
        Self::job_index(&state, id, Verb::Complete).map(|_| ())
    }

    /// `job-finalize`.
    ///
    /// # Errors
    /// QEMU's job errors.
    pub(crate) fn job_finalize(&self, id: &str) -> Result<(), QmpError> {
        let mut state = self.state();
        let i = Self::job_index(&state, id, Verb::Finalize)?;
        self.finalize(&mut state, i);
        Ok(())
    }

    /// `job-dismiss`.
    ///
    /// # Errors
    /// QEMU's job errors.
    pub(crate) fn job_dismiss(&self, id: &str) -> Result<(), QmpError> {
        let mut state = self.state();
        let i = Self::job_index(&state, id, Verb::Dismiss)?;
        let mut job = state.jobs.remove(i);
        self.set_job_status(&mut job, JobStatus::Null);
        Ok(())
    }

    /// A running job fails with an I/O error: `aborting`, `BLOCK_JOB_COMPLETED` with the
    /// error, `concluded` (and `null`).
    ///
    /// # Errors
    /// "Job not found", or a job that is no longer running.
    pub fn fail_job(&self, id: &str) -> Result<(), QmpError> {
        let mut state = self.state();
        let i = state.jobs.iter().position(|j| j.id == id).ok_or_else(|| QmpError::generic("Job not found"))?;
        if !matches!(state.jobs[i].status, JobStatus::Running | JobStatus::Paused) {
            return Err(QmpError::generic(format!("Job '{id}' is not running")));
        }
        let mut job = state.jobs[i].clone();
        job.error = Some("Input/output error".into());
        self.set_job_status(&mut job, JobStatus::Aborting);
        state.jobs[i] = job;
        self.finalize(&mut state, i);
        Ok(())
    }
}

/// The arguments of `blockdev-backup` the simulation uses.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct BackupArgs {
    pub(crate) job_id: Option<String>,
    pub(crate) device: String,
    pub(crate) target: String,
    pub(crate) speed: Option<i64>,
    pub(crate) auto_finalize: Option<bool>,
    pub(crate) auto_dismiss: Option<bool>,
}

fn find_drive(name: &str) -> Result<&'static Drive, QmpError> {
    DRIVES
        .iter()
        .find(|d| d.device == name || d.node == name)
        .ok_or_else(|| QmpError::generic(format!("Cannot find device='{name}' nor node-name='{name}'")))
}

/// A QOM property: name, type, value, writable.
type Property = (String, String, Value, bool);

fn device_path(id: &str) -> String {
    if id.starts_with("device[") {
        format!("/machine/peripheral-anon/{id}")
    } else {
        format!("/machine/peripheral/{id}")
    }
}

fn qom_not_found(path: &str) -> QmpError {
    QmpError::new(ErrorClass::DeviceNotFound, format!("Device '{path}' not found"))
}

fn no_balloon() -> QmpError {
    QmpError::new(ErrorClass::DeviceNotActive, "No balloon device has been activated")
}
