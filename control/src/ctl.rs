//! The control socket: a Unix stream socket (mode 0600), one JSON request and one JSON response per line.
//!
//! Requests: `{"cmd":"show","what":"ports|workers|stats|drops|bridges"}`,
//! `{"cmd":"show","what":"mac","network":"br0"}` (network optional), `{"cmd":"clear-mac","network":"br0"}`,
//! `{"cmd":"reload"}`, `{"cmd":"ping"}`, `{"cmd":"show","what":"routes|neighbors"}`,
//! `{"cmd":"route-add","prefix":"10.9.0.0/16","via":["10.1.0.254"]}` (`"type":"blackhole"` or
//! `"unreachable"` without `via`), `{"cmd":"route-del","prefix":"10.9.0.0/16"}`, `{"cmd":"show","what":"vxlan"}`,
//! `{"cmd":"vxlan-fdb-add","network":"ov","mac":"02:00:00:00:00:01","vtep":"192.0.2.2"}`,
//! `{"cmd":"vxlan-fdb-del","network":"ov","mac":"02:00:00:00:00:01"}`.
//! Responses: `{"ok":true,"data":...}` or `{"ok":false,"error":"..."}`.
//!
//! The server is polled by the control thread between other duties (signals), so requests are handled one at
//! a time on the thread that owns the [`Router`]: no lock anywhere.

use crate::config::{IpCidr, RouteCfg, RouteKind};
use crate::router::Router;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/wharf/wharf.sock";

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// Liveness check.
    Ping,
    /// Show a table.
    Show {
        /// Which one.
        what: Show,
        /// For `mac`: only this bridge network.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<String>,
    },
    /// Forget the learned MACs of one bridge network, or all.
    #[serde(rename = "clear-mac")]
    ClearMac {
        /// Only this bridge network.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<String>,
    },
    /// Re-read the config file and apply it atomically.
    Reload,
    /// Add (or replace) a static route, in place.
    #[serde(rename = "route-add")]
    RouteAdd {
        /// Destination prefix.
        prefix: String,
        /// Gateways (several: ECMP); none for a blackhole or unreachable route.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        via: Vec<String>,
        /// `forward` (default), `blackhole` or `unreachable`.
        #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
        kind: Option<String>,
    },
    /// Remove a static route.
    #[serde(rename = "route-del")]
    RouteDel {
        /// Destination prefix.
        prefix: String,
    },
    /// An external feed's FDB entry of an overlay: `mac` is behind remote VTEP `vtep`.
    #[serde(rename = "vxlan-fdb-add")]
    VxlanFdbAdd {
        /// The overlay network.
        network: String,
        /// The remote endpoint's MAC.
        mac: String,
        /// The remote VTEP's IPv4 address.
        vtep: String,
    },
    /// Removes a fed FDB entry of an overlay.
    #[serde(rename = "vxlan-fdb-del")]
    VxlanFdbDel {
        /// The overlay network.
        network: String,
        /// The MAC.
        mac: String,
    },
}

/// The tables `show` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Show {
    /// Ports with their counters.
    Ports,
    /// Workers with their counters.
    Workers,
    /// Totals.
    Stats,
    /// Drops by reason.
    Drops,
    /// Bridge domains.
    Bridges,
    /// MAC tables of bridge networks.
    Mac,
    /// The FIB: every IPv4 and IPv6 route with its next hop.
    Routes,
    /// The neighbour cache (ARP and ND).
    Neighbors,
    /// NAT flows of every worker (`--network`: only that network's).
    Conntrack,
    /// NAT mappings, external addresses, port usage.
    Nat,
    /// Overlays: VNI, local VTEP, flood list and remote FDB entries.
    Vxlan,
}

/// Answers one request.
pub fn handle(router: &mut Router, req: &Request) -> Value {
    match req {
        Request::Ping => json!({"ok": true, "data": {"generation": router.generation()}}),
        Request::Show { what, network } => {
            let data = match what {
                Show::Ports => Ok(router.show_ports()),
                Show::Workers => Ok(router.show_workers()),
                Show::Stats => Ok(router.show_stats()),
                Show::Drops => Ok(router.show_drops()),
                Show::Bridges => Ok(router.show_bridges()),
                Show::Mac => router.show_mac(network.as_deref()),
                Show::Routes => Ok(router.show_routes()),
                Show::Neighbors => Ok(router.show_neighbors()),
                Show::Conntrack => Ok(router.show_conntrack(network.as_deref(), 100_000)),
                Show::Nat => Ok(router.show_nat()),
                Show::Vxlan => Ok(router.show_vxlan()),
            };
            reply(data)
        }
        Request::ClearMac { network } => reply(router.clear_mac(network.as_deref())),
        Request::RouteAdd { prefix, via, kind } => {
            reply(parse_route(prefix, via, kind.as_deref()).and_then(|r| router.route_add(r)))
        }
        Request::RouteDel { prefix } => reply(
            prefix
                .parse::<IpCidr>()
                .map_err(|e| e.to_string())
                .and_then(|p| router.route_del(p)),
        ),
        Request::VxlanFdbAdd { network, mac, vtep } => {
            reply(router.vxlan_fdb_add(network, mac, vtep))
        }
        Request::VxlanFdbDel { network, mac } => reply(router.vxlan_fdb_del(network, mac)),
        Request::Reload => match router.reload() {
            Ok(g) => json!({"ok": true, "data": {"generation": g}}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        },
    }
}

/// A route from its written parts, with the messages the config file would give.
fn parse_route(prefix: &str, via: &[String], kind: Option<&str>) -> Result<RouteCfg, String> {
    let prefix: IpCidr = prefix
        .parse()
        .map_err(|e: crate::config::ParseCidrError| e.to_string())?;
    let kind = match kind {
        None | Some("forward") => RouteKind::Forward,
        Some("blackhole") => RouteKind::Blackhole,
        Some("unreachable") => RouteKind::Unreachable,
        Some(other) => {
            return Err(format!(
                "unknown route type {other:?} (expected one of: forward, blackhole, unreachable)"
            ))
        }
    };
    if kind != RouteKind::Forward && !via.is_empty() {
        return Err("a blackhole or unreachable route has no gateway".into());
    }
    let via = via
        .iter()
        .map(|v| {
            v.parse::<std::net::IpAddr>()
                .map_err(|_| format!("invalid IP address {v:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RouteCfg { prefix, via, kind })
}

fn reply(r: Result<Value, String>) -> Value {
    match r {
        Ok(data) => json!({"ok": true, "data": data}),
        Err(e) => json!({"ok": false, "error": e}),
    }
}

/// The listening side.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
}

impl Server {
    /// Binds `path` (creating its directory), replacing a stale socket left by a dead process but refusing to
    /// steal one that a live wharf answers on.
    pub fn bind(path: &Path) -> anyhow::Result<Server> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "{} is in use by a running wharf (use another --socket)",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale socket {}", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Serves every connection waiting now; returns how many requests were answered.
    pub fn poll(&self, router: &mut Router) -> usize {
        let mut served = 0;
        while let Ok((stream, _)) = self.listener.accept() {
            if let Err(e) = serve_one(stream, router) {
                tracing::debug!("control connection: {e}");
            }
            served += 1;
        }
        served
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_one(stream: UnixStream, router: &mut Router) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    let mut out = stream;
    // Bounded: a client that sends an endless line is cut off.
    while reader.by_ref().take(64 * 1024).read_line(&mut line)? > 0 {
        let resp = match serde_json::from_str::<Request>(line.trim()) {
            Ok(req) => handle(router, &req),
            Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
        };
        writeln!(out, "{resp}")?;
        line.clear();
    }
    Ok(())
}

/// Sends one request to the socket at `path` and returns the `data` of the response, or its error.
pub fn request(path: &Path, req: &Request) -> anyhow::Result<Value> {
    let mut s = UnixStream::connect(path).with_context(|| {
        format!(
            "cannot connect to {} (is `wharf run` or `wharf lab` running?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    writeln!(s, "{}", serde_json::to_string(req)?)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    let v: Value = serde_json::from_str(&line).with_context(|| format!("bad response {line:?}"))?;
    if v["ok"] == json!(true) {
        Ok(v["data"].clone())
    } else {
        anyhow::bail!("{}", v["error"].as_str().unwrap_or("unknown error"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_documented() {
        let r: Request = serde_json::from_str(r#"{"cmd":"show","what":"drops"}"#).unwrap();
        assert_eq!(
            r,
            Request::Show {
                what: Show::Drops,
                network: None
            }
        );
        let r: Request =
            serde_json::from_str(r#"{"cmd":"show","what":"mac","network":"br0"}"#).unwrap();
        assert_eq!(
            r,
            Request::Show {
                what: Show::Mac,
                network: Some("br0".into())
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::ClearMac { network: None }).unwrap(),
            r#"{"cmd":"clear-mac"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Reload).unwrap(),
            r#"{"cmd":"reload"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"show","what":"nothing"}"#).is_err());
    }
}
