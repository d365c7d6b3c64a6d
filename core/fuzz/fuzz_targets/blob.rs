#![no_main]
// Hostile bytes into the blob parser; see containerarchive_core::fuzzing::blob.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    containerarchive_core::fuzzing::blob(data);
});
