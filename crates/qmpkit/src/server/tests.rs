//! Unit tests of the server's own machinery: the registry without transport, throttling in
//! virtual time, shutdown, handler panics. The protocol checklist runs in
//! `qmpkit-tests/tests/server_protocol.rs`.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines, ReadHalf, WriteHalf};

use super::*;

/// A negotiated client over duplex.
struct TestClient {
    lines: Lines<BufReader<ReadHalf<DuplexStream>>>,
    write: WriteHalf<DuplexStream>,
    task: tokio::task::JoinHandle<Result<(), ConnectionError>>,
}

impl TestClient {
    async fn connect(server: &Server) -> TestClient {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn({
            let server = server.clone();
            async move { server.serve_connection(theirs).await }
        });
        let (read, write) = tokio::io::split(ours);
        let mut client = TestClient { lines: BufReader::new(read).lines(), write, task };
        client.line().await;
        client.send(r#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}"#).await;
        assert_eq!(client.line().await, r#"{"return": {}}"#);
        client
    }

    async fn send(&mut self, text: &str) {
        self.write.write_all(text.as_bytes()).await.unwrap();
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(30), self.lines.next_line()).await.expect("a line").unwrap().unwrap()
    }

    /// The next line, or `None` when nothing comes within a (virtual) second.
    async fn maybe_line(&mut self) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(1), self.lines.next_line()).await.ok().map(|l| l.unwrap().unwrap())
    }
}

fn event_name_and_data(line: &str) -> (String, Value) {
    let v: Value = serde_json::from_str(line).unwrap();
    (v["event"].as_str().unwrap().to_owned(), v.get("data").cloned().unwrap_or(Value::Null))
}

#[tokio::test]
async fn registry_is_callable_without_transport() {
    let mut registry = Registry::new();
    registry
        .command(CommandDef::new("x-echo").arg(MemberDef::new("s", "str")).returns("str"), |args: Value| async move {
            Ok::<_, QmpError>(args["s"].clone())
        })
        .unwrap();
    registry.command(CommandDef::new("x-nothing"), |(): ()| async { Ok::<_, QmpError>(()) }).unwrap();
    type Case = (&'static str, Value, Result<Value, (&'static str, &'static str)>);
    let cases: Vec<Case> = vec![
        ("x-echo", json!({"s": "hi"}), Ok(json!("hi"))),
        ("x-nothing", Value::Null, Ok(json!({}))),
        ("x-echo", json!({}), Err(("GenericError", "Parameter 's' is missing"))),
        ("x-echo", json!({"s": 1}), Err(("GenericError", "Invalid parameter type for 's', expected: string"))),
        ("x-echo", json!({"s": "a", "t": 1}), Err(("GenericError", "Parameter 't' is unexpected"))),
        ("x-nope", Value::Null, Err(("CommandNotFound", "The command x-nope has not been found"))),
        (
            "qmp_capabilities",
            Value::Null,
            Err(("CommandNotFound", "Capabilities negotiation is already complete, command ignored")),
        ),
        (
            "query-commands",
            Value::Null,
            Ok(json!([
            {"name": "qmp_capabilities"}, {"name": "query-commands"}, {"name": "query-qmp-schema"},
            {"name": "query-version"}, {"name": "x-echo"}, {"name": "x-nothing"}])),
        ),
    ];
    for (name, args, expected) in cases {
        let got = registry.call(name, args.clone()).await;
        let got = got.map_err(|e| (e.class.name().to_owned(), e.desc));
        let expected = expected.map_err(|(c, d)| (c.to_owned(), d.to_owned()));
        assert_eq!(got, expected, "{name} {args}");
    }
    let schema = registry.call("query-qmp-schema", Value::Null).await.unwrap();
    assert_eq!(schema, registry.introspect().unwrap());
    assert_eq!(
        schema[0],
        json!({"name": "qmp_capabilities", "meta-type": "command", "arg-type": "0", "ret-type": "1"})
    );
}

#[test]
fn duplicate_registrations_are_errors() {
    let mut registry = Registry::new();
    let def = || CommandDef::new("query-version");
    let err = registry.command(def(), |(): ()| async { Ok::<_, QmpError>(()) }).unwrap_err();
    assert!(matches!(err, RegistryError::Duplicate(ref n) if n == "query-version"), "{err}");
    registry.fd_commands().unwrap();
    assert!(matches!(registry.fd_commands(), Err(RegistryError::Duplicate(_))));
    registry.event(EventDef::new("STOP")).unwrap();
    assert!(matches!(registry.event(EventDef::new("STOP")), Err(RegistryError::Duplicate(_))));
    registry.type_(EnumDef::new("E", ["a"])).unwrap();
    assert!(matches!(registry.type_(EnumDef::new("E", ["b"])), Err(RegistryError::Duplicate(_))));
    // A reference to a type nobody defined shows when the server is built.
    registry.command(CommandDef::new("x-bad").returns("Missing"), |(): ()| async { Ok::<_, QmpError>(()) }).unwrap();
    assert!(matches!(Server::builder().registry(registry).build(), Err(RegistryError::Schema(_))));
}

#[tokio::test(start_paused = true)]
async fn rate_limited_events_follow_qemus_algorithm() {
    let server = Server::builder().build().unwrap();
    let mut client = TestClient::connect(&server).await;
    let events = server.events();
    while events.receivers() < 1 {
        tokio::task::yield_now().await;
    }
    // A burst: the first at once, the last of the rest after a second, the others dropped.
    for offset in 1..=5 {
        events.emit("RTC_CHANGE", &json!({"offset": offset, "qom-path": "/machine/rtc"})).unwrap();
    }
    // Not limited: goes out at once, ahead of the held RTC_CHANGE.
    events.emit_value("STOP", None);
    // Keyed by `id`: a different port is a different burst.
    events.emit("VSERPORT_CHANGE", &json!({"id": "a", "open": true})).unwrap();
    events.emit("VSERPORT_CHANGE", &json!({"id": "b", "open": true})).unwrap();
    events.emit("VSERPORT_CHANGE", &json!({"id": "a", "open": false})).unwrap();
    let start = tokio::time::Instant::now();
    let mut got = Vec::new();
    for _ in 0..6 {
        let line = client.line().await;
        got.push((event_name_and_data(&line), start.elapsed().as_millis() / 1000));
    }
    let expected = [
        (("RTC_CHANGE".to_owned(), json!({"offset": 1, "qom-path": "/machine/rtc"})), 0),
        (("STOP".to_owned(), Value::Null), 0),
        (("VSERPORT_CHANGE".to_owned(), json!({"id": "a", "open": true})), 0),
        (("VSERPORT_CHANGE".to_owned(), json!({"id": "b", "open": true})), 0),
        (("RTC_CHANGE".to_owned(), json!({"offset": 5, "qom-path": "/machine/rtc"})), 1),
        (("VSERPORT_CHANGE".to_owned(), json!({"id": "a", "open": false})), 1),
    ];
    let mut sorted = got.clone();
    sorted.sort_by_key(|(_, t)| *t);
    assert_eq!(sorted, got, "in time order");
    assert_eq!(got[..4], expected[..4]);
    assert!(got[4..].contains(&expected[4]) && got[4..].contains(&expected[5]), "{got:?}");
    // The period that released the held event is running: a new one is held again.
    let held = tokio::time::Instant::now();
    events.emit("RTC_CHANGE", &json!({"offset": 6, "qom-path": "/machine/rtc"})).unwrap();
    assert_eq!(event_name_and_data(&client.line().await).1["offset"], json!(6));
    assert!(held.elapsed() >= Duration::from_millis(900), "held back {:?}", held.elapsed());
    // Two quiet seconds end the burst: the next one goes out at once.
    tokio::time::advance(Duration::from_secs(2)).await;
    let before = tokio::time::Instant::now();
    events.emit("RTC_CHANGE", &json!({"offset": 7, "qom-path": "/machine/rtc"})).unwrap();
    client.line().await;
    assert!(before.elapsed() < Duration::from_millis(10));
}

#[tokio::test(start_paused = true)]
async fn throttling_is_configurable() {
    let throttle = Throttle::none().limit("X_TICK", Duration::from_secs(5), None);
    let server = Server::builder().throttle(throttle).build().unwrap();
    let mut client = TestClient::connect(&server).await;
    for i in 0..3 {
        server.events().emit("X_TICK", &json!({"i": i})).unwrap();
        server.events().emit("RTC_CHANGE", &json!({"offset": i})).unwrap();
    }
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(event_name_and_data(&client.line().await));
    }
    assert_eq!(names[0], ("X_TICK".into(), json!({"i": 0})));
    // RTC_CHANGE is not limited by this configuration.
    assert_eq!(names[1..4].iter().filter(|(n, _)| n == "RTC_CHANGE").count(), 3);
    assert_eq!(event_name_and_data(&client.line().await), ("X_TICK".into(), json!({"i": 2})));
    assert!(client.maybe_line().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn shutdown_finishes_running_commands_and_fails_queued_ones() {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let mut registry = Registry::new();
    registry
        .command(CommandDef::new("x-wait"), {
            let gate = gate.clone();
            move |(): ()| {
                let gate = gate.clone();
                async move {
                    gate.acquire().await.unwrap().forget();
                    Ok::<_, QmpError>("done")
                }
            }
        })
        .unwrap();
    let server = Server::builder().registry(registry).build().unwrap();
    let mut client = TestClient::connect(&server).await;
    client.send(r#"{"execute": "x-wait", "id": 1}{"execute": "query-version", "id": 2}"#).await;
    assert!(client.maybe_line().await.is_none());
    server.shutdown();
    assert!(client.maybe_line().await.is_none(), "the running command is not cut short");
    gate.add_permits(1);
    assert_eq!(client.line().await, r#"{"return": "done", "id": 1}"#);
    assert_eq!(
        client.line().await,
        r#"{"id": 2, "error": {"class": "GenericError", "desc": "The server is shutting down"}}"#
    );
    assert!(tokio::time::timeout(Duration::from_secs(1), client.lines.next_line()).await.unwrap().unwrap().is_none());
    client.task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn serve_stops_accepting_and_closes_connections() {
    let server = Server::builder().build().unwrap();
    // A unix socket in a private directory: a TCP port freed at the end could be taken by
    // another test at once, and "no longer accepting" would then not hold.
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::Unix(dir.path().join("qmp.sock"));
    let listener = server.bind(&endpoint).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve([listener], async { stop_rx.await.unwrap() }).await }
    });
    let stream = crate::transport::Stream::connect(&endpoint).await.unwrap();
    let mut lines = BufReader::new(stream).lines();
    assert!(lines.next_line().await.unwrap().unwrap().starts_with(r#"{"QMP": "#));
    stop_tx.send(()).unwrap();
    serving.await.unwrap().unwrap();
    assert!(lines.next_line().await.unwrap().is_none(), "the connection is closed");
    assert!(crate::transport::Stream::connect(&endpoint).await.is_err(), "no longer accepting");
    assert!(!dir.path().join("qmp.sock").exists(), "the socket file is removed");
    assert_eq!(server.stats().connections, 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_fails_its_command_only() {
    let mut registry = Registry::new();
    registry
        .command(CommandDef::new("x-panic"), |(): ()| async {
            if true {
                panic!("handler bug");
            }
            Ok::<_, QmpError>(())
        })
        .unwrap();
    let server = Server::builder().registry(registry).build().unwrap();
    let mut client = TestClient::connect(&server).await;
    client.send(r#"{"execute": "x-panic", "id": 1}"#).await;
    assert_eq!(
        client.line().await,
        r#"{"id": 1, "error": {"class": "GenericError", "desc": "The command x-panic failed unexpectedly"}}"#
    );
    client.send(r#"{"execute": "query-version", "id": 2}"#).await;
    assert!(client.line().await.ends_with(r#""id": 2}"#));
}

#[tokio::test(start_paused = true)]
async fn events_reach_every_negotiated_connection_between_messages() {
    let server = Server::builder().build().unwrap();
    let mut a = TestClient::connect(&server).await;
    let mut b = TestClient::connect(&server).await;
    // A third connection still negotiating gets nothing.
    let (c, theirs) = tokio::io::duplex(4096);
    tokio::spawn({
        let server = server.clone();
        async move { server.serve_connection(theirs).await }
    });
    let mut c = BufReader::new(c).lines();
    c.next_line().await.unwrap();
    // Big replies interleaved with many events: every line stays a whole message.
    for i in 0..50 {
        server.events().emit("X_EVENT", &json!({"i": i})).unwrap();
        a.send(r#"{"execute": "query-qmp-schema"}"#).await;
    }
    let mut events = 0;
    let mut replies = 0;
    while events < 50 || replies < 50 {
        let line = a.line().await;
        let v: Value = serde_json::from_str(&line).expect("whole messages only");
        if v.get("event").is_some() { events += 1 } else { replies += 1 }
    }
    for i in 0..50 {
        assert_eq!(event_name_and_data(&b.line().await).1, json!({"i": i}));
    }
    assert!(tokio::time::timeout(Duration::from_secs(1), c.next_line()).await.is_err());
}

#[tokio::test]
async fn introspection_entities_are_answered_verbatim() {
    let mut registry = Registry::new();
    registry.command(CommandDef::new("x-nothing"), |(): ()| async { Ok::<_, QmpError>(()) }).unwrap();
    let entities = vec![
        json!({"name": "x-nothing", "meta-type": "command", "arg-type": "0", "ret-type": "0"}),
        json!({"name": "0", "meta-type": "object", "members": []}),
    ];
    registry.introspection(entities.clone());
    assert_eq!(registry.call("query-qmp-schema", Value::Null).await, Ok(Value::Array(entities.clone())));
    // Validation still follows the descriptions.
    let err = registry.call("x-nothing", json!({"a": 1})).await.unwrap_err();
    assert_eq!(err.desc, "Parameter 'a' is unexpected");
    let server = Server::builder().registry(registry).build().unwrap();
    assert_eq!(server.registry().introspect().unwrap(), Value::Array(entities));
}

#[tokio::test]
async fn unchecked_commands_get_their_arguments_as_sent() {
    let mut registry = Registry::new();
    registry
        .command_unchecked(CommandDef::new("x-open").arg(MemberDef::new("driver", "str")), |_ctx, args| async move {
            match args.get("driver") {
                Some(Value::String(_)) => Ok(Value::Object(args)),
                _ => Err(QmpError::generic("Parameter 'driver' is missing")),
            }
        })
        .unwrap();
    let open = json!({"driver": "e1000", "mac": "52:54:00:12:34:56", "x": [1]});
    assert_eq!(registry.call("x-open", open.clone()).await, Ok(open));
    assert_eq!(registry.call("x-open", json!({"driver": 1})).await.unwrap_err().desc, "Parameter 'driver' is missing");
    // The description still shows in the schema.
    let schema = registry.introspect().unwrap();
    assert!(schema.as_array().unwrap().iter().any(|e| e["name"] == "x-open" && e["meta-type"] == "command"));
}

#[derive(Debug, Default)]
struct Counter(std::sync::atomic::AtomicU64);

#[tokio::test]
async fn one_registry_serves_servers_with_their_own_state() {
    let mut registry = Registry::new();
    registry
        .command_with_context(CommandDef::new("x-count").returns("int"), |ctx, (): ()| async move {
            let counter = ctx.data::<Counter>().ok_or_else(|| QmpError::generic("no counter"))?;
            Ok::<_, QmpError>(counter.0.fetch_add(1, Ordering::SeqCst) + 1)
        })
        .unwrap();
    let registry = Arc::new(registry);
    let servers: Vec<Server> = (0..2)
        .map(|_| {
            Server::builder().shared_registry(registry.clone()).data(Arc::new(Counter::default())).build().unwrap()
        })
        .collect();
    let mut a = TestClient::connect(&servers[0]).await;
    let mut b = TestClient::connect(&servers[1]).await;
    for expected in 1..=2 {
        a.send(r#"{"execute": "x-count"}"#).await;
        assert_eq!(a.line().await, format!(r#"{{"return": {expected}}}"#));
    }
    b.send(r#"{"execute": "x-count"}"#).await;
    assert_eq!(b.line().await, r#"{"return": 1}"#);
    assert_eq!(servers[0].data::<Counter>().unwrap().0.load(Ordering::SeqCst), 2);
    assert!(servers[0].data::<String>().is_none());
    assert!(std::ptr::eq(servers[0].registry(), servers[1].registry()));
    // Without state, the handler sees none.
    assert_eq!(registry.call("x-count", Value::Null).await.unwrap_err().desc, "no counter");
}

#[tokio::test]
async fn a_lazy_registry_greets_at_once_and_holds_requests_until_built() {
    // The registry is built only once the test lets it: the greeting must come before that.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (entered, mut building) = tokio::sync::mpsc::unbounded_channel::<()>();
    let lazy = LazyRegistry::new(move || {
        let _ = entered.send(());
        released.recv().unwrap();
        let mut registry = Registry::new();
        registry
            .command(CommandDef::new("x-late").returns("str"), |(): ()| async { Ok::<_, QmpError>("built") })
            .unwrap();
        registry.check().unwrap();
        Arc::new(registry)
    });
    let servers: Vec<Server> = (0..2).map(|_| Server::builder().lazy_registry(lazy.clone()).build().unwrap()).collect();
    let (ours, theirs) = tokio::io::duplex(4096);
    let task = tokio::spawn({
        let server = servers[0].clone();
        async move { server.serve_connection(theirs).await }
    });
    let (read, mut write) = tokio::io::split(ours);
    let mut lines = BufReader::new(read).lines();
    assert!(lines.next_line().await.unwrap().unwrap().starts_with(r#"{"QMP""#));
    // The request arrives while the registry is being built, and must not be answered from
    // the built-in commands meanwhile (which would say `x-late` does not exist).
    write.write_all(br#"{"execute": "qmp_capabilities"}{"execute": "x-late", "id": 1}"#).await.unwrap();
    building.recv().await.expect("the first connection starts the build");
    release.send(()).unwrap();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), r#"{"return": {}}"#);
    assert_eq!(lines.next_line().await.unwrap().unwrap(), r#"{"return": "built", "id": 1}"#);
    // Built once, for both servers.
    assert!(std::ptr::eq(servers[0].registry(), servers[1].registry()));
    write.shutdown().await.unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn connections_waiting_for_a_lazy_registry_end_at_shutdown_whether_or_not_their_client_left() {
    // A registry that is never built while the test runs: the connections must not hang on it.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let lazy = LazyRegistry::new(move || {
        let _ = released.recv();
        Arc::new(Registry::new())
    });
    let server = Server::builder().lazy_registry(lazy).build().unwrap();
    let connect = || {
        let (ours, theirs) = tokio::io::duplex(4096);
        let server = server.clone();
        (ours, tokio::spawn(async move { server.serve_connection(theirs).await }))
    };
    // A client that sends a request and leaves before any reply could be made.
    let (ours, leaver) = connect();
    let (read, mut write) = tokio::io::split(ours);
    let mut lines = BufReader::new(read).lines();
    assert!(lines.next_line().await.unwrap().unwrap().starts_with(r#"{"QMP""#));
    write.write_all(br#"{"execute": "qmp_capabilities"}"#).await.unwrap();
    drop((lines, write));
    // A client still waiting when the server shuts down.
    let (ours, stayer) = connect();
    let mut lines = BufReader::new(ours).lines();
    assert!(lines.next_line().await.unwrap().unwrap().starts_with(r#"{"QMP""#));
    server.shutdown();
    let ended = tokio::time::timeout(Duration::from_secs(30), stayer).await;
    ended.expect("a waiting connection ends at shutdown").unwrap().unwrap();
    assert_eq!(lines.next_line().await.unwrap(), None, "and its client sees the end");
    // A connection reads nothing while it waits (its input stays bounded by the socket), so
    // it sees its client's end once the registry is built, or, as here, at shutdown.
    let left = tokio::time::timeout(Duration::from_secs(30), leaver).await;
    left.expect("a connection whose client left ends").unwrap().unwrap();
    // Let the blocking builder finish, so that the runtime can shut down.
    release.send(()).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_paused_clock_does_not_jump_while_another_thread_builds_the_registry() {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (entered, building) = std::sync::mpsc::channel::<()>();
    let lazy = LazyRegistry::new(move || {
        let _ = entered.send(());
        released.recv().unwrap();
        // The build's own work, which takes real time (a simulated QEMU's takes
        // milliseconds): the paused runtime must wait for it, not jump its clock.
        std::thread::sleep(Duration::from_millis(50));
        Arc::new(Registry::new())
    });
    // Another thread (as another test's runtime would) begins the build and holds it.
    let builder = std::thread::spawn({
        let lazy = lazy.clone();
        move || {
            lazy.get();
        }
    });
    building.recv().unwrap();
    let server = Server::builder().lazy_registry(lazy).build().unwrap();
    let (ours, theirs) = tokio::io::duplex(4096);
    tokio::spawn(async move { server.serve_connection(theirs).await });
    let (read, mut write) = tokio::io::split(ours);
    let mut lines = BufReader::new(read).lines();
    assert!(lines.next_line().await.unwrap().unwrap().starts_with(r#"{"QMP""#));
    write.write_all(br#"{"execute": "qmp_capabilities"}"#).await.unwrap();
    release.send(()).unwrap();
    // Were this runtime idle while the other thread finishes, its paused clock would jump
    // a second at once and the timeout would fire before the reply.
    let reply = tokio::time::timeout(Duration::from_secs(1), lines.next_line()).await;
    assert_eq!(reply.expect("no time passes while the registry is built").unwrap().unwrap(), r#"{"return": {}}"#);
    builder.join().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_handler_exits_the_server_and_later_requests_go_unanswered() {
    let mut registry = Registry::new();
    registry
        .command_with_context(CommandDef::new("x-quit"), |ctx, (): ()| async move {
            ctx.exit_server();
            Ok::<_, QmpError>(())
        })
        .unwrap();
    let server = Server::builder().registry(registry).build().unwrap();
    let mut client = TestClient::connect(&server).await;
    // With oob negotiated, the requests behind it wait in the queue; neither is answered.
    client
        .send(concat!(
            r#"{"execute": "x-quit", "id": 1}"#,
            r#"{"execute": "query-version", "id": 2}"#,
            r#"{"execute": "query-version", "id": 3}"#
        ))
        .await;
    assert_eq!(client.line().await, r#"{"return": {}, "id": 1}"#);
    assert_eq!(client.lines.next_line().await.unwrap(), None, "the connection ends after the reply");
    client.task.await.unwrap().unwrap();
    // A shutdown (not an exit) fails queued requests instead; checked elsewhere. A new
    // connection to an exited server is closed after its greeting.
    let (ours, theirs) = tokio::io::duplex(4096);
    let task = tokio::spawn({
        let server = server.clone();
        async move { server.serve_connection(theirs).await }
    });
    let mut lines = BufReader::new(ours).lines();
    assert!(lines.next_line().await.unwrap().unwrap().starts_with(r#"{"QMP""#));
    assert_eq!(lines.next_line().await.unwrap(), None);
    task.await.unwrap().unwrap();
}
