//! The task that owns one client connection.
//!
//! Architecture Invariant: exactly one task reads, writes and routes for a connection. It
//! assigns ids, writes commands in order, reads and writes at the same time (so a large command
//! can never deadlock against a server that is busy writing replies to us), hands each reply to
//! its caller and each event to the subscribers in wire order, and when the connection ends it
//! fails every pending call at once with the reason.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use qmpkit_proto::client::{ClientEvent, Dropped};
use qmpkit_proto::message::RawResponse;
use qmpkit_proto::{ClientSession, Command, Error as ProtoError, Id};
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::client::events::Subscribers;
use crate::error::{Disconnect, Error};
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
    /// The command; an id set here is used as given.
    pub(crate) command: Command,
    /// Send it without any id (its reply is the next id-less response).
    pub(crate) anonymous: bool,
    /// File descriptors to send with the command's bytes.
    pub(crate) fds: Vec<OwnedFd>,
    /// Where the reply goes.
    pub(crate) reply: oneshot::Sender<Result<RawResponse, Error>>,
}

/// What the session stores for a pending call.
#[derive(Debug)]
pub(crate) struct Pending {
    key: u64,
    name: String,
    reply: oneshot::Sender<Result<RawResponse, Error>>,
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
    keys: HashMap<u64, Id>,
    fds: HashMap<Id, Vec<OwnedFd>>,
    out: VecDeque<Outgoing>,
}

impl Driver {
    pub(crate) fn new(
        session: ClientSession<Pending>,
        subscribers: Arc<Subscribers>,
        ready: oneshot::Sender<Result<Ready, Error>>,
        closed: watch::Sender<Option<Disconnect>>,
    ) -> Self {
        Driver {
            session,
            subscribers,
            ready: Some(ready),
            closed,
            keys: HashMap::new(),
            fds: HashMap::new(),
            out: VecDeque::new(),
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
        let reason = loop {
            self.pump_transmit();
            tokio::select! {
                biased;
                Some(key) = cancels.recv() => self.cancel(key),
                message = calls.recv() => match message {
                    Some(ToDriver::Call(call)) => self.call(call),
                    // Every handle is gone, or one asked to close.
                    Some(ToDriver::Close) | None => break Disconnect::Closed,
                },
                written = write_front(&mut writer, &mut self.out), if !self.out.is_empty() => {
                    if let Err(err) = written {
                        break Disconnect::Io(Arc::new(err));
                    }
                }
                read = reader.read(&mut buf) => match read {
                    Ok(0) => {
                        let mid_message = matches!(self.session.handle_eof(), ProtoError::Protocol(qmpkit_proto::ProtocolError::TruncatedMessage));
                        break if mid_message { Disconnect::EofMidMessage } else { Disconnect::Eof };
                    }
                    Ok(n) => {
                        self.session.handle_input(&buf[..n]);
                        if let Some(reason) = self.route() {
                            break reason;
                        }
                    }
                    Err(err) => break Disconnect::Io(Arc::new(err)),
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
    fn call(&mut self, call: Box<Call>) {
        let Call { key, command, anonymous, fds, reply } = *call;
        let pending = Pending { key, name: command.name.clone(), reply };
        if anonymous {
            if let Err((misuse, pending)) = self.session.send_without_id(command, pending) {
                let _ = pending.reply.send(Err(Error::Misuse(misuse)));
            }
            return;
        }
        match self.session.send(command, pending) {
            Ok(id) => {
                if !fds.is_empty() {
                    self.fds.insert(id.clone(), fds);
                }
                self.keys.insert(key, id);
            }
            Err((misuse, pending)) => {
                let _ = pending.reply.send(Err(Error::Misuse(misuse)));
            }
        }
    }

    /// A caller gave up (timeout, dropped future): forget its call. A command not yet written
    /// is never written; a late reply is dropped.
    fn cancel(&mut self, key: u64) {
        if let Some(id) = self.keys.remove(&key) {
            self.session.cancel(&id);
            self.fds.remove(&id);
        }
    }

    fn pump_transmit(&mut self) {
        while let Some(transmit) = self.session.poll_transmit() {
            let fds = transmit.id.as_ref().and_then(|id| self.fds.remove(id)).unwrap_or_default();
            self.out.push_back(Outgoing { bytes: transmit.bytes, written: 0, fds });
        }
    }

    /// Routes everything the session has decoded; returns a reason when the session failed.
    fn route(&mut self) -> Option<Disconnect> {
        while let Some(event) = self.session.poll_event() {
            match event {
                ClientEvent::Greeting(greeting) => {
                    tracing::debug!(version = ?greeting.version, capabilities = ?greeting.capabilities, "QMP greeting");
                }
                ClientEvent::Ready => self.signal_ready(),
                ClientEvent::Reply { data, response, .. } => {
                    self.keys.remove(&data.key);
                    // The caller may have given up; then nobody listens and that is fine.
                    let _ = data.reply.send(Ok(response));
                }
                ClientEvent::Event(event) => self.subscribers.publish(&event),
                ClientEvent::Dropped(dropped) => match dropped {
                    Dropped::UnknownId(response) => {
                        tracing::debug!(id = ?response.id, "dropped a reply nobody waits for");
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
            let result = if pending.name == "quit" && matches!(reason, Disconnect::Eof) {
                let empty = RawValue::from_string("{}".to_owned())
                    .map_err(|e| Error::Decode { command: "quit".into(), reason: e.to_string() });
                empty.map(|empty| RawResponse { id: None, result: Ok(empty) })
            } else {
                Err(Error::Disconnected(reason.clone()))
            };
            let _ = pending.reply.send(result);
        }
        self.keys.clear();
        self.fds.clear();
        self.out.clear();
        self.subscribers.end(reason);
    }
}

/// Writes some of the first queued message. Cancel-safe, like [`Writer::write_some`].
async fn write_front(writer: &mut Writer, out: &mut VecDeque<Outgoing>) -> io::Result<()> {
    let Some(front) = out.front_mut() else { return Ok(()) };
    let n = writer.write_some(&front.bytes[front.written..], &front.fds).await?;
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
