//! A registry that may still be in the making while the server already greets clients.
//!
//! Describing and compiling a large set of commands (a simulated QEMU takes its descriptions
//! from QEMU's 200 KB schema) takes milliseconds, while a greeting needs none of it. A
//! [`LazyRegistry`] lets a server listen and greet at once: the registry is built on a
//! blocking thread when the server starts serving, and each connection holds its first
//! request until the registry is ready. Servers that share one `LazyRegistry` build it once.
//! A waiting connection reads nothing, so what a client sends meanwhile stays in its socket
//! (bounded by the kernel), and a client that leaves is noticed once the registry is ready or
//! the server shuts down.
//!
//! A connection that must wait does so on a blocking thread of its own runtime, which wakes
//! the connection before it ends: a runtime whose clock is paused (`tokio::time::pause`)
//! sees that thread busy and does not jump its clock meanwhile, even when another runtime is
//! building the registry, so that no timeout fires while the registry is being built.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::registry::Registry;

/// What builds the registry.
type Make = Box<dyn FnOnce() -> Arc<Registry> + Send>;

/// A [`Registry`] built on first need, for
/// [`ServerBuilder::lazy_registry`](super::ServerBuilder::lazy_registry).
pub struct LazyRegistry {
    registry: OnceLock<Arc<Registry>>,
    make: Mutex<Option<Make>>,
    /// Whether a background build was started, so that it is started once.
    started: AtomicBool,
}

impl std::fmt::Debug for LazyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyRegistry").field("registry", &self.registry.get()).finish_non_exhaustive()
    }
}

impl LazyRegistry {
    /// A registry that `make` builds, once, when the first server using it starts serving
    /// (or when something asks for it sooner). `make` should also compile the registry
    /// ([`Registry::check`]) so that the first command does not; it cannot fail, so a
    /// mistake in the descriptions is for `make` to report (the registry of a server's
    /// built-in commands is a fallback). A panic in `make` is caught and leaves the
    /// built-in commands only.
    pub fn new(make: impl FnOnce() -> Arc<Registry> + Send + 'static) -> Arc<Self> {
        Arc::new(LazyRegistry {
            registry: OnceLock::new(),
            make: Mutex::new(Some(Box::new(make))),
            started: AtomicBool::new(false),
        })
    }

    /// A registry that is already built.
    pub(crate) fn ready(registry: Arc<Registry>) -> Arc<Self> {
        Arc::new(LazyRegistry {
            registry: OnceLock::from(registry),
            make: Mutex::new(None),
            started: AtomicBool::new(true),
        })
    }

    /// The registry, built on this thread if nobody has started building it, or waited for
    /// if another thread is building it. Blocks: in async code, prefer letting the server
    /// build it in the background.
    pub fn get(&self) -> &Arc<Registry> {
        if let Some(registry) = self.registry.get() {
            return registry;
        }
        self.started.store(true, Ordering::Relaxed);
        self.registry.get_or_init(|| {
            let make = self.make.lock().unwrap_or_else(PoisonError::into_inner).take();
            let made = make.map(|make| std::panic::catch_unwind(AssertUnwindSafe(make)));
            match made {
                Some(Ok(registry)) => registry,
                Some(Err(_)) => {
                    tracing::error!("building the server's commands panicked; only the built-in commands remain");
                    Arc::new(Registry::new())
                }
                None => Arc::new(Registry::new()),
            }
        })
    }

    /// The registry if it is built.
    pub(crate) fn ready_now(&self) -> Option<Arc<Registry>> {
        self.registry.get().cloned()
    }

    /// Starts building on a blocking thread of the tokio runtime, unless that has begun.
    pub(crate) fn start(self: &Arc<Self>) {
        if self.registry.get().is_some() || self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        self.wait_then(|| {});
    }

    /// On a blocking thread of this runtime: builds the registry, or waits while another
    /// thread builds it, then calls `ready` (which wakes whoever waits, before the thread
    /// ends; see the module docs).
    pub(crate) fn wait_then(self: &Arc<Self>, ready: impl FnOnce() + Send + 'static) {
        let lazy = self.clone();
        tokio::task::spawn_blocking(move || {
            lazy.get();
            ready();
        });
    }
}
