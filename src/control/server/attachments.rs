//! Ports known by who made them: the `attachment` string a front-end (the CNI plugin, later
//! others) gives at attach, and `detach-attachment`, which finds the port by it alone.
//!
//! A runtime deletes an attachment by its own key (CNI: container id and interface name), often
//! after the container's namespace is gone, so the namespace cannot be the key; and it may ask
//! twice, so a missing port is an answer (`null`), not an error. Runs on the control actor.

use super::Server;
use crate::control::api::ShowWhat;
use crate::dataplane::PortMeta;
use std::sync::Arc;

impl Server {
    /// The port (its `show ports` entry) that carries `attachment`, if any.
    fn port_of_attachment(&self, attachment: &str) -> Result<Option<serde_json::Value>, String> {
        let ports = self.workers.show(ShowWhat::Ports, false)?;
        Ok(ports
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["attachment"].as_str() == Some(attachment))
            .cloned())
    }

    /// Refuses an attach whose `attachment` a port already carries.
    pub(super) fn check_attachment_free(&self, attachment: Option<&str>) -> Result<(), String> {
        let Some(want) = attachment else {
            return Ok(());
        };
        if want.trim().is_empty() {
            return Err("an attachment id must not be empty".to_string());
        }
        match self.port_of_attachment(want)? {
            None => Ok(()),
            Some(p) => Err(format!(
                "attachment {want} already has port {} ({} in {} on network {})",
                p["id"],
                p["ifname"].as_str().unwrap_or("?"),
                p["netns"].as_str().unwrap_or("?"),
                p["network"].as_str().unwrap_or("?")
            )),
        }
    }

    /// Removes the port made for `attachment`: its PortInfo, or `null` when there is none.
    pub(super) fn detach_attachment(
        &mut self,
        attachment: &str,
    ) -> Result<serde_json::Value, String> {
        if self.port_of_attachment(attachment)?.is_none() {
            return Ok(serde_json::Value::Null);
        }
        let want = attachment.to_string();
        let info = self.remove_port(
            Arc::new(move |_, m: &PortMeta| m.attachment.as_deref() == Some(want.as_str())),
            format!("attachment {attachment}"),
        )?;
        self.finish_detach(&info);
        Ok(info)
    }
}
