//! Whole-frame rewrite: first byte selects direction / config / flow, the rest is an
//! Ethernet frame. See `sipnat_fuzz::packet` for the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sipnat_fuzz::packet(data));
