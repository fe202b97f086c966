//! The client against scripted peers that misbehave the ways real servers do, over an
//! in-memory stream with paused time: no sockets, no sleeps.

use std::time::Duration;

use qmpkit::{CallOptions, Client, Disconnect, Error, EventFilter, EventItem, GoneCause, MisuseError};
use qmpkit_tests::{GREETING_OOB, GREETING_PLAIN, Peer};
use serde_json::{Value, json};

const PIPE: usize = 1 << 20;

async fn connected(greeting: &[u8]) -> (Client, Peer) {
    connected_with(Client::builder(), greeting).await
}

async fn connected_with(builder: qmpkit::ClientBuilder, greeting: &[u8]) -> (Client, Peer) {
    let (io, mut peer) = Peer::pair(PIPE);
    let greeting = greeting.to_vec();
    let (client, peer) = tokio::join!(builder.over(io), async move {
        peer.handshake(&greeting).await;
        peer
    });
    (client.expect("handshake"), peer)
}

fn event(name: &str) -> Value {
    json!({"timestamp": {"seconds": 1, "microseconds": 2}, "event": name})
}

#[tokio::test(start_paused = true)]
async fn negotiates_oob_when_offered_and_not_otherwise() {
    for (greeting, oob) in [(GREETING_OOB, true), (GREETING_PLAIN, false)] {
        let (io, mut peer) = Peer::pair(PIPE);
        let (client, enabled) = tokio::join!(Client::builder().over(io), peer.handshake(greeting));
        let client = client.unwrap();
        assert_eq!(client.oob_enabled(), oob);
        assert_eq!(enabled, if oob { json!({"enable": ["oob"]}) } else { Value::Null });
        if !oob {
            let refused = client.execute_oob("query-yank", ()).await;
            assert!(matches!(refused, Err(Error::Misuse(MisuseError::OobNotNegotiated))));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn events_before_the_greeting_and_during_negotiation() {
    let (io, mut peer) = Peer::pair(PIPE);
    let script = async move {
        peer.send_json(&event("RESUME")).await;
        peer.send(GREETING_OOB).await;
        let negotiate = peer.expect("qmp_capabilities").await;
        peer.send_json(&event("STOP")).await;
        peer.reply(&negotiate, json!({})).await;
        let status = peer.expect("query-status").await;
        peer.reply(&status, json!({"status": "paused", "running": false})).await;
        peer
    };
    let work = async {
        let client = Client::builder().over(io).await.unwrap();
        client.query_status().await.unwrap()
    };
    let (status, _peer) = tokio::join!(work, script);
    assert_eq!(status.status, qmpkit::types::RunState::Paused);
}

#[tokio::test(start_paused = true)]
async fn unknown_ids_id_less_errors_and_garbage_do_not_disturb_calls() {
    let (client, mut peer) = connected(GREETING_OOB).await;
    let script = async move {
        let cmd = peer.expect("query-name").await;
        peer.send(b"{\"return\": {}, \"id\": \"nobody\"}\r\n").await;
        peer.send(b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, expecting value\"}}\r\n")
            .await;
        peer.send(b"\xff\xfe garbage %%% \x01\r\n").await;
        peer.send(b"{\"return\": {}, \"id\": inf}\r\n").await;
        peer.reply(&cmd, json!({"name": "vm"})).await;
        peer
    };
    let (name, _peer) = tokio::join!(client.query_name(), script);
    assert_eq!(name.unwrap().name.as_deref(), Some("vm"));
    assert!(client.closed_reason().is_none());
}

#[tokio::test(start_paused = true)]
async fn replies_split_into_single_bytes_pretty_and_huge() {
    let (client, mut peer) = connected(GREETING_OOB).await;
    let huge = "x".repeat(20 << 20);
    let expected = huge.clone();
    let script = async move {
        let cmd = peer.expect("a").await;
        let reply = format!("{{\"return\": {{\"k\": \"v\\\"}}\"}}, \"id\": {}}}\r\n", cmd["id"]);
        for byte in reply.as_bytes() {
            peer.send(std::slice::from_ref(byte)).await;
        }
        let cmd = peer.expect("b").await;
        let pretty = format!("{{\r\n    \"return\": {{\r\n    }},\r\n    \"id\": {}\r\n}}\r\n", cmd["id"]);
        peer.send(pretty.as_bytes()).await;
        let cmd = peer.expect("c").await;
        peer.reply(&cmd, Value::String(huge)).await;
        peer
    };
    let work = async {
        let a = client.execute("a", ()).await.unwrap();
        let b = client.execute("b", ()).await.unwrap();
        let c = client.execute("c", ()).await.unwrap();
        (a, b, c)
    };
    let ((a, b, c), _peer) = tokio::join!(work, script);
    assert_eq!(a, json!({"k": "v\"}"}));
    assert_eq!(b, json!({}));
    assert_eq!(c.as_str().map(str::len), Some(expected.len()));
}

#[tokio::test(start_paused = true)]
async fn qmp_errors_carry_class_desc_and_command() {
    let (client, mut peer) = connected(GREETING_PLAIN).await;
    let script = async move {
        let cmd = peer.expect("device_del").await;
        peer.send_json(&json!({"id": cmd["id"], "error": {"class": "DeviceNotFound", "desc": "Device 'x' not found"}}))
            .await;
        peer
    };
    let (result, _peer) = tokio::join!(client.device_del("x"), script);
    match result {
        Err(Error::Qmp { error, command }) => {
            assert_eq!(command, "device_del");
            assert_eq!(error.class, qmpkit::ErrorClass::DeviceNotFound);
            assert_eq!(error.desc, "Device 'x' not found");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn eof_mid_message_fails_every_pending_call_and_later_calls() {
    let (client, mut peer) = connected(GREETING_OOB).await;
    let calls: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn({
                let client = client.clone();
                async move { client.execute("query-status", ()).await }
            })
        })
        .collect();
    for _ in 0..5 {
        peer.expect("query-status").await;
    }
    peer.send(b"{\"return\": {\"sta").await;
    peer.close().await;
    for call in calls {
        assert!(matches!(
            call.await.unwrap(),
            Err(Error::Disconnected(Disconnect::ServerGone { cause: GoneCause::EofMidMessage }))
        ));
    }
    assert!(matches!(client.closed().await, Disconnect::ServerGone { cause: GoneCause::EofMidMessage }));
    assert!(matches!(
        client.execute("query-status", ()).await,
        Err(Error::Disconnected(Disconnect::ServerGone { cause: GoneCause::EofMidMessage }))
    ));
}

#[tokio::test(start_paused = true)]
async fn quit_followed_by_eof_is_success() {
    let (client, mut peer) = connected(GREETING_OOB).await;
    let mut events = client.subscribe(EventFilter::all());
    let script = async move {
        peer.expect("quit").await;
        peer.send_json(&json!({"timestamp": {"seconds": 1, "microseconds": 0}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}})).await;
        peer.close().await;
    };
    let (quit, ()) = tokio::join!(client.quit(), script);
    quit.unwrap();
    assert_eq!(events.next_event().await.map(|e| e.name), Some("SHUTDOWN".to_owned()));
    assert_eq!(events.next().await, None);
    assert!(matches!(events.end_reason(), Some(Disconnect::ServerGone { cause: GoneCause::Eof })));
}

#[tokio::test(start_paused = true)]
async fn call_timeouts_interrupt_and_late_replies_are_dropped() {
    let (client, mut peer) = connected(GREETING_OOB).await;
    let slow = client.call("slow", (), CallOptions::new().timeout(Some(Duration::from_secs(5))));
    let (result, cmd) = tokio::join!(slow, peer.expect("slow"));
    assert!(
        matches!(result, Err(Error::Timeout { ref what, after }) if what == "slow" && after == Duration::from_secs(5))
    );
    // The late reply is discarded and the connection goes on.
    peer.reply(&cmd, json!("late")).await;
    let script = async {
        let cmd = peer.expect("fast").await;
        peer.reply(&cmd, json!("fast")).await;
    };
    let (fast, ()) = tokio::join!(client.execute("fast", ()), script);
    assert_eq!(fast.unwrap(), json!("fast"));
}

#[tokio::test(start_paused = true)]
async fn a_default_call_timeout_applies_to_every_call() {
    let (client, mut peer) =
        connected_with(Client::builder().call_timeout(Some(Duration::from_millis(300))), GREETING_PLAIN).await;
    let (result, _) = tokio::join!(client.execute("hang", ()), peer.expect("hang"));
    assert!(result.unwrap_err().is_timeout());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_is_not_sent_when_still_queued() {
    let (client, mut peer) = connected(GREETING_OOB).await;
    // Eight in-band commands fill what the client keeps in flight with oob on.
    let blockers: Vec<_> = (0..8)
        .map(|n| {
            tokio::spawn({
                let client = client.clone();
                async move { client.execute(&format!("block{n}"), ()).await }
            })
        })
        .collect();
    let mut sent = Vec::new();
    for _ in 0..8 {
        sent.push(peer.recv().await.unwrap());
    }
    // A ninth waits in the client; give up on it, then free a slot.
    let ninth = client.call("ninth", (), CallOptions::new().timeout(Some(Duration::from_secs(1))));
    assert!(ninth.await.unwrap_err().is_timeout());
    peer.reply(&sent[0], json!({})).await;
    let tenth = tokio::spawn({
        let client = client.clone();
        async move { client.execute("tenth", ()).await }
    });
    // The next command on the wire is the tenth: the ninth was never written.
    let next = peer.recv().await.unwrap();
    assert_eq!(next["execute"], "tenth");
    peer.reply(&next, json!(10)).await;
    assert_eq!(tenth.await.unwrap().unwrap(), json!(10));
    for cmd in &sent[1..] {
        peer.reply(cmd, json!({})).await;
    }
    for blocker in blockers {
        blocker.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn with_oob_at_most_eight_in_band_commands_are_in_flight_and_oob_overtakes() {
    let (client, mut peer) = connected(GREETING_OOB).await;
    let calls: Vec<_> = (0..12)
        .map(|n| {
            tokio::spawn({
                let client = client.clone();
                async move { client.execute("query-status", json!({"n": n})).await }
            })
        })
        .collect();
    let mut in_flight = Vec::new();
    for _ in 0..8 {
        in_flight.push(peer.recv().await.unwrap());
    }
    // Nothing more arrives until a reply frees a slot; paused time makes "nothing" certain.
    assert!(tokio::time::timeout(Duration::from_secs(60), peer.recv()).await.is_err());
    // An out-of-band command is not held back.
    let oob = tokio::spawn({
        let client = client.clone();
        async move { client.execute_oob("query-yank", ()).await }
    });
    let yank = peer.recv().await.unwrap();
    assert_eq!(yank["exec-oob"], "query-yank");
    peer.reply(&yank, json!([])).await;
    assert_eq!(oob.await.unwrap().unwrap(), json!([]));
    for cmd in in_flight {
        peer.reply(&cmd, cmd["arguments"]["n"].clone()).await;
    }
    for _ in 8..12 {
        let cmd = peer.recv().await.unwrap();
        peer.reply(&cmd, cmd["arguments"]["n"].clone()).await;
    }
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), json!(n));
    }
}

#[tokio::test(start_paused = true)]
async fn a_hundred_concurrent_callers_each_get_their_own_reply() {
    let (client, mut peer) = connected(GREETING_PLAIN).await;
    let calls: Vec<_> = (0..100)
        .map(|n| {
            tokio::spawn({
                let client = client.clone();
                async move { client.execute("echo", json!({"n": n})).await }
            })
        })
        .collect();
    let mut received = Vec::new();
    for _ in 0..100 {
        received.push(peer.recv().await.unwrap());
    }
    // Answer in reverse order: routing is by id, not by position.
    for cmd in received.iter().rev() {
        peer.reply(cmd, cmd["arguments"]["n"].clone()).await;
    }
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), json!(n));
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscriber_lags_while_others_and_calls_go_on() {
    let (client, mut peer) = connected_with(Client::builder().event_buffer(4), GREETING_OOB).await;
    let mut slow = client.subscribe(EventFilter::all());
    let mut fast = client.subscribe_with_buffer(EventFilter::names(["TICK"]), 128);
    let script = async move {
        for _ in 0..100 {
            peer.send_json(&event("TICK")).await;
        }
        let cmd = peer.expect("query-status").await;
        peer.reply(&cmd, json!({"status": "running", "running": true})).await;
        peer
    };
    let fast_reader = async {
        let mut n = 0;
        while n < 100 {
            match fast.next().await.unwrap() {
                EventItem::Event(e) => {
                    assert_eq!(e.name, "TICK");
                    n += 1;
                }
                EventItem::Lagged { missed } => panic!("the fast subscriber lagged by {missed}"),
            }
        }
    };
    let (status, _peer, ()) = tokio::join!(client.query_status(), script, fast_reader);
    assert!(status.unwrap().running);
    let mut items = Vec::new();
    while let Some(item) = slow.try_next() {
        items.push(item);
    }
    assert_eq!(items.len(), 5, "{items:?}");
    assert_eq!(items[4], EventItem::Lagged { missed: 96 });
    let stats = client.stats();
    assert_eq!((stats.events, stats.lagged_events), (100, 96), "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn subscriptions_made_before_a_call_see_its_events() {
    let (client, mut peer) = connected(GREETING_OOB).await;
    let script = async move {
        let cmd = peer.expect("device_del").await;
        peer.send_json(&json!({"timestamp": {"seconds": 1, "microseconds": 0}, "event": "DEVICE_DELETED", "data": {"device": "other", "path": "/x"}})).await;
        peer.reply(&cmd, json!({})).await;
        peer.send_json(&json!({"timestamp": {"seconds": 1, "microseconds": 0}, "event": "DEVICE_DELETED", "data": {"device": "nic0", "path": "/machine/peripheral/nic0"}})).await;
        peer
    };
    let (deleted, _peer) = tokio::join!(client.device_del_and_wait("nic0", Duration::from_secs(5)), script);
    assert_eq!(deleted.unwrap().data.unwrap()["device"], "nic0");
}

#[tokio::test(start_paused = true)]
async fn waiting_for_an_event_times_out() {
    let (client, mut peer) = connected(GREETING_OOB).await;
    let script = async move {
        let cmd = peer.expect("system_powerdown").await;
        peer.reply(&cmd, json!({})).await;
        peer
    };
    let (result, _peer) = tokio::join!(client.system_powerdown_and_wait(Duration::from_secs(2)), script);
    assert!(result.unwrap_err().is_timeout());
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_times_out_the_handshake() {
    // QEMU accepts a second client and then says nothing until the first one leaves.
    let (io, _peer) = Peer::pair(PIPE);
    let result = Client::builder().handshake_timeout(Some(Duration::from_secs(3))).over(io).await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::NoGreeting { after } if after == Duration::from_secs(3)), "{err:?}");
    assert!(err.is_timeout());
    assert!(err.to_string().contains("another client probably holds this monitor"), "{err}");

    // A greeting and then silence is a negotiation that timed out.
    let (io, mut peer) = Peer::pair(PIPE);
    peer.send(GREETING_OOB).await;
    let result = Client::builder().handshake_timeout(Some(Duration::from_secs(3))).over(io).await;
    assert!(matches!(result, Err(Error::Timeout { ref what, .. }) if what == "negotiation"), "{result:?}");
}

#[tokio::test(start_paused = true)]
async fn refused_negotiation_and_replies_before_the_greeting_fail_the_connect() {
    let (io, mut peer) = Peer::pair(PIPE);
    let script = async move {
        peer.send(GREETING_PLAIN).await;
        let cmd = peer.expect("qmp_capabilities").await;
        peer.send_json(&json!({"id": cmd["id"], "error": {"class": "GenericError", "desc": "nope"}})).await;
        peer
    };
    let (result, _peer) = tokio::join!(Client::builder().over(io), script);
    assert!(matches!(result, Err(Error::Protocol(qmpkit::ProtocolError::Negotiation(_)))), "{result:?}");

    let (io, mut peer) = Peer::pair(PIPE);
    peer.send(b"{\"return\": {}}\r\n").await;
    let result = Client::builder().over(io).await;
    assert!(matches!(result, Err(Error::Protocol(qmpkit::ProtocolError::UnexpectedMessage { .. }))), "{result:?}");
}

#[tokio::test(start_paused = true)]
async fn no_greeting_mode_for_the_guest_agent() {
    let (io, mut peer) = Peer::pair(PIPE);
    let client = Client::builder().no_greeting().over(io).await.unwrap();
    let script = async move {
        let cmd = peer.expect("guest-ping").await;
        peer.reply(&cmd, json!({})).await;
        peer
    };
    let (ping, _peer) = tokio::join!(client.execute("guest-ping", ()), script);
    assert_eq!(ping.unwrap(), json!({}));
    assert!(client.greeting().is_none());
}

#[tokio::test(start_paused = true)]
async fn misuse_is_refused_before_anything_is_sent() {
    let (client, _peer) = connected(GREETING_PLAIN).await;
    assert!(matches!(client.execute_oob("query-yank", ()).await, Err(Error::Misuse(MisuseError::OobNotNegotiated))));
    assert!(matches!(client.execute("x", json!([1])).await, Err(Error::Arguments { .. })));
    let (r, _w) = std::io::pipe().unwrap();
    assert!(matches!(
        client.execute_with_fds("getfd", json!({"fdname": "f"}), [r.into()]).await,
        Err(Error::FdsNeedUnixSocket)
    ));
}

#[tokio::test(start_paused = true)]
async fn raw_mode_uses_caller_ids_and_returns_whole_responses() {
    let (client, mut peer) = connected(GREETING_PLAIN).await;
    let script = async move {
        let cmd = peer.expect("q").await;
        assert_eq!(cmd["id"], json!({"mine": [1, 2]}));
        peer.send_json(&json!({"id": cmd["id"], "error": {"class": "GenericError", "desc": "no"}})).await;
        peer
    };
    let command = qmpkit::Command::new("q").with_id(qmpkit::Id::new(json!({"mine": [1, 2]})));
    let (response, _peer) = tokio::join!(client.execute_raw(command), script);
    let response = response.unwrap();
    assert_eq!(response.id, Some(qmpkit::Id::new(json!({"mine": [1, 2]}))));
    assert_eq!(response.result.unwrap_err().desc, "no");
}

#[tokio::test(start_paused = true)]
async fn closing_the_client_fails_pending_calls_and_ends_streams() {
    let (client, mut peer) = connected(GREETING_PLAIN).await;
    let mut events = client.subscribe(EventFilter::all());
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.execute("hang", ()).await }
    });
    peer.expect("hang").await;
    client.close().await;
    assert!(matches!(pending.await.unwrap(), Err(Error::Disconnected(Disconnect::Closed))));
    assert_eq!(events.next().await, None);
    // The server sees the end of the stream.
    assert!(peer.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn without_in_band_ids_replies_match_in_order_and_oob_keeps_its_id() {
    let (client, mut peer) = connected_with(Client::builder().in_band_ids(false), GREETING_OOB).await;
    let calls: Vec<_> = (0..3)
        .map(|n| {
            tokio::spawn({
                let client = client.clone();
                async move { client.execute("echo", json!({"n": n})).await }
            })
        })
        .collect();
    let mut sent = Vec::new();
    for _ in 0..3 {
        let cmd = peer.recv().await.unwrap();
        assert!(cmd.get("id").is_none(), "{cmd}");
        sent.push(cmd);
    }
    let oob = tokio::spawn({
        let client = client.clone();
        async move { client.execute_oob("query-yank", ()).await }
    });
    let yank = peer.expect("query-yank").await;
    assert!(yank.get("id").is_some());
    // The out-of-band reply overtakes; the in-band ones come in order, without ids.
    peer.reply(&yank, json!("oob")).await;
    for cmd in &sent {
        peer.send_json(&json!({"return": cmd["arguments"]["n"]})).await;
    }
    assert_eq!(oob.await.unwrap().unwrap(), json!("oob"));
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), json!(n));
    }
}

#[tokio::test(start_paused = true)]
async fn a_reply_over_the_size_limit_fails_the_connection() {
    let (client, mut peer) = connected_with(Client::builder().max_message_size(4096), GREETING_OOB).await;
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.execute("query-qmp-schema", ()).await }
    });
    let cmd = peer.expect("query-qmp-schema").await;
    peer.reply(&cmd, Value::String("x".repeat(10_000))).await;
    // The reply was lost, so nobody can trust the connection any more.
    let result = pending.await.unwrap();
    assert!(matches!(result, Err(Error::Disconnected(Disconnect::Limit(_)))), "{result:?}");
    assert!(matches!(client.closed_reason(), Some(Disconnect::Limit(_))));
}
