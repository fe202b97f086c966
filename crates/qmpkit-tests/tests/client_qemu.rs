//! The client against real QEMU (Debian's, installed by scripts/test). Each test starts its own
//! instance on a unix socket in a private directory; it is killed when the test ends, also on
//! failure. A missing QEMU fails these tests.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use qmpkit::launch::{Launcher, Signal};
use qmpkit::transport::{Endpoint, Listener};
use qmpkit::types::RunState;
use qmpkit::{CallOptions, Client, Disconnect, Error, ErrorClass, EventFilter, QmpEvent};
use qmpkit_tests::{fifo, qemu_none_async, qemu_pc_paused_async, release_fifo, socket, start_async};
use serde_json::json;

async fn connect(instance: &qmpkit::launch::Instance) -> Client {
    Client::connect(socket(instance)).await.expect("connect to QEMU")
}

/// Blocks QEMU's main loop: `blockdev-add` of a file on a FIFO hangs in `open()` until the
/// FIFO gets a writer. Returns the pending call.
fn block_main_loop(
    client: &Client,
    path: &std::path::Path,
) -> tokio::task::JoinHandle<Result<serde_json::Value, Error>> {
    let client = client.clone();
    let arguments = json!({"driver": "file", "filename": path, "read-only": true, "node-name": "blocker"});
    tokio::spawn(async move { client.execute("blockdev-add", arguments).await })
}

#[tokio::test]
async fn negotiates_with_and_without_oob() {
    let qemu = qemu_none_async().await;
    let with = connect(&qemu).await;
    assert!(with.oob_enabled());
    let version = with.greeting().and_then(|g| g.version.clone()).expect("a version in the greeting");
    assert_eq!(with.query_version().await.unwrap(), version);
    with.close().await;

    let without = Client::builder().oob(false).connect(socket(&qemu)).await.unwrap();
    assert!(!without.oob_enabled());
    assert!(without.greeting().unwrap().offers(&qmpkit::proto::Capability::Oob));
    assert!(matches!(without.execute_oob("query-yank", ()).await, Err(Error::Misuse(_))));
    // Sending qmp_capabilities again gets QEMU's own refusal.
    let again = without.qmp_capabilities(&[]).await.unwrap_err();
    assert_eq!(again.qmp_error().unwrap().class, ErrorClass::CommandNotFound);
}

#[tokio::test]
async fn a_hundred_tasks_share_one_connection() {
    let qemu = qemu_none_async().await;
    let client = connect(&qemu).await;
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                if n % 2 == 0 {
                    client.query_status().await.map(|s| s.status.to_string())
                } else {
                    client.human_monitor_command("info status").await
                }
            })
        })
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        let reply = task.await.unwrap().unwrap();
        if n % 2 == 0 {
            assert_eq!(reply, "running");
        } else {
            assert_eq!(reply, "VM status: running\r\n");
        }
    }
}

#[tokio::test]
async fn without_in_band_ids_concurrent_callers_still_get_their_own_replies() {
    let qemu = qemu_none_async().await;
    let client = Client::builder().in_band_ids(false).connect(socket(&qemu)).await.unwrap();
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                if n % 4 == 0 {
                    client.execute_oob("query-yank", ()).await.map(|v| v.is_array().to_string())
                } else if n % 2 == 0 {
                    client.query_status().await.map(|s| s.status.to_string())
                } else {
                    client.execute("query-name", ()).await.map(|v| v.to_string())
                }
            })
        })
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        let expected = if n % 4 == 0 {
            "true"
        } else if n % 2 == 0 {
            "running"
        } else {
            "{}"
        };
        assert_eq!(task.await.unwrap().unwrap(), expected);
    }
}

#[tokio::test]
async fn stop_and_cont_with_their_events() {
    let qemu = qemu_pc_paused_async().await;
    let client = connect(&qemu).await;
    assert_eq!(client.query_status().await.unwrap().status, RunState::Prelaunch);
    let mut events = client.subscribe(EventFilter::names(["STOP", "RESUME"]));
    client.cont().await.unwrap();
    assert_eq!(QmpEvent::from(events.next_event().await.unwrap()), QmpEvent::Resume);
    assert_eq!(client.query_status().await.unwrap().status, RunState::Running);
    client.stop().await.unwrap();
    assert_eq!(QmpEvent::from(events.next_event().await.unwrap()), QmpEvent::Stop);
    assert_eq!(client.query_status().await.unwrap().status, RunState::Paused);
}

#[tokio::test]
async fn system_reset_raises_reset() {
    let qemu = qemu_pc_paused_async().await;
    let client = connect(&qemu).await;
    let mut resets = client.subscribe("RESET");
    client.system_reset().await.unwrap();
    match QmpEvent::from(resets.next_event().await.unwrap()) {
        QmpEvent::Reset(info) => {
            assert!(!info.guest);
            assert_eq!(info.reason.as_deref(), Some("host-qmp-system-reset"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn quit_raises_shutdown_and_ends_cleanly() {
    let qemu = qemu_none_async().await;
    let client = connect(&qemu).await;
    let mut shutdowns = client.subscribe("SHUTDOWN");
    client.quit().await.unwrap();
    match QmpEvent::from(shutdowns.next_event().await.unwrap()) {
        QmpEvent::Shutdown(info) => assert_eq!(info.reason.as_deref(), Some("host-qmp-quit")),
        other => panic!("{other:?}"),
    }
    assert!(client.closed().await.is_server_gone());
    assert!(matches!(client.query_status().await, Err(Error::Disconnected(Disconnect::ServerGone { .. }))));
}

#[tokio::test]
async fn getfd_and_closefd_with_a_real_descriptor() {
    let qemu = qemu_none_async().await;
    let client = connect(&qemu).await;
    let (_read, write) = std::io::pipe().unwrap();
    client.getfd("fd0", OwnedFd::from(write)).await.unwrap();
    client.closefd("fd0").await.unwrap();
    let again = client.closefd("fd0").await.unwrap_err();
    assert_eq!(again.qmp_error().unwrap().desc, "File descriptor named 'fd0' not found");
    // Without a descriptor QEMU refuses, and the connection goes on.
    let missing = client.execute("getfd", json!({"fdname": "fd1"})).await.unwrap_err();
    assert_eq!(missing.qmp_error().unwrap().desc, "No file descriptor supplied via SCM_RIGHTS");
    assert!(client.query_status().await.is_ok());
}

#[tokio::test]
async fn add_fd_then_query_fdsets() {
    let qemu = qemu_none_async().await;
    let client = connect(&qemu).await;
    let (_read, write) = std::io::pipe().unwrap();
    let added = client.add_fd(OwnedFd::from(write), None, Some("the pipe")).await.unwrap();
    let sets = client.query_fdsets().await.unwrap();
    let set = sets.iter().find(|s| s.fdset_id == added.fdset_id).expect("the new fd set");
    assert_eq!(set.fds.len(), 1);
    assert_eq!((set.fds[0].fd, set.fds[0].opaque.as_deref()), (added.fd, Some("the pipe")));
    client.remove_fd(added.fdset_id, None).await.unwrap();
}

#[tokio::test]
async fn an_oob_command_overtakes_blocked_in_band_ones() {
    let qemu = qemu_none_async().await;
    let client = connect(&qemu).await;
    let path = fifo(&qemu);
    let blocked = block_main_loop(&client, &path);
    let queued: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.query_status().await })
        })
        .collect();
    // QEMU's main loop is stuck in open(); the monitor's I/O thread still runs exec-oob.
    let yank = client.execute_oob("query-yank", ()).await.unwrap();
    assert!(yank.is_array());
    assert!(!blocked.is_finished());
    assert!(queued.iter().all(|q| !q.is_finished()));
    let _writer = release_fifo(&path);
    // QEMU then refuses the FIFO as not a regular file; what mattered was the wait in open().
    let refused = blocked.await.unwrap().unwrap_err();
    assert!(refused.qmp_error().unwrap().desc.contains("regular file"), "{refused}");
    for q in queued {
        assert_eq!(q.await.unwrap().unwrap().status, RunState::Running);
    }
}

#[tokio::test]
async fn kill_9_resolves_every_pending_call_at_once() {
    let qemu = qemu_none_async().await;
    let client = connect(&qemu).await;
    let path = fifo(&qemu);
    let blocked = block_main_loop(&client, &path);
    let pending: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.execute("query-status", ()).await })
        })
        .collect();
    // QEMU's main loop is stuck; this out-of-band round trip proves the calls above were sent.
    client.execute_oob("query-yank", ()).await.unwrap();
    let killed = Instant::now();
    qemu.signal(Signal::KILL).unwrap();
    let all = async {
        for call in pending.into_iter().chain([blocked]) {
            let result = call.await.unwrap();
            assert!(matches!(result, Err(Error::Disconnected(_))), "{result:?}");
        }
    };
    // A bound that catches a hang, not a speed claim; the elapsed time is printed.
    tokio::time::timeout(Duration::from_secs(5), all).await.expect("pending calls still waiting after kill -9");
    println!("all pending calls resolved {:?} after kill -9", killed.elapsed());
    assert!(matches!(client.query_status().await, Err(Error::Disconnected(_))));
}

#[tokio::test]
async fn sigstop_fires_call_timeouts_and_the_client_recovers_after_sigcont() {
    let qemu = qemu_none_async().await;
    let client = connect(&qemu).await;
    qemu.signal(Signal::STOP).unwrap();
    for _ in 0..3 {
        let quick = CallOptions::new().timeout(Some(Duration::from_millis(300)));
        let result = client.call("query-status", (), quick).await;
        assert!(result.unwrap_err().is_timeout());
    }
    qemu.signal(Signal::CONT).unwrap();
    // The three late replies arrive first and are dropped; this call gets its own.
    let status = client.call("query-status", (), CallOptions::new().timeout(Some(Duration::from_secs(10)))).await;
    assert_eq!(status.unwrap()["status"], "running");
    assert!(client.closed_reason().is_none());
}

#[tokio::test]
async fn the_second_client_waits_silently_and_times_out() {
    let qemu = qemu_none_async().await;
    let _first = connect(&qemu).await;
    let second = Client::builder().handshake_timeout(Some(Duration::from_millis(500))).connect(socket(&qemu)).await;
    assert!(matches!(second, Err(Error::NoGreeting { .. })), "{second:?}");
}

#[tokio::test]
async fn reverse_mode_accepts_qemus_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp-client.sock");
    let listener = Listener::bind(&Endpoint::Unix(path.clone()), 0o600).await.unwrap();
    let qemu = start_async(Launcher::system().connect_to(&path)).await;
    let client = Client::builder().accept_on(&listener).await.unwrap();
    assert_eq!(client.query_status().await.unwrap().status, RunState::Running);
    drop(qemu);
}

#[tokio::test]
async fn qemu_storage_daemon_is_a_qmp_server_too() {
    let daemon = start_async(Launcher::storage_daemon()).await;
    let client = connect(&daemon).await;
    assert!(client.query_version().await.is_ok());
    let no_status = client.query_status().await.unwrap_err();
    assert_eq!(no_status.qmp_error().unwrap().desc, "The command query-status has not been found");
    let schema = client.query_qmp_schema().await.unwrap();
    assert!(schema.command("blockdev-add").is_some());
    assert!(schema.command("query-status").is_none());
    client.quit().await.unwrap();
    assert!(client.closed().await.is_server_gone());
}

#[tokio::test]
async fn typed_queries_decode_real_replies() {
    let qemu = qemu_pc_paused_async().await;
    let client = connect(&qemu).await;
    let kvm = client.query_kvm().await.unwrap();
    assert!(!kvm.enabled);
    assert!(client.query_name().await.unwrap().name.is_none());
    assert_eq!(client.query_uuid().await.unwrap().uuid.len(), 36);
    let commands = client.query_commands().await.unwrap();
    assert!(commands.iter().any(|c| c.name == "query-status"));
    let cpus = client.query_cpus_fast().await.unwrap();
    assert_eq!(cpus.len(), 1);
    assert_eq!(cpus[0].target, "x86_64");
    assert!(client.query_block().await.unwrap().is_empty());
    assert!(client.query_jobs().await.unwrap().is_empty());
    let machine = client.qom_list("/machine").await.unwrap();
    assert!(machine.iter().any(|p| p.name == "type"));
    assert_eq!(client.qom_get("/machine", "type").await.unwrap(), "pc-i440fx-7.2-machine");
    let schema = client.query_qmp_schema().await.unwrap();
    assert!(schema.command("query-yank").unwrap().allow_oob());
    // HMP errors come back as output text, not as QMP errors.
    let hmp = client.human_monitor_command("nosuchhmp").await.unwrap();
    assert!(hmp.contains("unknown command"));
}

#[tokio::test]
async fn device_add_and_device_del_with_its_event() {
    let qemu = start_async(Launcher::system().args(["-M", "pc", "-accel", "tcg", "-m", "64"])).await;
    let client = connect(&qemu).await;
    client.device_add("virtio-rng-pci", Some("rng0"), serde_json::Map::new()).await.unwrap();
    assert!(client.qom_list("/machine/peripheral").await.unwrap().iter().any(|p| p.name == "rng0"));
    // With no guest OS to release the device, QEMU cannot finish an unplug of a PCI device:
    // the request is accepted and DEVICE_DELETED does not come, which the wait reports.
    let waited = client.device_del_and_wait("rng0", Duration::from_millis(500)).await;
    assert!(waited.unwrap_err().is_timeout());
}

#[tokio::test]
async fn connect_until_ready_while_qemu_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    // The client starts before QEMU has even been spawned: the socket does not exist yet, and
    // a plain connect would fail with NotFound.
    assert!(!path.exists());
    let connecting = Client::builder().connect_until_ready(path.display().to_string(), Duration::from_secs(30));
    let (client, qemu) = tokio::join!(connecting, start_async(Launcher::system().qmp_socket(&path)));
    let client = client.expect("connected once QEMU was ready");
    assert_eq!(client.query_status().await.unwrap().status, RunState::Running);
    drop(qemu);
}

#[tokio::test]
async fn typed_commands_with_per_call_options_against_qemu() {
    use qmpkit::commands::{AddFd, Getfd, HumanMonitorCommand, QomGet, QueryFdsets, QueryStatus, RemoveFd};

    let qemu = qemu_none_async().await;
    let client = connect(&qemu).await;
    let machine = client.run(QomGet { path: "/machine".into(), property: "type".into() }).await.unwrap();
    assert_eq!(machine, "none-machine");
    let (_read, write) = std::io::pipe().unwrap();
    client.run(Getfd::new("typed", OwnedFd::from(write))).await.unwrap();
    let (_read, write) = std::io::pipe().unwrap();
    let added = client.run(AddFd { opaque: Some("typed".into()), ..AddFd::new(OwnedFd::from(write)) }).await.unwrap();
    let sets = client.run(QueryFdsets).await.unwrap();
    assert!(sets.iter().any(|s| s.fdset_id == added.fdset_id && s.fds[0].opaque.as_deref() == Some("typed")));
    client.run(RemoveFd { fdset_id: added.fdset_id, fd: None }).await.unwrap();

    // Out-of-band on a typed call: QEMU refuses a command that does not allow it, by name.
    let refused = client.run_with(HumanMonitorCommand::new("info status"), CallOptions::new().oob()).await.unwrap_err();
    assert_eq!(refused.qmp_error().unwrap().class, ErrorClass::GenericError);
    assert!(refused.to_string().starts_with("human-monitor-command: GenericError: "), "{refused}");

    // A deadline on a typed call, with QEMU stopped.
    qemu.signal(Signal::STOP).unwrap();
    let quick = CallOptions::new().timeout(Some(Duration::from_millis(300)));
    let late = client.run_with(QueryStatus, quick).await.unwrap_err();
    assert!(matches!(&late, Error::Timeout { what, .. } if what == "query-status"), "{late:?}");
    qemu.signal(Signal::CONT).unwrap();
    assert!(client.run(QueryStatus).await.unwrap().running);
}

#[tokio::test]
async fn qmp_errors_from_qemu_name_the_command() {
    let qemu = qemu_none_async().await;
    let client = connect(&qemu).await;
    let error = client.execute("query-foo", ()).await.unwrap_err();
    assert_eq!(error.to_string(), "query-foo: CommandNotFound: The command query-foo has not been found");
    let error = client.device_del("nic9").await.unwrap_err();
    assert_eq!(error.to_string(), "device_del: DeviceNotFound: Device 'nic9' not found");
}

#[tokio::test]
async fn start_async_yields_to_the_runtime_while_qemu_starts() {
    let launcher = Launcher::system();
    let mut starting = std::pin::pin!(launcher.start_async());
    // One poll spawns QEMU and must return at once; a blocking start would finish inside it.
    let first_poll = tokio::select! {
        biased;
        started = &mut starting => Some(started),
        () = std::future::ready(()) => None,
    };
    assert!(first_poll.is_none(), "start_async blocked until QEMU was up");
    let qemu = starting.await.expect("QEMU started");
    let client = connect(&qemu).await;
    assert!(client.query_status().await.unwrap().running);
}

/// A whole JSON object goes to QEMU as written, and QEMU's answer to an envelope it refuses
/// reaches the call, because QEMU echoes the id it was given.
#[tokio::test]
async fn whole_objects_reach_qemu_as_written() {
    let qemu = qemu_none_async().await;
    let client = connect(&qemu).await;
    let object = |v: serde_json::Value| v.as_object().cloned().expect("an object");
    let cases = [
        (json!({"execute": "query-status", "foo": 1}), "QMP input member 'foo' is unexpected"),
        (json!({"execute": 1}), "QMP input member 'execute' must be a string"),
        (json!({"id": "mine"}), "QMP input lacks member 'execute'"),
        (json!({}), "QMP input lacks member 'execute'"),
        (json!({"execute": "query-version", "arguments": {"x": 1}}), "Parameter 'x' is unexpected"),
    ];
    for (sent, desc) in cases {
        let response = client.execute_raw_object(object(sent.clone()), CallOptions::new()).await.unwrap();
        let error = response.result.expect_err("QEMU refuses it");
        assert_eq!(error.desc, desc, "{sent}");
    }
    let response = client
        .execute_raw_object(object(json!({"execute": "query-status", "id": [1, "x"]})), CallOptions::new())
        .await
        .unwrap();
    assert_eq!(response.id, Some(qmpkit::Id::new(json!([1, "x"]))));
    assert_eq!(response.result.unwrap()["status"], "running");
}
