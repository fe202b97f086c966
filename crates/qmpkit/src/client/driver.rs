//! The task that owns one client connection.
//!
//! Architecture Invariant: exactly one task reads, writes and routes for a connection. It
//! assigns ids, writes commands in order, reads and writes at the same time (so a large command
//! can never deadlock against a server that is busy writing replies to us), hands each reply to
//! its caller and each event to the subscribers in wire order, and when the connection ends it
//! fails every pending call at once with the reason.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use qmpkit_proto::client::{ClientEvent, ClientStats, Dropped, EncodedCommand};
use qmpkit_proto::message::RawResponse;
use qmpkit_proto::{ClientSession, Error as ProtoError};
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::client::events::Subscribers;
use crate::error::{Disconnect, Error, GoneCause};
use crate::transport::Socket;

/// How much the driver reads at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A request from a [`Client`](super::Client) handle to the driver.
pub(crate) enum ToDriver {
    /// Send a command.
    Call(Box<Call>),
    /// Close the connection.
    Close,
}

/// A command to send and where its reply goes.
pub(crate) struct Call {
    /// The handle's key for the call, used to cancel it.
    pub(crate) key: u64,
    /// The command, encoded by the caller's task; an id set on it is used as given.
    pub(crate) command: EncodedCommand,
    /// Send it without any id (its reply is the next id-less response).
    pub(crate) anonymous: bool,
    /// File descriptors to send with the command's bytes.
    pub(crate) fds: Vec<OwnedFd>,
    /// Where the reply goes.
    pub(crate) reply: oneshot::Sender<Result<RawResponse, Error>>,
}

/// What the session stores for a pending call: the session's table is the only routing
/// table, so the handle's key (for cancellation) and the descriptors waiting to be written
/// live here too.
#[derive(Debug)]
pub(crate) struct Pending {
    key: u64,
    /// `quit`, whose success is the end of the stream.
    quit: bool,
    /// Descriptors to send with the command's bytes, taken when they are written.
    fds: Vec<OwnedFd>,
    reply: oneshot::Sender<Result<RawResponse, Error>>,
}

/// What the driver shares with the handles besides the subscribers.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The session's counts, copied after each read that changed them.
    pub(crate) stats: Mutex<ClientStats>,
    /// Whether the greeting arrived, to tell a silent peer from a slow negotiation.
    pub(crate) greeted: AtomicBool,
}

/// What the handshake learned, sent once the session is ready.
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    pub(crate) greeting: Option<qmpkit_proto::Greeting>,
    pub(crate) oob: bool,
}

/// The read side of the connection.
pub(crate) enum Reader {
    /// A unix or TCP socket.
    Socket(Arc<Socket>),
    /// Any other stream.
    Other(Box<dyn AsyncRead + Send + Unpin>),
}

impl Reader {
    /// Reads some bytes. Cancel-safe.
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Reader::Socket(socket) => socket.read(buf).await,
            Reader::Other(r) => r.read(buf).await,
        }
    }
}

/// The write side of the connection.
pub(crate) enum Writer {
    /// A unix or TCP socket; a unix socket can carry file descriptors.
    Socket(Arc<Socket>),
    /// Any other stream.
    Other(Box<dyn AsyncWrite + Send + Unpin>),
}

impl Writer {
    /// Writes some of `bytes`, with `fds` attached when there are any. Cancel-safe: if the
    /// future is dropped before it completes, nothing was written.
    async fn write_some(&mut self, bytes: &[u8], fds: &[OwnedFd]) -> io::Result<usize> {
        match self {
            Writer::Socket(socket) => {
                let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
                socket.write(bytes, &borrowed).await
            }
            Writer::Other(_) if !fds.is_empty() => {
                Err(io::Error::new(io::ErrorKind::Unsupported, "file descriptors need a unix socket"))
            }
            Writer::Other(w) => w.write(bytes).await,
        }
    }

    /// Pushes out what a buffering stream (a `BufWriter`, TLS) holds. Cancel-safe: the
    /// stream keeps its state, and the driver flushes again until a flush completes.
    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Writer::Socket(_) => Ok(()),
            Writer::Other(w) => w.flush().await,
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Writer::Socket(socket) => socket.shutdown_write(),
            Writer::Other(w) => w.shutdown().await,
        };
    }
}

/// Bytes waiting to be written.
struct Outgoing {
    bytes: Vec<u8>,
    written: usize,
    fds: Vec<OwnedFd>,
}

/// Everything the driver task owns besides the IO halves.
pub(crate) struct Driver {
    pub(crate) session: ClientSession<Pending>,
    pub(crate) subscribers: Arc<Subscribers>,
    pub(crate) ready: Option<oneshot::Sender<Result<Ready, Error>>>,
    pub(crate) closed: watch::Sender<Option<Disconnect>>,
    shared: Arc<Shared>,
    /// The last counts copied to `shared`.
    stats: ClientStats,
    /// How many pending calls still hold descriptors; while none do, writing a command
    /// looks nothing up.
    fds_waiting: usize,
    out: VecDeque<Outgoing>,
    /// Bytes were written to a stream that may buffer them and no flush completed since.
    unflushed: bool,
}

impl Driver {
    pub(crate) fn new(
        session: ClientSession<Pending>,
        subscribers: Arc<Subscribers>,
        ready: oneshot::Sender<Result<Ready, Error>>,
        closed: watch::Sender<Option<Disconnect>>,
        shared: Arc<Shared>,
    ) -> Self {
        Driver {
            session,
            subscribers,
            ready: Some(ready),
            closed,
            shared,
            stats: ClientStats::default(),
            fds_waiting: 0,
            out: VecDeque::new(),
            unflushed: false,
        }
    }

    /// Runs the connection until it ends.
    pub(crate) async fn run(
        mut self,
        mut reader: Reader,
        mut writer: Writer,
        mut calls: mpsc::Receiver<ToDriver>,
        mut cancels: mpsc::UnboundedReceiver<u64>,
    ) {
        if self.session.state() == qmpkit_proto::client::ClientState::Ready {
            self.signal_ready();
        }
        let mut buf = vec![0u8; READ_CHUNK];
        let mut cancels_armed = false;
        let mut calls_armed = false;
        let reason = loop {
            self.pump_transmit();
            // Calls still queued join what is written first, in one system call.
            if calls.is_empty() {
                self.write_now(&writer);
            }
            tokio::select! {
                biased;
                Some(key) = poll_fn(|cx| { let idle = cancels_armed && cancels.is_empty() && !cancels.is_closed(); recv_armed(&mut cancels_armed, idle, cx, |cx| cancels.poll_recv(cx)) }) => self.cancel(key),
                message = poll_fn(|cx| { let idle = calls_armed && calls.is_empty() && !calls.is_closed(); recv_armed(&mut calls_armed, idle, cx, |cx| calls.poll_recv(cx)) }) => match message {
                    Some(ToDriver::Call(call)) => self.call(*call),
                    // Every handle is gone, or one asked to close.
                    Some(ToDriver::Close) | None => break Disconnect::Closed,
                },
                written = write_or_flush(&mut writer, &mut self.out, &mut self.unflushed),
                    if !self.out.is_empty() || self.unflushed =>
                {
                    if let Err(err) = written {
                        break Disconnect::from_io(err);
                    }
                }
                read = reader.read(&mut buf) => match read {
                    Ok(0) => {
                        let mid_message = matches!(self.session.handle_eof(), ProtoError::Protocol(qmpkit_proto::ProtocolError::TruncatedMessage));
                        let cause = if mid_message { GoneCause::EofMidMessage } else { GoneCause::Eof };
                        break Disconnect::ServerGone { cause };
                    }
                    Ok(n) => {
                        self.session.handle_input(&buf[..n]);
                        let ended = self.route();
                        self.publish_stats();
                        if let Some(reason) = ended {
                            break reason;
                        }
                    }
                    Err(err) => break Disconnect::from_io(err),
                },
            }
        };
        tracing::debug!(%reason, "QMP connection ended");
        if matches!(reason, Disconnect::Closed) {
            writer.shutdown().await;
        }
        self.finish(&reason);
        calls.close();
        while let Ok(message) = calls.try_recv() {
            if let ToDriver::Call(call) = message {
                let _ = call.reply.send(Err(Error::Disconnected(reason.clone())));
            }
        }
    }

    fn signal_ready(&mut self) {
        if let Some(ready) = self.ready.take() {
            let greeting = self.session.greeting().cloned();
            let _ = ready.send(Ok(Ready { greeting, oob: self.session.oob_enabled() }));
        }
    }

    /// Queues a call. Descriptors only come with calls on unix sockets: `Client::call` refuses
    /// them on other transports before anything is queued.
    fn call(&mut self, call: Call) {
        let Call { key, command, anonymous, fds, reply } = call;
        let has_fds = !fds.is_empty();
        let pending = Pending { key, quit: command.name() == "quit", fds, reply };
        let sent = if anonymous {
            self.session.send_encoded_without_id(command, pending)
        } else {
            self.session.send_encoded(command, pending).map(drop)
        };
        match sent {
            Ok(()) if has_fds => self.fds_waiting += 1,
            Ok(()) => {}
            Err((misuse, pending)) => {
                let _ = pending.reply.send(Err(Error::Misuse(misuse)));
            }
        }
    }

    /// A caller gave up (timeout, dropped future): forget its call. A command not yet written
    /// is never written; a late reply is dropped. Finding the call walks the pending table,
    /// which is fine for what only timeouts and dropped futures do.
    fn cancel(&mut self, key: u64) {
        if let Some(id) = self.session.find(|pending| pending.key == key) {
            if let Some(pending) = self.session.cancel(&id) {
                if !pending.fds.is_empty() {
                    self.fds_waiting -= 1;
                }
            }
        }
    }

    fn pump_transmit(&mut self) {
        while let Some(transmit) = self.session.poll_transmit() {
            let mut fds = Vec::new();
            if self.fds_waiting > 0 {
                if let Some(pending) = transmit.id.as_ref().and_then(|id| self.session.data_mut(id)) {
                    fds = std::mem::take(&mut pending.fds);
                    if !fds.is_empty() {
                        self.fds_waiting -= 1;
                    }
                }
            }
            // A command without descriptors joins the one queued before it, so that a burst
            // of commands goes out in one system call. Descriptors go with the first bytes of
            // their own command, so a command that has them is never appended to another.
            match self.out.back_mut() {
                Some(back) if fds.is_empty() && back.fds.is_empty() => back.bytes.extend_from_slice(&transmit.bytes),
                _ => self.out.push_back(Outgoing { bytes: transmit.bytes, written: 0, fds }),
            }
        }
    }

    /// Writes what is queued straight to a socket while it takes it, which spares the loop a
    /// round (and its polls of every branch) per command. Descriptors, a full socket and
    /// errors are left to the loop's write, which waits for room and reports errors.
    fn write_now(&mut self, writer: &Writer) {
        let Writer::Socket(socket) = writer else { return };
        while let Some(front) = self.out.front_mut() {
            if !front.fds.is_empty() {
                return;
            }
            match socket.try_write(&front.bytes[front.written..]) {
                Ok(n) if n > 0 => {
                    front.written += n;
                    if front.written < front.bytes.len() {
                        return;
                    }
                    self.out.pop_front();
                }
                _ => return,
            }
        }
    }

    /// Copies the session's counts for `Client::stats` when they changed.
    fn publish_stats(&mut self) {
        let stats = self.session.stats();
        if stats != self.stats {
            self.stats = stats;
            *self.shared.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = stats;
        }
    }

    /// Routes everything the session has decoded; returns a reason when the session failed.
    fn route(&mut self) -> Option<Disconnect> {
        while let Some(event) = self.session.poll_event() {
            match event {
                ClientEvent::Greeting(greeting) => {
                    self.shared.greeted.store(true, Ordering::Release);
                    tracing::debug!(version = ?greeting.version, capabilities = ?greeting.capabilities, "QMP greeting");
                }
                ClientEvent::Ready => self.signal_ready(),
                ClientEvent::Reply { data, response, .. } => {
                    // The caller may have given up; then nobody listens and that is fine.
                    let _ = data.reply.send(Ok(response));
                }
                ClientEvent::Failed { data, name, error } => {
                    tracing::warn!(command = %name, %error, "failed a call: the peer answered without an id");
                    let _ = data.reply.send(Err(Error::Protocol(error)));
                }
                ClientEvent::Event(event) => self.subscribers.publish(event),
                ClientEvent::Dropped(dropped) => match dropped {
                    Dropped::UnknownId(response) => {
                        // A late reply to a call whose caller gave up, or a reply nobody asked for.
                        tracing::warn!(id = ?response.id, "dropped a reply nobody waits for");
                    }
                    Dropped::ServerParseError(error) => {
                        tracing::warn!(%error, "the server could not parse something it was sent");
                    }
                    Dropped::Malformed(error) => tracing::warn!(%error, "dropped a malformed message"),
                },
                ClientEvent::Closed(error) => {
                    return Some(match error {
                        ProtoError::Limit(limit) => Disconnect::Limit(limit),
                        ProtoError::Protocol(protocol) => Disconnect::Protocol(protocol),
                        other => Disconnect::Protocol(qmpkit_proto::ProtocolError::UnknownMessage(other.to_string())),
                    });
                }
            }
        }
        None
    }

    /// Fails every pending call, ends every event stream and tells the handles.
    fn finish(&mut self, reason: &Disconnect) {
        // Published first, so that a caller who receives the error below already sees the
        // reason in `Client::closed_reason`.
        self.closed.send_replace(Some(reason.clone()));
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(match reason {
                Disconnect::Protocol(p) => Error::Protocol(p.clone()),
                other => Error::Disconnected(other.clone()),
            }));
        }
        for pending in self.session.drain() {
            // `quit` makes QEMU exit; the end of the stream is its success.
            let gone = matches!(reason, Disconnect::ServerGone { cause: GoneCause::Eof | GoneCause::Reset(_) });
            let result = if pending.quit && gone {
                let empty = RawValue::from_string("{}".to_owned())
                    .map_err(|e| Error::Decode { command: "quit".into(), reason: e.to_string() });
                empty.map(|empty| RawResponse { id: None, result: Ok(empty) })
            } else {
                Err(Error::Disconnected(reason.clone()))
            };
            let _ = pending.reply.send(result);
        }
        self.fds_waiting = 0;
        self.out.clear();
        self.subscribers.end(reason);
    }
}

/// Receives from a channel as its `poll_recv` does, but looks before polling. A poll that
/// finds the channel empty registers the task's waker with it, which stays registered until a
/// send or the senders' end wakes the task; while it does (`armed`) and the channel is still
/// empty and open (`idle`, which implies `armed`), there is nothing to receive and the wake-up is already arranged, so a look
/// (a few loads) replaces the poll (the task's budget, two pops and the registration). The
/// driver's loop looks at both channels several times per command.
fn recv_armed<T>(
    armed: &mut bool,
    idle: bool,
    cx: &mut Context<'_>,
    recv: impl FnOnce(&mut Context<'_>) -> Poll<Option<T>>,
) -> Poll<Option<T>> {
    if idle {
        return Poll::Pending;
    }
    // Without budget, the poll returns at once without registering the waker.
    let registers = tokio::task::coop::has_budget_remaining();
    let polled = recv(cx);
    *armed = polled.is_pending() && registers;
    polled
}

/// Writes some of the first queued message, or, once nothing is queued, flushes what a
/// buffering stream holds. Cancel-safe, like [`Writer::write_some`] and [`Writer::flush`].
async fn write_or_flush(writer: &mut Writer, out: &mut VecDeque<Outgoing>, unflushed: &mut bool) -> io::Result<()> {
    let Some(front) = out.front_mut() else {
        writer.flush().await?;
        *unflushed = false;
        return Ok(());
    };
    let n = writer.write_some(&front.bytes[front.written..], &front.fds).await?;
    *unflushed = matches!(writer, Writer::Other(_));
    if n == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    // The descriptors went with the first bytes.
    front.fds.clear();
    front.written += n;
    if front.written == front.bytes.len() {
        out.pop_front();
    }
    Ok(())
}

/// What one connection could not deliver, from [`Client::stats`](super::Client::stats).
/// Every message the client drops is counted here (and logged with `tracing::warn!`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Replies whose id matches no pending call: late replies to calls whose caller gave up
    /// (a timeout, a dropped future), or replies nobody asked for.
    pub unknown_ids: u64,
    /// Errors without an id that answered no command: QEMU could not parse some input.
    pub server_parse_errors: u64,
    /// Messages that were not valid JSON or not QMP.
    pub malformed: u64,
    /// Replies without an id while the calls in flight had ids (a peer that drops ids): taken
    /// as the reply of the only call in flight, or failing the oldest one.
    pub missing_ids: u64,
    /// Events received.
    pub events: u64,
    /// Events dropped because a subscriber's queue was full (each also shows in that
    /// subscriber's [`EventItem::Lagged`](super::EventItem::Lagged) marker).
    pub lagged_events: u64,
    /// Event filters that panicked (the event was not delivered to them).
    pub filter_panics: u64,
}

impl Stats {
    pub(crate) fn new(session: ClientStats, subscribers: &Subscribers) -> Self {
        Stats {
            unknown_ids: session.unknown_ids,
            server_parse_errors: session.server_parse_errors,
            malformed: session.malformed,
            missing_ids: session.missing_ids,
            events: session.events,
            lagged_events: subscribers.lagged.load(Ordering::Relaxed),
            filter_panics: subscribers.filter_panics.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Receives from `rx` as the driver's loop does, handing on what it gets.
    async fn forward(mut rx: mpsc::UnboundedReceiver<u32>, seen: mpsc::UnboundedSender<u32>) {
        let mut armed = false;
        while let Some(n) = poll_fn(|cx| {
            let idle = armed && rx.is_empty() && !rx.is_closed();
            recv_armed(&mut armed, idle, cx, |cx| rx.poll_recv(cx))
        })
        .await
        {
            let _ = seen.send(n);
        }
    }

    /// Bursts of every length up to past the task's budget, each followed by one message to
    /// the task gone idle: every message must wake it, and so must the senders' end.
    #[tokio::test]
    async fn armed_receive_misses_no_message_and_no_end() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(forward(rx, seen_tx));
        let mut next = 0;
        for burst in 1..300 {
            for _ in 0..=burst {
                tx.send(next).unwrap();
                next += 1;
            }
            // The burst is taken, then the task waits.
            for expected in next - burst - 1..next {
                let got = tokio::time::timeout(Duration::from_secs(10), seen.recv()).await;
                assert_eq!(got, Ok(Some(expected)), "after a burst of {burst}");
            }
            tx.send(next).unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), seen.recv()).await;
            assert_eq!(got, Ok(Some(next)), "the message after a burst of {burst}");
            next += 1;
        }
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    }
}
