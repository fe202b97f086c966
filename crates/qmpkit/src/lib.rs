//! An async QMP client and an embeddable QMP server, on tokio.
//!
//! - [`Client`]: connect to QEMU (or anything that speaks QMP), run commands from any number
//!   of tasks at once, subscribe to events, pass file descriptors, run commands out-of-band,
//!   with deadlines that really interrupt the wait. [`blocking::Client`] is the same for
//!   callers without async.
//! - [`agent`]: a client for the guest agent, `qemu-ga`, that survives the guest's life.
//! - [`proxy`]: many clients on one QEMU monitor, with a policy per listener.
//! - [`launch`]: start a QEMU with a QMP socket, for tests and tools.
//! - [`transport`]: unix and TCP endpoints, file descriptor passing.
//! - [`commands`]: typed commands, run with [`Client::run`].
//! - [`types`]: typed results and events for the common commands.
//!
//! Both ends are built on the sans-IO core in [`qmpkit_proto`], which this crate re-exports as
//! [`proto`].

pub mod agent;
pub mod blocking;
pub mod client;
pub mod commands;
mod error;
pub mod launch;
pub mod proxy;
pub mod server;
pub mod transport;
pub mod types;

pub use client::{CallOptions, Client, ClientBuilder, EventFilter, EventItem, EventStream, Stats};
pub use error::{Disconnect, Error, GoneCause, LimitError, MisuseError, ProtocolError, QmpError};
pub use qmpkit_proto as proto;
pub use qmpkit_proto::{Command, ErrorClass, Event, Greeting, Id, Response, Timestamp};
pub use types::QmpEvent;

/// The README's examples, compiled with the doctests so that they stay true. The crate's
/// `README.md` links to the workspace's, and `cargo package` puts a copy in the published crate.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
