#![no_main]
// Hostile bytes into the lock parser; see containerarchive_core::fuzzing::lock.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    containerarchive_core::fuzzing::lock(data);
});
