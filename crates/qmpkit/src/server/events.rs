//! Events: [`EventSender`] stamps, encodes and broadcasts them to every negotiated
//! connection, applying QEMU's rate limits.
//!
//! An event is encoded once, when it is emitted, and the same bytes go to every connection.
//! Each connection moves its queued events into its own output buffer between messages, so an
//! event never lands inside another message, and drops it while the connection is still
//! negotiating, as QEMU does.
//!
//! # Throttling
//!
//! QEMU limits some guest-triggerable events to one per second (`monitor/monitor.c`,
//! `monitor_qapi_event_conf`): the first of a burst goes out at once, the following ones
//! within the period are dropped except the last, which goes out when the period ends, and
//! that starts a new period. Bursts are told apart by the event name plus, for a few events,
//! one data member ([`Throttle::qemu`] lists them). The state is global, not per connection,
//! as in QEMU. The delayed event keeps the timestamp it was emitted with.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::fds::{ConnectionFds, lock};
use qmpkit_proto::message::encode_server_value;
use qmpkit_proto::{Event, Timestamp};
use serde::Serialize;
use serde_json::Value;

/// An encoded event, shared by every connection it goes to.
pub(crate) type EventBytes = Arc<[u8]>;

/// What a connection shares with the rest of the server: its event queue, the flags other
/// tasks set on it, and its file descriptors.
#[derive(Debug, Default)]
pub(crate) struct ConnShared {
    /// Set once `qmp_capabilities` succeeded; until then events are dropped for it.
    pub(crate) negotiated: AtomicBool,
    /// Set when the server shuts down.
    pub(crate) shutdown: AtomicBool,
    /// Set when an event did not fit under the output bound.
    pub(crate) overflow: AtomicBool,
    /// Events not yet moved into the connection's output buffer, and their size.
    pub(crate) pending: Mutex<(VecDeque<EventBytes>, usize)>,
    /// Bytes in the connection's output buffer not yet written.
    pub(crate) out_len: AtomicUsize,
    /// Wakes the connection's task.
    pub(crate) waker: Mutex<Option<Waker>>,
    /// The connection's fds.
    pub(crate) fds: ConnectionFds,
}

impl ConnShared {
    pub(crate) fn wake(&self) {
        if let Some(waker) = lock(&self.waker).as_ref() {
            waker.wake_by_ref();
        }
    }

    /// Bytes held for the connection: its output buffer and its queued events.
    pub(crate) fn buffered(&self) -> usize {
        self.out_len.load(Ordering::Relaxed) + lock(&self.pending).1
    }
}

/// Every live connection of a server, for events, shutdown and statistics.
#[derive(Debug)]
pub(crate) struct Hub {
    conns: Mutex<HashMap<u64, Arc<ConnShared>>>,
    next_id: AtomicU64,
    /// The most bytes a connection may hold for its client before it is disconnected.
    pub(crate) max_output: usize,
    pretty: bool,
    throttle: Throttle,
    bursts: Mutex<HashMap<(String, Option<String>), Burst>>,
    /// Connections dropped because their client did not read.
    pub(crate) overflows: AtomicU64,
}

impl Hub {
    /// Adds a connection that may hold at most `max_connection_fds` fds.
    pub(crate) fn register(&self, max_connection_fds: usize) -> (u64, Arc<ConnShared>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = Arc::new(ConnShared { fds: ConnectionFds::new(max_connection_fds), ..ConnShared::default() });
        lock(&self.conns).insert(id, conn.clone());
        (id, conn)
    }

    pub(crate) fn unregister(&self, id: u64) {
        lock(&self.conns).remove(&id);
    }

    /// Asks every connection to finish.
    pub(crate) fn shutdown_all(&self) {
        for conn in lock(&self.conns).values() {
            conn.shutdown.store(true, Ordering::SeqCst);
            conn.wake();
        }
    }

    pub(crate) fn connections(&self) -> usize {
        lock(&self.conns).len()
    }

    pub(crate) fn buffered(&self) -> usize {
        lock(&self.conns).values().map(|c| c.buffered()).sum()
    }
}

/// Which events are rate-limited, how often, and which data member tells their bursts apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Throttle {
    rules: HashMap<String, (Duration, Option<String>)>,
}

impl Throttle {
    /// No rate limits at all.
    #[must_use]
    pub fn none() -> Self {
        Throttle { rules: HashMap::new() }
    }

    /// QEMU's rules: one per second for `RTC_CHANGE`, `WATCHDOG`, `BALLOON_CHANGE`,
    /// `QUORUM_REPORT_BAD` (per `node-name`), `QUORUM_FAILURE`, `VSERPORT_CHANGE` (per `id`),
    /// `MEMORY_DEVICE_SIZE_CHANGE` (per `qom-path`) and `HV_BALLOON_STATUS_REPORT`.
    #[must_use]
    pub fn qemu() -> Self {
        let second = Duration::from_secs(1);
        let mut throttle = Throttle::none();
        for name in ["RTC_CHANGE", "WATCHDOG", "BALLOON_CHANGE", "QUORUM_FAILURE", "HV_BALLOON_STATUS_REPORT"] {
            throttle = throttle.limit(name, second, None);
        }
        throttle
            .limit("QUORUM_REPORT_BAD", second, Some("node-name"))
            .limit("VSERPORT_CHANGE", second, Some("id"))
            .limit("MEMORY_DEVICE_SIZE_CHANGE", second, Some("qom-path"))
    }

    /// Limits `event` to one per `period`; with `key`, separately for each value of that data
    /// member. Replaces any rule the event had.
    #[must_use]
    pub fn limit(mut self, event: &str, period: Duration, key: Option<&str>) -> Self {
        self.rules.insert(event.to_owned(), (period, key.map(str::to_owned)));
        self
    }

    /// Removes the rule for `event`, so that it is never delayed or dropped.
    #[must_use]
    pub fn unlimit(mut self, event: &str) -> Self {
        self.rules.remove(event);
        self
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::qemu()
    }
}

/// What [`EventSender::emit`] refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The data did not serialise to a JSON object (or to nothing).
    #[error("the data of event {event} is not a JSON object: {reason}")]
    BadData {
        /// The event's name.
        event: String,
        /// What serde said, or what the value was.
        reason: String,
    },
}

/// A burst in progress: the period is running, and the newest event held back, if any.
#[derive(Debug, Default)]
struct Burst {
    held: Option<EventBytes>,
}

/// Sends events to every negotiated connection of a server. It is cheap to clone and any
/// task or thread may use it.
///
/// Events are delivered in the order they are emitted, except that a rate-limited event may
/// be held back (see the [module documentation](self)). An event emitted by a command's
/// handler reaches the connection that ran the command before the command's reply, as in
/// QEMU (`STOP` before the return of `stop`).
#[derive(Clone, Debug)]
pub struct EventSender {
    inner: Arc<Hub>,
}

impl EventSender {
    pub(crate) fn new(max_output: usize, pretty: bool, throttle: Throttle) -> Self {
        let hub = Hub {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            max_output,
            pretty,
            throttle,
            bursts: Mutex::new(HashMap::new()),
            overflows: AtomicU64::new(0),
        };
        EventSender { inner: Arc::new(hub) }
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.inner
    }

    /// Emits an event whose data is any serialisable object; `()` (or `None`) sends an
    /// event without a `data` member, as QEMU does for `STOP`.
    ///
    /// # Errors
    /// [`EventError::BadData`] when `data` does not serialise to a JSON object.
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, data: &T) -> Result<(), EventError> {
        let bad = |reason: String| EventError::BadData { event: name.to_owned(), reason };
        let data = match serde_json::to_value(data).map_err(|e| bad(e.to_string()))? {
            Value::Null => None,
            value @ Value::Object(_) => Some(value),
            other => return Err(bad(format!("got {other}"))),
        };
        self.emit_value(name, data);
        Ok(())
    }

    /// Emits an event with data already in JSON form (`None` for no `data` member).
    pub fn emit_value(&self, name: &str, data: Option<Value>) {
        let event = Event { name: name.to_owned(), data, timestamp: now() };
        let mut bytes = Vec::new();
        encode_server_value(&event.to_value(), self.inner.pretty, &mut bytes);
        let bytes: EventBytes = bytes.into();
        match self.inner.throttle.rules.get(name) {
            Some((period, key)) => {
                let key = key.as_ref().map(|member| {
                    let value = event.data.as_ref().and_then(|d| d.get(member));
                    value.map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).unwrap_or_default()
                });
                self.throttled((name.to_owned(), key), *period, bytes);
            }
            None => self.broadcast(name, bytes),
        }
    }

    /// How many connections receive events now: the negotiated ones.
    #[must_use]
    pub fn receivers(&self) -> usize {
        lock(&self.inner.conns).values().filter(|c| c.negotiated.load(Ordering::Acquire)).count()
    }

    fn broadcast(&self, name: &str, bytes: EventBytes) {
        tracing::trace!(event = name, "event");
        let conns = lock(&self.inner.conns);
        for conn in conns.values() {
            if !conn.negotiated.load(Ordering::Acquire) || conn.overflow.load(Ordering::Relaxed) {
                continue;
            }
            let mut pending = lock(&conn.pending);
            let held = pending.1 + conn.out_len.load(Ordering::Relaxed);
            if held + bytes.len() > self.inner.max_output {
                // The client has stopped reading: it is disconnected rather than allowed to
                // grow the server's memory or to miss events silently.
                conn.overflow.store(true, Ordering::Release);
            } else {
                pending.1 += bytes.len();
                pending.0.push_back(bytes.clone());
            }
            drop(pending);
            conn.wake();
        }
    }

    fn throttled(&self, key: (String, Option<String>), period: Duration, bytes: EventBytes) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Without a runtime there is no timer to release a held event: send it now.
            self.broadcast(&key.0, bytes);
            return;
        };
        let mut bursts = lock(&self.inner.bursts);
        if let Some(burst) = bursts.get_mut(&key) {
            tracing::trace!(event = key.0, "event held back by the rate limit");
            burst.held = Some(bytes);
            return;
        }
        bursts.insert(key.clone(), Burst::default());
        drop(bursts);
        self.broadcast(&key.0, bytes);
        let sender = self.clone();
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let mut bursts = lock(&sender.inner.bursts);
                let held = bursts.get_mut(&key).and_then(|b| b.held.take());
                match held {
                    Some(bytes) => {
                        drop(bursts);
                        sender.broadcast(&key.0, bytes);
                    }
                    None => {
                        bursts.remove(&key);
                        return;
                    }
                }
            }
        });
    }
}

/// The time now as QEMU stamps events, or QEMU's `-1/-1` when the clock is before 1970.
fn now() -> Timestamp {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            microseconds: i64::from(d.subsec_micros()),
        },
        Err(_) => Timestamp::UNKNOWN,
    }
}
