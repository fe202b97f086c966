//! One client of the proxy: its session, its queue of requests, its output.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use qmpkit_proto::message::encode_server_value;
use qmpkit_proto::server::{CommandInfo, Input, Request};
use qmpkit_proto::{Id, QmpError, ServerMessage, ServerSession};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::{Direction, Exchange, Policy, Settings, Subscriber, Subscribers, Upstream};
use crate::transport::{MAX_FDS_PER_MESSAGE, Socket, Stream};
use crate::{CallOptions, Error};

/// Out-of-band commands one client may have upstream at once.
const OOB_PER_CLIENT: usize = 8;

/// A message waiting to be written: a reply of its own, or an event shared by many clients.
enum Out {
    Own(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Out {
    fn bytes(&self) -> &[u8] {
        match self {
            Out::Own(b) => b,
            Out::Shared(b) => b,
        }
    }
}

#[derive(Default)]
struct OutState {
    queue: VecDeque<Out>,
    bytes: usize,
    /// The writer holds bytes it took from the queue and has not written all of yet.
    writing: bool,
    /// No more messages are taken: the client is going, or it stopped reading.
    closed: bool,
    overflowed: bool,
}

/// A client's output queue, bounded in bytes (counting what is being written). Writers never
/// wait on it: a push that would go past the bound marks the client as one that stopped
/// reading, and it is disconnected.
///
/// A message that nothing waits before is written to the socket at once, by whoever pushes
/// it, when the socket has room: that is nearly every reply of a client that reads, and it
/// spares waking the writer and copying the message again. Only what does not go out at once
/// is queued, and the writer waits for room for it.
pub(crate) struct Outbox {
    state: Mutex<OutState>,
    ready: Notify,
    /// Told when the bound is passed, so that a writer stuck on a full socket gives up.
    overflow: Notify,
    limit: usize,
    /// The client's socket, for the writes made at once.
    socket: Option<Arc<Socket>>,
}

impl Outbox {
    fn new(limit: usize, socket: Option<Arc<Socket>>) -> Self {
        Outbox { state: Mutex::new(OutState::default()), ready: Notify::new(), overflow: Notify::new(), limit, socket }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, mut out: Out) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        // Written at once only while nothing is queued or being written, so that the order
        // holds; the lock is held across the (non-blocking) write for the same reason.
        if let Some(socket) = self.socket.as_deref().filter(|_| state.queue.is_empty() && !state.writing) {
            match socket.try_write(out.bytes()) {
                Ok(n) if n == out.bytes().len() => return,
                Ok(n) => out = Out::Own(out.bytes()[n..].to_vec()),
                // No room (the writer waits for it), or the socket failed (the writer finds
                // out and ends the connection).
                Err(_) => {}
            }
        }
        let len = out.bytes().len();
        // A message larger than the bound still goes through an empty queue, so that the
        // bound limits how far a client falls behind, not how large a reply may be.
        if state.bytes > 0 && state.bytes + len > self.limit {
            state.overflowed = true;
            state.closed = true;
            self.overflow.notify_one();
        } else {
            state.bytes += len;
            state.queue.push_back(out);
        }
        drop(state);
        // One consumer (the writer), so a stored permit is never lost.
        self.ready.notify_one();
    }

    pub(crate) fn push_shared(&self, bytes: Arc<[u8]>) {
        self.push(Out::Shared(bytes));
    }

    fn push_own(&self, bytes: Vec<u8>) {
        self.push(Out::Own(bytes));
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }
}

/// Why a client's connection ended.
#[derive(Debug)]
enum Ended {
    /// The client closed its end, or reading from it failed.
    ClientLeft,
    /// Writing failed, or the client stopped reading and its output went past the bound.
    Output,
    /// The connection to QEMU ended.
    UpstreamGone,
}

/// What the in-band executor does next, in the client's order.
enum Job {
    /// A reply the session wrote itself; `negotiates` when it completes `qmp_capabilities`,
    /// after which the client receives events.
    Reply { bytes: Vec<u8>, negotiates: bool },
    /// A command for QEMU, with the descriptors it carries.
    Call(Request, Vec<OwnedFd>),
}

/// The client's in-band work, from its reader to its executor, bounded in jobs.
///
/// Both run in the connection's task, polled by one `select!` that polls the reader before
/// the executor, so a job the reader queues is taken by the executor in the same pass. A
/// tokio channel would wake the task at each job all the same, which made the whole
/// connection run once more for nothing per request; this queue wakes the executor only when
/// it waits in another task than the one queuing (a wake is then needed), and the reader when
/// it waits for room.
struct JobQueue {
    state: Mutex<JobState>,
    limit: usize,
}

struct JobState {
    jobs: VecDeque<Job>,
    /// The reader is gone: once the jobs are done, the executor ends.
    reader_gone: bool,
    /// The executor is gone: the reader stops.
    executor_gone: bool,
    /// The executor waits for a job.
    executor: Option<Waker>,
    /// The reader waits for room.
    reader: Option<Waker>,
}

impl JobQueue {
    fn new(limit: usize) -> Arc<Self> {
        let state =
            JobState { jobs: VecDeque::new(), reader_gone: false, executor_gone: false, executor: None, reader: None };
        Arc::new(JobQueue { state: Mutex::new(state), limit: limit.max(1) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The reader's end of a [`JobQueue`].
struct JobSender(Arc<JobQueue>);

impl JobSender {
    /// Queues a job, waiting for room; gives it back when the executor is gone.
    async fn send(&self, job: Job) -> Result<(), Job> {
        let mut job = Some(job);
        std::future::poll_fn(|cx| {
            let mut state = self.0.lock();
            if state.executor_gone {
                return Poll::Ready(job.take().map_or(Ok(()), Err));
            }
            if state.jobs.len() >= self.0.limit {
                state.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            state.jobs.extend(job.take());
            if let Some(waker) = state.executor.take() {
                // In this task the executor is polled after the reader anyway.
                if !waker.will_wake(cx.waker()) {
                    waker.wake();
                }
            }
            Poll::Ready(Ok(()))
        })
        .await
    }
}

impl Drop for JobSender {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.reader_gone = true;
        if let Some(waker) = state.executor.take() {
            waker.wake();
        }
    }
}

/// The executor's end of a [`JobQueue`].
struct JobReceiver(Arc<JobQueue>);

impl JobReceiver {
    /// The next job, or `None` once the reader is gone and every job is taken.
    async fn recv(&mut self) -> Option<Job> {
        std::future::poll_fn(|cx| {
            let mut state = self.0.lock();
            if let Some(job) = state.jobs.pop_front() {
                if let Some(waker) = state.reader.take() {
                    waker.wake();
                }
                return Poll::Ready(Some(job));
            }
            if state.reader_gone {
                return Poll::Ready(None);
            }
            state.executor = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl Drop for JobReceiver {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.executor_gone = true;
        if let Some(waker) = state.reader.take() {
            waker.wake();
        }
    }
}

pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) listener: Arc<str>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) subscribers: Subscribers,
    pub(crate) settings: Settings,
}

impl Conn {
    fn log(&self, direction: Direction, message: &[u8]) {
        if let Some(hook) = &self.settings.hook {
            let text = String::from_utf8_lossy(message.trim_ascii_end());
            hook(&Exchange { client: Some(self.id), listener: Some(&self.listener), direction, message: &text });
        }
    }

    pub(crate) async fn serve(self, stream: Stream) {
        let socket = match stream.into_socket() {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!("qmp proxy: client {} on {}: {e}", self.id, self.listener);
                return;
            }
        };
        let this = Arc::new(self);
        let socket = Arc::new(socket);
        let outbox = Arc::new(Outbox::new(this.settings.output_limit, Some(socket.clone())));
        let negotiated = Arc::new(AtomicBool::new(false));
        let session = ServerSession::new(this.upstream.config.clone());
        outbox.push_own(session.greeting());
        this.lock_subscribers().insert(
            this.id,
            Subscriber { outbox: outbox.clone(), policy: this.policy.clone(), negotiated: negotiated.clone() },
        );
        tracing::debug!("qmp proxy: client {} connected on {}", this.id, this.listener);
        let queue = JobQueue::new(this.settings.queue);
        let (jobs_tx, jobs) = (JobSender(queue.clone()), JobReceiver(queue));
        let oob_tasks = Mutex::new(JoinSet::new());
        // The reader is boxed so that it can really be dropped (and its end of the queue with
        // it) while the others finish.
        let mut reader = Box::pin(this.clone().read(&socket, session, jobs_tx, &outbox, &oob_tasks));
        let executor = this.clone().execute(jobs, &outbox, &negotiated);
        let writer = write(&socket, &outbox);
        tokio::pin!(executor, writer);
        let mut gone = this.upstream.gone.clone();
        // In this order, so that the executor takes a request in the same poll that read it
        // rather than in one more, and without drawing a random order at each poll.
        let ended = tokio::select! {
            biased;
            ended = &mut reader => ended,
            () = &mut executor => Ended::Output,
            ended = &mut writer => ended,
            _ = gone.wait_for(|gone| *gone) => Ended::UpstreamGone,
        };
        tracing::debug!("qmp proxy: client {} on {}: {ended:?}", this.id, this.listener);
        if let Ended::Output = ended {
            tracing::warn!(
                "qmp proxy: client {} on {} disconnected: it stopped reading or its socket failed",
                this.id,
                this.listener
            );
        }
        if let Ended::UpstreamGone = ended {
            // Stop reading, so that the executor fails what is queued (QEMU's connection is
            // closed, so each call fails at once), let the out-of-band calls fail the same way,
            // then flush, within the grace period.
            drop(reader);
            let mut oob = std::mem::take(&mut *oob_tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            let finish = async {
                executor.await;
                while oob.join_next().await.is_some() {}
                outbox.close();
                writer.await;
            };
            let _ = tokio::time::timeout(this.settings.close_grace, finish).await;
        }
        this.lock_subscribers().remove(&this.id);
        // Out-of-band calls still upstream are forgotten; their late replies are discarded.
        oob_tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).abort_all();
        this.release_fd_names();
    }

    fn lock_subscribers(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Subscriber>> {
        self.subscribers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lookup(&self, name: &str) -> Option<CommandInfo> {
        if self.policy.allows_command(name) { self.upstream.commands.get(name).copied() } else { None }
    }

    /// Reads requests, answers what the session answers by itself, queues in-band work and
    /// starts out-of-band work.
    async fn read(
        self: Arc<Self>,
        socket: &Socket,
        mut session: ServerSession,
        jobs: JobSender,
        outbox: &Arc<Outbox>,
        oob_tasks: &Mutex<JoinSet<()>>,
    ) -> Ended {
        let mut buf = vec![0; 64 * 1024];
        let mut received = Vec::new();
        let mut pending_fds: Vec<OwnedFd> = Vec::new();
        let oob_slots = Arc::new(Semaphore::new(OOB_PER_CLIENT));
        let lookup = |name: &str| self.lookup(name);
        loop {
            let n = match socket.read_with_fds(&mut buf, &mut received).await {
                Ok(0) | Err(_) => return Ended::ClientLeft,
                Ok(n) => n,
            };
            if !received.is_empty() {
                // As QEMU does, a new batch of descriptors replaces one no command took.
                pending_fds = std::mem::take(&mut received);
                pending_fds.truncate(MAX_FDS_PER_MESSAGE);
            }
            session.handle_input(&buf[..n]);
            loop {
                let was_negotiated = session.is_negotiated();
                let Some(input) = session.poll_input(&lookup) else { break };
                match input {
                    Input::Reply { bytes, in_band: true } => {
                        let negotiates = !was_negotiated && session.is_negotiated();
                        if jobs.send(Job::Reply { bytes, negotiates }).await.is_err() {
                            return Ended::Output;
                        }
                    }
                    Input::Reply { bytes, in_band: false } => {
                        self.log(Direction::ToClient, &bytes);
                        outbox.push_own(bytes);
                    }
                    Input::Execute(request) => {
                        self.log_request(&request);
                        let fds = if takes_fds(&request.name) { std::mem::take(&mut pending_fds) } else { Vec::new() };
                        if jobs.send(Job::Call(request, fds)).await.is_err() {
                            return Ended::Output;
                        }
                    }
                    Input::ExecuteOob(request) => {
                        self.log_request(&request);
                        let Ok(slot) = oob_slots.clone().acquire_owned().await else { return Ended::Output };
                        let this = self.clone();
                        let outbox = outbox.clone();
                        let mut tasks = oob_tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        while tasks.try_join_next().is_some() {}
                        tasks.spawn(async move {
                            let reply = this.call(&request, Vec::new(), true).await;
                            drop(slot);
                            this.log(Direction::ToClient, &reply);
                            outbox.push_own(reply);
                        });
                    }
                }
            }
        }
    }

    fn log_request(&self, request: &Request) {
        if self.settings.hook.is_some() {
            let mut envelope = serde_json::Map::new();
            envelope.insert((if request.oob { "exec-oob" } else { "execute" }).into(), request.name.clone().into());
            if !request.arguments.is_empty() {
                envelope.insert("arguments".into(), Value::Object(request.arguments.clone()));
            }
            if let Some(id) = &request.id {
                envelope.insert("id".into(), id.as_value().clone());
            }
            self.log(Direction::FromClient, Value::Object(envelope).to_string().as_bytes());
        }
    }

    /// Runs the client's in-band work one item at a time, in its order.
    async fn execute(self: Arc<Self>, mut jobs: JobReceiver, outbox: &Outbox, negotiated: &AtomicBool) {
        while let Some(job) = jobs.recv().await {
            let bytes = match job {
                Job::Reply { bytes, negotiates } => {
                    if negotiates {
                        // Events follow the reply that completes negotiation, never precede it.
                        self.log(Direction::ToClient, &bytes);
                        outbox.push_own(bytes);
                        negotiated.store(true, Ordering::Release);
                        continue;
                    }
                    bytes
                }
                Job::Call(request, fds) => match self.fd_name_refusal(&request) {
                    Some(refusal) => encode_reply(request.id.as_ref(), Err(refusal)),
                    None => {
                        let window = self.upstream.window.acquire().await;
                        let reply = self.call(&request, fds, false).await;
                        drop(window);
                        reply
                    }
                },
            };
            self.log(Direction::ToClient, &bytes);
            outbox.push_own(bytes);
        }
    }

    /// Runs one command on QEMU and encodes the reply with the client's id.
    async fn call(&self, request: &Request, fds: Vec<OwnedFd>, oob: bool) -> Vec<u8> {
        let mut options = CallOptions::new().fds(fds);
        if oob {
            options = options.oob();
        }
        // No `"arguments": {}` when there are none: QEMU reads its input a byte at a time.
        let arguments = (!request.arguments.is_empty()).then_some(&request.arguments);
        let result = self.upstream.client.call_raw_json(&request.name, arguments, options).await;
        let result = match result {
            Ok(raw) => {
                self.note_fd_name(request);
                Ok(self.filtered(&request.name, raw))
            }
            Err(Error::Qmp { error, .. }) => Err(*error),
            Err(Error::Disconnected(reason)) => {
                Err(QmpError::generic(format!("qmp proxy: lost the connection to QEMU: {reason}")))
            }
            Err(other) => Err(QmpError::generic(format!("qmp proxy: {other}"))),
        };
        encode_reply(request.id.as_ref(), result)
    }

    /// An introspection result without what the listener's policy hides.
    fn filtered(&self, command: &str, raw: Box<RawValue>) -> Box<RawValue> {
        if !matches!(command, "query-commands" | "query-qmp-schema") || !self.policy.restricts() {
            return raw;
        }
        let Ok(mut value) = serde_json::from_str::<Value>(raw.get()) else { return raw };
        self.policy.filter_introspection(command, &mut value);
        let mut text = Vec::new();
        encode_server_value(&value, false, &mut text);
        text.truncate(text.len() - 2);
        String::from_utf8(text).ok().and_then(|t| RawValue::from_string(t).ok()).unwrap_or(raw)
    }

    /// Refuses `getfd` and `closefd` of a name another client holds (see the module docs).
    fn fd_name_refusal(&self, request: &Request) -> Option<QmpError> {
        let name = fd_name(request)?;
        let names = self.upstream.fd_names.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match names.get(name) {
            Some(&holder) if holder != self.id => Some(if request.name == "getfd" {
                QmpError::generic(format!("fd name '{name}' is held by another client of this proxy"))
            } else {
                QmpError::generic(format!("File descriptor named '{name}' not found"))
            }),
            _ => None,
        }
    }

    /// Records that a `getfd` or `closefd` succeeded.
    fn note_fd_name(&self, request: &Request) {
        let Some(name) = fd_name(request) else { return };
        let mut names = self.upstream.fd_names.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if request.name == "getfd" {
            names.insert(name.to_owned(), self.id);
        } else {
            names.remove(name);
        }
    }

    /// Closes the fd names this client still holds, as QEMU would if its monitor went away.
    fn release_fd_names(&self) {
        let held: Vec<String> = {
            let names = self.upstream.fd_names.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            names.iter().filter(|&(_, &holder)| holder == self.id).map(|(name, _)| name.clone()).collect()
        };
        if held.is_empty() || *self.upstream.gone.borrow() {
            return;
        }
        let upstream = self.upstream.clone();
        let id = self.id;
        tokio::spawn(async move {
            for name in held {
                let _ = upstream.client.execute("closefd", serde_json::json!({ "fdname": name })).await;
                let mut names = upstream.fd_names.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if names.get(&name) == Some(&id) {
                    names.remove(&name);
                }
            }
        });
    }
}

/// The commands that take the descriptors a client sent.
fn takes_fds(name: &str) -> bool {
    matches!(name, "getfd" | "add-fd")
}

/// The fd name of a `getfd` or `closefd`.
fn fd_name(request: &Request) -> Option<&str> {
    if request.name == "getfd" || request.name == "closefd" {
        request.arguments.get("fdname").and_then(Value::as_str)
    } else {
        None
    }
}

/// A reply as QEMU writes it, with the client's id; a result is QEMU's own text.
fn encode_reply(id: Option<&Id>, result: Result<Box<RawValue>, QmpError>) -> Vec<u8> {
    match result {
        Ok(raw) => {
            let mut out = Vec::with_capacity(raw.get().len() + 32);
            out.extend_from_slice(b"{\"return\": ");
            out.extend_from_slice(raw.get().as_bytes());
            if let Some(id) = id {
                out.extend_from_slice(b", \"id\": ");
                encode_server_value(id.as_value(), false, &mut out);
                // `encode_server_value` ends its line; the id is not the end of this one.
                out.truncate(out.len() - 2);
            }
            out.extend_from_slice(b"}\r\n");
            out
        }
        Err(error) => {
            let mut out = Vec::new();
            ServerMessage::Response(qmpkit_proto::Response { id: id.cloned(), result: Err(error) })
                .encode_server(false, &mut out);
            out
        }
    }
}

/// Writes the client's output, as much at a time as is queued.
async fn write(socket: &Socket, outbox: &Outbox) -> Ended {
    let mut buf = Vec::new();
    loop {
        let taken = {
            let mut state = outbox.lock();
            if state.overflowed {
                return Ended::Output;
            }
            if state.queue.is_empty() && state.closed {
                return Ended::Output;
            }
            buf.clear();
            for out in state.queue.drain(..) {
                buf.extend_from_slice(out.bytes());
            }
            state.writing = !buf.is_empty();
            buf.len()
        };
        if taken == 0 {
            outbox.ready.notified().await;
            continue;
        }
        let mut sent = 0;
        while sent < buf.len() {
            let written = tokio::select! {
                biased;
                () = outbox.overflow.notified() => return Ended::Output,
                written = socket.write(&buf[sent..], &[]) => written,
            };
            match written {
                Ok(0) | Err(_) => return Ended::Output,
                Ok(n) => sent += n,
            }
        }
        let mut state = outbox.lock();
        state.bytes -= taken;
        state.writing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qmpkit_proto::ErrorClass;

    #[test]
    fn replies_echo_any_id_around_qemus_text() {
        let raw = RawValue::from_string("{\"status\": \"running\", \"running\": true}".into()).unwrap();
        let id = Id::new(serde_json::json!({"a": [1, "x"]}));
        assert_eq!(
            encode_reply(Some(&id), Ok(raw)),
            b"{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": {\"a\": [1, \"x\"]}}\r\n"
        );
        let error = QmpError::new(ErrorClass::CommandNotFound, "nope");
        assert_eq!(
            encode_reply(None, Err(error)),
            b"{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"nope\"}}\r\n"
        );
    }

    /// Messages are written at once only while nothing is queued: once the socket was full,
    /// later messages wait behind the queued ones even when the peer has made room, and the
    /// peer reads everything in order.
    #[tokio::test]
    async fn nothing_written_at_once_overtakes_what_is_queued() {
        use tokio::io::AsyncReadExt;
        let (a, mut b) = tokio::net::UnixStream::pair().unwrap();
        let socket = Arc::new(Stream::Unix(a).into_socket().unwrap());
        let outbox = Arc::new(Outbox::new(1 << 30, Some(socket.clone())));
        let mut expected = Vec::new();
        let mut n = 0u32;
        while outbox.lock().queue.is_empty() {
            let message = format!("{n:08}").repeat(512).into_bytes();
            expected.extend_from_slice(&message);
            outbox.push_own(message);
            n += 1;
        }
        let mut received = vec![0; expected.len() + 4];
        b.read_exact(&mut received[..4096]).await.unwrap();
        outbox.push_own(b"last".to_vec());
        expected.extend_from_slice(b"last");
        assert_eq!(outbox.lock().queue.len(), 2, "the last message waits behind the queued one");
        let writer = tokio::spawn({
            let (socket, outbox) = (socket.clone(), outbox.clone());
            async move { write(&socket, &outbox).await }
        });
        b.read_exact(&mut received[4096..]).await.unwrap();
        assert!(received == expected, "the peer reads every message in order");
        outbox.close();
        assert!(matches!(writer.await.unwrap(), Ended::Output));
    }

    fn reply(n: u8) -> Job {
        Job::Reply { bytes: vec![n], negotiates: false }
    }

    fn reply_byte(job: Option<Job>) -> Option<u8> {
        match job {
            Some(Job::Reply { bytes, .. }) => bytes.first().copied(),
            _ => None,
        }
    }

    /// The job queue keeps order and its bound (a reader waits for room and is woken when the
    /// executor takes a job, here from another task), wakes an executor waiting in another
    /// task, and ends the executor once the reader is gone and every job is taken.
    #[tokio::test]
    async fn the_job_queue_keeps_order_bound_and_ends() {
        let queue = JobQueue::new(2);
        let (tx, mut rx) = (JobSender(queue.clone()), JobReceiver(queue.clone()));
        let executor = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(n) = reply_byte(rx.recv().await) {
                got.push(n);
            }
            got
        });
        for n in 0..10 {
            assert!(tx.send(reply(n)).await.is_ok());
            assert!(queue.lock().jobs.len() <= 2, "the bound holds");
        }
        drop(tx);
        assert_eq!(executor.await.unwrap(), (0..10).collect::<Vec<u8>>());
    }

    /// A reader whose executor is gone gets its job back, even while it waits for room.
    #[tokio::test]
    async fn the_job_queue_refuses_once_the_executor_is_gone() {
        let queue = JobQueue::new(1);
        let (tx, rx) = (JobSender(queue.clone()), JobReceiver(queue));
        assert!(tx.send(reply(1)).await.is_ok());
        let waiting = tokio::spawn(async move { reply_byte(tx.send(reply(2)).await.err()) });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Some(2));
    }

    #[test]
    fn the_outbox_refuses_past_its_bound() {
        let outbox = Outbox::new(10, None);
        outbox.push_own(vec![0; 6]);
        outbox.push_own(vec![0; 6]);
        let state = outbox.lock();
        assert!(state.overflowed);
        assert_eq!(state.queue.len(), 1);
    }
}
