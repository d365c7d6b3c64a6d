#![no_main]
// Hostile bytes into the pack parser; see containerarchive_core::fuzzing::pack.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    containerarchive_core::fuzzing::pack(data);
});
