//! Control plane: configuration, the Unix-socket API, attach/detach of ports.
pub mod adopt;
pub mod api;
pub mod attach;
pub mod client;
pub mod config;
pub mod dns;
pub mod doctor;
pub mod metrics;
pub mod probe;
pub mod reload;
pub mod render;
pub mod server;
pub mod state;
pub mod views;
