//! How vswitchctl prints the daemon's answers: as text tables (crate::control::render) and
//! lines, or with `--json` as the daemon's JSON, pretty-printed with sorted keys.

use super::network;
use vswitch::control::api::{
    FdbEntryInfo, NeighEntryInfo, NetworkInfo, PeerInfo, PortInfo, Response, SaInfo, ShowWhat,
    Stats,
};
use vswitch::control::render;
use vswitch::crypto::wireshark;

/// How to print the daemon's answer.
pub(crate) enum Output {
    Attached { json: bool },
    Detached { what: String, json: bool },
    Show { what: ShowWhat, json: bool },
    Trace { json: bool },
    Reloaded { json: bool },
    Stopped,
    Wireshark,
    Network(network::Output),
}

pub(crate) fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(v)
        .map_err(|e| format!("vswitchd sent a result this vswitchctl does not understand: {e}"))
}

pub(crate) fn pretty(v: &serde_json::Value) -> String {
    // Printing a Value cannot fail; keys come out sorted, so the output is stable.
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

pub(crate) fn print(resp: Response, out: Output) -> Result<String, String> {
    let result = resp.result.unwrap_or(serde_json::Value::Null);
    Ok(match out {
        Output::Attached { json: true }
        | Output::Detached { json: true, .. }
        | Output::Show { json: true, .. }
        | Output::Trace { json: true }
        | Output::Reloaded { json: true } => pretty(&result),
        Output::Reloaded { json: false } => {
            let changes: Vec<&str> = result["changes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str())
                .collect();
            if changes.is_empty() {
                "reloaded: nothing changed\n".to_string()
            } else {
                format!("reloaded:\n  {}\n", changes.join("\n  "))
            }
        }
        Output::Trace { json: false } => render_trace(&result),
        Output::Stopped => {
            let ports = result["ports"].as_u64().unwrap_or(0);
            if result["keep_ports"].as_bool().unwrap_or(false) {
                format!("vswitchd stopped; {ports} port(s) kept in place for the next vswitchd\n")
            } else {
                format!("vswitchd stopped; {ports} port(s) removed\n")
            }
        }
        Output::Network(out) => network::print(result, out)?,
        Output::Wireshark => typed::<Vec<SaInfo>>(result)?
            .iter()
            .filter_map(|sa| {
                let material = hex_bytes(sa.key.as_deref()?)?;
                let key: [u8; 32] = material.get(..32)?.try_into().ok()?;
                let salt: [u8; 4] = material.get(32..36)?.try_into().ok()?;
                let src = sa.src.parse().ok()?;
                let dst = sa.dst.parse().ok()?;
                Some(wireshark::uat_line(src, dst, sa.spi, &key, &salt) + "\n")
            })
            .collect(),
        Output::Attached { json: false } => render::render_attached(&typed::<PortInfo>(result)?),
        Output::Detached { what, json: false } => format!("detached {what}\n"),
        Output::Show { what, json: false } => match what {
            ShowWhat::Networks => render::render_networks(&typed::<Vec<NetworkInfo>>(result)?),
            ShowWhat::Ports => render::render_ports(&typed::<Vec<PortInfo>>(result)?),
            ShowWhat::Fdb => render::render_fdb(&typed::<Vec<FdbEntryInfo>>(result)?),
            ShowWhat::Neigh => render::render_neigh(&typed::<Vec<NeighEntryInfo>>(result)?),
            ShowWhat::Peers => render::render_peers(&typed::<Vec<PeerInfo>>(result)?),
            ShowWhat::Stats => render::render_stats(&typed::<Stats>(result)?),
            ShowWhat::Sa => render::render_sa(&typed::<Vec<SaInfo>>(result)?),
        },
    })
}

/// A trace, one step a line, then the verdict.
pub(crate) fn render_trace(v: &serde_json::Value) -> String {
    let mut out = String::new();
    for s in v["steps"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<12} {}\n",
            s["step"].as_str().unwrap_or(""),
            s["detail"].as_str().unwrap_or("")
        ));
    }
    let outputs: Vec<&str> = v["outputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.as_str())
        .collect();
    out.push_str(&format!(
        "{:<12} {}",
        "verdict",
        v["verdict"].as_str().unwrap_or("?")
    ));
    if let Some(r) = v["drop_reason"].as_str() {
        out.push_str(&format!(" ({r})"));
    }
    if !outputs.is_empty() {
        out.push_str(&format!(": {}", outputs.join(", ")));
    }
    out.push('\n');
    out
}

pub(crate) fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
