//! One connection to a guest agent and its synchronisation state.
//!
//! The agent protocol has no request ids that every agent version echoes, no greeting and no
//! way to cancel a command, so the only thing that keeps a client's view of the channel true is
//! QGA's resynchronisation: send the `0xFF` reset byte (which makes the agent drop any half-read
//! command), then `guest-sync-delimited` with a fresh random id; the agent answers with a `0xFF`
//! sentinel followed by `{"return": id}`. Everything before the sentinel, and every reply that
//! does not carry the id, belongs to something abandoned and is discarded.
//!
//! [`Conn`] is only ever used by one call at a time (the agent's mutex serialises them), and a
//! call's future may be dropped at any await point (a timeout, `select!`). The rule that keeps
//! that safe: `synced` is cleared before anything is written and set only when the reply that
//! answers what was written has been read, so an interrupted call always leaves the connection
//! marked for a resync.

use std::sync::Arc;

use qmpkit_proto::message::{ClientMessage, RawResponse};
use qmpkit_proto::{Command, FrameError, Framer, Id, Limits, Mode, ProtocolError};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Disconnect, Error, GoneCause};
use crate::transport::{Endpoint, Stream};

/// The reset byte and the sentinel: `0xFF` never occurs in UTF-8, so never in JSON text.
pub(crate) const SENTINEL: u8 = 0xFF;

/// Anything the agent can be spoken to over.
pub(crate) trait AgentIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AgentIo for T {}

/// Where the connection comes from: an endpoint can be dialled again after the agent goes
/// away; a stream given by the caller cannot.
pub(crate) enum Source {
    Endpoint(Endpoint),
    Stream,
}

/// What the reader is doing with the bytes it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resync {
    /// Discarding everything up to the next sentinel.
    Hunting,
    /// Past a sentinel: looking for `{"return": id}`.
    AfterSentinel,
}

pub(crate) struct Conn {
    source: Source,
    io: Option<Box<dyn AgentIo>>,
    /// Why a caller-given stream ended; it cannot be reopened.
    closed: Option<Disconnect>,
    framer: Framer,
    /// Bytes read but not yet given to the framer (only while resynchronising).
    inbox: Vec<u8>,
    scratch: Box<[u8]>,
    /// Whether the next byte from the agent is the start of the reply to our next command.
    synced: bool,
    /// Replies dropped because they answered an abandoned call.
    stale: u64,
}

impl Conn {
    pub(crate) fn new(source: Source, io: Option<Box<dyn AgentIo>>, max_message_bytes: usize) -> Conn {
        let limits = Limits { max_message_bytes, ..Limits::default() };
        Conn {
            source,
            io,
            closed: None,
            framer: Framer::new(Mode::Client, limits),
            inbox: Vec::new(),
            scratch: vec![0; 64 * 1024].into_boxed_slice(),
            synced: false,
            stale: 0,
        }
    }

    pub(crate) fn stale_replies(&self) -> u64 {
        self.stale
    }

    /// Opens the connection when there is none.
    async fn ensure_open(&mut self) -> Result<(), Error> {
        if self.io.is_some() {
            return Ok(());
        }
        match &self.source {
            Source::Endpoint(endpoint) => {
                let stream = Stream::connect(endpoint)
                    .await
                    .map_err(|e| Error::Connect { endpoint: endpoint.to_string(), source: Arc::new(e) })?;
                tracing::debug!(%endpoint, "connected to the guest agent");
                self.io = Some(Box::new(stream));
                self.synced = false;
                Ok(())
            }
            Source::Stream => Err(Error::Disconnected(self.closed.clone().unwrap_or(Disconnect::Closed))),
        }
    }

    /// Forgets the connection after it failed; the next call dials again.
    fn drop_connection(&mut self, reason: Disconnect) -> Error {
        self.io = None;
        self.synced = false;
        self.framer.reset();
        self.inbox.clear();
        if matches!(self.source, Source::Stream) {
            self.closed = Some(reason.clone());
        }
        Error::Disconnected(reason)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let io = self.io.as_mut().ok_or(Error::Disconnected(Disconnect::Closed))?;
        let result = async {
            io.write_all(bytes).await?;
            io.flush().await
        }
        .await;
        result.map_err(|e| self.drop_connection(Disconnect::from_io(e)))
    }

    /// Reads more bytes into `scratch`; the end of the stream is an error.
    async fn fill(&mut self) -> Result<usize, Error> {
        let io = self.io.as_mut().ok_or(Error::Disconnected(Disconnect::Closed))?;
        match io.read(&mut self.scratch).await {
            Ok(0) => {
                let cause = if self.framer.is_mid_message() { GoneCause::EofMidMessage } else { GoneCause::Eof };
                Err(self.drop_connection(Disconnect::ServerGone { cause }))
            }
            Ok(n) => Ok(n),
            Err(e) => Err(self.drop_connection(Disconnect::from_io(e))),
        }
    }

    /// Connects if needed and resynchronises if the channel may hold anything stale.
    pub(crate) async fn ready(&mut self) -> Result<(), Error> {
        self.ensure_open().await?;
        if !self.synced {
            self.resync().await?;
        }
        Ok(())
    }

    /// Connects if needed and resynchronises unconditionally.
    pub(crate) async fn force_resync(&mut self) -> Result<(), Error> {
        self.ensure_open().await?;
        self.resync().await
    }

    /// Sends the reset byte and `guest-sync-delimited`, then discards input until the sentinel
    /// followed by the reply carrying the fresh id.
    async fn resync(&mut self) -> Result<(), Error> {
        self.synced = false;
        let id = super::random_id();
        let mut bytes = vec![SENTINEL];
        let mut arguments = Map::new();
        arguments.insert("id".into(), Value::from(id));
        Command::new("guest-sync-delimited").with_arguments(arguments).encode(&mut bytes);
        tracing::debug!(id, "resynchronising with the guest agent");
        self.write(&bytes).await?;
        // Whatever the framer still holds arrived before the reset: it is dropped at the sentinel.
        let mut state = Resync::Hunting;
        loop {
            if self.scan_for_sync(&mut state, id) {
                self.synced = true;
                return Ok(());
            }
            let n = self.fill().await?;
            self.inbox.extend_from_slice(&self.scratch[..n]);
        }
    }

    /// Consumes the inbox; true when the sync reply with `id` has been found, with the bytes
    /// after it left in the framer for the next reply.
    fn scan_for_sync(&mut self, state: &mut Resync, id: i64) -> bool {
        let mut start = 0;
        let mut found = false;
        while start < self.inbox.len() && !found {
            let rest = &self.inbox[start..];
            let sentinel = memchr_ff(rest);
            match *state {
                Resync::Hunting => match sentinel {
                    Some(at) => {
                        start += at + 1;
                        self.framer.reset();
                        *state = Resync::AfterSentinel;
                    }
                    None => start = self.inbox.len(),
                },
                Resync::AfterSentinel => {
                    let end = sentinel.map_or(rest.len(), |at| at);
                    self.framer.push(&rest[..end]);
                    start += end;
                    while let Some(frame) = self.framer.next_frame() {
                        if let Ok(frame) = frame {
                            if is_sync_reply(frame.as_bytes(), id) {
                                found = true;
                                break;
                            }
                            self.stale += 1;
                            tracing::debug!(frame = %String::from_utf8_lossy(frame.as_bytes()), "discarded a stale agent reply");
                        }
                    }
                    if !found && start < self.inbox.len() {
                        // Another sentinel: a new candidate starts there.
                        start += 1;
                        self.framer.reset();
                    }
                }
            }
        }
        if found {
            // Bytes after the reply that were not pushed yet belong to later replies.
            let rest = self.inbox[start..].to_vec();
            self.framer.push(&rest);
        }
        self.inbox.clear();
        found
    }

    /// Writes one command. The connection counts as out of sync from here until its reply is
    /// read, so an interrupted call leaves a resync behind it.
    pub(crate) async fn send(
        &mut self,
        name: &str,
        arguments: Option<Map<String, Value>>,
        id: i64,
    ) -> Result<(), Error> {
        self.synced = false;
        let mut command = Command::new(name).with_id(Id::new(Value::from(id)));
        command.arguments = arguments;
        let mut bytes = Vec::with_capacity(64);
        command.encode(&mut bytes);
        self.write(&bytes).await
    }

    /// Reads the reply to the command sent with `id`. Replies carrying another id answer
    /// abandoned calls and are dropped; a reply without an id is taken as ours, since older
    /// agents do not echo ids and a synchronised channel holds nothing else.
    pub(crate) async fn receive(&mut self, command: &str, id: i64) -> Result<RawResponse, Error> {
        loop {
            while let Some(frame) = self.framer.next_frame() {
                let frame = match frame {
                    Ok(frame) => frame,
                    Err(err) => return Err(self.protocol_failure(frame_error(err, command))),
                };
                match ClientMessage::decode(frame.as_bytes()) {
                    Ok(ClientMessage::Response(response)) => {
                        let ours = match &response.id {
                            None => true,
                            Some(got) => got.as_value().as_i64() == Some(id),
                        };
                        if ours {
                            self.synced = true;
                            return Ok(response);
                        }
                        self.stale += 1;
                        tracing::debug!(command, got = ?response.id, "discarded a reply to an abandoned call");
                    }
                    Ok(other) => {
                        tracing::debug!(?other, "ignored a message the agent does not send");
                    }
                    Err(err) => return Err(self.protocol_failure(err)),
                }
            }
            let n = self.fill().await?;
            self.framer.push(&self.scratch[..n]);
        }
    }

    /// The agent sent something that is not a reply: the channel can no longer be trusted
    /// until a resync, but the connection itself goes on.
    fn protocol_failure(&mut self, err: ProtocolError) -> Error {
        self.synced = false;
        self.framer.reset();
        Error::Protocol(err)
    }
}

fn frame_error(err: FrameError, command: &str) -> ProtocolError {
    match err {
        FrameError::Stray(bytes) => ProtocolError::Stray(String::from_utf8_lossy(&bytes).into_owned()),
        // The reply was discarded as it arrived, so there is nothing to show but whose it was.
        other => ProtocolError::Unparsable { reason: other.to_string(), excerpt: format!("the reply to {command}") },
    }
}

fn memchr_ff(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == SENTINEL)
}

/// Whether a frame is `{"return": id}` (any other members are ignored).
fn is_sync_reply(frame: &[u8], id: i64) -> bool {
    #[derive(serde::Deserialize)]
    struct Sync {
        #[serde(rename = "return")]
        ret: Option<Value>,
    }
    serde_json::from_slice::<Sync>(frame).is_ok_and(|s| s.ret.and_then(|v| v.as_i64()) == Some(id))
}
