//! The guest agent client against the real `qemu-ga`, run on this machine unprivileged and with
//! every command that changes the machine blocked (see `qmpkit_tests::agent_fixture`).
//! The programs run with `guest-exec` are harmless shell one-liners, and files are only
//! written inside the agent's private directory.

use std::time::Duration;

use qmpkit::agent::{Agent, AgentBuilder, AgentCallOptions, Exec, FsfreezeStatus};
use qmpkit::{Error, ErrorClass};
use qmpkit_tests::agent_fixture::{BLOCKED, RealAgent, Relay};
use serde_json::json;

const READY: Duration = Duration::from_secs(20);

async fn started() -> (RealAgent, Agent) {
    let real = RealAgent::start();
    let agent = AgentBuilder::new().call_timeout(Duration::from_secs(10)).build(real.address());
    agent.wait_ready(READY).await.expect("qemu-ga answers");
    (real, agent)
}

#[tokio::test]
async fn typed_calls_decode_what_the_real_agent_says() {
    let (_real, agent) = started().await;
    agent.ping().await.unwrap();
    let info = agent.info().await.unwrap();
    assert!(info.version.split('.').count() >= 2, "{}", info.version);
    for name in BLOCKED {
        if let Some(command) = info.command(name) {
            assert!(!command.enabled, "{name} must be blocked");
        }
    }
    assert!(!info.command("guest-shutdown").expect("listed").success_response);
    assert!(info.command("guest-exec").expect("listed").enabled);

    let os = agent.osinfo().await.unwrap();
    assert_eq!(os.machine.as_deref(), Some(std::env::consts::ARCH));
    let host = agent.host_name().await.unwrap();
    assert_eq!(host, std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim_end());
    let time = agent.time().await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    assert!((i128::from(time) - now as i128).abs() < 60_000_000_000, "the guest clock is this machine's");
    let interfaces = agent.network_interfaces().await.unwrap();
    let lo = interfaces.iter().find(|i| i.name == "lo").expect("a loopback interface");
    assert!(lo.ip_addresses.iter().any(|a| a.ip_address == "127.0.0.1" && a.prefix == 8), "{lo:?}");
    let filesystems = agent.fsinfo().await.unwrap();
    assert!(filesystems.iter().all(|fs| !fs.mountpoint.is_empty() && !fs.fs_type.is_empty()), "{filesystems:?}");
    assert_eq!(agent.fsfreeze_status().await.unwrap(), FsfreezeStatus::Thawed);
}

#[tokio::test]
async fn blocked_commands_are_refused_and_the_channel_goes_on() {
    let (_real, agent) = started().await;
    let err = agent.shutdown(None).await.unwrap_err();
    let refusal = err.qmp_error().expect("a refusal");
    assert_eq!(refusal.class, ErrorClass::CommandNotFound);
    assert_eq!(refusal.desc, "Command guest-shutdown has been disabled");
    assert_eq!(err.to_string(), "guest-shutdown: CommandNotFound: Command guest-shutdown has been disabled");
    let err = agent.fsfreeze_freeze().await.unwrap_err();
    assert_eq!(err.qmp_error().unwrap().desc, "Command guest-fsfreeze-freeze has been disabled");
    let err = agent.execute("guest-suspend-ram", ()).await.unwrap_err();
    assert_eq!(err.qmp_error().unwrap().desc, "Command guest-suspend-ram has been disabled");
    let err = agent.execute("guest-no-such-command", ()).await.unwrap_err();
    assert_eq!(err.qmp_error().unwrap().class, ErrorClass::CommandNotFound);
    agent.ping().await.unwrap();
}

#[tokio::test]
async fn exec_returns_stdout_stderr_and_a_nonzero_exit_code() {
    let (_real, agent) = started().await;
    let output = agent.exec(Exec::new("/bin/sh").args(["-c", "echo out; echo err >&2; exit 3"])).await.unwrap();
    assert_eq!(output.stdout, b"out\n");
    assert_eq!(output.stderr, b"err\n");
    assert_eq!((output.exit_code, output.signal), (Some(3), None));
    assert!(output.pid > 0);

    let output = agent.exec(Exec::new("/bin/cat").input(b"\x00\xffbinary in, binary out")).await.unwrap();
    assert_eq!(output.stdout, b"\x00\xffbinary in, binary out");
    assert_eq!(output.exit_code, Some(0));

    let err = agent.exec(Exec::new("/nonexistent/program")).await;
    match err {
        Err(Error::Qmp { error, .. }) => assert_eq!(error.class, ErrorClass::GenericError),
        Ok(output) => assert_ne!(output.exit_code, Some(0), "a missing program cannot succeed"),
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn files_are_written_and_read_back() {
    let (real, agent) = started().await;
    let path = real.dir().join("note.bin");
    let path = path.to_str().unwrap();
    // Larger than one chunk, with every byte value.
    let contents: Vec<u8> = (0..(1 << 20) + 4099).map(|i| (i * 7 % 256) as u8).collect();
    agent.write_file(path, &contents).await.unwrap();
    assert_eq!(std::fs::read(path).unwrap(), contents, "the agent wrote the file");
    assert_eq!(agent.read_file(path).await.unwrap(), contents);
    agent.write_file(path, b"").await.unwrap();
    assert_eq!(agent.read_file(path).await.unwrap(), b"");
    let err = agent.read_file(real.dir().join("missing").to_str().unwrap()).await.unwrap_err();
    assert!(err.qmp_error().is_some(), "{err}");
    agent.ping().await.unwrap();
}

#[tokio::test]
async fn a_late_reply_from_a_paused_agent_never_reaches_the_next_call() {
    let (real, agent) = started().await;
    real.pause();
    let err = agent
        .execute_with("guest-get-host-name", (), AgentCallOptions::timeout(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    real.resume();
    // The host name reply is now on its way; the next call must get its own reply.
    assert_eq!(agent.execute("guest-get-osinfo", ()).await.unwrap()["machine"], std::env::consts::ARCH);
    assert_eq!(agent.execute("guest-ping", ()).await.unwrap(), json!({}));
}

#[tokio::test]
async fn an_agent_killed_mid_call_fails_the_call_and_a_restarted_one_is_picked_up() {
    let mut real = RealAgent::start();
    let mut relay = Relay::start(real.socket());
    let agent = AgentBuilder::new().call_timeout(Duration::from_secs(10)).build(relay.address());
    agent.wait_ready(READY).await.expect("qemu-ga answers");
    real.pause();
    let call = tokio::spawn({
        let agent = agent.clone();
        async move { agent.host_name().await }
    });
    // The command has reached the paused agent's socket: now it dies.
    relay.wait_for("guest-get-host-name").await;
    real.kill();
    let err = call.await.unwrap().unwrap_err();
    assert!(err.is_disconnected(), "the call fails, it does not wait for its deadline: {err}");
    real.spawn();
    agent.wait_ready(READY).await.unwrap();
    assert!(!agent.host_name().await.unwrap().is_empty());
}

#[tokio::test]
async fn wait_ready_waits_for_an_agent_that_starts_late() {
    let mut real = RealAgent::prepare();
    let agent = AgentBuilder::new().call_timeout(Duration::from_secs(5)).build(real.address());
    let err = agent.sync().await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "no socket yet: {err}");
    let ready = tokio::spawn({
        let agent = agent.clone();
        async move { agent.wait_ready(READY).await }
    });
    real.spawn();
    ready.await.unwrap().unwrap();
    agent.ping().await.unwrap();
}

#[tokio::test]
async fn a_second_client_waits_while_the_agent_serves_the_first() {
    let (real, first) = started().await;
    // In unix-listen mode the agent serves one connection at a time: the second is accepted
    // by the kernel and hears nothing, so its wait is bounded by the deadline.
    let second = Agent::new(real.address());
    let err = second.wait_ready(Duration::from_millis(500)).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    first.ping().await.unwrap();
    drop(first);
    second.wait_ready(READY).await.unwrap();
    second.ping().await.unwrap();
}

#[test]
fn the_blocking_agent_runs_a_program() {
    let real = RealAgent::start();
    let agent = qmpkit::agent::blocking::Agent::new(real.address()).unwrap();
    agent.wait_ready(READY).unwrap();
    agent.ping().unwrap();
    let output = agent.exec(Exec::new("/bin/sh").args(["-c", "printf hi"])).unwrap();
    assert_eq!((output.stdout.as_slice(), output.exit_code), (&b"hi"[..], Some(0)));
}
