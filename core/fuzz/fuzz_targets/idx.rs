#![no_main]
// Hostile bytes into the idx parser; see containerarchive_core::fuzzing::idx.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    containerarchive_core::fuzzing::idx(data);
});
