//! A client that never reads while events flood: the server holds a bounded number of bytes
//! for it, drops it at the bound, and keeps serving the other clients.

use qmpkit_tests::server_fixture as fixture;

use std::time::Duration;

use qmpkit::server::Limits;
use tokio::io::AsyncWriteExt;

#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_is_bounded_and_dropped() {
    const MAX_OUTPUT: usize = 256 * 1024;
    let limits = Limits { max_output: MAX_OUTPUT, ..Limits::default() };
    let (server, _sim) = fixture::qemu_like_with(move |b| b.limits(limits));
    let events = server.events();

    // The sluggard negotiates, then never reads again. Its pipe holds 4 KiB.
    let (mut sluggard, theirs) = tokio::io::duplex(4096);
    let sluggard_task = tokio::spawn({
        let server = server.clone();
        async move { server.serve_connection(theirs).await }
    });
    sluggard.write_all(br#"{"execute": "qmp_capabilities"}"#).await.unwrap();

    // A well-behaved client alongside.
    let mut good = fixture::Peer::duplex(&server);
    good.read_message().await;
    good.send(br#"{"execute": "qmp_capabilities"}"#).await;
    assert_eq!(good.read_message().await, b"{\"return\": {}}\r\n");
    while events.receivers() < 2 {
        tokio::task::yield_now().await;
    }

    // Flood, reading on behalf of the good client as we go.
    let data = serde_json::json!({"blob": "x".repeat(1000)});
    let mut peak = 0;
    for i in 0..2000 {
        events.emit_value("FLOOD", Some(data.clone()));
        if i % 16 == 0 {
            tokio::task::yield_now().await;
            peak = peak.max(server.stats().buffered_bytes);
        }
        let msg = good.read_message().await;
        assert!(String::from_utf8_lossy(&msg).contains("\"event\": \"FLOOD\", \"data\": {\"blob\": \"xxx"));
    }
    // Bounded: never more than the bound for the sluggard plus a little for the good one.
    assert!(peak <= MAX_OUTPUT + 64 * 1024, "server held {peak} bytes");

    // The sluggard was dropped at the bound, with the documented error.
    let result = tokio::time::timeout(Duration::from_secs(10), sluggard_task).await.unwrap().unwrap();
    assert!(matches!(result, Err(qmpkit::server::ConnectionError::OutputOverflow(n)) if n == MAX_OUTPUT), "{result:?}");
    assert_eq!(server.stats().overflows, 1);
    assert_eq!(server.stats().connections, 1);
    drop(sluggard);

    // The good client is still served.
    good.send(br#"{"execute": "query-status", "id": 1}"#).await;
    assert_eq!(good.read_message().await, b"{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": 1}\r\n");
    good.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_pipelines_without_reading_is_slowed_not_dropped() {
    let (server, _sim) = fixture::qemu_like();
    let (mut ours, theirs) = tokio::io::duplex(4096);
    let task = tokio::spawn({
        let server = server.clone();
        async move { server.serve_connection(theirs).await }
    });
    ours.write_all(br#"{"execute": "qmp_capabilities"}"#).await.unwrap();
    // 2 MiB of requests; the server stops reading above its high-water mark, so the writes
    // back up instead of the replies piling up in the server.
    let request = br#"{"execute": "query-status"}"#;
    let mut sent = 0;
    let write = async {
        loop {
            ours.write_all(request).await.unwrap();
            sent += request.len();
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
    assert!(sent < 1 << 20, "the server kept reading: {sent} bytes taken");
    let held = server.stats().buffered_bytes;
    assert!(held <= Limits::default().high_water + 64 * 1024, "server held {held} bytes");
    assert_eq!(server.stats().overflows, 0);
    drop(ours);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
}
