//! node.toml parsing and validation, from text to `Config` or to the messages a user sees.

use super::values::parse_duration;
use super::*;

const GOOD: &str = r#"
[node]
name = "node-a"
underlay_ip = "192.0.2.1"

[[peer]]
name = "node-b"
underlay_ip = "192.0.2.2"

[[network]]
name = "blue"
vni = 42
subnet = "10.0.9.0/24"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, "node.toml")
}

/// Asserts `text` is refused and the message holds the file name and every fragment.
fn refused(text: &str, fragments: &[&str]) -> String {
    let err = parse(text).expect_err("config should be refused");
    let msg = err.to_string();
    assert!(msg.starts_with("node.toml: "), "no file name in: {msg}");
    for f in fragments {
        assert!(msg.contains(f), "{f:?} not in: {msg}");
    }
    msg
}

/// GOOD with `old` replaced by `new`.
fn good_with(old: &str, new: &str) -> String {
    assert!(GOOD.contains(old), "{old:?}");
    GOOD.replacen(old, new, 1)
}

/// GOOD plus a second network.
fn with_network(extra: &str) -> String {
    format!("{GOOD}\n[[network]]\n{extra}\n")
}

#[test]
fn defaults() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.path, PathBuf::from("node.toml"));
    assert_eq!(c.node.name, "node-a");
    assert_eq!(c.node.underlay_ip, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(c.node.vxlan_port, 4789);
    assert_eq!(
        c.node.control_socket,
        PathBuf::from("/run/vswitch/vswitchd.sock")
    );
    assert_eq!(c.node.workers, 0);
    assert_eq!(c.node.underlay_mtu, None);
    assert_eq!(c.node.fdb_max_entries, 8192);
    assert_eq!(c.node.fdb_aging, Duration::from_secs(300));
    assert_eq!(
        c.peers,
        vec![PeerConfig {
            name: "node-b".into(),
            underlay_ip: Ipv4Addr::new(192, 0, 2, 2)
        }]
    );
    let n = &c.networks[0];
    assert_eq!(n.name, "blue");
    assert_eq!(n.vni.get(), 42);
    assert_eq!(n.subnet, "10.0.9.0/24".parse::<Ipv4Net>().unwrap());
    assert_eq!(n.mtu, None);
    assert_eq!(n.peers, vec!["node-b".to_string()]);
    assert_eq!(n.effective_mtu(1500), 1450);
    assert_eq!(n.effective_mtu(9000), 8950);
    assert!(c.validate_mtus(1500).is_ok());
    assert!(c.network("blue").is_some());
    assert!(c.peer("node-b").is_some());
}

#[test]
fn every_key_set() {
    let text = r#"
[node]
name = "node-a"
underlay_ip = "192.0.2.1"
vxlan_port = 8472
control_socket = "/tmp/v.sock"
workers = 4
underlay_mtu = 9000
fdb_max_entries = 100
fdb_aging = "5m"
state_dir = "/tmp/vs-state"

[[peer]]
name = "node-b"
underlay_ip = "192.0.2.2"

[[peer]]
name = "node-c"
underlay_ip = "192.0.2.3"

[[network]]
name = "blue"
vni = 42
subnet = "10.0.9.0/24"
mtu = 8900
peers = ["node-c"]
encrypted = true
key_file = "/etc/vswitch/blue.key"
rekey_interval = "1h"
esp_port = 4501
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.node.vxlan_port, 8472);
    assert_eq!(c.node.control_socket, PathBuf::from("/tmp/v.sock"));
    assert_eq!(c.node.workers, 4);
    assert_eq!(c.node.underlay_mtu, Some(9000));
    assert_eq!(c.node.fdb_max_entries, 100);
    assert_eq!(c.node.fdb_aging, Duration::from_secs(300));
    assert_eq!(c.networks[0].mtu, Some(8900));
    assert_eq!(c.node.state_dir, PathBuf::from("/tmp/vs-state"));
    let e = c.networks[0].encryption.as_ref().unwrap();
    assert_eq!(
        (e.rekey_interval, e.esp_port),
        (Duration::from_secs(3600), 4501)
    );
    assert_eq!(c.networks[0].effective_mtu(1500), 8900);
    assert_eq!(c.networks[0].peers, vec!["node-c".to_string()]);
}

#[test]
fn explicit_empty_peer_list_means_no_peers() {
    let c = parse(&good_with(
        "subnet = \"10.0.9.0/24\"",
        "subnet = \"10.0.9.0/24\"\npeers = []",
    ))
    .unwrap();
    assert!(c.networks[0].peers.is_empty());
}

#[test]
fn no_peers_at_all_is_fine() {
    let text = "[node]\nname = \"a\"\nunderlay_ip = \"192.0.2.1\"\n\
                [[network]]\nname = \"blue\"\nvni = 1\nsubnet = \"10.0.0.0/8\"\n";
    let c = parse(text).unwrap();
    assert!(c.peers.is_empty());
    assert!(c.networks[0].peers.is_empty());
}

#[test]
fn durations() {
    assert_eq!(parse_duration("300s").unwrap(), Duration::from_secs(300));
    assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
    assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
    assert!(parse_duration("300").unwrap_err().contains("no unit"));
    assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
    assert!(parse_duration("s").is_err());
    assert!(parse_duration("-5s").is_err());
    assert!(parse_duration("99999999999999999999s").is_err());
}

#[test]
fn toml_syntax_error_keeps_line_and_column() {
    let msg = refused(&good_with("vni = 42", "vni = = 42"), &["line 12", "column"]);
    assert!(msg.contains("vni"), "{msg}");
}

#[test]
fn unknown_key_is_named() {
    refused(
        &good_with("vni = 42", "vnii = 42"),
        &["unknown field `vnii`", "line 12"],
    );
    refused(
        &good_with("name = \"node-a\"", "name = \"node-a\"\nworker = 2"),
        &["unknown field `worker`"],
    );
    refused(
        &GOOD.replace("[[peer]]", "[[peers]]"),
        &["unknown field `peers`"],
    );
}

#[test]
fn wrong_type_is_reported() {
    refused(&good_with("vni = 42", "vni = \"42\""), &["vni", "line 12"]);
}

#[test]
fn missing_required_key() {
    refused(&good_with("vni = 42\n", ""), &["missing field `vni`"]);
    refused(
        "[[network]]\nname = \"x\"\nvni = 1\nsubnet = \"10.0.0.0/8\"\n",
        &["missing field `node`"],
    );
}

#[test]
fn missing_file() {
    let err = Config::load("/nonexistent/node.toml").unwrap_err();
    assert!(err
        .to_string()
        .contains("cannot read /nonexistent/node.toml"));
}

#[test]
fn node_name_empty() {
    refused(
        &good_with("name = \"node-a\"", "name = \"\""),
        &["node.name", "must not be empty"],
    );
}

#[test]
fn node_underlay_ip_bad() {
    for (ip, why) in [
        ("192.0.2", "not an IPv4 address"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("2001:db8::1", "IPv6"),
    ] {
        refused(
            &good_with("\"192.0.2.1\"", &format!("\"{ip}\"")),
            &["node.underlay_ip", why],
        );
    }
}

#[test]
fn vxlan_port_zero_or_too_big() {
    let base = good_with(
        "underlay_ip = \"192.0.2.1\"",
        "underlay_ip = \"192.0.2.1\"\nvxlan_port = 0",
    );
    refused(&base, &["node.vxlan_port", "0 is not a usable port"]);
    let base = good_with(
        "underlay_ip = \"192.0.2.1\"",
        "underlay_ip = \"192.0.2.1\"\nvxlan_port = 70000",
    );
    refused(&base, &["node.vxlan_port", "70000 is out of range"]);
}

#[test]
fn workers_limit() {
    let base = good_with(
        "underlay_ip = \"192.0.2.1\"",
        "underlay_ip = \"192.0.2.1\"\nworkers = 1025",
    );
    refused(&base, &["node.workers", "1025 is out of range", "0..=1024"]);
}

#[test]
fn fdb_settings_bad() {
    let base = good_with(
        "underlay_ip = \"192.0.2.1\"",
        "underlay_ip = \"192.0.2.1\"\nfdb_aging = \"300\"",
    );
    refused(&base, &["node.fdb_aging", "no unit"]);
    let base = good_with(
        "underlay_ip = \"192.0.2.1\"",
        "underlay_ip = \"192.0.2.1\"\nfdb_aging = \"0s\"",
    );
    refused(&base, &["node.fdb_aging", "at least 1s"]);
    let base = good_with(
        "underlay_ip = \"192.0.2.1\"",
        "underlay_ip = \"192.0.2.1\"\nfdb_max_entries = 0",
    );
    refused(&base, &["node.fdb_max_entries", "out of range"]);
}

#[test]
fn underlay_mtu_too_small() {
    let base = good_with(
        "underlay_ip = \"192.0.2.1\"",
        "underlay_ip = \"192.0.2.1\"\nunderlay_mtu = 600",
    );
    refused(&base, &["node.underlay_mtu", "600 is too small", "626"]);
}

#[test]
fn peer_duplicates_and_self() {
    let text = format!("{GOOD}\n[[peer]]\nname = \"node-b\"\nunderlay_ip = \"192.0.2.3\"\n");
    refused(
        &text,
        &[
            "peer \"node-b\" (peer[1]).name",
            "duplicate peer name",
            "peer[0]",
        ],
    );
    let text = format!("{GOOD}\n[[peer]]\nname = \"node-c\"\nunderlay_ip = \"192.0.2.2\"\n");
    refused(
        &text,
        &[
            "peer \"node-c\" (peer[1]).underlay_ip",
            "duplicate underlay_ip 192.0.2.2",
        ],
    );
    refused(
        &good_with("\"192.0.2.2\"", "\"192.0.2.1\""),
        &[
            "peer \"node-b\" (peer[0]).underlay_ip",
            "this node's own underlay_ip",
        ],
    );
    refused(
        &good_with("name = \"node-b\"", "name = \"\""),
        &["peer[0].name", "must not be empty"],
    );
    refused(
        &good_with("name = \"node-b\"", "name = \"node-a\""),
        &["peer \"node-a\" (peer[0]).name", "this node's own name"],
    );
    refused(
        &good_with("\"192.0.2.2\"", "\"192.0.2.300\""),
        &[
            "peer \"node-b\" (peer[0]).underlay_ip",
            "not an IPv4 address",
        ],
    );
}

#[test]
fn no_network() {
    let text = GOOD.split("[[network]]").next().unwrap();
    refused(text, &["node.toml: network: ", "at least one"]);
}

#[test]
fn network_name_empty_and_duplicate() {
    refused(
        &good_with("name = \"blue\"", "name = \"\""),
        &["network[0].name", "must not be empty"],
    );
    refused(
        &with_network("name = \"blue\"\nvni = 43\nsubnet = \"10.0.9.0/24\""),
        &[
            "network \"blue\" (network[1]).name",
            "duplicate network name",
            "network[0]",
        ],
    );
}

#[test]
fn vni_out_of_range() {
    let msg = refused(
        &with_network("name = \"blue2\"\nvni = 16777216\nsubnet = \"10.0.9.0/24\""),
        &[],
    );
    assert_eq!(
        msg,
        "node.toml: network \"blue2\" (network[1]).vni: 16777216 does not fit in 24 bits (max 16777215)"
    );
    refused(
        &good_with("vni = 42", "vni = 0"),
        &[
            "network \"blue\" (network[0]).vni",
            "0 is reserved",
            "convention",
        ],
    );
    refused(
        &good_with("vni = 42", "vni = -1"),
        &["network \"blue\" (network[0]).vni", "negative"],
    );
}

#[test]
fn vni_duplicate() {
    refused(
        &with_network("name = \"red\"\nvni = 42\nsubnet = \"10.0.9.0/24\""),
        &[
            "network \"red\" (network[1]).vni",
            "already used by network \"blue\"",
        ],
    );
}

#[test]
fn same_subnet_in_two_networks_is_fine() {
    let c = parse(&with_network(
        "name = \"red\"\nvni = 43\nsubnet = \"10.0.9.0/24\"",
    ))
    .unwrap();
    assert_eq!(c.networks[0].subnet, c.networks[1].subnet);
}

#[test]
fn subnet_bad() {
    refused(
        &good_with("10.0.9.0/24", "10.0.9.1/24"),
        &[
            "network \"blue\" (network[0]).subnet",
            "host bits set",
            "did you mean \"10.0.9.0/24\"",
        ],
    );
    refused(
        &good_with("10.0.9.0/24", "10.0.9.0"),
        &["network \"blue\" (network[0]).subnet", "no prefix length"],
    );
    refused(
        &good_with("10.0.9.0/24", "10.0.9.0/33"),
        &["network \"blue\" (network[0]).subnet", "not an IPv4 CIDR"],
    );
    refused(
        &good_with("10.0.9.0/24", "banana"),
        &["network \"blue\" (network[0]).subnet"],
    );
}

#[test]
fn network_unknown_peer() {
    let msg = refused(
        &good_with(
            "subnet = \"10.0.9.0/24\"",
            "subnet = \"10.0.9.0/24\"\npeers = [\"node-c\"]",
        ),
        &[],
    );
    assert_eq!(
        msg,
        "node.toml: network \"blue\" (network[0]).peers: unknown peer \"node-c\"; known peers: node-b"
    );
}

#[test]
fn encrypted_network_settings_and_mtu() {
    let c = parse(&good_with(
        "subnet = \"10.0.9.0/24\"",
        "subnet = \"10.0.9.0/24\"\nencrypted = true\nkey_file = \"/k\"\nrekey_interval = \"5s\"",
    ))
    .unwrap();
    let e = c.networks[0].encryption.as_ref().unwrap();
    assert_eq!(e.key_file, PathBuf::from("/k"));
    assert_eq!(e.rekey_interval, Duration::from_secs(5));
    assert_eq!(e.esp_port, 4500);
    // 1500 - 92 = 1408, a multiple of 4, so no frame ever needs ESP padding past it.
    assert_eq!(c.networks[0].effective_mtu(1500), 1408);
    assert_eq!(c.networks[0].effective_mtu(1501), 1408);
    assert_eq!(parse(GOOD).unwrap().networks[0].effective_mtu(1500), 1450);
}

#[test]
fn encryption_settings_are_checked() {
    let enc = |extra: &str| {
        good_with(
            "subnet = \"10.0.9.0/24\"",
            &format!("subnet = \"10.0.9.0/24\"\n{extra}"),
        )
    };
    refused(
        &enc("encrypted = true"),
        &["(network[0]).key_file", "needs key_file"],
    );
    refused(
        &enc("key_file = \"/k\""),
        &["(network[0]).key_file", "not encrypted"],
    );
    refused(
        &enc("encrypted = true\nkey_file = \"/k\"\nrekey_interval = \"0s\""),
        &["rekey_interval", "at least 1s"],
    );
    refused(
        &enc("encrypted = true\nkey_file = \"/k\"\nesp_port = 0"),
        &["esp_port"],
    );
    let big = parse(&enc("encrypted = true\nkey_file = \"/k\"\nmtu = 1450")).unwrap();
    let msg = big.validate_mtus(1500).unwrap_err().to_string();
    assert!(
        msg.contains("(network[0]).mtu") && msg.contains("ESP+VXLAN") && msg.contains("1408"),
        "{msg}"
    );
    let two = format!(
        "{}\n[[network]]\nname = \"red\"\nvni = {}\nsubnet = \"10.0.8.0/24\"\nencrypted = true\nkey_file = \"/k2\"\n",
        enc("encrypted = true\nkey_file = \"/k\"\nunderlay = 1").replace("\nunderlay = 1", ""),
        42 + 4096
    );
    refused(&two, &["modulo 4096"]);
}

#[test]
fn all_problems_reported_at_once() {
    let text = GOOD
        .replace("vni = 42", "vni = 0")
        .replace("10.0.9.0/24", "10.0.9.1/24");
    let msg = refused(&text, &[".vni: ", ".subnet: "]);
    assert_eq!(msg.lines().count(), 2, "{msg}");
}

#[test]
fn mtu_checks() {
    let text = good_with(
        "subnet = \"10.0.9.0/24\"",
        "subnet = \"10.0.9.0/24\"\nmtu = 1450",
    );
    let c = parse(&text).unwrap();
    assert!(c.validate_mtus(1500).is_ok());
    let msg = c.validate_mtus(1400).unwrap_err().to_string();
    assert!(
        msg.starts_with("node.toml: network \"blue\" (network[0]).mtu: 1450 does not fit"),
        "{msg}"
    );
    assert!(msg.contains("at most 1350"), "{msg}");

    refused(
        &good_with(
            "subnet = \"10.0.9.0/24\"",
            "subnet = \"10.0.9.0/24\"\nmtu = 500",
        ),
        &[
            "network \"blue\" (network[0]).mtu",
            "500 is out of range",
            "576",
        ],
    );

    // Derived MTU below the minimum: the detected underlay is too small.
    let c = parse(GOOD).unwrap();
    let msg = c.validate_mtus(600).unwrap_err().to_string();
    assert!(
        msg.contains("(network[0]).mtu: the derived MTU 550"),
        "{msg}"
    );

    // underlay_mtu in the file: checked at load.
    let text = good_with(
        "underlay_ip = \"192.0.2.1\"",
        "underlay_ip = \"192.0.2.1\"\nunderlay_mtu = 1400",
    )
    .replace(
        "subnet = \"10.0.9.0/24\"",
        "subnet = \"10.0.9.0/24\"\nmtu = 1450",
    );
    refused(
        &text,
        &["(network[0]).mtu: 1450 does not fit", "node.underlay_mtu"],
    );
}

#[test]
fn example_files_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for f in ["node-a.toml", "node-b.toml", "reference.toml"] {
        let c = Config::load(dir.join(f)).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.validate_mtus(1500).is_ok(), "{f}");
    }
    let a = Config::load(dir.join("node-a.toml")).unwrap();
    let b = Config::load(dir.join("node-b.toml")).unwrap();
    assert_eq!(a.node.underlay_ip, b.peers[0].underlay_ip);
    assert_eq!(b.node.underlay_ip, a.peers[0].underlay_ip);
    let shape = |c: &Config| -> Vec<(String, u32, Ipv4Net)> {
        c.networks
            .iter()
            .map(|n| (n.name.clone(), n.vni.get(), n.subnet))
            .collect()
    };
    assert_eq!(shape(&a), shape(&b));
    assert_eq!(a.networks.len(), 2);
}

const CLUSTER_ONLY: &str = r#"
[node]
name = "node-a"
underlay_ip = "192.0.2.1"

[cluster]
etcd_endpoints = ["http://192.0.2.100:2379", "http://192.0.2.101:2379"]
"#;

#[test]
fn cluster_needs_no_network_and_has_defaults() {
    let c = parse(CLUSTER_ONLY).unwrap();
    assert!(c.networks.is_empty() && c.peers.is_empty());
    let cl = c.cluster.unwrap();
    assert_eq!(cl.etcd_endpoints.len(), 2);
    assert_eq!(cl.lease_ttl, Duration::from_secs(10));
    assert_eq!(cl.prefix, "/vswitch");
    assert_eq!(cl.address_grace, Duration::from_secs(300));
    assert_eq!(cl.tls, None);
}

#[test]
fn without_cluster_a_network_is_still_required() {
    let text = GOOD.split("[[network]]").next().unwrap();
    refused(text, &["network", "at least one is needed, or a [cluster]"]);
}

#[test]
fn cluster_values_are_checked() {
    let text = format!(
        "{}lease_ttl = \"1s\"\nprefix = \"vswitch/\"\naddress_grace = \"5s\"\n",
        CLUSTER_ONLY.replace("\"http://192.0.2.101:2379\"", "\"192.0.2.101:2379\"")
    );
    refused(
        &text,
        &[
            "cluster.etcd_endpoints[1]: \"192.0.2.101:2379\" is not an etcd client URL",
            "cluster.lease_ttl: \"1s\" is out of range",
            "cluster.prefix: \"vswitch/\" must start with '/'",
            "cluster.address_grace: \"5s\" is out of range; it must be at least twice",
        ],
    );
    refused(
        &CLUSTER_ONLY.replace(
            "[\"http://192.0.2.100:2379\", \"http://192.0.2.101:2379\"]",
            "[]",
        ),
        &["cluster.etcd_endpoints: is empty"],
    );
}

#[test]
fn cluster_tls() {
    let https = CLUSTER_ONLY.replace("http://", "https://");
    refused(
        &https,
        &["cluster.ca_file: is needed for https:// endpoints"],
    );
    refused(
        &format!("{https}ca_file = \"/etc/ca.pem\"\ncert_file = \"/etc/c.pem\"\n"),
        &["cluster.key_file: is needed with cluster.cert_file"],
    );
    refused(
        &format!("{CLUSTER_ONLY}ca_file = \"/etc/ca.pem\"\n"),
        &["no endpoint is https://"],
    );
    let c = parse(&format!(
        "{https}ca_file = \"/etc/ca.pem\"\ncert_file = \"/etc/c.pem\"\nkey_file = \"/etc/k.pem\"\n"
    ))
    .unwrap();
    let tls = c.cluster.unwrap().tls.unwrap();
    assert_eq!(tls.ca_file, PathBuf::from("/etc/ca.pem"));
    assert_eq!(
        tls.client,
        Some((PathBuf::from("/etc/c.pem"), PathBuf::from("/etc/k.pem")))
    );
}

#[test]
fn docker_table_has_defaults_and_is_off_without_it() {
    assert_eq!(parse(GOOD).unwrap().docker, None);
    let c = parse(&format!("{GOOD}\n[docker]\n")).unwrap();
    let d = c.docker.unwrap();
    assert_eq!(d.socket, PathBuf::from("/run/docker/plugins/vswitch.sock"));
    assert_eq!(d.docker_socket, PathBuf::from("/var/run/docker.sock"));
    assert_eq!(d.name_timeout, Duration::from_secs(10));
    let c = parse(&format!(
        "{GOOD}\n[docker]\nsocket = \"/tmp/t/vswitch.sock\"\ndocker_socket = \"/tmp/t/d.sock\"\nname_timeout = \"3s\"\n"
    ))
    .unwrap();
    let d = c.docker.unwrap();
    assert_eq!(d.socket, PathBuf::from("/tmp/t/vswitch.sock"));
    assert_eq!(d.name_timeout, Duration::from_secs(3));
}

#[test]
fn docker_table_is_validated() {
    refused(
        &format!("{GOOD}\n[docker]\nsocket = \"vswitch.sock\"\n"),
        &["docker.socket", "absolute path"],
    );
    refused(
        &format!("{GOOD}\n[docker]\nsocket = \"/run/docker/plugins/vswitch\"\n"),
        &["docker.socket", "must end in .sock"],
    );
    refused(
        &format!("{GOOD}\n[docker]\nname_timeout = \"0s\"\n"),
        &["docker.name_timeout", "between 1s and 300s"],
    );
    refused(
        &format!("{GOOD}\n[docker]\nsockt = \"/x.sock\"\n"),
        &["unknown field", "sockt"],
    );
}

#[test]
fn dns_upstreams_are_addresses_with_port_53_by_default() {
    let c = parse(&format!(
        "{GOOD}\n[dns]\nupstreams = [\"192.0.2.53\", \"192.0.2.54:5353\", \"[2001:db8::1]:53\"]\n"
    ))
    .unwrap();
    let got: Vec<String> = c
        .dns
        .upstreams
        .unwrap()
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(
        got,
        ["192.0.2.53:53", "192.0.2.54:5353", "[2001:db8::1]:53"]
    );
    assert_eq!(
        parse(GOOD).unwrap().dns.upstreams,
        None,
        "default: resolv.conf"
    );
    refused(
        &format!("{GOOD}\n[dns]\nupstreams = [\"ns1.example\"]\n"),
        &["dns.upstreams[0]", "ns1.example", "IP or IP:PORT"],
    );
    refused(
        &format!("{GOOD}\n[dns]\nupstreams = []\n"),
        &["dns.upstreams", "resolv.conf"],
    );
    refused(
        &format!("{GOOD}\n[dns]\nupstream = [\"192.0.2.53\"]\n"),
        &["upstream"],
    );
}

#[test]
fn port_limits_come_from_the_network_then_the_file_then_the_defaults() {
    let text = format!(
        "{}\nport_limits = {{ bum_rate = 5000 }}\n\n[[network]]\nname = \"red\"\nvni = 43\nsubnet = \"10.0.8.0/24\"\n\n[port_limits]\nmax_macs = 8\n",
        GOOD.trim_end()
    );
    let c = parse(&text).unwrap();
    let blue = c.limits_for("blue").resolve();
    assert_eq!(blue.max_macs, Some(8));
    let r = blue.bum.unwrap();
    assert_eq!((r.per_sec, r.burst), (5000, 5000));
    let red = c.limits_for("red").resolve();
    assert_eq!(red.max_macs, Some(8));
    assert_eq!(red.bum.unwrap().per_sec, 1000);
    // A cluster network (not in the file) takes [port_limits]; no table at all: the defaults.
    assert_eq!(c.limits_for("green"), c.port_limits);
    assert_eq!(
        parse(GOOD).unwrap().limits_for("blue").resolve(),
        crate::switch::PortLimits::default()
    );
}

#[test]
fn bad_port_limits_are_refused_naming_the_key() {
    refused(
        &format!("{GOOD}\n[port_limits]\nmax_macs = -1\nbum_burst = 0\n"),
        &[
            "port_limits.max_macs",
            "port_limits.bum_burst",
            "0 is out of range",
        ],
    );
    refused(
        &format!("{}\nport_limits = {{ bum_rate = 1e3 }}\n", GOOD.trim_end()),
        &["bum_rate"],
    );
    refused(
        &format!("{}\nport_limits = {{ max_mac = 3 }}\n", GOOD.trim_end()),
        &["max_mac"],
    );
    refused(
        &good_with(
            "subnet = \"10.0.9.0/24\"",
            "subnet = \"10.0.9.0/24\"\nport_limits = { bum_rate = 200000000 }",
        ),
        &[
            "network \"blue\" (network[0]).port_limits.bum_rate",
            "out of range",
        ],
    );
}

#[test]
fn metrics_are_off_by_default_and_listen_is_an_address_and_port() {
    assert_eq!(parse(GOOD).unwrap().metrics, None);
    let c = parse(&format!("{GOOD}\n[metrics]\nlisten = \"[::1]:9474\"\n")).unwrap();
    assert_eq!(c.metrics.unwrap().listen.to_string(), "[::1]:9474");
    for (bad, why) in [
        ("localhost:9474", "not an IP address and port"),
        ("192.0.2.1", "has no port"),
        ("192.0.2.1:0", "port 0"),
        ("", "is empty"),
    ] {
        refused(
            &format!("{GOOD}\n[metrics]\nlisten = \"{bad}\"\n"),
            &["metrics.listen", why, "\"127.0.0.1:9474\""],
        );
    }
    refused(&format!("{GOOD}\n[metrics]\n"), &["listen"]);
}
