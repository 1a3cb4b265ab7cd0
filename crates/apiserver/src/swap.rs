//! A value read on every request and replaced whole now and then (configuration the server
//! follows: webhooks, admission policies, the RBAC policy, aggregated APIs): readers take the
//! current one as an `Arc`, a writer swaps in a new one.

use std::sync::{Arc, RwLock};

/// The current value of something replaced whole.
pub struct Swap<T>(RwLock<Arc<T>>);

impl<T: Default> Default for Swap<T> {
    fn default() -> Self {
        Swap(RwLock::new(Arc::new(T::default())))
    }
}

impl<T> Swap<T> {
    /// The current value.
    pub fn get(&self) -> Arc<T> {
        match self.0.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the value.
    pub fn set(&self, value: T) {
        let value = Arc::new(value);
        match self.0.write() {
            Ok(mut v) => *v = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }
}
