#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoplake_collect::fuzz::run(
    shoplake_collect::Protocol::Segment,
    data
));
