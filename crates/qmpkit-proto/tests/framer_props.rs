//! Property tests for the framer and the QEMU JSON dialect.
//!
//! (1) Any sequence of JSON values, written compactly or pretty and separated by arbitrary
//! whitespace, pushed with arbitrary split points, comes out of the framer as exactly those
//! values in order, in both modes. (2) Parsing what the QEMU writer writes gives the value back.

use proptest::prelude::*;
use qmpkit_proto::qjson::{parse_input, write_compact, write_pretty};
use qmpkit_proto::{Framer, Limits, Mode};
use serde_json::{Map, Value};

/// Strings with the characters that stress a framer: quotes, backslashes, braces, control
/// characters (escaped by the writers), non-ASCII and astral code points.
fn arb_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::char::range('a', 'z'),
            1 => prop::sample::select(vec!['"', '\\', '{', '}', '[', ']', ',', ':', '\'', '/', ' ']),
            1 => prop::char::range('\u{0}', '\u{1f}'),
            1 => any::<char>().prop_filter("noncharacters are rejected by QEMU", |c| {
                let cp = u32::from(*c);
                !((0xFDD0..=0xFDEF).contains(&cp) || cp & 0xFFFE == 0xFFFE)
            }),
        ],
        0..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// JSON values; `floats` adds doubles (which QEMU's writer does not print round-trip).
fn arb_value(floats: bool) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        arb_string().prop_map(Value::String),
        (if floats { -1e300f64..1e300 } else { 0.0f64..0.0001 }).prop_map(move |f| if floats {
            Value::from(f)
        } else {
            Value::from(f as i64)
        }),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_string(), inner), 0..6).prop_map(|members| {
                let mut map = Map::new();
                for (k, v) in members {
                    map.insert(k, v);
                }
                Value::Object(map)
            }),
        ]
    })
}

fn arb_object(floats: bool) -> impl Strategy<Value = Value> {
    prop::collection::vec((arb_string(), arb_value(floats)), 0..5).prop_map(|members| {
        let mut map = Map::new();
        for (k, v) in members {
            map.insert(k, v);
        }
        Value::Object(map)
    })
}

fn arb_whitespace() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![b' ', b'\t', b'\r', b'\n']), 0..4)
}

/// How one message is written: serde_json compact, serde_json pretty, QEMU compact or QEMU
/// pretty with CRLF line ends (what a `pretty=on` monitor sends).
fn encode(v: &Value, style: u8) -> Vec<u8> {
    match style % 4 {
        0 => serde_json::to_vec(v).unwrap(),
        1 => serde_json::to_vec_pretty(v).unwrap(),
        2 => {
            let mut out = Vec::new();
            write_compact(v, &mut out);
            out
        }
        _ => {
            let mut out = Vec::new();
            write_pretty(v, &mut out);
            let mut crlf = Vec::with_capacity(out.len());
            for b in out {
                if b == b'\n' {
                    crlf.push(b'\r');
                }
                crlf.push(b);
            }
            crlf
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn frames_come_out_in_order_whatever_the_splits(
        messages in prop::collection::vec((arb_object(true), any::<u8>(), arb_whitespace()), 1..6),
        lead in arb_whitespace(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut stream = lead;
        for (v, style, ws) in &messages {
            stream.extend_from_slice(&encode(v, *style));
            stream.extend_from_slice(ws);
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        for mode in [Mode::Client, Mode::Server] {
            let mut framer = Framer::new(mode, Limits::default());
            let mut got = Vec::new();
            for pair in points.windows(2) {
                framer.push(&stream[pair[0]..pair[1]]);
                while let Some(frame) = framer.next_frame() {
                    let frame = frame.expect("valid input must not produce errors");
                    let decoded: Value = match mode {
                        Mode::Client => serde_json::from_slice(frame.as_bytes()).unwrap(),
                        Mode::Server => parse_input(frame.as_bytes()).unwrap(),
                    };
                    got.push(decoded);
                }
            }
            prop_assert!(!framer.is_mid_message());
            let expected: Vec<Value> = messages.iter().map(|(v, _, _)| v.clone()).collect();
            // QEMU's writer prints doubles with `%.17g`, so `3.0` comes back as the integer
            // `3`: numbers compare by value when either side is a double.
            prop_assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                prop_assert!(same_numbers(g, e), "{} != {}", g, e);
            }
        }
    }

    #[test]
    fn qemu_writer_output_parses_back(v in arb_value(false)) {
        let mut compact = Vec::new();
        write_compact(&v, &mut compact);
        prop_assert!(compact.is_ascii());
        prop_assert_eq!(parse_input(&compact), Ok(v.clone()));
        let mut pretty = Vec::new();
        write_pretty(&v, &mut pretty);
        prop_assert_eq!(parse_input(&pretty), Ok(v.clone()));
        // serde_json agrees with the QEMU writer's output too.
        prop_assert_eq!(serde_json::from_slice::<Value>(&compact).unwrap(), v);
    }
}

/// Equality where numbers compare by their `f64` value when either side is a double.
fn same_numbers(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                x.as_f64() == y.as_f64()
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_numbers(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((ka, va), (kb, vb))| ka == kb && same_numbers(va, vb))
        }
        _ => a == b,
    }
}
