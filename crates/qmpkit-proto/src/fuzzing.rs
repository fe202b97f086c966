//! Entry points for the fuzz targets in `fuzz/`. Each feeds arbitrary bytes to one part of
//! the core and checks invariants that must hold whatever the peer sends.

use std::collections::HashMap;

use crate::client::{ClientConfig, ClientEvent, ClientSession};
use crate::framer::{Limits, Mode};
use crate::message::Command;
use crate::qjson;
use crate::server::{CommandInfo, Input, ServerConfig, ServerSession};

/// Small limits, so that the fuzzer reaches them.
fn small_limits() -> Limits {
    Limits { max_message_bytes: 4096, max_depth: 32, max_tokens: 512 }
}

/// Frames `data` in both modes, whole, split at a point the data chooses and in chunks of a
/// size it chooses, and checks that the fast path yields exactly what the byte-at-a-time state
/// machine yields (and leaves the same state), that frames never exceed the limit and that
/// the output does not depend on the split.
pub fn framer(data: &[u8]) {
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let chunk = data.get(1).map_or(1, |&b| usize::from(b % 16) + 1);
    let chunks: Vec<&[u8]> = data.chunks(chunk).collect();
    for mode in [Mode::Client, Mode::Server] {
        let whole = collect(mode, &[data]);
        let parts = collect(mode, &[&data[..split], &data[split..]]);
        assert_eq!(whole, parts, "framing depends on how the input was split");
        assert_eq!(whole, collect(mode, &chunks), "framing depends on how the input was split");
        for frame in whole.iter().flatten() {
            assert!(frame.len() <= small_limits().max_message_bytes);
        }
    }
}

fn collect(mode: Mode, parts: &[&[u8]]) -> Vec<Result<Vec<u8>, String>> {
    crate::framer::assert_fast_path_matches(mode, small_limits(), parts)
        .into_iter()
        .map(|item| item.map(crate::framer::Frame::into_bytes).map_err(|e| e.to_string()))
        .collect()
}

/// Feeds `data` to a server session as client input and checks that every reply it writes is
/// one line of ASCII JSON ending in CRLF.
pub fn server_session(data: &[u8]) {
    let commands: HashMap<String, CommandInfo> = [
        ("query-status".to_owned(), CommandInfo { allow_oob: false }),
        ("query-yank".to_owned(), CommandInfo { allow_oob: true }),
    ]
    .into_iter()
    .collect();
    // The session's envelope parse agrees with the public parser on any frame.
    assert_eq!(qjson::parse_request(data).map(qjson::Parsed::into_value), qjson::parse_input(data));
    let mut session = ServerSession::new(ServerConfig { limits: small_limits(), ..ServerConfig::default() });
    session.handle_input(data);
    while let Some(input) = session.poll_input(&commands) {
        let bytes = match input {
            Input::Reply { bytes, .. } => bytes,
            Input::Execute(request) | Input::ExecuteOob(request) => {
                session.encode_response(request.id.as_ref(), Ok(serde_json::json!({})))
            }
        };
        assert!(bytes.ends_with(b"\r\n"));
        assert!(bytes.is_ascii());
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).expect("the server wrote invalid JSON");
        assert!(parsed.is_object());
    }
}

/// Feeds `data` to a client session as server output, with a few calls pending, and checks
/// that it never panics and that a closed session hands back every pending call.
pub fn client_session(data: &[u8]) {
    let config = ClientConfig { limits: small_limits(), ..ClientConfig::default() };
    let mut session: ClientSession<u32> = ClientSession::new(config);
    session.handle_input(b"{\"QMP\": {\"capabilities\": []}}\r\n{\"return\": {}, \"id\": \"__qmpkit-negotiate\"}\r\n");
    let mut sent = 0;
    for n in 0..3 {
        if session.send(Command::new("query-status"), n).is_ok() {
            sent += 1;
        }
    }
    while session.poll_transmit().is_some() {}
    session.handle_input(data);
    let mut answered = 0;
    while let Some(event) = session.poll_event() {
        match event {
            ClientEvent::Reply { .. } | ClientEvent::Failed { .. } => answered += 1,
            ClientEvent::Closed(_) => break,
            _ => {}
        }
        while session.poll_transmit().is_some() {}
    }
    let _ = session.handle_eof();
    assert_eq!(answered + session.drain().len(), sent);
}

#[cfg(test)]
mod tests {
    use crate::testutil::{Side, transcripts};

    /// A small deterministic generator, so that the noise is the same on every run.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Mostly JSON's own punctuation, so the noise reaches deep into the framer.
                let alphabet = b"{}[]\":,'\\ \n\r\tae01-.%\xff\xfe\x00";
                alphabet[(state % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn entry_points_hold_on_real_streams_and_noise() {
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for version in ["7.2", "10.0"] {
            for transcript in transcripts(version) {
                for side in [Side::Client, Side::Server] {
                    let stream: Vec<u8> =
                        transcript.lines.iter().filter(|(s, _)| *s == side).flat_map(|(_, b)| b.clone()).collect();
                    inputs.push(stream.into_iter().take(64 * 1024).collect());
                }
            }
        }
        inputs.extend((1..200).map(|seed| noise(seed, 300)));
        for input in &inputs {
            super::framer(input);
            super::server_session(input);
            super::client_session(input);
        }
    }
}
