#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoplake_core::files::fuzz_import(data));
