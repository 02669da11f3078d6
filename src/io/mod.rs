//! I/O drivers: the only place with syscalls and `unsafe`.
