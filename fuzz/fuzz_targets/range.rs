//! Range header values against representations of every size.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (length, value) = match data.split_first() {
        Some((n, rest)) => (u64::from(*n) * 997, rest),
        None => return,
    };
    for length in [0, 1, length, u64::MAX] {
        let _ = outpost_representation::parse_range(value, length);
    }
});
