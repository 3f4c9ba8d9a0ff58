//! The NAT part of the model: `[nat]` (the outside port, masqueraded networks, ports, table size,
//! timeouts), `publish` on endpoints (Docker's `-p 4000:80`) and `[[services]]` (one published port balanced
//! over several endpoints).
//!
//! ```toml
//! [nat]
//! outside = "up"                   # a routed port: its IPv4 addresses are the external addresses
//! masquerade = ["red"]             # networks or routed ports; default: every bridge network with addresses
//!                                  # and every point-to-point network
//! port_range = "1024-65535"        # source ports (and ICMP identifiers) handed out, split among workers
//! max_sessions = 262144            # flows per worker
//! udp_mapping = "endpoint-independent"   # or "address-and-port-dependent" (RFC 4787)
//!
//! [[endpoints]]
//! name = "web"
//! publish = ["4000:80/tcp", "5353:53/udp", "192.0.2.10:8443:443/tcp"]
//!
//! [[services]]
//! name = "api"
//! publish = "8080:80/tcp"
//! backends = ["a", "b", "c"]       # endpoints; new flows spread by a Maglev table
//! ```

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Default dynamic port range.
pub const DEFAULT_PORT_RANGE: (u16, u16) = (1024, 65535);
/// Fewest ports a range may have per worker.
pub const MIN_PORTS_PER_WORKER: u32 = 64;
/// Default flows per worker.
pub const DEFAULT_MAX_SESSIONS: usize = 262_144;
/// Accepted `max_sessions`.
pub const MAX_SESSIONS_RANGE: std::ops::RangeInclusive<usize> =
    1..=pipelines::nat::conntrack::MAX_LIMIT;
/// Accepted timeouts in seconds (one second to 30 days).
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u32> = 1..=30 * 24 * 3600;

/// A transport protocol a port can be published for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// A published port, written `[HOST:]PORT[:TARGET]/PROTO`: `PORT` on `HOST` (default: every external
/// address) forwards to `TARGET` (default: `PORT`) on the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PublishSpec {
    /// The external address it listens on; `None`: every external address.
    pub host: Option<Ipv4Addr>,
    /// The external port.
    pub port: u16,
    /// The endpoint's port.
    pub target_port: u16,
    /// The protocol.
    pub proto: Proto,
}

impl fmt::Display for PublishSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = self.host {
            write!(f, "{h}:")?;
        }
        write!(f, "{}:{}/{}", self.port, self.target_port, self.proto)
    }
}

impl Serialize for PublishSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for PublishSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<PublishSpec, String> {
        let (ports, proto) = s.rsplit_once('/').ok_or_else(|| {
            format!("{s:?} has no protocol; write [HOST:]PORT[:TARGET]/tcp or /udp, e.g. \"4000:80/tcp\"")
        })?;
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            p => {
                return Err(format!(
                    "protocol {p:?} in {s:?}: only tcp and udp ports can be published"
                ))
            }
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (host, port, target) = match parts.as_slice() {
            [p] => (None, *p, *p),
            // `HOST:PORT` (an address has dots, a port none).
            [h, p] if h.contains('.') => (Some(*h), *p, *p),
            [p, t] => (None, *p, *t),
            [h, p, t] => (Some(*h), *p, *t),
            _ => {
                return Err(format!(
                    "{s:?} is not [HOST:]PORT[:TARGET]/PROTO (e.g. \"4000:80/tcp\" or \"192.0.2.1:53:53/udp\")"
                ))
            }
        };
        let host = host
            .map(|h| {
                h.parse::<Ipv4Addr>()
                    .map_err(|_| format!("{h:?} in {s:?} is not an IPv4 address"))
            })
            .transpose()?;
        let port_of = |p: &str| -> Result<u16, String> {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("{p:?} in {s:?} is not a port (1..=65535)")),
                Ok(v) => Ok(v),
            }
        };
        Ok(PublishSpec {
            host,
            port: port_of(port)?,
            target_port: port_of(target)?,
            proto,
        })
    }
}

/// How UDP flows from one inside (address, port) are mapped (RFC 4787).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UdpMapping {
    /// One external port for every destination (what games and VoIP expect; RFC 4787 REQ-1).
    EndpointIndependent,
    /// A port per destination, like TCP.
    AddressAndPortDependent,
}

impl UdpMapping {
    /// The written form.
    pub fn as_str(self) -> &'static str {
        match self {
            UdpMapping::EndpointIndependent => "endpoint-independent",
            UdpMapping::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

/// Conntrack timeouts in seconds (Linux's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NatTimeoutsCfg {
    /// `tcp_established_s` (5 days).
    pub tcp_established_s: u32,
    /// `tcp_transitory_s`: opening and closing states (2 min).
    pub tcp_transitory_s: u32,
    /// `tcp_close_s`: after an RST (10 s).
    pub tcp_close_s: u32,
    /// `udp_s`: UDP without a reply yet (30 s).
    pub udp_s: u32,
    /// `udp_assured_s`: UDP with traffic both ways (180 s).
    pub udp_assured_s: u32,
    /// `icmp_s`: ICMP echo (30 s).
    pub icmp_s: u32,
}

impl Default for NatTimeoutsCfg {
    fn default() -> Self {
        let d = pipelines::nat::conntrack::Timeouts::default();
        NatTimeoutsCfg {
            tcp_established_s: d.tcp_established,
            tcp_transitory_s: d.tcp_transitory,
            tcp_close_s: d.tcp_close,
            udp_s: d.udp_unreplied,
            udp_assured_s: d.udp_assured,
            icmp_s: d.icmp,
        }
    }
}

impl NatTimeoutsCfg {
    /// The conntrack form.
    pub fn to_timeouts(self) -> pipelines::nat::conntrack::Timeouts {
        pipelines::nat::conntrack::Timeouts {
            tcp_established: self.tcp_established_s,
            tcp_transitory: self.tcp_transitory_s,
            tcp_close: self.tcp_close_s,
            udp_unreplied: self.udp_s,
            udp_assured: self.udp_assured_s,
            icmp: self.icmp_s,
        }
    }
}

/// An endpoint's published port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublishedCfg {
    /// The endpoint (its `publish` list holds `spec`).
    pub endpoint: String,
    /// What is published.
    pub spec: PublishSpec,
}

/// `[nat]`: source and destination NAT through the outside port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NatCfg {
    /// `outside`: the routed port whose IPv4 addresses are the external addresses.
    pub outside: String,
    /// `masquerade`: networks (and routed ports) whose traffic leaving through `outside` takes an external
    /// address.
    pub masquerade: Vec<String>,
    /// `port_range = "LO-HI"`: source ports and ICMP identifiers handed out.
    pub port_range: (u16, u16),
    /// `max_sessions`: flows per worker.
    pub max_sessions: usize,
    /// `udp_mapping`.
    pub udp_mapping: UdpMapping,
    /// Timeouts (`tcp_established_s`, ...).
    #[serde(flatten)]
    pub timeouts: NatTimeoutsCfg,
    /// Every endpoint's `publish`, in file order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<PublishedCfg>,
}

/// `[[services]]`: one published port balanced over several endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceCfg {
    /// `name`: unique among services.
    pub name: String,
    /// `publish`: the port, as an endpoint's `publish` entry.
    pub publish: PublishSpec,
    /// `backends`: endpoints, each with an IPv4 address.
    pub backends: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_parse_and_print() {
        let p: PublishSpec = "4000:80/tcp".parse().unwrap();
        assert_eq!(
            (p.host, p.port, p.target_port, p.proto),
            (None, 4000, 80, Proto::Tcp)
        );
        assert_eq!(p.to_string(), "4000:80/tcp");
        let p: PublishSpec = "53/udp".parse().unwrap();
        assert_eq!((p.port, p.target_port, p.proto), (53, 53, Proto::Udp));
        let p: PublishSpec = "192.0.2.1:8443:443/tcp".parse().unwrap();
        assert_eq!(p.host, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(p.to_string().parse::<PublishSpec>().unwrap(), p);
        let p: PublishSpec = "192.0.2.1:53/udp".parse().unwrap();
        assert_eq!(
            (p.host, p.port, p.target_port),
            (Some(Ipv4Addr::new(192, 0, 2, 1)), 53, 53)
        );
        for bad in [
            "4000:80",
            "4000:80/sctp",
            "0:80/tcp",
            "70000/tcp",
            "a:1:2:3/tcp",
            "x.y:1:2/udp",
        ] {
            assert!(bad.parse::<PublishSpec>().is_err(), "{bad}");
        }
    }
}
