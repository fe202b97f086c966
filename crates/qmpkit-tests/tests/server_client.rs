//! Our own client against our own server: over duplex, and over a unix socket with fd
//! passing, out-of-band commands and events.

use qmpkit_tests::server_fixture as fixture;

use std::os::fd::OwnedFd;
use std::time::Duration;

use qmpkit::Client;
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn client_over_duplex() {
    let (server, _sim) = fixture::qemu_like();
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn({
        let server = server.clone();
        async move { server.serve_connection(theirs).await }
    });
    let client = Client::builder().over(ours).await.unwrap();
    assert!(client.oob_enabled());
    assert_eq!(client.execute("query-status", json!({})).await.unwrap(), json!({"status": "running", "running": true}));

    let mut stops = client.subscribe("STOP");
    assert_eq!(client.execute("stop", json!({})).await.unwrap(), json!({}));
    let event = tokio::time::timeout(Duration::from_secs(5), stops.next_event()).await.unwrap().unwrap();
    assert_eq!(event.name, "STOP");

    let err = client.execute("human-monitor-command", json!({"command-line": 42})).await.unwrap_err();
    let err = err.qmp_error().expect("a QMP error");
    assert_eq!(err.desc, "Invalid parameter type for 'command-line', expected: string");

    let yank = client.execute_oob("query-yank", json!({})).await.unwrap();
    assert_eq!(yank, json!([{"type": "chardev", "id": "compat_monitor0"}]));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_over_unix_socket_with_fds() {
    let (server, _sim) = fixture::qemu_like();
    let (_dir, path, serving) = fixture::serve_on_unix(&server).await;
    let client = Client::connect(path.to_str().unwrap()).await.unwrap();
    let (_keep, write) = std::os::unix::net::UnixStream::pair().unwrap();
    let ret = client.execute_with_fds("add-fd", json!({"opaque": "ours"}), [OwnedFd::from(write)]).await.unwrap();
    let fd = ret["fd"].clone();
    assert_eq!(ret["fdset-id"], 0);
    let sets = client.execute("query-fdsets", json!({})).await.unwrap();
    assert_eq!(sets, json!([{"fds": [{"fd": fd, "opaque": "ours"}], "fdset-id": 0}]));
    assert_eq!(server.fdsets().query(), sets);
    client.execute("remove-fd", json!({"fdset-id": 0})).await.unwrap();
    assert_eq!(client.execute("query-fdsets", json!({})).await.unwrap(), json!([]));
    client.close().await;
    server.shutdown();
    serving.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_over_tcp_loopback() {
    let (server, _sim) = fixture::qemu_like();
    let listener = server.bind(&"127.0.0.1:0".parse().unwrap()).await.unwrap();
    let endpoint = listener.local_endpoint().unwrap();
    assert!(matches!(endpoint, qmpkit::transport::Endpoint::Tcp { .. }));
    tokio::spawn({
        let server = server.clone();
        async move { server.serve([listener], std::future::pending()).await }
    });
    let client = Client::connect(endpoint.to_string()).await.unwrap();
    assert_eq!(client.query_status().await.unwrap().status.to_string(), "running");
    // Descriptors cannot travel over TCP: a clear error before anything is sent.
    let (_r, w) = std::io::pipe().unwrap();
    let refused = client.execute_with_fds("getfd", json!({"fdname": "f"}), [OwnedFd::from(w)]).await;
    assert!(matches!(refused, Err(qmpkit::Error::FdsNeedUnixSocket)), "{refused:?}");
    assert!(client.query_status().await.is_ok());
}
