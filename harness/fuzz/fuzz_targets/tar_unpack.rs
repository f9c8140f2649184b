#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    repro::fuzzing::tar_unpack(data);
});
