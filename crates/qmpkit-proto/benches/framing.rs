//! Framing cost against decoding cost.
//!
//! A QMP client must find message boundaries before it can decode; the requirement is that
//! framing a large reply adds at most 30% to decoding it. Each group compares:
//! * `serde_json`: bare `serde_json::from_slice::<Value>` of the reply line;
//! * `framer+serde_json`: a [`Framer`] in client mode, then `serde_json::from_slice` of the frame.
//!
//! Inputs: (a) a real `query-qmp-schema` reply, fetched at start-up from the installed QEMU
//! (`qemu-system-x86_64` on `PATH`, or the binary named by `QMPKIT_QEMU`); (b) the 73-byte
//! `query-status` reply; (c) QEMU 7.2's 76-byte `query-status` reply before the guest starts.
//!
//! The server side has its own group: the 33-byte `query-status` request a proxy or server
//! reads, framed in [`Mode::Server`] and decoded with [`parse_input`].

// `criterion_group!` expands to an undocumented `pub fn`.
#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qmpkit_proto::qjson::parse_input;
use qmpkit_proto::{Frame, Framer, Limits, Mode};
use serde_json::Value;
use std::hint::black_box;

/// Kills QEMU and removes the socket directory even if fetching fails half-way.
struct Qemu {
    child: Child,
    dir: PathBuf,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads one `\r\n`-terminated line from QEMU, terminator included.
fn read_line(reader: &mut BufReader<UnixStream>) -> Vec<u8> {
    let mut line = Vec::new();
    loop {
        let n = reader.read_until(b'\n', &mut line).expect("reading from QEMU's QMP socket");
        assert!(n > 0, "QEMU closed the QMP socket");
        if line.ends_with(b"\r\n") {
            return line;
        }
    }
}

/// Starts QEMU, negotiates capabilities and returns the raw `query-qmp-schema` reply line.
fn fetch_schema_reply() -> Vec<u8> {
    let qemu = std::env::var("QMPKIT_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".to_string());
    let dir = std::env::temp_dir().join(format!("qmpkit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating a temporary directory");
    let sock = dir.join("qmp.sock");
    let child = Command::new(&qemu)
        .args(["-machine", "none", "-nodefaults", "-display", "none", "-qmp"])
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start QEMU ({qemu}): {e}. The framing benchmark needs a real \
                 `query-qmp-schema` reply: install qemu-system-x86_64 or set QMPKIT_QEMU to \
                 a QEMU binary."
            )
        });
    let mut qemu_proc = Qemu { child, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(e) => {
                if let Ok(Some(status)) = qemu_proc.child.try_wait() {
                    panic!("QEMU ({qemu}) exited with {status} before opening its QMP socket");
                }
                assert!(Instant::now() < deadline, "QEMU's QMP socket did not appear: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("setting a read timeout");
    let mut writer = stream.try_clone().expect("cloning the QMP socket");
    let mut reader = BufReader::new(stream);
    let greeting = read_line(&mut reader);
    assert!(greeting.starts_with(b"{\"QMP\""), "unexpected greeting");
    writer.write_all(b"{\"execute\":\"qmp_capabilities\"}").expect("writing to QEMU");
    let reply = read_line(&mut reader);
    assert!(reply.starts_with(b"{\"return\""), "qmp_capabilities failed");
    writer.write_all(b"{\"execute\":\"query-qmp-schema\"}").expect("writing to QEMU");
    let schema = read_line(&mut reader);
    assert!(schema.starts_with(b"{\"return\": ["), "query-qmp-schema failed");
    drop(qemu_proc);
    schema
}

/// Frames one reply line and decodes the frame, as a QMP client does for each read.
fn frame_and_decode(framer: &mut Framer, line: &[u8]) -> Value {
    serde_json::from_slice(one_frame(framer, line).as_bytes()).expect("valid JSON")
}

/// Pushes `bytes`, which hold exactly one message, and takes its frame.
fn one_frame(framer: &mut Framer, bytes: &[u8]) -> Frame {
    framer.push(bytes);
    let frame = framer.next_frame().expect("a complete frame").expect("valid JSON");
    assert!(framer.next_frame().is_none());
    frame
}

fn bench_reply(c: &mut Criterion, name: &str, line: &[u8]) {
    let body = &line[..line.len() - 2];
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(line.len() as u64));
    group.bench_function("serde_json", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(body)).expect("valid JSON"))
    });
    group.bench_function("framer+serde_json", |b| {
        let mut framer = Framer::new(Mode::Client, Limits::default());
        b.iter(|| frame_and_decode(&mut framer, black_box(line)))
    });
    group.bench_function("framer_only", |b| {
        let mut framer = Framer::new(Mode::Client, Limits::default());
        b.iter(|| one_frame(&mut framer, black_box(line)).into_bytes().len())
    });
    group.finish();
}

/// Frames (and decodes) one request the way a server reads a client's input: no line end.
fn bench_request(c: &mut Criterion, name: &str, request: &[u8]) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(request.len() as u64));
    group.bench_function("parse_input", |b| b.iter(|| parse_input(black_box(request)).expect("valid JSON")));
    group.bench_function("framer+parse_input", |b| {
        let mut framer = Framer::new(Mode::Server, Limits::default());
        b.iter(|| parse_input(one_frame(&mut framer, black_box(request)).as_bytes()).expect("valid JSON"))
    });
    group.bench_function("framer_only", |b| {
        let mut framer = Framer::new(Mode::Server, Limits::default());
        b.iter(|| one_frame(&mut framer, black_box(request)).into_bytes().len())
    });
    group.finish();
}

fn framing(c: &mut Criterion) {
    let schema = fetch_schema_reply();
    eprintln!("query-qmp-schema reply: {} bytes", schema.len());
    bench_reply(c, "query-qmp-schema", &schema);
    let status = b"{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}\r\n";
    bench_reply(c, "query-status", status);
    let prelaunch = b"{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}\r\n";
    bench_reply(c, "query-status-prelaunch", prelaunch);
    bench_request(c, "query-status-request", b"{\"execute\":\"query-status\",\"id\":1}");
}

criterion_group!(benches, framing);
criterion_main!(benches);
