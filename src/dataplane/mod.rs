//! Worker event loop.
