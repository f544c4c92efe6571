//! Which daemon to talk to, and how: its Unix socket, or TCP with mutual TLS.

use std::path::PathBuf;

use anyhow::Context;
use tandem_daemon::client::{self, ClientTls};
use tonic::transport::Channel;

/// Flags that pick the daemon.
#[derive(clap::Args)]
pub struct TargetFlags {
    /// Daemon whose default socket (/run/tandem/<NAME>.sock) to use
    /// (default: hbd; ipvsd for `ipvs`, checkd for `check`, vipd for `vip` commands).
    #[arg(long, short = 'd', value_name = "NAME")]
    daemon: Option<String>,
    /// Unix socket to use instead of the daemon's default.
    #[arg(long, value_name = "PATH", conflicts_with = "tcp")]
    socket: Option<PathBuf>,
    /// Reach the daemon over TCP with mutual TLS at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", requires_all = ["tls_ca", "tls_cert", "tls_key"])]
    tcp: Option<String>,
    /// PEM CA that signed the daemon's certificate.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// PEM client certificate.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM key of the client certificate.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Name expected in the daemon's certificate (default: the --daemon name).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
}

impl TargetFlags {
    /// Opens a channel to the chosen daemon (`default` when none is named).
    pub async fn connect(&self, default: &str) -> anyhow::Result<Channel> {
        let daemon = self.daemon.as_deref().unwrap_or(default);
        if let (Some(addr), Some(ca), Some(cert), Some(key)) =
            (&self.tcp, &self.tls_ca, &self.tls_cert, &self.tls_key)
        {
            let tls = ClientTls {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
                server_name: self
                    .server_name
                    .clone()
                    .unwrap_or_else(|| daemon.to_owned()),
            };
            return client::connect_tcp(addr, &tls)
                .await
                .with_context(|| format!("connecting to {daemon} over TCP"));
        }
        let socket = self
            .socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/run/tandem/{daemon}.sock")));
        client::connect_unix(&socket)
            .await
            .with_context(|| format!("connecting to {daemon}"))
    }
}
