//! Host-local IP address management (IPAM), like CNI's `host-local` plugin.
//!
//! Each network has one address pool, a [`PoolSpec`]: a subnet (IPv4 or IPv6), optionally a range inside it, a
//! gateway and reserved addresses. [`Ipam`] hands out addresses of the pool to owners (endpoints) round robin, as
//! host-local does: the next free address after the last one handed out, wrapping around at the end of the range,
//! so a released address is not given to the next endpoint at once. A lease is stable: an owner asking again gets
//! the address it holds, also after a restart when the leases are kept in a state directory
//! (`<state_dir>/ipam/<network>.json`).
//!
//! The **allocatable** addresses of a pool are the host addresses of the subnet inside the range (the whole subnet
//! when there is no range), except the gateway and the reserved addresses. The host addresses are all addresses
//! but the network address and, for IPv4, the broadcast address; a subnet with a single bit of host part or none
//! (IPv4 /31 and /32, IPv6 /127 and /128) has no such special addresses (RFC 3021, RFC 6164): every address of it
//! is a host address.
//!
//! Addresses are handled as `u128` numbers, so an IPv6 pool of any size (a /64 holds 2^64 addresses) costs no
//! memory: nothing is enumerated, and an allocation steps over at most as many addresses as there are leases and
//! reserved addresses.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How many leases an exhaustion error lists before `and N more`.
const MAX_LISTED: usize = 4;

/// The longest network name accepted (it names the state file).
const MAX_NETWORK_NAME: usize = 200;

/// An address as a number: IPv4 addresses take the low 32 bits.
fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address numbered `x` in the IPv6 (`v6`) or IPv4 space.
fn from_bits(v6: bool, x: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(x))
    } else {
        IpAddr::V4(Ipv4Addr::from(x as u32))
    }
}

/// The number of bits of an address of `ip`'s family.
fn family_width(ip: IpAddr) -> u8 {
    if ip.is_ipv6() {
        128
    } else {
        32
    }
}

fn family_name(ip: IpAddr) -> &'static str {
    if ip.is_ipv6() {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// An IPv4 or IPv6 subnet: an address and a prefix length, written `10.1.0.0/24` or `fd00::/64`.
///
/// The address is kept as given; [`Subnet::network`] clears its host bits. [`PoolSpec::check`] refuses a pool
/// whose subnet address has host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subnet {
    addr: IpAddr,
    len: u8,
}

impl Subnet {
    /// `addr/len`; `None` when `len` is longer than the address (more than 32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, len: u8) -> Option<Subnet> {
        (len <= family_width(addr)).then_some(Subnet { addr, len })
    }

    /// The address as given, host bits included.
    pub fn addr(self) -> IpAddr {
        self.addr
    }

    /// The prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub fn prefix_len(self) -> u8 {
        self.len
    }

    /// True for an IPv6 subnet.
    pub fn is_ipv6(self) -> bool {
        self.addr.is_ipv6()
    }

    /// The number of host bits: 32 or 128 minus the prefix length.
    fn host_bits(self) -> u8 {
        family_width(self.addr) - self.len
    }

    /// The host part as a mask: the low `host_bits` bits set.
    fn host_mask(self) -> u128 {
        match self.host_bits() {
            128 => u128::MAX,
            h => (1u128 << h) - 1,
        }
    }

    /// True when the subnet has a network address and (IPv4) a broadcast address that no host may use: prefixes
    /// shorter than /31 (IPv6: /127).
    fn has_special_addresses(self) -> bool {
        self.host_bits() >= 2
    }

    fn network_bits(self) -> u128 {
        to_bits(self.addr) & !self.host_mask()
    }

    fn last_bits(self) -> u128 {
        self.network_bits() | self.host_mask()
    }

    fn first_host_bits(self) -> u128 {
        if self.has_special_addresses() {
            self.network_bits() + 1
        } else {
            self.network_bits()
        }
    }

    fn last_host_bits(self) -> u128 {
        if self.has_special_addresses() && !self.is_ipv6() {
            self.last_bits() - 1
        } else {
            self.last_bits()
        }
    }

    /// The network address: the address with the host bits cleared (`10.1.0.0` for `10.1.0.7/24`).
    pub fn network(self) -> IpAddr {
        from_bits(self.is_ipv6(), self.network_bits())
    }

    /// The IPv4 directed broadcast address, all host bits set (`10.1.0.255` for `10.1.0.0/24`); `None` for IPv6,
    /// which has no broadcast.
    pub fn broadcast(self) -> Option<IpAddr> {
        (!self.is_ipv6()).then(|| from_bits(false, self.last_bits()))
    }

    /// True when `ip` is inside this subnet (an address of the other family never is).
    pub fn contains(self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.is_ipv6() && to_bits(ip) & !self.host_mask() == self.network_bits()
    }

    /// The lowest host address: the one after the network address (`10.1.0.1` for `10.1.0.0/24`, `fd00::1` for
    /// `fd00::/64`); for /31 and /32 (IPv6 /127 and /128) the network address itself, which is a host address
    /// there (RFC 3021, RFC 6164).
    pub fn first_host(self) -> IpAddr {
        from_bits(self.is_ipv6(), self.first_host_bits())
    }

    /// The highest host address: for IPv4 the one before the broadcast address (`10.1.0.254` for `10.1.0.0/24`),
    /// for IPv6 the last address of the subnet; for /31 and /32 (IPv6 /127 and /128) the last address.
    pub fn last_host(self) -> IpAddr {
        from_bits(self.is_ipv6(), self.last_host_bits())
    }

    /// What `ip` is to this subnet if no host may use it: `"network address"` or `"broadcast address"`.
    fn special_role(self, ip: IpAddr) -> Option<&'static str> {
        if !self.has_special_addresses() || !self.contains(ip) {
            None
        } else if to_bits(ip) == self.network_bits() {
            Some("network address")
        } else if !self.is_ipv6() && to_bits(ip) == self.last_bits() {
            Some("broadcast address")
        } else {
            None
        }
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl From<Subnet> for (IpAddr, u8) {
    fn from(s: Subnet) -> (IpAddr, u8) {
        (s.addr, s.len)
    }
}

/// Why a string is not a subnet; `Display` reads like
/// `invalid subnet "10.1.0.0": expected ADDRESS/PREFIX, like 10.1.0.0/24 or fd00::/64`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid subnet {input:?}: {why}")]
pub struct ParseSubnetError {
    input: String,
    why: String,
}

impl FromStr for Subnet {
    type Err = ParseSubnetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: String| ParseSubnetError {
            input: s.to_string(),
            why,
        };
        let Some((addr, len)) = s.split_once('/') else {
            return Err(err(
                "expected ADDRESS/PREFIX, like 10.1.0.0/24 or fd00::/64".into(),
            ));
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| err(format!("{addr:?} is not an IPv4 or IPv6 address")))?;
        let max = family_width(addr);
        match len.parse::<u8>() {
            Ok(n) if n <= max && !len.starts_with('+') => Ok(Subnet { addr, len: n }),
            _ => Err(err(format!(
                "prefix length {len:?} is not a number in 0..={max} (an {} address has {max} bits)",
                family_name(addr)
            ))),
        }
    }
}

/// The address pool of one network, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// The subnet: its network address and prefix length, like `(10.1.0.0, 24)` or `(fd00::, 64)`.
    pub subnet: (IpAddr, u8),
    /// The gateway: an address of the pool's owner (the router), never handed out. `None`: the first host address
    /// of the subnet (`10.1.0.1` for `10.1.0.0/24`).
    pub gateway: Option<IpAddr>,
    /// The addresses to hand out: `start..=end`, both inside the subnet. `None`: the whole subnet.
    pub range: Option<(IpAddr, IpAddr)>,
    /// Addresses of the subnet that [`Ipam::allocate`] never hands out; [`Ipam::reserve`] may still give them to
    /// endpoints with static addresses.
    pub reserved: Vec<IpAddr>,
}

impl PoolSpec {
    /// A pool of the whole subnet, with the default gateway and nothing reserved.
    pub fn new(subnet: Subnet) -> PoolSpec {
        PoolSpec {
            subnet: subnet.into(),
            gateway: None,
            range: None,
            reserved: Vec::new(),
        }
    }

    /// Checks the pool and computes its allocatable addresses: the prefix length fits the address, the subnet
    /// address has no host bits set, the gateway and the reserved addresses are inside the subnet, the gateway is
    /// neither its network nor its broadcast address, the range is inside the subnet with `start <= end`, and at
    /// least one address is allocatable.
    pub fn check(&self) -> Result<Pool, PoolError> {
        let (addr, len) = self.subnet;
        let subnet = Subnet::new(addr, len).ok_or(PoolError::BadPrefix { addr, len })?;
        if subnet.network() != addr {
            return Err(PoolError::HostBits {
                addr,
                len,
                network: subnet.network(),
            });
        }
        let inside = |what: &'static str, ip: IpAddr| {
            if subnet.contains(ip) {
                Ok(())
            } else {
                Err(PoolError::Outside {
                    what,
                    addr: ip,
                    subnet,
                })
            }
        };
        let gateway = match self.gateway {
            Some(gw) => {
                inside("gateway", gw)?;
                if let Some(role) = subnet.special_role(gw) {
                    return Err(PoolError::GatewayNotHost {
                        addr: gw,
                        role,
                        subnet,
                    });
                }
                gw
            }
            None => subnet.first_host(),
        };
        let (mut lo, mut hi) = (subnet.first_host_bits(), subnet.last_host_bits());
        if let Some((start, end)) = self.range {
            inside("range start", start)?;
            inside("range end", end)?;
            if to_bits(start) > to_bits(end) {
                return Err(PoolError::EmptyRange { start, end });
            }
            lo = lo.max(to_bits(start));
            hi = hi.min(to_bits(end));
            if lo > hi {
                return Err(PoolError::NoHostInRange { start, end, subnet });
            }
        }
        for &r in &self.reserved {
            inside("reserved address", r)?;
        }
        let mut excluded: Vec<u128> = std::iter::once(gateway)
            .chain(self.reserved.iter().copied())
            .map(to_bits)
            .filter(|x| (lo..=hi).contains(x))
            .collect();
        excluded.sort_unstable();
        excluded.dedup();
        // lo >= 1 unless the subnet has no special addresses, so hi - lo + 1 cannot overflow: the largest pool,
        // ::/0, has 2^128 - 1 host addresses.
        let count = (hi - lo + 1) - excluded.len() as u128;
        let pool = Pool {
            subnet,
            range: self.range,
            gateway: to_bits(gateway),
            lo,
            hi,
            excluded,
            count,
        };
        if count == 0 {
            return Err(PoolError::NoAllocatable {
                subnet,
                range: self.range,
                first: pool.addr(lo),
                last: pool.addr(hi),
                gateway,
            });
        }
        Ok(pool)
    }
}

/// Checks a pool for the config checker: `Err` holds the reason, like `range 10.1.0.9-10.1.0.3 is empty`
/// (see [`PoolSpec::check`] for the rules).
pub fn validate(pool: &PoolSpec) -> Result<(), String> {
    pool.check().map(drop).map_err(|e| e.to_string())
}

/// A checked pool ([`PoolSpec::check`]): its allocatable addresses, without enumerating them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    subnet: Subnet,
    range: Option<(IpAddr, IpAddr)>,
    gateway: u128,
    /// The lowest and highest host address inside the range.
    lo: u128,
    hi: u128,
    /// The gateway and the reserved addresses in `lo..=hi`, sorted, without duplicates.
    excluded: Vec<u128>,
    /// The number of allocatable addresses, at least 1.
    count: u128,
}

impl Pool {
    fn addr(&self, x: u128) -> IpAddr {
        from_bits(self.subnet.is_ipv6(), x)
    }

    /// The subnet.
    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    /// The gateway, configured or the default one.
    pub fn gateway(&self) -> IpAddr {
        self.addr(self.gateway)
    }

    /// The lowest and the highest host address inside the range: every allocatable address lies between them.
    pub fn bounds(&self) -> (IpAddr, IpAddr) {
        (self.addr(self.lo), self.addr(self.hi))
    }

    /// The number of allocatable addresses (at least 1; up to 2^128 - 1 for `::/0`).
    pub fn allocatable(&self) -> u128 {
        self.count
    }

    /// True when [`Ipam::allocate`] may hand out `ip` from this pool.
    pub fn is_allocatable(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.subnet.is_ipv6() && self.is_allocatable_bits(to_bits(ip))
    }

    fn is_allocatable_bits(&self, x: u128) -> bool {
        (self.lo..=self.hi).contains(&x) && self.excluded.binary_search(&x).is_err()
    }

    /// Why `ip` cannot be given to any endpoint, even as a static address: its role in the pool.
    fn role_of(&self, ip: IpAddr) -> Option<&'static str> {
        if to_bits(ip) == self.gateway {
            Some("gateway")
        } else {
            self.subnet.special_role(ip)
        }
    }
}

/// `pool 10.1.0.0/24` or `pool 10.1.0.0/24 range 10.1.0.10-10.1.0.20`.
fn pool_name(subnet: &Subnet, range: &Option<(IpAddr, IpAddr)>) -> String {
    match range {
        None => format!("pool {subnet}"),
        Some((start, end)) => format!("pool {subnet} range {start}-{end}"),
    }
}

/// `1 allocatable address`, `5 allocatable addresses`.
fn addresses(n: &u128) -> String {
    if *n == 1 {
        "1 allocatable address".into()
    } else {
        format!("{n} allocatable addresses")
    }
}

/// `a=10.1.0.2, b=10.1.0.3, and 7 more`.
fn owners_list(leased: &[(String, IpAddr)], more: &usize) -> String {
    let mut s = leased
        .iter()
        .map(|(owner, ip)| format!("{owner}={ip}"))
        .collect::<Vec<_>>()
        .join(", ");
    if *more > 0 {
        s.push_str(&format!(", and {more} more"));
    }
    s
}

/// Why a [`PoolSpec`] is invalid. `Display` gives the reason without the network's name, for the config checker.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The prefix length is longer than the address.
    #[error("prefix length /{len} is too long for an {} subnet (at most /{})", family_name(*.addr), family_width(*.addr))]
    BadPrefix {
        /// The subnet address.
        addr: IpAddr,
        /// The prefix length.
        len: u8,
    },
    /// The subnet address has host bits set.
    #[error("subnet {addr}/{len} has host bits set: the network address of a /{len} holding {addr} is {network} (write {network}/{len})")]
    HostBits {
        /// The subnet address as given.
        addr: IpAddr,
        /// The prefix length.
        len: u8,
        /// The network address.
        network: IpAddr,
    },
    /// An address of the pool is outside its subnet.
    #[error("{what} {addr} is outside subnet {subnet}")]
    Outside {
        /// `gateway`, `range start`, `range end` or `reserved address`.
        what: &'static str,
        /// The address.
        addr: IpAddr,
        /// The subnet.
        subnet: Subnet,
    },
    /// The gateway is the network or the broadcast address of the subnet.
    #[error("gateway {addr} is the {role} of subnet {subnet}, not a host address")]
    GatewayNotHost {
        /// The gateway.
        addr: IpAddr,
        /// `network address` or `broadcast address`.
        role: &'static str,
        /// The subnet.
        subnet: Subnet,
    },
    /// The range ends before it starts.
    #[error("range {start}-{end} is empty")]
    EmptyRange {
        /// The first address of the range.
        start: IpAddr,
        /// The last address of the range.
        end: IpAddr,
    },
    /// The range holds only the network or broadcast address.
    #[error("range {start}-{end} holds no host address of subnet {subnet} (only its network or broadcast address)")]
    NoHostInRange {
        /// The first address of the range.
        start: IpAddr,
        /// The last address of the range.
        end: IpAddr,
        /// The subnet.
        subnet: Subnet,
    },
    /// The gateway and the reserved addresses take every host address of the range.
    #[error("{} has no allocatable address: {first}-{last} holds only the gateway {gateway} and reserved addresses", pool_name(.subnet, .range))]
    NoAllocatable {
        /// The subnet.
        subnet: Subnet,
        /// The range, if one is configured.
        range: Option<(IpAddr, IpAddr)>,
        /// The lowest host address inside the range.
        first: IpAddr,
        /// The highest host address inside the range.
        last: IpAddr,
        /// The gateway.
        gateway: IpAddr,
    },
}

/// Why an [`Ipam`] operation failed. Every message names the network or the file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpamError {
    /// The pool is invalid.
    #[error("network {network:?}: {error}")]
    Pool {
        /// The network.
        network: String,
        /// Why the pool is invalid.
        error: Box<PoolError>,
    },
    /// Every allocatable address is leased.
    #[error("network {network:?}: {} is exhausted: {}, all leased ({})", pool_name(.subnet, .range), addresses(.allocatable), owners_list(.leased, .more))]
    Exhausted {
        /// The network.
        network: String,
        /// The pool's subnet.
        subnet: Subnet,
        /// The pool's range, if one is configured.
        range: Option<(IpAddr, IpAddr)>,
        /// The number of allocatable addresses.
        allocatable: u128,
        /// The first few leases in the pool, by address.
        leased: Vec<(String, IpAddr)>,
        /// How many more leases the pool holds.
        more: usize,
    },
    /// A static address is outside the pool's subnet.
    #[error("network {network:?}: {addr} is outside subnet {subnet}")]
    OutsideSubnet {
        /// The network.
        network: String,
        /// The address asked for.
        addr: IpAddr,
        /// The pool's subnet.
        subnet: Subnet,
    },
    /// A static address is the gateway, the network or the broadcast address.
    #[error("network {network:?}: {addr} is the {role} of subnet {subnet} and cannot be leased")]
    NotLeasable {
        /// The network.
        network: String,
        /// The address asked for.
        addr: IpAddr,
        /// `gateway`, `network address` or `broadcast address`.
        role: &'static str,
        /// The pool's subnet.
        subnet: Subnet,
    },
    /// A static address is leased to another owner.
    #[error("network {network:?}: {addr} is already leased to {owner:?}")]
    Leased {
        /// The network.
        network: String,
        /// The address asked for.
        addr: IpAddr,
        /// The owner holding it.
        owner: String,
    },
    /// The network name cannot name a state file.
    #[error("invalid network name {network:?}: {why}")]
    BadNetworkName {
        /// The name.
        network: String,
        /// Why it is invalid.
        why: String,
    },
    /// Reading or writing the state failed.
    #[error("cannot {action} {}: {error}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done: `read`, `write`, `create directory`...
        action: &'static str,
        /// The error.
        error: io::Error,
    },
    /// A state file does not parse or holds contradicting leases.
    #[error("{}: corrupt IPAM state file: {reason} (repair or move it away; wharf does not discard leases)", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Why `network` cannot name a state file, if it cannot.
fn check_network_name(network: &str) -> Result<(), IpamError> {
    let why = if network.is_empty() {
        "it is empty".to_string()
    } else if network.len() > MAX_NETWORK_NAME {
        format!(
            "it is {} bytes long (at most {MAX_NETWORK_NAME})",
            network.len()
        )
    } else if network.starts_with('.') {
        "it starts with '.'".to_string()
    } else if let Some(c) = network
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        format!("it has the character {c:?} (use a-z, A-Z, 0-9, _, - and .)")
    } else {
        return Ok(());
    };
    Err(IpamError::BadNetworkName {
        network: network.to_string(),
        why,
    })
}

/// The leases of one network, as stored in `<state_dir>/ipam/<network>.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetState {
    /// Owner to address.
    leases: BTreeMap<String, IpAddr>,
    /// The last address handed out by `allocate`, by pool subnet (`10.1.0.0/24`): the round robin resumes after it.
    #[serde(default)]
    last_allocated: BTreeMap<String, IpAddr>,
}

impl NetState {
    /// The owner holding `ip`, other than `except`.
    fn holder(&self, ip: IpAddr, except: &str) -> Option<&str> {
        self.leases
            .iter()
            .find(|(o, a)| **a == ip && o.as_str() != except)
            .map(|(o, _)| o.as_str())
    }

    /// Why a loaded state is contradictory: an address leased to two owners.
    fn contradiction(&self) -> Option<String> {
        let mut seen: HashMap<IpAddr, &str> = HashMap::new();
        for (owner, ip) in &self.leases {
            if let Some(first) = seen.insert(*ip, owner) {
                return Some(format!("{ip} is leased to both {first:?} and {owner:?}"));
            }
        }
        None
    }
}

/// Host-local IPAM: the leases of every network, persisted in a state directory or kept in memory.
#[derive(Debug)]
pub struct Ipam {
    /// `<state_dir>/ipam`, when leases persist.
    dir: Option<PathBuf>,
    nets: HashMap<String, NetState>,
}

impl Ipam {
    /// Opens the leases. With a state directory they persist in `<state_dir>/ipam/<network>.json` (the directory
    /// is created with mode 0700 if missing) and every such file is loaded now: a file that does not parse is an
    /// error naming it, never silently dropped. Without one, leases live in memory only.
    pub fn open(state_dir: Option<&Path>) -> Result<Ipam, IpamError> {
        let Some(state_dir) = state_dir else {
            return Ok(Ipam {
                dir: None,
                nets: HashMap::new(),
            });
        };
        let dir = state_dir.join("ipam");
        let io_err = |path: &Path, action, error| IpamError::Io {
            path: path.to_path_buf(),
            action,
            error,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_err(&dir, "create directory", e))?;
        let mut nets = HashMap::new();
        let entries = fs::read_dir(&dir).map_err(|e| io_err(&dir, "read directory", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&dir, "read directory", e))?;
            let path = entry.path();
            let Some(network) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_string)
            else {
                continue;
            };
            if check_network_name(&network).is_err() {
                continue; // not a file of ours (our temporary files start with '.')
            }
            let text = fs::read(&path).map_err(|e| io_err(&path, "read", e))?;
            let state: NetState =
                serde_json::from_slice(&text).map_err(|e| IpamError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            if let Some(reason) = state.contradiction() {
                return Err(IpamError::Corrupt { path, reason });
            }
            nets.insert(network, state);
        }
        Ok(Ipam {
            dir: Some(dir),
            nets,
        })
    }

    /// The networks holding state (leases or a round-robin position), sorted.
    pub fn networks(&self) -> Vec<String> {
        let mut v: Vec<String> = self.nets.keys().cloned().collect();
        v.sort();
        v
    }

    /// The address leased to `owner` in `network`, if any.
    pub fn lease(&self, network: &str, owner: &str) -> Option<IpAddr> {
        self.nets.get(network)?.leases.get(owner).copied()
    }

    /// The leases of `network` as (owner, address), sorted by address.
    pub fn leases(&self, network: &str) -> Vec<(String, IpAddr)> {
        let mut v: Vec<(String, IpAddr)> = self
            .nets
            .get(network)
            .map(|s| s.leases.iter().map(|(o, a)| (o.clone(), *a)).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        v
    }

    /// An address of `pool` for `owner` in `network`. If the owner already holds a lease there that is still
    /// allocatable from `pool`, that address, unchanged (also across restarts). Otherwise the next allocatable
    /// address that nobody holds after the last one handed out, wrapping around at the end of the range (the
    /// range's start when nothing was handed out yet); it replaces the owner's old lease and is persisted before
    /// it is returned.
    pub fn allocate(
        &mut self,
        network: &str,
        pool: &PoolSpec,
        owner: &str,
    ) -> Result<IpAddr, IpamError> {
        check_network_name(network)?;
        let p = pool.check().map_err(|error| IpamError::Pool {
            network: network.to_string(),
            error: Box::new(error),
        })?;
        let mut state = self.nets.get(network).cloned().unwrap_or_default();
        if let Some(&ip) = state.leases.get(owner) {
            if p.is_allocatable(ip) {
                return Ok(ip);
            }
        }
        // The owner's own lease, if any, is not allocatable: it is not in the way.
        let taken: HashSet<u128> = state
            .leases
            .values()
            .filter(|ip| p.is_allocatable(**ip))
            .map(|ip| to_bits(*ip))
            .collect();
        if taken.len() as u128 >= p.count {
            return Err(self.exhausted(network, &p, &state));
        }
        let key = p.subnet.to_string();
        let start = match state.last_allocated.get(&key) {
            Some(&last)
                if last.is_ipv6() == p.subnet.is_ipv6()
                    && (p.lo..p.hi).contains(&to_bits(last)) =>
            {
                to_bits(last) + 1
            }
            _ => p.lo,
        };
        // A free address exists, so this walk ends after at most `taken.len() + excluded.len()` steps.
        let mut x = start;
        while !p.is_allocatable_bits(x) || taken.contains(&x) {
            x = if x == p.hi { p.lo } else { x + 1 };
            if x == start {
                return Err(self.exhausted(network, &p, &state));
            }
        }
        let ip = p.addr(x);
        state.leases.insert(owner.to_string(), ip);
        state.last_allocated.insert(key, ip);
        self.commit(network, state)?;
        Ok(ip)
    }

    fn exhausted(&self, network: &str, p: &Pool, state: &NetState) -> IpamError {
        let mut leased: Vec<(String, IpAddr)> = state
            .leases
            .iter()
            .filter(|(_, ip)| p.is_allocatable(**ip))
            .map(|(o, ip)| (o.clone(), *ip))
            .collect();
        leased.sort_by_key(|(_, ip)| *ip);
        let more = leased.len().saturating_sub(MAX_LISTED);
        leased.truncate(MAX_LISTED);
        IpamError::Exhausted {
            network: network.to_string(),
            subnet: p.subnet,
            range: p.range,
            allocatable: p.count,
            leased,
            more,
        }
    }

    /// Leases the static address `addr` of `pool` to `owner` in `network`, replacing the owner's old lease. The
    /// address may be outside the range and may be a reserved address, but must be inside the subnet, must be
    /// neither the gateway nor the network or broadcast address, and must not be leased to another owner.
    pub fn reserve(
        &mut self,
        network: &str,
        pool: &PoolSpec,
        owner: &str,
        addr: IpAddr,
    ) -> Result<(), IpamError> {
        check_network_name(network)?;
        let p = pool.check().map_err(|error| IpamError::Pool {
            network: network.to_string(),
            error: Box::new(error),
        })?;
        if !p.subnet.contains(addr) {
            return Err(IpamError::OutsideSubnet {
                network: network.to_string(),
                addr,
                subnet: p.subnet,
            });
        }
        if let Some(role) = p.role_of(addr) {
            return Err(IpamError::NotLeasable {
                network: network.to_string(),
                addr,
                role,
                subnet: p.subnet,
            });
        }
        let mut state = self.nets.get(network).cloned().unwrap_or_default();
        if let Some(holder) = state.holder(addr, owner) {
            return Err(IpamError::Leased {
                network: network.to_string(),
                addr,
                owner: holder.to_string(),
            });
        }
        if state.leases.get(owner) == Some(&addr) {
            return Ok(());
        }
        state.leases.insert(owner.to_string(), addr);
        self.commit(network, state)
    }

    /// Drops the lease of `owner` in `network`; returns the address it held, if any.
    pub fn release(&mut self, network: &str, owner: &str) -> Result<Option<IpAddr>, IpamError> {
        check_network_name(network)?;
        let Some(mut state) = self.nets.get(network).cloned() else {
            return Ok(None);
        };
        let Some(ip) = state.leases.remove(owner) else {
            return Ok(None);
        };
        self.commit(network, state)?;
        Ok(Some(ip))
    }

    /// Drops the leases in `network` of every owner not in `owners` (endpoints no longer configured); returns
    /// the dropped leases, sorted by address.
    pub fn retain(
        &mut self,
        network: &str,
        owners: &[&str],
    ) -> Result<Vec<(String, IpAddr)>, IpamError> {
        check_network_name(network)?;
        let Some(mut state) = self.nets.get(network).cloned() else {
            return Ok(Vec::new());
        };
        let keep: HashSet<&str> = owners.iter().copied().collect();
        let mut dropped: Vec<(String, IpAddr)> = Vec::new();
        state.leases.retain(|owner, ip| {
            let kept = keep.contains(owner.as_str());
            if !kept {
                dropped.push((owner.clone(), *ip));
            }
            kept
        });
        if dropped.is_empty() {
            return Ok(dropped);
        }
        dropped.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        self.commit(network, state)?;
        Ok(dropped)
    }

    /// Persists `state` as the state of `network`, then adopts it: a failed write leaves the leases unchanged.
    fn commit(&mut self, network: &str, state: NetState) -> Result<(), IpamError> {
        if let Some(dir) = &self.dir {
            write_state(dir, network, &state)?;
        }
        self.nets.insert(network.to_string(), state);
        Ok(())
    }
}

/// Writes `<dir>/<network>.json` atomically: a temporary file in the same directory (mode 0600), fsync, rename
/// over the old file, fsync of the directory.
fn write_state(dir: &Path, network: &str, state: &NetState) -> Result<(), IpamError> {
    let path = dir.join(format!("{network}.json"));
    let tmp = dir.join(format!(".{network}.json.tmp"));
    let io_err = |path: &Path, action, error| IpamError::Io {
        path: path.to_path_buf(),
        action,
        error,
    };
    let mut json = serde_json::to_vec_pretty(state).expect("leases serialize to JSON");
    json.push(b'\n');
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // An older temporary file keeps its mode on open: set it.
        f.set_permissions(Permissions::from_mode(0o600))?;
        f.write_all(&json)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp, "write", e));
    }
    if let Err(e) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&path, "replace", e));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, "sync directory", e))
}

/// Gives every endpoint without an `address` one from its network's pool (`[networks.ipam]`, or a bridge's
/// gateway subnet), keeping the leases under `[control] state_dir` (in memory when it is not set): an endpoint
/// gets the same address on every start. Endpoints with a static address of a pool's subnet have it reserved,
/// so the pool never hands it out; leases of endpoints no longer in the config are dropped. Returns what was
/// assigned, `(endpoint, address)`.
pub fn assign_addresses(
    cfg: &mut crate::config::Config,
) -> Result<Vec<(String, crate::config::Ipv4Cidr)>, IpamError> {
    let needed = cfg.endpoints.iter().any(|e| e.address.is_none());
    let pools = cfg.networks.iter().any(|n| n.ipam.is_some());
    if !(needed || pools && cfg.control.state_dir.is_some()) {
        return Ok(Vec::new());
    }
    let mut ipam = Ipam::open(cfg.control.state_dir.as_deref())?;
    let mut assigned = Vec::new();
    for net in &cfg.networks {
        let Some(pool) = &net.ipam else { continue };
        let spec = crate::config::pool_spec(pool);
        let members: Vec<usize> = (0..cfg.endpoints.len())
            .filter(|&i| cfg.endpoints[i].network == net.name)
            .collect();
        // Static addresses first, so a dynamic one never takes them.
        for &i in &members {
            let e = &cfg.endpoints[i];
            if let Some(a) = e.address.filter(|a| pool.subnet.contains(a.addr())) {
                ipam.reserve(&net.name, &spec, &e.name, IpAddr::V4(a.addr()))?;
            }
        }
        for &i in &members {
            if cfg.endpoints[i].address.is_some() {
                continue;
            }
            let name = cfg.endpoints[i].name.clone();
            let IpAddr::V4(a) = ipam.allocate(&net.name, &spec, &name)? else {
                continue;
            };
            if let Some(c) = crate::config::Ipv4Cidr::new(a, pool.host_prefix) {
                cfg.endpoints[i].address = Some(c);
                assigned.push((name, c));
            }
        }
        let owners: Vec<&str> = members
            .iter()
            .map(|&i| cfg.endpoints[i].name.as_str())
            .collect();
        ipam.retain(&net.name, &owners)?;
    }
    Ok(assigned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn subnet(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    fn pool(s: &str) -> PoolSpec {
        PoolSpec::new(subnet(s))
    }

    #[test]
    fn subnet_v4() {
        let s = subnet("10.1.0.7/24");
        assert_eq!(s.to_string(), "10.1.0.7/24");
        assert_eq!(s.addr(), ip("10.1.0.7"));
        assert_eq!(s.prefix_len(), 24);
        assert!(!s.is_ipv6());
        assert_eq!(s.network(), ip("10.1.0.0"));
        assert_eq!(s.broadcast(), Some(ip("10.1.0.255")));
        assert_eq!(s.first_host(), ip("10.1.0.1"));
        assert_eq!(s.last_host(), ip("10.1.0.254"));
        assert!(s.contains(ip("10.1.0.0")) && s.contains(ip("10.1.0.255")));
        assert!(!s.contains(ip("10.1.1.0")) && !s.contains(ip("::a01:0")));
    }

    #[test]
    fn subnet_edges() {
        let all = subnet("0.0.0.0/0");
        assert_eq!(all.broadcast(), Some(ip("255.255.255.255")));
        assert_eq!(all.first_host(), ip("0.0.0.1"));
        assert_eq!(all.last_host(), ip("255.255.255.254"));
        assert!(all.contains(ip("1.2.3.4")));
        let p2p = subnet("10.0.0.0/31");
        assert_eq!(
            (p2p.first_host(), p2p.last_host()),
            (ip("10.0.0.0"), ip("10.0.0.1"))
        );
        let one = subnet("10.0.0.5/32");
        assert_eq!(
            (one.first_host(), one.last_host()),
            (ip("10.0.0.5"), ip("10.0.0.5"))
        );
        assert!(one.contains(ip("10.0.0.5")) && !one.contains(ip("10.0.0.4")));
        let v6 = subnet("fd00::/64");
        assert!(v6.is_ipv6());
        assert_eq!(v6.broadcast(), None);
        assert_eq!(v6.first_host(), ip("fd00::1"));
        assert_eq!(v6.last_host(), ip("fd00::ffff:ffff:ffff:ffff"));
        let v6all = subnet("::/0");
        assert_eq!(v6all.first_host(), ip("::1"));
        assert_eq!(
            v6all.last_host(),
            ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        );
        let v6p2p = subnet("fd00::/127");
        assert_eq!(
            (v6p2p.first_host(), v6p2p.last_host()),
            (ip("fd00::"), ip("fd00::1"))
        );
        assert_eq!(subnet("fd00::1/128").last_host(), ip("fd00::1"));
    }

    #[test]
    fn subnet_parse_errors() {
        for (input, expected) in [
            (
                "10.1.0.0",
                "invalid subnet \"10.1.0.0\": expected ADDRESS/PREFIX, like 10.1.0.0/24 or fd00::/64",
            ),
            (
                "10.1.0/24",
                "invalid subnet \"10.1.0/24\": \"10.1.0\" is not an IPv4 or IPv6 address",
            ),
            (
                "10.1.0.0/33",
                "invalid subnet \"10.1.0.0/33\": prefix length \"33\" is not a number in 0..=32 (an IPv4 address has 32 bits)",
            ),
            (
                "fd00::/129",
                "invalid subnet \"fd00::/129\": prefix length \"129\" is not a number in 0..=128 (an IPv6 address has 128 bits)",
            ),
            (
                "10.1.0.0/+8",
                "invalid subnet \"10.1.0.0/+8\": prefix length \"+8\" is not a number in 0..=32 (an IPv4 address has 32 bits)",
            ),
        ] {
            assert_eq!(input.parse::<Subnet>().unwrap_err().to_string(), expected);
        }
        assert_eq!(Subnet::new(ip("10.0.0.0"), 33), None);
        assert!(Subnet::new(ip("::"), 128).is_some());
    }

    #[test]
    fn allocatable_counts() {
        assert_eq!(pool("10.1.0.0/24").check().unwrap().allocatable(), 253);
        assert_eq!(pool("10.1.0.0/30").check().unwrap().allocatable(), 1);
        assert_eq!(pool("10.1.0.0/31").check().unwrap().allocatable(), 1);
        assert_eq!(
            pool("fd00::/64").check().unwrap().allocatable(),
            (1u128 << 64) - 2
        );
        assert_eq!(pool("fd00::/126").check().unwrap().allocatable(), 2);
        assert_eq!(pool("::/0").check().unwrap().allocatable(), u128::MAX - 1);
        let mut p = pool("10.1.0.0/24");
        p.range = Some((ip("10.1.0.0"), ip("10.1.0.10")));
        p.reserved = vec![
            ip("10.1.0.5"),
            ip("10.1.0.5"),
            ip("10.1.0.200"),
            ip("10.1.0.1"),
        ];
        let c = p.check().unwrap();
        // .1 to .10 minus the gateway .1 and the reserved .5 (.200 is outside the range).
        assert_eq!(c.allocatable(), 8);
        assert_eq!(c.bounds(), (ip("10.1.0.1"), ip("10.1.0.10")));
        assert_eq!(c.gateway(), ip("10.1.0.1"));
        assert!(!c.is_allocatable(ip("10.1.0.5")) && c.is_allocatable(ip("10.1.0.6")));
        assert!(!c.is_allocatable(ip("::a01:6")));
    }

    #[test]
    fn validate_messages() {
        let check = |p: &PoolSpec| validate(p).unwrap_err();
        let mut p = pool("10.1.0.0/24");
        assert_eq!(validate(&p), Ok(()));
        p.subnet = (ip("10.1.0.0"), 33);
        assert_eq!(
            check(&p),
            "prefix length /33 is too long for an IPv4 subnet (at most /32)"
        );
        p.subnet = (ip("10.1.0.5"), 24);
        assert_eq!(
            check(&p),
            "subnet 10.1.0.5/24 has host bits set: the network address of a /24 holding 10.1.0.5 is 10.1.0.0 (write 10.1.0.0/24)"
        );
        let mut p = pool("10.1.0.0/24");
        p.gateway = Some(ip("10.2.0.1"));
        assert_eq!(check(&p), "gateway 10.2.0.1 is outside subnet 10.1.0.0/24");
        p.gateway = Some(ip("10.1.0.255"));
        assert_eq!(
            check(&p),
            "gateway 10.1.0.255 is the broadcast address of subnet 10.1.0.0/24, not a host address"
        );
        p.gateway = Some(ip("10.1.0.0"));
        assert_eq!(
            check(&p),
            "gateway 10.1.0.0 is the network address of subnet 10.1.0.0/24, not a host address"
        );
        p.gateway = Some(ip("10.1.0.254"));
        assert_eq!(validate(&p), Ok(()));
        p.range = Some((ip("10.1.0.9"), ip("10.1.0.3")));
        assert_eq!(check(&p), "range 10.1.0.9-10.1.0.3 is empty");
        p.range = Some((ip("10.1.0.9"), ip("10.1.1.3")));
        assert_eq!(
            check(&p),
            "range end 10.1.1.3 is outside subnet 10.1.0.0/24"
        );
        p.range = Some((ip("fd00::1"), ip("10.1.0.3")));
        assert_eq!(
            check(&p),
            "range start fd00::1 is outside subnet 10.1.0.0/24"
        );
        p.range = Some((ip("10.1.0.255"), ip("10.1.0.255")));
        assert_eq!(
            check(&p),
            "range 10.1.0.255-10.1.0.255 holds no host address of subnet 10.1.0.0/24 (only its network or broadcast address)"
        );
        p.range = Some((ip("10.1.0.10"), ip("10.1.0.11")));
        p.reserved = vec![ip("10.1.0.10"), ip("10.1.0.11")];
        assert_eq!(
            check(&p),
            "pool 10.1.0.0/24 range 10.1.0.10-10.1.0.11 has no allocatable address: 10.1.0.10-10.1.0.11 holds only the gateway 10.1.0.254 and reserved addresses"
        );
        p.reserved = vec![ip("10.9.0.1")];
        assert_eq!(
            check(&p),
            "reserved address 10.9.0.1 is outside subnet 10.1.0.0/24"
        );
        assert_eq!(
            check(&pool("10.1.0.0/32")),
            "pool 10.1.0.0/32 has no allocatable address: 10.1.0.0-10.1.0.0 holds only the gateway 10.1.0.0 and reserved addresses"
        );
        assert_eq!(validate(&pool("10.1.0.0/31")), Ok(()));
        assert_eq!(validate(&pool("fd00::/127")), Ok(()));
        let mut p = pool("fd00::/64");
        p.gateway = Some(ip("fd00::"));
        assert_eq!(
            check(&p),
            "gateway fd00:: is the network address of subnet fd00::/64, not a host address"
        );
        p.gateway = Some(ip("fd00::ffff:ffff:ffff:ffff"));
        assert_eq!(validate(&p), Ok(()));
    }

    #[test]
    fn network_names() {
        for bad in ["", ".hidden", "../x", "a/b", "a b", &"n".repeat(201)] {
            assert!(check_network_name(bad).is_err(), "{bad:?}");
        }
        for good in ["red", "net-1", "my_net.v6", "Blue"] {
            assert!(check_network_name(good).is_ok(), "{good:?}");
        }
        assert_eq!(
            check_network_name("../x").unwrap_err().to_string(),
            "invalid network name \"../x\": it starts with '.'"
        );
        assert_eq!(
            check_network_name("a/b").unwrap_err().to_string(),
            "invalid network name \"a/b\": it has the character '/' (use a-z, A-Z, 0-9, _, - and .)"
        );
    }

    #[test]
    fn walk_wraps_at_the_top_of_the_v6_space() {
        let mut ipam = Ipam::open(None).unwrap();
        let p = pool("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126");
        let a = ipam.allocate("n", &p, "a").unwrap();
        let b = ipam.allocate("n", &p, "b").unwrap();
        assert_eq!(a, ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"));
        assert_eq!(b, ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        ipam.release("n", "a").unwrap();
        // The last allocation was the highest address: the walk wraps to the start without overflowing.
        assert_eq!(ipam.allocate("n", &p, "c").unwrap(), a);
    }
}
