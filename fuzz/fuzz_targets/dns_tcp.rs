//! Any TCP segment a container can send to its network's DNS address, port 53.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::dns_tcp(data));
