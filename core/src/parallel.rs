//! Data parallelism for the CPU-bound stages (hashing, compression, encryption, decoding).
//! With the `parallel` feature it runs on rayon's pool; without it (wasm) in order, in place.

/// Map `f` over `items`, keeping their order.
#[cfg(feature = "parallel")]
pub fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    use rayon::prelude::*;
    items.into_par_iter().map(f).collect()
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
    rayon::join(a, b)
}

/// Run `a` and `b`, in parallel where enabled.
#[cfg(not(feature = "parallel"))]
pub fn join<RA, RB>(a: impl FnOnce() -> RA, b: impl FnOnce() -> RB) -> (RA, RB) {
    (a(), b())
}

/// Name the worker threads `{prefix}-{i}` (shown by `top -H` and profilers). Only the first call
/// of a process, made before any parallel work, takes effect.
#[cfg(feature = "parallel")]
pub fn name_workers(prefix: &'static str) {
    // An error means the pool already exists (a second call): nothing to do.
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(move |i| format!("{prefix}-{i}"))
        .build_global();
}
