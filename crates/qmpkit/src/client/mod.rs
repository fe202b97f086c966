//! The async QMP client.
//!
//! A [`Client`] is a cheap, cloneable handle to one connection. Any number of tasks may call it
//! at once; one driver task owns the connection, assigns ids, writes commands in order, and
//! hands each reply to its caller and each event to the subscribers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), qmpkit::Error> {
//! use qmpkit::{Client, EventFilter};
//! use serde_json::json;
//!
//! let qmp = Client::connect("/run/qemu/qmp.sock").await?;
//! println!("connected to QEMU {:?}", qmp.greeting().and_then(|g| g.version.as_ref()));
//!
//! // Subscribe before the command, so the events it causes cannot be missed.
//! let mut stops = qmp.subscribe(EventFilter::names(["STOP"]));
//! qmp.execute("stop", ()).await?;
//! let stop = stops.next_event().await;
//!
//! let status = qmp.query_status().await?;
//! let reply = qmp.execute("human-monitor-command", json!({"command-line": "info status"})).await?;
//! # Ok(()) }
//! ```
//!
//! # Each feature, by example
//!
//! Timeouts: a default for every call, and one per call; both really interrupt the wait.
//! ```no_run
//! # async fn demo() -> Result<(), qmpkit::Error> {
//! use std::time::Duration;
//! use qmpkit::{CallOptions, Client};
//!
//! let qmp = Client::builder()
//!     .connect_timeout(Some(Duration::from_secs(2)))
//!     .handshake_timeout(Some(Duration::from_secs(2)))
//!     .call_timeout(Some(Duration::from_secs(30)))
//!     .connect("/run/qemu/qmp.sock")
//!     .await?;
//! let quick = CallOptions::new().timeout(Some(Duration::from_millis(500)));
//! match qmp.call("query-status", (), quick).await {
//!     Err(e) if e.is_timeout() => println!("QEMU is busy (or stopped)"),
//!     other => println!("{other:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! Out-of-band: `exec-oob` overtakes in-band commands QEMU has queued, even while QEMU's main
//! loop is blocked.
//! ```no_run
//! # async fn demo(qmp: qmpkit::Client) -> Result<(), qmpkit::Error> {
//! if qmp.oob_enabled() {
//!     let instances = qmp.execute_oob("query-yank", ()).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! File descriptors, sent with `SCM_RIGHTS` in the same `sendmsg` as the command:
//! ```no_run
//! # async fn demo(qmp: qmpkit::Client) -> Result<(), qmpkit::Error> {
//! let log = std::fs::File::create("/tmp/guest.log").expect("create");
//! qmp.getfd("guest-log", log.into()).await?;
//! let (_read, write) = std::io::pipe().expect("pipe");
//! let added = qmp.add_fd(write.into(), None, Some("a pipe")).await?;
//! println!("fd set {} holds fd {}", added.fdset_id, added.fd);
//! # Ok(()) }
//! ```
//!
//! Events: filtered by name, predicate or typed variant, each subscriber with its own bounded
//! queue; subscriptions made on the builder that see the events of the handshake; and a
//! command with the event it causes.
//! ```no_run
//! # async fn demo(qmp: qmpkit::Client) -> Result<(), qmpkit::Error> {
//! use std::time::Duration;
//! use qmpkit::{Client, EventFilter, EventItem, QmpEvent};
//!
//! let mut jobs = qmp.subscribe(
//!     EventFilter::names(["JOB_STATUS_CHANGE"]).with_predicate(|e| e.data.as_ref().is_some_and(|d| d["id"] == "backup0")),
//! );
//! while let Some(item) = jobs.next().await {
//!     match item {
//!         EventItem::Event(event) => println!("{:?}", QmpEvent::from((*event).clone())),
//!         EventItem::Lagged { missed } => println!("fell behind; {missed} events dropped"),
//!     }
//! }
//! let mut builder = Client::builder();
//! let mut run_state = builder.subscribe(EventFilter::typed(|e| matches!(e, QmpEvent::Stop | QmpEvent::Resume)));
//! let other = builder.connect("/run/qemu/other.sock").await?;
//! if let Some(QmpEvent::Stop) = run_state.next_typed().await {
//!     println!("stopped (seen even when it came with the greeting)");
//! }
//! qmp.device_del_and_wait("nic0", Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```
//!
//! Raw mode: any id, any command, the whole response.
//! ```no_run
//! # async fn demo(qmp: qmpkit::Client) -> Result<(), qmpkit::Error> {
//! use qmpkit::{Command, Id};
//! let response = qmp.execute_raw(Command::new("query-version").with_id(Id::from("v1"))).await?;
//! let large = qmp.execute_raw_json("query-qmp-schema", ()).await?; // undecoded JSON text
//! # Ok(()) }
//! ```
//!
//! Other peers and directions: the guest agent (no greeting), QEMU dialing us
//! (`-qmp unix:PATH` without `server`), any byte stream.
//! ```no_run
//! # async fn demo(stream: tokio::io::DuplexStream) -> Result<(), qmpkit::Error> {
//! use qmpkit::Client;
//! let agent = Client::builder().no_greeting().connect("/run/qga.sock").await?;
//! agent.execute("guest-ping", ()).await?;
//! let dialed = Client::builder().accept("/run/qmpkit/qemu-dials-here.sock").await?;
//! let over_anything = Client::builder().over(stream).await?;
//! # Ok(()) }
//! ```
//!
//! Typed commands: each a small type from [`crate::commands`] (or one's own), with the
//! options of any call.
//! ```no_run
//! # async fn demo(qmp: qmpkit::Client) -> Result<(), qmpkit::Error> {
//! use std::time::Duration;
//! use qmpkit::CallOptions;
//! use qmpkit::commands::{Getfd, QueryStatus};
//!
//! let status = qmp.run(QueryStatus).await?;
//! let quick = CallOptions::new().timeout(Some(Duration::from_millis(500)));
//! let status = qmp.run_with(QueryStatus, quick).await?;
//! let (_read, write) = std::io::pipe().expect("pipe");
//! qmp.run(Getfd::new("log", write.into())).await?; // the descriptor travels with the command
//! # Ok(()) }
//! ```
//!
//! Connecting while QEMU starts: the socket may not exist yet, refuse, or accept without a
//! greeting for a while.
//! ```no_run
//! # async fn demo() -> Result<(), qmpkit::Error> {
//! use std::time::Duration;
//! let qmp = qmpkit::Client::builder().connect_until_ready("/run/vm1/qmp.sock", Duration::from_secs(30)).await?;
//! # Ok(()) }
//! ```
//!
//! # Defaults
//!
//! | what | default | set with |
//! |---|---|---|
//! | handshake | read the greeting, then negotiate | [`ClientBuilder::no_greeting`], [`ClientBuilder::no_negotiation`] |
//! | `oob` | enabled when the server offers it | [`ClientBuilder::oob`] |
//! | connect deadline | 10 s ([`DEFAULT_CONNECT_TIMEOUT`]) | [`ClientBuilder::connect_timeout`] |
//! | greeting and negotiation deadline | 10 s ([`DEFAULT_HANDSHAKE_TIMEOUT`]) | [`ClientBuilder::handshake_timeout`] |
//! | call deadline | none: a call waits for its reply or the end of the connection | [`ClientBuilder::call_timeout`], per call [`CallOptions::timeout`] |
//! | largest message from the server | 64 MiB, QEMU's own limit | [`ClientBuilder::max_message_size`] |
//! | nesting depth and tokens per message | 1024 and 2 Mi, QEMU's limits | fixed |
//! | events a subscriber may fall behind | 256 ([`DEFAULT_EVENT_BUFFER`]), then a [`EventItem::Lagged`] marker | [`ClientBuilder::event_buffer`], [`Client::subscribe_with_buffer`] |
//! | ids on in-band commands | yes | [`ClientBuilder::in_band_ids`] |
//! | in-band commands in flight with `oob` on | 8, QEMU's limit; more wait in a queue | fixed |
//! | calls waiting to reach the connection's task | 1024, then callers wait | fixed |
//! | socket reads | up to 64 KiB at a time | fixed |
//! | file descriptors per command | 16 ([`crate::transport::MAX_FDS_PER_MESSAGE`]) | fixed |
//! | pauses of [`ClientBuilder::connect_until_ready`] | 10 ms, doubling up to 500 ms ([`DEFAULT_RETRY_INITIAL`], [`DEFAULT_RETRY_MAX`]) | [`ClientBuilder::retry_backoff`] |
//!
//! # Failure
//! When the server closes the connection, dies or sends something the session cannot recover
//! from, every pending call fails at once with [`Error::Disconnected`] carrying the reason
//! (a server that went away is [`Disconnect::ServerGone`] whether its end read as an end of
//! stream or a reset), every event stream ends, and later calls fail at once.
//!
//! Replies are routed by id. A reply without an id never leaves a call waiting, and QEMU's
//! own id-less errors never fail an innocent call; the rules:
//! - QEMU's JSON parse errors ("JSON parse error, ...", its lexer limits) and envelope errors
//!   ("QMP input ...") without an id answer input QEMU could not read as a command, one per
//!   bad token: they are dropped and counted, and fail no call.
//! - Any other reply without an id, while the calls in flight have ids (a peer that drops
//!   ids): with exactly one call in flight it is that call's reply; with several, the oldest
//!   in-band call fails with [`ProtocolError::MissingId`](crate::ProtocolError::MissingId),
//!   which quotes what arrived.
//! - With [`ClientBuilder::in_band_ids`]`(false)`, id-less replies are matched in order, and a
//!   parse error while such calls are in flight ends the connection
//!   ([`ProtocolError::OrderLost`](crate::ProtocolError::OrderLost)).
//!
//! Every message dropped is counted in [`Client::stats`] and logged with `tracing::warn!`. A call's future may be dropped at
//! any time (a timeout, `select!`, Ctrl-C): the command is not written if it was still queued,
//! and a late reply is discarded. Dropping the future does not un-send a command that was
//! already written.

pub(crate) mod driver;
pub(crate) mod events;
mod ready;
mod typed;

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use qmpkit_proto::client::{EncodedCommand, Handshake};
use qmpkit_proto::message::{RawResponse, decode_json};
use qmpkit_proto::{ClientConfig, ClientSession, Command, Event, ExecKind, Greeting, Id, Limits, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};

pub use self::driver::Stats;
use self::driver::{Call, Driver, Reader, Shared, ToDriver, Writer};
pub use self::events::{DEFAULT_EVENT_BUFFER, EventFilter, EventItem, EventStream};
use self::events::{Early, Subscribers};
pub use self::ready::{DEFAULT_RETRY_INITIAL, DEFAULT_RETRY_MAX};
use crate::error::{Disconnect, Error};
use crate::transport::{Endpoint, Listener, Stream};

/// How many calls may wait to reach the driver before callers wait to send.
const CALL_QUEUE: usize = 1024;

/// The default deadline for opening a connection ([`ClientBuilder::connect_timeout`]).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The default deadline for the greeting and negotiation ([`ClientBuilder::handshake_timeout`]).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Configures and opens a [`Client`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientBuilder {
    handshake: Handshake,
    enable_oob: bool,
    limits: Limits,
    connect_timeout: Option<Duration>,
    handshake_timeout: Option<Duration>,
    call_timeout: Option<Duration>,
    event_buffer: usize,
    in_band_ids: bool,
    retry_initial: Duration,
    retry_max: Duration,
    early: Vec<Early>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            handshake: Handshake::Negotiate,
            enable_oob: true,
            limits: Limits::default(),
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            call_timeout: None,
            event_buffer: DEFAULT_EVENT_BUFFER,
            in_band_ids: true,
            retry_initial: DEFAULT_RETRY_INITIAL,
            retry_max: DEFAULT_RETRY_MAX,
            early: Vec::new(),
        }
    }
}

impl ClientBuilder {
    /// A builder with the defaults: negotiate, enable `oob` when offered, QEMU's limits, 10 s
    /// to connect and 10 s for the greeting and negotiation, no deadline on calls (the
    /// [module docs](self#defaults) list them all).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to enable `oob` when the server offers it (default: yes).
    pub fn oob(mut self, enable: bool) -> Self {
        self.enable_oob = enable;
        self
    }

    /// Expects no greeting and does not negotiate, for peers such as the guest agent (default:
    /// read the greeting and negotiate).
    pub fn no_greeting(mut self) -> Self {
        self.handshake = Handshake::None;
        self
    }

    /// Reads the greeting but does not negotiate. Rarely needed: a greeting without a
    /// version (the December 2009 dialect, which had no negotiation) is recognised and used
    /// without negotiation anyway (default: negotiate).
    pub fn no_negotiation(mut self) -> Self {
        self.handshake = Handshake::GreetingOnly;
        self
    }

    /// The deadline for opening the connection (default 10 s, [`DEFAULT_CONNECT_TIMEOUT`];
    /// `None`: the operating system's own).
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The deadline for the greeting and negotiation. A QEMU monitor that already has a client
    /// accepts a second connection and then stays silent; this deadline is what notices, with
    /// [`Error::NoGreeting`]. A peer that sends something else than a greeting or an event
    /// first (an HMP monitor, a serial console) fails the connect at once instead (default 10 s,
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]; `None`: wait forever).
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The default deadline of every call; [`CallOptions::timeout`] overrides it per call
    /// (default `None`: a call waits until its reply comes or the connection ends).
    pub fn call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The largest message accepted from the server (default 64 MiB, QEMU's own limit).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.limits.max_message_bytes = bytes;
        self
    }

    /// How many events each subscriber may fall behind before it lags (default 256,
    /// [`DEFAULT_EVENT_BUFFER`]); [`Client::subscribe_with_buffer`] sets it per subscriber.
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.event_buffer = events.max(1);
        self
    }

    /// Whether in-band commands carry ids (default: yes). Without, their replies are matched
    /// in order, which QEMU guarantees for in-band commands even with `oob` on; out-of-band
    /// commands and commands given an id or file descriptors keep theirs.
    ///
    /// QEMU reads its input one byte per system call, about 3 µs a byte, so the 8 bytes or so of
    /// an id cost a sequential caller about a sixth of QEMU's throughput.
    ///
    /// The price: matching by order cannot survive a JSON parse error from QEMU. QEMU sends
    /// those without an id, one per bad token of input (possibly many for one input), so after
    /// one nobody can tell which reply belongs to which command. The client's own commands are
    /// always well-formed, but QEMU's input limits (64 MiB per value, depth 1024) or bytes
    /// written by someone else on the same stream can cause one. When a parse error arrives
    /// while commands without ids are in flight, the connection ends at once with
    /// [`ProtocolError::OrderLost`](crate::ProtocolError::OrderLost) (every pending call fails
    /// with it) rather than give later replies to the wrong calls. A cancelled call's command
    /// is still sent, and its reply discarded.
    pub fn in_band_ids(mut self, ids: bool) -> Self {
        self.in_band_ids = ids;
        self
    }

    /// Subscribes to events before the connection exists, so that events sent before or
    /// with the greeting and during negotiation are seen too. The stream belongs to the first
    /// connection this builder (or a clone of it) starts, and ends when that connection ends,
    /// including when its handshake fails.
    pub fn subscribe(&mut self, filter: impl Into<EventFilter>) -> EventStream {
        let (early, stream) = Early::new(filter.into(), self.event_buffer);
        self.early.push(early);
        stream
    }

    /// Connects to a unix socket path or a TCP `host:port`, then reads the greeting and
    /// negotiates.
    ///
    /// # Errors
    /// [`Error::Connect`] when the connection cannot be opened, [`Error::Timeout`] when it or
    /// the handshake takes too long, and [`Error::Protocol`] or [`Error::Disconnected`] when
    /// the handshake fails.
    pub async fn connect(self, endpoint: impl AsRef<str>) -> Result<Client, Error> {
        let endpoint: Endpoint = endpoint.as_ref().parse().unwrap_or_else(|never| match never {});
        self.connect_endpoint(&endpoint).await
    }

    /// Connects to an [`Endpoint`].
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`].
    pub async fn connect_endpoint(self, endpoint: &Endpoint) -> Result<Client, Error> {
        let connecting = Stream::connect(endpoint);
        let stream = with_deadline(self.connect_timeout, "connect", connecting)
            .await?
            .map_err(|e| Error::Connect { endpoint: endpoint.to_string(), source: Arc::new(e) })?;
        self.over_stream(stream).await
    }

    /// Listens on a unix socket (or TCP address) and waits for QEMU to connect to it, as with
    /// QEMU's `-qmp unix:PATH` without `server`; then reads the greeting and negotiates. The
    /// connect deadline covers the wait for QEMU.
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`].
    pub async fn accept(self, endpoint: impl AsRef<str>) -> Result<Client, Error> {
        let endpoint: Endpoint = endpoint.as_ref().parse().unwrap_or_else(|never| match never {});
        let connect_error = |e| Error::Connect { endpoint: endpoint.to_string(), source: Arc::new(e) };
        let listener = Listener::bind(&endpoint, 0o600).await.map_err(connect_error)?;
        let stream = with_deadline(self.connect_timeout, "accept", listener.accept()).await?.map_err(connect_error)?;
        self.over_stream(stream).await
    }

    /// Waits on a listener the caller already bound for QEMU to connect, then reads the
    /// greeting and negotiates. Binding first and starting QEMU second leaves no window in
    /// which QEMU could dial a socket that is not listening yet.
    ///
    /// # Errors
    /// As [`ClientBuilder::accept`].
    pub async fn accept_on(self, listener: &Listener) -> Result<Client, Error> {
        let stream = with_deadline(self.connect_timeout, "accept", listener.accept()).await?.map_err(|e| {
            let endpoint = listener.local_endpoint().map_or_else(|_| "(listener)".to_owned(), |e| e.to_string());
            Error::Connect { endpoint, source: Arc::new(e) }
        })?;
        self.over_stream(stream).await
    }

    /// Runs the client over a stream the caller already has.
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`], without [`Error::Connect`].
    pub async fn over_stream(self, stream: Stream) -> Result<Client, Error> {
        let socket =
            stream.into_socket().map_err(|e| Error::Connect { endpoint: "(stream)".into(), source: Arc::new(e) })?;
        let fds = socket.is_unix();
        let socket = Arc::new(socket);
        self.start(Reader::Socket(socket.clone()), Writer::Socket(socket), fds).await
    }

    /// Runs the client over any byte stream, such as `tokio::io::duplex` in tests. File
    /// descriptors cannot be passed over it.
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`], without [`Error::Connect`].
    pub async fn over<S>(self, io: S) -> Result<Client, Error>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        self.start(Reader::Other(Box::new(read)), Writer::Other(Box::new(write)), false).await
    }

    async fn start(self, reader: Reader, writer: Writer, fds: bool) -> Result<Client, Error> {
        let config = ClientConfig {
            handshake: self.handshake,
            enable_oob: self.enable_oob,
            limits: self.limits,
            ..ClientConfig::default()
        };
        let (calls_tx, calls_rx) = mpsc::channel(CALL_QUEUE);
        // Cancellations are never refused: there is at most one per call in flight.
        let (cancel_tx, cancel_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (closed_tx, closed_rx) = watch::channel(None);
        let subscribers = Arc::new(Subscribers::default());
        for early in &self.early {
            subscribers.attach(&early.0);
        }
        let shared = Arc::new(Shared::default());
        let driver = Driver::new(ClientSession::new(config), subscribers.clone(), ready_tx, closed_tx, shared.clone());
        tokio::spawn(driver.run(reader, writer, calls_rx, cancel_rx));
        let ready = match with_deadline(self.handshake_timeout, "negotiation", ready_rx).await {
            Ok(Ok(ready)) => ready?,
            Ok(Err(_)) => return Err(Error::Disconnected(Disconnect::Closed)),
            // Dropping the handle below closes the call channel, which ends the driver.
            Err(Error::Timeout { after, .. })
                if !shared.greeted.load(std::sync::atomic::Ordering::Acquire) && self.handshake != Handshake::None =>
            {
                return Err(Error::NoGreeting { after });
            }
            Err(timeout) => return Err(timeout),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                calls: calls_tx,
                cancels: cancel_tx,
                next_key: AtomicU64::new(0),
                greeting: ready.greeting,
                oob: ready.oob,
                fds,
                subscribers,
                shared,
                event_buffer: self.event_buffer,
                call_timeout: self.call_timeout,
                in_band_ids: self.in_band_ids,
                closed: closed_rx,
            }),
        })
    }
}

async fn with_deadline<F: std::future::Future>(
    deadline: Option<Duration>,
    what: &str,
    future: F,
) -> Result<F::Output, Error> {
    match deadline {
        Some(after) => {
            tokio::time::timeout(after, future).await.map_err(|_| Error::Timeout { what: what.to_owned(), after })
        }
        None => Ok(future.await),
    }
}

/// Per-call options: a deadline, out-of-band execution, file descriptors, an id. Every kind of
/// call takes them: [`Client::call`] (a JSON value), [`Client::call_as`] (a type of one's
/// own), [`Client::call_raw_json`] (undecoded text), [`Client::run_with`] (a typed
/// [`Command`](crate::commands::Command)) and [`Client::execute_raw_with`] (the whole
/// response).
#[derive(Debug, Default)]
#[must_use]
pub struct CallOptions {
    timeout: Option<Option<Duration>>,
    oob: bool,
    fds: Vec<OwnedFd>,
    id: Option<Id>,
}

impl CallOptions {
    /// The defaults: in-band, the client's default deadline ([`ClientBuilder::call_timeout`],
    /// itself none by default), an automatic id, no file descriptors.
    pub fn new() -> Self {
        Self::default()
    }

    /// A deadline for this call (`None`: wait forever), overriding the client's default.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Runs the command out-of-band (`exec-oob`).
    pub fn oob(mut self) -> Self {
        self.oob = true;
        self
    }

    /// Sends these file descriptors with the command, with `SCM_RIGHTS` in the same `sendmsg`
    /// as the command's bytes, for `getfd` and `add-fd`.
    pub fn fds(mut self, fds: impl IntoIterator<Item = OwnedFd>) -> Self {
        self.fds.extend(fds);
        self
    }

    /// Uses this id instead of an automatic one.
    pub fn id(mut self, id: impl Into<Id>) -> Self {
        self.id = Some(id.into());
        self
    }
}

#[derive(Debug)]
struct Inner {
    calls: mpsc::Sender<ToDriver>,
    cancels: mpsc::UnboundedSender<u64>,
    next_key: AtomicU64,
    greeting: Option<Greeting>,
    oob: bool,
    fds: bool,
    subscribers: Arc<Subscribers>,
    shared: Arc<Shared>,
    event_buffer: usize,
    call_timeout: Option<Duration>,
    in_band_ids: bool,
    closed: watch::Receiver<Option<Disconnect>>,
}

/// A handle to one QMP connection. Clone it freely; the connection closes when the last
/// handle is dropped or [`Client::close`] is called.
///
/// # Example
///
/// Against QEMU, [`Client::connect`] takes the monitor's unix socket path or `host:port`.
/// So that this example runs as it stands, the peer here is a
/// [`Server`](crate::server::Server) from this crate, answering `stop` as QEMU does.
///
/// ```
/// use qmpkit::server::{CommandDef, EventDef, QmpError, Registry, Server};
/// use qmpkit::{Client, EventFilter};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut registry = Registry::new();
/// registry.event(EventDef::new("STOP"))?;
/// registry.command_with_context(CommandDef::new("stop"), |ctx, (): ()| async move {
///     ctx.events().emit_value("STOP", None);
///     Ok::<_, QmpError>(())
/// })?;
/// let server = Server::builder().version(7, 2, 0).registry(registry).build()?;
/// let (ours, theirs) = tokio::io::duplex(64 * 1024);
/// tokio::spawn({
///     let server = server.clone();
///     async move { server.serve_connection(theirs).await }
/// });
///
/// let qmp = Client::builder().over(ours).await?;
/// assert_eq!(qmp.query_version().await?.qemu.to_string(), "7.2.0");
///
/// // Subscribe before the command, and the event it causes cannot be missed.
/// let mut stops = qmp.subscribe(EventFilter::names(["STOP"]));
/// qmp.stop().await?;
/// assert_eq!(stops.next_event().await.unwrap().name, "STOP");
///
/// // Any command runs by name with JSON arguments; QMP errors come back as QEMU sent them.
/// match qmp.execute("cont", ()).await {
///     Err(qmpkit::Error::Qmp { error, .. }) => assert_eq!(error.desc, "The command cont has not been found"),
///     other => panic!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Tells the driver to forget a call when its future is dropped before the reply came.
struct CancelGuard<'a> {
    key: u64,
    cancels: &'a mpsc::UnboundedSender<u64>,
    armed: bool,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            // The driver may be gone already, in which case there is nothing to forget.
            let _ = self.cancels.send(self.key);
        }
    }
}

impl Client {
    /// Connects with the default [`ClientBuilder`].
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`].
    pub async fn connect(endpoint: impl AsRef<str>) -> Result<Client, Error> {
        ClientBuilder::new().connect(endpoint).await
    }

    /// A builder for a client with other settings.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// The server's greeting (absent for peers without one, such as the guest agent).
    #[must_use]
    pub fn greeting(&self) -> Option<&Greeting> {
        self.inner.greeting.as_ref()
    }

    /// Whether out-of-band execution was negotiated.
    #[must_use]
    pub fn oob_enabled(&self) -> bool {
        self.inner.oob
    }

    /// Why the connection ended, once it has.
    #[must_use]
    pub fn closed_reason(&self) -> Option<Disconnect> {
        self.inner.closed.borrow().clone()
    }

    /// Waits until the connection ends and says why.
    pub async fn closed(&self) -> Disconnect {
        let mut closed = self.inner.closed.clone();
        match closed.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(Disconnect::Closed),
            Err(_) => Disconnect::Closed,
        }
    }

    /// Closes the connection. Pending calls fail with [`Disconnect::Closed`].
    pub async fn close(&self) {
        let _ = self.inner.calls.send(ToDriver::Close).await;
        self.closed().await;
    }

    /// What this connection dropped or could not deliver so far: replies nobody waited for,
    /// QEMU's id-less parse errors, malformed messages, replies without their id, and events
    /// lost by subscribers that fell behind. Each is also logged with `tracing::warn!`.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let session = *self.inner.shared.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Stats::new(session, &self.inner.subscribers)
    }

    /// Subscribes to events. The subscription sees every event read after this returns, so
    /// subscribe before sending the command whose events you want; for the events sent during
    /// the handshake, subscribe on the builder ([`ClientBuilder::subscribe`]).
    #[must_use]
    pub fn subscribe(&self, filter: impl Into<EventFilter>) -> EventStream {
        self.subscribe_with_buffer(filter, self.inner.event_buffer)
    }

    /// Subscribes with a buffer of its own size instead of the client's default.
    #[must_use]
    pub fn subscribe_with_buffer(&self, filter: impl Into<EventFilter>, events: usize) -> EventStream {
        self.inner.subscribers.subscribe(filter.into(), events)
    }

    /// Runs a command and returns its `return` value. `arguments` is anything that serializes
    /// to a JSON object, or `()` for none.
    ///
    /// # Errors
    /// [`Error::Qmp`] when the server answers with an error, [`Error::Timeout`] after the
    /// client's default deadline, [`Error::Disconnected`] when the connection ends first, and
    /// [`Error::Arguments`] when `arguments` is not an object.
    pub async fn execute(&self, name: &str, arguments: impl Serialize) -> Result<Value, Error> {
        self.call(name, arguments, CallOptions::new()).await
    }

    /// Runs a command out-of-band (`exec-oob`): it overtakes in-band commands the server has
    /// queued.
    ///
    /// # Errors
    /// [`Error::Misuse`] with [`MisuseError::OobNotNegotiated`](crate::MisuseError) when `oob`
    /// was not negotiated (checked before anything is sent), and the errors of
    /// [`Client::execute`].
    pub async fn execute_oob(&self, name: &str, arguments: impl Serialize) -> Result<Value, Error> {
        self.call(name, arguments, CallOptions::new().oob()).await
    }

    /// Runs a command with file descriptors attached (unix sockets only), as `getfd` and
    /// `add-fd` need.
    ///
    /// # Errors
    /// [`Error::FdsNeedUnixSocket`] on other transports, and the errors of
    /// [`Client::execute`].
    pub async fn execute_with_fds(
        &self,
        name: &str,
        arguments: impl Serialize,
        fds: impl IntoIterator<Item = OwnedFd>,
    ) -> Result<Value, Error> {
        self.call(name, arguments, CallOptions::new().fds(fds)).await
    }

    /// Runs a command and decodes its result into `R`.
    ///
    /// # Errors
    /// [`Error::Decode`] when the result does not fit `R`, and the errors of
    /// [`Client::execute`].
    pub async fn execute_as<R: DeserializeOwned>(&self, name: &str, arguments: impl Serialize) -> Result<R, Error> {
        self.call_as(name, arguments, CallOptions::new()).await
    }

    /// Runs a typed [`Command`](crate::commands::Command) and decodes its result, straight
    /// from the reply's text.
    ///
    /// ```no_run
    /// # async fn demo(qmp: qmpkit::Client) -> Result<(), qmpkit::Error> {
    /// use qmpkit::commands::{QomGet, QueryStatus};
    /// let status = qmp.run(QueryStatus).await?;
    /// let machine = qmp.run(QomGet { path: "/machine".into(), property: "type".into() }).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Client::execute_as`], and [`Error::FdsNeedUnixSocket`] when the command carries
    /// file descriptors over another transport.
    pub async fn run<C: crate::commands::Command>(&self, command: C) -> Result<C::Returns, Error> {
        self.run_with(command, CallOptions::new()).await
    }

    /// Runs a typed command with per-call options: a deadline, out-of-band, an id. The
    /// command's own file descriptors are sent after any given in `options`.
    ///
    /// ```no_run
    /// # async fn demo(qmp: qmpkit::Client) -> Result<(), qmpkit::Error> {
    /// use std::time::Duration;
    /// use qmpkit::CallOptions;
    /// use qmpkit::commands::QueryStatus;
    /// let quick = CallOptions::new().timeout(Some(Duration::from_millis(500)));
    /// let status = qmp.run_with(QueryStatus, quick).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Client::run`] and [`Client::call`].
    pub async fn run_with<C: crate::commands::Command>(
        &self,
        mut command: C,
        options: CallOptions,
    ) -> Result<C::Returns, Error> {
        let options = options.fds(command.take_fds());
        let raw = self.call_raw_json(C::NAME, &command, options).await?;
        decode_result(C::NAME, &raw)
    }

    /// Runs a command and returns its `return` value as the server's JSON text, undecoded: the
    /// cheapest way to fetch a large result that is passed on or decoded into types of one's
    /// own.
    ///
    /// # Errors
    /// As [`Client::execute`].
    pub async fn execute_raw_json(&self, name: &str, arguments: impl Serialize) -> Result<Box<RawValue>, Error> {
        self.call_raw_json(name, arguments, CallOptions::new()).await
    }

    /// Runs a command with per-call options.
    ///
    /// # Errors
    /// As [`Client::execute`], [`Client::execute_oob`] and [`Client::execute_with_fds`].
    pub async fn call(&self, name: &str, arguments: impl Serialize, options: CallOptions) -> Result<Value, Error> {
        let raw = self.call_raw_json(name, arguments, options).await?;
        decode_result(name, &raw)
    }

    /// Runs a command with per-call options and decodes its result into `R`, as
    /// [`Client::execute_as`].
    ///
    /// # Errors
    /// As [`Client::execute_as`] and [`Client::call`].
    pub async fn call_as<R: DeserializeOwned>(
        &self,
        name: &str,
        arguments: impl Serialize,
        options: CallOptions,
    ) -> Result<R, Error> {
        let raw = self.call_raw_json(name, arguments, options).await?;
        decode_result(name, &raw)
    }

    /// Runs a command with per-call options and returns its result as undecoded JSON text, as
    /// [`Client::execute_raw_json`].
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn call_raw_json(
        &self,
        name: &str,
        arguments: impl Serialize,
        mut options: CallOptions,
    ) -> Result<Box<RawValue>, Error> {
        let kind = self.check_options(&options)?;
        let anonymous = !self.inner.in_band_ids && !options.oob && options.id.is_none() && options.fds.is_empty();
        // Serialized straight into the command's bytes, here in the caller's task, so that
        // large arguments never hold up the connection's driver.
        let command = EncodedCommand::serialize(kind, name, &arguments)
            .map_err(|e| Error::Arguments { command: name.to_owned(), reason: e.to_string() })?
            .with_id(options.id.take());
        let timeout = options.timeout.unwrap_or(self.inner.call_timeout);
        let response = self.send(command, anonymous, options.fds, timeout).await?;
        response.result.map_err(|error| Error::Qmp { error: Box::new(error), command: name.to_owned() })
    }

    /// Checks that the connection can honour the options (out-of-band needs `oob` negotiated,
    /// fds a unix socket) and returns the kind of command they ask for.
    fn check_options(&self, options: &CallOptions) -> Result<ExecKind, Error> {
        if !options.fds.is_empty() && !self.inner.fds {
            return Err(Error::FdsNeedUnixSocket);
        }
        if !options.oob {
            return Ok(ExecKind::Execute);
        }
        if !self.inner.oob {
            return Err(Error::Misuse(qmpkit_proto::MisuseError::OobNotNegotiated));
        }
        Ok(ExecKind::ExecOob)
    }

    /// Sends a command as given, with the id it carries (any JSON value) or an automatic one,
    /// and returns the whole response: a QMP error is a successful result here.
    ///
    /// # Errors
    /// [`Error::Misuse`] when the id is already pending, and the transport errors of
    /// [`Client::execute`].
    pub async fn execute_raw(&self, command: Command) -> Result<Response, Error> {
        self.execute_raw_with(command, CallOptions::new()).await
    }

    /// Sends a command as given, as [`Client::execute_raw`], with per-call options: a
    /// deadline, out-of-band, file descriptors, and an id that replaces the command's.
    ///
    /// # Errors
    /// As [`Client::execute_raw`] and [`Client::call`].
    pub async fn execute_raw_with(&self, mut command: Command, mut options: CallOptions) -> Result<Response, Error> {
        let name = command.name.clone();
        if self.check_options(&options)? == ExecKind::ExecOob {
            command.kind = ExecKind::ExecOob;
        }
        if let Some(id) = options.id.take() {
            command.id = Some(id);
        }
        let timeout = options.timeout.unwrap_or(self.inner.call_timeout);
        let raw = self.send(EncodedCommand::new(&command), false, options.fds, timeout).await?;
        raw.decode().map_err(|e| Error::Decode { command: name, reason: e.to_string() })
    }

    /// Sends a whole JSON object as the command, as a person typed it: every member but `id`
    /// goes to QEMU as given and in its order, so QEMU answers members it does not know, or an
    /// `execute` that is not a string, with its own error (which echoes the id and so reaches
    /// this call). The object's `id` is used when it has one, else one is assigned. It runs
    /// out-of-band when it has `exec-oob` and no `execute`; [`CallOptions::oob`] is not
    /// consulted. The options give the deadline, fds and an id that replaces the object's.
    ///
    /// # Errors
    /// As [`Client::execute_raw`]: [`Error::Misuse`] when the id is already pending or the
    /// object is out-of-band without `oob` negotiated, and the transport errors.
    pub async fn execute_raw_object(
        &self,
        object: Map<String, Value>,
        options: CallOptions,
    ) -> Result<Response, Error> {
        if !options.fds.is_empty() && !self.inner.fds {
            return Err(Error::FdsNeedUnixSocket);
        }
        let mut command = EncodedCommand::from_object(object);
        if options.id.is_some() {
            command = command.with_id(options.id);
        }
        let name = command.name().to_owned();
        let timeout = options.timeout.unwrap_or(self.inner.call_timeout);
        let raw = self.send(command, false, options.fds, timeout).await?;
        raw.decode().map_err(|e| Error::Decode { command: name, reason: e.to_string() })
    }

    /// Sends a command with no id at all; its reply is the next id-less response, which is
    /// only reliable when `oob` is off. The call cannot be cancelled once sent.
    ///
    /// # Errors
    /// As [`Client::execute_raw`].
    pub async fn execute_raw_without_id(&self, command: Command) -> Result<Response, Error> {
        let name = command.name.clone();
        let raw = self.send(EncodedCommand::new(&command), true, Vec::new(), self.inner.call_timeout).await?;
        raw.decode().map_err(|e| Error::Decode { command: name, reason: e.to_string() })
    }

    /// Runs a command and waits for the first event that `filter` accepts, subscribing before
    /// the command is sent so the event cannot be missed: `device_del` and `DEVICE_DELETED`,
    /// `system_powerdown` and `SHUTDOWN`. The deadline covers the command and the wait.
    ///
    /// # Errors
    /// [`Error::Timeout`] when no such event comes in time, [`Error::Disconnected`] when the
    /// connection ends first, and the errors of [`Client::execute`].
    pub async fn execute_and_wait(
        &self,
        name: &str,
        arguments: impl Serialize,
        filter: impl Into<EventFilter>,
        timeout: Duration,
    ) -> Result<(Value, Event), Error> {
        self.and_wait(name, self.execute(name, arguments), filter.into(), timeout).await
    }

    /// Runs a typed command and waits for the first event that `filter` accepts, as
    /// [`Client::execute_and_wait`].
    ///
    /// # Errors
    /// As [`Client::execute_and_wait`] and [`Client::run`].
    pub async fn run_and_wait<C: crate::commands::Command>(
        &self,
        command: C,
        filter: impl Into<EventFilter>,
        timeout: Duration,
    ) -> Result<(C::Returns, Event), Error> {
        self.and_wait(C::NAME, self.run(command), filter.into(), timeout).await
    }

    /// Subscribes, then runs `call`, then waits for the event; the deadline covers both.
    async fn and_wait<T>(
        &self,
        name: &str,
        call: impl std::future::Future<Output = Result<T, Error>>,
        filter: EventFilter,
        timeout: Duration,
    ) -> Result<(T, Event), Error> {
        // The subscription is made here, before `call` is first polled, so the command has
        // not been sent yet.
        let mut events = self.subscribe(filter);
        let work = async {
            let value = call.await?;
            match events.next_event().await {
                Some(event) => Ok((value, event)),
                None => Err(Error::Disconnected(events.end_reason().unwrap_or(Disconnect::Closed))),
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| Error::Timeout { what: format!("{name} and its event"), after: timeout })?
    }

    async fn send(
        &self,
        command: EncodedCommand,
        anonymous: bool,
        fds: Vec<OwnedFd>,
        timeout: Option<Duration>,
    ) -> Result<RawResponse, Error> {
        if let Some(reason) = self.closed_reason() {
            return Err(Error::Disconnected(reason));
        }
        let key = self.inner.next_key.fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        let mut guard = CancelGuard { key, cancels: &self.inner.cancels, armed: true };
        // Each future is built where it is awaited, and without a deadline the round trip is
        // not wrapped at all: every wrapper or local moved into an await copies the whole
        // future once more, on every call.
        let result = match timeout {
            None => self.round_trip(Box::new(Call { key, command, anonymous, fds, reply: reply_tx }), reply_rx).await,
            Some(after) => {
                // The name is only needed to report a timeout.
                let what = command.name().to_owned();
                let call = Box::new(Call { key, command, anonymous, fds, reply: reply_tx });
                match tokio::time::timeout(after, self.round_trip(call, reply_rx)).await {
                    Ok(result) => result,
                    Err(_) => return Err(Error::Timeout { what, after }),
                }
            }
        };
        guard.armed = false;
        result
    }

    /// Hands a call to the driver and waits for its reply.
    async fn round_trip(
        &self,
        call: Box<Call>,
        reply_rx: oneshot::Receiver<Result<RawResponse, Error>>,
    ) -> Result<RawResponse, Error> {
        if self.inner.calls.send(ToDriver::Call(call)).await.is_err() {
            // Boxed, so that this rare wait does not make every round trip's future larger.
            return Err(Error::Disconnected(Box::pin(self.closed()).await));
        }
        match reply_rx.await {
            Ok(result) => result,
            Err(_) => Err(Error::Disconnected(Box::pin(self.closed()).await)),
        }
    }
}

/// Decodes a result straight from the reply's text into `R`, never through a `Value`.
fn decode_result<R: DeserializeOwned>(name: &str, raw: &RawValue) -> Result<R, Error> {
    decode_json(raw.get().as_bytes()).map_err(|e| Error::Decode { command: name.to_owned(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    /// Handles are shared between tasks and threads.
    #[test]
    fn client_is_clone_send_sync() {
        fn assert<T: Clone + Send + Sync + 'static>() {}
        assert::<super::Client>();
        assert::<crate::blocking::Client>();
    }
}
