//! The host's tunnel device (src/io/tunnel.rs) on the namespace testbed (root required; see
//! TESTING.md): what a user sees when the host's firewall does not forward what vswitchd
//! hands the kernel there. The transfers and counters of the default path are in
//! tests/overlay.rs.

mod common;

use common::bins;
use common::testbed::{wait_until, Testbed, BLUE};
use serde_json::Value;
use std::time::Duration;

fn prefix(tag: &str) -> String {
    format!("vst{}-{tag}", std::process::id())
}

fn offload(v: &Value, k: &str) -> u64 {
    v["offload"][k].as_u64().unwrap_or(0)
}

/// A FORWARD chain whose policy is DROP (what dockerd sets), put in while the workers use the
/// tunnel device, drops what they hand the kernel there. The prober sees the peer answer its
/// socket's probes and not those it sends through the device, the daemon says so in its log
/// with the rule that would let them through, and segments super-frames itself from then on:
/// the transfers arrive intact.
#[test]
fn a_firewall_that_stops_forwarding_sends_super_frames_back_to_segmentation() {
    if !common::kernel_at_least(6, 17) {
        panic!("this test needs UDP-tunnel GSO for TAP devices: Linux 6.17 or later");
    }
    let mut tb = Testbed::two_hosts(&prefix("tfw"), bins(), &[BLUE]).unwrap();
    assert!(
        tb.logs()
            .contains("tunnel GSO ready: TCP super-frames to peers will leave whole"),
        "{}",
        tb.logs()
    );
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    // 20 MB from a to b, checked on arrival.
    let transfer = |port: u16| tb.transfer_intact(a, b, "10.0.9.3", port, 20 << 20, "20 MB");
    let stats = || step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));

    // The workers (of both hosts) use the device once it is found to work: the peer answered
    // probes sent through it, or (before the peer answered at all) its probes left the host.
    let on = "tunnel GSO on:";
    assert!(
        wait_until(Duration::from_secs(10), || tb.logs().matches(on).count()
            == 2),
        "{}",
        tb.logs()
    );
    transfer(5001);
    let before = stats();
    assert!(
        offload(&before, "tunnel_frames") > 0,
        "{}",
        before["offload"]
    );

    // In host 0's own namespace: gone with it, nothing in the root namespace.
    step!(
        tb,
        tb.hosts[0].ns.exec(&["iptables", "-P", "FORWARD", "DROP"])
    );
    // Two probe rounds (2 s apart) in which the peer answers the socket and not the device.
    let said = "peers answer probes from vswitchd's socket but not through its tunnel";
    tb.expect_tunnel_firewall_warning(said);
    // From now on the transfers' super-frames are segmented here, none goes to the device.
    transfer(5002);
    let after = stats();
    assert_eq!(
        offload(&after, "tunnel_frames"),
        offload(&before, "tunnel_frames"),
        "{}",
        after["offload"]
    );
    assert!(
        offload(&after, "tso_frames") > offload(&before, "tso_frames"),
        "{}",
        after["offload"]
    );

    // doctor names it, with the rule that would keep tunnel GSO.
    let out = std::process::Command::new(&tb.bins.vswitchctl)
        .arg("--socket")
        .arg(&tb.hosts[0].socket)
        .arg("doctor")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("vswitchctl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("this host: tunnel GSO was turned off"))
        .unwrap_or_else(|| panic!("no tunnel finding:\n{text}"));
    assert!(
        line.contains("iptables -I FORWARD -i vswgso0 -j ACCEPT"),
        "{line}"
    );

    // The rule it names is enough: with it in place, the daemon restarted (keeping its ports)
    // uses the device again and the next transfer goes through it.
    step!(
        tb,
        tb.hosts[0]
            .ns
            .exec(&["iptables", "-I", "FORWARD", "-i", "vswgso0", "-j", "ACCEPT"])
    );
    step!(tb, tb.hosts[0].ctl(&tb.bins, &["shutdown", "--keep-ports"]));
    let mut d = tb.hosts[0].daemon.take().expect("host 0's daemon");
    assert!(
        wait_until(Duration::from_secs(10), || d
            .child
            .try_wait()
            .is_ok_and(|st| st.is_some())),
        "vswitchd did not exit after shutdown"
    );
    step!(tb, tb.start_daemon(0));
    // Host 0's log starts again with the new daemon.
    let both_on = || tb.logs().matches(on).count() == 2;
    assert!(
        wait_until(Duration::from_secs(10), both_on),
        "{}",
        tb.logs()
    );
    tb.transfer_intact(a, b, "10.0.9.3", 5003, 20 << 20, "20 MB");
    let again = step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));
    assert!(offload(&again, "tunnel_frames") > 0, "{}", again["offload"]);
}
