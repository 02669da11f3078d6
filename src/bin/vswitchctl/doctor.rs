//! `vswitchctl doctor`: asks vswitchd to check the overlay (crate::control::doctor) and prints
//! one line per finding, or one all-good line. Exit 0 when all is well, 1 otherwise.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use vswitch::control::api::{DoctorReport, Request};
use vswitch::control::{client, doctor};

pub const HELP: &str = "\
What doctor checks (each finding is one line: what is wrong — what to do):
  reachability  every peer's vswitchd answers a probe on UDP 4789 (vxlan_port) within --wait
                (peers carrying a plaintext network, or none); a probe takes the path VXLAN
                takes, so a firewall dropping VXLAN drops it too. A peer running the kernel's
                own VXLAN device never answers (it drops probes)
  esp           the same on the ESP-in-UDP port (4500) for peers sharing an encrypted network
  mtu           a don't-fragment probe as large as the largest packet of the networks carried
                to the peer (network mtu + 50 for VXLAN, + 92 with ESP) arrives; if not, the
                largest that does, and how much to lower the mtu
  name          the peer answers under the name this host knows it by, not under this host's
                own name; no two peers share a name; in a cluster, no two nodes share an address
  network       each network carried to the peer exists there with the same name, VNI,
                encryption and MTU
  clock         peers sharing an encrypted network keep their clocks within 5 s of ours (keys
                change by the wall clock)
  cluster       with [cluster]: the etcd store answers
  offloads      TAP offloads (TSO/USO) and underlay UDP GSO/GRO are on; on the interface
                holding underlay_ip, as `ethtool -k` shows them: tx-checksumming,
                scatter-gather, tx-udp-segmentation, generic-receive-offload (not on a veth);
                only offloads that could be on are reported

The probe is a UDP datagram to the peer's VXLAN port whose first byte has VXLAN's I flag clear:
vswitchd answers it (only to its configured peers) with its name, clock and networks; any other
VXLAN receiver drops it.

Exit status: 0 all good; 1 a finding (or vswitchd unreachable); 2 bad usage.

Examples:
  vswitchctl doctor
  vswitchctl doctor --json | jq '.findings[]'
  vswitchctl doctor --wait 10        # a slow or lossy underlay";

pub fn run(socket: &Path, json: bool, wait_secs: u64) -> ExitCode {
    let wait = Duration::from_secs(wait_secs);
    let req = Request::Doctor {
        wait_ms: Some(wait.as_millis() as u64),
    };
    // Probing takes `wait` per round, a few rounds at most.
    let resp = match client::call_with_timeout(socket, &req, wait * 4 + Duration::from_secs(15)) {
        Ok(r) => r,
        Err(e) => {
            println!("vswitchd: {e}");
            return ExitCode::from(1);
        }
    };
    if !resp.ok {
        eprintln!(
            "error: {}",
            resp.error.as_deref().unwrap_or("vswitchd refused doctor")
        );
        return ExitCode::from(1);
    }
    let value = resp.result.unwrap_or_default();
    let report: DoctorReport = match serde_json::from_value(value.clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: vswitchd sent a report this vswitchctl does not understand: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        print!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
        );
    } else {
        print!("{}", doctor::render(&report));
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
