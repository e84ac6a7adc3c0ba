//! The fast path against the reference rewriter: first byte selects rule set, direction,
//! message or frame, tailroom; the rest is the input. See `sipnat_fuzz::differential`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sipnat_fuzz::differential(data));
