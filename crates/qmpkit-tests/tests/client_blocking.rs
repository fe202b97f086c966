//! The blocking client against real QEMU, from plain threads with no runtime of their own.

use std::os::fd::OwnedFd;
use std::time::Duration;

use qmpkit::blocking::Client;
use qmpkit::launch::Signal;
use qmpkit::{CallOptions, Disconnect, Error, EventItem};
use qmpkit_tests::{qemu_none, qemu_pc_paused, socket};

#[test]
fn executes_from_many_threads_at_once() {
    let qemu = qemu_none();
    let client = Client::connect(socket(&qemu)).unwrap();
    assert!(client.oob_enabled());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || (0..25).all(|_| client.query_status().unwrap().running))
        })
        .collect();
    assert!(threads.into_iter().all(|t| t.join().unwrap()));
    assert!(client.execute_oob("query-yank", ()).unwrap().is_array());
}

#[test]
fn events_arrive_between_calls() {
    let qemu = qemu_pc_paused();
    let client = Client::connect(socket(&qemu)).unwrap();
    let events = client.subscribe(qmpkit::EventFilter::names(["RESUME", "STOP"]));
    client.execute("cont", ()).unwrap();
    client.execute("stop", ()).unwrap();
    assert!(matches!(events.recv_timeout(Duration::from_secs(5)), Ok(EventItem::Event(e)) if e.name == "RESUME"));
    assert!(matches!(events.recv(), Some(EventItem::Event(e)) if e.name == "STOP"));
    assert!(events.try_recv().is_none());
    assert!(events.recv_timeout(Duration::from_millis(200)).unwrap_err().is_timeout());
    // Typed commands, and any async operation through `block_on`.
    assert!(!client.run(qmpkit::commands::QueryKvm).unwrap().enabled);
    assert!(client.block_on(|c| c.query_name()).unwrap().name.is_none());
    let (_, reset) = client.execute_and_wait("system_reset", (), "RESET", Duration::from_secs(5)).unwrap();
    assert_eq!(reset.data.unwrap()["reason"], "host-qmp-system-reset");
    let schema = client.execute_raw_json("query-qmp-schema", ()).unwrap();
    assert!(schema.get().starts_with('['));
}

#[test]
fn qmp_errors_fds_timeouts_and_the_end() {
    let qemu = qemu_none();
    let client = Client::connect(socket(&qemu)).unwrap();
    let refused = client.execute("no-such-command", ()).unwrap_err();
    assert_eq!(refused.qmp_error().unwrap().desc, "The command no-such-command has not been found");

    let (_r, w) = std::io::pipe().unwrap();
    client.execute_with_fds("getfd", serde_json::json!({"fdname": "f"}), [OwnedFd::from(w)]).unwrap();

    qemu.signal(Signal::STOP).unwrap();
    let slow = client.call("query-status", (), CallOptions::new().timeout(Some(Duration::from_millis(200))));
    assert!(slow.unwrap_err().is_timeout());
    qemu.signal(Signal::CONT).unwrap();
    assert!(client.query_status().unwrap().running);

    qemu.signal(Signal::KILL).unwrap();
    let after = client.query_status();
    assert!(matches!(after, Err(Error::Disconnected(_))), "{after:?}");
    assert!(client.closed_reason().is_some());
    client.close();
    assert!(!matches!(client.closed_reason(), Some(Disconnect::Closed)));
}

#[test]
fn recv_timeout_shows_where_events_were_lost() {
    let qemu = qemu_pc_paused();
    let client = Client::connect_with(qmpkit::ClientBuilder::new().event_buffer(1), socket(&qemu)).unwrap();
    let events = client.subscribe(qmpkit::EventFilter::names(["RESUME", "STOP"]));
    // QEMU sends each event before the reply of the command that caused it, so all three are
    // queued, or counted as missed, once the calls return.
    client.run(qmpkit::commands::Cont).unwrap();
    client.run(qmpkit::commands::Stop).unwrap();
    client.run(qmpkit::commands::Cont).unwrap();
    let wait = Duration::from_secs(5);
    assert!(matches!(events.recv_timeout(wait), Ok(EventItem::Event(e)) if e.name == "RESUME"));
    assert_eq!(events.recv_timeout(wait).unwrap(), EventItem::Lagged { missed: 2 });
    assert!(events.recv_timeout(Duration::from_millis(100)).unwrap_err().is_timeout());
}

#[test]
fn connects_until_ready_and_runs_typed_commands_with_options() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let connecting = std::thread::spawn({
        let path = path.display().to_string();
        move || Client::connect_until_ready(qmpkit::ClientBuilder::new(), path, Duration::from_secs(30))
    });
    let qemu = qmpkit_tests::start(qmpkit::launch::Launcher::system().qmp_socket(&path));
    let client = connecting.join().unwrap().expect("connected once QEMU was ready");
    let quick = CallOptions::new().timeout(Some(Duration::from_secs(10)));
    assert!(client.run_with(qmpkit::commands::QueryStatus, quick).unwrap().running);
    qemu.signal(Signal::STOP).unwrap();
    let quick = CallOptions::new().timeout(Some(Duration::from_millis(200)));
    assert!(client.run_with(qmpkit::commands::QueryStatus, quick).unwrap_err().is_timeout());
    qemu.signal(Signal::CONT).unwrap();
}
