//! Data parallelism for the CPU-bound stages (hashing, compression, encryption, decoding).
//! With the `parallel` feature it runs on a rayon pool; without it (wasm) in order, in place.
//!
//! The pool is created on first use, never at load time, and [`forget_pool`] makes the next
//! use create a new one: a process forked after parallel work has the parent's pool in memory
//! but none of its threads, so the binding calls it in the child (Python's
//! `os.register_at_fork`) and the child's first ingest or restore gets threads of its own.

#[cfg(feature = "parallel")]
mod pool {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    /// Bumped by [`forget_pool`]; the pool of an older generation is not used again.
    static GENERATION: AtomicU64 = AtomicU64::new(0);
    static POOL: Mutex<Option<(u64, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

    /// This process's pool, created on first use (threads named `ca-worker-<i>`).
    pub fn current() -> Arc<rayon::ThreadPool> {
        let generation = GENERATION.load(Ordering::Acquire);
        let mut slot = POOL.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some((g, pool)) if *g == generation => pool.clone(),
            _ => {
                let pool = Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .thread_name(|i| format!("ca-worker-{i}"))
                        .build()
                        .expect("the worker pool starts"),
                );
                // The old pool's threads are gone (a forked child): dropping it would wait for
                // them, so it is leaked instead.
                if let Some(old) = slot.replace((generation, pool.clone())) {
                    std::mem::forget(old);
                }
                pool
            }
        }
    }

    pub fn forget() {
        GENERATION.fetch_add(1, Ordering::AcqRel);
    }

    /// Run `op` on the pool (directly when already on one of its threads).
    pub fn install<R: Send>(op: impl FnOnce() -> R + Send) -> R {
        if rayon::current_thread_index().is_some() {
            op()
        } else {
            current().install(op)
        }
    }
}

/// Make the next parallel work create a new pool (call in a forked child).
#[cfg(feature = "parallel")]
pub fn forget_pool() {
    pool::forget();
}

/// Make the next parallel work create a new pool (nothing to do without threads).
#[cfg(not(feature = "parallel"))]
pub fn forget_pool() {}

/// Map `f` over `items`, keeping their order.
#[cfg(feature = "parallel")]
pub fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    use rayon::prelude::*;
    pool::install(|| items.into_par_iter().map(f).collect())
}

/// Map `f` over `items`, keeping their order.
#[cfg(not(feature = "parallel"))]
pub fn par_map<T, R>(items: Vec<T>, f: impl Fn(T) -> R) -> Vec<R> {
    items.into_iter().map(f).collect()
}

/// Run `a` and `b`, in parallel where enabled.
#[cfg(feature = "parallel")]
pub fn join<RA: Send, RB: Send>(
    a: impl FnOnce() -> RA + Send,
    b: impl FnOnce() -> RB + Send,
) -> (RA, RB) {
    pool::install(|| rayon::join(a, b))
}

/// Run `a` and `b`, in parallel where enabled.
#[cfg(not(feature = "parallel"))]
pub fn join<RA, RB>(a: impl FnOnce() -> RA, b: impl FnOnce() -> RB) -> (RA, RB) {
    (a(), b())
}
