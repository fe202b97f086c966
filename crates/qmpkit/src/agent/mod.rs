//! A client for the QEMU guest agent (QGA), `qemu-ga`, that survives the guest's life.
//!
//! QGA speaks QMP's JSON commands and replies over a virtio-serial channel that the host sees
//! as a unix socket (or a TCP port), but it is a harder peer than QEMU's monitor: it says
//! nothing while the guest boots or when no agent runs, a reply to a command abandoned before
//! a guest restart can arrive after the next command, some commands (`guest-shutdown`,
//! `guest-suspend-*`) never answer when they succeed, and it handles one command at a time.
//! [`Agent`] deals with each:
//!
//! - **Resynchronisation** as the QGA documentation describes it: on connect and after any
//!   timeout, interrupted call or unparsable input, the agent is sent the `0xFF` reset byte and
//!   `guest-sync-delimited` with a fresh random id, and everything up to its `0xFF` sentinel and
//!   the reply carrying that id is discarded. A reply to an abandoned call never reaches a later
//!   one (each command also carries an id, which the agent echoes, as a second check).
//! - **No hangs**: every call has a deadline ([`AgentBuilder::call_timeout`], or per call with
//!   [`AgentCallOptions`]), which also covers the time spent queued behind other callers, and
//!   [`Agent::wait_ready`] waits for a silent agent with a bounded back-off.
//! - **Serialised calls**: concurrent callers queue for the channel in turn, first come first
//!   served (the agent runs one command at a time and answers in order).
//! - **Commands without a success reply** complete when no reply came within a short grace
//!   period ([`AgentBuilder::no_reply_grace`]); a refusal within it is still an error. Which
//!   commands those are is known for today's agents and learnt from [`Agent::info`].
//! - **Reconnection**: an agent reached through an endpoint is dialled again when the
//!   connection ends, so a restarted agent is picked up by the next call.
//!
//! Typed calls cover the common commands ([`Agent::ping`], [`Agent::exec`],
//! [`Agent::read_file`], ...), and [`Agent::execute`] runs any other command with raw JSON.
//! Typed results ignore members they do not know and treat optional members as optional, so
//! newer agents decode. [`blocking::Agent`] is the same for callers without async.
//!
//! ```no_run
//! # async fn demo() -> Result<(), qmpkit::Error> {
//! use std::time::Duration;
//! use qmpkit::agent::{Agent, Exec};
//!
//! let agent = Agent::new("/run/qemu/vm1-qga.sock");     // or "localhost:4445"; no IO yet
//! agent.wait_ready(Duration::from_secs(60)).await?;     // the guest may still be booting
//! let host = agent.host_name().await?;
//! let out = agent.exec(Exec::new("/bin/uname").arg("-r")).await?;
//! println!("{host}: {} (exit {:?})", String::from_utf8_lossy(&out.stdout), out.exit_code);
//! # Ok(()) }
//! ```
//!
//! Errors are [`crate::Error`]: the agent's refusals are [`crate::Error::Qmp`], exactly as
//! QEMU's are.

pub mod blocking;
mod conn;
mod typed;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use qmpkit_proto::message::decode_json;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::Error;
use crate::transport::Endpoint;
use conn::{Conn, Source};

pub use typed::{
    Exec, ExecOutput, ExecStatus, FsfreezeStatus, GuestCommandInfo, GuestDiskAddress, GuestFilesystemInfo, GuestInfo,
    GuestIpAddress, GuestNetworkInterface, GuestOsInfo,
};

/// The commands that send nothing when they succeed, in every agent version so far.
pub const NO_SUCCESS_REPLY: [&str; 4] =
    ["guest-shutdown", "guest-suspend-disk", "guest-suspend-ram", "guest-suspend-hybrid"];

/// Options for one call.
#[derive(Clone, Copy, Debug, Default)]
pub struct AgentCallOptions {
    /// The deadline for this call instead of the agent's default.
    pub timeout: Option<Duration>,
    /// Whether the command sends no reply on success; `None` asks the agent's list.
    pub no_reply: Option<bool>,
}

impl AgentCallOptions {
    /// Options with a deadline.
    #[must_use]
    pub fn timeout(timeout: Duration) -> AgentCallOptions {
        AgentCallOptions { timeout: Some(timeout), no_reply: None }
    }
}

/// Settings for an [`Agent`].
#[derive(Clone, Debug)]
pub struct AgentBuilder {
    call_timeout: Duration,
    no_reply_grace: Duration,
    max_message_bytes: usize,
    max_file_bytes: usize,
}

impl Default for AgentBuilder {
    fn default() -> Self {
        AgentBuilder {
            call_timeout: Duration::from_secs(30),
            no_reply_grace: Duration::from_secs(1),
            max_message_bytes: 64 << 20,
            max_file_bytes: 64 << 20,
        }
    }
}

impl AgentBuilder {
    /// The defaults: 30 s per call, 1 s of grace for commands without a success reply, replies
    /// and files up to 64 MiB.
    #[must_use]
    pub fn new() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// The deadline of each call, including the time it waits for earlier calls and for a
    /// resync.
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How long a command that sends nothing on success waits for an error before it counts
    /// as done.
    #[must_use]
    pub fn no_reply_grace(mut self, grace: Duration) -> Self {
        self.no_reply_grace = grace;
        self
    }

    /// The largest reply accepted; a larger one fails its call and forces a resync.
    #[must_use]
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// The largest file [`Agent::read_file`] reads.
    #[must_use]
    pub fn max_file_bytes(mut self, bytes: usize) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    /// An agent at an endpoint (`host:port` or a unix socket path, by [`Endpoint`]'s rule).
    /// Nothing is opened until the first call or [`Agent::wait_ready`].
    #[must_use]
    pub fn build(self, endpoint: impl AsRef<str>) -> Agent {
        let endpoint: Endpoint = endpoint.as_ref().parse().unwrap_or_else(|never| match never {});
        self.finish(Source::Endpoint(endpoint), None)
    }

    /// An agent over a stream that is already connected (a virtio-serial port opened as a
    /// file, a test's in-memory pipe). When the stream ends it cannot be reopened.
    #[must_use]
    pub fn build_with_stream<S>(self, stream: S) -> Agent
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        self.finish(Source::Stream, Some(Box::new(stream)))
    }

    /// Builds an agent at an endpoint and synchronises with it once.
    ///
    /// # Errors
    /// As [`Agent::sync`]: the connection fails, or the agent does not answer in time.
    pub async fn connect(self, endpoint: impl AsRef<str>) -> Result<Agent, Error> {
        let agent = self.build(endpoint);
        agent.sync().await?;
        Ok(agent)
    }

    fn finish(self, source: Source, io: Option<Box<dyn conn::AgentIo>>) -> Agent {
        let reconnects = matches!(source, Source::Endpoint(_));
        let conn = Conn::new(source, io, self.max_message_bytes);
        Agent {
            inner: Arc::new(Inner {
                reconnects,
                conn: Mutex::new(conn),
                no_reply: StdMutex::new(NO_SUCCESS_REPLY.iter().map(|s| (*s).to_owned()).collect()),
                config: self,
            }),
        }
    }
}

struct Inner {
    /// Whether the connection can be dialled again (an endpoint, not a given stream).
    reconnects: bool,
    conn: Mutex<Conn>,
    no_reply: StdMutex<HashSet<String>>,
    config: AgentBuilder,
}

/// A handle to a guest agent. Clones share the channel; their calls take turns.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent at an endpoint with the default settings; nothing is opened until first use.
    #[must_use]
    pub fn new(endpoint: impl AsRef<str>) -> Agent {
        AgentBuilder::new().build(endpoint)
    }

    /// An agent over a connected stream with the default settings.
    #[must_use]
    pub fn from_stream<S>(stream: S) -> Agent
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        AgentBuilder::new().build_with_stream(stream)
    }

    /// Connects to an agent with the default settings and synchronises with it once.
    ///
    /// # Errors
    /// As [`Agent::sync`].
    pub async fn connect(endpoint: impl AsRef<str>) -> Result<Agent, Error> {
        AgentBuilder::new().connect(endpoint).await
    }

    /// Synchronises with the agent now (connecting first when needed), within the call
    /// deadline.
    ///
    /// # Errors
    /// [`Error::Connect`] when the endpoint cannot be reached, [`Error::Disconnected`] when the
    /// stream ended, [`Error::Timeout`] when the agent did not answer in time.
    pub async fn sync(&self) -> Result<(), Error> {
        let timeout = self.inner.config.call_timeout;
        let work = async {
            let mut conn = self.inner.conn.lock().await;
            conn.force_resync().await
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| Err(Error::Timeout { what: "guest-sync-delimited".into(), after: timeout }))
    }

    /// Waits until the agent answers, for at most `timeout`: a guest that is booting, an agent
    /// not started yet, a socket that does not exist yet, or an agent serving another client
    /// are all retried with a growing pause (10 ms, doubling, at most 1 s) and a growing wait
    /// for each attempt's sync reply (100 ms, doubling, at most 2 s).
    ///
    /// # Errors
    /// [`Error::Timeout`] when the agent did not answer in time (the last connection failure
    /// is logged); [`Error::Disconnected`] at once when the agent runs over a stream that
    /// ended, which cannot be reopened.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(10);
        let mut attempt = Duration::from_millis(100);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::Timeout { what: "waiting for the guest agent".into(), after: timeout });
            }
            let work = async {
                let mut conn = self.inner.conn.lock().await;
                conn.force_resync().await
            };
            match tokio::time::timeout(attempt.min(remaining), work).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(err @ Error::Disconnected(_))) if !self.inner.reconnects => return Err(err),
                Ok(Err(err)) => {
                    tracing::debug!(%err, "the guest agent is not ready yet");
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(pause.min(remaining)).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(_) => {
                    tracing::debug!(after = ?attempt, "the guest agent did not answer a sync");
                    attempt = (attempt * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// How many complete replies have been discarded so far because they answered an earlier,
    /// abandoned call or sync. Bytes skipped while looking for the sync sentinel are not
    /// counted: they are not framed.
    pub async fn stale_replies(&self) -> u64 {
        self.inner.conn.lock().await.stale_replies()
    }

    /// Runs a command and returns its result as JSON.
    ///
    /// `arguments` must serialize to a JSON object; `()` sends none. For a command that sends
    /// nothing on success, the result is `null` once the grace period passed without an error.
    ///
    /// # Errors
    /// [`Error::Qmp`] when the agent refused; [`Error::Timeout`] past the deadline (the next
    /// call resynchronises); [`Error::Protocol`] when the agent sent something that is not a
    /// reply (the next call resynchronises); [`Error::Disconnected`] or [`Error::Connect`] when
    /// the connection failed (the next call dials again); [`Error::Arguments`] for arguments
    /// that are not an object.
    pub async fn execute(&self, name: &str, arguments: impl Serialize) -> Result<Value, Error> {
        self.execute_with(name, arguments, AgentCallOptions::default()).await
    }

    /// Runs a command and decodes its result into `R`.
    ///
    /// # Errors
    /// As [`Agent::execute`], and [`Error::Decode`] when the result does not fit `R`.
    pub async fn execute_as<R: DeserializeOwned>(&self, name: &str, arguments: impl Serialize) -> Result<R, Error> {
        let value = self.execute(name, arguments).await?;
        decode_result(name, value)
    }

    /// Runs a command with per-call options.
    ///
    /// # Errors
    /// As [`Agent::execute`].
    pub async fn execute_with(
        &self,
        name: &str,
        arguments: impl Serialize,
        options: AgentCallOptions,
    ) -> Result<Value, Error> {
        let arguments = to_arguments(name, arguments)?;
        let timeout = options.timeout.unwrap_or(self.inner.config.call_timeout);
        let no_reply = options.no_reply.unwrap_or_else(|| self.expects_no_reply(name));
        let grace = self.inner.config.no_reply_grace;
        let work = async {
            let mut conn = self.inner.conn.lock().await;
            conn.ready().await?;
            let id = random_id();
            conn.send(name, arguments, id).await?;
            if no_reply {
                return match tokio::time::timeout(grace, conn.receive(name, id)).await {
                    Ok(Ok(response)) => response_value(name, response),
                    // The guest going away is what success looks like for these commands.
                    Ok(Err(Error::Disconnected(_))) | Err(_) => Ok(Value::Null),
                    Ok(Err(err)) => Err(err),
                };
            }
            let response = conn.receive(name, id).await?;
            response_value(name, response)
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| Err(Error::Timeout { what: name.to_owned(), after: timeout }))
    }

    fn expects_no_reply(&self, name: &str) -> bool {
        self.inner.no_reply.lock().map(|set| set.contains(name)).unwrap_or(false)
    }

    /// Records which commands the agent says send no reply on success.
    fn learn(&self, info: &GuestInfo) {
        if let Ok(mut set) = self.inner.no_reply.lock() {
            for command in &info.supported_commands {
                if command.success_response {
                    set.remove(&command.name);
                } else {
                    set.insert(command.name.clone());
                }
            }
        }
    }
}

fn response_value(name: &str, response: qmpkit_proto::message::RawResponse) -> Result<Value, Error> {
    match response.result {
        Ok(raw) => decode_json(raw.get().as_bytes())
            .map_err(|e| Error::Decode { command: name.to_owned(), reason: e.to_string() }),
        Err(error) => Err(Error::Qmp { error: Box::new(error), command: name.to_owned() }),
    }
}

fn decode_result<R: DeserializeOwned>(name: &str, value: Value) -> Result<R, Error> {
    serde_json::from_value(value).map_err(|e| Error::Decode { command: name.to_owned(), reason: e.to_string() })
}

fn to_arguments(name: &str, arguments: impl Serialize) -> Result<Option<Map<String, Value>>, Error> {
    match serde_json::to_value(arguments) {
        Ok(Value::Null) => Ok(None),
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(other) => Err(Error::Arguments { command: name.to_owned(), reason: format!("got {other}") }),
        Err(e) => Err(Error::Arguments { command: name.to_owned(), reason: e.to_string() }),
    }
}

/// A fresh id for a sync or a command: random, positive and below 2^53 so that any JSON
/// reader keeps it exact. std's `RandomState` is seeded from the operating system's random
/// source; hashing a counter and the clock with it gives each id its own value.
pub(crate) fn random_id() -> i64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    (hasher.finish() >> 11) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_exact_in_a_double_and_differ() {
        let ids: HashSet<i64> = (0..1000).map(|_| random_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|&id| (0..1 << 53).contains(&id)));
    }

    #[test]
    fn arguments_must_be_an_object() {
        assert!(to_arguments("x", ()).unwrap().is_none());
        assert!(matches!(to_arguments("x", 5), Err(Error::Arguments { .. })));
        assert_eq!(to_arguments("x", serde_json::json!({"a": 1})).unwrap().unwrap()["a"], 1);
    }
}
