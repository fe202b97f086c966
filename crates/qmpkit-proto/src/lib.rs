//! The sans-IO core of the QEMU Monitor Protocol (QMP).
//!
//! This crate reads and writes QMP without doing any IO and without reading any clock: callers
//! push bytes in and take bytes and decoded items out. The async client and server in the
//! `qmpkit` crate, the fuzz targets and the tests all drive the same state machines.
//!
//! ```text
//!   bytes from the peer ──► Framer ──► frames ──► decode ──► ClientSession / ServerSession
//!                                                                   │
//!   bytes to the peer   ◄────────────── encode ◄────────────────────┘
//! ```
//!
//! # Layout
//! - [`id`]: [`Id`], a request id that may be any JSON value.
//! - [`message`]: the greeting, commands, responses, events and error classes.
//! - [`framer`]: [`Framer`], which splits a byte stream into top-level JSON values the way
//!   QEMU's lexer and streamer do, with QEMU's limits and recovery.
//! - [`qjson`]: QEMU's JSON dialect: the server-side input parser (single quotes, duplicate keys,
//!   QEMU's error texts) and the server-side writer (ASCII only, QEMU's separators).
//! - [`pending`]: [`Pending`], a table of calls awaiting a reply, generic over what the caller
//!   stores.
//! - [`client`]: [`ClientSession`], the client's state machine.
//! - [`server`]: [`ServerSession`], the server's state machine.
//! - [`error`]: errors that say whose fault it was.

pub mod client;
pub mod error;
pub mod framer;
#[doc(hidden)]
pub mod fuzzing;
pub mod id;
pub mod message;
pub mod pending;
pub mod qjson;
pub mod server;
#[doc(hidden)]
pub mod transcript;

pub use client::{ClientConfig, ClientEvent, ClientSession};
pub use error::{Error, LimitError, MisuseError, ProtocolError};
pub use framer::{Frame, FrameError, Framer, Limits, Mode};
pub use id::Id;
pub use message::{
    Capability, Command, ErrorClass, Event, ExecKind, Greeting, QemuVersion, QmpError, Response, ServerMessage,
    Timestamp, VersionInfo,
};
pub use pending::Pending;
pub use server::{Dialect, Input, Request, ServerConfig, ServerSession};

#[cfg(test)]
mod testutil;
