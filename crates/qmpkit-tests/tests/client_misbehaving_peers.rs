//! The client against peers that misbehave in ways that used to hang or mislead it: peers
//! that drop ids, QEMU's id-less parse errors, peers that are not QMP, the 2009 dialect,
//! buffered streams, dying peers, and event filters that panic or subscribe. Scripted over
//! an in-memory stream with paused time, as in `client_scripted.rs`.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use qmpkit::proto::ProtocolError;
use qmpkit::{Client, ClientBuilder, Disconnect, Error, EventFilter, EventStream, GoneCause, QmpEvent};
use qmpkit_tests::{GREETING_OOB, GREETING_PLAIN, Peer};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::time::Instant;

const PIPE: usize = 1 << 20;

/// Generous deadlines, so that a regression fails the test (paused time reaches them at once)
/// instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(600);

async fn connected_with(builder: ClientBuilder, greeting: &[u8]) -> (Client, Peer) {
    let (io, mut peer) = Peer::pair(PIPE);
    let greeting = greeting.to_vec();
    let (client, peer) = tokio::join!(builder.handshake_timeout(Some(DEADLINE)).over(io), async move {
        peer.handshake(&greeting).await;
        peer
    });
    (client.expect("handshake"), peer)
}

fn builder() -> ClientBuilder {
    Client::builder().call_timeout(Some(DEADLINE))
}

/// A `query-name` round trip that the peer answers: once it is done, everything the peer
/// sent before the reply has been through the client.
async fn query_name(client: &Client, peer: &mut Peer) {
    let script = async {
        let cmd = peer.expect("query-name").await;
        peer.reply(&cmd, json!({})).await;
    };
    let (name, ()) = tokio::join!(client.execute("query-name", ()), script);
    name.unwrap();
}

fn event(name: &str) -> Value {
    json!({"timestamp": {"seconds": 1, "microseconds": 2}, "event": name})
}

const PARSE_ERROR: &[u8] =
    b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, expecting value\"}}\r\n";

#[tokio::test(start_paused = true)]
async fn a_peer_that_drops_ids_never_leaves_a_call_waiting() {
    let (client, mut peer) = connected_with(builder(), GREETING_OOB).await;
    let spawn = |name: &'static str| {
        let client = client.clone();
        tokio::spawn(async move { client.execute(name, ()).await })
    };
    // One call in flight: an id-less reply can only be its reply.
    let only = spawn("only");
    peer.expect("only").await;
    peer.send_json(&json!({"return": "only"})).await;
    assert_eq!(only.await.unwrap().unwrap(), json!("only"));

    // Two in flight: QEMU's own id-less errors fail nobody, and an id-less reply fails the
    // oldest call (saying what arrived) rather than leave it waiting.
    let first = spawn("first");
    peer.expect("first").await;
    let second = spawn("second");
    peer.expect("second").await;
    peer.send(PARSE_ERROR).await;
    peer.send(b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}\r\n").await;
    peer.send_json(&json!({"return": 1})).await;
    match first.await.unwrap() {
        Err(Error::Protocol(ProtocolError::MissingId { got })) => assert_eq!(got, "{\"return\":1}"),
        other => panic!("{other:?}"),
    }
    peer.send_json(&json!({"return": 2})).await;
    assert_eq!(second.await.unwrap().unwrap(), json!(2));
    let stats = client.stats();
    assert_eq!((stats.missing_ids, stats.server_parse_errors, stats.unknown_ids), (3, 2, 0), "{stats:?}");
    assert!(client.closed_reason().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_drops_ids_still_negotiates() {
    let (io, mut peer) = Peer::pair(PIPE);
    let script = async move {
        peer.send(GREETING_OOB).await;
        peer.expect("qmp_capabilities").await;
        peer.send(b"{\"return\": {}}\r\n").await;
        peer
    };
    let (client, _peer) = tokio::join!(Client::builder().handshake_timeout(Some(DEADLINE)).over(io), script);
    assert!(client.unwrap().oob_enabled());
}

#[tokio::test(start_paused = true)]
async fn without_ids_a_parse_error_ends_the_connection_instead_of_shifting_replies() {
    let (client, mut peer) = connected_with(builder().in_band_ids(false), GREETING_PLAIN).await;
    let calls: Vec<_> = (0..2)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { client.execute("echo", json!({"n": n})).await })
        })
        .collect();
    peer.expect("echo").await;
    peer.expect("echo").await;
    // QEMU could not parse something: from here on, order says nothing about which reply is
    // whose, so the replies below must not reach the calls.
    peer.send(PARSE_ERROR).await;
    peer.send_json(&json!({"return": 0})).await;
    peer.send_json(&json!({"return": 1})).await;
    for call in calls {
        let result = call.await.unwrap();
        assert!(
            matches!(result, Err(Error::Disconnected(Disconnect::Protocol(ProtocolError::OrderLost(_))))),
            "{result:?}"
        );
    }
    assert!(client.closed_reason().unwrap().to_string().contains("can no longer be matched by order"));
}

#[tokio::test(start_paused = true)]
async fn peers_that_are_not_qmp_fail_the_connect_at_once() {
    let cases: [(&[u8], &str); 3] = [
        (b"QEMU 7.2.0 monitor - type 'help' for more information\r\n(qemu) ", "QEMU 7.2.0 monitor - type 'help'"),
        (b"\r\nDebian GNU/Linux 12 debian ttyS0\r\n\r\ndebian login: ", "Debian GNU/Linux 12"),
        (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 400 Bad Request"),
    ];
    for (banner, quoted) in cases {
        let (io, mut peer) = Peer::pair(PIPE);
        peer.send(banner).await;
        let started = Instant::now();
        let result = Client::builder().handshake_timeout(Some(DEADLINE)).over(io).await;
        // At once, not at the deadline.
        assert_eq!(started.elapsed(), Duration::ZERO, "{result:?}");
        match result {
            Err(Error::Protocol(error @ ProtocolError::UnexpectedMessage { .. })) => {
                let text = error.to_string();
                assert!(text.contains(quoted) && text.contains("not a QMP greeting"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_greeting_without_a_version_is_used_without_negotiation() {
    let (io, mut peer) = Peer::pair(PIPE);
    let script = async move {
        peer.send(b"{\"QMP\": {\"capabilities\": []}}\r\n").await;
        // The first command is the caller's: the December 2009 dialect had no negotiation.
        let cmd = peer.expect("query-version").await;
        peer.reply(&cmd, json!({"qemu": "0.12.50", "package": ""})).await;
        peer
    };
    let work = async {
        let client = builder().handshake_timeout(Some(DEADLINE)).over(io).await.unwrap();
        assert!(client.greeting().unwrap().version.is_none());
        client.execute("query-version", ()).await.unwrap()
    };
    let (version, _peer) = tokio::join!(work, script);
    assert_eq!(version["qemu"], "0.12.50");
}

/// A writer that holds everything until flushed, as a `BufWriter` or a TLS stream does.
#[tokio::test(start_paused = true)]
async fn commands_through_a_buffering_stream_are_flushed() {
    let (io, mut peer) = Peer::pair(PIPE);
    let buffered = tokio::io::BufWriter::with_capacity(64 * 1024, io);
    let script = async move {
        peer.handshake(GREETING_OOB).await;
        let cmd = peer.expect("query-name").await;
        peer.reply(&cmd, json!({"name": "vm"})).await;
        peer
    };
    let work = async {
        let client = builder().handshake_timeout(Some(Duration::from_secs(5))).over(buffered).await?;
        client.execute("query-name", ()).await
    };
    let (name, _peer) = tokio::join!(work, script);
    assert_eq!(name.unwrap(), json!({"name": "vm"}));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_filter_costs_only_its_own_events() {
    let (client, mut peer) = connected_with(builder(), GREETING_OOB).await;
    let mut panicky = client.subscribe(EventFilter::all().with_predicate(|_| panic!("a buggy filter")));
    let mut plain = client.subscribe(EventFilter::all());
    peer.send_json(&event("STOP")).await;
    query_name(&client, &mut peer).await;
    assert_eq!(plain.next_event().await.unwrap().name, "STOP");
    assert!(panicky.try_next().is_none());
    assert!(client.closed_reason().is_none());
    assert_eq!(client.stats().filter_panics, 1);
}

#[tokio::test(start_paused = true)]
async fn a_filter_may_subscribe_from_inside() {
    let (client, mut peer) = connected_with(builder(), GREETING_OOB).await;
    let made: Arc<Mutex<Vec<EventStream>>> = Arc::default();
    let (inner, keep) = (client.clone(), made.clone());
    let _outer = client.subscribe(EventFilter::names(["STOP"]).with_predicate(move |_| {
        keep.lock().unwrap().push(inner.subscribe(EventFilter::all()));
        true
    }));
    peer.send_json(&event("STOP")).await;
    peer.send_json(&event("RESUME")).await;
    query_name(&client, &mut peer).await;
    let mut inner = made.lock().unwrap().pop().expect("the filter subscribed");
    assert_eq!(inner.next_event().await.unwrap().name, "RESUME");
}

#[tokio::test(start_paused = true)]
async fn subscriptions_made_on_the_builder_see_the_handshakes_events() {
    let (io, mut peer) = Peer::pair(PIPE);
    let mut builder = builder().handshake_timeout(Some(DEADLINE));
    let mut all = builder.subscribe(EventFilter::all());
    let mut typed = builder.subscribe(EventFilter::typed(|e| matches!(e, QmpEvent::Stop | QmpEvent::Resume)));
    let script = async move {
        peer.send_json(&event("RESUME")).await;
        peer.send(GREETING_OOB).await;
        let negotiate = peer.expect("qmp_capabilities").await;
        peer.send_json(&event("POWERDOWN")).await;
        peer.send_json(&event("STOP")).await;
        peer.reply(&negotiate, json!({})).await;
        peer
    };
    let (client, peer) = tokio::join!(builder.over(io), script);
    let client = client.unwrap();
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(all.next_event().await.unwrap().name);
    }
    assert_eq!(names, ["RESUME", "POWERDOWN", "STOP"]);
    assert_eq!(typed.next_typed().await, Some(QmpEvent::Resume));
    assert_eq!(typed.next_typed().await, Some(QmpEvent::Stop));
    // They end with the connection, like the client's own.
    peer.close().await;
    client.closed().await;
    assert_eq!(all.next().await, None);
    assert!(all.end_reason().unwrap().is_server_gone());
}

/// A stream whose end reads as a reset, as a unix socket reads when the peer died with our
/// bytes unread.
struct ResetAtEnd(DuplexStream);

impl AsyncRead for ResetAtEnd {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for ResetAtEnd {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_peer_is_one_reason_whether_the_end_reads_as_eof_or_reset() {
    for reset in [false, true] {
        let (io, mut peer) = Peer::pair(PIPE);
        let greeting = async {
            peer.handshake(GREETING_PLAIN).await;
        };
        let connect = async {
            let b = builder().handshake_timeout(Some(DEADLINE));
            if reset { b.over(ResetAtEnd(io)).await } else { b.over(io).await }
        };
        let (client, ()) = tokio::join!(connect, greeting);
        let client = client.unwrap();
        let pending = tokio::spawn({
            let client = client.clone();
            async move { client.execute("query-status", ()).await }
        });
        peer.expect("query-status").await;
        peer.close().await;
        let result = pending.await.unwrap();
        let Err(Error::Disconnected(Disconnect::ServerGone { cause })) = result else { panic!("{result:?}") };
        match (reset, cause) {
            (false, GoneCause::Eof) => {}
            (true, GoneCause::Reset(err)) => assert_eq!(err.kind(), io::ErrorKind::ConnectionReset),
            (_, other) => panic!("reset {reset}: {other:?}"),
        }
        assert!(client.closed_reason().unwrap().is_server_gone());
    }
}
