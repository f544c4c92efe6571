//! Commands over `tandem.vip.v1`: vipd's addresses (where each belongs in
//! the current state and whether it is there) and announcements on demand.

use std::fmt::Write as _;
use std::process::ExitCode;

use tandem_proto::vip::v1 as pb;
use tandem_proto::vip::v1::vip_client::VipClient;
use tonic::transport::Channel;

use crate::refused;

/// `tandemctl vip …`.
#[derive(clap::Subcommand)]
pub enum VipCommand {
    /// Every configured address: placement, wanted now, present, announcements.
    List,
    /// Send one gratuitous ARP / unsolicited NA round now (ACTIVE only).
    Announce {
        /// Addresses to announce (without prefix); none: every director VIP.
        addresses: Vec<String>,
    },
}

/// Runs one `tandemctl vip` command.
pub async fn run(channel: Channel, command: VipCommand) -> anyhow::Result<ExitCode> {
    let mut client = VipClient::new(channel);
    match command {
        VipCommand::List => {
            let reply = client
                .list_addresses(pb::ListAddressesRequest {})
                .await
                .map_err(refused("ListAddresses"))?
                .into_inner();
            print!("{}", render(&reply));
        }
        VipCommand::Announce { addresses } => {
            let reply = client
                .announce(pb::AnnounceRequest { addresses })
                .await
                .map_err(refused("Announce"))?
                .into_inner();
            println!("sent {} frames", reply.frames);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn render(reply: &pb::ListAddressesResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:<10} {:<12} {:<7} {:<8} {:>9}",
        "ADDRESS", "INTERFACE", "PLACEMENT", "WANTED", "PRESENT", "ANNOUNCED"
    );
    for a in &reply.addresses {
        let placement = match a.placement() {
            pb::Placement::Director => "director",
            pb::Placement::RealServer => "real-server",
            pb::Placement::Unspecified => "?",
        };
        let iface = if a.label.is_empty() {
            a.interface.clone()
        } else {
            a.label.clone()
        };
        let yes = |b: bool| if b { "yes" } else { "no" };
        let _ = writeln!(
            out,
            "{:<22} {:<10} {:<12} {:<7} {:<8} {:>9}",
            a.cidr,
            iface,
            placement,
            yes(a.wanted),
            yes(a.present),
            a.announcements
        );
    }
    out
}
