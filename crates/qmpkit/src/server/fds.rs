//! File descriptors clients pass with `SCM_RIGHTS`: the per-connection slot and named fds
//! (`getfd`/`closefd`), and the fd sets shared by every connection (`add-fd`/`remove-fd`/
//! `query-fdsets`), with QEMU's semantics and texts (`monitor/fds.c`).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

/// Locks a mutex, carrying on with the data when another thread panicked while holding it:
/// every structure guarded here stays consistent between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one connection holds: QEMU's single slot for the last fd received (kept until a
/// command takes it, replaced when a later message brings another) and the named fds.
///
/// The connection may hold at most `max_held` fds: its named fds plus the fds it added to
/// the fd sets that are still there (QEMU has no bound; without one a client could take
/// every descriptor the process may open).
#[derive(Debug)]
pub(crate) struct ConnectionFds {
    slot: Mutex<Option<OwnedFd>>,
    named: Mutex<HashMap<String, OwnedFd>>,
    max_held: usize,
}

impl Default for ConnectionFds {
    fn default() -> Self {
        ConnectionFds::new(usize::MAX)
    }
}

impl ConnectionFds {
    pub(crate) fn new(max_held: usize) -> Self {
        ConnectionFds { slot: Mutex::default(), named: Mutex::default(), max_held }
    }

    /// Checks that the connection may hold one more fd, given the `in_sets` fds it added to
    /// the fd sets.
    fn room(&self, named: usize, in_sets: usize) -> Result<(), String> {
        if named + in_sets >= self.max_held {
            return Err(format!(
                "Too many file descriptors held by this connection (at most {}); \
                 release one with 'closefd' or 'remove-fd' first",
                self.max_held
            ));
        }
        Ok(())
    }

    /// Stores the fds that came with one read. As QEMU's socket chardev does, the first
    /// replaces whatever the slot held and the others are closed at once.
    pub(crate) fn received(&self, fds: &mut Vec<OwnedFd>) {
        if fds.is_empty() {
            return;
        }
        let first = fds.remove(0);
        fds.clear();
        tracing::debug!(fd = first.as_raw_fd(), "file descriptor received");
        *lock(&self.slot) = Some(first);
    }

    /// Takes the fd in the slot, if any.
    pub(crate) fn take(&self) -> Option<OwnedFd> {
        lock(&self.slot).take()
    }

    /// Stores a named fd, closing any fd that had the name before; `in_sets` is how many fds
    /// the connection added to the fd sets.
    ///
    /// # Errors
    /// The error text when a new name would exceed the connection's bound; `fd` is closed.
    pub(crate) fn insert_named(&self, name: String, fd: OwnedFd, in_sets: usize) -> Result<(), String> {
        let mut named = lock(&self.named);
        if !named.contains_key(&name) {
            self.room(named.len(), in_sets)?;
        }
        named.insert(name, fd);
        Ok(())
    }

    /// Removes a named fd and hands it over.
    pub(crate) fn take_named(&self, name: &str) -> Option<OwnedFd> {
        lock(&self.named).remove(name)
    }

    /// Duplicates a named fd, leaving it in place.
    pub(crate) fn dup_named(&self, name: &str) -> Option<std::io::Result<OwnedFd>> {
        lock(&self.named).get(name).map(OwnedFd::try_clone)
    }
}

/// One fd in a set.
#[derive(Debug)]
struct SetFd {
    fd: OwnedFd,
    opaque: Option<String>,
    /// The connection that added it (0 when added through [`FdSets::add`]).
    owner: u64,
}

/// The fd sets shared by all connections of a server, as QEMU's `mon_fdsets`.
///
/// QEMU closes a removed fd only once no one uses a dup of it; this library hands out
/// duplicates ([`FdSets::dup`]), so `remove-fd` closes the set's own fd at once and
/// duplicates stay valid.
///
/// The sets hold at most [`Limits::max_fdset_fds`](super::Limits::max_fdset_fds) fds in all
/// (QEMU has no bound); `add-fd` beyond it fails and closes the fd it was given.
#[derive(Debug, Clone)]
pub struct FdSets {
    sets: Arc<Mutex<BTreeMap<i64, Vec<SetFd>>>>,
    max_fds: usize,
}

impl Default for FdSets {
    fn default() -> Self {
        FdSets::with_limit(super::Limits::default().max_fdset_fds)
    }
}

impl FdSets {
    /// Empty fd sets that hold at most `max_fds` fds in all.
    #[must_use]
    pub fn with_limit(max_fds: usize) -> Self {
        FdSets { sets: Arc::default(), max_fds }
    }

    /// Adds `fd` to set `set` (the lowest free id when `None`) and returns the set id and the
    /// fd's number, as `add-fd` does.
    ///
    /// # Errors
    /// QEMU's text when `set` is negative, and a text of our own when the sets are full; the
    /// fd is closed then.
    pub fn add(&self, set: Option<i64>, fd: OwnedFd, opaque: Option<String>) -> Result<(i64, i32), String> {
        self.add_owned(set, fd, opaque, 0, None)
    }

    /// As [`FdSets::add`] for `add-fd` on connection `owner`, also within that connection's
    /// bound on the fds it holds.
    pub(crate) fn add_owned(
        &self,
        set: Option<i64>,
        fd: OwnedFd,
        opaque: Option<String>,
        owner: u64,
        conn: Option<&ConnectionFds>,
    ) -> Result<(i64, i32), String> {
        let mut sets = lock(&self.sets);
        let id = match set {
            Some(id) if id < 0 => return Err("Parameter 'fdset-id' expects a non-negative value".into()),
            Some(id) => id,
            None => (0..).find(|id| !sets.contains_key(id)).unwrap_or(0),
        };
        if sets.values().map(Vec::len).sum::<usize>() >= self.max_fds {
            return Err(format!(
                "Too many file descriptors in fd sets (at most {}); remove one with 'remove-fd' first",
                self.max_fds
            ));
        }
        if let Some(conn) = conn {
            conn.room(lock(&conn.named).len(), owned(&sets, owner))?;
        }
        let raw = fd.as_raw_fd();
        sets.entry(id).or_default().push(SetFd { fd, opaque, owner });
        Ok((id, raw))
    }

    /// Removes one fd (or, with `fd` `None`, every fd) of set `set`, as `remove-fd` does.
    ///
    /// # Errors
    /// QEMU's text when there is no such set or fd.
    pub fn remove(&self, set: i64, fd: Option<i64>) -> Result<(), String> {
        let mut sets = lock(&self.sets);
        let not_found = || match fd {
            Some(fd) => format!("File descriptor named 'fdset-id:{set}, fd:{fd}' not found"),
            None => format!("File descriptor named 'fdset-id:{set}' not found"),
        };
        let Some(fds) = sets.get_mut(&set) else {
            return Err(not_found());
        };
        match fd {
            Some(fd) => {
                let before = fds.len();
                fds.retain(|f| i64::from(f.fd.as_raw_fd()) != fd);
                if fds.len() == before {
                    return Err(not_found());
                }
            }
            None => fds.clear(),
        }
        if fds.is_empty() {
            sets.remove(&set);
        }
        Ok(())
    }

    /// How many fds connection `owner` added that are still in a set.
    pub(crate) fn owned_by(&self, owner: u64) -> usize {
        owned(&lock(&self.sets), owner)
    }

    /// A duplicate of fd `fd` of set `set`, for a command that opens `/dev/fdset/N`.
    #[must_use]
    pub fn dup(&self, set: i64, fd: i32) -> Option<std::io::Result<OwnedFd>> {
        let sets = lock(&self.sets);
        sets.get(&set)?.iter().find(|f| f.fd.as_raw_fd() == fd).map(|f| f.fd.try_clone())
    }

    /// The `query-fdsets` reply: `[{"fdset-id": N, "fds": [{"fd": N, "opaque"?: S}]}]`, in
    /// QEMU's order: the sets by descending id (QEMU keeps them sorted and prepends each to
    /// its reply), each set's fds in the order they were added.
    #[must_use]
    pub fn query(&self) -> Value {
        let sets = lock(&self.sets);
        let list: Vec<Value> = sets
            .iter()
            .rev()
            .map(|(id, fds)| {
                let fds: Vec<Value> = fds
                    .iter()
                    .map(|f| match &f.opaque {
                        Some(opaque) => json!({"fd": f.fd.as_raw_fd(), "opaque": opaque}),
                        None => json!({"fd": f.fd.as_raw_fd()}),
                    })
                    .collect();
                json!({"fds": fds, "fdset-id": id})
            })
            .collect();
        Value::Array(list)
    }
}

fn owned(sets: &BTreeMap<i64, Vec<SetFd>>, owner: u64) -> usize {
    sets.values().flatten().filter(|f| f.owner == owner).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_lists_sets_by_descending_id_and_fds_as_added() {
        let sets = FdSets::default();
        let fd = || OwnedFd::from(std::io::pipe().expect("a pipe").1);
        let (first, a) = sets.add(None, fd(), Some("a".into())).unwrap();
        let (second, b) = sets.add(None, fd(), None).unwrap();
        let (_, c) = sets.add(Some(first), fd(), None).unwrap();
        assert_eq!((first, second), (0, 1));
        assert_eq!(
            sets.query(),
            json!([
                {"fds": [{"fd": b}], "fdset-id": 1},
                {"fds": [{"fd": a, "opaque": "a"}, {"fd": c}], "fdset-id": 0},
            ])
        );
    }

    #[test]
    fn bounded() {
        let fd = || OwnedFd::from(std::io::pipe().expect("a pipe").1);
        let sets = FdSets::with_limit(2);
        sets.add(None, fd(), None).unwrap();
        let (set, second) = sets.add(None, fd(), None).unwrap();
        let err = sets.add(Some(set), fd(), None).unwrap_err();
        assert_eq!(err, "Too many file descriptors in fd sets (at most 2); remove one with 'remove-fd' first");
        sets.remove(set, Some(i64::from(second))).unwrap();
        sets.add(Some(set), fd(), None).unwrap();

        // A connection's bound counts its named fds and the fds it added to sets.
        let sets = FdSets::with_limit(10);
        let conn = ConnectionFds::new(2);
        conn.insert_named("a".into(), fd(), sets.owned_by(7)).unwrap();
        // Replacing a name is not a new fd held.
        conn.insert_named("a".into(), fd(), sets.owned_by(7)).unwrap();
        let (set, added) = sets.add_owned(None, fd(), None, 7, Some(&conn)).unwrap();
        let full = "Too many file descriptors held by this connection (at most 2)";
        assert!(conn.insert_named("b".into(), fd(), sets.owned_by(7)).unwrap_err().starts_with(full));
        assert!(sets.add_owned(None, fd(), None, 7, Some(&conn)).unwrap_err().starts_with(full));
        // Another connection's fds do not count.
        sets.add_owned(None, fd(), None, 8, Some(&ConnectionFds::new(1))).unwrap();
        sets.remove(set, Some(i64::from(added))).unwrap();
        conn.insert_named("b".into(), fd(), sets.owned_by(7)).unwrap();
        drop(conn.take_named("a"));
        sets.add_owned(None, fd(), None, 7, Some(&conn)).unwrap();
    }
}
