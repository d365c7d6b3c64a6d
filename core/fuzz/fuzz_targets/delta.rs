#![no_main]
// Hostile bytes into the delta decoders; see containerarchive_core::fuzzing::delta.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    containerarchive_core::fuzzing::delta(data);
});
