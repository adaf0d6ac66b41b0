//! `net up`, `net down`, `net status` (grammar in [`crate::args::net`]): refusal outside the rescue
//! system (these commands change the machine's network), tables, and case-log entries. The work is [`crate::net`].

use std::time::Duration;

use crate::args::net::NetCommand;
use crate::net::{self, Method};

fn log(kind: &str, line: &str, detail: serde_json::Value) {
    super::case::log_command(kind, line, detail);
}

/// Runs a `net` command.
pub fn run(cmd: &NetCommand) -> anyhow::Result<u8> {
    let in_rescue = crate::system::in_rescue_system();
    match cmd {
        NetCommand::Status { json } => {
            let list = net::interfaces()?;
            if *json {
                println!("{}", serde_json::to_string(&list)?);
                return Ok(0);
            }
            println!(
                "{:<12} {:<12} {:<17} {:<5} {:<5} {:>9}  config",
                "interface", "driver", "mac", "admin", "link", "speed"
            );
            for i in &list {
                let config = i.config.as_ref().map_or_else(String::new, |c| {
                    format!(
                        "{} {}/{} gw {} dns {}",
                        c.method,
                        c.address,
                        c.prefix,
                        c.gateway.map_or_else(|| "-".to_owned(), |g| g.to_string()),
                        if c.dns.is_empty() {
                            "-".to_owned()
                        } else {
                            c.dns
                                .iter()
                                .map(|d| d.to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        }
                    )
                });
                println!(
                    "{:<12} {:<12} {:<17} {:<5} {:<5} {:>9}  {}",
                    i.name,
                    i.driver.as_deref().unwrap_or("-"),
                    i.mac,
                    if i.up { "up" } else { "down" },
                    if !i.up {
                        "-"
                    } else if i.link {
                        "yes"
                    } else {
                        "no"
                    },
                    i.speed_mbps
                        .map_or_else(|| "-".to_owned(), |s| format!("{s} Mb/s")),
                    config
                );
            }
            if list.is_empty() {
                println!("(no network interfaces: no NIC driver matched this machine)");
            }
            Ok(0)
        }
        NetCommand::Up {
            iface,
            dhcp,
            address,
            gateway,
            dns,
            timeout,
        } => {
            if !in_rescue {
                anyhow::bail!(
                    "net up changes this machine's network; it runs only inside the rescue system"
                );
            }
            let method = if *dhcp {
                Method::Dhcp {
                    timeout: Duration::from_secs((*timeout).max(1)),
                }
            } else {
                let (address, prefix) = net::parse_cidr(address.as_deref().unwrap_or(""))?;
                Method::Static {
                    address,
                    prefix,
                    gateway: *gateway,
                }
            };
            if *dhcp {
                eprintln!("{iface}: link up, asking DHCP (up to {timeout} s)...");
            }
            match net::up(iface, &method, dns) {
                Ok(c) => {
                    println!(
                        "{}: {}/{}, gateway {} ({}{}), dns {}",
                        c.iface,
                        c.address,
                        c.prefix,
                        c.gateway
                            .map_or_else(|| "none".to_owned(), |g| g.to_string()),
                        c.method,
                        c.dhcp_server
                            .map_or_else(String::new, |s| format!(" from {s}")),
                        if c.dns.is_empty() {
                            "none".to_owned()
                        } else {
                            c.dns
                                .iter()
                                .map(|d| d.to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        }
                    );
                    log(
                        "net",
                        "net up",
                        serde_json::to_value(&c).unwrap_or_default(),
                    );
                    Ok(0)
                }
                Err(e) => {
                    log(
                        "net",
                        "net up failed",
                        serde_json::json!({"iface": iface, "error": crate::error_chain(&e)}),
                    );
                    Err(e.into())
                }
            }
        }
        NetCommand::Down { iface } => {
            if !in_rescue {
                anyhow::bail!(
                    "net down changes this machine's network; it runs only inside the rescue system"
                );
            }
            let name = net::down(iface.as_deref())?;
            println!("{name}: down");
            log("net", "net down", serde_json::json!({"iface": name}));
            Ok(0)
        }
    }
}
