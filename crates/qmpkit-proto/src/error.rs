//! Errors of the protocol core, grouped by whose fault they are.
//!
//! The peer broke the protocol ([`ProtocolError`]), the peer said no (a
//! [`QmpError`] in [`Error::Refused`]), the caller misused the API
//! ([`MisuseError`]), or a configured limit was reached ([`LimitError`]).

use crate::framer::FrameError;
use crate::id::Id;
use crate::message::QmpError;

/// Any error of the protocol core.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer sent something QMP does not allow.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The peer answered with a QMP error.
    #[error("the server refused: {0}")]
    Refused(QmpError),
    /// The caller asked for something the session cannot do in its current state.
    #[error(transparent)]
    Misuse(#[from] MisuseError),
    /// A message went past a configured limit.
    #[error(transparent)]
    Limit(#[from] LimitError),
}

/// The peer broke the protocol.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A complete message was not valid JSON (QEMU can emit `inf` for an overflowing id).
    #[error("the peer sent a message that is not valid JSON ({reason}): {excerpt}")]
    Unparsable {
        /// What the JSON parser said.
        reason: String,
        /// The start of the message.
        excerpt: String,
    },
    /// The byte stream held something that cannot start or continue a JSON value.
    #[error("the peer sent bytes that are not JSON: {0}")]
    Stray(String),
    /// A message was valid JSON but not a greeting, response or event.
    #[error("the peer sent a message that is not a QMP greeting, response or event: {0}")]
    UnknownMessage(String),
    /// The greeting was malformed.
    #[error("the peer sent a malformed greeting ({reason}): {got}")]
    BadGreeting {
        /// What was wrong with it.
        reason: &'static str,
        /// The message as received.
        got: String,
    },
    /// A message arrived that the session's state does not allow.
    #[error("the peer sent {got} while the session was {state}")]
    UnexpectedMessage {
        /// The session's state when it arrived.
        state: &'static str,
        /// The message as received.
        got: String,
    },
    /// An error without an id arrived while no command without an id was pending: the
    /// server could not parse what was sent to it.
    #[error("the server could not parse our input: {0}")]
    UnroutableError(Box<QmpError>),
    /// A reply without an id arrived while the commands waiting for replies all carried ids
    /// (a peer that drops ids). The oldest waiting call fails with this, so that it never
    /// waits forever; `got` is the reply as received.
    #[error("the peer answered without an id while several commands with ids were waiting: {got}")]
    MissingId {
        /// The reply as received.
        got: String,
    },
    /// With commands sent without ids (matched to replies by order), the server sent an
    /// error without an id that answers none of them: it could not parse something. From
    /// then on every id-less reply may belong to another command, so the session stops.
    #[error(
        "the server sent an unmatched error without an id ({0}), so replies to commands without ids can no longer be matched by order"
    )]
    OrderLost(Box<QmpError>),
    /// Capability negotiation was refused.
    #[error("capability negotiation failed: {0}")]
    Negotiation(Box<QmpError>),
    /// The stream ended in the middle of a message.
    #[error("the connection ended in the middle of a message")]
    TruncatedMessage,
}

/// The caller asked for something the session cannot do now.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MisuseError {
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
    /// `exec-oob` was requested but the `oob` capability was not negotiated.
    #[error("out-of-band execution was not negotiated with the server")]
    OobNotNegotiated,
    /// An out-of-band command needs an id, or its reply could not be matched.
    #[error("an out-of-band command needs an id")]
    OobNeedsId,
    /// A command with this id is already pending.
    #[error("a command with id {0} is already pending")]
    IdInUse(Id),
    /// The id uses the prefix the session reserves for its own ids.
    #[error("the id {0} is reserved for the session's own commands")]
    ReservedId(Id),
}

/// A message went past a configured limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A message was larger than the limit in bytes.
    #[error("a message exceeded the size limit")]
    TooLarge,
    /// A message nested arrays and objects deeper than the limit.
    #[error("a message exceeded the nesting limit")]
    TooDeep,
    /// A message held more JSON tokens than the limit.
    #[error("a message exceeded the token count limit")]
    TooManyTokens,
}

impl From<FrameError> for Error {
    fn from(err: FrameError) -> Self {
        match err {
            FrameError::Stray(bytes) => {
                Error::Protocol(ProtocolError::Stray(String::from_utf8_lossy(&bytes).into_owned()))
            }
            FrameError::TooLarge => Error::Limit(LimitError::TooLarge),
            FrameError::TooManyTokens => Error::Limit(LimitError::TooManyTokens),
            FrameError::TooDeep => Error::Limit(LimitError::TooDeep),
        }
    }
}
