//! Any UDP payload on the VXLAN port, from a configured peer and (odd first byte) from a stranger.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::underlay_datagram(data));
