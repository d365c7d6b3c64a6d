#![no_main]
// Hostile bytes into the key file parser; see containerarchive_core::fuzzing::key_file.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    containerarchive_core::fuzzing::key_file(data);
});
