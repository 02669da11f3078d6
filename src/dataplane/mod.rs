//! The data plane: worker threads that move frames between the I/O drivers and the switch core.
pub mod port;
pub mod worker;

pub use port::{PortDevice, PortMeta, Received};
pub use worker::{Command, Esp, Worker, WorkerHandle};
