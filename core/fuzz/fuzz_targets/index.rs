#![no_main]
// Hostile bytes into the index parser; see containerarchive_core::fuzzing::index.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    containerarchive_core::fuzzing::index(data);
});
