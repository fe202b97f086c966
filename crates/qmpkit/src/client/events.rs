//! Event subscriptions.
//!
//! Each subscriber has its own bounded FIFO, fed by the connection's single driver task in
//! the order events came off the wire. A subscriber that falls behind loses the newest events
//! rather than slowing anyone down, and finds a [`EventItem::Lagged`] marker where they were
//! lost. Events nobody subscribed to are dropped at once and cost no memory.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use qmpkit_proto::Event;
use tokio::sync::Notify;

use crate::error::Disconnect;

/// The default number of events a subscriber may fall behind before it lags.
pub const DEFAULT_EVENT_BUFFER: usize = 256;

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum EventItem {
    /// An event.
    Event(Event),
    /// The subscriber fell behind and this many events were dropped here.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// A test an event must pass, shared by the clones of a filter.
type Predicate = Arc<dyn Fn(&Event) -> bool + Send + Sync>;

/// Which events a subscriber wants.
#[derive(Clone, Default)]
pub struct EventFilter {
    names: Option<HashSet<String>>,
    predicate: Option<Predicate>,
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
        EventFilter { names: Some(names.into_iter().map(Into::into).collect()), predicate: None }
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
        self.names.as_ref().is_none_or(|n| n.contains(&event.name)) && self.predicate.as_ref().is_none_or(|p| p(event))
    }
}

impl fmt::Debug for EventFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventFilter")
            .field("names", &self.names)
            .field("predicate", &self.predicate.as_ref().map(|_| "..."))
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
}

impl Subscriber {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue inconsistent (every update is
        // a single push or pop), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues an event if the filter wants it; counts it as missed when the queue is full.
    fn offer(&self, event: &Event) {
        if !self.filter.matches(event) {
            return;
        }
        let mut queue = self.lock();
        if queue.items.len() < self.capacity {
            queue.items.push_back(EventItem::Event(event.clone()));
        } else if let Some(EventItem::Lagged { missed }) = queue.items.back_mut() {
            *missed += 1;
        } else {
            // One marker beyond the capacity says where events went missing.
            queue.items.push_back(EventItem::Lagged { missed: 1 });
        }
        drop(queue);
        self.notify.notify_one();
    }

    fn end(&self, reason: Disconnect) {
        self.lock().ended.get_or_insert(reason);
        self.notify.notify_one();
    }
}

/// The subscribers of one connection.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    list: Mutex<Vec<Arc<Subscriber>>>,
    ended: Mutex<Option<Disconnect>>,
}

impl Subscribers {
    fn list(&self) -> MutexGuard<'_, Vec<Arc<Subscriber>>> {
        self.list.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a subscriber. It sees every event the driver reads from now on, so a subscription
    /// made before a command is sent sees the events that command causes.
    pub(crate) fn subscribe(self: &Arc<Self>, filter: EventFilter, capacity: usize) -> EventStream {
        let subscriber =
            Arc::new(Subscriber { filter, capacity: capacity.max(1), queue: Mutex::default(), notify: Notify::new() });
        let ended = self.ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match ended {
            Some(reason) => subscriber.end(reason),
            None => self.list().push(subscriber.clone()),
        }
        EventStream { subscriber, owner: Arc::downgrade(self), next: None }
    }

    /// Hands an event to every subscriber that wants it.
    pub(crate) fn publish(&self, event: &Event) {
        for subscriber in self.list().iter() {
            subscriber.offer(event);
        }
    }

    /// Ends every stream: after the queued events, they yield `None`.
    pub(crate) fn end(&self, reason: &Disconnect) {
        self.ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert_with(|| reason.clone());
        for subscriber in self.list().drain(..) {
            subscriber.end(reason.clone());
        }
    }

    fn remove(&self, subscriber: &Arc<Subscriber>) {
        self.list().retain(|s| !Arc::ptr_eq(s, subscriber));
    }
}

type NextFuture = Pin<Box<dyn std::future::Future<Output = Option<EventItem>> + Send>>;

/// A stream of events for one subscriber. It ends (yields `None`) when the connection ends,
/// after the events already queued; [`EventStream::end_reason`] then says why.
pub struct EventStream {
    subscriber: Arc<Subscriber>,
    owner: Weak<Subscribers>,
    next: Option<NextFuture>,
}

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

    /// The next event, skipping lag markers.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            match self.next().await? {
                EventItem::Event(event) => return Some(event),
                EventItem::Lagged { .. } => {}
            }
        }
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
        if let Some(owner) = self.owner.upgrade() {
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

    #[tokio::test]
    async fn a_slow_subscriber_lags_without_losing_order_and_others_are_unaffected() {
        let subs = Arc::new(Subscribers::default());
        let mut slow = subs.subscribe(EventFilter::all(), 2);
        let mut fast = subs.subscribe(EventFilter::names(["B", "C", "D"]), 16);
        for name in ["A", "B", "C", "D"] {
            subs.publish(&event(name));
        }
        subs.end(&Disconnect::Eof);
        let mut got = Vec::new();
        while let Some(item) = slow.next().await {
            got.push(item);
        }
        assert_eq!(got, [EventItem::Event(event("A")), EventItem::Event(event("B")), EventItem::Lagged { missed: 2 }]);
        assert!(matches!(slow.end_reason(), Some(Disconnect::Eof)));
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
        assert_eq!(subs.list().len(), 1);
        drop(stream);
        assert!(subs.list().is_empty());
        subs.end(&Disconnect::Closed);
        let mut late = subs.subscribe(EventFilter::all(), 4);
        assert_eq!(late.next().await, None);
    }
}
