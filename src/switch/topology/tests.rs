use super::*;

fn spec() -> SwitchSpec {
    let b = ("b".to_string(), VtepAddr(Ipv4Addr::new(192, 0, 2, 2)));
    SwitchSpec {
        networks: vec![NetworkSpec {
            name: "blue".into(),
            vni: Vni::new(42).unwrap(),
            subnet: "10.0.9.0/24".parse().unwrap(),
            mtu: 1450,
            peers: vec![b.clone()],
            encrypted: false,
        }],
        peers: vec![b],
        fdb_max_entries: 16,
        aging_ms: 300_000,
    }
}

const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 2);

#[test]
fn a_change_makes_a_new_generation_and_leaves_the_old_alone() {
    let t = Topology::new(spec());
    let vni = Vni::new(42).unwrap();
    let t2 = t
        .change(|t| t.add_port(PortId(1), "c1", vni, Some((MAC, IP))))
        .unwrap();
    assert_eq!(t2.generation(), 1);
    assert!(t.network(vni).unwrap().endpoint(MAC).is_none());
    assert_eq!(
        t2.network(vni).unwrap().endpoint_by_ip(IP).unwrap().at,
        Location::Port(PortId(1))
    );
    // A refused change leaves nothing behind and no new generation.
    let e = t2
        .change(|t| {
            t.add_port(
                PortId(2),
                "c2",
                vni,
                Some((MacAddr([2, 0, 0, 0, 0, 2]), IP)),
            )
        })
        .unwrap_err();
    assert!(e.to_string().contains("already used"), "{e}");
    let e = t2
        .change(|t| {
            t.add_port(
                PortId(2),
                "c2",
                vni,
                Some((MAC, Ipv4Addr::new(10, 0, 9, 3))),
            )
        })
        .unwrap_err();
    assert!(matches!(e, TopologyError::MacInUse { .. }), "{e}");
}

#[test]
fn floods_expand_in_one_place() {
    let vni = Vni::new(42).unwrap();
    let t = Topology::new(spec())
        .change(|t| {
            t.add_port(PortId(1), "c1", vni, None)?;
            t.add_port(PortId(2), "c2", vni, None)
        })
        .unwrap();
    let all: Vec<Output> = t.flood_set(vni, Some(PortId(1)), true).collect();
    assert_eq!(
        all,
        vec![
            Output::Port(PortId(2)),
            Output::Vtep(VtepAddr(Ipv4Addr::new(192, 0, 2, 2)))
        ]
    );
    assert_eq!(t.flood_set(vni, None, false).count(), 2);
    assert_eq!(t.flood_set(Vni::new(7).unwrap(), None, true).count(), 0);
}

#[test]
fn remote_endpoints_move_in_one_step_and_leave_with_their_peer() {
    let vni = Vni::new(42).unwrap();
    let b = VtepAddr(Ipv4Addr::new(192, 0, 2, 2));
    let c = VtepAddr(Ipv4Addr::new(192, 0, 2, 3));
    let mut t = Topology::new(spec());
    t.add_peer("c", c).unwrap();
    t.update_network(vni, 1450, vec![("b".into(), b), ("c".into(), c)])
        .unwrap();
    t.add_remote_endpoint(vni, "web", MAC, Some(IP), b).unwrap();
    t.add_remote_endpoint(vni, "web", MAC, Some(IP), c).unwrap();
    let n = t.network(vni).unwrap();
    assert_eq!(n.endpoint(MAC).unwrap().at, Location::Vtep(c));
    assert_eq!(n.endpoint_by_ip(IP).unwrap().mac, MAC);
    t.remove_peer(c).unwrap();
    let n = t.network(vni).unwrap();
    assert!(n.endpoint(MAC).is_none() && n.endpoint_by_ip(IP).is_none());
    assert_eq!(n.vteps(), &[b]);
}

#[test]
fn a_network_with_ports_is_not_removed() {
    let vni = Vni::new(42).unwrap();
    let mut t = Topology::new(spec());
    t.add_port(PortId(1), "c1", vni, None).unwrap();
    assert!(matches!(
        t.remove_network(vni),
        Err(TopologyError::NetworkInUse { ports: 1, .. })
    ));
    t.remove_port(PortId(1)).unwrap();
    t.remove_network(vni).unwrap();
    assert_eq!(t.networks().count(), 0);
}

#[test]
fn published_refresh_swaps_only_on_change() {
    let p = Published::new(Topology::new(spec()));
    let held = p.load();
    assert!(p.newer(&held).is_none());
    p.store(held.change(|_| Ok(())).unwrap());
    assert_eq!(p.newer(&held).unwrap().generation(), 1);
}
