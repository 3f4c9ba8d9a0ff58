//! Checks of the L3 part: `[router]`, `addresses` of ports and bridge networks, `[[routes]]`, and the IPv6
//! fields of endpoints.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};

use super::super::raw::{RawConfig, RawRouter};
use super::*;

/// `IPv4` or `IPv6`.
fn family(v4: bool) -> &'static str {
    if v4 {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Why `c` cannot be a router interface address, if it cannot.
fn bad_interface_address(c: IpCidr) -> Option<String> {
    match c {
        IpCidr::V4(v4) => super::bad_host_address(v4).or_else(|| {
            // RFC 3927: a router forwards nothing from or to 169.254.0.0/16.
            let a = v4.addr();
            a.is_link_local().then(|| {
                format!(
                    "{a} is link-local (169.254.0.0/16), which routers do not forward; give a private or global address"
                )
            })
        }),
        IpCidr::V6(v6) => bad_v6_host_address(v6),
    }
}

/// Why `c` cannot be an IPv6 interface address (the router's or an endpoint's `address6`), if it cannot. Same
/// order and wording as the IPv4 checks of [`super::bad_host_address`].
fn bad_v6_host_address(c: Ipv6Cidr) -> Option<String> {
    let a = c.addr();
    if c.prefix() == 0 {
        return Some(format!(
            "prefix length 0 in {c} leaves no subnet; use 1..=128"
        ));
    }
    let what = if a.is_unspecified() {
        Some("unspecified")
    } else if a.is_loopback() {
        Some("the loopback address")
    } else if a.is_multicast() {
        Some("a multicast address")
    } else {
        None
    };
    if let Some(what) = what {
        return Some(format!("{a} is {what}, not a host address"));
    }
    if a.is_unicast_link_local() {
        return Some(format!(
            "{a} is link-local; every interface has its own (from its MAC), give a global or unique-local one"
        ));
    }
    if let Some(v4) = a.to_ipv4_mapped() {
        return Some(format!(
            "{a} is an IPv4-mapped address (::ffff:0:0/96), not an IPv6 host address; write {v4} as an IPv4 address"
        ));
    }
    // RFC 4291 2.6.1: the all-zero host part is the subnet-router anycast address (except on /127, RFC 6164).
    if c.prefix() <= 126 && a == c.network() {
        return Some(format!(
            "{a} is the subnet-router anycast address of {}/{} (host part all zero), not a host address",
            c.network(),
            c.prefix()
        ));
    }
    None
}

/// Parses a list of interface addresses at `field`, reporting every bad one (when `report`); returns the good
/// ones with their index in the list, so that later checks (overlaps, gateways) still see them.
fn addresses(ck: &mut Checker, field: &str, list: &[String], report: bool) -> Vec<(usize, IpCidr)> {
    let mut out = Vec::with_capacity(list.len());
    for (j, s) in list.iter().enumerate() {
        let at = format!("{field}[{j}]");
        let why = match s.parse::<IpCidr>() {
            Err(e) => e.to_string(),
            Ok(c) => match bad_interface_address(c) {
                Some(why) => why,
                None => {
                    out.push((j, c));
                    continue;
                }
            },
        };
        if report {
            ck.err(at, why);
        }
    }
    out
}

/// The router's addresses as written, with the field of each (`networks[0].addresses[1]`); bad ones left out.
fn router_addresses(raw: &RawConfig) -> Vec<(IpCidr, String)> {
    let ports = raw
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("ports[{i}].addresses"), &p.addresses));
    let nets = raw
        .networks
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("networks[{i}].addresses"), &n.addresses));
    ports
        .chain(nets)
        .flat_map(|(field, list)| {
            list.iter().flatten().enumerate().filter_map(move |(j, s)| {
                let c = s.parse::<IpCidr>().ok()?;
                bad_interface_address(c)
                    .is_none()
                    .then(|| (c, format!("{field}[{j}]")))
            })
        })
        .collect()
}

/// The field holding the router's address `a`, if it is one.
fn owner_of(owners: &[(IpCidr, String)], a: IpAddr) -> Option<&str> {
    owners
        .iter()
        .find(|(c, _)| c.addr() == a)
        .map(|(_, f)| f.as_str())
}

/// The valid addresses of each port, or of each network, in file order.
type AddressesOf = Vec<Option<Vec<IpCidr>>>;

/// The `addresses` of every port and network, checked together: each parses, is a host address, and no two
/// interfaces share a subnet. Ports with addresses must be in no network; only bridge networks take addresses.
/// Also checks what depends on the router's addresses beyond them: endpoints may not take one (and their
/// `address6` are unique among them, as `address` is), and `[router] mtu` must fit the buffers.
///
/// Returns the valid addresses by port and by network: the bad ones are reported and left out, so that routes
/// through the good ones are not reported as well.
pub(super) fn check_addresses(ck: &mut Checker, raw: &RawConfig) -> (AddressesOf, AddressesOf) {
    // Every subnet claimed so far: the address, its field, and the field of its interface's list.
    let mut seen: Vec<(IpCidr, String, String)> = Vec::new();
    let mut claim = |ck: &mut Checker, field: &str, good: Vec<(usize, IpCidr)>| -> Vec<IpCidr> {
        for &(j, c) in &good {
            let at = format!("{field}[{j}]");
            match seen.iter().find(|(o, ..)| o.overlaps(c)) {
                Some((o, owner, iface)) if iface == field => ck.err(
                    at,
                    format!(
                        "{c} overlaps {o} ({owner}) on the same interface; give an interface one address per subnet"
                    ),
                ),
                Some((o, owner, _)) => ck.err(
                    at,
                    format!("{c} overlaps {o} ({owner}); each router interface needs its own subnet"),
                ),
                None => seen.push((c, at, field.to_string())),
            }
        }
        good.into_iter().map(|(_, c)| c).collect()
    };
    let mut ports = Vec::with_capacity(raw.ports.len());
    for (i, p) in raw.ports.iter().enumerate() {
        let field = format!("ports[{i}].addresses");
        let Some(list) = &p.addresses else {
            ports.push(Some(Vec::new()));
            continue;
        };
        let good = addresses(ck, &field, list, true);
        if let Some(name) = p.name.as_deref() {
            let member = |n: &RawNetwork| {
                n.ports
                    .iter()
                    .chain(n.trunk_ports.iter())
                    .flatten()
                    // An ipvlan L3 network's uplink is a routed port: that is where its addresses go.
                    .chain(n.uplink.iter().filter(|_| {
                        !(n.mode.as_deref() == Some("ipvlan")
                            && n.ipvlan_mode.as_deref().unwrap_or("l3") == "l3")
                    }))
                    .any(|x| x == name)
            };
            if let Some((k, n)) = raw.networks.iter().enumerate().find(|(_, n)| member(n)) {
                let net = n.name.as_deref().unwrap_or("?");
                let hint = if n.mode.as_deref() == Some("bridge") {
                    format!(" (to route for {net:?}, give the network the addresses)")
                } else {
                    String::new()
                };
                ck.err(
                    field.clone(),
                    format!(
                        "port {name:?} is in network {net:?} (networks[{k}]); a port with addresses is a routed port, which is in no network{hint}"
                    ),
                );
            }
        }
        ports.push(Some(claim(ck, &field, good)));
    }
    let mut nets = Vec::with_capacity(raw.networks.len());
    for (i, n) in raw.networks.iter().enumerate() {
        let field = format!("networks[{i}].addresses");
        let Some(list) = &n.addresses else {
            nets.push(Some(Vec::new()));
            continue;
        };
        // A missing, unknown or unimplemented mode is reported with the mode; check the addresses as a bridge's.
        let mode = n
            .mode
            .as_deref()
            .and_then(|m| m.parse::<NetworkMode>().ok())
            .filter(|m| m.is_implemented());
        if let Some(mode) = mode.filter(|m| *m != NetworkMode::Bridge) {
            ck.err(
                field.clone(),
                format!(
                    "`addresses` (the router's gateway addresses) is only for bridge networks (this one is {mode})"
                ),
            );
            // Not checked further, as the field is wrong; but routes through them are not reported as well.
            let good = addresses(ck, &field, list, false);
            nets.push(Some(good.into_iter().map(|(_, c)| c).collect()));
            continue;
        }
        let good = addresses(ck, &field, list, true);
        nets.push(Some(claim(ck, &field, good)));
    }
    check_endpoint_addresses(ck, raw);
    check_mtu(ck, raw);
    (ports, nets)
}

/// Endpoints against the router's addresses, and their `address6` against each other.
fn check_endpoint_addresses(ck: &mut Checker, raw: &RawConfig) {
    let owners = router_addresses(raw);
    let mut v6: HashMap<Ipv6Addr, usize> = HashMap::new();
    for (i, e) in raw.endpoints.iter().enumerate() {
        // Addresses that do not parse or are no host addresses are reported with the endpoints.
        let v4 = e
            .address
            .as_deref()
            .and_then(|s| s.parse::<Ipv4Cidr>().ok())
            .filter(|c| super::bad_host_address(*c).is_none());
        if let Some(c) = v4 {
            if let Some(owner) = owner_of(&owners, IpAddr::V4(c.addr())) {
                ck.err(
                    format!("endpoints[{i}].address"),
                    format!(
                        "address {} is one of the router's own addresses ({owner})",
                        c.addr()
                    ),
                );
            }
        }
        let a6 = e
            .address6
            .as_deref()
            .and_then(|s| s.parse::<Ipv6Cidr>().ok())
            .filter(|c| bad_v6_host_address(*c).is_none());
        if let Some(c) = a6 {
            let at = format!("endpoints[{i}].address6");
            if let Some(owner) = owner_of(&owners, IpAddr::V6(c.addr())) {
                ck.err(
                    at,
                    format!(
                        "address {} is one of the router's own addresses ({owner})",
                        c.addr()
                    ),
                );
            } else if let Some(first) = v6.get(&c.addr()) {
                ck.err(
                    at,
                    format!("address {} is already used by endpoints[{first}]", c.addr()),
                );
            } else {
                v6.insert(c.addr(), i);
            }
        }
    }
}

/// `[router] mtu` against the buffers: a packet of the MTU must fit in one, with its Ethernet header and a VLAN
/// tag (a larger MTU would be announced in ICMP errors while such packets cannot even be received).
fn check_mtu(ck: &mut Checker, raw: &RawConfig) {
    let Some(mtu) = raw
        .router
        .as_ref()
        .and_then(|r| r.mtu)
        .filter(|m| i64_range(&MTU_RANGE).contains(m))
    else {
        return;
    };
    let own = match raw.dataplane.as_ref().and_then(|d| d.data_room) {
        None => DEFAULT_DATA_ROOM as i64,
        Some(v) if usize_range(&DATA_ROOM_RANGE).contains(&v) => v,
        // A bad data_room is reported with it.
        Some(_) => return,
    };
    // DPDK ports take their frames from the DPDK pool, which may be larger.
    let dpdk = raw
        .dpdk
        .as_ref()
        .and_then(|d| d.data_room)
        .filter(|v| usize_range(&DPDK_DATA_ROOM_RANGE).contains(v));
    let room = own.max(dpdk.unwrap_or(0));
    let frame = mtu + DPDK_FRAME_OVERHEAD as i64;
    if frame > room {
        ck.err(
            "router.mtu",
            format!(
                "mtu {mtu} needs frames of {frame} bytes (the MTU, an Ethernet header and a VLAN tag), more than \
                 the buffers' data_room of {room}: raise data_room in [dataplane]"
            ),
        );
    }
}

/// `[router]`.
pub(super) fn check_router(ck: &mut Checker, r: &RawRouter) -> Option<RouterCfg> {
    let d = RouterCfg::default();
    let mtu = ck.range_or("router.mtu", "mtu", r.mtu, i64_range(&MTU_RANGE), d.mtu);
    let icmp_rate = ck.range_or(
        "router.icmp_rate",
        "icmp_rate",
        r.icmp_rate,
        i64_range(&ICMP_RATE_RANGE),
        d.icmp_rate,
    );
    let reach = ck.range_or(
        "router.neighbor_reachable_s",
        "neighbor_reachable_s",
        r.neighbor_reachable_s,
        i64_range(&NEIGHBOR_S_RANGE),
        d.neighbor_reachable_s,
    );
    let stale = ck.range_or(
        "router.neighbor_stale_s",
        "neighbor_stale_s",
        r.neighbor_stale_s,
        i64_range(&NEIGHBOR_S_RANGE),
        d.neighbor_stale_s,
    );
    let cap = ck.range_or(
        "router.neighbor_capacity",
        "neighbor_capacity",
        r.neighbor_capacity,
        usize_range(&NEIGHBOR_CAPACITY_RANGE),
        d.neighbor_capacity,
    );
    let groups = ck.range_or(
        "router.fib_tbl8_groups",
        "fib_tbl8_groups",
        r.fib_tbl8_groups,
        i64_range(&TBL8_GROUPS_RANGE),
        d.fib_tbl8_groups,
    );
    let groups6 = ck.range_or(
        "router.fib6_groups",
        "fib6_groups",
        r.fib6_groups,
        i64_range(&FIB6_GROUPS_RANGE),
        d.fib6_groups,
    );
    let echo_port = ck.range_or(
        "router.echo_port",
        "echo_port",
        r.echo_port,
        0..=i64::from(u16::MAX),
        d.echo_port,
    );
    if let (Some(reach), Some(stale)) = (reach, stale) {
        if stale < reach {
            let default = if r.neighbor_reachable_s.is_none() {
                " (the default)"
            } else {
                ""
            };
            ck.err(
                "router.neighbor_stale_s",
                format!(
                    "neighbor_stale_s = {stale} is shorter than neighbor_reachable_s = {reach}{default}: \
                     neighbours would be forgotten before they are asked again; make it at least {reach}"
                ),
            );
            return None;
        }
    }
    Some(RouterCfg {
        mtu: mtu?,
        icmp_rate: icmp_rate?,
        drop_ip_options: r.drop_ip_options.unwrap_or(d.drop_ip_options),
        neighbor_reachable_s: reach?,
        neighbor_stale_s: stale?,
        neighbor_capacity: cap?,
        fib_tbl8_groups: groups?,
        fib6_groups: groups6?,
        echo_port: echo_port?,
    })
}

/// `[[routes]]`, against the connected subnets (`connected`: every valid interface address).
pub(super) fn check_routes(
    ck: &mut Checker,
    raw: &RawConfig,
    connected: &[IpCidr],
) -> Option<Vec<RouteCfg>> {
    let owners = router_addresses(raw);
    let mut out = Vec::with_capacity(raw.routes.len());
    let mut ok = true;
    let mut prefixes: Vec<(IpCidr, usize)> = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let at = |f: &str| format!("routes[{i}].{f}");
        let prefix = match r.prefix.as_deref() {
            None => {
                ck.err(
                    at("prefix"),
                    format!(
                        "{REQUIRED} (a destination prefix like 10.8.0.0/16, 0.0.0.0/0 or ::/0)"
                    ),
                );
                None
            }
            Some(s) => match s.parse::<IpCidr>() {
                Err(e) => {
                    ck.err(at("prefix"), e.to_string());
                    None
                }
                Ok(c) if c.addr() != c.network() => {
                    ck.err(
                        at("prefix"),
                        format!(
                            "{c} has host bits set; the prefix is {}/{}",
                            c.network(),
                            c.prefix()
                        ),
                    );
                    None
                }
                Ok(c) => {
                    let full = if c.is_v4() { 32 } else { 128 };
                    // The FIB keeps one next hop per prefix: a static route would silently replace the connected
                    // route of an interface's subnet, or the local route of one of the router's addresses.
                    let connected_as = owners
                        .iter()
                        .find(|(o, _)| o.prefix() == c.prefix() && o.network() == c.network());
                    if let Some((_, first)) = prefixes.iter().find(|(p, _)| *p == c) {
                        ck.err(
                            at("prefix"),
                            format!("{c} is already routed by routes[{first}]"),
                        );
                        None
                    } else if let Some((o, owner)) = connected_as {
                        ck.err(
                            at("prefix"),
                            format!(
                                "{c} is the connected subnet of {owner} ({o}); a static route would replace it"
                            ),
                        );
                        None
                    } else if let Some(owner) =
                        owner_of(&owners, c.addr()).filter(|_| c.prefix() == full)
                    {
                        ck.err(
                            at("prefix"),
                            format!(
                                "{c} is the router's own address ({owner}); a static route would replace its local route"
                            ),
                        );
                        None
                    } else {
                        prefixes.push((c, i));
                        Some(c)
                    }
                }
            },
        };
        let kind = match r.kind.as_deref() {
            None | Some("forward") => Some(RouteKind::Forward),
            Some("blackhole") => Some(RouteKind::Blackhole),
            Some("unreachable") => Some(RouteKind::Unreachable),
            Some(other) => {
                ck.err(
                    at("type"),
                    format!(
                        "unknown route type {other:?} (expected one of: forward, blackhole, unreachable)"
                    ),
                );
                None
            }
        };
        let mut via = Vec::new();
        match (kind, &r.via) {
            (Some(RouteKind::Forward), None) => {
                ck.err(
                    at("via"),
                    format!(
                        "{REQUIRED}: a forward route (the default type) needs at least one gateway in `via`; \
                         for a route that drops, set type = \"blackhole\" or \"unreachable\""
                    ),
                );
                ok = false;
            }
            (Some(RouteKind::Forward), Some(list)) if list.is_empty() => {
                ck.err(
                    at("via"),
                    "`via` is empty: a forward route needs at least one gateway",
                );
                ok = false;
            }
            (Some(RouteKind::Blackhole), Some(_)) => {
                ck.err(
                    at("via"),
                    "a blackhole route drops what it matches and takes no `via`",
                );
                ok = false;
            }
            (Some(RouteKind::Unreachable), Some(_)) => {
                ck.err(
                    at("via"),
                    "an unreachable route answers ICMP destination unreachable and takes no `via`",
                );
                ok = false;
            }
            (_, Some(list)) => {
                for (j, g) in list.iter().enumerate() {
                    match gateway(g, prefix, connected, &owners, &via) {
                        Ok(a) => via.push(a),
                        Err(why) => {
                            ck.err(format!("routes[{i}].via[{j}]"), why);
                            ok = false;
                        }
                    }
                }
            }
            _ => {}
        }
        match (prefix, kind) {
            (Some(prefix), Some(kind)) => out.push(RouteCfg { prefix, via, kind }),
            _ => ok = false,
        }
    }
    check_tbl8_groups(ck, raw, connected, &out);
    ok.then_some(out)
}

/// One gateway `g` of a route to `prefix` (if valid), given the gateways `before` it in the list.
fn gateway(
    g: &str,
    prefix: Option<IpCidr>,
    connected: &[IpCidr],
    owners: &[(IpCidr, String)],
    before: &[IpAddr],
) -> Result<IpAddr, String> {
    let Ok(a) = g.parse::<IpAddr>() else {
        return Err(format!("invalid IP address {g:?}"));
    };
    if let Some(p) = prefix.filter(|p| p.is_v4() != a.is_ipv4()) {
        return Err(format!(
            "gateway {a} is {} but the prefix {p} is {}",
            family(a.is_ipv4()),
            family(p.is_v4())
        ));
    }
    if connected.iter().any(|c| c.addr() == a) {
        return Err(match owner_of(owners, a) {
            Some(owner) => format!("gateway {a} is one of the router's own addresses ({owner})"),
            None => format!("gateway {a} is one of the router's own addresses"),
        });
    }
    let Some(subnet) = connected.iter().find(|c| c.contains(a)) else {
        let fam = family(a.is_ipv4());
        let nets: Vec<String> = connected
            .iter()
            .filter(|c| c.is_v4() == a.is_ipv4())
            .map(|c| format!("{}/{}", c.network(), c.prefix()))
            .collect();
        return Err(if nets.is_empty() {
            format!(
                "gateway {a} is on no connected subnet (the router has no {fam} address: give a routed port or a \
                 bridge network {fam} `addresses`)"
            )
        } else if matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local()) {
            format!(
                "gateway {a} is link-local; give the neighbour's address on a connected subnet (the router's \
                 {fam} subnets are: {})",
                nets.join(", ")
            )
        } else {
            format!(
                "gateway {a} is on no connected subnet (the router's {fam} subnets are: {})",
                nets.join(", ")
            )
        });
    };
    if let (IpCidr::V4(s), IpAddr::V4(a4)) = (*subnet, a) {
        if s.prefix() < 31 && (a4 == s.network() || a4 == s.broadcast()) {
            let what = if a4 == s.network() {
                "network"
            } else {
                "broadcast"
            };
            return Err(format!(
                "gateway {a} is the {what} address of {}/{}",
                s.network(),
                s.prefix()
            ));
        }
    }
    if before.contains(&a) {
        return Err(format!("gateway {a} is listed twice"));
    }
    Ok(a)
}

/// The IPv4 FIB gives each /24 that holds a rule longer than /24 one of `fib_tbl8_groups` groups: the router's
/// own addresses (local /32s), connected subnets and static routes longer than /24. Building it fails when they
/// need more, so tell here where the fix is.
fn check_tbl8_groups(ck: &mut Checker, raw: &RawConfig, connected: &[IpCidr], routes: &[RouteCfg]) {
    let written = raw.router.as_ref().and_then(|r| r.fib_tbl8_groups);
    let Some(groups) = written.map_or(Some(i64::from(DEFAULT_TBL8_GROUPS)), |g| {
        Some(g).filter(|g| i64_range(&TBL8_GROUPS_RANGE).contains(g))
    }) else {
        return;
    };
    let slash24 = |c: &IpCidr| match c {
        IpCidr::V4(c) => Some(u32::from(c.addr()) >> 8),
        IpCidr::V6(_) => None,
    };
    let needed: HashSet<u32> = connected
        .iter()
        .filter_map(slash24)
        .chain(
            routes
                .iter()
                .map(|r| &r.prefix)
                .filter(|p| p.prefix() > 24)
                .filter_map(slash24),
        )
        .collect();
    if needed.len() as i64 > groups {
        let default = if written.is_none() {
            " (the default)"
        } else {
            ""
        };
        ck.err(
            "router.fib_tbl8_groups",
            format!(
                "the IPv4 FIB needs {} groups (one per /24 holding a router address or a route longer than /24), \
                 more than fib_tbl8_groups = {groups}{default}",
                needed.len()
            ),
        );
    }
}

/// An endpoint's `address6` and `gateway6`.
pub(super) fn check_endpoint_v6(
    ck: &mut Checker,
    i: usize,
    address6: Option<&str>,
    gateway6: Option<&str>,
) -> Option<(Option<Ipv6Cidr>, Option<Ipv6Addr>)> {
    let at = |f: &str| format!("endpoints[{i}].{f}");
    let addr = match address6 {
        None => None,
        Some(s) => match s.parse::<Ipv6Cidr>() {
            Err(e) => {
                ck.err(at("address6"), e.to_string());
                return None;
            }
            Ok(c) => match bad_v6_host_address(c) {
                Some(why) => {
                    ck.err(at("address6"), why);
                    return None;
                }
                None => Some(c),
            },
        },
    };
    let gw = match gateway6 {
        None => None,
        Some(s) => {
            let Ok(g) = s.parse::<Ipv6Addr>() else {
                ck.err(at("gateway6"), format!("invalid IPv6 address {s:?}"));
                return None;
            };
            match addr {
                None => {
                    ck.err(
                        at("gateway6"),
                        "gateway6 needs address6 (the endpoint's IPv6 address and prefix length)",
                    );
                    return None;
                }
                Some(c) if !c.contains(g) && !g.is_unicast_link_local() => {
                    ck.err(
                        at("gateway6"),
                        format!(
                            "gateway6 {g} is outside the prefix {}/{} of address6 {c} (and not link-local)",
                            c.network(),
                            c.prefix()
                        ),
                    );
                    return None;
                }
                Some(c) if c.addr() == g => {
                    ck.err(
                        at("gateway6"),
                        format!("gateway6 {g} is the endpoint's own address"),
                    );
                    return None;
                }
                Some(_) => Some(g),
            }
        }
    };
    Some((addr, gw))
}
