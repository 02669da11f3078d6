//! `vswitchctl doctor` on the actor: it gathers what it knows (the topology, the prober's
//! configuration, the cluster store's state) and hands it to crate::control::doctor, which
//! probes the peers for seconds — on a thread of its own, so the actor keeps answering.

use super::{to_json, ControlError, Server};
use crate::control::api::Response;
use crate::control::doctor::{self, DoctorInput};
use crossbeam_channel::Sender;
use std::sync::Arc;
use std::time::Duration;

impl Server {
    /// Makes `show peers` show what `prober` finds, and `doctor` probe from its address.
    pub fn with_prober(mut self, prober: crate::control::probe::Prober) -> Server {
        self.prober = Some(prober);
        self
    }

    fn doctor_input(&self, wait_ms: Option<u64>) -> Result<DoctorInput, ControlError> {
        let prober = self.prober.as_ref().ok_or_else(|| {
            ControlError::from("this vswitchd does not probe its peers (no prober started)")
        })?;
        let wait = wait_ms.map_or(doctor::DEFAULT_WAIT, |ms| {
            Duration::from_millis(ms.clamp(100, 60_000))
        });
        let cluster = match &self.cluster {
            Some(cp) => Some((
                self.cluster_status()?,
                cp.view
                    .nodes
                    .values()
                    .map(|n| (n.name.clone(), n.underlay_ip))
                    .collect(),
            )),
            None => None,
        };
        Ok(DoctorInput {
            cfg: prober.cfg.clone(),
            topology: Arc::new(self.topology.clone()),
            wait,
            cluster,
        })
    }

    /// `doctor` answered inline (callers of `handle`; blocks for the probing).
    pub(super) fn doctor(&self, wait_ms: Option<u64>) -> Result<serde_json::Value, ControlError> {
        to_json(doctor::run(self.doctor_input(wait_ms)?))
    }

    /// `doctor` answered from a thread of its own: the probing takes seconds.
    pub(super) fn doctor_async(&self, wait_ms: Option<u64>, reply: Sender<Response>) {
        let input = match self.doctor_input(wait_ms) {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(e.into());
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("vswitch-doctor".into())
            .spawn(move || {
                let report = doctor::run(input);
                let r = match to_json(report) {
                    Ok(v) => Response {
                        ok: true,
                        error: None,
                        result: Some(v),
                    },
                    Err(e) => e.into(),
                };
                let _ = reply.send(r);
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a doctor thread: {e}");
        }
    }
}
