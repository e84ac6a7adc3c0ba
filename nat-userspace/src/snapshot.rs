//! Lock-free publication of immutable snapshots from the control plane to the workers.
//!
//! The control plane replaces the whole value (`publish`); a worker keeps a [`Local`] copy
//! of the `Arc` and checks one atomic generation counter per packet (`current`), reloading
//! only when it moved. A packet therefore sees exactly one snapshot (never a mix of two
//! external addresses), the hot path takes no lock and does no reference counting, and a
//! change is hitless: the next packet uses the new value.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use arc_swap::ArcSwap;

pub struct Published<T> {
    value: ArcSwap<T>,
    generation: AtomicU64,
}

impl<T> Published<T> {
    pub fn new(v: T) -> Published<T> {
        Published {
            value: ArcSwap::from_pointee(v),
            generation: AtomicU64::new(1),
        }
    }

    /// Replaces the value; workers pick it up on their next packet.
    pub fn publish(&self, v: T) {
        self.value.store(Arc::new(v));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current value (control plane side; not for the per-packet path).
    pub fn load(&self) -> Arc<T> {
        self.value.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// A worker's cached view of a [`Published`] value.
pub struct Local<T> {
    generation: u64,
    value: Arc<T>,
}

impl<T> Local<T> {
    pub fn new(p: &Published<T>) -> Local<T> {
        let generation = p.generation();
        Local {
            generation,
            value: p.load(),
        }
    }

    /// The current value: one atomic load when nothing changed.
    #[inline]
    pub fn current(&mut self, p: &Published<T>) -> &T {
        let g = p.generation.load(Ordering::Acquire);
        if g != self.generation {
            // Load the value after observing the generation: a value at least as new.
            self.value = p.value.load_full();
            self.generation = g;
        }
        &self.value
    }

    /// The cached value without checking for a newer one.
    #[inline]
    pub fn cached(&self) -> &T {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_see_new_values_without_locks() {
        let p = Published::new(1u32);
        let mut l = Local::new(&p);
        assert_eq!(*l.current(&p), 1);
        p.publish(2);
        assert_eq!(*l.cached(), 1);
        assert_eq!(*l.current(&p), 2);
    }

    #[test]
    fn a_reader_never_sees_a_mix() {
        // Pairs published together are always read together.
        let p = Arc::new(Published::new((0u64, 0u64)));
        std::thread::scope(|s| {
            let w = Arc::clone(&p);
            s.spawn(move || {
                for i in 1..20_000u64 {
                    w.publish((i, i * 7));
                }
            });
            let mut l = Local::new(&p);
            for _ in 0..200_000 {
                let (a, b) = *l.current(&p);
                assert_eq!(b, a * 7);
            }
        });
    }
}
