//! Differential test: every case of `sim_cases.txt` runs against the installed real QEMU 7.2
//! and against the simulator in its 7.2 profile, and every message each sends back must be
//! the same after normalising only what must differ (the package string, timestamps, the
//! monitor's chardev id given by the launcher, and the members a case names with `ignore:`).
//! `crates/qmpkit-sim/DIFFERENCES.md` lists what the simulator deliberately does otherwise.
//!
//! The case file's format:
//!
//! ```text
//! # a comment
//! === the case's name
//! machine: none | pc | pc-paused     (default none; see `Machine`)
//! fresh                              (a machine of its own, for cases that change state)
//! ignore: /return/0/thread-id        (JSON pointers blanked on both sides)
//! unordered: /return                 (an array compared as a set: QEMU's order is a hash's)
//! C: bytes to send, escaped as the transcripts (\r \n \t \\ \xNN); then read one reply
//! C2: ... read two replies (any events before them are compared too); C0: read none
//! F: bytes sent with a file descriptor attached (SCM_RIGHTS); then read one reply
//! !connect                           (close the connection and open a new one)
//! !second                            (a second client connects while the first stays:
//!                                     what it hears within a second is recorded)
//! !first-leaves                      (the first client closes; the second takes over,
//!                                     reads its greeting and negotiates)
//! ```
//!
//! Each connection negotiates first unless its first line sends something else
//! (`raw` after `machine:` keeps the negotiation in the script).

use std::collections::HashMap;
use std::time::Duration;

use std::os::fd::AsFd;
use std::path::Path;

use qmpkit::launch::{Instance, Launcher};
use qmpkit_proto::transcript::unescape;
use qmpkit_sim::{RunningSim, Sim};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const CASES: &str = include_str!("sim_cases.txt");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Machine {
    /// `-machine none`.
    None,
    /// `-M pc` under TCG with the simulator's devices: two null-co drives on virtio-blk
    /// disks and a balloon, 128 MiB, running.
    Pc,
    /// The same, started with `-S`.
    PcPaused,
}

#[derive(Debug)]
enum Step {
    Send { bytes: Vec<u8>, replies: usize, fd: bool },
    Connect,
    Second,
    FirstLeaves,
}

#[derive(Debug)]
struct Case {
    name: String,
    machine: Machine,
    fresh: bool,
    raw: bool,
    ignore: Vec<String>,
    unordered: Vec<String>,
    steps: Vec<Step>,
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("=== ") {
            cases.push(Case {
                name: name.to_owned(),
                machine: Machine::None,
                fresh: false,
                raw: false,
                ignore: Vec::new(),
                unordered: Vec::new(),
                steps: Vec::new(),
            });
            continue;
        }
        let case = cases.last_mut().unwrap_or_else(|| panic!("line {}: outside a case", n + 1));
        if let Some(machine) = line.strip_prefix("machine: ") {
            case.machine = match machine {
                "none" => Machine::None,
                "pc" => Machine::Pc,
                "pc-paused" => Machine::PcPaused,
                other => panic!("line {}: unknown machine {other}", n + 1),
            };
        } else if line == "fresh" {
            case.fresh = true;
        } else if line == "raw" {
            case.raw = true;
        } else if let Some(pointer) = line.strip_prefix("ignore: ") {
            case.ignore.push(pointer.to_owned());
        } else if let Some(pointer) = line.strip_prefix("unordered: ") {
            case.unordered.push(pointer.to_owned());
        } else if line == "!connect" {
            case.steps.push(Step::Connect);
        } else if line == "!second" {
            case.steps.push(Step::Second);
        } else if line == "!first-leaves" {
            case.steps.push(Step::FirstLeaves);
        } else if let Some(bytes) = line.strip_prefix("F: ") {
            case.steps.push(Step::Send { bytes: unescape(bytes), replies: 1, fd: true });
        } else if let Some((head, bytes)) = line.split_once(": ") {
            let replies = match head {
                "C" => 1,
                other => other.strip_prefix('C').and_then(|n| n.parse().ok()).unwrap_or_else(|| {
                    panic!("line {}: unknown directive {other}", n + 1);
                }),
            };
            case.steps.push(Step::Send { bytes: unescape(bytes), replies, fd: false });
        } else {
            panic!("line {}: cannot parse {line:?}", n + 1);
        }
    }
    cases
}

/// One side of the comparison: where to connect, and how to tell its package string. Both
/// listen on a unix socket, so that fds pass and a second client waits as it would.
enum Side {
    Qemu(Instance),
    Sim(RunningSim),
}

type Io = BufReader<UnixStream>;

impl Side {
    async fn start(machine: Machine, qemu: bool) -> Side {
        if qemu {
            let mut launcher = Launcher::system();
            if machine != Machine::None {
                launcher = launcher.args(["-M", "pc", "-accel", "tcg", "-m", "128"]);
                for (drive, node, size, disk) in
                    [("drive0", "node0", 1u64 << 30, "disk0"), ("drive1", "node1", 2 << 30, "disk1")]
                {
                    launcher = launcher.args([
                        "-drive".to_owned(),
                        format!("if=none,id={drive},driver=null-co,size={size},node-name={node}"),
                        "-device".to_owned(),
                        format!("virtio-blk-pci,drive={drive},id={disk}"),
                    ]);
                }
                launcher = launcher.args(["-device", "virtio-balloon-pci,id=balloon0"]);
                if machine == Machine::PcPaused {
                    launcher = launcher.args(["-S"]);
                }
            }
            Side::Qemu(qmpkit_tests::start(launcher))
        } else {
            let sim = Sim::builder().version("7.2").paused(machine == Machine::PcPaused).start().await.unwrap();
            Side::Sim(sim)
        }
    }

    fn socket(&self) -> &Path {
        match self {
            Side::Qemu(instance) => instance.qmp_socket(),
            Side::Sim(sim) => match sim.endpoint() {
                qmpkit::transport::Endpoint::Unix(path) => path,
                other => panic!("the simulator listens on {other}"),
            },
        }
    }

    async fn connect(&self) -> Io {
        BufReader::new(UnixStream::connect(self.socket()).await.unwrap())
    }
}

/// Sends `bytes` with one file descriptor (the write end of a fresh pipe) attached.
fn send_with_fd(io: &Io, bytes: &[u8]) -> std::io::Result<()> {
    let (_read, write) = std::io::pipe()?;
    let fds = [write.as_fd()];
    let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
    let iov = [std::io::IoSlice::new(bytes)];
    let sent = rustix::net::sendmsg(io.get_ref().as_fd(), &iov, &mut control, rustix::net::SendFlags::empty())?;
    assert_eq!(sent, bytes.len(), "a short send");
    Ok(())
}

/// Runs a case on one side and returns every message received, normalised, one per line.
async fn run(case: &Case, side: &Side) -> Vec<String> {
    let mut out = Vec::new();
    let (mut io, mut package) = open(case, side.connect().await, &mut out).await;
    let mut second: Option<Io> = None;
    for step in &case.steps {
        match step {
            Step::Send { bytes, replies, fd } => {
                out.push(format!("C: {}", String::from_utf8_lossy(bytes).trim_end()));
                let sent = if *fd { send_with_fd(&io, bytes) } else { io.write_all(bytes).await };
                if sent.is_err() {
                    out.push(format!("{:?}", Read::Eof));
                    continue;
                }
                let mut got = 0;
                while got < *replies {
                    let line = match read(&mut io).await {
                        Read::Line(line) => line,
                        other => {
                            out.push(format!("{other:?}"));
                            break;
                        }
                    };
                    let value: Value = serde_json::from_str(&line).unwrap();
                    if value.get("return").is_some() || value.get("error").is_some() {
                        got += 1;
                    }
                    if !is_firmware_reset(&value) {
                        out.push(normalise(&line, &package, case));
                    }
                }
            }
            Step::Connect => {
                finish(&mut io, &package, case, &mut out).await;
                drop(io);
                (io, package) = open(case, side.connect().await, &mut out).await;
            }
            Step::Second => {
                let mut other = side.connect().await;
                out.push(format!("second client: {:?}", read(&mut other).await));
                second = Some(other);
            }
            Step::FirstLeaves => {
                finish(&mut io, &package, case, &mut out).await;
                drop(io);
                let other = second.take().unwrap_or_else(|| panic!("{}: !first-leaves without !second", case.name));
                (io, package) = open(case, other, &mut out).await;
            }
        }
    }
    finish(&mut io, &package, case, &mut out).await;
    out
}

/// Connects, records the greeting and negotiates (unless the case does it itself).
async fn open(case: &Case, mut io: Io, out: &mut Vec<String>) -> (Io, String) {
    let Read::Line(greeting) = read(&mut io).await else { panic!("{}: no greeting", case.name) };
    let value: Value = serde_json::from_str(&greeting).unwrap();
    let package = value["QMP"]["version"]["package"].as_str().unwrap_or_default().to_owned();
    out.push(normalise(&greeting, &package, case));
    if !case.raw {
        io.write_all(b"{\"execute\": \"qmp_capabilities\"}\n").await.unwrap();
        let reply = read(&mut io).await;
        assert_eq!(reply, Read::Line("{\"return\": {}}".into()), "{}: negotiation", case.name);
    }
    (io, package)
}

/// Collects whatever else the connection's input caused, up to the answer to [`SYNC`] (or
/// the end of the connection).
async fn finish(io: &mut Io, package: &str, case: &Case, out: &mut Vec<String>) {
    if io.write_all(SYNC.as_bytes()).await.is_err() {
        out.push(format!("{:?}", Read::Eof));
        return;
    }
    loop {
        match read(io).await {
            Read::Line(line) if line.contains("\"__end\"") => return,
            Read::Line(line) if is_firmware_reset(&serde_json::from_str(&line).unwrap()) => {}
            Read::Line(line) => out.push(normalise(&line, package, case)),
            other => {
                out.push(format!("{other:?}"));
                return;
            }
        }
    }
}

/// Sent at the end of each connection; its reply marks the end of the output.
const SYNC: &str = "{\"execute\": \"query-kvm\", \"id\": \"__end\"}\n";

/// What reading a line gave.
#[derive(Debug, PartialEq)]
enum Read {
    Line(String),
    Eof,
    /// Nothing within a second: the input caused no (more) reply.
    Silence,
}

/// The next line, without its CRLF. QEMU answers within milliseconds, so a second of silence
/// means no reply is coming.
async fn read(io: &mut Io) -> Read {
    let mut line = String::new();
    match tokio::time::timeout(Duration::from_secs(1), io.read_line(&mut line)).await {
        Err(_) => Read::Silence,
        Ok(Ok(0)) => Read::Eof,
        Ok(Ok(_)) => Read::Line(line.strip_suffix("\r\n").expect("CRLF").to_owned()),
        // QEMU resets a connection it closes with unread input (after `quit`).
        Ok(Err(_)) => Read::Eof,
    }
}

/// Whether a message is the reset that a real `-M pc` guest's firmware does by itself once it
/// runs (`RESET` with `guest: true`, `guest-reset`). It comes whenever the guest gets there,
/// before or after the replies around it depending on how busy the machine is, and the
/// simulator has no firmware (`DIFFERENCES.md`), so it is left out on both sides.
fn is_firmware_reset(message: &Value) -> bool {
    message["event"] == "RESET" && message["data"]["guest"] == true && message["data"]["reason"] == "guest-reset"
}

fn normalise(line: &str, package: &str, case: &Case) -> String {
    let line = if package.is_empty() { line.to_owned() } else { line.replace(package, "<package>") };
    // The launcher names the monitor's chardev `qmp0`; `-qmp` (which the simulator imitates)
    // names it `compat_monitor0`.
    let line = line.replace("\"qmp0\"", "\"compat_monitor0\"");
    let mut value: Value = serde_json::from_str(&line).unwrap();
    if let Some(map) = value.as_object_mut() {
        map.shift_remove("timestamp");
    }
    for pointer in &case.ignore {
        if let Some(member) = value.pointer_mut(pointer) {
            *member = Value::String("<ignored>".into());
        }
    }
    for pointer in &case.unordered {
        if let Some(Value::Array(items)) = value.pointer_mut(pointer) {
            items.sort_by_key(Value::to_string);
        }
    }
    value.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_7_2_answers_as_real_qemu_7_2() {
    let cases = parse(CASES);
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let mut shared: HashMap<(Machine, bool), Side> = HashMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let mut fresh = Vec::new();
        for qemu in [true, false] {
            if case.fresh {
                fresh.push(Side::start(case.machine, qemu).await);
            } else if let std::collections::hash_map::Entry::Vacant(entry) = shared.entry((case.machine, qemu)) {
                entry.insert(Side::start(case.machine, qemu).await);
            }
        }
        let side = |qemu: bool| if case.fresh { &fresh[usize::from(!qemu)] } else { &shared[&(case.machine, qemu)] };
        let real = run(case, side(true)).await;
        let sim = run(case, side(false)).await;
        if real != sim {
            failures.push(format!(
                "=== {}\n--- QEMU 7.2:\n{}\n--- sim:\n{}",
                case.name,
                real.join("\n"),
                sim.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}
