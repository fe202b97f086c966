//! The client's API for VM managers, against scripted servers on real unix sockets with paused
//! time: connecting to a server that is still starting, typed commands with per-call options,
//! and errors that name their command.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qmpkit::commands::{Command, HumanMonitorCommand, QueryStatus, Stop};
use qmpkit::types::{Empty, RunState};
use qmpkit::{CallOptions, Client, Error};
use qmpkit_proto::{Framer, Limits, Mode};
use qmpkit_tests::{GREETING_OOB, GREETING_PLAIN, Peer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::time::Instant;

/// A scripted server on one accepted unix connection.
struct Server {
    io: UnixStream,
    framer: Framer,
}

impl Server {
    async fn accept(listener: &UnixListener) -> Server {
        let (io, _) = listener.accept().await.expect("accept");
        Server { io, framer: Framer::new(Mode::Server, Limits::default()) }
    }

    async fn recv(&mut self) -> Value {
        let mut buf = [0; 4096];
        loop {
            if let Some(frame) = self.framer.next_frame() {
                return serde_json::from_slice(frame.expect("well-formed JSON").as_bytes()).expect("JSON");
            }
            let n = self.io.read(&mut buf).await.expect("read");
            assert_ne!(n, 0, "the client closed");
            self.framer.push(&buf[..n]);
        }
    }

    async fn send(&mut self, value: &Value) {
        let mut bytes = serde_json::to_vec(value).unwrap();
        bytes.extend_from_slice(b"\r\n");
        self.io.write_all(&bytes).await.expect("write");
    }

    async fn greet_and_negotiate(&mut self) {
        self.io.write_all(GREETING_PLAIN).await.expect("write");
        let negotiate = self.recv().await;
        assert_eq!(negotiate["execute"], "qmp_capabilities");
        self.send(&json!({"return": {}, "id": negotiate["id"]})).await;
    }
}

fn socket_in(dir: &tempfile::TempDir) -> (PathBuf, String) {
    let path = dir.path().join("qmp.sock");
    let text = path.display().to_string();
    (path, text)
}

/// A socket file nobody listens on: connecting to it is refused.
fn refusing_socket(path: &Path) {
    drop(std::os::unix::net::UnixListener::bind(path).expect("bind"));
}

/// The socket appears late: first it is missing, then it refuses, then it accepts and closes
/// without a greeting, then it accepts and greets only seconds later. The client waits
/// through all of it.
#[tokio::test(start_paused = true)]
async fn connect_until_ready_waits_through_a_server_starting() {
    let dir = tempfile::tempdir().unwrap();
    let (path, text) = socket_in(&dir);
    let started = Instant::now();
    let connecting = tokio::spawn(Client::builder().connect_until_ready(text, Duration::from_secs(60)));

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!connecting.is_finished(), "no socket yet");
    refusing_socket(&path);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!connecting.is_finished(), "the socket refuses");

    std::fs::remove_file(&path).unwrap();
    let listener = UnixListener::bind(&path).unwrap();
    drop(Server::accept(&listener).await); // Closed before any greeting.
    let mut server = Server::accept(&listener).await;
    // Accepted, but the monitor is not up yet: nothing is said for a while.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!connecting.is_finished(), "accepted but no greeting yet");
    server.greet_and_negotiate().await;
    let client = connecting.await.unwrap().expect("connected once the server was ready");
    assert!(started.elapsed() >= Duration::from_secs(7));

    let script = async {
        let command = server.recv().await;
        assert_eq!(command["execute"], "query-status");
        server.send(&json!({"return": {"status": "running", "running": true}, "id": command["id"]})).await;
    };
    let (status, ()) = tokio::join!(client.run(QueryStatus), script);
    assert_eq!(status.unwrap().status, RunState::Running);
}

/// When the deadline passes, the error says how long, how many attempts, and what the last
/// one saw; the attempts follow the capped exponential back-off.
#[tokio::test(start_paused = true)]
async fn connect_until_ready_reports_what_it_last_saw() {
    let dir = tempfile::tempdir().unwrap();
    let (path, text) = socket_in(&dir);
    let deadline = Duration::from_secs(3);
    let (initial, max) = (Duration::from_millis(10), Duration::from_millis(400));
    let builder = Client::builder().retry_backoff(initial, max);

    // Attempts at 0, then after each pause (10, 20, 40, ... capped at 400 ms) while time is left.
    let mut expected_attempts = 1;
    let (mut at, mut pause) = (Duration::ZERO, initial);
    while at < deadline {
        at = (at + pause).min(deadline);
        pause = (pause * 2).min(max);
        expected_attempts += 1;
    }

    let missing = builder.clone().connect_until_ready(&text, deadline).await.unwrap_err();
    match &missing {
        Error::NotReady { waited, attempts, last, .. } => {
            assert_eq!(*waited, deadline);
            assert_eq!(*attempts, expected_attempts);
            assert!(matches!(&**last, Error::Connect { source, .. } if source.kind() == ErrorKind::NotFound), "{last}");
        }
        other => panic!("{other:?}"),
    }
    assert!(missing.is_timeout());
    assert!(missing.to_string().starts_with(&format!("{text} was not ready after 3s")), "{missing}");

    refusing_socket(&path);
    let refused = builder.clone().connect_until_ready(&text, deadline).await.unwrap_err();
    assert!(
        matches!(&refused, Error::NotReady { last, .. }
            if matches!(&**last, Error::Connect { source, .. } if source.kind() == ErrorKind::ConnectionRefused)),
        "{refused}"
    );

    // Accepted, never greeted: one attempt waits until the deadline.
    std::fs::remove_file(&path).unwrap();
    let listener = UnixListener::bind(&path).unwrap();
    let silent = tokio::spawn(async move {
        let server = Server::accept(&listener).await;
        std::future::pending::<()>().await;
        drop(server);
    });
    let started = Instant::now();
    let mute = builder.connect_until_ready(&text, deadline).await.unwrap_err();
    assert_eq!(started.elapsed(), deadline);
    match &mute {
        Error::NotReady { attempts: 1, last, .. } => {
            assert!(matches!(&**last, Error::NoGreeting { after } if *after == deadline), "{last}");
        }
        other => panic!("{other:?}"),
    }
    silent.abort();
}

/// Errors that waiting cannot cure end the wait at once.
#[tokio::test(start_paused = true)]
async fn connect_until_ready_gives_up_at_once_on_a_broken_peer() {
    let dir = tempfile::tempdir().unwrap();
    let (path, text) = socket_in(&dir);
    let listener = UnixListener::bind(&path).unwrap();
    let server = tokio::spawn(async move {
        let mut server = Server::accept(&listener).await;
        server.io.write_all(GREETING_PLAIN).await.unwrap();
        let negotiate = server.recv().await;
        let error = json!({"class": "GenericError", "desc": "Capability negotiation refused"});
        server.send(&json!({"error": error, "id": negotiate["id"]})).await;
        server
    });
    let started = Instant::now();
    let broken = Client::builder().connect_until_ready(&text, Duration::from_secs(60)).await.unwrap_err();
    assert!(!matches!(broken, Error::NotReady { .. }), "{broken:?}");
    assert!(broken.to_string().contains("Capability negotiation refused"), "{broken}");
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(server.await.unwrap());
}

/// `run_with` gives typed commands the options of any call: a deadline and out-of-band.
#[tokio::test(start_paused = true)]
async fn typed_commands_take_per_call_options() {
    let (io, mut peer) = Peer::pair(64 * 1024);
    let (client, _) = tokio::join!(Client::builder().over(io), peer.handshake(GREETING_OOB));
    let client = client.unwrap();

    // A deadline on a typed call: the peer never answers.
    let quick = CallOptions::new().timeout(Some(Duration::from_millis(250)));
    let (late, command) = tokio::join!(client.run_with(QueryStatus, quick), peer.expect("query-status"));
    match late.unwrap_err() {
        Error::Timeout { what, after } => {
            assert_eq!((what.as_str(), after), ("query-status", Duration::from_millis(250)))
        }
        other => panic!("{other:?}"),
    }
    assert!(command.get("id").is_some());

    // Out-of-band, with the command's own arguments.
    let script = async {
        let command = peer.expect("human-monitor-command").await;
        assert!(command.get("exec-oob").is_some(), "{command}");
        assert_eq!(command["arguments"], json!({"command-line": "info status"}));
        peer.reply(&command, json!("VM status: running\r\n")).await;
    };
    let (hmp, ()) =
        tokio::join!(client.run_with(HumanMonitorCommand::new("info status"), CallOptions::new().oob()), script);
    assert_eq!(hmp.unwrap(), "VM status: running\r\n");

    // A command with no return value accepts whatever a newer server returns.
    let script = async {
        let command = peer.expect("stop").await;
        assert!(command.get("arguments").is_none(), "{command}");
        peer.reply(&command, json!({"something-new": true})).await;
    };
    let (stopped, ()) = tokio::join!(client.run(Stop), script);
    assert_eq!(stopped.unwrap(), Empty);
    assert_eq!(<Stop as Command>::NAME, "stop");
}

/// A typed command carries its file descriptors, and a transport that cannot pass them
/// refuses before anything is sent.
#[tokio::test]
async fn typed_fd_commands_need_a_unix_socket() {
    let (io, mut peer) = Peer::pair(64 * 1024);
    let (client, _) = tokio::join!(Client::builder().over(io), peer.handshake(GREETING_PLAIN));
    let client = client.unwrap();
    let (_read, write) = std::io::pipe().unwrap();
    let refused = client.run(qmpkit::commands::Getfd::new("log", write.into())).await;
    assert!(matches!(refused, Err(Error::FdsNeedUnixSocket)), "{refused:?}");
}

/// A QMP error names the command that failed, first thing in its message.
#[tokio::test]
async fn qmp_errors_name_their_command() {
    let (io, mut peer) = Peer::pair(64 * 1024);
    let (client, _) = tokio::join!(Client::builder().over(io), peer.handshake(GREETING_PLAIN));
    let client = client.unwrap();
    let script = async {
        let command = peer.expect("query-foo").await;
        let error = json!({"class": "CommandNotFound", "desc": "The command query-foo has not been found"});
        peer.send_json(&json!({"error": error, "id": command["id"]})).await;
    };
    let (result, ()) = tokio::join!(client.execute("query-foo", ()), script);
    let error = result.unwrap_err();
    assert_eq!(error.to_string(), "query-foo: CommandNotFound: The command query-foo has not been found");
}

/// Raw commands take the same options: out-of-band, an id of the caller's, a deadline.
#[tokio::test(start_paused = true)]
async fn raw_commands_take_per_call_options() {
    let (io, mut peer) = Peer::pair(64 * 1024);
    let (client, _) = tokio::join!(Client::builder().over(io), peer.handshake(GREETING_OOB));
    let client = client.unwrap();
    let options = CallOptions::new().oob().id("mine");
    let script = async {
        let command = peer.expect("query-yank").await;
        assert_eq!((command.get("exec-oob"), &command["id"]), (Some(&json!("query-yank")), &json!("mine")));
        peer.reply(&command, json!([])).await;
    };
    let (response, ()) = tokio::join!(client.execute_raw_with(qmpkit::Command::new("query-yank"), options), script);
    let response = response.unwrap();
    assert_eq!((response.id, response.result.unwrap()), (Some(qmpkit::Id::from("mine")), json!([])));

    let quick = CallOptions::new().timeout(Some(Duration::from_secs(2)));
    let (late, _) =
        tokio::join!(client.execute_raw_with(qmpkit::Command::new("query-status"), quick), peer.expect("query-status"));
    assert!(matches!(late, Err(Error::Timeout { after, .. }) if after == Duration::from_secs(2)), "{late:?}");
}
