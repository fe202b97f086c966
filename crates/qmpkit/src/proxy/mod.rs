//! A QMP multiplexer: many clients on one QEMU monitor, with a policy per listener.
//!
//! QEMU serves one client per monitor socket. A [`Proxy`] holds the one connection to QEMU
//! (with `oob` when QEMU offers it) and serves any number of clients on its own listeners. Each
//! client sees a normal QMP server: a greeting with QEMU's version and capabilities, its own
//! negotiation, its own ids echoed exactly as sent (any JSON type: the id stays in the proxy
//! and is written back on the reply), every event QEMU sends in QEMU's order once it has negotiated, `exec-oob`
//! passed through, and file descriptors passed through with `getfd` and `add-fd`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use qmpkit::proxy::{Policy, Proxy};
//! use qmpkit::transport::{Endpoint, Listener};
//!
//! let full = Listener::bind(&"/run/vm1/qmp-rw.sock".parse()?, 0o600).await?;
//! let read_only = Listener::bind(&"/run/vm1/qmp-ro.sock".parse()?, 0o660).await?;
//! let proxy = Proxy::builder("/run/vm1/qmp.sock".parse()?)
//!     .listener("rw", full, Policy::allow_all())
//!     .listener("ro", read_only, Policy::allow_all().allow(["query-*"])?)
//!     .build();
//! proxy.run(async { tokio::signal::ctrl_c().await.ok(); }).await;
//! # Ok(()) }
//! ```
//!
//! # Decisions
//!
//! - **Order.** Each client has at most one in-band command upstream at a time, and its
//!   replies (including the ones the proxy writes itself, for malformed input or refused
//!   commands) keep the order of its requests, as QEMU's in-band replies do. Its out-of-band
//!   commands go up at once, beside it (at most 8 per client at a time).
//! - **Ids upstream.** A client's id never goes to QEMU: the proxy keeps it and writes it
//!   back on the reply. In-band commands go up without any id by default and their replies
//!   are matched in order, which QEMU guarantees (out-of-band commands and commands with
//!   descriptors carry the upstream client's own ids). QEMU reads its input one byte per
//!   system call, so an id costs it about as much as the proxy's whole hop. This is safe
//!   because QEMU answers without an id only input it cannot parse, and then with one error
//!   in the place of that input among the in-band replies, which is where the proxy expects
//!   the reply; and every request it forwards has passed QEMU's parser rules and limits in
//!   the downstream session and is re-encoded compactly, so QEMU does not split one request
//!   into several errors (as it does for input past its limits).
//!   [`ProxyBuilder::upstream_ids`] turns ids on.
//! - **Fairness.** In-band commands enter QEMU's 8-command window through a FIFO semaphore,
//!   and since each client waits for at most one slot at a time, the window is shared
//!   round-robin: a client that floods waits its turn behind one command of every other
//!   client, never the other way round. A client's further requests wait in a queue of its
//!   own (64 requests by default), and when that is full the proxy stops reading from it,
//!   which slows it alone.
//! - **Slow readers.** Everything written to a client goes through its own output queue,
//!   bounded in bytes (1 MiB by default, [`ProxyBuilder::output_limit`]). A client that stops
//!   reading fills it and is then disconnected; events for the others are not held up. A
//!   message that nothing waits before is written to the client's socket at once, by the
//!   task that has it (no system call waits: a full socket queues it instead), so a client
//!   that reads costs one `send` per reply and no hand-over to a writer.
//! - **`qmp_capabilities`** is answered by the proxy for each client
//!   ([`ServerSession`](qmpkit_proto::ServerSession)): it
//!   never reaches QEMU, whose own negotiation the proxy did once. A client may enable `oob`
//!   only when the upstream connection has it.
//! - **Introspection** agrees with the policy: on a restricted listener, `query-commands`
//!   and `query-qmp-schema` leave out the commands (and events) the listener hides.
//! - **Refusals** by policy, and commands QEMU does not have, get QEMU's `CommandNotFound`,
//!   "The command X has not been found", written by the proxy. The proxy learns QEMU's
//!   commands (and which allow `exec-oob`) from `query-qmp-schema` on every connection.
//! - **`getfd`/`closefd`.** QEMU keeps one table of fd names per monitor, and all clients
//!   share the proxy's monitor, so the proxy tracks which client holds which name: a `getfd`
//!   of a name another client holds is refused (GenericError "fd name 'X' is held by another
//!   client of this proxy") rather than silently replacing that client's descriptor, and a
//!   `closefd` of such a name gets QEMU's own "File descriptor named 'X' not found". When a
//!   client leaves, the proxy closes the names it still holds, as if its monitor had gone.
//! - **`add-fd`/`remove-fd`** pass through unchanged. Fd sets are global in QEMU, not per
//!   monitor: QEMU 7.2 closes a set's unused descriptors only once *no* monitor is connected
//!   (later versions only after `remove-fd`), so a client leaving the proxy, whose monitor
//!   stays connected, keeps them as QEMU keeps them when another monitor stays connected.
//! - **Descriptors** that a client sends travel with its next `getfd` or `add-fd`, as QEMU
//!   attaches them to the command that follows; like QEMU, a later batch replaces an earlier
//!   unused one (at most [`MAX_FDS_PER_MESSAGE`](crate::transport::MAX_FDS_PER_MESSAGE)).
//! - **Events** are written once per event and shared by every client that has negotiated
//!   and whose listener's policy passes the event's name. Events and replies travel on
//!   separate paths from QEMU, so an event QEMU wrote just before a reply may reach a client
//!   just after it.
//! - **Upstream loss.** When QEMU's connection ends, every pending call of every client fails
//!   at once with GenericError "qmp proxy: lost the connection to QEMU: ...", each client's
//!   queued commands fail the same way, its output is flushed (for at most a second) and it is
//!   disconnected. The proxy then reconnects with a doubling back-off
//!   ([`ProxyBuilder::backoff`]), and accepts clients again once QEMU answers; connections
//!   made meanwhile wait in the listeners' backlog. [`Proxy::status`] tells which it is.
//! - **Client loss** never reaches QEMU: the client's queued commands are dropped, and the
//!   replies to the ones already sent are discarded when they come.
//! - **Logging.** [`ProxyBuilder::on_exchange`] sees every request, reply and event with the
//!   client it concerns; `qmp proxy -v` writes them as JSON lines.

mod conn;
mod policy;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qmpkit_proto::server::CommandInfo;
use qmpkit_proto::{Capability, Greeting, ServerConfig, ServerMessage};
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

pub use self::policy::{ListenerPolicy, Policy, PolicyError, PolicyFile};
use crate::transport::{Endpoint, Listener, Stream};
use crate::{Client, ClientBuilder, EventFilter, EventItem};

/// QEMU's limit on in-band commands queued per monitor.
const WINDOW: usize = 8;

/// Which way a logged message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A request from a client.
    FromClient,
    /// A reply to a client (from QEMU or from the proxy itself).
    ToClient,
    /// An event from QEMU, logged once however many clients receive it.
    Event,
}

impl Direction {
    /// A short name for logs: `in`, `out`, `event`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::FromClient => "in",
            Direction::ToClient => "out",
            Direction::Event => "event",
        }
    }
}

/// One message the proxy passed on, for [`ProxyBuilder::on_exchange`].
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'a> {
    /// The client's number (counted from 1 over the proxy's life); `None` for events.
    pub client: Option<u64>,
    /// The name of the listener the client came in on; `None` for events.
    pub listener: Option<&'a str>,
    /// Which way it went.
    pub direction: Direction,
    /// The message as compact JSON text.
    pub message: &'a str,
}

type Hook = Arc<dyn Fn(&Exchange<'_>) + Send + Sync>;

/// The state of the upstream connection, from [`Proxy::status`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// How many times the proxy has connected to QEMU.
    pub generation: u64,
    /// Whether it is connected (and accepting clients) now.
    pub connected: bool,
    /// Why the last connection attempt failed or the last connection ended.
    pub last_error: Option<String>,
}

/// Settings shared by every connection.
#[derive(Clone)]
struct Settings {
    output_limit: usize,
    queue: usize,
    close_grace: Duration,
    hook: Option<Hook>,
}

/// Builds a [`Proxy`].
pub struct ProxyBuilder {
    upstream: Endpoint,
    listeners: Vec<(String, Listener, Policy)>,
    backoff: (Duration, Duration),
    connect_timeout: Duration,
    upstream_ids: bool,
    upstream_oob: bool,
    settings: Settings,
}

impl std::fmt::Debug for ProxyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyBuilder").field("upstream", &self.upstream).finish_non_exhaustive()
    }
}

impl ProxyBuilder {
    /// A proxy for the QEMU monitor at `upstream`.
    #[must_use]
    pub fn new(upstream: Endpoint) -> Self {
        ProxyBuilder {
            upstream,
            listeners: Vec::new(),
            backoff: (Duration::from_millis(50), Duration::from_secs(5)),
            connect_timeout: Duration::from_secs(5),
            upstream_ids: false,
            upstream_oob: true,
            settings: Settings { output_limit: 1 << 20, queue: 64, close_grace: Duration::from_secs(1), hook: None },
        }
    }

    /// Serves clients on a listener, under a policy; `name` identifies it in logs.
    #[must_use]
    pub fn listener(mut self, name: impl Into<String>, listener: Listener, policy: Policy) -> Self {
        self.listeners.push((name.into(), listener, policy));
        self
    }

    /// The pauses between attempts to reach QEMU: `initial`, doubling up to `max`
    /// (default 50 ms up to 5 s).
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = (initial, max.max(initial));
        self
    }

    /// The deadline for connecting to QEMU and negotiating (default 5 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether in-band commands carry ids on the way to QEMU (default: no; see the module
    /// docs, "Ids upstream").
    #[must_use]
    pub fn upstream_ids(mut self, ids: bool) -> Self {
        self.upstream_ids = ids;
        self
    }

    /// Whether to enable `oob` upstream when QEMU offers it (default: yes). Without it, the
    /// proxy's clients cannot enable it either.
    #[must_use]
    pub fn upstream_oob(mut self, oob: bool) -> Self {
        self.upstream_oob = oob;
        self
    }

    /// The bytes that may wait to be written to one client before it is disconnected as a
    /// client that stopped reading (default 1 MiB).
    #[must_use]
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.settings.output_limit = bytes.max(1);
        self
    }

    /// The in-band requests one client may have waiting in the proxy before the proxy stops
    /// reading from it (default 64).
    #[must_use]
    pub fn queue(mut self, requests: usize) -> Self {
        self.settings.queue = requests.max(1);
        self
    }

    /// Calls `hook` with every request, reply and event the proxy passes on. It runs on the
    /// proxy's tasks, so it should be quick (append to a buffered log).
    #[must_use]
    pub fn on_exchange(mut self, hook: impl Fn(&Exchange<'_>) + Send + Sync + 'static) -> Self {
        self.settings.hook = Some(Arc::new(hook));
        self
    }

    /// The proxy, ready to [`Proxy::run`].
    #[must_use]
    pub fn build(self) -> Proxy {
        let (status, _) = watch::channel(Status::default());
        Proxy {
            upstream: self.upstream,
            listeners: self.listeners.into_iter().map(|(n, l, p)| Arc::new(ListenerEntry::new(n, l, p))).collect(),
            backoff: self.backoff,
            connect_timeout: self.connect_timeout,
            upstream_ids: self.upstream_ids,
            upstream_oob: self.upstream_oob,
            settings: self.settings,
            status,
            next_client: Arc::new(AtomicU64::new(1)),
        }
    }
}

struct ListenerEntry {
    name: Arc<str>,
    listener: Listener,
    policy: Arc<Policy>,
}

impl ListenerEntry {
    fn new(name: String, listener: Listener, policy: Policy) -> Self {
        ListenerEntry { name: name.into(), listener, policy: Arc::new(policy) }
    }
}

/// The proxy: one connection to QEMU, many clients. See the [module docs](self).
pub struct Proxy {
    upstream: Endpoint,
    listeners: Vec<Arc<ListenerEntry>>,
    backoff: (Duration, Duration),
    connect_timeout: Duration,
    upstream_ids: bool,
    upstream_oob: bool,
    settings: Settings,
    status: watch::Sender<Status>,
    next_client: Arc<AtomicU64>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("upstream", &self.upstream).finish_non_exhaustive()
    }
}

/// What one connection to QEMU gives every client of that connection.
pub(crate) struct Upstream {
    client: Client,
    /// QEMU's commands, from its schema.
    commands: HashMap<String, CommandInfo>,
    /// The downstream sessions' configuration: QEMU's version and capabilities.
    config: ServerConfig,
    /// QEMU's in-band window; FIFO, so shared round-robin by clients that each wait once.
    window: Semaphore,
    /// Which client holds each `getfd` name.
    fd_names: Mutex<HashMap<String, u64>>,
    /// Set when the connection to QEMU has ended.
    gone: watch::Receiver<bool>,
}

/// A client as the event fan-out sees it.
pub(crate) struct Subscriber {
    outbox: Arc<conn::Outbox>,
    policy: Arc<Policy>,
    negotiated: Arc<AtomicBool>,
}

type Subscribers = Arc<Mutex<HashMap<u64, Subscriber>>>;

#[derive(Deserialize)]
struct SchemaEntry {
    name: String,
    #[serde(rename = "meta-type")]
    meta_type: String,
    #[serde(rename = "allow-oob", default)]
    allow_oob: bool,
}

impl Proxy {
    /// A builder for a proxy of the QEMU monitor at `upstream`.
    #[must_use]
    pub fn builder(upstream: Endpoint) -> ProxyBuilder {
        ProxyBuilder::new(upstream)
    }

    /// The upstream connection's state, updated as it changes.
    #[must_use]
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Runs until `shutdown` completes: connects to QEMU (again and again, with back-off,
    /// whenever the connection ends) and serves clients while connected. Nothing a client
    /// or QEMU does ends it.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut pause = self.backoff.0;
        loop {
            let upstream = tokio::select! {
                () = &mut shutdown => return,
                upstream = self.connect() => upstream,
            };
            let upstream = match upstream {
                Ok(upstream) => upstream,
                Err(reason) => {
                    tracing::debug!(%reason, "qmp proxy: QEMU is not reachable; retrying in {pause:?}");
                    self.status.send_modify(|s| {
                        s.connected = false;
                        s.last_error = Some(reason);
                    });
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(self.backoff.1);
                    continue;
                }
            };
            pause = self.backoff.0;
            self.status.send_modify(|s| {
                s.generation += 1;
                s.connected = true;
            });
            tracing::info!("qmp proxy: connected to QEMU at {}", self.upstream);
            let client = upstream.0.client.clone();
            let reason = tokio::select! {
                () = &mut shutdown => {
                    client.close().await;
                    return;
                }
                reason = self.serve(upstream) => reason,
            };
            tracing::warn!(%reason, "qmp proxy: lost the connection to QEMU; reconnecting");
            self.status.send_modify(|s| {
                s.connected = false;
                s.last_error = Some(reason);
            });
        }
    }

    /// Connects to QEMU and learns its commands.
    async fn connect(&self) -> Result<(Arc<Upstream>, watch::Sender<bool>), String> {
        let client = ClientBuilder::new()
            .connect_timeout(Some(self.connect_timeout))
            .handshake_timeout(Some(self.connect_timeout))
            .event_buffer(1 << 16)
            .in_band_ids(self.upstream_ids)
            .oob(self.upstream_oob)
            .connect_endpoint(&self.upstream)
            .await
            .map_err(|e| e.to_string())?;
        let schema = tokio::time::timeout(self.connect_timeout, client.execute_raw_json("query-qmp-schema", ()))
            .await
            .map_err(|_| "query-qmp-schema timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let entries: Vec<SchemaEntry> =
            serde_json::from_str(schema.get()).map_err(|e| format!("cannot read QEMU's schema: {e}"))?;
        let commands = entries
            .into_iter()
            .filter(|e| e.meta_type == "command")
            .map(|e| (e.name, CommandInfo { allow_oob: e.allow_oob }))
            .collect();
        let greeting = client.greeting().cloned().unwrap_or(Greeting { version: None, capabilities: Vec::new() });
        let mut config = ServerConfig { oob: client.oob_enabled(), ..ServerConfig::default() };
        if let Some(version) = greeting.version {
            config.version = version;
        }
        config.extra_capabilities = greeting.capabilities.into_iter().filter(|c| *c != Capability::Oob).collect();
        let (gone_tx, gone) = watch::channel(false);
        let upstream = Upstream {
            client,
            commands,
            config,
            window: Semaphore::new(WINDOW),
            fd_names: Mutex::new(HashMap::new()),
            gone,
        };
        Ok((Arc::new(upstream), gone_tx))
    }

    /// Serves clients over one upstream connection until it ends, and says why it ended.
    async fn serve(&self, (upstream, gone): (Arc<Upstream>, watch::Sender<bool>)) -> String {
        let subscribers: Subscribers = Arc::new(Mutex::new(HashMap::new()));
        let mut events = upstream.client.subscribe_with_buffer(EventFilter::all(), 1 << 16);
        let (accepted_tx, mut accepted) = mpsc::channel::<(Arc<ListenerEntry>, Stream)>(16);
        let mut acceptors = JoinSet::new();
        for entry in &self.listeners {
            let (entry, tx) = (entry.clone(), accepted_tx.clone());
            acceptors.spawn(async move {
                loop {
                    match entry.listener.accept().await {
                        Ok(stream) => {
                            if tx.send((entry.clone(), stream)).await.is_err() {
                                return;
                            }
                        }
                        // A failed accept (out of descriptors, a connection reset before it
                        // was taken) concerns that connection alone.
                        Err(e) => {
                            tracing::warn!("qmp proxy: accept on {} failed: {e}", entry.name);
                            tokio::task::yield_now().await;
                        }
                    }
                }
            });
        }
        let mut clients = JoinSet::new();
        let reason = loop {
            tokio::select! {
                reason = upstream.client.closed() => break reason.to_string(),
                item = events.next() => match item {
                    Some(EventItem::Event(event)) => self.fan_out(&subscribers, Arc::unwrap_or_clone(event)),
                    Some(EventItem::Lagged { missed }) => {
                        tracing::warn!("qmp proxy: fell behind QEMU's events; {missed} events were lost");
                    }
                    None => break upstream.client.closed().await.to_string(),
                },
                Some((entry, stream)) = accepted.recv() => {
                    let id = self.next_client.fetch_add(1, Ordering::Relaxed);
                    let conn = conn::Conn {
                        id,
                        listener: entry.name.clone(),
                        policy: entry.policy.clone(),
                        upstream: upstream.clone(),
                        subscribers: subscribers.clone(),
                        settings: self.settings.clone(),
                    };
                    clients.spawn(conn.serve(stream));
                }
                Some(_) = clients.join_next() => {}
            }
        };
        acceptors.abort_all();
        let _ = gone.send(true);
        // Each client now fails its queued commands, flushes and closes, within its grace.
        while clients.join_next().await.is_some() {}
        reason
    }

    fn fan_out(&self, subscribers: &Subscribers, event: qmpkit_proto::Event) {
        let mut bytes = Vec::new();
        let name = event.name.clone();
        ServerMessage::Event(event).encode_server(false, &mut bytes);
        if let Some(hook) = &self.settings.hook {
            let text = String::from_utf8_lossy(bytes.trim_ascii_end());
            hook(&Exchange { client: None, listener: None, direction: Direction::Event, message: &text });
        }
        let bytes: Arc<[u8]> = bytes.into();
        let subscribers = subscribers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for sub in subscribers.values() {
            if sub.negotiated.load(Ordering::Acquire) && sub.policy.allows_event(&name) {
                sub.outbox.push_shared(bytes.clone());
            }
        }
    }
}
