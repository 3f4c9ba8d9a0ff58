//! Zero-copy header views and frame builders for the L3 stages (IPv4, IPv6, ICMP, ARP, ND), in the style of
//! smoltcp's `wire` module.
