//! `wharf`: the command line. `run` the router, `check` configs, talk to a running router with `ctl`, or build
//! and run a whole `lab` of network namespaces.

use clap::{Parser, Subcommand};
use control::ctl::{self, Request, Show};
use control::daemon::{control_loop, Signals};
use control::router::Router;
use control::{config, lab};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "wharf: a userspace packet-processing router for container networks"
)]
struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `wharf=debug`. `RUST_LOG` overrides it.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the router on CONFIG until SIGINT/SIGTERM; SIGHUP or `wharf ctl reload` re-reads CONFIG.
    Run {
        /// The configuration file (TOML).
        config: PathBuf,
        /// Control socket path (default: the config's `control.socket`, else /run/wharf/wharf.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Validate configuration files; print every error with file, line, field and reason.
    Check {
        /// Configuration files.
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
    /// Query or steer a running router through its control socket.
    Ctl {
        /// Control socket path.
        #[arg(long, default_value = ctl::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the raw JSON response.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: CtlCmd,
    },
    /// Build the topology in network namespaces (a namespace and veth pair per endpoint), run the router on
    /// it, and remove everything on exit. Without CONFIG, the embedded default topology.
    Lab {
        /// Topology and router configuration (default: the embedded two-namespace cross-connect).
        config: Option<PathBuf>,
        /// Send traffic between every pair of endpoints, print a pass/fail table and exit.
        #[arg(long)]
        check: bool,
        /// Prefix for namespace and interface names (default: derived from the process id).
        #[arg(long)]
        prefix: Option<String>,
        /// Control socket path (default: /run/wharf/lab-PREFIX.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CtlCmd {
    /// Show a table: ports, workers, stats, drops, bridges, `mac [NETWORK]`, routes, neighbors,
    /// `conntrack [NETWORK]`, nat or vxlan.
    Show {
        /// Which table.
        #[arg(value_enum)]
        what: Show,
        /// For `mac` and `conntrack`: only this network.
        network: Option<String>,
    },
    /// Forget learned MACs: `clear mac [NETWORK]`.
    Clear {
        /// What to clear (only `mac` today).
        #[arg(value_parser = ["mac"])]
        what: String,
        /// Only this bridge network.
        network: Option<String>,
    },
    /// Change static routes in place: `route add PREFIX via GW [GW...]` (several: ECMP),
    /// `route add PREFIX blackhole|unreachable`, `route del PREFIX`.
    Route {
        #[command(subcommand)]
        op: RouteOp,
    },
    /// The overlays' run-time FDB: `vxlan fdb add NETWORK MAC VTEP`, `vxlan fdb del NETWORK MAC`.
    Vxlan {
        #[command(subcommand)]
        op: VxlanOp,
    },
    /// Re-read the config file and apply it atomically (a bad config is refused; the old one keeps running).
    Reload,
    /// Check the router answers.
    Ping,
}

#[derive(Subcommand)]
enum VxlanOp {
    /// `fdb add NETWORK MAC VTEP` or `fdb del NETWORK MAC`.
    Fdb {
        /// `add` or `del`.
        #[arg(value_parser = ["add", "del"])]
        op: String,
        /// The overlay network.
        network: String,
        /// The remote endpoint's MAC.
        mac: String,
        /// The remote VTEP's IPv4 address (`add` only).
        vtep: Option<String>,
    },
}

#[derive(Subcommand)]
enum RouteOp {
    /// `add PREFIX via GW [GW...]` or `add PREFIX blackhole|unreachable`.
    Add {
        /// Destination prefix, like 10.9.0.0/16 or fd00:9::/48.
        prefix: String,
        /// `via GW [GW...]`, `blackhole` or `unreachable`.
        #[arg(num_args = 1.., required = true)]
        target: Vec<String>,
    },
    /// `del PREFIX`.
    Del {
        /// Destination prefix.
        prefix: String,
    },
}

/// The request for `route add PREFIX TARGET...`.
fn route_add_request(prefix: String, target: Vec<String>) -> anyhow::Result<Request> {
    match target.split_first() {
        Some((w, gws)) if w == "via" && !gws.is_empty() => Ok(Request::RouteAdd {
            prefix,
            via: gws.to_vec(),
            kind: None,
        }),
        Some((w, [])) if w == "blackhole" || w == "unreachable" => Ok(Request::RouteAdd {
            prefix,
            via: Vec::new(),
            kind: Some(w.clone()),
        }),
        _ => anyhow::bail!(
            "expected `via GW [GW...]`, `blackhole` or `unreachable` after the prefix, got {:?}",
            target.join(" ")
        ),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wharf: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Run {
            config: path,
            socket,
        } => {
            let cfg = config::load(&path)?;
            let socket = socket.unwrap_or_else(|| cfg.control.socket.clone());
            let signals = Signals::install()?;
            let mut router = Router::start(cfg, Some(path))?;
            let server = ctl::Server::bind(&socket)?;
            tracing::info!(socket = %socket.display(), "control socket ready");
            control_loop(&mut router, Some(&server), &signals);
            tracing::info!("stopping");
            router.stop();
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { configs } => {
            let mut failed = false;
            for path in configs {
                match config::load(&path) {
                    Ok(cfg) => println!(
                        "{}: ok ({} ports, {} networks, {} endpoints, {} workers)",
                        path.display(),
                        cfg.ports.len(),
                        cfg.networks.len(),
                        cfg.endpoints.len(),
                        cfg.workers().len()
                    ),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Ctl {
            socket,
            json,
            action,
        } => {
            let req = match action {
                CtlCmd::Show { what, network } => Request::Show { what, network },
                CtlCmd::Clear { network, .. } => Request::ClearMac { network },
                CtlCmd::Route {
                    op: RouteOp::Add { prefix, target },
                } => route_add_request(prefix, target)?,
                CtlCmd::Route {
                    op: RouteOp::Del { prefix },
                } => Request::RouteDel { prefix },
                CtlCmd::Vxlan {
                    op:
                        VxlanOp::Fdb {
                            op,
                            network,
                            mac,
                            vtep,
                        },
                } => match (op.as_str(), vtep) {
                    ("add", Some(vtep)) => Request::VxlanFdbAdd { network, mac, vtep },
                    ("del", None) => Request::VxlanFdbDel { network, mac },
                    ("add", None) => {
                        anyhow::bail!("vxlan fdb add NETWORK MAC VTEP: the VTEP is missing")
                    }
                    _ => anyhow::bail!("vxlan fdb del NETWORK MAC takes no VTEP"),
                },
                CtlCmd::Reload => Request::Reload,
                CtlCmd::Ping => Request::Ping,
            };
            let data = ctl::request(&socket, &req)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                print!("{}", render(&data));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lab {
            config: path,
            check,
            prefix,
            socket,
        } => {
            let opts = lab::LabOptions {
                config: path,
                check,
                prefix,
                socket,
            };
            let passed = lab::run(opts)?;
            Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Renders a response for people: an array of objects as a table, an object as `key: value` lines.
fn render(v: &Value) -> String {
    fn cell(v: &Value) -> String {
        match v {
            Value::Null => "-".into(),
            Value::String(s) => s.clone(),
            Value::Object(m) if m.is_empty() => "-".into(),
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| format!("{k}={}", cell(v)))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        }
    }
    match v {
        Value::Array(rows) if rows.iter().all(Value::is_object) && !rows.is_empty() => {
            let keys: Vec<&String> = rows[0]
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| keys.iter().map(|k| cell(&r[k.as_str()])).collect())
                .collect();
            let widths: Vec<usize> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    table
                        .iter()
                        .map(|r| r[i].len())
                        .chain([k.len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
                    + "\n"
            };
            let mut out = line(keys.iter().map(|k| k.to_string()).collect());
            for r in table {
                out += &line(r);
            }
            out
        }
        Value::Object(m) if m.is_empty() => "(none)\n".into(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", cell(v)))
            .collect(),
        other => format!("{other}\n"),
    }
}
