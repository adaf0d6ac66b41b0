//! `net up|down|status`.

use std::net::Ipv4Addr;

use clap::{ArgGroup, Subcommand};

/// What `net` does.
#[derive(Debug, Clone, Subcommand)]
pub enum NetCommand {
    /// Bring exactly one interface up, by DHCP or with a static address (nothing listens, ever).
    #[command(group(ArgGroup::new("how").required(true).args(["dhcp", "address"])))]
    Up {
        /// The interface (see `net status`).
        iface: String,
        /// Ask a DHCP server for the address, gateway and DNS.
        #[arg(long)]
        dhcp: bool,
        /// Static address with prefix length, e.g. 192.0.2.10/24.
        #[arg(long, value_name = "CIDR", requires = "gateway")]
        address: Option<String>,
        /// Default gateway for --address.
        #[arg(long, value_name = "IP")]
        gateway: Option<Ipv4Addr>,
        /// DNS server written to /etc/resolv.conf (repeatable; overrides DHCP's).
        #[arg(long, value_name = "IP")]
        dns: Vec<Ipv4Addr>,
        /// Seconds to wait for DHCP answers.
        #[arg(long, value_name = "SECS", default_value_t = 15)]
        timeout: u64,
    },
    /// Take the interface down again (address removed, link down).
    Down {
        /// The interface [default: the one `net up` configured].
        iface: Option<String>,
    },
    /// Every interface: driver, MAC, link, speed, and what `net up` configured.
    Status {
        /// One JSON array on one line.
        #[arg(long)]
        json: bool,
    },
}
