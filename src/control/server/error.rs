//! What the control actor answers when a request fails: one error type for every front-end,
//! made into the `Response` once (`Server::handle`). Its Display is the message the user sees.

use crate::control::api::Response;
use crate::control::attach::AttachError;
use crate::control::reload::ReloadError;
use crate::io::IoError;
use crate::switch::TopologyError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request cannot be done as asked (a malformed argument, a name that does not exist,
    /// a daemon without `[cluster]`...): the message says what is wrong and what to do.
    #[error("{0}")]
    Refused(String),
    /// The published topology refuses the change (an address taken, a network unknown...).
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Reload(#[from] ReloadError),
    /// Making the container's interface (namespace, netlink, TAP).
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("cannot attach interface {interface}: {source}")]
    Interface { interface: String, source: IoError },
    /// The cluster store (etcd) refused or did not answer.
    #[error("{0}")]
    Cluster(String),
    /// The workers refused a port or did not answer.
    #[error("{0}")]
    DataPlane(String),
    #[error("cannot encode the reply: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A refusal already worded for the user (the parsers' messages, front-ends' own checks).
impl From<String> for ControlError {
    fn from(msg: String) -> ControlError {
        ControlError::Refused(msg)
    }
}

impl From<&str> for ControlError {
    fn from(msg: &str) -> ControlError {
        ControlError::Refused(msg.to_string())
    }
}

impl From<ControlError> for Response {
    fn from(e: ControlError) -> Response {
        Response::err(e.to_string())
    }
}
