#![no_main]
// Hostile bytes into the parity group parser; see containerarchive_core::fuzzing::parity_group.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    containerarchive_core::fuzzing::parity_group(data);
});
