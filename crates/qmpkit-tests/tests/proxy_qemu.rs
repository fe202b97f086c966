//! `qmpkit::proxy` in front of real QEMU: clients of every kind at once, byte-identical replies,
//! events to everyone, fds, policy, fairness, a client that never reads, and QEMU killed and
//! restarted under the proxy.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use qmpkit::launch::{Instance, Launcher, Signal};
use qmpkit::proxy::{Policy, Proxy, ProxyBuilder, Status};
use qmpkit::transport::{Endpoint, Listener};
use qmpkit::{Client, EventFilter};
use qmpkit_tests::{fifo, qemu_none_async, qemu_pc_paused_async, socket, start_async};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A proxy running in this test, with its listeners' paths.
struct Running {
    _dir: tempfile::TempDir,
    paths: Vec<PathBuf>,
    proxy: Arc<Proxy>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    fn path(&self, i: usize) -> String {
        self.paths[i].display().to_string()
    }

    /// Waits until the proxy is connected to QEMU for the `generation`th time.
    async fn connected(&self, generation: u64) -> Status {
        let mut status = self.proxy.status();
        let ready = status.wait_for(|s| s.connected && s.generation == generation);
        tokio::time::timeout(Duration::from_secs(30), ready).await.expect("the proxy connects").unwrap().clone()
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}

async fn start_proxy(
    upstream: &str,
    policies: Vec<Policy>,
    tweak: impl FnOnce(ProxyBuilder) -> ProxyBuilder,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut builder = tweak(Proxy::builder(upstream.parse::<Endpoint>().unwrap()));
    let mut paths = Vec::new();
    for (i, policy) in policies.into_iter().enumerate() {
        let path = dir.path().join(format!("proxy{i}.sock"));
        let listener = Listener::bind(&Endpoint::Unix(path.clone()), 0o600).await.unwrap();
        builder = builder.listener(format!("l{i}"), listener, policy);
        paths.push(path);
    }
    let proxy = Arc::new(builder.build());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn({
        let proxy = proxy.clone();
        async move {
            proxy
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        }
    });
    let running = Running { _dir: dir, paths, proxy, stop: Some(stop), task: Some(task) };
    running.connected(1).await;
    running
}

/// A raw client: the exact bytes of a session.
struct Raw {
    read: BufReader<tokio::net::unix::OwnedReadHalf>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl Raw {
    async fn connect(path: &str) -> Raw {
        let (read, write) = UnixStream::connect(path).await.unwrap().into_split();
        Raw { read: BufReader::new(read), write }
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(30), self.read.read_line(&mut line)).await.unwrap().unwrap();
        assert!(n > 0, "the connection ended");
        line
    }

    async fn send(&mut self, bytes: &str) {
        self.write.write_all(bytes.as_bytes()).await.unwrap();
    }
}

/// Requests whose replies QEMU writes deterministically: any id type, errors of every kind
/// (from the dispatcher, from the command, from the parser), out-of-band refusals.
const SCRIPT: &[&str] = &[
    r#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": "neg"}"#,
    r#"{"execute": "query-version", "id": 1}"#,
    r#"{"execute": "query-status", "id": "two"}"#,
    r#"{"execute": "query-name", "id": {"nested": [1, 2.5, null, true]}}"#,
    r#"{"execute": "query-kvm", "id": -7}"#,
    r#"{"execute": "query-kvm", "id": 0.1}"#,
    r#"{"execute": "query-kvm", "id": null}"#,
    r#"{"execute": "query-kvm", "id": "caf\u00e9 \"q\""}"#,
    r#"{"execute": "query-status"}"#,
    r#"{"execute": "query-status", "arguments": {"bogus": 1}, "id": 5}"#,
    r#"{"execute": "no-such-command", "id": 6}"#,
    r#"{"exec-oob": "query-status", "id": 7}"#,
    r#"{"execute": "closefd", "arguments": {"fdname": "nothing"}, "id": 8}"#,
    r#"{"execute": "qmp_capabilities", "id": 9}"#,
    r#"{"execute": 3, "id": 10}"#,
    r#"[1, 2]"#,
    r#"{"execute": "human-monitor-command", "arguments": {"command-line": "info version"}, "id": 11}"#,
    r#"{"exec-oob": "query-yank", "id": "oob"}"#,
];

/// The greeting and the reply to each request of [`SCRIPT`], one at a time.
async fn run_script(path: &str) -> Vec<String> {
    let mut raw = Raw::connect(path).await;
    let mut lines = vec![raw.line().await];
    for request in SCRIPT {
        raw.send(request).await;
        lines.push(raw.line().await);
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_byte_identical_with_and_without_the_proxy() {
    let qemu = qemu_none_async().await;
    let direct = run_script(&socket(&qemu)).await;
    let proxy = start_proxy(&socket(&qemu), vec![Policy::allow_all()], |b| b).await;
    let proxied = run_script(&proxy.path(0)).await;
    assert_eq!(direct.len(), SCRIPT.len() + 1);
    for (i, (d, p)) in direct.iter().zip(&proxied).enumerate() {
        assert_eq!(d, p, "reply {i} differs (request {:?})", i.checked_sub(1).map(|i| SCRIPT[i]));
    }
    // A second client gets the same greeting and its own negotiation, while the first is open.
    let second = run_script(&proxy.path(0)).await;
    assert_eq!(second[..3], direct[..3]);
    proxy.shutdown().await;
}

/// qemu.qmp through the proxy: negotiates, runs commands, sees an event it did not cause,
/// passes an fd with `getfd`, runs `exec-oob`.
const PYTHON_CLIENT: &str = r#"
import asyncio, os, sys
from qemu.qmp import EventListener, QMPClient

async def main(path):
    qmp = QMPClient("proxy-peer")
    listener = EventListener()
    qmp.register_listener(listener)
    await qmp.connect(path)
    assert "oob" in qmp.greeting._asdict()["QMP"]["capabilities"]
    for _ in range(50):
        status = await qmp.execute("query-status")
        assert status["status"] == "prelaunch", status
    print("ready", flush=True)
    event = await asyncio.wait_for(listener.get(), 30)
    print("event", event["event"], flush=True)
    r, w = os.pipe()
    qmp.send_fd_scm(w)
    assert await qmp.execute("getfd", {"fdname": "pyfd"}) == {}
    print("getfd", flush=True)
    yank = await qmp.execute("query-yank", oob=True)
    assert isinstance(yank, list), yank
    print("oob", flush=True)
    sys.stdin.readline()
    assert await qmp.execute("closefd", {"fdname": "pyfd"}) == {}
    print("closefd", flush=True)
    await qmp.disconnect()

asyncio.run(main(sys.argv[1]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_our_clients_share_qemu_and_see_every_event() {
    let qemu = qemu_pc_paused_async().await;
    let only_stop = Policy::allow_all().events(["STOP"]).unwrap();
    let proxy = start_proxy(&socket(&qemu), vec![Policy::allow_all(), only_stop], |b| b).await;

    let mut python = tokio::process::Command::new(qmpkit_tests::python())
        .arg("-c")
        .arg(PYTHON_CLIENT)
        .arg(proxy.path(0))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut py_in = python.stdin.take().unwrap();
    let mut py_out = BufReader::new(python.stdout.take().unwrap()).lines();
    let mut next_py_line = async || {
        tokio::time::timeout(Duration::from_secs(60), py_out.next_line()).await.unwrap().unwrap().unwrap_or_default()
    };

    let a = Client::connect(proxy.path(0)).await.unwrap();
    let b = Client::connect(proxy.path(0)).await.unwrap();
    let filtered = Client::connect(proxy.path(1)).await.unwrap();
    let mut a_events = a.subscribe(EventFilter::all());
    let mut b_events = b.subscribe(EventFilter::all());
    let mut filtered_events = filtered.subscribe(EventFilter::all());
    // Our clients run commands concurrently with Python's, on the same monitor.
    let work: Vec<_> = [a.clone(), b.clone(), filtered.clone()]
        .into_iter()
        .map(|c| {
            tokio::spawn(async move {
                for _ in 0..50 {
                    assert_eq!(c.query_status().await.unwrap().status, qmpkit::types::RunState::Prelaunch);
                }
            })
        })
        .collect();
    assert_eq!(next_py_line().await, "ready");
    for w in work {
        w.await.unwrap();
    }

    // One client changes the run state; every client sees both events, in QEMU's order,
    // except that the filtered listener passes STOP alone.
    b.execute("cont", ()).await.unwrap();
    b.execute("stop", ()).await.unwrap();
    for events in [&mut a_events, &mut b_events] {
        assert_eq!(events.next_event().await.unwrap().name, "RESUME");
        assert_eq!(events.next_event().await.unwrap().name, "STOP");
    }
    assert_eq!(filtered_events.next_event().await.unwrap().name, "STOP");
    assert_eq!(next_py_line().await, "event RESUME");

    // Python's descriptor reached QEMU under its name, which the proxy keeps Python's alone.
    assert_eq!(next_py_line().await, "getfd");
    assert_eq!(next_py_line().await, "oob");
    let err = a.execute("closefd", json!({"fdname": "pyfd"})).await.unwrap_err();
    assert_eq!(err.qmp_error().unwrap().desc, "File descriptor named 'pyfd' not found");
    let err = a.execute_with_fds("getfd", json!({"fdname": "pyfd"}), [pipe_end()]).await.unwrap_err();
    assert!(err.qmp_error().unwrap().desc.contains("held by another client"), "{err}");
    py_in.write_all(b"go\n").await.unwrap();
    assert_eq!(next_py_line().await, "closefd");
    assert!(python.wait().await.unwrap().success());

    // Our client's descriptors reach QEMU too: an fd set QEMU lists, a name QEMU closes.
    let added = a.add_fd(pipe_end(), None, Some("through the proxy")).await.unwrap();
    let sets = a.execute("query-fdsets", ()).await.unwrap();
    let set = sets.as_array().unwrap().iter().find(|s| s["fdset-id"] == added.fdset_id).expect("the fd set");
    assert_eq!(set["fds"][0]["opaque"], "through the proxy");
    a.execute_with_fds("getfd", json!({"fdname": "ours"}), [pipe_end()]).await.unwrap();
    a.execute("closefd", json!({"fdname": "ours"})).await.unwrap();
    proxy.shutdown().await;
}

fn pipe_end() -> std::os::fd::OwnedFd {
    let (_read, write) = std::io::pipe().unwrap();
    write.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_listener_refuses_as_qemu_does_for_a_missing_command() {
    let qemu = qemu_none_async().await;
    let read_only = Policy::allow_all().allow(["query-*"]).unwrap().deny(["query-qmp-schema"]).unwrap();
    let proxy = start_proxy(&socket(&qemu), vec![Policy::allow_all(), read_only], |b| b).await;
    let ro = Client::connect(proxy.path(1)).await.unwrap();
    let rw = Client::connect(proxy.path(0)).await.unwrap();
    assert_eq!(ro.query_status().await.unwrap().status, qmpkit::types::RunState::Running);
    for command in ["stop", "query-qmp-schema", "human-monitor-command"] {
        let err = ro.execute(command, ()).await.unwrap_err();
        let error = err.qmp_error().unwrap();
        assert_eq!(error.class, qmpkit::ErrorClass::CommandNotFound);
        assert_eq!(error.desc, format!("The command {command} has not been found"));
    }
    // Introspection shows the read-only client what it may run, and nothing else.
    let commands = ro.execute("query-commands", ()).await.unwrap();
    let names: Vec<&str> = commands.as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    assert!(names.contains(&"query-status") && names.contains(&"qmp_capabilities"), "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("query-") || *n == "qmp_capabilities")
            && !names.contains(&"query-qmp-schema")
    );
    let all = rw.execute("query-commands", ()).await.unwrap();
    assert!(all.as_array().unwrap().iter().any(|c| c["name"] == "stop"));
    rw.execute("stop", ()).await.unwrap();
    assert_eq!(ro.query_status().await.unwrap().status, qmpkit::types::RunState::Paused);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_does_not_starve_a_polite_one() {
    const FLOOD: usize = 5000;
    let qemu = qemu_none_async().await;
    // The proxy's own log, in its order: which client each reply went to, and whether it was
    // the polite client's.
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let proxy = start_proxy(&socket(&qemu), vec![Policy::allow_all()], {
        let log = log.clone();
        move |b| {
            b.on_exchange(move |e| {
                let out = e.direction == qmpkit::proxy::Direction::ToClient;
                log.lock().unwrap().push((e.client, out, e.message.contains("polite")));
            })
        }
    })
    .await;
    let mut flooder = Raw::connect(&proxy.path(0)).await;
    flooder.line().await;
    flooder.send("{\"execute\": \"qmp_capabilities\"}").await;
    flooder.line().await;
    let Raw { read: mut flood_read, write: mut flood_write } = flooder;
    let (count_tx, count) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        let mut line = String::new();
        for n in 1..=FLOOD {
            line.clear();
            assert!(flood_read.read_line(&mut line).await.unwrap() > 0);
            let _ = count_tx.send(n);
        }
    });
    let writer = tokio::spawn(async move {
        let request = b"{\"execute\": \"query-status\"}".repeat(FLOOD);
        flood_write.write_all(&request).await.unwrap();
        flood_write
    });
    // The polite client starts once the flood is under way.
    let mut started = count.clone();
    started.wait_for(|&n| n >= 100).await.unwrap();
    let polite = Client::connect(proxy.path(0)).await.unwrap();
    const POLITE: usize = 20;
    for _ in 0..POLITE {
        polite.execute_raw(qmpkit::Command::new("query-status").with_id(qmpkit::Id::from("polite"))).await.unwrap();
    }
    let flooded = *count.borrow();
    assert!(flooded < FLOOD, "the polite client finished only after the whole flood ({flooded} replies)");
    // While each polite command waited in the proxy, the flooder got the reply to the one
    // command it had ahead in QEMU, sometimes one more as the two are logged (measured: 0 to
    // 2): one command per client per turn. Without that, the polite command would wait behind
    // the flooder's queue (64 requests). The bound leaves room for a descheduled thread.
    let log = log.lock().unwrap().clone();
    let flooder_id = log[0].0;
    let mut waits = Vec::new();
    let mut waiting: Option<usize> = None;
    for &(client, out, polite) in &log {
        match (polite, out, waiting.as_mut()) {
            (true, false, _) => waiting = Some(0),
            (true, true, Some(n)) => {
                waits.push(*n);
                waiting = None;
            }
            (false, true, Some(n)) if client == flooder_id => *n += 1,
            _ => {}
        }
    }
    assert_eq!(waits.len(), POLITE);
    assert!(waits.iter().all(|&n| n <= 8), "flooder replies while each polite command waited: {waits:?}");
    reader.await.unwrap();
    drop(writer.await.unwrap());
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_and_nobody_notices() {
    const LIMIT: usize = 1_000_000;
    let qemu = qemu_pc_paused_async().await;
    let proxy = start_proxy(&socket(&qemu), vec![Policy::allow_all()], |b| b.output_limit(256 * 1024)).await;
    let polite = Client::connect(proxy.path(0)).await.unwrap();
    let mut events = polite.subscribe(EventFilter::all());

    let mut stuck = Raw::connect(&proxy.path(0)).await;
    stuck.line().await;
    stuck.send("{\"execute\": \"qmp_capabilities\"}").await;
    stuck.line().await;
    let Raw { read: mut stuck_read, write: mut stuck_write } = stuck;
    // It asks for a few KiB at a time and never reads: the proxy must drop it, and its writes
    // then fail. Its requests stop at a bound, so that a proxy that keeps it fails the test.
    let chunk = b"{\"execute\": \"query-commands\"}".repeat(1000);
    let mut sent = 0;
    while stuck_write.write_all(&chunk).await.is_ok() {
        sent += 1000;
        assert!(sent < LIMIT, "the proxy kept a client that never reads");
    }
    // Meanwhile, and after, the polite client is served and gets its events.
    polite.execute("cont", ()).await.unwrap();
    assert_eq!(events.next_event().await.unwrap().name, "RESUME");
    let mut replies = 0;
    let mut rest = Vec::new();
    let _ = stuck_read.read_to_end(&mut rest).await;
    replies += rest.windows(2).filter(|w| w == b"\r\n").count();
    assert!(replies < sent, "the stuck client got all {replies} replies");
    assert_eq!(polite.query_status().await.unwrap().status, qmpkit::types::RunState::Running);
    let status = proxy.proxy.status().borrow().clone();
    assert_eq!((status.generation, status.connected), (1, true), "QEMU's connection was disturbed");
    proxy.shutdown().await;
}

/// `client` adds a read-only block node on `fifo`, in a task of its own: QEMU's main loop
/// blocks opening the FIFO until something writes to it.
fn spawn_open_fifo(client: &Client, node: &str, fifo: &Path) -> tokio::task::JoinHandle<Result<Value, qmpkit::Error>> {
    let client = client.clone();
    let arguments =
        json!({"driver": "file", "node-name": node, "filename": fifo.display().to_string(), "read-only": true});
    tokio::spawn(async move { client.execute("blockdev-add", arguments).await })
}

fn launcher_on(path: &Path) -> Launcher {
    Launcher::system().qmp_socket(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_killed_mid_flight_then_back_on_the_same_socket() {
    let dir = tempfile::tempdir().unwrap();
    let qmp_path = dir.path().join("qemu.sock");
    let qemu: Instance = start_async(launcher_on(&qmp_path)).await;
    let upstream = qmp_path.display().to_string();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let proxy = start_proxy(&upstream, vec![Policy::allow_all()], |b| {
        b.backoff(Duration::from_millis(5), Duration::from_millis(50)).on_exchange(move |e| {
            if e.direction == qmpkit::proxy::Direction::FromClient {
                let _ = seen_tx.send(e.message.to_owned());
            }
        })
    })
    .await;
    let client = Client::connect(proxy.path(0)).await.unwrap();
    let bystander = Client::connect(proxy.path(0)).await.unwrap();

    // A command that blocks QEMU's main loop, and others queued behind it.
    let fifo_path = fifo(&qemu);
    let blocked = spawn_open_fifo(&client, "blocked", &fifo_path);
    // The other client's command is blocked too, whichever of the two reaches QEMU first.
    let queued = spawn_open_fifo(&bystander, "blocked2", &fifo_path);
    // The proxy has both requests once its log shows them.
    let mut requests = Vec::new();
    while requests.len() < 2 {
        requests.push(seen.recv().await.unwrap());
    }
    assert!(requests.iter().all(|r| r.contains("blockdev-add")), "{requests:?}");
    // An out-of-band round trip overtakes the blocked main loop.
    client.execute_oob("query-yank", ()).await.unwrap();
    qemu.signal(Signal::KILL).unwrap();
    for pending in [blocked.await.unwrap(), queued.await.unwrap()] {
        let err = pending.unwrap_err();
        let desc = &err.qmp_error().unwrap_or_else(|| panic!("not a QMP error: {err}")).desc;
        assert!(desc.starts_with("qmp proxy: lost the connection to QEMU"), "{desc}");
    }
    // Then the proxy closes every client.
    assert!(client.closed().await.is_server_gone());
    bystander.closed().await;
    let mut status = proxy.proxy.status();
    status.wait_for(|s| !s.connected).await.unwrap();
    drop(qemu);

    // QEMU comes back on the same path; the proxy reconnects and serves again.
    let _qemu = start_async(launcher_on(&qmp_path)).await;
    proxy.connected(2).await;
    let again = Client::connect(proxy.path(0)).await.unwrap();
    assert_eq!(again.query_status().await.unwrap().status, qmpkit::types::RunState::Running);
    assert_eq!(again.execute("query-name", ()).await.unwrap(), json!({}));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_log_names_each_client() {
    let qemu = qemu_none_async().await;
    let (log_tx, mut log) = tokio::sync::mpsc::unbounded_channel();
    let proxy = start_proxy(&socket(&qemu), vec![Policy::allow_all()], move |b| {
        b.on_exchange(move |e| {
            let _ = log_tx.send((e.client, e.direction.as_str().to_owned(), e.message.to_owned()));
        })
    })
    .await;
    let client = Client::connect(proxy.path(0)).await.unwrap();
    client.execute_raw(qmpkit::Command::new("query-status").with_id(qmpkit::Id::from("x"))).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(log.recv().await.unwrap());
    }
    // The negotiation reply, then the request and its reply, all from the same client.
    let client_id = seen[0].0.unwrap();
    assert!(seen.iter().all(|(c, _, _)| *c == Some(client_id)));
    assert_eq!(seen[1].1, "in");
    let request: Value = serde_json::from_str(&seen[1].2).unwrap();
    assert_eq!(request, json!({"execute": "query-status", "id": "x"}));
    assert_eq!(seen[2].1, "out");
    assert!(seen[2].2.ends_with(r#""id": "x"}"#), "{}", seen[2].2);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_flight_disturbs_neither_qemu_nor_the_others() {
    let qemu = qemu_none_async().await;
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let proxy = start_proxy(&socket(&qemu), vec![Policy::allow_all()], |b| {
        b.on_exchange(move |e| {
            if e.direction == qmpkit::proxy::Direction::FromClient {
                let _ = seen_tx.send(e.message.to_owned());
            }
        })
    })
    .await;
    let mut leaving = Raw::connect(&proxy.path(0)).await;
    leaving.line().await;
    leaving.send("{\"execute\": \"qmp_capabilities\"}").await;
    leaving.line().await;
    // A command that blocks QEMU's main loop, and one queued behind it.
    let fifo_path = fifo(&qemu);
    let blockdev = json!({"execute": "blockdev-add", "id": "a1", "arguments":
        {"driver": "file", "node-name": "blocked", "filename": fifo_path, "read-only": true}});
    leaving.send(&format!("{blockdev}{{\"execute\": \"query-status\", \"id\": \"a2\"}}")).await;
    assert!(seen.recv().await.unwrap().contains("blockdev-add"));
    assert!(seen.recv().await.unwrap().contains("query-status"));

    // Another client's command waits upstream behind the blocked one.
    let other = Client::connect(proxy.path(0)).await.unwrap();
    let version = tokio::spawn({
        let other = other.clone();
        async move { other.execute("query-version", ()).await }
    });
    assert!(seen.recv().await.unwrap().contains("query-version"));

    // The first client leaves; QEMU then answers everything, and only the reply meant for the
    // other client reaches it.
    drop(leaving);
    let _writer = qmpkit_tests::release_fifo(&fifo_path);
    let version = version.await.unwrap().unwrap();
    assert!(version["qemu"]["major"].is_u64(), "{version}");
    assert_eq!(other.query_status().await.unwrap().status, qmpkit::types::RunState::Running);
    assert_eq!(other.execute("query-name", ()).await.unwrap(), json!({}));
    let status = proxy.proxy.status().borrow().clone();
    assert_eq!((status.generation, status.connected), (1, true));
    proxy.shutdown().await;
}
