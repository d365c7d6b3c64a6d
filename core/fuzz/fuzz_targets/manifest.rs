#![no_main]
// Hostile bytes into the manifest parser; see containerarchive_core::fuzzing::manifest.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    containerarchive_core::fuzzing::manifest(data);
});
