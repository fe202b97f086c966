//! The table of calls awaiting a reply.
//!
//! [`Pending`] is generic over what the caller stores for each call (a channel sender, a
//! callback, a timestamp) and holds no channels itself, so the sans-IO client session and its
//! tests use it without any runtime.

use std::collections::{HashMap, VecDeque};

use crate::id::Id;

/// Calls sent and not yet answered, keyed by [`Id`].
///
/// Commands sent without an id can only be answered in order, so they wait in a FIFO of their
/// own; the server answers them in the order it received them when out-of-band execution is off.
#[derive(Debug)]
pub struct Pending<T> {
    by_id: HashMap<Id, T>,
    anonymous: VecDeque<T>,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Pending { by_id: HashMap::new(), anonymous: VecDeque::new() }
    }
}

impl<T> Pending<T> {
    /// An empty table.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a call with an id.
    ///
    /// # Errors
    /// Returns the caller's value back when a call with an equal id is already pending, since
    /// its reply could not be told apart.
    pub fn insert(&mut self, id: Id, value: T) -> Result<(), T> {
        if self.by_id.contains_key(&id) {
            return Err(value);
        }
        self.by_id.insert(id, value);
        Ok(())
    }

    /// Registers a call sent without an id; it is answered by the next id-less response.
    pub fn push_anonymous(&mut self, value: T) {
        self.anonymous.push_back(value);
    }

    /// Whether a call with this id is pending.
    #[must_use]
    pub fn contains(&self, id: &Id) -> bool {
        self.by_id.contains_key(id)
    }

    /// Removes and returns the call with this id, when there is one.
    pub fn complete(&mut self, id: &Id) -> Option<T> {
        self.by_id.remove(id)
    }

    /// Removes and returns the oldest call sent without an id.
    pub fn complete_anonymous(&mut self) -> Option<T> {
        self.anonymous.pop_front()
    }

    /// The call with this id, to update what the caller stored.
    pub fn get_mut(&mut self, id: &Id) -> Option<&mut T> {
        self.by_id.get_mut(id)
    }

    /// The oldest call sent without an id, left in place.
    #[must_use]
    pub fn peek_anonymous(&self) -> Option<&T> {
        self.anonymous.front()
    }

    /// Every call with an id, in no particular order. Finding a call by what the caller
    /// stored walks the whole table, so it is for rare paths (cancellation, failures).
    pub fn iter(&self) -> impl Iterator<Item = (&Id, &T)> {
        self.by_id.iter()
    }

    /// Whether any call sent without an id is pending.
    #[must_use]
    pub fn has_anonymous(&self) -> bool {
        !self.anonymous.is_empty()
    }

    /// Removes the calls for which `keep` returns false, for example those whose caller has
    /// gone away, and returns how many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> usize {
        let before = self.len();
        self.by_id.retain(|_, v| keep(v));
        self.anonymous.retain(|v| keep(v));
        before - self.len()
    }

    /// The number of pending calls.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_id.len() + self.anonymous.len()
    }

    /// Whether no call is pending.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns every pending call, for failing them all when the connection ends.
    pub fn drain(&mut self) -> Vec<T> {
        let mut all: Vec<T> = self.by_id.drain().map(|(_, v)| v).collect();
        all.extend(self.anonymous.drain(..));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_by_id_and_in_order_for_anonymous() {
        let mut p = Pending::new();
        p.insert(Id::from(1), "one").unwrap();
        assert_eq!(p.insert(Id::from(1), "dup"), Err("dup"));
        p.insert(Id::from("1"), "string one").unwrap();
        p.push_anonymous("a");
        p.push_anonymous("b");
        assert_eq!(p.len(), 4);
        assert_eq!(p.complete(&Id::from("1")), Some("string one"));
        assert_eq!(p.complete(&Id::from("1")), None);
        assert_eq!(p.complete_anonymous(), Some("a"));
        assert_eq!(p.retain(|v| *v != "b"), 1);
        assert!(!p.has_anonymous());
        assert_eq!(p.drain(), vec!["one"]);
        assert!(p.is_empty());
    }
}
