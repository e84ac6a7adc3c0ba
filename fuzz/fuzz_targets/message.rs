//! One SIP message (a UDP payload), rewritten with every config in both directions. See
//! `sipnat_fuzz::message` for the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sipnat_fuzz::message(data));
