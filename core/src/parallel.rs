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
