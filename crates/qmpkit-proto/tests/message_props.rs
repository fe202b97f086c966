//! Property tests of the message layer: whatever a server or client encodes, the other side
//! decodes to the same message, in QEMU's compact and pretty layouts, through the framer.

use proptest::prelude::*;
use qmpkit_proto::message::{ClientMessage, RawResponse};
use qmpkit_proto::{
    Capability, Command, ErrorClass, Event, Framer, Greeting, Id, Limits, Mode, QemuVersion, QmpError, Response,
    ServerMessage, Timestamp, VersionInfo,
};
use serde_json::{Map, Value};

/// JSON values without floats (QEMU prints doubles its own way, covered by the qjson tests).
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[ -~é😀\\\\\"\n\t]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z-]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z-]{1,8}", json(), 0..5).prop_map(|m| m.into_iter().collect())
}

fn class() -> impl Strategy<Value = ErrorClass> {
    prop_oneof![
        Just(ErrorClass::GenericError),
        Just(ErrorClass::CommandNotFound),
        Just(ErrorClass::DeviceNotActive),
        Just(ErrorClass::DeviceNotFound),
        Just(ErrorClass::KVMMissingCap),
        "[A-Z][a-zA-Z]{2,12}".prop_map(|n| ErrorClass::from_name(&n)),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    let version = prop_oneof![
        (any::<u16>(), any::<u16>(), any::<u16>()).prop_map(|(a, b, c)| QemuVersion::Triple {
            major: a.into(),
            minor: b.into(),
            micro: c.into()
        }),
        "[0-9.]{1,8}".prop_map(QemuVersion::Text),
    ];
    let greeting = (proptest::option::of((version, "[ -~]{0,20}")), prop::collection::vec("[a-z-]{1,8}", 0..3))
        .prop_map(|(version, caps)| {
            ServerMessage::Greeting(Greeting {
                version: version.map(|(qemu, package)| VersionInfo { qemu, package }),
                capabilities: caps.iter().map(|c| Capability::from_name(c)).collect(),
            })
        });
    let id = proptest::option::of(json().prop_map(Id::new));
    let result = prop_oneof![
        json().prop_map(Ok),
        (class(), "[ -~]{0,30}").prop_map(|(class, desc)| Err(QmpError::new(class, desc))),
    ];
    let response = (id, result).prop_map(|(id, result)| ServerMessage::Response(Response { id, result }));
    let event = ("[A-Z_]{1,16}", proptest::option::of(object()), any::<i32>(), 0..1_000_000i64).prop_map(
        |(name, data, seconds, microseconds)| {
            ServerMessage::Event(Event {
                name,
                data: data.map(Value::Object),
                timestamp: Timestamp { seconds: seconds.into(), microseconds },
            })
        },
    );
    prop_oneof![greeting, response, event]
}

fn command() -> impl Strategy<Value = Command> {
    ("[a-z-]{1,20}", proptest::option::of(object()), proptest::option::of(json().prop_map(Id::new)), any::<bool>())
        .prop_map(|(name, arguments, id, oob)| {
            let command = Command { kind: qmpkit_proto::ExecKind::Execute, name, arguments, id };
            if oob { command.out_of_band() } else { command }
        })
}

/// Frames a byte stream the way a client reads it, and decodes each frame.
fn frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut framer = Framer::new(Mode::Client, Limits::default());
    framer.push(bytes);
    std::iter::from_fn(|| framer.next_frame()).map(|f| f.expect("a valid frame").into_bytes()).collect()
}

proptest! {
    #[test]
    fn what_a_server_writes_a_client_reads_back(messages in prop::collection::vec(server_message(), 1..6), pretty in any::<bool>()) {
        let mut wire = Vec::new();
        for message in &messages {
            message.encode_server(pretty, &mut wire);
        }
        prop_assert!(wire.is_ascii());
        let frames = frames(&wire);
        prop_assert_eq!(frames.len(), messages.len());
        for (frame, message) in frames.iter().zip(&messages) {
            prop_assert_eq!(&ServerMessage::decode(frame).unwrap(), message);
            // The routing decoder agrees, leaving a response's value as text.
            match (ClientMessage::decode(frame).unwrap(), message) {
                (ClientMessage::Response(raw), ServerMessage::Response(response)) => {
                    prop_assert_eq!(&RawResponse::decode(raw).unwrap(), response);
                }
                (ClientMessage::Greeting(decoded), ServerMessage::Greeting(greeting)) => prop_assert_eq!(&decoded, greeting),
                (ClientMessage::Event(decoded), ServerMessage::Event(event)) => prop_assert_eq!(&decoded, event),
                (other, message) => prop_assert!(false, "{:?} for {:?}", other, message),
            }
        }
    }

    #[test]
    fn what_a_client_writes_a_server_reads_back(command in command()) {
        let mut wire = Vec::new();
        command.encode(&mut wire);
        let mut framer = Framer::new(Mode::Server, Limits::default());
        framer.push(&wire);
        let frame = framer.next_frame().unwrap().unwrap();
        let parsed = qmpkit_proto::qjson::parse_input(frame.as_bytes()).unwrap();
        prop_assert_eq!(parsed, command.to_value());
    }
}
