//! The client's state machine.
//!
//! [`ClientSession`] reads the greeting, negotiates capabilities, assigns ids, queues commands
//! (at most eight in-band commands in flight once `oob` is on, as the specification asks), and
//! routes what the server sends: events to [`ClientEvent::Event`], replies to the call that
//! sent the command, and everything it cannot route to [`ClientEvent::Dropped`], counted in
//! [`ClientStats`]. It does no IO: feed it bytes with [`ClientSession::handle_input`], take
//! bytes to write from [`ClientSession::poll_transmit`], and take what happened from
//! [`ClientSession::poll_event`].
//!
//! ```
//! use qmpkit_proto::{ClientConfig, ClientEvent, ClientSession, Command};
//!
//! let mut session: ClientSession<&str> = ClientSession::new(ClientConfig::default());
//! session.handle_input(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n");
//! assert!(matches!(session.poll_event(), Some(ClientEvent::Greeting(_))));
//! // The session negotiates by itself: the first bytes to write are `qmp_capabilities`.
//! let negotiate = session.poll_transmit().unwrap();
//! assert!(negotiate.bytes.starts_with(b"{\"execute\":\"qmp_capabilities\""));
//! session.handle_input(b"{\"return\": {}, \"id\": \"__qmpkit-negotiate\"}\r\n");
//! assert!(matches!(session.poll_event(), Some(ClientEvent::Ready)));
//!
//! let id = session.send(Command::new("query-status"), "my call").unwrap();
//! let out = session.poll_transmit().unwrap();
//! assert_eq!(out.bytes, b"{\"execute\":\"query-status\",\"id\":0}");
//! session.handle_input(b"{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": 0}\r\n");
//! match session.poll_event() {
//!     Some(ClientEvent::Reply { data, response, .. }) => {
//!         assert_eq!((data, response.id), ("my call", Some(id)));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```

use std::collections::VecDeque;

use serde_json::{Map, Value};

use crate::error::{Error, MisuseError, ProtocolError};
use crate::framer::{Framer, Limits, Mode};
use crate::id::Id;
use crate::message::{Capability, ClientMessage, Command, Event, ExecKind, Greeting, QmpError, RawResponse};
use crate::pending::Pending;

/// The id the session gives its own `qmp_capabilities` command.
pub const NEGOTIATION_ID: &str = "__qmpkit-negotiate";

/// The in-band commands a client keeps in flight once `oob` is on: QEMU stops reading at
/// eight queued in-band requests, and an `exec-oob` command behind them would not be read.
pub const OOB_IN_BAND_LIMIT: usize = 8;

/// How a connection starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Handshake {
    /// Read the greeting, then negotiate with `qmp_capabilities` (QEMU since 2010).
    #[default]
    Negotiate,
    /// Read the greeting and send commands at once (the December 2009 dialect).
    GreetingOnly,
    /// Expect no greeting and send commands at once (the guest agent).
    None,
}

/// How a [`ClientSession`] behaves.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// How the connection starts.
    pub handshake: Handshake,
    /// Whether to enable `oob` when the server offers it.
    pub enable_oob: bool,
    /// Limits on what the server may send.
    pub limits: Limits,
    /// The most in-band commands in flight once `oob` is on.
    pub in_band_limit: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            handshake: Handshake::Negotiate,
            enable_oob: true,
            limits: Limits::default(),
            in_band_limit: OOB_IN_BAND_LIMIT,
        }
    }
}

/// Where a [`ClientSession`] is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// Waiting for the server's greeting.
    AwaitingGreeting,
    /// `qmp_capabilities` is sent or queued; waiting for its reply.
    Negotiating,
    /// Commands flow.
    Ready,
    /// The session ended; every later call fails.
    Closed,
}

impl ClientState {
    fn name(self) -> &'static str {
        match self {
            ClientState::AwaitingGreeting => "awaiting the greeting",
            ClientState::Negotiating => "negotiating",
            ClientState::Ready => "ready",
            ClientState::Closed => "closed",
        }
    }
}

/// What the session saw.
#[derive(Debug)]
pub enum ClientEvent<T> {
    /// The server's greeting arrived.
    Greeting(Greeting),
    /// Negotiation is over (or was not needed); commands flow.
    Ready,
    /// A reply to a command sent with [`ClientSession::send`].
    Reply {
        /// What the caller stored with the command.
        data: T,
        /// The command's name.
        name: String,
        /// The reply, its value still JSON text; [`RawResponse::decode`] decodes it.
        response: RawResponse,
    },
    /// A call that failed without a reply of its own: a reply without an id arrived while
    /// several commands with ids waited (see [`ClientSession`]'s routing rules). The call is
    /// finished; the session carries on.
    Failed {
        /// What the caller stored with the command.
        data: T,
        /// The command's name.
        name: String,
        /// What arrived instead of the reply.
        error: ProtocolError,
    },
    /// An asynchronous event.
    Event(Event),
    /// Something arrived that could not be routed; the session carries on.
    Dropped(Dropped),
    /// The session failed and is now closed; fail every pending call with this error and
    /// take them with [`ClientSession::drain`].
    Closed(Error),
}

/// A message the session could not route. The specification tells clients to drop these; the
/// session reports them so that callers can log them, and counts them in [`ClientStats`].
#[derive(Debug, Clone, PartialEq)]
pub enum Dropped {
    /// A response whose id matches no pending call (its caller may have given up).
    UnknownId(RawResponse),
    /// An error without id while no command without id was pending: the server could not
    /// parse something it was sent. One bad input can cause many of these.
    ServerParseError(QmpError),
    /// A frame that was not valid JSON or not a QMP message.
    Malformed(ProtocolError),
}

/// Counts of what the session dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Responses with an id nobody waits for.
    pub unknown_ids: u64,
    /// Id-less errors that answered no pending command.
    pub server_parse_errors: u64,
    /// Frames that were not valid JSON or not QMP.
    pub malformed: u64,
    /// Replies without an id that could only be matched by elimination: taken as the reply
    /// of the only command in flight, or failing the oldest one ([`ClientEvent::Failed`]).
    pub missing_ids: u64,
    /// Events received.
    pub events: u64,
}

/// Bytes for the transport to write, one command's worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The command's id, when it has one; the transport uses it to find file descriptors
    /// that must travel with these bytes.
    pub id: Option<Id>,
    /// The bytes.
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
struct Entry<T> {
    data: T,
    name: String,
    in_band: bool,
    /// The order in which commands were queued; in-band commands are written in this order.
    seq: u64,
}

/// A command encoded up to its id, so that its arguments can be serialized wherever the
/// caller likes (in the caller's own task, not the connection's) and the session only appends
/// the id it assigns. The bytes are exactly those of [`Command::encode`].
#[derive(Clone, Debug)]
pub struct EncodedCommand {
    kind: ExecKind,
    name: String,
    /// `{"execute":"name"` and `,"arguments":{...}` when there are arguments.
    head: Vec<u8>,
    id: Option<Id>,
}

impl EncodedCommand {
    /// Encodes a command.
    #[must_use]
    pub fn new(command: &Command) -> Self {
        let arguments = command.arguments.as_ref().map(|a| {
            // Writing a map of JSON values to a string cannot fail.
            serde_json::to_string(a).unwrap_or_default()
        });
        EncodedCommand::from_json_arguments(command.kind, &command.name, arguments.as_deref())
            .with_id(command.id.clone())
    }

    /// A command whose arguments are already JSON text. The caller guarantees that
    /// `arguments` is one JSON object (as `serde_json` writes a struct or a map).
    #[must_use]
    pub fn from_json_arguments(kind: ExecKind, name: &str, arguments: Option<&str>) -> Self {
        let mut head = Vec::with_capacity(name.len() + arguments.map_or(0, str::len) + 48);
        head.extend_from_slice(b"{\"");
        head.extend_from_slice(kind.member().as_bytes());
        head.extend_from_slice(b"\":");
        // Writing a string to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut head, name);
        if let Some(arguments) = arguments {
            head.extend_from_slice(b",\"arguments\":");
            head.extend_from_slice(arguments.as_bytes());
        }
        EncodedCommand { kind, name: name.to_owned(), head, id: None }
    }

    /// A command that is a whole JSON object as a caller wrote it, sent as it is: every member
    /// but `id` in the given order, whatever QEMU will make of it (a member QEMU does not know,
    /// an `execute` that is not a string). Its `id`, when it has one, becomes the command's id;
    /// otherwise the session assigns one. QEMU echoes the id even when it refuses the
    /// envelope, so every answer reaches this command. It is out-of-band when it has
    /// `exec-oob` and no `execute`, as QEMU would run it.
    #[must_use]
    pub fn from_object(mut object: Map<String, Value>) -> Self {
        let id = object.remove("id").map(Id::new);
        let (kind, name) = match (object.get("execute"), object.get("exec-oob")) {
            (None, Some(name)) => (ExecKind::ExecOob, name),
            (Some(name), _) => (ExecKind::Execute, name),
            (None, None) => (ExecKind::Execute, &Value::Null),
        };
        // The name only labels the call in errors; a malformed one is shown as the JSON it is.
        let name = name.as_str().map_or_else(|| name.to_string(), str::to_owned);
        // Writing a map of JSON values to a Vec cannot fail.
        let mut head = serde_json::to_vec(&object).unwrap_or_else(|_| b"{}".to_vec());
        head.pop(); // The closing brace, which `finish` writes after the id.
        EncodedCommand { kind, name, head, id }
    }

    /// A command whose arguments are serialized straight into its bytes. `()` (anything that
    /// serializes to `null`) sends no arguments.
    ///
    /// # Errors
    /// When `arguments` fails to serialize, or serializes to something other than a JSON
    /// object or `null`.
    pub fn serialize(kind: ExecKind, name: &str, arguments: &impl serde::Serialize) -> Result<Self, serde_json::Error> {
        let mut command = EncodedCommand::from_json_arguments(kind, name, None);
        let bare = command.head.len();
        command.head.extend_from_slice(b",\"arguments\":");
        let start = command.head.len();
        serde_json::to_writer(&mut command.head, arguments)?;
        match command.head.get(start) {
            // serde_json writes compact JSON: a value that starts with `{` is one object.
            Some(b'{') => Ok(command),
            _ if &command.head[start..] == b"null" => {
                command.head.truncate(bare);
                Ok(command)
            }
            _ => {
                Err(serde::ser::Error::custom(format_args!("got {}", String::from_utf8_lossy(&command.head[start..]))))
            }
        }
    }

    /// Sets the id the command carries; `None` lets the session assign one.
    #[must_use]
    pub fn with_id(mut self, id: Option<Id>) -> Self {
        self.id = id;
        self
    }

    /// The command's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the command runs in-band or out-of-band.
    #[must_use]
    pub fn kind(&self) -> ExecKind {
        self.kind
    }

    /// The command's bytes with this id (or none).
    fn finish(mut self, id: Option<&Id>) -> (String, Vec<u8>) {
        if let Some(id) = id {
            // Only an object given whole (`from_object`) can have no member before the id.
            if self.head != b"{" {
                self.head.push(b',');
            }
            self.head.extend_from_slice(b"\"id\":");
            // Writing a JSON value to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.head, id);
        }
        self.head.push(b'}');
        (self.name, self.head)
    }
}

/// Whether an error is QEMU's answer to bytes it could not parse as JSON (a parse error or
/// one of its lexer's limits). QEMU sends these without an id, one per bad token, so one bad
/// input can bring any number of them, and they answer no particular command.
#[must_use]
pub fn is_parse_error(error: &QmpError) -> bool {
    const DESCS: [&str; 4] =
        ["JSON parse error", "JSON nesting depth limit", "JSON token size limit", "JSON token count limit"];
    // The 2010 dialect's class for the same errors.
    DESCS.iter().any(|d| error.desc.starts_with(d)) || error.class.name() == "JSONParsing"
}

/// Whether an error is QEMU's answer to a JSON value that is not a well-formed command
/// ("QMP input must be a JSON object", "QMP input lacks member 'execute'"). QEMU sends one
/// per value and echoes the value's id when it has one, so such an error without an id
/// answers either a command sent without an id or something that was never a command.
#[must_use]
pub fn is_envelope_error(error: &QmpError) -> bool {
    let class = error.class.name();
    // Today's text, and the 2010 dialect's classes for the same errors.
    error.desc.starts_with("QMP input ") || class.starts_with("QMPBadInput") || class.starts_with("QMPExtraInput")
}

/// How much of what a peer sent before its greeting is kept, to say what arrived when it
/// turns out not to be a QMP server.
const PRELUDE_BYTES: usize = 200;

/// The client side of one QMP connection, without IO.
///
/// The [module documentation](crate::client) follows one session from the greeting to a
/// routed reply, as a runnable example.
///
/// # Replies without an id
///
/// A reply without an id never leaves a call waiting, and QEMU's own id-less errors never
/// fail an innocent call (QEMU sends one per bad token it could not parse, so a client must
/// not fail "the next pending request" for them). The rules, in order:
///
/// 1. While negotiating, only `qmp_capabilities` is in flight, so anything but a parse or
///    envelope error answers it (a peer that drops ids still negotiates).
/// 2. A parse error ([`is_parse_error`]) answers no command: QEMU sends one per bad token
///    of input it could not parse, so it must not fail whichever call is next. It is
///    dropped and counted, unless commands sent without ids are in flight: then it may
///    have taken a place in their reply order, nothing can tell, and the session closes
///    with [`ProtocolError::OrderLost`] rather than give later replies to the wrong calls.
/// 3. An envelope error ([`is_envelope_error`]) answers one JSON value, and QEMU would
///    have echoed an id: with no command without an id in flight it is dropped and
///    counted like a parse error.
/// 4. Otherwise, the oldest command sent without an id that was written gets it.
/// 5. Otherwise the peer dropped the id of a command that had one. When exactly one
///    command is in flight it is the reply to that one; when several are, the oldest
///    in-band one (QEMU answers in-band commands in order) fails with
///    [`ProtocolError::MissingId`], so nothing waits forever. Both count in
///    [`ClientStats::missing_ids`]; with nothing in flight it is dropped as unknown.
#[derive(Debug)]
pub struct ClientSession<T> {
    config: ClientConfig,
    state: ClientState,
    framer: Framer,
    greeting: Option<Greeting>,
    oob: bool,
    pending: Pending<Entry<T>>,
    /// In-band commands waiting for the session to be ready or for room under the limit,
    /// with their sequence numbers.
    in_band_queue: VecDeque<(u64, Transmit)>,
    /// Out-of-band commands and the negotiation command, sent before anything queued.
    urgent: VecDeque<Transmit>,
    in_band_in_flight: usize,
    next_id: u64,
    /// The sequence number the next queued command gets.
    next_seq: u64,
    /// Every in-band command with a lower sequence number has been written.
    written_seq: u64,
    /// What arrived before the greeting, for the error when it is not QMP.
    prelude: Vec<u8>,
    stats: ClientStats,
    /// A `Ready` event owed to the caller after the greeting event of a greeting-only handshake.
    ready_owed: bool,
}

impl<T> ClientSession<T> {
    /// A session that has not seen any bytes yet.
    #[must_use]
    pub fn new(config: ClientConfig) -> Self {
        let framer = Framer::new(Mode::Client, config.limits);
        let state = match config.handshake {
            Handshake::None => ClientState::Ready,
            _ => ClientState::AwaitingGreeting,
        };
        ClientSession {
            config,
            state,
            framer,
            greeting: None,
            oob: false,
            pending: Pending::new(),
            in_band_queue: VecDeque::new(),
            urgent: VecDeque::new(),
            in_band_in_flight: 0,
            next_id: 0,
            next_seq: 0,
            written_seq: 0,
            prelude: Vec::new(),
            stats: ClientStats::default(),
            ready_owed: false,
        }
    }

    /// Where the session is.
    #[must_use]
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The greeting, once it arrived.
    #[must_use]
    pub fn greeting(&self) -> Option<&Greeting> {
        self.greeting.as_ref()
    }

    /// Whether `oob` was negotiated.
    #[must_use]
    pub fn oob_enabled(&self) -> bool {
        self.oob
    }

    /// Counts of what was dropped.
    #[must_use]
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The number of commands sent or queued and not yet answered.
    #[must_use]
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Queues a command and returns its id. Without an id the session assigns the next free
    /// integer; a caller-chosen id (any JSON value) is used as given.
    ///
    /// Commands sent before the session is ready wait until negotiation is over. Once `oob`
    /// is on, in-band commands beyond [`ClientConfig::in_band_limit`] wait in the session
    /// rather than fail.
    ///
    /// # Errors
    /// The caller's `data` comes back with [`MisuseError::Closed`] after the session ended,
    /// [`MisuseError::OobNotNegotiated`] for `exec-oob` without `oob` (checked once the
    /// session is ready; before that, out-of-band commands cannot be judged and are refused the
    /// same way), and [`MisuseError::IdInUse`] when the id is pending already.
    pub fn send(&mut self, command: Command, data: T) -> Result<Id, (MisuseError, T)> {
        self.send_encoded(EncodedCommand::new(&command), data)
    }

    /// Queues a command encoded beforehand, as [`ClientSession::send`] does.
    ///
    /// # Errors
    /// As [`ClientSession::send`].
    pub fn send_encoded(&mut self, mut command: EncodedCommand, data: T) -> Result<Id, (MisuseError, T)> {
        if self.state == ClientState::Closed {
            return Err((MisuseError::Closed, data));
        }
        let in_band = command.kind == ExecKind::Execute;
        if !in_band && !self.oob {
            return Err((MisuseError::OobNotNegotiated, data));
        }
        let id = match command.id.take() {
            Some(id) => {
                if self.pending.contains(&id) || id.as_value().as_str() == Some(NEGOTIATION_ID) {
                    return Err((MisuseError::IdInUse(id), data));
                }
                id
            }
            None => self.fresh_id(),
        };
        let (name, bytes) = command.finish(Some(&id));
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry { data, name, in_band, seq };
        if let Err(entry) = self.pending.insert(id.clone(), entry) {
            return Err((MisuseError::IdInUse(id), entry.data));
        }
        let transmit = Transmit { id: Some(id.clone()), bytes };
        if in_band {
            self.in_band_queue.push_back((seq, transmit));
        } else {
            self.urgent.push_back(transmit);
        }
        Ok(id)
    }

    /// Queues a command sent without an id; its reply is the next id-less response. Only
    /// useful for peers that answer strictly in order (no `oob`).
    ///
    /// # Errors
    /// [`MisuseError::Closed`] after the session ended, and [`MisuseError::OobNeedsId`] for
    /// an out-of-band command, whose reply could not be matched.
    pub fn send_without_id(&mut self, command: Command, data: T) -> Result<(), (MisuseError, T)> {
        self.send_encoded_without_id(EncodedCommand::new(&command), data)
    }

    /// Queues a command encoded beforehand without an id, as
    /// [`ClientSession::send_without_id`] does; an id set on it is ignored.
    ///
    /// # Errors
    /// As [`ClientSession::send_without_id`].
    pub fn send_encoded_without_id(&mut self, command: EncodedCommand, data: T) -> Result<(), (MisuseError, T)> {
        if self.state == ClientState::Closed {
            return Err((MisuseError::Closed, data));
        }
        if command.kind == ExecKind::ExecOob {
            return Err((MisuseError::OobNeedsId, data));
        }
        let (name, bytes) = command.finish(None);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_anonymous(Entry { data, name, in_band: true, seq });
        self.in_band_queue.push_back((seq, Transmit { id: None, bytes }));
        Ok(())
    }

    /// The id of a pending call whose stored data passes `test`. This walks every pending
    /// call, so it suits rare paths such as cancellation.
    pub fn find(&self, mut test: impl FnMut(&T) -> bool) -> Option<Id> {
        self.pending.iter().find(|(_, entry)| test(&entry.data)).map(|(id, _)| id.clone())
    }

    /// What the caller stored with the pending call of this id.
    pub fn data_mut(&mut self, id: &Id) -> Option<&mut T> {
        self.pending.get_mut(id).map(|entry| &mut entry.data)
    }

    /// Forgets the call with this id because its caller gave up (a timeout, a dropped
    /// future). A command not yet written is not written at all; a late reply to one already
    /// written is dropped and counted as an unknown id.
    pub fn cancel(&mut self, id: &Id) -> Option<T> {
        let entry = self.pending.complete(id)?;
        let before = self.in_band_queue.len() + self.urgent.len();
        self.in_band_queue.retain(|(_, t)| t.id.as_ref() != Some(id));
        self.urgent.retain(|t| t.id.as_ref() != Some(id));
        let unsent = before != self.in_band_queue.len() + self.urgent.len();
        if entry.in_band && !unsent {
            // It was written and counts against the limit until the server answers. Its slot
            // is given back now; at worst one more command than the limit is in flight, which
            // QEMU answers anyway because it only stops reading, never drops.
            self.in_band_in_flight = self.in_band_in_flight.saturating_sub(1);
        }
        Some(entry.data)
    }

    /// The next bytes to write, if any may be written now.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.state == ClientState::Closed {
            return None;
        }
        if let Some(t) = self.urgent.pop_front() {
            return Some(t);
        }
        if self.state != ClientState::Ready {
            return None;
        }
        if self.oob && self.in_band_in_flight >= self.config.in_band_limit {
            return None;
        }
        let (seq, t) = self.in_band_queue.pop_front()?;
        self.in_band_in_flight += 1;
        self.written_seq = seq + 1;
        Some(t)
    }

    /// Takes bytes read from the server.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if self.state == ClientState::AwaitingGreeting && self.prelude.len() < PRELUDE_BYTES {
            let room = PRELUDE_BYTES - self.prelude.len();
            self.prelude.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        if self.state != ClientState::Closed {
            self.framer.push(bytes);
        }
    }

    /// Tells the session that the server closed the connection. Returns the error to give
    /// the pending calls, which [`ClientSession::drain`] then hands back.
    pub fn handle_eof(&mut self) -> Error {
        let error = if self.framer.is_mid_message() {
            Error::Protocol(ProtocolError::TruncatedMessage)
        } else {
            Error::Protocol(ProtocolError::UnexpectedMessage {
                state: self.state.name(),
                got: "end of stream".to_owned(),
            })
        };
        self.state = ClientState::Closed;
        error
    }

    /// Closes the session and hands back what every pending or queued call stored, so the
    /// caller can fail them.
    pub fn drain(&mut self) -> Vec<T> {
        self.state = ClientState::Closed;
        self.in_band_queue.clear();
        self.urgent.clear();
        self.pending.drain().into_iter().map(|e| e.data).collect()
    }

    /// Processes buffered input until something happened, and returns it.
    pub fn poll_event(&mut self) -> Option<ClientEvent<T>> {
        if self.ready_owed {
            self.ready_owed = false;
            return Some(ClientEvent::Ready);
        }
        while self.state != ClientState::Closed {
            let frame = match self.framer.next_frame()? {
                Ok(frame) => frame,
                Err(err) => match Error::from(err) {
                    // A limit means a message was lost, and with it perhaps a reply somebody
                    // waits for: the connection cannot be trusted any more.
                    Error::Limit(limit) => return Some(self.fail(Error::Limit(limit))),
                    // Whatever is not QMP before the greeting is not a QMP server (an HMP
                    // monitor, a serial console): say so now rather than at the deadline.
                    Error::Protocol(_) if self.state == ClientState::AwaitingGreeting => {
                        return Some(self.not_a_greeting());
                    }
                    Error::Protocol(e) => {
                        self.stats.malformed += 1;
                        return Some(ClientEvent::Dropped(Dropped::Malformed(e)));
                    }
                    other => return Some(self.fail(other)),
                },
            };
            let message = match ClientMessage::decode(frame.as_bytes()) {
                Ok(message) => message,
                Err(_) if self.state == ClientState::AwaitingGreeting => return Some(self.not_a_greeting()),
                Err(e) => {
                    self.stats.malformed += 1;
                    return Some(ClientEvent::Dropped(Dropped::Malformed(e)));
                }
            };
            if let Some(event) = self.route(message) {
                return Some(event);
            }
        }
        None
    }

    /// Fails the session because the peer sent something other than a greeting or an event
    /// first, quoting what it sent.
    fn not_a_greeting(&mut self) -> ClientEvent<T> {
        let mut got = format!("{:?}", String::from_utf8_lossy(&self.prelude));
        if self.prelude.len() >= PRELUDE_BYTES {
            got.push_str("...");
        }
        got.push_str(" (not a QMP greeting: is this an HMP monitor, a serial console or another service?)");
        self.fail(Error::Protocol(ProtocolError::UnexpectedMessage {
            state: ClientState::AwaitingGreeting.name(),
            got,
        }))
    }

    fn fail(&mut self, error: Error) -> ClientEvent<T> {
        self.state = ClientState::Closed;
        ClientEvent::Closed(error)
    }

    fn fresh_id(&mut self) -> Id {
        loop {
            let id = Id::from_counter(self.next_id);
            self.next_id = self.next_id.wrapping_add(1);
            if !self.pending.contains(&id) {
                return id;
            }
        }
    }

    fn route(&mut self, message: ClientMessage) -> Option<ClientEvent<T>> {
        match message {
            ClientMessage::Response(response) => self.route_response(response),
            ClientMessage::Event(event) => {
                self.stats.events += 1;
                Some(ClientEvent::Event(event))
            }
            ClientMessage::Greeting(greeting) => {
                if self.state != ClientState::AwaitingGreeting {
                    self.stats.malformed += 1;
                    let got = greeting.to_value().to_string();
                    return Some(ClientEvent::Dropped(Dropped::Malformed(ProtocolError::UnexpectedMessage {
                        state: self.state.name(),
                        got,
                    })));
                }
                self.prelude = Vec::new();
                if self.config.handshake == Handshake::Negotiate && greeting.expects_negotiation() {
                    self.queue_negotiation(&greeting);
                    self.state = ClientState::Negotiating;
                } else {
                    self.state = ClientState::Ready;
                    self.ready_owed = true;
                }
                self.greeting = Some(greeting.clone());
                Some(ClientEvent::Greeting(greeting))
            }
        }
    }

    fn queue_negotiation(&mut self, greeting: &Greeting) {
        let mut command = Command::new("qmp_capabilities").with_id(NEGOTIATION_ID);
        if self.config.enable_oob && greeting.offers(&Capability::Oob) {
            let mut arguments = Map::new();
            arguments.insert("enable".into(), Value::Array(vec![Value::from("oob")]));
            command = command.with_arguments(arguments);
        }
        let mut bytes = Vec::new();
        command.encode(&mut bytes);
        self.urgent.push_back(Transmit { id: command.id, bytes });
    }

    fn route_response(&mut self, response: RawResponse) -> Option<ClientEvent<T>> {
        if self.state == ClientState::AwaitingGreeting {
            let got = describe(&response);
            return Some(self.fail(Error::Protocol(ProtocolError::UnexpectedMessage {
                state: ClientState::AwaitingGreeting.name(),
                got,
            })));
        }
        let Some(id) = &response.id else {
            return self.route_without_id(response);
        };
        if self.state == ClientState::Negotiating && id.as_value().as_str() == Some(NEGOTIATION_ID) {
            return self.negotiated(response);
        }
        match self.pending.complete(id) {
            Some(entry) => {
                if entry.in_band {
                    self.in_band_in_flight = self.in_band_in_flight.saturating_sub(1);
                }
                Some(ClientEvent::Reply { data: entry.data, name: entry.name, response })
            }
            None => {
                self.stats.unknown_ids += 1;
                Some(ClientEvent::Dropped(Dropped::UnknownId(response)))
            }
        }
    }

    /// Routes a response that carries no id, by the rules on [`ClientSession`].
    fn route_without_id(&mut self, response: RawResponse) -> Option<ClientEvent<T>> {
        let parse_error = matches!(&response.result, Err(e) if is_parse_error(e));
        let envelope_error = matches!(&response.result, Err(e) if is_envelope_error(e));
        if self.state == ClientState::Negotiating && !parse_error && !envelope_error {
            return self.negotiated(response);
        }
        let anonymous_written = self.pending.peek_anonymous().is_some_and(|e| e.seq < self.written_seq);
        let response = match response.result {
            Err(error) if parse_error || (envelope_error && !anonymous_written) => {
                self.stats.server_parse_errors += 1;
                if anonymous_written {
                    return Some(self.fail(Error::Protocol(ProtocolError::OrderLost(Box::new(error)))));
                }
                return Some(ClientEvent::Dropped(Dropped::ServerParseError(error)));
            }
            result => RawResponse { id: None, result },
        };
        if anonymous_written {
            if let Some(entry) = self.pending.complete_anonymous() {
                self.in_band_in_flight = self.in_band_in_flight.saturating_sub(1);
                return Some(ClientEvent::Reply { data: entry.data, name: entry.name, response });
            }
        }
        // Rare: walk the table for the calls in flight. Out-of-band commands are written as
        // soon as they are queued.
        let mut in_flight = 0usize;
        let mut oldest: Option<(bool, u64, &Id)> = None;
        for (id, entry) in self.pending.iter() {
            if entry.in_band && entry.seq >= self.written_seq {
                continue;
            }
            in_flight += 1;
            // In-band before out-of-band, then the oldest.
            let rank = (!entry.in_band, entry.seq, id);
            if oldest.is_none_or(|o| (rank.0, rank.1) < (o.0, o.1)) {
                oldest = Some(rank);
            }
        }
        let Some((_, _, id)) = oldest else {
            self.stats.unknown_ids += 1;
            return Some(ClientEvent::Dropped(Dropped::UnknownId(response)));
        };
        let id = id.clone();
        let entry = self.pending.complete(&id)?;
        if entry.in_band {
            self.in_band_in_flight = self.in_band_in_flight.saturating_sub(1);
        }
        self.stats.missing_ids += 1;
        if in_flight == 1 {
            return Some(ClientEvent::Reply { data: entry.data, name: entry.name, response });
        }
        let error = ProtocolError::MissingId { got: describe(&response) };
        Some(ClientEvent::Failed { data: entry.data, name: entry.name, error })
    }

    /// Ends negotiation with the server's answer to `qmp_capabilities`.
    fn negotiated(&mut self, response: RawResponse) -> Option<ClientEvent<T>> {
        match response.result {
            Ok(_) => {
                self.oob = self.greeting.as_ref().is_some_and(|g| self.config.enable_oob && g.offers(&Capability::Oob));
                self.state = ClientState::Ready;
                Some(ClientEvent::Ready)
            }
            Err(error) => Some(self.fail(Error::Protocol(ProtocolError::Negotiation(Box::new(error))))),
        }
    }
}

/// A response as text for an error message, cut short when long.
fn describe(response: &RawResponse) -> String {
    const MAX: usize = 200;
    let mut text = match &response.result {
        Ok(raw) => format!("{{\"return\":{}}}", raw.get()),
        Err(error) => format!("{{\"error\":{}}}", serde_json::to_string(error).unwrap_or_default()),
    };
    if text.len() > MAX {
        let mut end = MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests;
