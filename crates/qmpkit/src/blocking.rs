//! A blocking QMP client, for callers without async: what `qemu.qmp`'s legacy
//! `QEMUMonitorProtocol` is to Python.
//!
//! It runs the async [`crate::Client`] on a private one-thread runtime that it never exposes,
//! so the connection keeps reading (and events keep arriving) between calls. Calls may come
//! from several threads at once.
//!
//! ```no_run
//! # fn demo() -> Result<(), qmpkit::Error> {
//! let qmp = qmpkit::blocking::Client::connect("/run/qemu/qmp.sock")?;
//! let events = qmp.subscribe("STOP");
//! qmp.run(qmpkit::commands::Stop)?;
//! match events.recv_timeout(std::time::Duration::from_secs(5))? {
//!     qmpkit::EventItem::Event(stop) => println!("{stop:?}"),
//!     qmpkit::EventItem::Lagged { missed } => println!("fell behind; {missed} events dropped"),
//! }
//! # Ok(()) }
//! ```
//!
//! It must not be used from inside an async runtime, where blocking would stall that runtime.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qmpkit_proto::{Command, Event, Greeting, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::runtime::Runtime;

use crate::client::{CallOptions, ClientBuilder, EventFilter, EventItem};
use crate::commands::{self, QueryStatus};
use crate::error::{Disconnect, Error};
use crate::types::StatusInfo;

fn runtime() -> Result<Arc<Runtime>, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("qmpkit-blocking")
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|e| Error::Connect { endpoint: "(runtime)".into(), source: Arc::new(e) })
}

/// A blocking handle to one QMP connection. Clones share the connection.
#[derive(Clone, Debug)]
pub struct Client {
    runtime: Arc<Runtime>,
    inner: crate::Client,
}

impl Client {
    /// Connects with the default settings.
    ///
    /// # Errors
    /// As [`crate::ClientBuilder::connect`].
    pub fn connect(endpoint: impl AsRef<str>) -> Result<Client, Error> {
        Client::connect_with(ClientBuilder::new(), endpoint)
    }

    /// Connects with a configured builder.
    ///
    /// # Errors
    /// As [`crate::ClientBuilder::connect`].
    pub fn connect_with(builder: ClientBuilder, endpoint: impl AsRef<str>) -> Result<Client, Error> {
        let runtime = runtime()?;
        let inner = runtime.block_on(builder.connect(endpoint))?;
        Ok(Client { runtime, inner })
    }

    /// Connects to a server that may still be starting, as
    /// [`crate::ClientBuilder::connect_until_ready`].
    ///
    /// # Errors
    /// As [`crate::ClientBuilder::connect_until_ready`].
    pub fn connect_until_ready(
        builder: ClientBuilder,
        endpoint: impl AsRef<str>,
        deadline: Duration,
    ) -> Result<Client, Error> {
        let runtime = runtime()?;
        let inner = runtime.block_on(builder.connect_until_ready(endpoint, deadline))?;
        Ok(Client { runtime, inner })
    }

    /// Listens and waits for QEMU to connect, as [`crate::ClientBuilder::accept`].
    ///
    /// # Errors
    /// As [`crate::ClientBuilder::accept`].
    pub fn accept_with(builder: ClientBuilder, endpoint: impl AsRef<str>) -> Result<Client, Error> {
        let runtime = runtime()?;
        let inner = runtime.block_on(builder.accept(endpoint))?;
        Ok(Client { runtime, inner })
    }

    /// The async client underneath, for use from code that has a runtime.
    #[must_use]
    pub fn as_async(&self) -> &crate::Client {
        &self.inner
    }

    /// The server's greeting.
    #[must_use]
    pub fn greeting(&self) -> Option<&Greeting> {
        self.inner.greeting()
    }

    /// Whether out-of-band execution was negotiated.
    #[must_use]
    pub fn oob_enabled(&self) -> bool {
        self.inner.oob_enabled()
    }

    /// Why the connection ended, once it has.
    #[must_use]
    pub fn closed_reason(&self) -> Option<Disconnect> {
        self.inner.closed_reason()
    }

    /// Runs a command, as [`crate::Client::execute`].
    ///
    /// # Errors
    /// As [`crate::Client::execute`].
    pub fn execute(&self, name: &str, arguments: impl Serialize) -> Result<Value, Error> {
        self.runtime.block_on(self.inner.execute(name, arguments))
    }

    /// Runs a command and decodes its result, as [`crate::Client::execute_as`].
    ///
    /// # Errors
    /// As [`crate::Client::execute_as`].
    pub fn execute_as<R: DeserializeOwned>(&self, name: &str, arguments: impl Serialize) -> Result<R, Error> {
        self.runtime.block_on(self.inner.execute_as(name, arguments))
    }

    /// Runs a command out-of-band, as [`crate::Client::execute_oob`].
    ///
    /// # Errors
    /// As [`crate::Client::execute_oob`].
    pub fn execute_oob(&self, name: &str, arguments: impl Serialize) -> Result<Value, Error> {
        self.runtime.block_on(self.inner.execute_oob(name, arguments))
    }

    /// Runs a command with file descriptors, as [`crate::Client::execute_with_fds`].
    ///
    /// # Errors
    /// As [`crate::Client::execute_with_fds`].
    pub fn execute_with_fds(
        &self,
        name: &str,
        arguments: impl Serialize,
        fds: impl IntoIterator<Item = OwnedFd>,
    ) -> Result<Value, Error> {
        self.runtime.block_on(self.inner.execute_with_fds(name, arguments, fds))
    }

    /// Runs a command with per-call options, as [`crate::Client::call`].
    ///
    /// # Errors
    /// As [`crate::Client::call`].
    pub fn call(&self, name: &str, arguments: impl Serialize, options: CallOptions) -> Result<Value, Error> {
        self.runtime.block_on(self.inner.call(name, arguments, options))
    }

    /// Runs a typed command, as [`crate::Client::run`].
    ///
    /// # Errors
    /// As [`crate::Client::run`].
    pub fn run<C: commands::Command>(&self, command: C) -> Result<C::Returns, Error> {
        self.runtime.block_on(self.inner.run(command))
    }

    /// Runs a typed command with per-call options, as [`crate::Client::run_with`].
    ///
    /// # Errors
    /// As [`crate::Client::run_with`].
    pub fn run_with<C: commands::Command>(&self, command: C, options: CallOptions) -> Result<C::Returns, Error> {
        self.runtime.block_on(self.inner.run_with(command, options))
    }

    /// Sends a command as given, as [`crate::Client::execute_raw`].
    ///
    /// # Errors
    /// As [`crate::Client::execute_raw`].
    pub fn execute_raw(&self, command: Command) -> Result<Response, Error> {
        self.runtime.block_on(self.inner.execute_raw(command))
    }

    /// `query-status`.
    ///
    /// # Errors
    /// As [`crate::Client::query_status`].
    pub fn query_status(&self) -> Result<StatusInfo, Error> {
        self.run(QueryStatus)
    }

    /// Runs any operation of the async client to completion, which gives blocking callers every
    /// convenient method without a wrapper for each:
    /// `qmp.block_on(|c| c.query_kvm())`, `qmp.block_on(|c| c.device_del("nic0"))`.
    pub fn block_on<'a, F, T>(&'a self, operation: impl FnOnce(&'a crate::Client) -> F) -> T
    where
        F: std::future::Future<Output = T>,
    {
        self.runtime.block_on(operation(&self.inner))
    }

    /// Runs a command and waits for the event it causes, as
    /// [`crate::Client::execute_and_wait`].
    ///
    /// # Errors
    /// As [`crate::Client::execute_and_wait`].
    pub fn execute_and_wait(
        &self,
        name: &str,
        arguments: impl Serialize,
        filter: impl Into<EventFilter>,
        timeout: Duration,
    ) -> Result<(Value, Event), Error> {
        self.runtime.block_on(self.inner.execute_and_wait(name, arguments, filter, timeout))
    }

    /// Runs a command and returns its result as undecoded JSON text, as
    /// [`crate::Client::execute_raw_json`].
    ///
    /// # Errors
    /// As [`crate::Client::execute_raw_json`].
    pub fn execute_raw_json(&self, name: &str, arguments: impl Serialize) -> Result<Box<RawValue>, Error> {
        self.runtime.block_on(self.inner.execute_raw_json(name, arguments))
    }

    /// Subscribes to events, as [`crate::Client::subscribe`].
    #[must_use]
    pub fn subscribe(&self, filter: impl Into<EventFilter>) -> EventReceiver {
        EventReceiver { runtime: self.runtime.clone(), stream: Mutex::new(self.inner.subscribe(filter)) }
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.runtime.block_on(self.inner.close());
    }
}

/// A blocking event subscription.
#[derive(Debug)]
pub struct EventReceiver {
    runtime: Arc<Runtime>,
    stream: Mutex<crate::EventStream>,
}

impl EventReceiver {
    fn stream(&self) -> std::sync::MutexGuard<'_, crate::EventStream> {
        self.stream.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next item; `None` once the connection has ended and the queue is empty.
    #[must_use]
    pub fn recv(&self) -> Option<EventItem> {
        let mut stream = self.stream();
        self.runtime.block_on(stream.next())
    }

    /// The next item, waiting at most `timeout`. As with [`EventReceiver::recv`], a
    /// [`EventItem::Lagged`] marker says where events were dropped because the subscriber
    /// fell behind.
    ///
    /// # Errors
    /// [`Error::Timeout`] when none comes in time, [`Error::Disconnected`] when the connection
    /// ended and the queue is empty.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<EventItem, Error> {
        let mut stream = self.stream();
        let next = self.runtime.block_on(async { tokio::time::timeout(timeout, stream.next()).await });
        match next {
            Ok(Some(item)) => Ok(item),
            Ok(None) => Err(Error::Disconnected(stream.end_reason().unwrap_or(Disconnect::Closed))),
            Err(_) => Err(Error::Timeout { what: "event".into(), after: timeout }),
        }
    }

    /// An item if one is queued now.
    #[must_use]
    pub fn try_recv(&self) -> Option<EventItem> {
        self.stream().try_next()
    }
}
