//! An embeddable QMP server: speak the QEMU Monitor Protocol exactly as QEMU does, from any
//! Rust program (a VMM, a storage daemon, a test double).
//!
//! The wire behaviour (greeting, negotiation, envelope checks, id echo, JSON input rules and
//! their error texts) comes from [`qmpkit_proto::ServerSession`]; this module adds what needs
//! IO and time: listeners, the per-connection task with QEMU's execution order, the command
//! [`Registry`] with argument validation, [`EventSender`] with QEMU's rate limits, and file
//! descriptor passing.
//!
//! # Example
//!
//! A server with one typed command and one event, served here over an in-memory pipe (a
//! unix socket or TCP works the same way, through [`Server::bind`] and [`Server::serve`]):
//!
//! ```
//! use qmpkit::server::{CommandDef, EventDef, MemberDef, QmpError, Registry, Server};
//! use serde::{Deserialize, Serialize};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, AsyncBufReadExt};
//!
//! #[derive(Deserialize)]
//! struct SetSpeed {
//!     speed: i64,
//!     #[serde(default)]
//!     reason: Option<String>,
//! }
//!
//! #[derive(Serialize)]
//! struct Speed {
//!     speed: i64,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut registry = Registry::new();
//! // The event's description makes `query-qmp-schema` list it.
//! registry.event(EventDef::new("SPEED_CHANGED").member(MemberDef::new("speed", "int")))?;
//! // The description validates arguments with QEMU's texts before the handler runs.
//! registry.command_with_context(
//!     CommandDef::new("x-set-speed")
//!         .arg(MemberDef::new("speed", "int"))
//!         .arg(MemberDef::optional("reason", "str"))
//!         .returns("int"),
//!     |ctx, args: SetSpeed| async move {
//!         if args.speed == 0 {
//!             return Err(QmpError::generic("speed must not be zero"));
//!         }
//!         let _ = args.reason;
//!         ctx.events().emit("SPEED_CHANGED", &Speed { speed: args.speed }).expect("an object");
//!         Ok(args.speed)
//!     },
//! )?;
//! let server = Server::builder().version(10, 0, 2).package("my-vmm").registry(registry).build()?;
//!
//! let (client, io) = tokio::io::duplex(4096);
//! tokio::spawn({
//!     let server = server.clone();
//!     async move { server.serve_connection(io).await }
//! });
//! let (read, mut write) = tokio::io::split(client);
//! let mut lines = BufReader::new(read).lines();
//! let greeting = lines.next_line().await?.unwrap();
//! assert_eq!(greeting, r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "my-vmm"}, "capabilities": ["oob"]}}"#);
//!
//! write.write_all(br#"{"execute": "qmp_capabilities"}"#).await?;
//! assert_eq!(lines.next_line().await?.unwrap(), r#"{"return": {}}"#);
//!
//! write.write_all(br#"{"execute": "x-set-speed", "arguments": {"speed": 7}, "id": 1}"#).await?;
//! let event = lines.next_line().await?.unwrap();
//! assert!(event.starts_with(r#"{"timestamp": {"seconds": "#));
//! assert!(event.ends_with(r#""event": "SPEED_CHANGED", "data": {"speed": 7}}"#));
//! assert_eq!(lines.next_line().await?.unwrap(), r#"{"return": 7, "id": 1}"#);
//!
//! write.write_all(br#"{"execute": "x-set-speed", "arguments": {"speed": "fast"}, "id": 2}"#).await?;
//! assert_eq!(
//!     lines.next_line().await?.unwrap(),
//!     r#"{"id": 2, "error": {"class": "GenericError", "desc": "Invalid parameter type for 'speed', expected: integer"}}"#
//! );
//! server.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! # Behaviour, as QEMU
//!
//! * Each connection gets one greeting and its own negotiation state, parser, request queue
//!   and named fds; fd sets ([`FdSets`]) are shared by all connections.
//! * Without `oob`, requests run one at a time in order, and input is not read while one
//!   runs. With `oob`, up to [`Limits::queue_len`] (8) in-band requests wait while one runs,
//!   reading pauses beyond that, and `exec-oob` requests run at once, ahead of the queue,
//!   for commands registered with [`CommandDef::allow_oob`].
//! * Events go to negotiated connections only, with a timestamp, between messages.
//! * An `exec-oob` command runs as soon as it is read, before the rest of the same read is
//!   judged, so its reply precedes the replies to what followed it, even errors that need no
//!   execution (QEMU runs it in its I/O thread while such errors wait in the request queue).
//! * The envelope's members are checked in QEMU's order (its `QDict` hash order), whatever
//!   order they arrive in, so the same member is named when several are wrong;
//!   `qmp_capabilities` checks its arguments before it refuses a second negotiation.
//! * Clients: by default ([`ClientPolicy::Many`]) every client is served at once, each with
//!   its own session. [`ClientPolicy::One`] serves one at a time as a QEMU monitor does: a
//!   second client's connection completes but it hears nothing until the first leaves.
//!
//! * Stopping: [`Server::shutdown`] lets running commands finish and fails queued ones;
//!   [`Server::exit`] (or [`Context::exit_server`] from a handler, before its reply) drops
//!   queued ones unanswered, as QEMU does after `quit`.
//!
//! # Many servers, one registry
//!
//! A [`Registry`] compiles its schema once. [`ServerBuilder::shared_registry`] lets many
//! servers use one registry, and [`ServerBuilder::data`] gives each its own state, which
//! handlers reach with [`Context::data`]; a process can so serve thousands of monitors
//! (`qmpkit-sim` serves one simulated machine per server this way). A registry that takes
//! milliseconds to describe can be a [`LazyRegistry`] ([`ServerBuilder::lazy_registry`]):
//! the server then greets its clients at once, builds the registry on a blocking thread,
//! and holds each connection's first request until it is ready.
//! [`Registry::introspection`] answers `query-qmp-schema` with given entities verbatim, and
//! [`Registry::command_unchecked`] registers a command whose arguments its handler checks
//! (QEMU's `'gen': false` commands such as `device_add`).
//!
//! # Where it differs from QEMU, on purpose
//!
//! * Many clients at once by default (see above): an embedded server usually has several
//!   users, and one hung client should not lock out the rest.
//! * Bounds QEMU does not have ([`Limits::max_connection_fds`], [`Limits::max_fdset_fds`],
//!   [`Limits::max_connections`]), with errors of our own wording, so that one client cannot
//!   take every file descriptor the process may open.
//! * An `exec-oob` handler that has to wait (QEMU's never do) lets later input be answered
//!   meanwhile, so an error after it in the same read may then come first.
//! * When input has an error followed by an `exec-oob` in one read, QEMU's order of the two
//!   replies depends on its threads' timing; this server answers the error first.
//! * Of several unexpected arguments to `qmp_capabilities`, QEMU names the first of its
//!   `GHashTable`; this server names the first in `QDict` order, which agreed in every case
//!   recorded from QEMU 7.2.
//! * `"id": 1e400`: QEMU echoes `inf`, which is not JSON; this server echoes the largest
//!   double instead (see `qmpkit_proto::qjson`). The transcript replays leave out this id
//!   and 2^64, which QEMU turns into a double.
//!
//! # Bounds
//!
//! A client that stops reading cannot grow the server's memory: each connection holds at
//! most [`Limits::max_output`] bytes for its client (1 MiB by default). Input is not read
//! while the output buffer is above [`Limits::high_water`], so a client that pipelines
//! requests without reading replies is slowed down; when events would push a connection past
//! `max_output` the connection is closed (logged as a warning, counted in
//! [`Stats::overflows`]), and its client sees EOF. Other connections are not affected.
//!
//! File descriptors are bounded too: [`Limits::max_connection_fds`] per connection for the
//! fds it named with `getfd` or added with `add-fd` (256 by default), and
//! [`Limits::max_fdset_fds`] for all the fd sets (1024), which outlive connections; beyond
//! them the command fails with a `GenericError` and the fd that came with it is closed. Beyond
//! [`Limits::max_connections`] (16,384) a new client is closed at once, before its greeting,
//! rather than left waiting in silence: it sees the end of the stream at once, the server
//! logs a warning and counts it in [`Stats::refused`].
//!
//! Output is flushed whenever the output buffer empties, so streams handed to
//! [`Server::serve_connection`] that buffer (a `BufWriter`, TLS) do not hold replies back.
//!
//! # Layout
//! - [`registry`]: [`Registry`], [`Context`] and the built-in commands.
//! - `connection`: the per-connection task.
//! - [`events`]: [`EventSender`] and [`Throttle`].
//! - [`fds`]: [`FdSets`] and the per-connection fd slot.

use std::any::Any;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use qmpkit_proto::server::{Dialect, ServerConfig, ServerSession};
use qmpkit_proto::{Capability, QemuVersion, VersionInfo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::transport::{Endpoint, Listener, Stream};

mod connection;
pub mod events;
pub mod fds;
mod lazy;
pub mod registry;

pub use connection::ConnectionError;
pub use events::{EventError, EventSender, Throttle};
pub use fds::FdSets;
pub use lazy::LazyRegistry;
pub use qmpkit_proto::{ErrorClass, QmpError};
pub use qmpkit_schema::{
    AlternateDef, Args, BuildError, Builtin, CommandDef, EnumDef, EventDef, MemberDef, ObjectDef, TypeDef, TypeRef,
};
pub use registry::{BoxFuture, CommandResult, Context, Registry, RegistryError};

use connection::{Connection, Io, Plain, Sock};
use registry::Shared;

/// Per-connection bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// In-band requests that may wait while one runs, once `oob` is enabled; QEMU's
    /// `QMP_REQ_QUEUE_LEN_MAX`, 8.
    pub queue_len: usize,
    /// Out-of-band commands that may run at once on one connection; input is not read
    /// while this many run.
    pub max_oob: usize,
    /// The most bytes held for one client (unwritten output plus queued events); beyond it
    /// the client is disconnected.
    pub max_output: usize,
    /// Above this many unwritten bytes, input is not read.
    pub high_water: usize,
    /// The most fds one connection may hold (256 by default): those it named with `getfd`
    /// plus those it added to the fd sets with `add-fd` that are still there. `getfd` with
    /// a new name or `add-fd` beyond it fails with a `GenericError` and closes the fd it came
    /// with. QEMU has no bound.
    pub max_connection_fds: usize,
    /// The most fds the server's fd sets hold in all (1024 by default); `add-fd` beyond it
    /// fails with a `GenericError` and closes the fd. QEMU has no bound.
    pub max_fdset_fds: usize,
    /// The most connections [`Server::serve`] serves at once (16,384 by default). A client
    /// that connects beyond it is accepted and closed at once, before any greeting, so it
    /// sees the end of the stream instead of a silent connection; the server logs a warning
    /// and counts it in [`Stats::refused`]. With [`ClientPolicy::One`] the bound is one and
    /// later clients wait instead.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queue_len: 8,
            max_oob: 8,
            max_output: 1 << 20,
            high_water: 64 << 10,
            max_connection_fds: 256,
            max_fdset_fds: 1024,
            max_connections: 16 * 1024,
        }
    }
}

/// How many clients [`Server::serve`] talks to at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientPolicy {
    /// Every client that connects is served at once, each with its own session, up to
    /// [`Limits::max_connections`]. The default.
    #[default]
    Many,
    /// One client at a time, as a QEMU monitor does: while one is connected, the listeners
    /// stop accepting, so a second client's connection completes (the kernel queues it) but
    /// it hears nothing, not even a greeting, until the first leaves; then it gets its
    /// greeting and the replies to what it already sent. For a faithful stand-in for QEMU.
    /// It governs [`Server::serve`]; connections handed to [`Server::serve_connection`] and
    /// its siblings are served as they come.
    One,
}

/// Counters that show what the server holds, for monitoring and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Open connections.
    pub connections: usize,
    /// Bytes held for clients, over all connections: unwritten output and queued events.
    pub buffered_bytes: usize,
    /// Connections closed because their client did not read its output.
    pub overflows: u64,
    /// Connections closed at once because [`Limits::max_connections`] were open.
    pub refused: u64,
}

/// Builds a [`Server`].
#[must_use]
pub struct ServerBuilder {
    config: ServerConfig,
    registry: Arc<LazyRegistry>,
    /// Whether the registry came from [`ServerBuilder::registry`], and so is checked by
    /// [`ServerBuilder::build`].
    own_registry: bool,
    data: Option<Arc<dyn Any + Send + Sync>>,
    throttle: Throttle,
    limits: Limits,
    clients: ClientPolicy,
    socket_mode: u32,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field("registry", &self.registry)
            .field("data", &self.data.is_some())
            .field("limits", &self.limits)
            .field("clients", &self.clients)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// Sets the QEMU version in the greeting and in `query-version`.
    pub fn version(mut self, major: u64, minor: u64, micro: u64) -> Self {
        self.config.version.qemu = QemuVersion::Triple { major, minor, micro };
        self
    }

    /// Sets the `package` string of the version (QEMU leaves it empty; downstreams name
    /// themselves).
    pub fn package(mut self, package: impl Into<String>) -> Self {
        self.config.version.package = package.into();
        self
    }

    /// Sets the whole version, for example a string version in the 2010 dialect.
    pub fn version_info(mut self, version: VersionInfo) -> Self {
        self.config.version = version;
        self
    }

    /// Whether to offer the `oob` capability (on by default, as QEMU on a socket).
    pub fn oob(mut self, oob: bool) -> Self {
        self.config.oob = oob;
        self
    }

    /// Offers an extra capability in the greeting; clients cannot enable it.
    pub fn capability(mut self, capability: Capability) -> Self {
        self.config.extra_capabilities.push(capability);
        self
    }

    /// Speaks QMP as QEMU 0.12.50 did in 2010: greeting version `"0.12.50"`, no
    /// capabilities, errors with `data` and the seed's classes.
    pub fn seed_2010(mut self) -> Self {
        let seed = ServerConfig::seed_2010();
        self.config.version = seed.version;
        self.config.oob = false;
        self.config.dialect = Dialect::Seed2010;
        self
    }

    /// Writes QEMU's multi-line `pretty=on` layout.
    pub fn pretty(mut self, pretty: bool) -> Self {
        self.config.pretty = pretty;
        self
    }

    /// Sets the limits on client input (QEMU's by default).
    pub fn input_limits(mut self, limits: qmpkit_proto::Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Sets the commands.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = LazyRegistry::ready(Arc::new(registry));
        self.own_registry = true;
        self
    }

    /// Sets the commands to a registry that other servers use too. Its schema is compiled
    /// once, on first use, and shared, so a process can run thousands of servers with the
    /// same commands for little more than their connections; give each server its own
    /// state with [`ServerBuilder::data`].
    ///
    /// [`ServerBuilder::build`] does not compile a shared registry: it is compiled once, on
    /// first use (a command, [`Registry::check`], [`Registry::introspect`]), so that a server
    /// can greet its first client before that work is done. Call [`Registry::check`] once
    /// to find mistakes in its descriptions.
    pub fn shared_registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = LazyRegistry::ready(registry);
        self.own_registry = false;
        self
    }

    /// Sets the commands to a registry built when the server starts serving, on a blocking
    /// thread: the server listens and greets its clients at once, and each connection's
    /// first request waits until the registry is ready. Servers that share the
    /// [`LazyRegistry`] build it once. This is for registries that take milliseconds to
    /// describe, such as a simulated QEMU's; [`ServerBuilder::build`] does not check it.
    pub fn lazy_registry(mut self, registry: Arc<LazyRegistry>) -> Self {
        self.registry = registry;
        self.own_registry = false;
        self
    }

    /// Gives this server's handlers a state of their own, which they reach with
    /// [`Context::data`] (and the program with [`Server::data`]): the same registry then
    /// serves many servers, each with its own state.
    pub fn data<T: Any + Send + Sync>(mut self, data: Arc<T>) -> Self {
        self.data = Some(data);
        self
    }

    /// Sets the event rate limits ([`Throttle::qemu`] by default).
    pub fn throttle(mut self, throttle: Throttle) -> Self {
        self.throttle = throttle;
        self
    }

    /// Sets the per-connection bounds.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets how many clients are served at once ([`ClientPolicy::Many`] by default;
    /// [`ClientPolicy::One`] is QEMU's behaviour).
    pub fn clients(mut self, clients: ClientPolicy) -> Self {
        self.clients = clients;
        self
    }

    /// Sets the permission bits of unix sockets made by [`Server::bind`] (0o600 by default,
    /// so that only the owner can reach the monitor).
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.socket_mode = mode;
        self
    }

    /// How long [`Server::serve`] lets running commands finish after shutdown is asked for,
    /// before it drops their connections (10 s by default).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Builds the server, checking the registry's schema (except a
    /// [shared](ServerBuilder::shared_registry) one's).
    ///
    /// # Errors
    /// [`RegistryError::Schema`] when the command descriptions do not form a valid schema.
    pub fn build(self) -> Result<Server, RegistryError> {
        if self.own_registry {
            self.registry.get().check()?;
        }
        let events = EventSender::new(self.limits.max_output, self.config.pretty, self.throttle);
        let mut shared = Shared::new(
            self.config.version.clone(),
            self.config.dialect,
            FdSets::with_limit(self.limits.max_fdset_fds),
            events.clone(),
        );
        shared.data = self.data;
        Ok(Server {
            inner: Arc::new(Inner {
                config: self.config,
                registry: self.registry,
                shared: Arc::new(shared),
                events,
                limits: self.limits,
                clients: self.clients,
                refused: AtomicU64::new(0),
                socket_mode: self.socket_mode,
                shutdown_timeout: self.shutdown_timeout,
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    config: ServerConfig,
    registry: Arc<LazyRegistry>,
    shared: Arc<Shared>,
    events: EventSender,
    limits: Limits,
    clients: ClientPolicy,
    refused: AtomicU64,
    socket_mode: u32,
    shutdown_timeout: Duration,
}

/// A QMP server: its configuration, commands, events and connections. Cloning it gives
/// another handle to the same server.
///
/// # Example
///
/// Serving QEMU's built-in commands on a unix socket until told to stop, with this crate's
/// client talking to it (the [module](self) example adds commands and events):
///
/// ```
/// use qmpkit::server::Server;
/// use qmpkit::transport::Endpoint;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let socket = dir.path().join("qmp.sock");
/// let server = Server::builder().version(10, 0, 2).package("my-vmm").build()?;
/// let listener = server.bind(&Endpoint::Unix(socket.clone())).await?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let serving = tokio::spawn({
///     let server = server.clone();
///     async move { server.serve([listener], async { stopped.await.ok(); }).await }
/// });
///
/// let qmp = qmpkit::Client::connect(socket.to_str().unwrap()).await?;
/// assert_eq!(qmp.query_version().await?.package, "my-vmm");
///
/// stop.send(()).ok();
/// serving.await??;
/// assert!(!socket.exists(), "the socket file is removed at shutdown");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Server {
    inner: Arc<Inner>,
}

impl Server {
    /// A builder with QEMU's defaults: version 10.0.2 with package `qmpkit <version>`, `oob`
    /// offered, QEMU's rate limits and the built-in commands only.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: ServerConfig::default(),
            registry: LazyRegistry::ready(Arc::new(Registry::new())),
            own_registry: true,
            data: None,
            throttle: Throttle::qemu(),
            limits: Limits::default(),
            clients: ClientPolicy::default(),
            socket_mode: 0o600,
            shutdown_timeout: Duration::from_secs(10),
        }
    }

    /// The handle with which any task sends events to the server's clients.
    #[must_use]
    pub fn events(&self) -> EventSender {
        self.inner.events.clone()
    }

    /// The commands. A [lazy](ServerBuilder::lazy_registry) registry is built first, on
    /// this thread, or waited for when another thread is building it.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        self.inner.registry.get()
    }

    /// The server's own state given to [`ServerBuilder::data`], when it is a `T`.
    #[must_use]
    pub fn data<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.inner.shared.data.as_deref()?.downcast_ref::<T>()
    }

    /// The fd sets shared by all connections.
    #[must_use]
    pub fn fdsets(&self) -> &FdSets {
        &self.inner.shared.fdsets
    }

    /// What the server holds now.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let hub = self.inner.events.hub();
        Stats {
            connections: hub.connections(),
            buffered_bytes: hub.buffered(),
            overflows: hub.overflows.load(Ordering::Relaxed),
            refused: self.inner.refused.load(Ordering::Relaxed),
        }
    }

    /// Listens on an endpoint: a unix socket is created with the builder's mode (0o600 by
    /// default; never reachable with looser bits), replacing a stale socket file but never
    /// one a live server answers on, and TCP with an empty host listens on the loopback
    /// address only (`":4444"` is `127.0.0.1:4444`). See [`Listener::bind`].
    ///
    /// # Errors
    /// [`io::ErrorKind::AddrInUse`] when a live server (or a file that is not a socket)
    /// has the unix socket's path; the OS error when binding fails otherwise.
    pub async fn bind(&self, endpoint: &Endpoint) -> io::Result<Listener> {
        let endpoint = match endpoint {
            Endpoint::Tcp { host, port } if host.is_empty() => Endpoint::Tcp { host: "127.0.0.1".into(), port: *port },
            other => other.clone(),
        };
        Listener::bind(&endpoint, self.inner.socket_mode).await
    }

    /// Accepts and serves clients on every listener until `shutdown` completes or
    /// [`Server::shutdown`] is called. Then it stops accepting (a unix socket file is
    /// removed), lets running commands finish (queued ones are answered with an error),
    /// flushes and closes every connection, and returns; connections still busy after the
    /// builder's shutdown timeout are dropped.
    ///
    /// # Errors
    /// None today: accept errors (such as running out of file descriptors) are logged and
    /// retried. The `Result` leaves room for errors that must end serving.
    pub async fn serve<L>(&self, listeners: L, shutdown: impl Future<Output = ()>) -> io::Result<()>
    where
        L: IntoIterator<Item = Listener>,
    {
        // A lazy registry is built while the first clients connect and read their greeting.
        self.inner.registry.start();
        // With one client at a time, an acceptor holds the only permit from before it accepts
        // until that client's connection ends, so later clients wait in the kernel's queue.
        let turn = (self.inner.clients == ClientPolicy::One).then(|| Arc::new(Semaphore::new(1)));
        let (tx, mut rx) = mpsc::channel::<(Stream, Option<OwnedSemaphorePermit>)>(64);
        let mut acceptors = JoinSet::new();
        for listener in listeners {
            let tx = tx.clone();
            let endpoint = listener.local_endpoint().map(|e| e.to_string()).unwrap_or_default();
            tracing::info!(%endpoint, "QMP server listening");
            let turn = turn.clone();
            acceptors.spawn(accept_loop(listener, tx, turn).instrument(tracing::info_span!("qmp_listener", %endpoint)));
        }
        drop(tx);
        let mut connections = JoinSet::new();
        let mut stop = self.inner.shared.stop.subscribe();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = stop.wait_for(|stopped| *stopped) => break,
                accepted = rx.recv() => match accepted {
                    Some((stream, permit)) => {
                        // Count only connections still running.
                        while connections.try_join_next().is_some() {}
                        if connections.len() >= self.inner.limits.max_connections {
                            self.inner.refused.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                max = self.inner.limits.max_connections,
                                "too many connections: closing a new one at once"
                            );
                            drop(stream);
                            continue;
                        }
                        let server = self.clone();
                        connections.spawn(async move {
                            let _ = server.serve_stream(stream).await;
                            drop(permit);
                        });
                    }
                    None => break,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        tracing::info!(connections = connections.len(), "QMP server shutting down");
        acceptors.shutdown().await;
        self.shutdown();
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(self.inner.shutdown_timeout, drain).await.is_err() {
            tracing::warn!(connections = connections.len(), "dropping connections still busy at shutdown");
            connections.shutdown().await;
        }
        Ok(())
    }

    /// Asks the server to shut down: [`Server::serve`] stops accepting, and every connection
    /// (also those run by [`Server::serve_connection`]) finishes its running commands, answers
    /// the queued ones with an error, flushes its output and closes.
    pub fn shutdown(&self) {
        self.inner.shared.shutdown(false);
    }

    /// Stops the server as QEMU stops when it exits (on `quit`): as [`Server::shutdown`],
    /// except that requests queued on the connections are dropped unanswered rather than
    /// failed, as a QEMU that exits leaves them. Commands already running still reply. A
    /// handler that makes the server exit calls [`Context::exit_server`] before it returns,
    /// so that its reply is the last thing its client hears.
    pub fn exit(&self) {
        self.inner.shared.shutdown(true);
    }

    /// Serves one client on any byte stream (no file descriptor passing), until the client
    /// closes it or the server shuts down. Tests use it with `tokio::io::duplex`.
    ///
    /// # Errors
    /// [`ConnectionError::Io`] when reading or writing fails, and
    /// [`ConnectionError::OutputOverflow`] when the client was dropped for not reading.
    pub async fn serve_connection<T>(&self, io: T) -> Result<(), ConnectionError>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        self.run(Plain(io)).await
    }

    /// Serves one client on a unix socket, receiving file descriptors passed with
    /// `SCM_RIGHTS` for `getfd`, `add-fd` and [`Context::take_fd`].
    ///
    /// # Errors
    /// As [`Server::serve_connection`].
    pub async fn serve_unix(&self, stream: UnixStream) -> Result<(), ConnectionError> {
        self.serve_stream(Stream::Unix(stream)).await
    }

    /// Serves one accepted [`Stream`], with fd passing when it is a unix socket.
    ///
    /// # Errors
    /// As [`Server::serve_connection`].
    pub async fn serve_stream(&self, stream: Stream) -> Result<(), ConnectionError> {
        self.run(Sock(stream.into_socket()?)).await
    }

    async fn run<T: Io>(&self, io: T) -> Result<(), ConnectionError> {
        let inner = &self.inner;
        let hub = inner.events.hub().clone();
        let (id, conn) = hub.register(inner.limits.max_connection_fds);
        if *inner.shared.stop.borrow() {
            conn.shutdown.store(true, Ordering::SeqCst);
        }
        let session = ServerSession::new(inner.config.clone());
        let connection =
            Connection::new(io, session, &inner.registry, inner.shared.clone(), hub, id, conn, inner.limits);
        let span = tracing::debug_span!("qmp_connection", id);
        span.in_scope(|| tracing::debug!("client connected"));
        connection.run().instrument(span).await
    }
}

async fn accept_loop(
    listener: Listener,
    tx: mpsc::Sender<(Stream, Option<OwnedSemaphorePermit>)>,
    turn: Option<Arc<Semaphore>>,
) {
    loop {
        let permit = match &turn {
            Some(turn) => match turn.clone().acquire_owned().await {
                Ok(permit) => Some(permit),
                Err(_) => return,
            },
            None => None,
        };
        match listener.accept().await {
            Ok(stream) => {
                if tx.send((stream, permit)).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                // Typically EMFILE: back off instead of spinning, and keep the listener.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
