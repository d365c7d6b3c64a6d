#![no_main]
// Hostile bytes into the config parser; see containerarchive_core::fuzzing::config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    containerarchive_core::fuzzing::config(data);
});
