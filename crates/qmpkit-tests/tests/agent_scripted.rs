//! The guest agent client against a scripted agent over an in-memory stream with paused time:
//! stale replies, garbage, silence, commands without a reply, and queued callers.

use std::future::Future;
use std::time::Duration;

use qmpkit::agent::{Agent, AgentBuilder, AgentCallOptions, Exec};
use qmpkit::{Disconnect, Error, ErrorClass, GoneCause};
use qmpkit_tests::agent_fixture::{FromClient, ScriptedAgent};
use serde_json::{Value, json};

fn agent() -> (Agent, ScriptedAgent) {
    let (io, peer) = ScriptedAgent::pair();
    (AgentBuilder::new().call_timeout(Duration::from_secs(5)).build_with_stream(io), peer)
}

/// Runs `call` on a clone of `agent` in a task of its own, so that the test can play the
/// agent's side while the call waits.
fn spawn_call<T, F>(agent: &Agent, call: impl FnOnce(Agent) -> F) -> tokio::task::JoinHandle<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    tokio::spawn(call(agent.clone()))
}

/// Plays an agent in sync: answers the client's sync, then answers `name` with `value`.
async fn answer_after_sync(peer: &mut ScriptedAgent, name: &str, value: Value) {
    peer.accept_sync().await;
    let command = peer.expect(name).await;
    peer.reply(&command, value).await;
}

#[tokio::test(start_paused = true)]
async fn the_first_call_resyncs_and_everything_before_the_sentinel_and_id_is_dropped() {
    let (agent, mut peer) = agent();
    let call = spawn_call(&agent, |agent| async move { agent.execute("guest-get-host-name", ()).await });
    let id = peer.expect_sync().await;
    // A reply left over from before, garbage, and a sync reply of an earlier sync: all stale.
    peer.send(b"{\"return\": {\"host-name\": \"stale\"}}\n").await;
    peer.send(b"\x01not json]}").await;
    peer.sync_reply(id ^ 1).await;
    peer.send(b"{\"return\": {\"host-name\": \"also stale\"}}\n").await;
    peer.sync_reply(id).await;
    let command = peer.expect("guest-get-host-name").await;
    assert!(command["id"].is_i64(), "commands carry an id: {command}");
    peer.reply(&command, json!({"host-name": "fresh"})).await;
    assert_eq!(call.await.unwrap().unwrap(), json!({"host-name": "fresh"}));
    assert_eq!(agent.stale_replies().await, 2, "the old sync reply and the reply after it");
}

#[tokio::test(start_paused = true)]
async fn a_reply_to_a_timed_out_call_never_reaches_the_next_call() {
    let (agent, mut peer) = agent();
    let first = spawn_call(&agent, |agent| async move {
        agent.execute_with("guest-get-host-name", (), AgentCallOptions::timeout(Duration::from_secs(1))).await
    });
    peer.accept_sync().await;
    let abandoned = peer.expect("guest-get-host-name").await;
    // The agent is slow: the call times out before it answers.
    let err = first.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::Timeout { what, after } if what == "guest-get-host-name" && *after == Duration::from_secs(1)),
        "{err}"
    );

    let second = spawn_call(&agent, |agent| async move { agent.ping().await.map(|()| "pong") });
    let id = peer.expect_sync().await;
    // Now the late reply comes, before the sync reply, as a real agent would send it.
    peer.reply(&abandoned, json!({"host-name": "late"})).await;
    peer.sync_reply(id).await;
    let ping = peer.expect("guest-ping").await;
    peer.reply(&ping, json!({})).await;
    assert_eq!(second.await.unwrap().unwrap(), "pong");
}

#[tokio::test(start_paused = true)]
async fn a_stale_reply_with_another_id_is_skipped_even_in_sync() {
    let (agent, mut peer) = agent();
    let call = spawn_call(&agent, |agent| async move { agent.execute("guest-get-time", ()).await });
    peer.accept_sync().await;
    let command = peer.expect("guest-get-time").await;
    peer.send_json(&json!({"return": 1, "id": 42})).await;
    peer.reply(&command, json!(1_796_005_269_540_452_000_i64)).await;
    assert_eq!(call.await.unwrap().unwrap(), json!(1_796_005_269_540_452_000_i64));
    assert_eq!(agent.stale_replies().await, 1);
}

#[tokio::test(start_paused = true)]
async fn garbage_instead_of_a_reply_fails_the_call_and_the_next_call_resyncs() {
    let (agent, mut peer) = agent();
    let call = spawn_call(&agent, |agent| async move { agent.ping().await });
    peer.accept_sync().await;
    peer.expect("guest-ping").await;
    peer.send(b"@@garbage@@\n").await;
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err}");

    let call = spawn_call(&agent, |agent| async move { agent.fsfreeze_status().await });
    answer_after_sync(&mut peer, "guest-fsfreeze-status", json!("thawed")).await;
    assert_eq!(call.await.unwrap().unwrap(), qmpkit::agent::FsfreezeStatus::Thawed);
}

#[tokio::test(start_paused = true)]
async fn guest_shutdown_completes_without_a_reply_and_a_later_call_works() {
    let (agent, mut peer) = agent();
    let call = spawn_call(&agent, |agent| async move { agent.shutdown(Some("powerdown")).await });
    peer.accept_sync().await;
    let command = peer.expect("guest-shutdown").await;
    assert_eq!(command["arguments"], json!({"mode": "powerdown"}));
    // Silence is success for this command: the call ends after the grace period.
    call.await.unwrap().unwrap();

    let call = spawn_call(&agent, |agent| async move { agent.ping().await });
    answer_after_sync(&mut peer, "guest-ping", json!({})).await;
    call.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_refusal_of_a_command_without_a_success_reply_is_an_error() {
    let (agent, mut peer) = agent();
    let call = spawn_call(&agent, |agent| async move { agent.shutdown(None).await });
    peer.accept_sync().await;
    let command = peer.expect("guest-shutdown").await;
    assert!(command.get("arguments").is_none());
    peer.refuse(&command, "CommandNotFound", "Command guest-shutdown has been disabled").await;
    let err = call.await.unwrap().unwrap_err();
    let refusal = err.qmp_error().expect("a refusal");
    assert_eq!(
        (refusal.class.clone(), refusal.desc.as_str()),
        (ErrorClass::CommandNotFound, "Command guest-shutdown has been disabled")
    );
}

#[tokio::test(start_paused = true)]
async fn guest_info_teaches_which_commands_send_no_reply() {
    let (agent, mut peer) = agent();
    let info = spawn_call(&agent, |agent| async move { agent.info().await });
    peer.accept_sync().await;
    let command = peer.expect("guest-info").await;
    let commands = json!([
        {"enabled": true, "name": "guest-x-reboot-later", "success-response": false},
        {"enabled": true, "name": "guest-shutdown", "success-response": true, "new-member": 1},
    ]);
    peer.reply(&command, json!({"version": "99.1.0", "supported_commands": commands})).await;
    let info = info.await.unwrap().unwrap();
    assert_eq!(info.version, "99.1.0");

    let call = spawn_call(&agent, |agent| async move { agent.execute("guest-x-reboot-later", ()).await });
    peer.expect("guest-x-reboot-later").await;
    assert_eq!(call.await.unwrap().unwrap(), Value::Null, "silence within the grace period is success");

    // This agent says guest-shutdown answers: the call waits for the reply.
    let call = spawn_call(&agent, |agent| async move { agent.shutdown(None).await });
    peer.accept_sync().await;
    let command = peer.expect("guest-shutdown").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!call.is_finished(), "waits past the grace period for a command that answers");
    peer.reply(&command, json!({})).await;
    call.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_take_turns_on_the_channel() {
    let (agent, mut peer) = agent();
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let agent = agent.clone();
            tokio::spawn(async move { agent.execute("guest-echo", json!({"n": i})).await })
        })
        .collect();
    peer.accept_sync().await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let command = peer.expect("guest-echo").await;
        // Nothing else is written while this command waits for its reply.
        let next = tokio::time::timeout(Duration::from_millis(500), peer.recv()).await;
        assert!(next.is_err(), "a second command raced the first: {next:?}");
        seen.push(command["arguments"]["n"].as_i64().unwrap());
        peer.reply(&command, command["arguments"].clone()).await;
    }
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2]);
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), json!({"n": i}), "each caller gets its own reply");
    }
}

#[tokio::test(start_paused = true)]
async fn wait_ready_retries_a_silent_agent_with_fresh_ids_until_it_answers() {
    let (agent, mut peer) = agent();
    let ready = spawn_call(&agent, |agent| async move { agent.wait_ready(Duration::from_secs(30)).await });
    // The agent is booting: the first three syncs go unanswered.
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(peer.expect_sync().await);
    }
    let id = peer.expect_sync().await;
    for old in &ids {
        peer.sync_reply(*old).await;
    }
    peer.sync_reply(id).await;
    ready.await.unwrap().unwrap();
    ids.push(id);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "every attempt has its own id");
}

#[tokio::test(start_paused = true)]
async fn wait_ready_gives_up_at_its_deadline() {
    let (agent, mut peer) = agent();
    let started = tokio::time::Instant::now();
    let ready = spawn_call(&agent, |agent| async move { agent.wait_ready(Duration::from_secs(10)).await });
    let mut attempts = 0;
    let drain = async {
        while let Some(FromClient::Reset) = peer.recv().await {
            attempts += 1;
            peer.expect("guest-sync-delimited").await;
        }
    };
    tokio::select! {
        result = ready => {
            let err = result.unwrap().unwrap_err();
            assert!(err.is_timeout(), "{err}");
        }
        () = drain => panic!("the client closed the stream"),
    }
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert!(attempts >= 4, "retried with a bounded back-off: {attempts} attempts");
}

#[tokio::test(start_paused = true)]
async fn the_end_of_a_given_stream_fails_calls_at_once() {
    let (agent, mut peer) = agent();
    let call = spawn_call(&agent, |agent| async move { agent.ping().await });
    peer.accept_sync().await;
    peer.expect("guest-ping").await;
    peer.close().await;
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Disconnected(Disconnect::ServerGone { cause: GoneCause::Eof })), "{err}");
    // A stream cannot be reopened: later calls and wait_ready fail at once.
    assert!(agent.ping().await.unwrap_err().is_disconnected());
    assert!(agent.wait_ready(Duration::from_secs(60)).await.unwrap_err().is_disconnected());
}

#[tokio::test(start_paused = true)]
async fn exec_polls_until_exit_and_decodes_the_output() {
    let (agent, mut peer) = agent();
    let call = spawn_call(&agent, |agent| async move { agent.exec(Exec::new("/bin/sh").args(["-c", "x"])).await });
    peer.accept_sync().await;
    let exec = peer.expect("guest-exec").await;
    assert_eq!(exec["arguments"], json!({"path": "/bin/sh", "arg": ["-c", "x"], "capture-output": true}));
    peer.reply(&exec, json!({"pid": 77})).await;
    let status = peer.expect("guest-exec-status").await;
    assert_eq!(status["arguments"], json!({"pid": 77}));
    peer.reply(&status, json!({"exited": false})).await;
    let status = peer.expect("guest-exec-status").await;
    peer.reply(
        &status,
        json!({"exited": true, "exitcode": 3, "out-data": "b3V0Cg==", "err-data": "ZXJyCg==", "future": 1}),
    )
    .await;
    let output = call.await.unwrap().unwrap();
    assert_eq!((output.pid, output.exit_code, output.signal), (77, Some(3), None));
    assert_eq!((output.stdout.as_slice(), output.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
}

#[tokio::test]
async fn over_tcp_a_closed_connection_is_dialled_again_by_the_next_call() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let agent = AgentBuilder::new().call_timeout(Duration::from_secs(10)).build(&addr);
    let call = spawn_call(&agent, |agent| async move { agent.ping().await });
    let mut peer = ScriptedAgent::over(listener.accept().await.unwrap().0);
    peer.accept_sync().await;
    peer.expect("guest-ping").await;
    // The guest reboots: the connection ends before the reply.
    peer.close().await;
    assert!(call.await.unwrap().unwrap_err().is_disconnected());

    let call = spawn_call(&agent, |agent| async move { agent.host_name().await });
    let mut peer = ScriptedAgent::over(listener.accept().await.unwrap().0);
    answer_after_sync(&mut peer, "guest-get-host-name", json!({"host-name": "rebooted"})).await;
    assert_eq!(call.await.unwrap().unwrap(), "rebooted");
}

#[tokio::test(start_paused = true)]
async fn a_reply_over_the_size_limit_fails_its_call_and_the_channel_recovers() {
    let (io, mut peer) = ScriptedAgent::pair();
    let agent = AgentBuilder::new().max_message_bytes(1024).build_with_stream(io);
    let call = spawn_call(&agent, |agent| async move { agent.execute("guest-get-users", ()).await });
    answer_after_sync(&mut peer, "guest-get-users", json!([{"user": "x".repeat(4096)}])).await;
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "the peer sent a message that is not valid JSON (JSON token size limit exceeded): the reply to guest-get-users"
    );

    let call = spawn_call(&agent, |agent| async move { agent.ping().await });
    answer_after_sync(&mut peer, "guest-ping", json!({})).await;
    call.await.unwrap().unwrap();
}
