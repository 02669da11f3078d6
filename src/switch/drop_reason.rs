//! Why a frame or datagram was dropped. Every drop moves exactly one counter, listed by these
//! names in `vswitchctl show stats` (VPP's `vxlan_error.def` in spirit).

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $help:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason { $($variant,)* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = DropReason::ALL.len();

            /// snake_case name used in `show stats` and its JSON.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// One line for an operator reading the counters.
            pub fn help(self) -> &'static str {
                match self { $(DropReason::$variant => $help,)* }
            }
        }
    };
}

drop_reasons! {
    VxlanTruncated => "vxlan_truncated", "underlay datagram shorter than a VXLAN header";
    VxlanNoVniFlag => "vxlan_no_vni_flag", "VXLAN I flag clear (RFC 7348 §5): VNI not valid";
    UnknownPeer => "unknown_peer", "VXLAN from an address that is not a configured [[peer]]";
    UnknownVni => "unknown_vni", "VXLAN with a VNI no [[network]] uses: check vni on both hosts";
    PeerNotInNetwork => "peer_not_in_network", "VXLAN from a peer that is not in this network's peers";
    FrameTruncated => "frame_truncated", "frame shorter than an Ethernet header";
    BadSourceMac => "bad_source_mac", "source MAC is multicast or zero";
    SpoofedMac => "spoofed_mac", "a container sent from a MAC that is not its own (port security; attach with --no-port-security for a router)";
    SpoofedIp => "spoofed_ip", "a container sent IPv4 from an address that is not its own (port security)";
    SpoofedArp => "spoofed_arp", "a container sent ARP about an address or MAC that is not its own (port security)";
    PortMacLimit => "port_mac_limit", "a frame from a new source MAC at a port that already has its cap of learned MACs (max_macs; nothing learned is evicted): a container sending from many MACs";
    BumRateLimited => "bum_rate_limited", "broadcast/multicast/unknown-unicast over the port's rate (bum_rate, bum_burst): a storm from this container";
    FrameTooBig => "frame_too_big", "frame larger than the network MTU: check MTUs on both ends";
    Hairpin => "hairpin", "destination is behind the port the frame came from";
    SplitHorizon => "split_horizon", "frame from the underlay addressed to another remote host";
    NoRoute => "no_route", "no local port or peer to send to";
    UnknownPort => "unknown_port", "frame from a port that is no longer attached";
    BadOffload => "bad_offload", "a TSO super-frame from a container that could not be segmented";
    TxFailed => "tx_failed", "the kernel refused to send (see underlay tx_errors)";
    PlaintextOnEncrypted => "plaintext_on_encrypted", "plaintext VXLAN for an encrypted network: the peer is not encrypting (check encrypted/key_file there) or someone tries a downgrade";
    EspVniMismatch => "esp_vni_mismatch", "ESP of one network carried another network's VXLAN";
    DnsMalformed => "dns_malformed", "a datagram to the network's DNS address (port 53) that is not a DNS query";
    ToDnsAddress => "to_dns_address", "sent to the network's own address (its DNS server, Docker's gateway) but not DNS over UDP or TCP: vswitch networks do not route out";
    DnsTcpQuiet => "dns_tcp_quiet", "a TCP segment to the network's DNS address that needs no answer (an ACK, a reset, part of a query): taken, nothing sent";
    Mld => "mld", "an IPv6 MLD query, report or done: only multicast routers read them and the overlay has none (crate::switch::multicast)";
    RouterSolicitation => "router_solicitation", "an IPv6 router solicitation: vswitch networks have no IPv6 router";
    KnownAnnouncement => "known_announcement", "a peer's gratuitous ARP for a station the topology already holds: local stations get it from proxy-ARP";
    EspSealFailed => "esp_seal_failed", "could not encrypt (no key yet, or sequence exhausted): dropped, never sent in plaintext";
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::COUNT]);

impl DropCounters {
    pub fn count(&mut self, r: DropReason) {
        self.0[r as usize] += 1;
    }

    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r as usize]
    }

    /// Adds another copy's counts (another worker's).
    pub fn add(&mut self, o: &DropCounters) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a += b;
        }
    }

    /// Non-zero counters with their reasons.
    pub fn nonzero(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.get(*r)))
            .filter(|(_, n)| *n > 0)
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Non-zero counters by name, for the control API.
    pub fn to_map(&self) -> std::collections::BTreeMap<String, u64> {
        self.nonzero()
            .map(|(r, n)| (r.name().to_string(), n))
            .collect()
    }
}
