//! Locking the service's in-memory maps.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, also after a panic elsewhere poisoned it: the maps this guards are only ever
/// changed by whole values (an insert, a remove), so a panic cannot leave one half-written, and
/// refusing every later request over it would turn one bug into an outage.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
