//! The data plane: worker threads that move frames between the I/O drivers and the switch core.
//!
//! `worker` is one thread's event loop; `group` starts several, one per core, and is what the
//! control thread talks to; `sync` carries table announcements between them; `view` merges
//! their answers to `show`.
pub mod busy_poll;
pub mod counters;
pub mod group;
pub mod port;
pub mod reaper;
pub mod sync;
pub mod view;
pub mod worker;

pub use group::Workers;
pub use port::{PortDevice, PortMeta, Received};
pub use worker::{Command, Esp, Worker, WorkerHandle};
