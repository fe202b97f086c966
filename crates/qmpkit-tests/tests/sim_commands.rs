//! qmpkit's own client drives the simulator through its typed calls: every simulated query,
//! devices with `DEVICE_DELETED`, the balloon, QOM, fds, yank, a backup job whose progress
//! moves with (paused) time, and the downstream fault commands.

use std::time::Duration;

use qmpkit::{Client, EventFilter};
use qmpkit_sim::{DOWNSTREAM_PREFIX, RunState, Sim, SimBuilder};
use serde_json::{Map, Value, json};

async fn client(builder: SimBuilder) -> (Sim, Client) {
    let sim = builder.build().expect("the simulator builds");
    let qmp = Client::builder().over(sim.connect_pair()).await.expect("handshake");
    (sim, qmp)
}

/// The error a command fails with: (class, text).
async fn error(qmp: &Client, name: &str, arguments: Value) -> (String, String) {
    let err = qmp.execute(name, arguments).await.expect_err("the command fails");
    let err = err.qmp_error().unwrap_or_else(|| panic!("{name}: not a QMP error: {err}"));
    (err.class.name().to_owned(), err.desc.clone())
}

fn generic(text: &str) -> (String, String) {
    ("GenericError".to_owned(), text.to_owned())
}

#[tokio::test(start_paused = true)]
async fn typed_queries() {
    let (_sim, qmp) = client(Sim::builder().name("vm1").uuid("12345678-1234-1234-1234-123456789abc")).await;
    let version = qmp.query_version().await.unwrap();
    assert_eq!(version.qemu, qmpkit_proto::QemuVersion::Triple { major: 10, minor: 0, micro: 2 });
    assert_eq!(version.package, "qmpkit-sim");
    let kvm = qmp.query_kvm().await.unwrap();
    assert_eq!((kvm.enabled, kvm.present), (false, true));
    assert_eq!(qmp.query_name().await.unwrap().name.as_deref(), Some("vm1"));
    assert_eq!(qmp.query_uuid().await.unwrap().uuid, "12345678-1234-1234-1234-123456789abc");
    let cpus = qmp.query_cpus_fast().await.unwrap();
    assert_eq!(cpus.len(), 1);
    assert_eq!((cpus[0].cpu_index, cpus[0].qom_path.as_str()), (0, "/machine/unattached/device[0]"));
    let block = qmp.query_block().await.unwrap();
    let devices: Vec<&str> = block.iter().map(|b| b.device.as_str()).collect();
    assert_eq!(devices, ["drive0", "drive1"]);
    assert_eq!(block[0].qdev.as_deref(), Some("/machine/peripheral/disk0/virtio-backend"));
    assert!(qmp.query_jobs().await.unwrap().is_empty());
    let commands: Vec<String> = qmp.query_commands().await.unwrap().into_iter().map(|c| c.name).collect();
    for name in qmpkit_sim::COMMANDS.iter().chain(&["getfd", "query-fdsets", "query-qmp-schema"]) {
        assert!(commands.iter().any(|c| c == name), "query-commands lacks {name}");
    }
    assert!(!commands.iter().any(|c| c.starts_with(DOWNSTREAM_PREFIX)), "fault commands only with faults on");
    let schema = qmp.query_qmp_schema().await.unwrap();
    let backup = schema.command("blockdev-backup").expect("described");
    let args = backup.arg_type().as_object().unwrap();
    assert!(args.member("sync").is_some() && !args.member("sync").unwrap().optional());
    assert!(schema.event("JOB_STATUS_CHANGE").is_some());
    assert!(schema.command("query-yank").unwrap().allow_oob());
}

#[tokio::test(start_paused = true)]
async fn argument_errors_have_qemus_texts() {
    let (_sim, qmp) = client(Sim::builder()).await;
    assert_eq!(error(&qmp, "balloon", json!({})).await, generic("Parameter 'value' is missing"));
    assert_eq!(
        error(&qmp, "balloon", json!({"value": "x"})).await,
        generic("Invalid parameter type for 'value', expected: integer")
    );
    assert_eq!(error(&qmp, "stop", json!({"x": 1})).await, generic("Parameter 'x' is unexpected"));
    assert_eq!(
        error(&qmp, "blockdev-backup", json!({"device": "drive0", "target": "node1", "sync": "bad"})).await,
        generic("Parameter 'sync' does not accept value 'bad'")
    );
    assert_eq!(
        error(&qmp, "yank", json!({"instances": [{"type": "nope"}]})).await,
        generic("Parameter 'type' does not accept value 'nope'")
    );
    assert_eq!(
        error(&qmp, "yank", json!({"instances": [{"type": "chardev"}]})).await,
        generic("Parameter 'instances[0].id' is missing")
    );
}

#[tokio::test(start_paused = true)]
async fn devices_unplug_with_device_deleted_once_the_guest_runs() {
    let (sim, qmp) = client(Sim::builder().paused(true)).await;
    qmp.device_add("virtio-net-pci", Some("net0"), Map::new()).await.unwrap();
    assert_eq!(
        error(&qmp, "device_add", json!({"driver": "virtio-net-pci", "id": "net0"})).await,
        generic("Duplicate device ID 'net0'")
    );
    assert_eq!(
        error(&qmp, "device_add", json!({"driver": "nope"})).await,
        generic("'nope' is not a valid device model name")
    );
    let peripheral: Vec<String> = qmp
        .qom_list("/machine/peripheral")
        .await
        .unwrap()
        .into_iter()
        .map(|p| format!("{} {}", p.name, p.type_))
        .collect();
    assert!(peripheral.contains(&"net0 child<virtio-net-pci>".to_owned()), "{peripheral:?}");

    let mut deleted = qmp.subscribe(EventFilter::names(["DEVICE_DELETED"]));
    qmp.device_del("net0").await.unwrap();
    assert_eq!(
        error(&qmp, "device_del", json!({"id": "net0"})).await,
        generic("Device net0 is already in the process of unplug")
    );
    assert_eq!(
        error(&qmp, "device_del", json!({"id": "nope"})).await,
        ("DeviceNotFound".to_owned(), "Device 'nope' not found".to_owned())
    );
    // A guest in prelaunch does not eject anything; it does once it runs.
    qmp.cont().await.unwrap();
    let backend = deleted.next_event().await.unwrap();
    assert_eq!(backend.data, Some(json!({"path": "/machine/peripheral/net0/virtio-backend"})));
    let device = deleted.next_event().await.unwrap();
    assert_eq!(device.data, Some(json!({"device": "net0", "path": "/machine/peripheral/net0"})));
    assert_eq!(error(&qmp, "device_del", json!({"id": "net0"})).await.0, "DeviceNotFound");

    qmp.device_add("usb-tablet", Some("tab"), Map::new()).await.unwrap();
    let event = qmp.device_del_and_wait("tab", Duration::from_secs(5)).await.unwrap();
    assert_eq!(event.data, Some(json!({"device": "tab", "path": "/machine/peripheral/tab"})));
    assert_eq!(sim.machine().run_state(), RunState::Running);
}

#[tokio::test(start_paused = true)]
async fn balloon_follows_a_running_guest() {
    let (_sim, qmp) = client(Sim::builder().paused(true)).await;
    assert_eq!(qmp.execute("query-balloon", ()).await.unwrap(), json!({"actual": 134217728}));
    assert_eq!(error(&qmp, "balloon", json!({"value": 0})).await, generic("Parameter 'target' expects a size"));
    let mut changes = qmp.subscribe(EventFilter::names(["BALLOON_CHANGE"]));
    qmp.execute("balloon", json!({"value": 67108864})).await.unwrap();
    assert_eq!(qmp.execute("query-balloon", ()).await.unwrap(), json!({"actual": 134217728}), "paused guest");
    qmp.cont().await.unwrap();
    assert_eq!(changes.next_event().await.unwrap().data, Some(json!({"actual": 67108864})));
    assert_eq!(qmp.execute("query-balloon", ()).await.unwrap(), json!({"actual": 67108864}));
    qmp.device_del_and_wait("balloon0", Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        error(&qmp, "query-balloon", json!({})).await,
        ("DeviceNotActive".to_owned(), "No balloon device has been activated".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn qom_tree() {
    let (_sim, qmp) = client(Sim::builder().version("7.2")).await;
    let root: Vec<String> =
        qmp.qom_list("/").await.unwrap().into_iter().map(|p| format!("{} {}", p.name, p.type_)).collect();
    assert_eq!(
        root,
        [
            "type string",
            "objects child<container>",
            "machine child<pc-i440fx-7.2-machine>",
            "chardevs child<container>"
        ]
    );
    assert_eq!(qmp.qom_get("/machine", "type").await.unwrap(), json!("pc-i440fx-7.2-machine"));
    assert_eq!(qmp.qom_get("/machine", "peripheral").await.unwrap(), json!("/machine/peripheral"));
    assert_eq!(qmp.qom_get("/machine/peripheral/disk0", "type").await.unwrap(), json!("virtio-blk-pci"));
    qmp.qom_set("/machine", "dump-guest-core", json!(false)).await.unwrap();
    assert_eq!(qmp.qom_get("/machine", "dump-guest-core").await.unwrap(), json!(false));
    let args = |path: &str, prop: &str| json!({"path": path, "property": prop});
    assert_eq!(
        error(&qmp, "qom-get", args("/nope", "type")).await,
        ("DeviceNotFound".to_owned(), "Device '/nope' not found".to_owned())
    );
    assert_eq!(
        error(&qmp, "qom-get", args("/machine", "nope")).await,
        generic("Property 'pc-i440fx-7.2-machine.nope' not found")
    );
    assert_eq!(
        error(&qmp, "qom-set", json!({"path": "/machine", "property": "type", "value": "x"})).await,
        generic("Property 'pc-i440fx-7.2-machine.type' is not writable")
    );
    assert_eq!(
        error(&qmp, "qom-list", json!({"path": "/nope"})).await,
        ("DeviceNotFound".to_owned(), "Device '/nope' not found".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn yank_migration_and_fds() {
    let (_sim, qmp) = client(Sim::builder()).await;
    assert_eq!(qmp.execute_oob("query-yank", ()).await.unwrap(), json!([{"type": "chardev", "id": "compat_monitor0"}]));
    qmp.execute("yank", json!({"instances": [{"type": "chardev", "id": "compat_monitor0"}]})).await.unwrap();
    assert_eq!(
        error(&qmp, "yank", json!({"instances": [{"type": "chardev", "id": "x"}]})).await,
        ("DeviceNotFound".to_owned(), "Instance not found".to_owned())
    );
    assert_eq!(
        error(&qmp, "migrate-pause", json!({})).await,
        generic("migrate-pause is currently only supported during postcopy-active or postcopy-recover state")
    );
    assert_eq!(
        error(&qmp, "migrate-recover", json!({"uri": "tcp:1"})).await,
        generic("Migrate recover can only be run when postcopy is paused.")
    );
    // The pipe passes no fds: getfd fails as QEMU's does without SCM_RIGHTS.
    assert_eq!(
        error(&qmp, "getfd", json!({"fdname": "x"})).await,
        generic("No file descriptor supplied via SCM_RIGHTS")
    );
    assert_eq!(qmp.query_fdsets().await.unwrap().len(), 0);
}

/// Runs the paused clock until `events` has the next event.
async fn next(events: &mut qmpkit::EventStream) -> (String, Option<Value>) {
    let event = tokio::time::timeout(Duration::from_secs(60), events.next_event()).await.unwrap().unwrap();
    (event.name, event.data)
}

fn status(id: &str, status: &str) -> (String, Option<Value>) {
    ("JOB_STATUS_CHANGE".to_owned(), Some(json!({"status": status, "id": id})))
}

#[tokio::test(start_paused = true)]
async fn backup_job_moves_over_time_and_obeys_the_verbs() {
    let (_sim, qmp) = client(Sim::builder()).await;
    let mut events = qmp.subscribe(EventFilter::names(["JOB_STATUS_CHANGE", "BLOCK_JOB_COMPLETED"]));
    let speed = 100 << 20; // 10 MiB a tick of 100 ms
    qmp.execute(
        "blockdev-backup",
        json!({"job-id": "j1", "device": "drive0", "target": "node1", "sync": "full", "speed": speed, "auto-dismiss": false}),
    )
    .await
    .unwrap();
    assert_eq!(next(&mut events).await, status("j1", "created"));
    assert_eq!(next(&mut events).await, status("j1", "running"));
    let jobs = qmp.query_jobs().await.unwrap();
    assert_eq!((jobs[0].id.as_str(), jobs[0].status.as_str(), jobs[0].current_progress), ("j1", "running", 0));

    tokio::time::sleep(Duration::from_millis(350)).await;
    let progress = qmp.query_jobs().await.unwrap()[0].current_progress;
    assert_eq!(progress, 3 * (10 << 20), "three ticks of 10 MiB");

    assert_eq!(error(&qmp, "job-resume", json!({"id": "j1"})).await, generic("Can't resume a job that was not paused"));
    assert_eq!(
        error(&qmp, "job-complete", json!({"id": "j1"})).await,
        generic("Job 'j1' in state 'running' cannot accept command verb 'complete'")
    );
    qmp.execute("job-pause", json!({"id": "j1"})).await.unwrap();
    assert_eq!(next(&mut events).await, status("j1", "paused"));
    assert_eq!(error(&qmp, "job-pause", json!({"id": "j1"})).await, generic("Job is already paused"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(qmp.query_jobs().await.unwrap()[0].current_progress, progress, "a paused job does not move");
    qmp.execute("job-resume", json!({"id": "j1"})).await.unwrap();
    assert_eq!(next(&mut events).await, status("j1", "running"));

    // 1 GiB at 10 MiB a tick: done within 103 ticks.
    assert_eq!(next(&mut events).await, status("j1", "waiting"));
    assert_eq!(next(&mut events).await, status("j1", "pending"));
    let (name, data) = next(&mut events).await;
    assert_eq!(name, "BLOCK_JOB_COMPLETED");
    assert_eq!(
        data,
        Some(json!({"device": "j1", "len": 1073741824, "offset": 1073741824, "speed": speed, "type": "backup"}))
    );
    assert_eq!(next(&mut events).await, status("j1", "concluded"));
    let jobs = qmp.query_jobs().await.unwrap();
    assert_eq!((jobs[0].status.as_str(), jobs[0].current_progress), ("concluded", 1 << 30));
    qmp.execute("job-dismiss", json!({"id": "j1"})).await.unwrap();
    assert_eq!(next(&mut events).await, status("j1", "null"));
    assert!(qmp.query_jobs().await.unwrap().is_empty());
    assert_eq!(error(&qmp, "job-dismiss", json!({"id": "j1"})).await, generic("Job not found"));
}

#[tokio::test(start_paused = true)]
async fn backup_job_cancel_and_errors() {
    let (_sim, qmp) = client(Sim::builder()).await;
    let mut events = qmp.subscribe(EventFilter::all());
    let backup = |id: &str, device: &str, target: &str| json!({"job-id": id, "device": device, "target": target, "sync": "full", "speed": 1});
    assert_eq!(
        error(&qmp, "blockdev-backup", backup("j", "nope", "node1")).await,
        generic("Cannot find device='nope' nor node-name='nope'")
    );
    let mut negative = backup("j", "drive0", "node1");
    negative["speed"] = json!(-1);
    assert_eq!(
        error(&qmp, "blockdev-backup", negative).await,
        generic("Parameter 'speed' expects a non-negative value")
    );
    assert_eq!(next(&mut events).await, status("j", "created"));
    assert_eq!(next(&mut events).await, status("j", "null"));

    qmp.execute("blockdev-backup", backup("j2", "drive0", "node1")).await.unwrap();
    assert_eq!(
        error(&qmp, "blockdev-backup", backup("j2", "drive1", "node0")).await,
        generic("Job ID 'j2' already in use")
    );
    assert_eq!(next(&mut events).await, status("j2", "created"));
    assert_eq!(next(&mut events).await, status("j2", "running"));
    qmp.execute("job-cancel", json!({"id": "j2"})).await.unwrap();
    assert_eq!(next(&mut events).await, status("j2", "aborting"));
    let (name, data) = next(&mut events).await;
    assert_eq!(name, "BLOCK_JOB_CANCELLED");
    assert_eq!(data.unwrap()["device"], "j2");
    assert_eq!(next(&mut events).await, status("j2", "concluded"));
    assert_eq!(next(&mut events).await, status("j2", "null"));
    assert!(qmp.query_jobs().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn fault_commands_exist_only_with_faults() {
    let (_sim, qmp) = client(Sim::builder()).await;
    let name = format!("{DOWNSTREAM_PREFIX}guest-panic");
    assert_eq!(
        error(&qmp, &name, json!({})).await,
        ("CommandNotFound".to_owned(), format!("The command {name} has not been found"))
    );
    let schema = qmp.query_qmp_schema().await.unwrap();
    assert!(schema.command(&name).is_none());

    let (sim, qmp) = client(Sim::builder().faults(true).no_shutdown(true)).await;
    assert!(qmp.query_qmp_schema().await.unwrap().command(&name).is_some());
    let mut events = qmp.subscribe(EventFilter::all());
    let fault = |n: &str| format!("{DOWNSTREAM_PREFIX}{n}");

    qmp.execute(&fault("rtc-change"), json!({"offset": 5})).await.unwrap();
    assert_eq!(
        next(&mut events).await,
        ("RTC_CHANGE".into(), Some(json!({"offset": 5, "qom-path": "/machine/unattached/device[9]"})))
    );
    // QEMU's throttle: a burst within a second is reduced to its first and its last event.
    for offset in 6..=9 {
        qmp.execute(&fault("rtc-change"), json!({"offset": offset})).await.unwrap();
    }
    let (_, data) = next(&mut events).await;
    assert_eq!(data.unwrap()["offset"], 9);

    qmp.execute(&fault("block-io-error"), json!({"device": "drive1", "action": "stop"})).await.unwrap();
    let (name_, data) = next(&mut events).await;
    assert_eq!(name_, "BLOCK_IO_ERROR");
    assert_eq!(
        data,
        Some(json!({"qom-path": "/machine/peripheral/disk1/virtio-backend", "device": "drive1", "node-name": "node1",
                    "operation": "write", "action": "stop", "reason": "Input/output error"}))
    );
    assert_eq!(next(&mut events).await.0, "STOP");
    assert_eq!(sim.machine().run_state(), RunState::IoError);
    qmp.cont().await.unwrap();
    assert_eq!(next(&mut events).await.0, "RESUME");

    qmp.execute(&fault("watchdog"), json!({"action": "pause"})).await.unwrap();
    assert_eq!(next(&mut events).await, ("WATCHDOG".into(), Some(json!({"action": "pause"}))));
    assert_eq!(next(&mut events).await.0, "STOP");
    assert_eq!(qmp.query_status().await.unwrap().status, RunState::Watchdog);
    qmp.cont().await.unwrap();
    assert_eq!(next(&mut events).await.0, "RESUME");

    qmp.execute(
        "blockdev-backup",
        json!({"job-id": "j", "device": "drive0", "target": "node1", "sync": "full", "speed": 1}),
    )
    .await
    .unwrap();
    assert_eq!(next(&mut events).await, status("j", "created"));
    assert_eq!(next(&mut events).await, status("j", "running"));
    qmp.execute(&fault("job-fail"), json!({"id": "j"})).await.unwrap();
    assert_eq!(next(&mut events).await, status("j", "aborting"));
    let (name_, data) = next(&mut events).await;
    assert_eq!(name_, "BLOCK_JOB_COMPLETED");
    assert_eq!(data.unwrap()["error"], "Input/output error");
    assert_eq!(next(&mut events).await, status("j", "concluded"));
    assert_eq!(next(&mut events).await, status("j", "null"));

    qmp.execute(&fault("guest-reset"), json!({})).await.unwrap();
    assert_eq!(next(&mut events).await, ("RESET".into(), Some(json!({"guest": true, "reason": "guest-reset"}))));
    qmp.execute(&fault("guest-panic"), json!({})).await.unwrap();
    assert_eq!(next(&mut events).await, ("GUEST_PANICKED".into(), Some(json!({"action": "pause"}))));
    assert_eq!(next(&mut events).await.0, "STOP");
    assert_eq!(qmp.query_status().await.unwrap().status, RunState::GuestPanicked);
}

/// Every typed call of the client, over a unix socket (so that fds travel), against a
/// simulator started with the library's `start`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_typed_call_over_a_unix_socket() {
    use std::io::Read;

    let sim = Sim::builder().version("7.2").paused(true).name("typed").acpi_guest(true).start().await.unwrap();
    let path = sim.socket_paths()[0].clone();
    assert!(path.exists());
    let qmp = Client::connect(path.to_str().unwrap()).await.unwrap();
    let status = qmp.query_status().await.unwrap();
    assert_eq!((status.status, status.running, status.singlestep), (RunState::Prelaunch, false, Some(false)));
    qmp.system_reset().await.unwrap();
    qmp.cont().await.unwrap();
    qmp.stop().await.unwrap();
    assert_eq!(sim.machine().run_state(), RunState::Paused);
    qmp.cont().await.unwrap();
    let err = qmp.system_wakeup().await.unwrap_err();
    assert_eq!(err.qmp_error().unwrap().desc, "Unable to wake up: guest is not in suspended state");
    sim.machine().guest_suspend();
    qmp.system_wakeup().await.unwrap();
    assert_eq!(qmp.human_monitor_command("info name").await.unwrap(), "typed\r\n");

    // fds: getfd/closefd per connection, add-fd/remove-fd/query-fdsets shared.
    let (mut read, write) = std::io::pipe().unwrap();
    qmp.getfd("log", write.into()).await.unwrap();
    qmp.closefd("log").await.unwrap();
    let mut rest = Vec::new();
    read.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "closefd closed the simulator's copy: EOF");
    let err = qmp.closefd("log").await.unwrap_err();
    assert_eq!(err.qmp_error().unwrap().desc, "File descriptor named 'log' not found");
    let (_read, write) = std::io::pipe().unwrap();
    let added = qmp.add_fd(write.into(), Some(3), Some("opaque")).await.unwrap();
    assert_eq!(added.fdset_id, 3);
    let sets = qmp.query_fdsets().await.unwrap();
    assert_eq!((sets.len(), sets[0].fdset_id, sets[0].fds.len()), (1, 3, 1));
    qmp.remove_fd(3, None).await.unwrap();
    assert!(qmp.query_fdsets().await.unwrap().is_empty());

    // An ACPI guest powers off on the power button, and the simulator ends.
    let shutdown = qmp.system_powerdown_and_wait(Duration::from_secs(10)).await.unwrap();
    assert_eq!(shutdown.data, Some(json!({"guest": true, "reason": "guest-shutdown"})));
    qmp.closed().await;
    sim.wait().await.unwrap();
    assert!(!path.exists(), "the socket is removed when the machine exits");
}

#[tokio::test(start_paused = true)]
async fn typed_quit_and_powerdown_without_a_guest_os() {
    let (sim, qmp) = client(Sim::builder()).await;
    qmp.system_powerdown().await.unwrap();
    let err = qmp.system_powerdown_and_wait(Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, qmpkit::Error::Timeout { .. }), "no guest OS reacts: {err}");
    qmp.quit().await.unwrap();
    qmp.closed().await;
    assert!(sim.machine().has_exited());
}

#[tokio::test(start_paused = true)]
async fn devices_and_jobs_are_bounded() {
    let (_sim, qmp) = client(Sim::builder()).await;
    // Three devices exist from the start.
    for i in 0..1021 {
        qmp.device_add("e1000", Some(&format!("nic{i}")), Map::new()).await.unwrap();
    }
    assert_eq!(
        error(&qmp, "device_add", json!({"driver": "e1000", "id": "one-too-many"})).await,
        generic("The simulator holds at most 1024 devices")
    );
    for i in 0..256 {
        let args =
            json!({"job-id": format!("j{i}"), "device": "drive0", "target": "node1", "sync": "full", "speed": 1});
        qmp.execute("blockdev-backup", args).await.unwrap();
    }
    let args = json!({"job-id": "late", "device": "drive0", "target": "node1", "sync": "full", "speed": 1});
    assert_eq!(error(&qmp, "blockdev-backup", args).await, generic("The simulator holds at most 256 jobs"));
    assert_eq!(qmp.query_jobs().await.unwrap().len(), 256);
    qmp.qom_set("/machine/peripheral/balloon0", "guest-stats-polling-interval", json!(5)).await.unwrap();
    assert_eq!(qmp.qom_get("/machine/peripheral/balloon0", "guest-stats-polling-interval").await.unwrap(), json!(5));
}
