//! The client's errors, grouped by whose fault they are.
//!
//! The peer said no ([`Error::Qmp`]), the peer broke the protocol ([`Error::Protocol`]), the
//! connection ended ([`Error::Disconnected`]), a deadline passed ([`Error::Timeout`]), the
//! operating system failed ([`Error::Io`], [`Error::Connect`]), or the caller asked for
//! something impossible ([`Error::Misuse`]). One failure of the connection reaches every
//! pending call, so errors are cheap to clone.

use std::io;
use std::sync::Arc;
use std::time::Duration;

pub use qmpkit_proto::{LimitError, MisuseError, ProtocolError, QmpError};

/// Why a connection ended.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Disconnect {
    /// The server went away: it closed the connection, exited or died. Whether that shows as
    /// an end of stream or a reset depends on timing (a reset when it died with our bytes
    /// unread), so it is one reason and `cause` keeps the detail.
    #[error("the server went away ({cause})")]
    ServerGone {
        /// How the end looked on this side.
        cause: GoneCause,
    },
    /// Reading or writing failed for another reason.
    #[error("the connection failed: {0}")]
    Io(Arc<io::Error>),
    /// The server broke the protocol in a way the session cannot recover from.
    #[error("the server broke the protocol: {0}")]
    Protocol(ProtocolError),
    /// A message from the server went past a limit, so a reply may have been lost.
    #[error("the server sent a message over the limit: {0}")]
    Limit(LimitError),
    /// The client was closed, or every handle to it was dropped.
    #[error("the client was closed")]
    Closed,
}

/// How a server that went away ended the connection ([`Disconnect::ServerGone`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GoneCause {
    /// The stream ended between messages.
    #[error("end of stream")]
    Eof,
    /// The stream ended in the middle of a message.
    #[error("end of stream in the middle of a message")]
    EofMidMessage,
    /// The connection was reset, the pipe broke, or a stream that frames its own end (TLS)
    /// ended without that frame (`ECONNRESET`, `EPIPE`, `ECONNABORTED`, `UnexpectedEof`).
    #[error("{0}")]
    Reset(Arc<io::Error>),
}

impl Disconnect {
    /// The reason for an IO error: the server going away when that is what the error says.
    #[must_use]
    pub fn from_io(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof => Disconnect::ServerGone { cause: GoneCause::Reset(Arc::new(err)) },
            _ => Disconnect::Io(Arc::new(err)),
        }
    }

    /// Whether the server went away (closed, exited or died).
    #[must_use]
    pub fn is_server_gone(&self) -> bool {
        matches!(self, Disconnect::ServerGone { .. })
    }
}

/// An error of the QMP client.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered the command with an error. Shown with the command first, as in
    /// `query-foo: CommandNotFound: The command query-foo has not been found`.
    #[error("{command}: {error}")]
    Qmp {
        /// What the server said.
        error: Box<QmpError>,
        /// The name of the command that failed.
        command: String,
    },
    /// The server broke the protocol while this call waited (the connection may go on).
    #[error(transparent)]
    Protocol(ProtocolError),
    /// The connection ended before the reply came; later calls fail at once with the same
    /// reason.
    #[error("disconnected: {0}")]
    Disconnected(Disconnect),
    /// The deadline passed. For a call, the command may still run on the server; its late
    /// reply is discarded.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out: a command's name, `connect` or `negotiation`.
        what: String,
        /// The deadline.
        after: Duration,
    },
    /// The connection opened but no greeting arrived before the handshake deadline. A QEMU
    /// monitor that already has a client accepts a second one and says nothing until the
    /// first leaves; a peer that never greets (the guest agent) needs
    /// [`ClientBuilder::no_greeting`](crate::ClientBuilder::no_greeting).
    #[error(
        "no QMP greeting within {after:?}: another client probably holds this monitor (QEMU accepts a second client and stays silent until the first leaves), or the peer does not greet (the guest agent needs no_greeting())"
    )]
    NoGreeting {
        /// The deadline.
        after: Duration,
    },
    /// Connecting failed.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        source: Arc<io::Error>,
    },
    /// [`ClientBuilder::connect_until_ready`](crate::ClientBuilder::connect_until_ready) gave
    /// up: the server was not ready by the deadline.
    #[error("{endpoint} was not ready after {waited:?} ({attempts} attempts); last: {last}")]
    NotReady {
        /// Where.
        endpoint: String,
        /// How long it waited.
        waited: Duration,
        /// How many connections it tried.
        attempts: u32,
        /// What the last attempt saw: the socket missing ([`Error::Connect`] with
        /// `NotFound`), refusing (`ConnectionRefused`), or accepting without a greeting
        /// ([`Error::Timeout`] of `negotiation`).
        last: Box<Error>,
    },
    /// The caller asked for something the connection cannot do.
    #[error(transparent)]
    Misuse(MisuseError),
    /// A reply did not have the shape the typed call expected.
    #[error("{command}: unexpected reply shape: {reason}")]
    Decode {
        /// The command.
        command: String,
        /// What did not fit.
        reason: String,
    },
    /// Arguments could not be turned into a JSON object.
    #[error("{command}: arguments must serialize to a JSON object: {reason}")]
    Arguments {
        /// The command.
        command: String,
        /// What went wrong.
        reason: String,
    },
    /// File descriptors were given on a connection that cannot carry them.
    #[error("file descriptors can only be passed over a unix socket")]
    FdsNeedUnixSocket,
}

impl Error {
    /// The QMP error the server sent, when that is what this is.
    #[must_use]
    pub fn qmp_error(&self) -> Option<&QmpError> {
        match self {
            Error::Qmp { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether the connection ended (every later call will fail too).
    #[must_use]
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected(_))
    }

    /// Whether a deadline passed ([`Error::Timeout`], or [`Error::NotReady`]).
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. } | Error::NotReady { .. } | Error::NoGreeting { .. })
    }
}

impl From<Disconnect> for Error {
    fn from(reason: Disconnect) -> Self {
        Error::Disconnected(reason)
    }
}

impl From<MisuseError> for Error {
    fn from(err: MisuseError) -> Self {
        Error::Misuse(err)
    }
}
