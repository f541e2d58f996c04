//! A mutex that counts its changes, so the plugin list can be answered from a snapshot.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

/// The manager's change counter: every mutable access to a slot's state, and every change to
/// the set of slots, adds one. Equal readings mean the plugin list has not changed between
/// them, which is what lets the server answer `GET /system/plugins` from bytes it already has.
pub(super) type ChangeCounter = Arc<AtomicU64>;

/// A [`parking_lot::Mutex`] whose guard adds one to a [`ChangeCounter`] when it is dropped
/// after having been used mutably. Counting in the guard, rather than at each place that
/// changes a slot, means no future change can forget to.
pub(super) struct WatchedMutex<T> {
    inner: Mutex<T>,
    changes: ChangeCounter,
}

impl<T> WatchedMutex<T> {
    pub(super) fn new(value: T, changes: ChangeCounter) -> Self {
        WatchedMutex {
            inner: Mutex::new(value),
            changes,
        }
    }

    pub(super) fn lock(&self) -> WatchedGuard<'_, T> {
        WatchedGuard {
            guard: self.inner.lock(),
            changes: &self.changes,
            changed: false,
        }
    }
}

/// The guard of a [`WatchedMutex`].
pub(super) struct WatchedGuard<'a, T> {
    guard: MutexGuard<'a, T>,
    changes: &'a AtomicU64,
    changed: bool,
}

impl<T> Deref for WatchedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for WatchedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.changed = true;
        &mut self.guard
    }
}

impl<T> Drop for WatchedGuard<'_, T> {
    fn drop(&mut self) {
        // Counted while the lock is still held (fields drop after this): a reader that sees
        // the new count and then takes the lock sees the new state.
        if self.changed {
            self.changes.fetch_add(1, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mutable_access_counts() {
        let changes = ChangeCounter::default();
        let cell = WatchedMutex::new(1, changes.clone());
        {
            let guard = cell.lock();
            assert_eq!(*guard, 1);
        }
        assert_eq!(changes.load(Ordering::Acquire), 0);
        *cell.lock() += 1;
        assert_eq!(changes.load(Ordering::Acquire), 1);
        {
            let mut guard = cell.lock();
            *guard += 1;
            *guard += 1;
        }
        assert_eq!(changes.load(Ordering::Acquire), 2, "one guard, one change");
        assert_eq!(*cell.lock(), 4);
    }
}
