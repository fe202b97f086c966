//! One connection: the session, the in-band queue, out-of-band commands, events and the
//! output buffer, driven by a single task.
//!
//! The task is one hand-written `poll` loop rather than a `select!`, so that the order of
//! everything it does is fixed:
//!
//! 1. replies waiting at the head of the in-band queue go out, and the next in-band request
//!    starts once the previous one finished (QEMU runs one in-band command at a time);
//! 2. the running in-band command and the out-of-band ones are polled; before a finished
//!    command's reply, the events emitted so far are written, so that an event a command
//!    raised precedes its reply as in QEMU;
//! 3. events are moved into the output buffer (whole messages only, so an event never lands
//!    inside another message);
//! 4. input is taken only while the queue has room: without `oob`, only when nothing is
//!    queued or running; with `oob`, while fewer than 8 in-band requests wait (the running
//!    one not counted, as QEMU's `QMP_REQ_QUEUE_LEN_MAX`). Bytes stay in the socket
//!    otherwise, which is how QEMU "stops reading". An `exec-oob` command is polled once
//!    as soon as it is taken, so that its reply precedes the replies to later input, as
//!    QEMU's I/O thread runs it while parsing;
//! 5. output is written, and the stream flushed once the output buffer is empty.
//!
//! Architecture Invariant: the connection holds at most `max_output` bytes for its client
//! (output buffer plus queued events). An event that would exceed it disconnects the client
//! instead; input is not read while the output buffer is above a high-water mark, so a
//! client that sends without reading is slowed down rather than disconnected.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll, ready};

use qmpkit_proto::server::{Input, Request, ServerSession};
use qmpkit_proto::{Id, QmpError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Limits;
use super::events::{ConnShared, Hub};
use super::fds::lock;
use super::lazy::LazyRegistry;
use super::registry::{BoxFuture, CommandResult, Context, Registry, Shared};
use crate::transport::Socket;

/// The size of the buffer one read fills; it lives on the stack only during the read, so
/// an idle connection holds no read buffer.
const READ_CHUNK: usize = 16 * 1024;

/// How many loop turns a connection takes before it yields to other tasks.
const TURNS_BEFORE_YIELD: usize = 64;

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// Reading or writing failed.
    #[error("connection I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The client did not read its output and the server dropped it at the output bound.
    #[error("the client did not read its output: more than {0} bytes were waiting for it")]
    OutputOverflow(usize),
}

/// A byte stream the connection runs on, with file descriptor passing where the stream
/// supports it.
pub(crate) trait Io: Send + Unpin + 'static {
    /// Reads into `buf`, appending any file descriptors that came with the bytes to `fds`.
    fn poll_read_fds(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
        fds: &mut Vec<OwnedFd>,
    ) -> Poll<io::Result<()>>;
    /// Writes bytes.
    fn poll_write(&mut self, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    /// Pushes out what the stream buffers (a `BufWriter`, TLS); sockets buffer nothing.
    fn poll_flush(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>>;
    /// Closes the write side.
    fn poll_shutdown(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>>;
}

/// Any `AsyncRead + AsyncWrite`, without fd passing.
pub(crate) struct Plain<T>(pub(crate) T);

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for Plain<T> {
    fn poll_read_fds(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
        _: &mut Vec<OwnedFd>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A unix or TCP socket registered for read readiness only (see
/// [`Socket`](crate::transport::Socket)); a unix socket also receives `SCM_RIGHTS` descriptors.
pub(crate) struct Sock(pub(crate) Socket);

impl Io for Sock {
    fn poll_read_fds(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
        fds: &mut Vec<OwnedFd>,
    ) -> Poll<io::Result<()>> {
        let n = ready!(self.0.poll_read(cx, buf.initialize_unfilled(), Some(fds)))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }

    fn poll_write(&mut self, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.0.poll_write(cx, buf, &[])
    }

    fn poll_flush(&mut self, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&mut self, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.shutdown_write())
    }
}

/// An entry of the in-band queue: a request to run, or a reply the session wrote that keeps
/// its place among the in-band replies (QEMU queues parse errors like requests).
enum Queued {
    Request(Request),
    Reply(Vec<u8>),
}

/// A command in progress.
struct Running {
    id: Option<Id>,
    name: String,
    future: BoxFuture<CommandResult>,
}

/// The state of one connection.
pub(crate) struct Connection<T: Io> {
    io: T,
    session: ServerSession,
    /// The commands; until a lazy registry is ready, the built-in ones, and `lazy` is set.
    registry: Arc<Registry>,
    /// The registry being built: the connection greets meanwhile but takes no request.
    lazy: Option<Arc<LazyRegistry>>,
    /// Whether this connection has a blocking task waiting for `lazy`, to wake it.
    lazy_waiting: bool,
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    conn: Arc<ConnShared>,
    id: u64,
    limits: Limits,
    queue: VecDeque<Queued>,
    running: Option<Running>,
    oob: Vec<Running>,
    out: Vec<u8>,
    written: usize,
    /// Whether bytes were written since the stream was last flushed.
    unflushed: bool,
    eof: bool,
    stopping: bool,
    write_closed: bool,
}

impl<T: Io> Connection<T> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        io: T,
        session: ServerSession,
        registry: &Arc<LazyRegistry>,
        shared: Arc<Shared>,
        hub: Arc<Hub>,
        id: u64,
        conn: Arc<ConnShared>,
        limits: Limits,
    ) -> Self {
        let mut out = Vec::new();
        out.extend_from_slice(&session.greeting());
        let (registry, lazy) = match registry.ready_now() {
            Some(ready) => (ready, None),
            None => (Arc::new(Registry::new()), Some(registry.clone())),
        };
        Connection {
            io,
            session,
            registry,
            lazy,
            lazy_waiting: false,
            shared,
            hub,
            conn,
            id,
            limits,
            queue: VecDeque::new(),
            running: None,
            oob: Vec::new(),
            out,
            written: 0,
            unflushed: false,
            eof: false,
            stopping: false,
            write_closed: false,
        }
    }

    /// Runs the connection to its end.
    pub(crate) async fn run(mut self) -> Result<(), ConnectionError> {
        let result = std::future::poll_fn(|cx| self.poll(cx)).await;
        self.hub.unregister(self.id);
        match &result {
            Ok(()) => tracing::debug!("connection closed"),
            Err(ConnectionError::OutputOverflow(_)) => {
                self.hub.overflows.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %result.as_ref().unwrap_err(), "client disconnected");
            }
            Err(err) => tracing::debug!(error = %err, "connection ended"),
        }
        if !self.write_closed {
            // Best effort: the peer may already be gone.
            let _ = std::future::poll_fn(|cx| self.io.poll_shutdown(cx)).await;
        }
        result
    }

    fn poll(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), ConnectionError>> {
        {
            let mut waker = lock(&self.conn.waker);
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        for _ in 0..TURNS_BEFORE_YIELD {
            let mut progress = false;
            if !self.stopping && self.conn.shutdown.load(Ordering::Acquire) {
                self.stop();
                progress = true;
            }
            if self.conn.overflow.load(Ordering::Acquire) {
                return Poll::Ready(Err(ConnectionError::OutputOverflow(self.limits.max_output)));
            }
            progress |= self.advance_queue();
            progress |= self.poll_commands(cx);
            progress |= self.take_events();
            // Write before reading again: a reply must not wait behind a read that finds
            // nothing, and once it is out, that read often finds the client's next request
            // already there, without a round through epoll. Then write what the input itself
            // produced (negotiation, errors) before the output bound is checked.
            progress |= self.write(cx)?;
            let before = self.out.len();
            progress |= self.take_input(cx)?;
            if self.out.len() > before {
                progress |= self.write(cx)?;
            }
            if self.pending_output() > self.limits.max_output {
                return Poll::Ready(Err(ConnectionError::OutputOverflow(self.limits.max_output)));
            }
            let idle = self.queue.is_empty() && self.running.is_none() && self.oob.is_empty();
            if idle && self.pending_output() == 0 && !self.unflushed && (self.eof || self.stopping) {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Stops taking input and fails the requests that have not started, for shutdown; when
    /// the server exits as QEMU does, they are dropped unanswered instead.
    fn stop(&mut self) {
        tracing::debug!(queued = self.queue.len(), "shutting down");
        self.stopping = true;
        if self.shared.exiting.load(Ordering::SeqCst) {
            self.queue.clear();
            return;
        }
        let queue = std::mem::take(&mut self.queue);
        for item in queue {
            match item {
                Queued::Reply(bytes) => self.queue.push_back(Queued::Reply(bytes)),
                Queued::Request(request) => {
                    let error = QmpError::generic("The server is shutting down");
                    let bytes = self.session.encode_response(request.id.as_ref(), Err(error));
                    self.queue.push_back(Queued::Reply(bytes));
                }
            }
        }
    }

    fn pending_output(&self) -> usize {
        self.out.len() - self.written
    }

    fn push_output(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
        self.conn.out_len.store(self.pending_output(), Ordering::Relaxed);
    }

    /// Writes queued replies and starts the next in-band request when none is running.
    fn advance_queue(&mut self) -> bool {
        let mut progress = false;
        while self.running.is_none() {
            match self.queue.pop_front() {
                Some(Queued::Reply(bytes)) => self.push_output(&bytes),
                Some(Queued::Request(request)) => self.running = Some(self.start(request)),
                None => break,
            }
            progress = true;
        }
        progress
    }

    fn start(&self, request: Request) -> Running {
        tracing::debug!(command = request.name, oob = request.oob, "execute");
        let ctx =
            Context { shared: self.shared.clone(), conn: self.conn.clone(), connection: self.id, oob: request.oob };
        let future = self.registry.dispatch(ctx, &request.name, request.arguments);
        Running { id: request.id, name: request.name, future }
    }

    /// Polls the running commands and writes the replies of those that finished.
    fn poll_commands(&mut self, cx: &mut TaskContext<'_>) -> bool {
        let mut progress = false;
        let mut i = 0;
        while i < self.oob.len() {
            if let Poll::Ready(result) = poll_command(&mut self.oob[i], cx) {
                let done = self.oob.swap_remove(i);
                self.reply(done.id.as_ref(), result);
                progress = true;
            } else {
                i += 1;
            }
        }
        if let Some(running) = &mut self.running {
            if let Poll::Ready(result) = poll_command(running, cx) {
                let done = self.running.take().expect("checked just above; qed");
                self.reply(done.id.as_ref(), result);
                progress = true;
            }
        }
        progress
    }

    fn reply(&mut self, id: Option<&Id>, result: CommandResult) {
        // Events the command raised go out before its reply, as in QEMU.
        self.take_events();
        let bytes = self.session.encode_response(id, result);
        self.push_output(&bytes);
    }

    /// Moves queued events into the output buffer.
    fn take_events(&mut self) -> bool {
        let events = {
            let mut pending = lock(&self.conn.pending);
            if pending.0.is_empty() {
                return false;
            }
            pending.1 = 0;
            std::mem::take(&mut pending.0)
        };
        for event in events {
            self.out.extend_from_slice(&event);
        }
        self.conn.out_len.store(self.pending_output(), Ordering::Relaxed);
        true
    }

    /// Whether the connection may take another request now.
    fn can_accept(&self) -> bool {
        // The shutdown flag too: a handler that stopped the server must not see a later
        // request of its connection taken before the next turn notices.
        if self.stopping || self.oob.len() >= self.limits.max_oob || self.conn.shutdown.load(Ordering::Acquire) {
            return false;
        }
        if self.session.oob_enabled() {
            self.queue.len() < self.limits.queue_len
        } else {
            self.queue.is_empty() && self.running.is_none()
        }
    }

    /// Takes requests from buffered input and reads more when the buffer has none.
    fn take_input(&mut self, cx: &mut TaskContext<'_>) -> io::Result<bool> {
        if let Some(lazy) = &self.lazy {
            match lazy.ready_now() {
                Some(registry) => {
                    self.registry = registry;
                    self.lazy = None;
                }
                None => {
                    // The task's waker is registered in `conn` before this check, so the
                    // wake after the build cannot be missed.
                    if !self.lazy_waiting {
                        self.lazy_waiting = true;
                        let conn = self.conn.clone();
                        lazy.wait_then(move || conn.wake());
                    }
                    return Ok(false);
                }
            }
        }
        let mut progress = false;
        while self.can_accept() {
            if let Some(input) = self.session.poll_input(&*self.registry) {
                self.handle(input, cx);
                progress = true;
                continue;
            }
            // After one read, let the loop run the requests and write their replies before
            // it reads again: the next read usually finds nothing, and the reply should not
            // wait for it.
            if progress || self.eof || self.pending_output() > self.limits.high_water {
                break;
            }
            let mut stack = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut stack);
            let mut fds = Vec::new();
            match self.io.poll_read_fds(cx, &mut buf, &mut fds) {
                Poll::Pending => break,
                Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::ConnectionReset => {
                    self.eof = true;
                    break;
                }
                Poll::Ready(Err(err)) => return Err(err),
                Poll::Ready(Ok(())) => {
                    self.conn.fds.received(&mut fds);
                    progress = true;
                    if buf.filled().is_empty() {
                        tracing::debug!("end of input");
                        self.eof = true;
                        break;
                    }
                    self.session.handle_input(buf.filled());
                }
            }
        }
        Ok(progress)
    }

    fn handle(&mut self, input: Input, cx: &mut TaskContext<'_>) {
        match input {
            Input::Execute(request) => self.queue.push_back(Queued::Request(request)),
            Input::ExecuteOob(request) => {
                // QEMU runs an out-of-band command inside its I/O thread as soon as it is
                // parsed, before it parses what follows, while an in-band reply (even to bad
                // input) goes through the request queue. So the out-of-band reply precedes
                // replies to anything later in the same read: run the command once right
                // away, and keep it only if it has to wait.
                let mut running = self.start(request);
                match poll_command(&mut running, cx) {
                    Poll::Ready(result) => self.reply(running.id.as_ref(), result),
                    Poll::Pending => self.oob.push(running),
                }
            }
            Input::Reply { bytes, in_band } => {
                if !self.conn.negotiated.load(Ordering::Relaxed) && self.session.is_negotiated() {
                    tracing::debug!(oob = self.session.oob_enabled(), "capabilities negotiated");
                    self.conn.negotiated.store(true, Ordering::Release);
                }
                if in_band && (self.running.is_some() || !self.queue.is_empty()) {
                    self.queue.push_back(Queued::Reply(bytes));
                } else {
                    self.push_output(&bytes);
                }
            }
        }
    }

    /// Writes what the output buffer holds.
    fn write(&mut self, cx: &mut TaskContext<'_>) -> io::Result<bool> {
        let mut progress = false;
        while self.written < self.out.len() {
            match self.io.poll_write(cx, &self.out[self.written..]) {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.unflushed = true;
                    progress = true;
                }
                Poll::Ready(Err(err)) => return Err(err),
            }
        }
        // Flush when the output empties, so that a stream that buffers (a `BufWriter`, TLS)
        // does not hold a reply back; until then more output may join the same flush.
        if self.unflushed && self.written == self.out.len() {
            match self.io.poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(err)) => return Err(err),
                Poll::Pending => {}
            }
        }
        if self.written == self.out.len() && self.written > 0 {
            self.written = 0;
            if self.out.capacity() > 4 * READ_CHUNK {
                // A large reply went out; do not keep its buffer for an idle connection.
                self.out = Vec::new();
            } else {
                self.out.clear();
            }
        }
        self.conn.out_len.store(self.pending_output(), Ordering::Relaxed);
        Ok(progress)
    }
}

/// Polls a command, turning a panic in its handler into an error reply rather than taking
/// the connection (and the client's other work) down with it.
fn poll_command(running: &mut Running, cx: &mut TaskContext<'_>) -> Poll<CommandResult> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| running.future.as_mut().poll(cx))) {
        Ok(poll) => poll,
        Err(_) => {
            tracing::error!(command = running.name, "the command's handler panicked");
            Poll::Ready(Err(QmpError::generic(format!("The command {} failed unexpectedly", running.name))))
        }
    }
}
