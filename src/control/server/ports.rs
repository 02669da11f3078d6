//! Making and removing ports: a container's namespace gets a TAP (`attach-namespace`, with
//! its address, routes, DNS and resolv.conf), an existing interface an AF_PACKET socket
//! (`attach-interface`); and their detach. Runs on the control actor; the workers get the
//! devices through their command channels.

use super::*;

impl Server {
    pub(super) fn attach_namespace(
        &mut self,
        a: NsAttach,
    ) -> Result<serde_json::Value, ControlError> {
        let name = a
            .name
            .clone()
            .unwrap_or_else(|| format!("{}/{}", netns_label(&a.netns), a.ifname));
        match self.claim_for_attach(&a.network, a.ip.as_deref(), &name)? {
            Some(claimed) => {
                let r = self.attach_namespace_at(&a, &name, claimed.addr);
                self.finish_attach(claimed, r)
            }
            None => {
                let addr = match a.ip.as_deref() {
                    Some(ip) => parse_ip_prefix(ip)?,
                    None => self.local_free_address(&a.network)?,
                };
                self.attach_namespace_at(&a, &name, addr)
            }
        }
    }

    /// IPAM without a cluster: the lowest address of the network's subnet that no endpoint of
    /// this host's topology holds (nor the switch's own, crate::switch::service, nor one the
    /// Docker plugin handed out for a container not attached yet). Called on the
    /// actor, so the choice and the attach that takes it are one step.
    pub(crate) fn local_free_address(&self, network: &str) -> Result<Ipv4Net, String> {
        let net = self
            .topology
            .check_endpoint(network, None, None)
            .map_err(|e| e.to_string())?;
        let subnet = net.spec.subnet;
        crate::switch::service::station_addrs(subnet)
            .find(|ip| net.endpoint_by_ip(*ip).is_none() && !self.docker_holds(subnet, *ip))
            .map(|ip| Ipv4Net::new(ip, subnet.prefix_len()).expect("prefix of a subnet"))
            .ok_or_else(|| {
                format!("network {network} has no free address left in {subnet}: give --ip")
            })
    }

    pub(super) fn attach_namespace_at(
        &mut self,
        a: &NsAttach,
        name: &str,
        addr: Ipv4Net,
    ) -> Result<serde_json::Value, ControlError> {
        let (network, netns, ifname) = (a.network.as_str(), a.netns.as_str(), a.ifname.as_str());
        let (vni, _) = self.check_endpoint(network, Some(addr.addr()), None)?;
        let mac = match a.mac.as_deref() {
            Some(m) => parse_station_mac(m)?,
            None => generated_mac(vni.get(), addr.addr()),
        };
        let (vni, mtu) = self.check_endpoint(network, Some(addr.addr()), Some(mac))?;
        let id = PortId(self.next_port);
        self.next_port += 1;
        let queues = crate::control::attach::queues_per_port(self.workers.len());
        let spec = NamespacePortSpec {
            netns: netns.to_string(),
            ifname: ifname.to_string(),
            mac,
            addr: addr.addr(),
            prefix: addr.prefix_len(),
            mtu,
            tap_name: format!("vsw{}", id.0),
            tap: crate::io::TapOptions {
                multi_queue: queues > 1,
                ..self.tap_options
            },
        };
        let multi_queue = spec.tap.multi_queue;
        let queues = create_namespace_port_queues(&spec, queues)?;
        let devices = self.tap_devices(id, queues);
        let meta = PortMeta {
            name: name.to_string(),
            kind: "tap",
            network: network.to_string(),
            vni: vni.get(),
            ifname: ifname.to_string(),
            netns: Some(netns.to_string()),
            netns_id: netns_identity(netns),
            mac: Some(mac),
            ip: Some(addr),
            mtu,
            attachment: a.attachment.clone(),
        };
        let mut info = self.add_port(
            devices,
            meta.clone(),
            vni,
            Some((mac, addr.addr())),
            id,
            PortRules {
                security: a.security,
                limits: a.limits,
            },
        )?;
        if let Some(dns) = self.container_dns(vni, id, netns) {
            info["dns"] = serde_json::to_value(dns).map_err(|e| e.to_string())?;
        }
        self.remember_port(id, &meta, a.security, a.limits, multi_queue);
        Ok(info)
    }

    /// The resolver of a container just attached to network `vni` as port `id`: its
    /// network's DNS address, written into the namespace's resolv.conf when the namespace is
    /// a named one that has none (crate::control::attach::ResolvFiles).
    pub(super) fn container_dns(&self, vni: Vni, id: PortId, netns: &str) -> Option<api::PortDns> {
        let net = self.topology.network(vni)?;
        let (ns, _) = net.service()?;
        let search = net.spec.name.clone();
        let written = match self.resolv.write(id.0, netns, ns, &search) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%netns, "cannot write the namespace's resolv.conf: {e}");
                None
            }
        };
        Some(api::PortDns {
            nameserver: ns.to_string(),
            search,
            resolv_conf: written.map(|p| p.display().to_string()),
        })
    }

    /// What each worker gets of a TAP port's `queues`: its own queue each (every worker reads
    /// its own), or, with one queue, that queue shared, read by worker `id mod workers` only
    /// (crate::control::attach::queues_per_port).
    pub(crate) fn tap_devices(
        &self,
        id: PortId,
        queues: Vec<crate::io::TapDevice>,
    ) -> (Vec<Box<dyn PortDevice>>, Option<usize>) {
        let n = self.workers.len();
        if queues.len() == n {
            let devices = queues
                .into_iter()
                .map(|q| Box::new(q) as Box<dyn PortDevice>)
                .collect();
            return (devices, None);
        }
        let tap = Arc::new(queues.into_iter().next().expect("a TAP has a queue"));
        let devices = (0..n)
            .map(|_| Box::new(Arc::clone(&tap)) as Box<dyn PortDevice>)
            .collect();
        (devices, Some(id.0 as usize % n))
    }

    pub(super) fn detach_namespace(
        &mut self,
        network: &str,
        netns: &str,
        ifname: &str,
    ) -> Result<serde_json::Value, ControlError> {
        let (network_s, ifname_s, netns_s) =
            (network.to_string(), ifname.to_string(), netns.to_string());
        let id = netns_identity(netns);
        let info = self.remove_port(
            Arc::new(move |_, m: &PortMeta| {
                m.kind == "tap"
                    && m.network == network_s
                    && m.ifname == ifname_s
                    && (m.netns.as_deref() == Some(netns_s.as_str())
                        || (id.is_some() && m.netns_id == id))
            }),
            format!("{ifname} in netns {netns} on network {network}"),
        )?;
        self.finish_detach(&info);
        Ok(info)
    }

    pub(super) fn attach_interface(
        &mut self,
        network: &str,
        interface: &str,
        ip: Option<&str>,
        mac: Option<&str>,
        limits: crate::switch::LimitSettings,
    ) -> Result<serde_json::Value, ControlError> {
        let addr = ip.map(parse_ip_or_prefix).transpose()?;
        let mac = mac.map(parse_station_mac).transpose()?;
        let (vni, mtu) = self.check_endpoint(network, addr.map(|a| a.addr()), mac)?;
        let id = PortId(self.next_port);
        let devices =
            self.open_packet_sockets(interface)
                .map_err(|source| ControlError::Interface {
                    interface: interface.to_string(),
                    source,
                })?;
        self.next_port += 1;
        let meta = PortMeta {
            name: interface.to_string(),
            kind: "af_packet",
            network: network.to_string(),
            vni: vni.get(),
            ifname: interface.to_string(),
            netns: None,
            netns_id: None,
            mac,
            ip: addr,
            mtu,
            attachment: None,
        };
        let endpoint = mac.zip(addr.map(|a| a.addr()));
        // The station behind an existing interface may be anything (a router, a host): no
        // port security there.
        let info = self.add_port(
            (devices, None),
            meta.clone(),
            vni,
            endpoint,
            id,
            PortRules {
                security: false,
                limits,
            },
        )?;
        self.remember_port(id, &meta, false, limits, false);
        Ok(info)
    }

    /// One packet socket per worker; with several, they share the interface's frames in a
    /// fanout group whose id the kernel picks unused (crate::io::af_packet).
    pub(super) fn open_packet_sockets(
        &self,
        interface: &str,
    ) -> Result<Vec<Box<dyn PortDevice>>, crate::io::IoError> {
        let rx = self.packet_rx;
        let sockets = if self.workers.len() == 1 {
            let opts = crate::io::PacketOptions {
                rx,
                ..Default::default()
            };
            vec![PacketSocket::open_with(interface, &opts)?]
        } else {
            PacketSocket::open_fanout_group_with(interface, self.workers.len(), rx)?
        };
        Ok(sockets
            .into_iter()
            .map(|s| Box::new(s) as Box<dyn PortDevice>)
            .collect())
    }

    pub(super) fn detach_interface(
        &mut self,
        network: &str,
        interface: &str,
    ) -> Result<serde_json::Value, ControlError> {
        let (network_s, interface_s) = (network.to_string(), interface.to_string());
        self.remove_port(
            Arc::new(move |_, m: &PortMeta| {
                m.kind == "af_packet" && m.network == network_s && m.ifname == interface_s
            }),
            format!("interface {interface} on network {network}"),
        )
    }
}

fn netns_path(spec: &str) -> PathBuf {
    if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        Path::new("/var/run/netns").join(spec)
    }
}

fn netns_label(spec: &str) -> String {
    if spec.contains('/') {
        spec.trim_start_matches("/proc/").replace('/', "-")
    } else {
        spec.to_string()
    }
}

fn netns_identity(spec: &str) -> Option<(u64, u64)> {
    std::fs::metadata(netns_path(spec))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}
