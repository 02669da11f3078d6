//! I/O drivers: the only place with syscalls and `unsafe`.
pub mod underlay;
