//! Connecting to a QMP server that is still starting: the socket may not exist yet, may
//! refuse, or may accept and say nothing until the monitor is up.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Client, ClientBuilder, with_deadline};
use crate::error::{Disconnect, Error};
use crate::transport::{Endpoint, Stream};

/// The default first pause between attempts of [`ClientBuilder::connect_until_ready`].
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_millis(10);

/// The default longest pause between attempts of [`ClientBuilder::connect_until_ready`].
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_millis(500);

impl ClientBuilder {
    /// The pauses between attempts of [`ClientBuilder::connect_until_ready`]: `initial`
    /// after the first failure, doubling after each further one up to `max` (defaults
    /// [`DEFAULT_RETRY_INITIAL`], 10 ms, and [`DEFAULT_RETRY_MAX`], 500 ms).
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_initial = initial;
        self.retry_max = max.max(initial);
        self
    }

    /// Connects to a server that may still be starting, as a VM manager does right after it
    /// spawned QEMU: it tries again, with capped exponential back-off
    /// ([`ClientBuilder::retry_backoff`]), while the socket does not exist yet, refuses
    /// connections, or closes before greeting, until `deadline` has passed. A connection that
    /// is accepted but silent is waited on, as QEMU greets once its main loop runs; the
    /// connect and handshake deadlines still apply to each attempt, cut short by `deadline`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), qmpkit::Error> {
    /// use std::time::Duration;
    /// // Spawn QEMU with `-qmp unix:/run/vm1/qmp.sock,server=on,wait=off`, then:
    /// let qmp = qmpkit::Client::builder().connect_until_ready("/run/vm1/qmp.sock", Duration::from_secs(30)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotReady`] when the deadline passes, with the number of attempts and the error
    /// of the last one (a missing socket, a refusal, a silent server). Errors that waiting
    /// cannot cure end the wait at once: a peer that breaks the protocol or refuses the
    /// negotiation, or a connection failure other than the socket missing, refusing or
    /// resetting (such as a permission error).
    pub async fn connect_until_ready(self, endpoint: impl AsRef<str>, deadline: Duration) -> Result<Client, Error> {
        let endpoint: Endpoint = endpoint.as_ref().parse().unwrap_or_else(|never| match never {});
        self.connect_endpoint_until_ready(&endpoint, deadline).await
    }

    /// [`ClientBuilder::connect_until_ready`] for an [`Endpoint`].
    ///
    /// # Errors
    /// As [`ClientBuilder::connect_until_ready`].
    pub async fn connect_endpoint_until_ready(self, endpoint: &Endpoint, deadline: Duration) -> Result<Client, Error> {
        let started = Instant::now();
        let give_up = started + deadline;
        let remaining = || give_up.saturating_duration_since(Instant::now());
        let capped = |limit: Option<Duration>| Some(limit.map_or(remaining(), |limit| limit.min(remaining())));
        let mut pause = self.retry_initial;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let attempt = async {
                let stream = with_deadline(capped(self.connect_timeout), "connect", Stream::connect(endpoint))
                    .await?
                    .map_err(|e| Error::Connect { endpoint: endpoint.to_string(), source: Arc::new(e) })?;
                self.clone().handshake_timeout(capped(self.handshake_timeout)).over_stream(stream).await
            };
            let last = match attempt.await {
                Ok(client) => return Ok(client),
                Err(error) if worth_retrying(&error) => error,
                Err(error) => return Err(error),
            };
            if remaining().is_zero() {
                return Err(Error::NotReady {
                    endpoint: endpoint.to_string(),
                    waited: started.elapsed(),
                    attempts,
                    last: Box::new(last),
                });
            }
            tracing::debug!(%endpoint, attempts, error = %last, "not ready yet; trying again in {pause:?}");
            tokio::time::sleep(pause.min(remaining())).await;
            pause = (pause * 2).min(self.retry_max);
        }
    }
}

/// Whether an attempt failed in a way that a server still starting explains.
fn worth_retrying(error: &Error) -> bool {
    match error {
        Error::Connect { source, .. } => matches!(
            source.kind(),
            ErrorKind::NotFound
                | ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                // A unix socket's full backlog, while the server is too busy starting to accept.
                | ErrorKind::WouldBlock
                | ErrorKind::TimedOut
        ),
        // A deadline of the attempt: a silent server, or the overall deadline cut it short.
        Error::Timeout { .. } | Error::NoGreeting { .. } => true,
        // Closed before or during the greeting: a server restarting, or one that accepted on a
        // backlog it then dropped.
        Error::Disconnected(Disconnect::ServerGone { .. } | Disconnect::Io(_)) => true,
        _ => false,
    }
}
