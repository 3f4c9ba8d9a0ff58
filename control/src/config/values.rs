//! Small value types of the configuration: [`MacAddr`], [`Ipv4Cidr`], [`Ipv6Cidr`] and [`IpCidr`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit Ethernet MAC address, written `02:00:00:00:00:01` (six pairs of hex digits separated by colons).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The all-zero address `00:00:00:00:00:00`.
    pub const ZERO: MacAddr = MacAddr([0; 6]);
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// The six octets, most significant first (wire order).
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// True when the group bit (least significant bit of the first octet) is set: multicast or broadcast.
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for an individual (unicast) address: group bit clear. The all-zero address counts as unicast here.
    pub const fn is_unicast(self) -> bool {
        !self.is_multicast()
    }

    /// True for `00:00:00:00:00:00`.
    pub fn is_zero(self) -> bool {
        self == Self::ZERO
    }

    /// True when the locally administered bit (second least significant bit of the first octet) is set.
    pub const fn is_local(self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }
}

impl From<MacAddr> for [u8; 6] {
    fn from(mac: MacAddr) -> Self {
        mac.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

/// Why a string is not a MAC address. Its `Display` is a complete sentence fragment such as
/// `invalid MAC address "02:00:00:00:01": expected six hex pairs like 02:00:00:00:00:01`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseMacError {
    input: String,
    why: &'static str,
}

impl fmt::Display for ParseMacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid MAC address {:?}: {}", self.input, self.why)
    }
}

impl std::error::Error for ParseMacError {}

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| ParseMacError {
            input: s.to_string(),
            why,
        };
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(':') {
            if n == 6 {
                return Err(err("more than six octets"));
            }
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err(
                    "expected six pairs of hex digits separated by colons, like 02:00:00:00:00:01",
                ));
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| {
                err("expected six pairs of hex digits separated by colons, like 02:00:00:00:00:01")
            })?;
            n += 1;
        }
        if n != 6 {
            return Err(err("fewer than six octets"));
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv4 interface address with its prefix length, written `10.77.0.1/24`.
///
/// Unlike a network prefix, the host bits are kept: `10.77.0.1/24` is the address `10.77.0.1` on the subnet
/// `10.77.0.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// `addr/prefix`; `None` when `prefix > 32`.
    pub const fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        if prefix > 32 {
            None
        } else {
            Some(Ipv4Cidr { addr, prefix })
        }
    }

    /// The address, host bits included.
    pub const fn addr(self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length, 0..=32.
    pub const fn prefix(self) -> u8 {
        self.prefix
    }

    /// The subnet mask, e.g. 255.255.255.0 for /24.
    pub fn netmask(self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits())
    }

    /// The network address: the address with the host bits cleared.
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask_bits())
    }

    /// The directed broadcast address: the address with the host bits set.
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask_bits())
    }

    /// True when `ip` is inside this subnet.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask_bits() == u32::from(self.addr) & self.mask_bits()
    }

    /// True when the address can be given to a host: for prefixes shorter than /31, neither the network nor the
    /// broadcast address of its subnet (/31 and /32 have no such reserved addresses, RFC 3021).
    pub fn is_host_address(self) -> bool {
        self.prefix >= 31 || (self.addr != self.network() && self.addr != self.broadcast())
    }

    fn mask_bits(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a string is not an IPv4 CIDR address; `Display` reads like
/// `invalid IPv4 CIDR "10.77.0.1": expected ADDRESS/PREFIX, like 10.77.0.1/24`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseCidrError {
    family: &'static str,
    input: String,
    why: String,
}

impl fmt::Display for ParseCidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} CIDR {:?}: {}",
            self.family, self.input, self.why
        )
    }
}

impl std::error::Error for ParseCidrError {}

impl FromStr for Ipv4Cidr {
    type Err = ParseCidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: String| ParseCidrError {
            family: "IPv4",
            input: s.to_string(),
            why,
        };
        let Some((addr, prefix)) = s.split_once('/') else {
            return Err(err("expected ADDRESS/PREFIX, like 10.77.0.1/24".into()));
        };
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| err(format!("{addr:?} is not an IPv4 address")))?;
        let prefix: u8 = match prefix.parse::<u8>() {
            Ok(p) if p <= 32 && !prefix.starts_with('+') => p,
            _ => {
                return Err(err(format!(
                    "prefix length {prefix:?} is not a number in 0..=32"
                )))
            }
        };
        Ok(Ipv4Cidr { addr, prefix })
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv6 interface address with its prefix length, written `fd00:1::1/64` (host bits kept, like
/// [`Ipv4Cidr`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Cidr {
    addr: Ipv6Addr,
    prefix: u8,
}

impl Ipv6Cidr {
    /// `addr/prefix`; `None` when `prefix > 128`.
    pub const fn new(addr: Ipv6Addr, prefix: u8) -> Option<Self> {
        if prefix > 128 {
            None
        } else {
            Some(Ipv6Cidr { addr, prefix })
        }
    }

    /// The address, host bits included.
    pub const fn addr(self) -> Ipv6Addr {
        self.addr
    }

    /// The prefix length, 0..=128.
    pub const fn prefix(self) -> u8 {
        self.prefix
    }

    /// The network address: host bits cleared.
    pub fn network(self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) & self.mask_bits())
    }

    /// True when `ip` is inside this prefix.
    pub fn contains(self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask_bits() == u128::from(self.addr) & self.mask_bits()
    }

    fn mask_bits(self) -> u128 {
        if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        }
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv6Cidr {
    type Err = ParseCidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: String| ParseCidrError {
            family: "IPv6",
            input: s.to_string(),
            why,
        };
        let Some((addr, prefix)) = s.split_once('/') else {
            return Err(err("expected ADDRESS/PREFIX, like fd00:1::1/64".into()));
        };
        let addr: Ipv6Addr = addr
            .parse()
            .map_err(|_| err(format!("{addr:?} is not an IPv6 address")))?;
        let prefix: u8 = match prefix.parse::<u8>() {
            Ok(p) if p <= 128 && !prefix.starts_with('+') => p,
            _ => {
                return Err(err(format!(
                    "prefix length {prefix:?} is not a number in 0..=128"
                )))
            }
        };
        Ok(Ipv6Cidr { addr, prefix })
    }
}

/// An IPv4 or IPv6 address with its prefix length (interface addresses, route prefixes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpCidr {
    /// IPv4.
    V4(Ipv4Cidr),
    /// IPv6.
    V6(Ipv6Cidr),
}

impl IpCidr {
    /// `addr/prefix` of either family; `None` when the prefix is too long for the family.
    pub fn from_parts(addr: IpAddr, prefix: u8) -> Option<IpCidr> {
        match addr {
            IpAddr::V4(a) => Ipv4Cidr::new(a, prefix).map(IpCidr::V4),
            IpAddr::V6(a) => Ipv6Cidr::new(a, prefix).map(IpCidr::V6),
        }
    }

    /// The address, host bits included.
    pub fn addr(self) -> IpAddr {
        match self {
            IpCidr::V4(c) => IpAddr::V4(c.addr()),
            IpCidr::V6(c) => IpAddr::V6(c.addr()),
        }
    }

    /// The prefix length.
    pub fn prefix(self) -> u8 {
        match self {
            IpCidr::V4(c) => c.prefix(),
            IpCidr::V6(c) => c.prefix(),
        }
    }

    /// The network address (host bits cleared).
    pub fn network(self) -> IpAddr {
        match self {
            IpCidr::V4(c) => IpAddr::V4(c.network()),
            IpCidr::V6(c) => IpAddr::V6(c.network()),
        }
    }

    /// True when `ip` (of the same family) is inside the prefix.
    pub fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (IpCidr::V4(c), IpAddr::V4(a)) => c.contains(a),
            (IpCidr::V6(c), IpAddr::V6(a)) => c.contains(a),
            _ => false,
        }
    }

    /// True when both prefixes share an address.
    pub fn overlaps(self, other: IpCidr) -> bool {
        let (a, b) = if self.prefix() <= other.prefix() {
            (self, other)
        } else {
            (other, self)
        };
        a.contains(b.network())
    }

    /// True for IPv4.
    pub fn is_v4(self) -> bool {
        matches!(self, IpCidr::V4(_))
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpCidr::V4(c) => c.fmt(f),
            IpCidr::V6(c) => c.fmt(f),
        }
    }
}

impl FromStr for IpCidr {
    type Err = ParseCidrError;

    /// An IPv6 CIDR when the address part has a colon, else IPv4. The error names the family only when the
    /// address part is an address of it: `invalid IPv4 CIDR "10.0.0.1/33": prefix length ...`, but
    /// `invalid IP CIDR "10.0.0/24": "10.0.0" is not an IP address`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.split('/').next().is_some_and(|a| a.contains(':')) {
            return s.parse().map(IpCidr::V6);
        }
        s.parse()
            .map(IpCidr::V4)
            .map_err(|e: ParseCidrError| match s.split_once('/') {
                Some((addr, _)) if addr.parse::<Ipv4Addr>().is_ok() => e,
                Some((addr, _)) => ParseCidrError {
                    family: "IP",
                    why: format!("{addr:?} is not an IP address"),
                    ..e
                },
                None => ParseCidrError {
                    family: "IP",
                    why: "expected ADDRESS/PREFIX, like 10.77.0.1/24 or fd00:1::1/64".into(),
                    ..e
                },
            })
    }
}

macro_rules! serde_by_str {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

serde_by_str!(Ipv6Cidr, IpCidr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m: MacAddr = "02:00:00:00:00:0A".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0, 0, 0, 10]);
        assert_eq!(m.to_string(), "02:00:00:00:00:0a");
        assert!(m.is_unicast() && m.is_local() && !m.is_zero());
        assert!(MacAddr::BROADCAST.is_multicast());
        let m: MacAddr = "01:00:5e:00:00:01".parse().unwrap();
        assert!(m.is_multicast());
    }

    #[test]
    fn mac_rejects() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "02-00-00-00-00-00",
            "2:00:00:00:00:00",
            "02:00:00:00:00:0g",
            "02:00:00:00:00:+1",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?}");
        }
        let e = "02:00:00:00:01".parse::<MacAddr>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid MAC address \"02:00:00:00:01\": fewer than six octets"
        );
    }

    #[test]
    fn cidr() {
        let c: Ipv4Cidr = "10.77.0.1/24".parse().unwrap();
        assert_eq!(c.addr(), Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(c.prefix(), 24);
        assert_eq!(c.network(), Ipv4Addr::new(10, 77, 0, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 77, 0, 255));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(c.contains(Ipv4Addr::new(10, 77, 0, 254)));
        assert!(!c.contains(Ipv4Addr::new(10, 78, 0, 1)));
        assert!(c.is_host_address());
        assert!(!"10.77.0.0/24"
            .parse::<Ipv4Cidr>()
            .unwrap()
            .is_host_address());
        assert!(!"10.77.0.255/24"
            .parse::<Ipv4Cidr>()
            .unwrap()
            .is_host_address());
        assert!("10.77.0.0/31"
            .parse::<Ipv4Cidr>()
            .unwrap()
            .is_host_address());
        let all: Ipv4Cidr = "1.2.3.4/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(200, 1, 1, 1)));
        assert_eq!(c.to_string(), "10.77.0.1/24");
        for bad in [
            "10.77.0.1",
            "10.77.0/24",
            "10.77.0.1/33",
            "10.77.0.1/",
            "10.77.0.1/+8",
            "x/8",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ip_cidr() {
        let c: IpCidr = "fd00:1::1/64".parse().unwrap();
        assert!(!c.is_v4());
        assert_eq!(c.network(), "fd00:1::".parse::<IpAddr>().unwrap());
        assert!(c.contains("fd00:1::ffff".parse().unwrap()));
        assert!(!c.contains("fd00:2::1".parse().unwrap()));
        assert!(!c.contains("10.0.0.1".parse().unwrap()));
        let v4: IpCidr = "10.1.0.1/24".parse().unwrap();
        assert!(v4.is_v4() && v4.contains("10.1.0.200".parse().unwrap()));
        assert!(v4.overlaps("10.0.0.0/8".parse().unwrap()));
        assert!(!v4.overlaps("10.2.0.0/16".parse().unwrap()));
        assert!(!v4.overlaps(c));
        assert_eq!(c.to_string(), "fd00:1::1/64");
        assert_eq!(
            "fd00::1/129".parse::<IpCidr>().unwrap_err().to_string(),
            "invalid IPv6 CIDR \"fd00::1/129\": prefix length \"129\" is not a number in 0..=128"
        );
        assert_eq!(
            "10.0.0.1".parse::<IpCidr>().unwrap_err().to_string(),
            "invalid IP CIDR \"10.0.0.1\": expected ADDRESS/PREFIX, like 10.77.0.1/24 or fd00:1::1/64"
        );
        for (bad, why) in [
            (
                "",
                "invalid IP CIDR \"\": expected ADDRESS/PREFIX, like 10.77.0.1/24 or fd00:1::1/64",
            ),
            (
                "10.0.0/24",
                "invalid IP CIDR \"10.0.0/24\": \"10.0.0\" is not an IP address",
            ),
            ("x/8", "invalid IP CIDR \"x/8\": \"x\" is not an IP address"),
            (
                "10.0.0.1/33",
                "invalid IPv4 CIDR \"10.0.0.1/33\": prefix length \"33\" is not a number in 0..=32",
            ),
            (
                "fd00::1",
                "invalid IPv6 CIDR \"fd00::1\": expected ADDRESS/PREFIX, like fd00:1::1/64",
            ),
            (
                "fd00::g/64",
                "invalid IPv6 CIDR \"fd00::g/64\": \"fd00::g\" is not an IPv6 address",
            ),
        ] {
            assert_eq!(
                bad.parse::<IpCidr>().unwrap_err().to_string(),
                why,
                "{bad:?}"
            );
        }
    }
}
