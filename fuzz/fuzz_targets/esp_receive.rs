//! Any ESP-in-UDP payload a peer (or anyone spoofing one) can send: random bytes, mutated
//! genuine packets, replays.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::esp_receive(data));
