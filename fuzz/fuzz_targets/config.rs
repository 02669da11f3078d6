//! Any text as `node.toml`: parse, validate, and build the switch vswitchd would build from it.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::config(data));
