//! The server's policies beyond the protocol: QEMU's one client at a time as an option, the
//! bounds on connections and on file descriptors, and flushing streams that buffer.

use qmpkit_tests::server_fixture as fixture;

use fixture::{Peer, qemu_like_with, replay, transcript};
use qmpkit::server::{ClientPolicy, Limits};

/// `28_second_client.txt`: while one client is connected, a second one is accepted by the
/// kernel but hears nothing; when the first leaves it gets its greeting and the reply to what
/// it already sent. A third, after both, starts afresh.
#[tokio::test(start_paused = true)]
async fn one_client_at_a_time_as_qemu() {
    let qemu = transcript("28_second_client.txt").replies();
    let [greeting, negotiated, b_greeting, b_negotiated, c_greeting, c_refused] = &qemu[..] else {
        panic!("the transcript has six replies: {qemu:?}");
    };
    let (server, _sim) = qemu_like_with(|b| b.clients(ClientPolicy::One));
    let (_dir, path, _serving) = fixture::serve_on_unix(&server).await;

    let mut a = Peer::connect(&path).await;
    assert_eq!(&a.read_message().await, greeting);
    a.send(b"{\"execute\": \"qmp_capabilities\"}\n").await;
    assert_eq!(&a.read_message().await, negotiated);

    let mut b = Peer::connect(&path).await;
    b.silent().await;
    b.send(b"{\"execute\": \"qmp_capabilities\"}\n").await;
    b.silent().await;
    assert_eq!(server.stats().connections, 1);

    a.close().await;
    assert_eq!(&b.read_message().await, b_greeting);
    assert_eq!(&b.read_message().await, b_negotiated);
    b.close().await;

    let mut c = Peer::connect(&path).await;
    assert_eq!(&c.read_message().await, c_greeting);
    c.send(b"{\"execute\": \"query-version\", \"id\": \"c1\"}\n").await;
    assert_eq!(&c.read_message().await, c_refused);
    c.close().await;
}

/// By default every client is served at once.
#[tokio::test(start_paused = true)]
async fn many_clients_by_default() {
    let (server, _sim) = qemu_like_with(|b| b);
    let (_dir, path, _serving) = fixture::serve_on_unix(&server).await;
    let mut a = Peer::connect(&path).await;
    let mut b = Peer::connect(&path).await;
    let greeting = a.read_message().await;
    assert!(greeting.starts_with(b"{\"QMP\": "), "{}", String::from_utf8_lossy(&greeting));
    assert_eq!(b.read_message().await, greeting);
    a.close().await;
    b.close().await;
}

/// Beyond `max_connections`, a new client is closed at once, before any greeting, and
/// counted; once a connection ends there is room again.
#[tokio::test(start_paused = true)]
async fn connections_beyond_the_bound_are_closed_at_once() {
    let limits = Limits { max_connections: 2, ..Limits::default() };
    let (server, _sim) = qemu_like_with(move |b| b.limits(limits));
    let (_dir, path, _serving) = fixture::serve_on_unix(&server).await;
    let mut a = Peer::connect(&path).await;
    let mut b = Peer::connect(&path).await;
    let greeting = a.read_message().await;
    assert_eq!(b.read_message().await, greeting);

    let mut over = Peer::connect(&path).await;
    assert_eq!(over.read_to_end().await, b"", "closed before any greeting");
    assert_eq!(server.stats().refused, 1);
    assert_eq!(server.stats().connections, 2);

    a.close().await;
    // The connection's task ends as it leaves the server's table, so this is room again.
    while server.stats().connections > 1 {
        tokio::task::yield_now().await;
    }
    let mut d = Peer::connect(&path).await;
    assert_eq!(d.read_message().await, greeting);
    assert_eq!(server.stats().refused, 1);
    b.close().await;
    d.close().await;
}

/// `getfd` under new names and `add-fd` stop at the connection's bound (named fds plus fds
/// it put in fd sets) and at the fd sets' own bound, with a QMP error, and the connection
/// carries on; replacing a name or releasing an fd makes room.
#[tokio::test(start_paused = true)]
async fn fds_beyond_the_bounds_are_refused() {
    let limits = Limits { max_connection_fds: 2, max_fdset_fds: 1, ..Limits::default() };
    let (server, sim) = qemu_like_with(move |b| b.limits(limits));
    let script = r##"
S: {"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"}, "capabilities": ["oob"]}}\r\n
C: {"execute": "qmp_capabilities"}
S: {"return": {}}\r\n
F1: {"execute": "getfd", "arguments": {"fdname": "a"}, "id": 1}
S: {"return": {}, "id": 1}\r\n
F1: {"execute": "getfd", "arguments": {"fdname": "b"}, "id": 2}
S: {"return": {}, "id": 2}\r\n
F1: {"execute": "getfd", "arguments": {"fdname": "c"}, "id": 3}
S: {"id": 3, "error": {"class": "GenericError", "desc": "Too many file descriptors held by this connection (at most 2); release one with 'closefd' or 'remove-fd' first"}}\r\n
F1: {"execute": "getfd", "arguments": {"fdname": "a"}, "id": 4}
S: {"return": {}, "id": 4}\r\n
C: {"execute": "closefd", "arguments": {"fdname": "b"}, "id": 5}
S: {"return": {}, "id": 5}\r\n
F1: {"execute": "add-fd", "id": 6}
S: {"return": {"fd": 12, "fdset-id": 0}, "id": 6}\r\n
F1: {"execute": "getfd", "arguments": {"fdname": "c"}, "id": 7}
S: {"id": 7, "error": {"class": "GenericError", "desc": "Too many file descriptors held by this connection (at most 2); release one with 'closefd' or 'remove-fd' first"}}\r\n
C: {"execute": "remove-fd", "arguments": {"fdset-id": 0}, "id": 8}
S: {"return": {}, "id": 8}\r\n
F1: {"execute": "getfd", "arguments": {"fdname": "c"}, "id": 9}
S: {"return": {}, "id": 9}\r\n
!connect
S: {"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"}, "capabilities": ["oob"]}}\r\n
C: {"execute": "qmp_capabilities"}
S: {"return": {}}\r\n
F1: {"execute": "add-fd", "id": 10}
S: {"return": {"fd": 12, "fdset-id": 0}, "id": 10}\r\n
F1: {"execute": "add-fd", "id": 11}
S: {"id": 11, "error": {"class": "GenericError", "desc": "Too many file descriptors in fd sets (at most 1); remove one with 'remove-fd' first"}}\r\n
"##;
    replay(&server, &sim, true, script).await;
}

/// A stream that buffers its writes (here a `BufWriter`, as TLS does) gets every reply: the
/// server flushes whenever its output empties.
#[tokio::test(start_paused = true)]
async fn buffered_streams_are_flushed() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (server, _sim) = qemu_like_with(|b| b);
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve_connection(tokio::io::BufWriter::new(theirs)).await }
    });
    let (read, mut write) = tokio::io::split(ours);
    let mut lines = BufReader::new(read).lines();
    let mut line = async || {
        tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
            .await
            .expect("the reply is flushed")
            .unwrap()
            .unwrap()
    };
    assert!(line().await.starts_with(r#"{"QMP": "#));
    write.write_all(br#"{"execute": "qmp_capabilities"}{"execute": "query-status", "id": 1}"#).await.unwrap();
    assert_eq!(line().await, r#"{"return": {}}"#);
    assert_eq!(line().await, r#"{"return": {"status": "running", "running": true}, "id": 1}"#);
    drop(write);
    drop(lines);
    serving.await.unwrap().unwrap();
}
