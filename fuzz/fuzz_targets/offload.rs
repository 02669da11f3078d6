//! Super-frames a container hands its TAP (virtio_net_hdr + frame), and runs of frames the
//! receive coalescer merges: cut and merged without panic, and back to the same bytes.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::offload(data));
