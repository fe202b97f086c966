//! Event subscriptions.
//!
//! Each subscriber has its own bounded FIFO, fed by the connection's single driver task in
//! the order events came off the wire. A subscriber that falls behind loses the newest events
//! rather than slowing anyone down, and finds a [`EventItem::Lagged`] marker where they were
//! lost. Events nobody subscribed to are dropped at once and cost no memory; an event that
//! several subscribers want is shared between them, not copied.
//!
//! Filters run in the driver task, so they must be cheap. They run with no lock held, so a
//! filter may subscribe or drop streams itself, and a filter that panics only loses that
//! event for its own subscriber: the panic is caught, logged and counted in
//! [`Stats::filter_panics`](super::Stats), and the connection carries on.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use qmpkit_proto::Event;
use tokio::sync::Notify;

use crate::error::Disconnect;
use crate::types::QmpEvent;

/// The default number of events a subscriber may fall behind before it lags.
pub const DEFAULT_EVENT_BUFFER: usize = 256;

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum EventItem {
    /// An event, shared with the other subscribers that receive it.
    Event(Arc<Event>),
    /// The subscriber fell behind and this many events were dropped here.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// A test an event must pass, shared by the clones of a filter.
type Predicate = Arc<dyn Fn(&Event) -> bool + Send + Sync>;

/// A test on the typed event.
type TypedPredicate = Arc<dyn Fn(&QmpEvent) -> bool + Send + Sync>;

/// Which events a subscriber wants.
#[derive(Clone, Default)]
pub struct EventFilter {
    names: Option<HashSet<String>>,
    predicate: Option<Predicate>,
    typed: Option<TypedPredicate>,
}

impl EventFilter {
    /// Every event.
    #[must_use]
    pub fn all() -> Self {
        EventFilter::default()
    }

    /// Events with one of these names.
    #[must_use]
    pub fn names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EventFilter { names: Some(names.into_iter().map(Into::into).collect()), ..EventFilter::default() }
    }

    /// Events whose typed form passes `test`, such as
    /// `|e| matches!(e, QmpEvent::Stop | QmpEvent::Resume)` or a match on a variant's data.
    /// Each event is typed once for all such filters, and only when one exists; combine with
    /// [`EventFilter::names`] to type only the events of those names.
    #[must_use]
    pub fn typed(test: impl Fn(&QmpEvent) -> bool + Send + Sync + 'static) -> Self {
        EventFilter::all().with_typed(test)
    }

    /// Also requires the typed form of the event to pass `test` (see [`EventFilter::typed`]).
    #[must_use]
    pub fn with_typed(mut self, test: impl Fn(&QmpEvent) -> bool + Send + Sync + 'static) -> Self {
        self.typed = Some(Arc::new(test));
        self
    }

    /// Also requires the predicate to accept the event.
    #[must_use]
    pub fn with_predicate(mut self, predicate: impl Fn(&Event) -> bool + Send + Sync + 'static) -> Self {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// Whether the filter accepts the event.
    #[must_use]
    pub fn matches(&self, event: &Event) -> bool {
        self.matches_name(event)
            && self.predicate.as_ref().is_none_or(|p| p(event))
            && self.typed.as_ref().is_none_or(|t| t(&QmpEvent::from_event(event.clone())))
    }

    fn matches_name(&self, event: &Event) -> bool {
        self.names.as_ref().is_none_or(|n| n.contains(&event.name))
    }

    /// Runs the predicates, typing the event at most once for all subscribers. Runs user code.
    fn matches_rest(&self, event: &Event, typed: &mut Option<QmpEvent>) -> bool {
        self.predicate.as_ref().is_none_or(|p| p(event))
            && self.typed.as_ref().is_none_or(|t| t(typed.get_or_insert_with(|| QmpEvent::from_event(event.clone()))))
    }

    fn has_predicates(&self) -> bool {
        self.predicate.is_some() || self.typed.is_some()
    }
}

impl fmt::Debug for EventFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventFilter")
            .field("names", &self.names)
            .field("predicate", &self.predicate.as_ref().map(|_| "..."))
            .field("typed", &self.typed.as_ref().map(|_| "..."))
            .finish()
    }
}

impl<S: Into<String>> From<S> for EventFilter {
    fn from(name: S) -> Self {
        EventFilter::names([name])
    }
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<EventItem>,
    ended: Option<Disconnect>,
}

/// One subscriber's FIFO, shared by the driver (which pushes) and the stream (which pops).
#[derive(Debug)]
pub(crate) struct Subscriber {
    filter: EventFilter,
    capacity: usize,
    queue: Mutex<Queue>,
    notify: Notify,
    /// Whether a connection has taken this subscriber (one made on a builder is taken by the
    /// first connection the builder starts).
    attached: AtomicBool,
    /// The connection's subscribers, once attached, so that dropping the stream unsubscribes.
    owner: Mutex<Weak<Subscribers>>,
}

impl Subscriber {
    fn new(filter: EventFilter, capacity: usize) -> Arc<Self> {
        Arc::new(Subscriber {
            filter,
            capacity: capacity.max(1),
            queue: Mutex::default(),
            notify: Notify::new(),
            attached: AtomicBool::new(false),
            owner: Mutex::new(Weak::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue inconsistent (every update is
        // a single push or pop), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues an event; counts it as missed when the queue is full.
    fn push(&self, event: &Arc<Event>) -> Pushed {
        let mut queue = self.lock();
        let pushed = if queue.items.len() < self.capacity {
            queue.items.push_back(EventItem::Event(event.clone()));
            Pushed::Queued
        } else if let Some(EventItem::Lagged { missed }) = queue.items.back_mut() {
            *missed += 1;
            Pushed::StillLagging
        } else {
            // One marker beyond the capacity says where events went missing.
            queue.items.push_back(EventItem::Lagged { missed: 1 });
            Pushed::StartedLagging
        };
        drop(queue);
        self.notify.notify_one();
        pushed
    }

    fn end(&self, reason: Disconnect) {
        self.lock().ended.get_or_insert(reason);
        self.notify.notify_one();
    }
}

/// What happened to an event offered to a subscriber.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pushed {
    Queued,
    /// The queue was full: the first event lost since the subscriber last caught up.
    StartedLagging,
    StillLagging,
}

/// The subscriber list and whether the connection ended, under one lock, so that a
/// subscription racing with the end of the connection is either ended by it or ended at once.
#[derive(Debug, Default)]
struct State {
    /// Copied on write: publishing takes a snapshot (one reference count) and runs the
    /// filters with no lock held.
    list: Arc<Vec<Arc<Subscriber>>>,
    ended: Option<Disconnect>,
}

/// The subscribers of one connection.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    state: Mutex<State>,
    /// Events dropped because a subscriber's queue was full.
    pub(crate) lagged: AtomicU64,
    /// Filters that panicked.
    pub(crate) filter_panics: AtomicU64,
}

impl Subscribers {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every update under this lock is a single assignment or push, and no user code runs
        // under it, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a subscriber. It sees every event the driver reads from now on, so a subscription
    /// made before a command is sent sees the events that command causes.
    pub(crate) fn subscribe(self: &Arc<Self>, filter: EventFilter, capacity: usize) -> EventStream {
        let subscriber = Subscriber::new(filter, capacity);
        self.attach(&subscriber);
        EventStream { subscriber, next: None }
    }

    /// Adds a subscriber made elsewhere (on a builder); one already taken by another
    /// connection is left alone.
    pub(crate) fn attach(self: &Arc<Self>, subscriber: &Arc<Subscriber>) {
        if subscriber.attached.swap(true, Ordering::AcqRel) {
            return;
        }
        *subscriber.owner.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::downgrade(self);
        let mut state = self.state();
        match &state.ended {
            Some(reason) => {
                let reason = reason.clone();
                drop(state);
                subscriber.end(reason);
            }
            None => Arc::make_mut(&mut state.list).push(subscriber.clone()),
        }
    }

    /// Hands an event to every subscriber that wants it.
    pub(crate) fn publish(&self, event: Event) {
        let list = self.state().list.clone();
        if list.is_empty() {
            return;
        }
        let event = Arc::new(event);
        let mut typed = None;
        for subscriber in list.iter() {
            let filter = &subscriber.filter;
            if !filter.matches_name(&event) {
                continue;
            }
            if filter.has_predicates() {
                // User code: no lock is held here, and a panic stays with its subscriber.
                match catch_unwind(AssertUnwindSafe(|| filter.matches_rest(&event, &mut typed))) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => {
                        self.filter_panics.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(event = %event.name, "an event filter panicked; the event was not delivered to it");
                        continue;
                    }
                }
            }
            match subscriber.push(&event) {
                Pushed::Queued => {}
                Pushed::StartedLagging => {
                    self.lagged.fetch_add(1, Ordering::Relaxed);
                    // Once per run of losses, not once per lost event.
                    tracing::warn!(event = %event.name, capacity = subscriber.capacity, "an event subscriber fell behind; dropping its events until it catches up");
                }
                Pushed::StillLagging => {
                    self.lagged.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Ends every stream: after the queued events, they yield `None`.
    pub(crate) fn end(&self, reason: &Disconnect) {
        let list = {
            let mut state = self.state();
            state.ended.get_or_insert_with(|| reason.clone());
            std::mem::take(&mut state.list)
        };
        for subscriber in list.iter() {
            subscriber.end(reason.clone());
        }
    }

    fn remove(&self, subscriber: &Arc<Subscriber>) {
        let mut state = self.state();
        if state.list.iter().any(|s| Arc::ptr_eq(s, subscriber)) {
            Arc::make_mut(&mut state.list).retain(|s| !Arc::ptr_eq(s, subscriber));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().list.len()
    }
}

/// A subscription made before the connection exists (see
/// [`ClientBuilder::subscribe`](super::ClientBuilder::subscribe)).
#[derive(Debug, Clone)]
pub(crate) struct Early(pub(crate) Arc<Subscriber>);

impl Early {
    pub(crate) fn new(filter: EventFilter, capacity: usize) -> (Self, EventStream) {
        let subscriber = Subscriber::new(filter, capacity);
        (Early(subscriber.clone()), EventStream { subscriber, next: None })
    }
}

/// A stream of events for one subscriber. It ends (yields `None`) when the connection ends,
/// after the events already queued; [`EventStream::end_reason`] then says why.
pub struct EventStream {
    subscriber: Arc<Subscriber>,
    next: Option<NextFuture>,
}

type NextFuture = Pin<Box<dyn std::future::Future<Output = Option<EventItem>> + Send>>;

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").field("filter", &self.subscriber.filter).finish_non_exhaustive()
    }
}

impl EventStream {
    /// The next item, or `None` once the connection has ended and the queue is empty.
    pub async fn next(&mut self) -> Option<EventItem> {
        next_item(self.subscriber.clone()).await
    }

    /// The next event, skipping lag markers. The event is copied only when another
    /// subscriber still holds it.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            match self.next().await? {
                EventItem::Event(event) => return Some(Arc::unwrap_or_clone(event)),
                EventItem::Lagged { .. } => {}
            }
        }
    }

    /// The next event, typed, skipping lag markers.
    pub async fn next_typed(&mut self) -> Option<QmpEvent> {
        self.next_event().await.map(QmpEvent::from_event)
    }

    /// An item if one is queued now, without waiting.
    #[must_use]
    pub fn try_next(&mut self) -> Option<EventItem> {
        self.subscriber.lock().items.pop_front()
    }

    /// Why the stream ended, once it has.
    #[must_use]
    pub fn end_reason(&self) -> Option<Disconnect> {
        self.subscriber.lock().ended.clone()
    }

    /// Polls for the next item, as [`futures_core::Stream`] does.
    pub fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<EventItem>> {
        let future = self.next.get_or_insert_with(|| Box::pin(next_item(self.subscriber.clone())));
        let item = std::task::ready!(future.as_mut().poll(cx));
        self.next = None;
        Poll::Ready(item)
    }
}

async fn next_item(subscriber: Arc<Subscriber>) -> Option<EventItem> {
    loop {
        // Registering interest before looking at the queue means a push between the look and
        // the wait still wakes us (Notify keeps one permit).
        let notified = subscriber.notify.notified();
        {
            let mut queue = subscriber.lock();
            if let Some(item) = queue.items.pop_front() {
                return Some(item);
            }
            if queue.ended.is_some() {
                return None;
            }
        }
        notified.await;
    }
}

impl futures_core::Stream for EventStream {
    type Item = EventItem;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<EventItem>> {
        self.get_mut().poll_next_item(cx)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        // A subscription made on a builder and dropped before any connection took it is
        // never taken now.
        self.subscriber.attached.store(true, Ordering::Release);
        let owner = self.subscriber.owner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).upgrade();
        if let Some(owner) = owner {
            owner.remove(&self.subscriber);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qmpkit_proto::Timestamp;

    fn event(name: &str) -> Event {
        Event { name: name.into(), data: None, timestamp: Timestamp::UNKNOWN }
    }

    fn item(name: &str) -> EventItem {
        EventItem::Event(Arc::new(event(name)))
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_without_losing_order_and_others_are_unaffected() {
        let subs = Arc::new(Subscribers::default());
        let mut slow = subs.subscribe(EventFilter::all(), 2);
        let mut fast = subs.subscribe(EventFilter::names(["B", "C", "D"]), 16);
        for name in ["A", "B", "C", "D"] {
            subs.publish(event(name));
        }
        subs.end(&Disconnect::Closed);
        let mut got = Vec::new();
        while let Some(item) = slow.next().await {
            got.push(item);
        }
        assert_eq!(got, [item("A"), item("B"), EventItem::Lagged { missed: 2 }]);
        assert_eq!(subs.lagged.load(Ordering::Relaxed), 2);
        assert!(matches!(slow.end_reason(), Some(Disconnect::Closed)));
        let mut names = Vec::new();
        while let Some(e) = fast.next_event().await {
            names.push(e.name);
        }
        assert_eq!(names, ["B", "C", "D"]);
    }

    #[tokio::test]
    async fn dropped_streams_unsubscribe_and_late_subscribers_end_at_once() {
        let subs = Arc::new(Subscribers::default());
        let stream = subs.subscribe(EventFilter::all().with_predicate(|e| e.name.starts_with('S')), 4);
        assert_eq!(subs.len(), 1);
        drop(stream);
        assert_eq!(subs.len(), 0);
        subs.end(&Disconnect::Closed);
        let mut late = subs.subscribe(EventFilter::all(), 4);
        assert_eq!(late.next().await, None);
    }

    #[test]
    fn a_subscription_racing_the_end_of_the_connection_always_ends() {
        // Subscribing used to check "ended" and join the list under two locks, and an end
        // between the two left a stream that never ended. Now both take one lock: hold it,
        // let a subscription and the end queue up behind it on two threads, and whichever
        // goes first, the stream ends.
        for _ in 0..200 {
            let subs = Arc::new(Subscribers::default());
            let stream = std::thread::scope(|scope| {
                let held = subs.state();
                let subscriber = scope.spawn(|| subs.subscribe(EventFilter::all(), 1));
                let ender = scope.spawn(|| subs.end(&Disconnect::Closed));
                drop(held);
                ender.join().unwrap();
                subscriber.join().unwrap()
            });
            assert!(stream.end_reason().is_some(), "a subscription outlived the end of its connection");
            assert_eq!(subs.len(), 0);
        }
    }

    #[test]
    fn builder_subscriptions_join_one_connection_unless_dropped_first() {
        let (early, stream) = Early::new(EventFilter::all(), 4);
        let (first, second) = (Arc::new(Subscribers::default()), Arc::new(Subscribers::default()));
        first.attach(&early.0);
        second.attach(&early.0);
        assert_eq!((first.len(), second.len()), (1, 0));
        drop(stream);
        assert_eq!(first.len(), 0);
        let (dropped, stream) = Early::new(EventFilter::all(), 4);
        drop(stream);
        first.attach(&dropped.0);
        assert_eq!(first.len(), 0);
    }

    #[test]
    fn filters_may_subscribe_and_may_panic_without_harm() {
        let subs = Arc::new(Subscribers::default());
        let inner = subs.clone();
        let made = Arc::new(Mutex::new(Vec::new()));
        let keep = made.clone();
        let _reentrant = subs.subscribe(
            EventFilter::all().with_predicate(move |_| {
                keep.lock().unwrap().push(inner.subscribe(EventFilter::all(), 4));
                true
            }),
            4,
        );
        let _panicky = subs.subscribe(EventFilter::all().with_predicate(|_| panic!("a bad filter")), 4);
        let mut plain = subs.subscribe(EventFilter::typed(|e| matches!(e, QmpEvent::Stop)), 4);
        // On a thread of its own, so that a deadlock fails the test instead of hanging it.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let publisher = subs.clone();
        std::thread::spawn(move || {
            publisher.publish(event("STOP"));
            publisher.publish(event("RESUME"));
            done_tx.send(()).unwrap();
        });
        if done_rx.recv_timeout(std::time::Duration::from_secs(30)).is_err() {
            // Dropping these would wait for the lock the stuck thread holds.
            std::mem::forget((_reentrant, _panicky, plain, made, subs));
            panic!("publishing deadlocked");
        }
        assert_eq!(made.lock().unwrap().len(), 2);
        assert_eq!(subs.filter_panics.load(Ordering::Relaxed), 2);
        assert_eq!(plain.try_next(), Some(item("STOP")));
        assert_eq!(plain.try_next(), None);
        // The subscription made by the filter during STOP saw RESUME.
        assert_eq!(made.lock().unwrap()[0].try_next(), Some(item("RESUME")));
    }
}
