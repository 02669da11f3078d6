//! Packet/byte counters and counter families. Plain integers: each switch instance is owned by
//! one worker thread; `show` adds the workers' copies up as numbers (crate::dataplane::view).
//!
//! A counter family (`counter_family!`) is a struct of named `u64` counters whose field names
//! are also their names in `vswitchctl show stats --json`: the control layer embeds the family
//! in the API's types (crate::control::api), so a new counter is one line in its family and one
//! in the renderer. Families add up field by field (`add`).

use super::drop_reason::{DropCounters, DropReason};

/// Defines a counter family: a struct of `u64` fields with `add` (field by field) and `named`
/// (each counter with its name, in declaration order). Its serde form is its fields by name;
/// counters missing from a JSON object read as 0 (older daemons lack newer counters).
#[macro_export]
macro_rules! counter_family {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(default)]
        pub struct $name { $($(#[$fm])* pub $field: u64,)* }

        impl $name {
            /// Adds another copy's counts of the same things (another worker's).
            pub fn add(&mut self, o: &$name) {
                $(self.$field += o.$field;)*
            }

            /// Every counter with its name, in declaration order.
            pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($field), self.$field),)*].into_iter()
            }
        }
    };
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: DropCounters,
}

impl Counters {
    pub fn rx(&mut self, len: usize) {
        self.rx_packets += 1;
        self.rx_bytes += len as u64;
    }

    pub fn tx(&mut self, len: usize) {
        self.tx_packets += 1;
        self.tx_bytes += len as u64;
    }

    pub fn drop(&mut self, r: DropReason) {
        self.drops.count(r);
    }

    /// Adds another copy's counts of the same thing (another worker's).
    pub fn add(&mut self, o: &Counters) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.drops.add(&o.drops);
    }
}

counter_family! {
    /// What happened to one network's frames besides traffic and drops.
    pub struct NetworkEvents {
        pub flooded,
        pub proxy_arp_replies,
        pub fdb_learned,
        pub fdb_moves,
        /// New MACs not learned because the network's table was full (fdb_max_entries).
        pub fdb_full,
    }
}

counter_family! {
    /// DNS queries to the network's own address (crate::switch::dns), by what became of them.
    pub struct DnsCounters {
        /// Answered by the switch with a record or an empty NOERROR.
        pub answered,
        /// Answered NXDOMAIN: a name under the network's domain that no endpoint has.
        pub nxdomain,
        /// Answered FORMERR or NOTIMP.
        pub refused,
        /// Handed to the forwarder for the host's resolvers.
        pub forwarded,
        /// TCP connections opened to the network's DNS address (SYNs answered).
        pub tcp_connections,
    }
}

/// One network's counters on one worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkCounters {
    pub traffic: Counters,
    pub events: NetworkEvents,
    pub dns: DnsCounters,
}

impl NetworkCounters {
    pub fn add(&mut self, o: &NetworkCounters) {
        self.traffic.add(&o.traffic);
        self.events.add(&o.events);
        self.dns.add(&o.dns);
    }
}
