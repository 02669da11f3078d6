//! Ports known by who made them: the `attachment` string a front-end (the CNI plugin, later
//! others) gives at attach, and `detach-attachment`, which finds the port by it alone.
//!
//! A runtime deletes an attachment by its own key (CNI: container id and interface name), often
//! after the container's namespace is gone, so the namespace cannot be the key; and it may ask
//! twice, so a missing port is an answer (`null`), not an error. When the namespace went first,
//! the workers have already dropped the port's device (they detach a port whose device fails),
//! but the topology still holds its address and, on a cluster network, its claim: detaching by
//! attachment releases those too. Runs on the control actor.

use super::{ControlError, NsAttach, Server};
use crate::control::api::AttachmentInfo;
use crate::dataplane::PortMeta;
use crate::switch::PortId;
use std::sync::Arc;

impl Server {
    /// `attach-namespace`, remembering the port under its `attachment` if it has one.
    pub(super) fn attach_namespace_for(
        &mut self,
        a: NsAttach,
    ) -> Result<serde_json::Value, ControlError> {
        let Some(key) = a.attachment.clone() else {
            return self.attach_namespace(a);
        };
        if key.trim().is_empty() {
            return Err("an attachment id must not be empty".into());
        }
        if let Some(id) = self.attached(&key) {
            return Err(format!(
                "attachment {key} already has port {} ({})",
                id.0,
                self.topology.port(id).map_or("?", |p| p.name.as_str())
            )
            .into());
        }
        let info = self.attach_namespace(a)?;
        if let Some(id) = info["id"].as_u64() {
            self.attachments.insert(key, PortId(id as u32));
        }
        Ok(info)
    }

    /// The port made for `key`, if it is still in the topology (another detach may have
    /// removed it; then the entry is forgotten).
    fn attached(&mut self, key: &str) -> Option<PortId> {
        let id = *self.attachments.get(key)?;
        if self.topology.port(id).is_some() {
            return Some(id);
        }
        self.attachments.remove(key);
        None
    }

    /// What the topology holds of port `id` made for `key`.
    fn attachment_info(&self, key: &str, id: PortId) -> Option<AttachmentInfo> {
        let p = self.topology.port(id)?;
        Some(AttachmentInfo {
            attachment: key.to_string(),
            port: id.0,
            name: p.name.clone(),
            network: self
                .topology
                .network(p.vni)
                .map(|n| n.spec.name.clone())
                .unwrap_or_default(),
            ip: p.endpoint.map(|(_, ip)| ip.to_string()),
        })
    }

    /// Every port with an attachment, by attachment.
    pub(super) fn attachment_list(&self) -> Vec<AttachmentInfo> {
        let mut list: Vec<AttachmentInfo> = self
            .attachments
            .iter()
            .filter_map(|(key, id)| self.attachment_info(key, *id))
            .collect();
        list.sort_by(|a, b| a.attachment.cmp(&b.attachment));
        list
    }

    /// Removes the port made for `attachment`: its PortInfo, or `null` when there is none.
    pub(super) fn detach_attachment(
        &mut self,
        key: &str,
    ) -> Result<serde_json::Value, ControlError> {
        let Some(id) = self.attached(key) else {
            return Ok(serde_json::Value::Null);
        };
        // What the topology knows of it, for when the workers no longer have it.
        let known = self.attachment_info(key, id);
        let info = match self.remove_port(
            Arc::new(move |pid: PortId, _: &PortMeta| pid == id),
            format!("attachment {key}"),
        ) {
            Ok(info) => info,
            Err(_) => {
                // The workers dropped it already (its namespace went): the topology still
                // holds it.
                let _ = self.change_topology(|t| t.remove_port(id).map(|_| ()));
                self.forget_port(id);
                serde_json::to_value(known).unwrap_or_default()
            }
        };
        self.attachments.remove(key);
        self.finish_detach(&info);
        Ok(info)
    }
}
