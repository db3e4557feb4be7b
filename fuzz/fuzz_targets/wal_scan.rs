#![no_main]
// The event log's recovery scan over arbitrary segment bytes; half the
// inputs get a valid header first, so the records behind it are reached.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&b, rest)) if b & 1 == 1 => {
            let mut seg = shoplake_log::fuzz_header();
            seg.extend_from_slice(rest);
            shoplake_log::fuzz_scan(&seg);
        }
        _ => shoplake_log::fuzz_scan(data),
    }
});
