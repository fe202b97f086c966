//! Shared by the `server_*` tests: the project's one imitation of QEMU, `qmpkit-sim` in its
//! 10.0 profile ([`qemu_like`]), a loader of the QEMU transcripts in
//! `crates/qmpkit-proto/tests/data` ([`transcript`]), and a driver that replays them against
//! it ([`replay`]).
//!
//! Script lines use the format of those transcripts: `C: ` bytes to send, `S: ` one expected
//! message, `# ` comments, with `\r \n \t \\ \xNN` escapes. Directives: `F<n>: ` sends
//! bytes with `n` file descriptors attached (`SCM_RIGHTS`, unix connections only);
//! `!connect` starts a new connection (the previous one is closed); `!silent` checks that
//! nothing more arrives; `!release` lets one command held by the simulator's
//! `__org.qmpkit_hold` test hook finish; `!emit NAME` emits a data-less event.
//!
//! Replies are read by their framing (a complete JSON value and its CRLF), never by the
//! length of the recorded reply, and compared with event timestamps as `{..}` and fd numbers
//! as `N`: both differ from run to run, and an fd number also depends on what else the test
//! process holds open.

use std::sync::Arc;
use std::time::Duration;

use qmpkit::server::{ClientPolicy, Server, ServerBuilder};
use qmpkit_proto::transcript::unescape;
use qmpkit_sim::Sim;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// QEMU 10.0.2's package string, as the transcripts show it.
pub const PACKAGE: &str = "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1";

/// A simulated QEMU 10.0.2 (`-machine none`, running) with its test hooks
/// (`__org.qmpkit_hold`, `__org.qmpkit_fail`, ...), serving many clients at once as the
/// server library does by default; and its server.
pub fn qemu_like() -> (Server, Sim) {
    qemu_like_with(|b| b)
}

/// As [`qemu_like`], with changes to the server's builder.
///
/// # Panics
/// When the simulator cannot be built (a bug).
pub fn qemu_like_with(f: impl FnOnce(ServerBuilder) -> ServerBuilder + Send + 'static) -> (Server, Sim) {
    let sim = Sim::builder()
        .version("10.0.2")
        .package(PACKAGE)
        .faults(true)
        .clients(ClientPolicy::Many)
        .server(f)
        .build()
        .expect("the 10.0 profile builds");
    (sim.server().clone(), sim)
}

/// Serves `server` on a unix socket in a fresh temporary directory, until the test ends.
/// Returns the directory (removed when dropped), the socket's path and the serving task.
///
/// # Panics
/// When the socket cannot be bound.
pub async fn serve_on_unix(
    server: &Server,
) -> (tempfile::TempDir, std::path::PathBuf, tokio::task::JoinHandle<std::io::Result<()>>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("qmp.sock");
    let listener = server.bind(&qmpkit::transport::Endpoint::Unix(path.clone())).await.expect("bind the unix socket");
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve([listener], std::future::pending()).await }
    });
    (dir, path, serving)
}

/// Replaces the numbers of event timestamps with `..` and fd numbers (which differ from
/// QEMU's process to ours) with `N`.
pub fn normalize(text: &str) -> String {
    let text = normalize_timestamps(text);
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("\"fd\": ") {
        let (head, tail) = rest.split_at(at + "\"fd\": ".len());
        out.push_str(head);
        out.push('N');
        rest = tail.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

fn normalize_timestamps(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("\"timestamp\": {") {
        let (head, tail) = rest.split_at(at + "\"timestamp\": {".len());
        out.push_str(head);
        let end = tail.find('}').expect("timestamp object ends");
        out.push_str("..");
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A client connection under test.
pub struct Peer {
    reader: Reader,
    writer: Writer,
    unix: Option<Arc<std::os::unix::net::UnixStream>>,
    /// The task serving the connection, when the test runs it (not for [`Peer::connect`]).
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Peer {
    /// Connects over an in-memory pipe.
    pub fn duplex(server: &Server) -> Peer {
        let (client, io) = tokio::io::duplex(64 * 1024);
        let server = server.clone();
        let task = tokio::spawn(async move {
            let _ = server.serve_connection(io).await;
        });
        let (reader, writer) = tokio::io::split(client);
        Peer { reader: Box::new(reader), writer: Box::new(writer), unix: None, task: Some(task) }
    }

    /// Connects to a server listening on a unix socket.
    ///
    /// # Panics
    /// When the connection fails.
    pub async fn connect(path: &std::path::Path) -> Peer {
        let stream = tokio::net::UnixStream::connect(path).await.expect("connect to the server's socket");
        let (reader, writer) = stream.into_split();
        Peer { reader: Box::new(reader), writer: Box::new(writer), unix: None, task: None }
    }

    /// Connects over a unix socket pair, with fd passing.
    pub fn unix(server: &Server) -> Peer {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        theirs.set_nonblocking(true).unwrap();
        let theirs = tokio::net::UnixStream::from_std(theirs).unwrap();
        let server = server.clone();
        let task = tokio::spawn(async move {
            let _ = server.serve_unix(theirs).await;
        });
        let ours = Arc::new(ours);
        let dup = ours.try_clone().unwrap();
        dup.set_nonblocking(true).unwrap();
        let stream = tokio::net::UnixStream::from_std(dup).unwrap();
        let (reader, writer) = stream.into_split();
        Peer { reader: Box::new(reader), writer: Box::new(writer), unix: Some(ours), task: Some(task) }
    }

    /// Sends bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// Sends bytes with `n` file descriptors (ends of fresh socket pairs) attached.
    pub fn send_with_fds(&mut self, bytes: &[u8], n: usize) {
        use std::os::fd::AsFd;
        let unix = self.unix.as_ref().expect("fd passing needs a unix peer");
        let pipes: Vec<_> = (0..n).map(|_| std::os::unix::net::UnixStream::pair().unwrap()).collect();
        let fds: Vec<_> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
        let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(n))];
        let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
        assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
        let iov = [std::io::IoSlice::new(bytes)];
        let sent = rustix::net::sendmsg(unix.as_fd(), &iov, &mut control, rustix::net::SendFlags::empty()).unwrap();
        assert_eq!(sent, bytes.len());
    }

    /// Reads one message by its framing: a whole JSON value and the two bytes after it
    /// (QEMU's CRLF, which the caller compares), whatever its length.
    pub async fn read_message(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let read = async {
            let mut scan = Scan::default();
            let mut byte = [0u8; 1];
            let mut after = None;
            while after != Some(0) {
                let n = self.reader.read(&mut byte).await.unwrap();
                assert_eq!(n, 1, "EOF after {:?}", String::from_utf8_lossy(&out));
                out.push(byte[0]);
                after = match after {
                    Some(left) => Some(left - 1),
                    None if scan.push(byte[0]) => Some(2),
                    None => None,
                };
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), read).await.is_err() {
            panic!("no complete message; got {:?}", String::from_utf8_lossy(&out));
        }
        out
    }

    /// Checks that nothing arrives for a while (virtual time in the tests).
    pub async fn silent(&mut self) {
        let mut byte = [0u8; 1];
        if let Ok(n) = tokio::time::timeout(Duration::from_secs(1), self.reader.read(&mut byte)).await {
            panic!("expected silence, got {:?} ({n:?})", byte[0] as char);
        }
    }

    /// Reads until EOF and returns what came.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), self.reader.read_to_end(&mut out))
            .await
            .expect("EOF in time")
            .unwrap();
        out
    }

    /// Closes the connection and waits for the server side to finish.
    pub async fn close(self) {
        drop(self.writer);
        drop(self.reader);
        drop(self.unix);
        if let Some(task) = self.task {
            tokio::time::timeout(Duration::from_secs(10), task).await.expect("server side ends").unwrap();
        }
    }
}

/// Finds where a JSON value ends in a byte stream, byte by byte: enough of JSON's grammar
/// (nesting, strings and their escapes) to frame what a server writes.
#[derive(Default)]
struct Scan {
    depth: usize,
    in_string: bool,
    escaped: bool,
    started: bool,
}

impl Scan {
    /// Takes the next byte; true when it ends a value that began with `{` or `[`.
    fn push(&mut self, byte: u8) -> bool {
        if self.in_string {
            match (self.escaped, byte) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            return false;
        }
        match byte {
            b'"' => self.in_string = true,
            b'{' | b'[' => {
                self.depth += 1;
                self.started = true;
            }
            b'}' | b']' if self.depth > 0 => {
                self.depth -= 1;
                return self.started && self.depth == 0;
            }
            _ => {}
        }
        false
    }
}

/// A QEMU 10.0.2 transcript from `crates/qmpkit-proto/tests/data/qemu-10.0`, as a replay
/// script: a greeting after the first starts a new connection (`!connect`), a `C:` line whose
/// note says it carried descriptors becomes `F<n>:`, and the lines of one pretty-printed
/// message become one `S:` line.
///
/// # Panics
/// When the file is missing or malformed.
pub fn transcript(name: &str) -> Excerpt {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../qmpkit-proto/tests/data/qemu-10.0").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let source: Vec<&str> = text.lines().collect();
    let mut lines = Vec::new();
    let mut greetings = 0;
    let mut message = String::new();
    let mut scan = Scan::default();
    for (i, line) in source.iter().enumerate() {
        if let Some(text) = line.strip_prefix("S: ") {
            let bytes = unescape(text);
            if message.is_empty() && bytes.starts_with(b"{\"QMP\"") {
                greetings += 1;
                if greetings > 1 {
                    lines.push("!connect".to_owned());
                }
            }
            if bytes.is_empty() {
                continue;
            }
            message.push_str(text);
            // A reply the capture tool cut short stands alone (and `script` refuses it).
            let elided = text.contains("...<") && (text.ends_with(" bytes>") || text.contains("<truncated>"));
            let mut complete = false;
            for &byte in &bytes {
                complete |= scan.push(byte);
            }
            if elided || complete {
                lines.push(format!("S: {}", std::mem::take(&mut message)));
                scan = Scan::default();
            }
        } else if let Some(text) = line.strip_prefix("C: ") {
            // The capture tool notes descriptors on the line after the bytes they came with.
            let fds = source.get(i + 1).and_then(|next| next.strip_prefix("# (SCM_RIGHTS")).map(|note| {
                let count = note.split_once(": ").expect("an fd count").1;
                count.split(' ').next().and_then(|n| n.parse::<usize>().ok()).expect("an fd count")
            });
            lines.push(match fds {
                Some(n) => format!("F{n}: {text}"),
                None => format!("C: {text}"),
            });
        } else {
            lines.push((*line).to_owned());
        }
    }
    assert!(message.is_empty(), "{name}: an incomplete message at the end");
    Excerpt { name: name.to_owned(), lines }
}

/// A replay script taken from a transcript, with the exchanges a test leaves out.
#[derive(Clone, Debug)]
pub struct Excerpt {
    name: String,
    lines: Vec<String>,
}

impl Excerpt {
    /// Leaves out each exchange (a `C:`/`F<n>:` line and the replies up to the next one)
    /// whose request contains one of `needles`: commands the test server does not have, or
    /// replies the transcript could not record whole.
    ///
    /// # Panics
    /// When a needle matches no request, so that a stale selector shows.
    #[must_use]
    pub fn without(mut self, needles: &[&str]) -> Self {
        for needle in needles {
            let start = self.request(needle);
            let end = (start + 1..self.lines.len()).find(|&i| is_request(&self.lines[i])).unwrap_or(self.lines.len());
            self.lines.drain(start..end);
        }
        self
    }

    /// Adds expected replies right after the request that contains `needle`, for a reply the
    /// transcript summarised in a note instead of recording it.
    ///
    /// # Panics
    /// When no request contains `needle`.
    #[must_use]
    pub fn replies_to(mut self, needle: &str, replies: impl IntoIterator<Item = String>) -> Self {
        let at = self.request(needle) + 1;
        let replies: Vec<String> = replies.into_iter().map(|r| format!("S: {r}")).collect();
        self.lines.splice(at..at, replies);
        self
    }

    /// The messages the server sent, in order, as bytes.
    #[must_use]
    pub fn replies(&self) -> Vec<Vec<u8>> {
        self.lines.iter().filter_map(|l| l.strip_prefix("S: ")).map(unescape).collect()
    }

    /// The script to [`replay`].
    ///
    /// # Panics
    /// When a reply in it was elided by the capture tool, so its bytes are not QEMU's.
    #[must_use]
    pub fn script(&self) -> String {
        for line in &self.lines {
            assert!(
                !(line.starts_with("S: ") && line.contains("...<")),
                "{}: elided reply kept: {line:.80}",
                self.name
            );
        }
        self.lines.join("\n")
    }

    fn request(&self, needle: &str) -> usize {
        self.lines
            .iter()
            .position(|l| is_request(l) && l.contains(needle))
            .unwrap_or_else(|| panic!("{}: no request contains {needle:?}", self.name))
    }
}

fn is_request(line: &str) -> bool {
    line.starts_with("C: ")
        || (line.starts_with('F') && line.split_once(": ").is_some_and(|(n, _)| n[1..].parse::<usize>().is_ok()))
}

/// Replays a transcript excerpt against `server` (the server of `sim`), starting with a new
/// connection.
pub async fn replay(server: &Server, sim: &Sim, unix: bool, script: &str) {
    let connect = || if unix { Peer::unix(server) } else { Peer::duplex(server) };
    let mut peer = connect();
    for (n, line) in script.lines().enumerate() {
        let line = line.trim_start();
        let n = n + 1;
        if let Some(text) = line.strip_prefix("C: ") {
            peer.send(&unescape(text)).await;
        } else if let Some(rest) = line.strip_prefix('F') {
            let (count, text) = rest.split_once(": ").expect("F<n>: bytes");
            peer.send_with_fds(&unescape(text), count.parse().unwrap());
        } else if let Some(text) = line.strip_prefix("S: ") {
            let expected = String::from_utf8(unescape(text)).unwrap();
            let got = String::from_utf8_lossy(&peer.read_message().await).into_owned();
            assert_eq!(normalize(&got), normalize(&expected), "script line {n}: {line}");
        } else if line == "!connect" {
            peer.close().await;
            peer = connect();
        } else if line == "!silent" {
            peer.silent().await;
        } else if let Some(name) = line.strip_prefix("!emit ") {
            server.events().emit_value(name, None);
        } else if line == "!release" {
            sim.machine().release_held(1);
        } else {
            assert!(line.is_empty() || line.starts_with('#'), "script line {n}: unknown directive {line:?}");
        }
    }
    peer.silent().await;
    peer.close().await;
}
