use std::collections::VecDeque;

use serde::Deserialize;
use serde_json::{Value, json};

use super::*;
use crate::framer::{Framer, Mode};
use crate::message::{ErrorClass, ServerMessage};
use crate::qjson;
use crate::testutil::{Side, is_elided, transcripts};

const GREETING_OOB: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n";
const GREETING_NO_CAPS: &[u8] =
    b"{\"QMP\": {\"version\": {\"qemu\": \"0.12.50\", \"package\": \"\"}, \"capabilities\": []}}\r\n";
const NEGOTIATED: &[u8] = b"{\"return\": {}, \"id\": \"__qmpkit-negotiate\"}\r\n";

/// Everything the session has to say right now, as short labels, so tests read as a script.
fn events(session: &mut ClientSession<u32>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(event) = session.poll_event() {
        out.push(match event {
            ClientEvent::Greeting(_) => "greeting".to_owned(),
            ClientEvent::Ready => "ready".to_owned(),
            ClientEvent::Reply { data, response, .. } => match response.decode().expect("decodable").result {
                Ok(v) => format!("reply {data} ok {v}"),
                Err(e) => format!("reply {data} err {}", e.desc),
            },
            ClientEvent::Failed { data, error, .. } => format!("failed {data}: {error}"),
            ClientEvent::Event(e) => format!("event {}", e.name),
            ClientEvent::Dropped(Dropped::UnknownId(r)) => {
                format!("dropped unknown id {:?}", r.id.map(|i| i.to_string()))
            }
            ClientEvent::Dropped(Dropped::ServerParseError(e)) => format!("dropped parse error {}", e.desc),
            ClientEvent::Dropped(Dropped::Malformed(_)) => "dropped malformed".to_owned(),
            ClientEvent::Closed(e) => format!("closed {e}"),
        });
    }
    out
}

fn transmitted(session: &mut ClientSession<u32>) -> Vec<String> {
    std::iter::from_fn(|| session.poll_transmit()).map(|t| String::from_utf8(t.bytes).unwrap()).collect()
}

fn ready_session(greeting: &[u8]) -> ClientSession<u32> {
    let mut s = ClientSession::new(ClientConfig::default());
    s.handle_input(greeting);
    assert_eq!(events(&mut s), ["greeting"]);
    transmitted(&mut s);
    s.handle_input(NEGOTIATED);
    assert_eq!(events(&mut s), ["ready"]);
    s
}

#[test]
fn negotiates_oob_only_when_offered() {
    let cases: [(&[u8], bool, &str); 3] = [
        (
            GREETING_OOB,
            true,
            "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]},\"id\":\"__qmpkit-negotiate\"}",
        ),
        (GREETING_NO_CAPS, true, "{\"execute\":\"qmp_capabilities\",\"id\":\"__qmpkit-negotiate\"}"),
        (GREETING_OOB, false, "{\"execute\":\"qmp_capabilities\",\"id\":\"__qmpkit-negotiate\"}"),
    ];
    for (greeting, enable_oob, expected) in cases {
        let mut s: ClientSession<u32> = ClientSession::new(ClientConfig { enable_oob, ..ClientConfig::default() });
        s.send(Command::new("query-status"), 7).unwrap();
        s.handle_input(greeting);
        assert_eq!(events(&mut s), ["greeting"]);
        // The user's command waits for negotiation to finish.
        assert_eq!(transmitted(&mut s), [expected]);
        s.handle_input(NEGOTIATED);
        assert_eq!(events(&mut s), ["ready"]);
        assert_eq!(s.oob_enabled(), enable_oob && greeting == GREETING_OOB);
        assert_eq!(transmitted(&mut s), ["{\"execute\":\"query-status\",\"id\":0}"]);
    }
}

#[test]
fn keeps_at_most_eight_in_band_commands_in_flight_with_oob() {
    let mut s = ready_session(GREETING_OOB);
    for n in 0..10 {
        s.send(Command::new("query-status"), n).unwrap();
    }
    assert_eq!(transmitted(&mut s).len(), 8);
    // An out-of-band command still goes out at once.
    s.send(Command::new("query-yank").out_of_band(), 99).unwrap();
    assert_eq!(transmitted(&mut s), ["{\"exec-oob\":\"query-yank\",\"id\":10}"]);
    s.handle_input(b"{\"return\": [], \"id\": 10}\r\n{\"return\": {}, \"id\": 0}\r\n");
    assert_eq!(events(&mut s), ["reply 99 ok []", "reply 0 ok {}"]);
    assert_eq!(transmitted(&mut s), ["{\"execute\":\"query-status\",\"id\":8}"]);
}

#[test]
fn no_in_band_limit_without_oob() {
    let mut s = ready_session(GREETING_NO_CAPS);
    for n in 0..20 {
        s.send(Command::new("query-status"), n).unwrap();
    }
    assert_eq!(transmitted(&mut s).len(), 20);
    assert_eq!(s.send(Command::new("query-yank").out_of_band(), 1).unwrap_err().0, MisuseError::OobNotNegotiated);
}

#[test]
fn routes_events_unknown_ids_and_id_less_errors() {
    let mut s = ready_session(GREETING_OOB);
    s.send(Command::new("stop").with_id("x"), 1).unwrap();
    transmitted(&mut s);
    s.handle_input(b"{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n");
    s.handle_input(b"{\"return\": {}, \"id\": \"nobody\"}\r\n");
    s.handle_input(b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, expecting value\"}}\r\n");
    s.handle_input(b"{\"return\": {}, \"id\": \"x\"}\r\n");
    assert_eq!(
        events(&mut s),
        [
            "event STOP",
            "dropped unknown id Some(\"\\\"nobody\\\"\")",
            "dropped parse error JSON parse error, expecting value",
            "reply 1 ok {}"
        ]
    );
    assert_eq!(
        s.stats(),
        ClientStats { unknown_ids: 1, server_parse_errors: 1, malformed: 0, missing_ids: 0, events: 1 }
    );
}

#[test]
fn id_less_commands_are_answered_in_order() {
    let mut s = ready_session(GREETING_NO_CAPS);
    s.send_without_id(Command::new("a"), 1).unwrap();
    s.send_without_id(Command::new("b"), 2).unwrap();
    assert_eq!(transmitted(&mut s), ["{\"execute\":\"a\"}", "{\"execute\":\"b\"}"]);
    s.handle_input(b"{\"return\": 1}\r\n{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\r\n");
    assert_eq!(events(&mut s), ["reply 1 ok 1", "reply 2 err no"]);
}

#[test]
fn caller_ids_of_any_type_and_collisions() {
    let mut s = ready_session(GREETING_NO_CAPS);
    let ids = [json!(1), json!("1"), json!({"a": [1, {"b": null}]}), json!(null), json!(1.5)];
    for (n, id) in ids.iter().enumerate() {
        s.send(Command::new("q").with_id(Id::new(id.clone())), n as u32).unwrap();
    }
    assert!(matches!(s.send(Command::new("q").with_id(1), 9), Err((MisuseError::IdInUse(_), 9))));
    // An automatic id skips the integers callers use.
    assert_eq!(s.send(Command::new("q"), 10).unwrap(), Id::from(0));
    assert_eq!(s.send(Command::new("q"), 11).unwrap(), Id::from(2));
    transmitted(&mut s);
    s.handle_input(b"{\"return\": {}, \"id\": {\"a\": [1, {\"b\": null}]}}\r\n{\"return\": {}, \"id\": \"1\"}\r\n{\"return\": {}, \"id\": null}\r\n");
    assert_eq!(events(&mut s), ["reply 2 ok {}", "reply 1 ok {}", "reply 3 ok {}"]);
}

#[test]
fn cancelled_calls_are_not_sent_or_their_replies_are_dropped() {
    let mut s = ready_session(GREETING_OOB);
    let sent = s.send(Command::new("a"), 1).unwrap();
    assert_eq!(transmitted(&mut s).len(), 1);
    let unsent = s.send(Command::new("b"), 2).unwrap();
    assert_eq!(s.cancel(&unsent), Some(2));
    assert_eq!(s.cancel(&sent), Some(1));
    assert!(transmitted(&mut s).is_empty());
    s.handle_input(b"{\"return\": {}, \"id\": 0}\r\n");
    assert_eq!(events(&mut s), ["dropped unknown id Some(\"0\")"]);
    assert_eq!(s.pending_len(), 0);
}

#[test]
fn fatal_conditions_close_the_session() {
    // A reply before the greeting.
    let mut s: ClientSession<u32> = ClientSession::new(ClientConfig::default());
    s.handle_input(b"{\"return\": {}}\r\n");
    assert_eq!(events(&mut s), ["closed the peer sent {\"return\":{}} while the session was awaiting the greeting"]);
    assert!(matches!(s.send(Command::new("q"), 1), Err((MisuseError::Closed, 1))));

    // Negotiation refused.
    let mut s: ClientSession<u32> = ClientSession::new(ClientConfig::default());
    s.send(Command::new("q"), 5).unwrap();
    s.handle_input(GREETING_OOB);
    s.handle_input(b"{\"id\": \"__qmpkit-negotiate\", \"error\": {\"class\": \"GenericError\", \"desc\": \"Capability oob not available\"}}\r\n");
    assert_eq!(
        events(&mut s),
        ["greeting", "closed capability negotiation failed: GenericError: Capability oob not available"]
    );
    assert_eq!(s.drain(), [5]);

    // A message over the limit.
    let config =
        ClientConfig { limits: Limits { max_message_bytes: 64, ..Limits::default() }, ..ClientConfig::default() };
    let mut s: ClientSession<u32> = ClientSession::new(config);
    s.handle_input(format!("{{\"QMP\": {{\"capabilities\": [\"{}\"]}}}}\r\n", "x".repeat(100)).as_bytes());
    assert_eq!(events(&mut s), ["closed a message exceeded the size limit"]);
}

#[test]
fn eof_mid_message_is_reported() {
    let mut s = ready_session(GREETING_OOB);
    s.send(Command::new("q"), 1).unwrap();
    s.handle_input(b"{\"return\": {\"status\": ");
    assert!(events(&mut s).is_empty());
    assert_eq!(s.handle_eof(), Error::Protocol(ProtocolError::TruncatedMessage));
    assert_eq!(s.drain(), [1]);
}

#[test]
fn greeting_only_and_no_handshake() {
    let mut s: ClientSession<u32> =
        ClientSession::new(ClientConfig { handshake: Handshake::GreetingOnly, ..ClientConfig::default() });
    s.send(Command::new("q"), 1).unwrap();
    s.handle_input(b"{\"QMP\": {\"capabilities\": []}}\r\n");
    assert_eq!(events(&mut s), ["greeting", "ready"]);
    assert_eq!(transmitted(&mut s), ["{\"execute\":\"q\",\"id\":0}"]);

    let mut s: ClientSession<u32> =
        ClientSession::new(ClientConfig { handshake: Handshake::None, ..ClientConfig::default() });
    assert_eq!(s.state(), ClientState::Ready);
    s.send(Command::new("guest-ping"), 1).unwrap();
    assert_eq!(transmitted(&mut s), ["{\"execute\":\"guest-ping\",\"id\":0}"]);
    s.handle_input(b"{\"return\": {}, \"id\": 0}");
    assert_eq!(events(&mut s), ["reply 1 ok {}"]);
}

#[test]
fn events_before_the_greeting_and_during_negotiation_are_delivered() {
    let mut s: ClientSession<u32> = ClientSession::new(ClientConfig::default());
    s.handle_input(b"{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"RESUME\"}\r\n");
    s.handle_input(GREETING_OOB);
    s.handle_input(b"{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"STOP\"}\r\n");
    s.handle_input(NEGOTIATED);
    assert_eq!(events(&mut s), ["event RESUME", "greeting", "event STOP", "ready"]);
}

/// What a server message should turn into, judged independently of the session: by looking at
/// the message and at the requests the client had sent (as QEMU's own parser saw them).
fn expected_routing(message: &[u8], open: &mut Vec<(Value, usize)>, anonymous: &mut VecDeque<usize>) -> String {
    let Ok(value) = ServerMessage::decode(message).map(|_| ()).and_then(|()| {
        let mut de = serde_json::Deserializer::from_slice(message);
        de.disable_recursion_limit();
        Value::deserialize(serde_stacker::Deserializer::new(&mut de)).map_err(|e| ProtocolError::Stray(e.to_string()))
    }) else {
        return "dropped malformed".to_owned();
    };
    if value.get("QMP").is_some() {
        return "greeting".to_owned();
    }
    if let Some(name) = value.get("event").and_then(Value::as_str) {
        return format!("event {name}");
    }
    let outcome = |v: &Value| match v.get("error") {
        Some(e) => format!("err {}", e["desc"].as_str().unwrap()),
        None => format!("ok {}", v["return"]),
    };
    match value.get("id") {
        Some(id) => match open.iter().position(|(open_id, _)| open_id == id) {
            Some(pos) => format!("reply {} {}", open.remove(pos).1, outcome(&value)),
            None => format!("dropped unknown id {:?}", Some(id.to_string())),
        },
        None => match anonymous.pop_front() {
            Some(n) => format!("reply {n} {}", outcome(&value)),
            None if value.get("error").is_some() => {
                format!("dropped parse error {}", value["error"]["desc"].as_str().unwrap())
            }
            None => "dropped unknown id None".to_owned(),
        },
    }
}

/// Replays what real QEMU sent through a client session, with the session's pending table
/// holding the commands the client sent as QEMU parsed them, and checks that every message
/// QEMU wrote is framed once and routed as QEMU meant it.
fn replay(version: &str) {
    let mut checked = 0;
    for transcript in transcripts(version) {
        let pretty = transcript.name.contains("pretty");
        let mut session: ClientSession<u32> = new_replay_session();
        let mut client_side = Framer::new(Mode::Server, Limits::default());
        let mut open: Vec<(Value, usize)> = Vec::new();
        let mut anonymous: VecDeque<usize> = VecDeque::new();
        let mut greetings = 0;
        let mut expected = Vec::new();
        let mut got = Vec::new();
        let mut oracle = Framer::new(Mode::Client, Limits::default());
        for (n, (side, bytes)) in transcript.lines.iter().enumerate() {
            let n = u32::try_from(n).unwrap();
            if is_elided(bytes) {
                // Not what was on the wire. An elided request was never a valid one, and an
                // elided reply is one whole line, so leaving it out keeps the stream aligned.
                continue;
            }
            match side {
                Side::Client => {
                    client_side.push(bytes);
                    while let Some(frame) = client_side.next_frame() {
                        let Ok(frame) = frame else { continue };
                        let Ok(Value::Object(request)) = qjson::parse_input(frame.as_bytes()) else { continue };
                        let Some(name) = request.get("execute").or(request.get("exec-oob")).and_then(Value::as_str)
                        else {
                            continue;
                        };
                        let command = Command::new(name);
                        match request.get("id") {
                            Some(id) => {
                                open.push((id.clone(), n as usize));
                                session.send(command.with_id(Id::new(id.clone())), n).unwrap();
                            }
                            None => {
                                anonymous.push_back(n as usize);
                                session.send_without_id(command, n).unwrap();
                            }
                        }
                        while session.poll_transmit().is_some() {}
                    }
                }
                Side::Server => {
                    if bytes.starts_with(b"{\"QMP\"") {
                        greetings += 1;
                        if greetings > 1 {
                            // A new connection: QEMU resets its side, and so does the client.
                            session = new_replay_session();
                            client_side = Framer::new(Mode::Server, Limits::default());
                            open.clear();
                            anonymous.clear();
                        }
                    }
                    if pretty {
                        oracle.push(bytes);
                        while let Some(frame) = oracle.next_frame() {
                            expected.push(expected_routing(frame.unwrap().as_bytes(), &mut open, &mut anonymous));
                        }
                    } else {
                        expected.push(expected_routing(
                            bytes.strip_suffix(b"\r\n").unwrap_or(bytes),
                            &mut open,
                            &mut anonymous,
                        ));
                    }
                    session.handle_input(bytes);
                    got.extend(events(&mut session).into_iter().filter(|e| e != "ready"));
                    // What waited for the greeting is written now, as a transport would.
                    while session.poll_transmit().is_some() {}
                }
            }
        }
        assert_eq!(got.len(), expected.len(), "{version} {}: message count", transcript.name);
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "{version} {}: message {i}", transcript.name);
        }
        checked += got.len();
    }
    assert!(checked > 3000, "only {checked} messages replayed");
}

/// A session that does not negotiate by itself, because the transcripts' clients did, and that
/// lets the replay send `exec-oob` whatever was negotiated, as those clients did.
fn new_replay_session() -> ClientSession<u32> {
    let mut s = ClientSession::new(ClientConfig { handshake: Handshake::GreetingOnly, ..ClientConfig::default() });
    s.oob = true;
    s.config.in_band_limit = usize::MAX;
    s
}

#[test]
fn replays_qemu_7_2() {
    replay("7.2");
}

#[test]
fn replays_qemu_10_0() {
    replay("10.0");
}

#[test]
fn error_classes_survive_routing() {
    let mut s = ready_session(GREETING_NO_CAPS);
    s.send(Command::new("x").with_id("e1"), 1).unwrap();
    s.handle_input(
        b"{\"id\": \"e1\", \"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device 'x' not found\"}}\r\n",
    );
    match s.poll_event() {
        Some(ClientEvent::Reply { response, name, .. }) => {
            assert_eq!(name, "x");
            let response = response.decode().unwrap();
            assert_eq!(response.result.unwrap_err().class, ErrorClass::DeviceNotFound);
        }
        other => panic!("{other:?}"),
    }
}

const PARSE_ERROR: &[u8] =
    b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, expecting value\"}}\r\n";

#[test]
fn a_reply_without_its_id_goes_to_the_only_call_in_flight() {
    let mut s = ready_session(GREETING_OOB);
    s.send(Command::new("a"), 1).unwrap();
    // Queued and not yet written: it cannot be what the reply answers.
    transmitted(&mut s);
    s.handle_input(PARSE_ERROR);
    s.handle_input(b"{\"return\": 42}\r\n");
    assert_eq!(events(&mut s), ["dropped parse error JSON parse error, expecting value", "reply 1 ok 42"]);
    assert_eq!(s.stats().missing_ids, 1);
    assert_eq!(s.stats().server_parse_errors, 1);
    // A peer that drops ids still negotiates.
    let mut s: ClientSession<u32> = ClientSession::new(ClientConfig::default());
    s.handle_input(GREETING_OOB);
    transmitted(&mut s);
    s.handle_input(b"{\"return\": {}}\r\n");
    assert_eq!(events(&mut s), ["greeting", "ready"]);
}

#[test]
fn a_reply_without_its_id_among_several_fails_the_oldest_in_band_call() {
    let mut s = ready_session(GREETING_OOB);
    s.send(Command::new("a"), 1).unwrap();
    s.send(Command::new("b"), 2).unwrap();
    s.send(Command::new("c").out_of_band(), 3).unwrap();
    transmitted(&mut s);
    // QEMU's own id-less errors fail nobody, whatever is in flight.
    s.handle_input(PARSE_ERROR);
    s.handle_input(b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}\r\n");
    s.handle_input(b"{\"return\": \"first\"}\r\n{\"return\": \"second\"}\r\n{\"return\": \"third\"}\r\n");
    assert_eq!(
        events(&mut s),
        [
            "dropped parse error JSON parse error, expecting value",
            "dropped parse error QMP input must be a JSON object",
            "failed 1: the peer answered without an id while several commands with ids were waiting: {\"return\":\"first\"}",
            "failed 2: the peer answered without an id while several commands with ids were waiting: {\"return\":\"second\"}",
            "reply 3 ok \"third\"",
        ]
    );
    assert_eq!(s.stats().missing_ids, 3);
    assert_eq!(s.pending_len(), 0);
    s.handle_input(b"{\"return\": \"nobody\"}\r\n");
    assert_eq!(events(&mut s), ["dropped unknown id None"]);
}

#[test]
fn a_parse_error_among_id_less_commands_closes_the_session() {
    let mut s = ready_session(GREETING_NO_CAPS);
    s.send_without_id(Command::new("a"), 1).unwrap();
    s.send_without_id(Command::new("b"), 2).unwrap();
    transmitted(&mut s);
    // An envelope error answers one value, in order; a parse error may answer none.
    s.handle_input(b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'x' is unexpected\"}}\r\n");
    s.handle_input(PARSE_ERROR);
    let got = events(&mut s);
    assert_eq!(got[0], "reply 1 err QMP input member 'x' is unexpected");
    assert!(
        got[1].starts_with("closed the server sent an unmatched error without an id (GenericError: JSON parse error"),
        "{got:?}"
    );
    assert_eq!(s.drain(), [2]);
}

#[test]
fn a_peer_that_is_not_qmp_fails_at_its_first_bytes() {
    for (input, quoted) in [
        (&b"QEMU 7.2.0 monitor - type 'help' for more information\r\n(qemu) "[..], "QEMU 7.2.0 monitor"),
        (b"Debian GNU/Linux 12 vm ttyS0\r\n\r\nvm login: ", "Debian GNU/Linux"),
        (b"{\"hello\": 1}\r\n", "{\\\"hello\\\": 1}"),
    ] {
        let mut s: ClientSession<u32> = ClientSession::new(ClientConfig::default());
        s.handle_input(b"{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"RESUME\"}\r\n");
        assert_eq!(events(&mut s), ["event RESUME"]);
        s.handle_input(input);
        let got = events(&mut s);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("closed the peer sent \"{\\\"timestamp"), "{got:?}");
        assert!(got[0].contains(quoted) && got[0].contains("not a QMP greeting"), "{got:?}");
        assert_eq!(s.state(), ClientState::Closed);
    }
}

#[test]
fn a_greeting_without_a_version_is_used_without_negotiation() {
    let mut s: ClientSession<u32> = ClientSession::new(ClientConfig::default());
    s.send(Command::new("q"), 1).unwrap();
    s.handle_input(b"{\"QMP\": {\"capabilities\": []}}\r\n");
    assert_eq!(events(&mut s), ["greeting", "ready"]);
    assert_eq!(transmitted(&mut s), ["{\"execute\":\"q\",\"id\":0}"]);
}

#[test]
fn encoded_commands_are_the_bytes_of_commands() {
    let mut arguments = serde_json::Map::new();
    arguments.insert("a\"b".into(), json!([1, {"c": null}]));
    for command in [
        Command::new("query-status"),
        Command::new("x\"y").with_id(Id::new(json!({"k": [1]}))).with_arguments(arguments.clone()),
        Command::new("query-yank").out_of_band().with_id(7),
    ] {
        let mut expected = Vec::new();
        command.encode(&mut expected);
        let (_, bytes) = EncodedCommand::new(&command).finish(command.id.as_ref());
        assert_eq!(String::from_utf8(bytes).unwrap(), String::from_utf8(expected.clone()).unwrap());
        let arguments = command.arguments.clone().map(Value::Object).unwrap_or(Value::Null);
        let serialized = EncodedCommand::serialize(command.kind, &command.name, &arguments).unwrap();
        let (_, bytes) = serialized.finish(command.id.as_ref());
        assert_eq!(String::from_utf8(bytes).unwrap(), String::from_utf8(expected).unwrap());
    }
    for not_an_object in [json!([1]), json!("s"), json!(1)] {
        let err = EncodedCommand::serialize(ExecKind::Execute, "q", &not_an_object).unwrap_err();
        assert_eq!(err.to_string(), format!("got {not_an_object}"));
    }
}

#[test]
fn objects_given_whole_are_sent_as_they_are_with_their_id() {
    let object = |v: Value| match v {
        Value::Object(map) => map,
        _ => unreachable!("an object"),
    };
    // Every member but the id is kept in its order, known to QEMU or not; the id goes last.
    let command = EncodedCommand::from_object(object(json!({"foo": 2, "execute": 1, "id": "x"})));
    assert_eq!((command.kind(), command.name()), (ExecKind::Execute, "1"));
    assert_eq!(command.id, Some(Id::new(json!("x"))));
    let (_, bytes) = command.finish(Some(&Id::new(json!("x"))));
    assert_eq!(String::from_utf8(bytes).unwrap(), r#"{"foo":2,"execute":1,"id":"x"}"#);
    // An object with nothing but (or not even) an id is still one JSON object.
    let (_, bytes) = EncodedCommand::from_object(object(json!({}))).finish(Some(&Id::new(json!(3))));
    assert_eq!(String::from_utf8(bytes).unwrap(), r#"{"id":3}"#);
    // Out-of-band only when QEMU would run it so.
    let oob = EncodedCommand::from_object(object(json!({"exec-oob": "query-yank"})));
    assert_eq!((oob.kind(), oob.name()), (ExecKind::ExecOob, "query-yank"));
    let both = EncodedCommand::from_object(object(json!({"execute": "a", "exec-oob": "b"})));
    assert_eq!((both.kind(), both.name()), (ExecKind::Execute, "a"));
    // The session routes the reply by the object's own id.
    let mut s = ready_session(GREETING_OOB);
    let id = s.send_encoded(EncodedCommand::from_object(object(json!({"execute": "q", "id": [1]}))), 0).unwrap();
    assert_eq!(id, Id::new(json!([1])));
    assert_eq!(transmitted(&mut s), [r#"{"execute":"q","id":[1]}"#]);
}
