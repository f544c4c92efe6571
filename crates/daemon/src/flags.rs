//! Command-line flags every daemon takes. A flag overrides the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{ConfigError, DaemonSettings, LogFormat, TcpSettings};

/// Flags common to every daemon (flatten into the daemon's clap parser).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CommonFlags {
    /// Config file (YAML). Default: /etc/tandem/<daemon>.yaml if it exists.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Unix socket to serve gRPC on. Default: /run/tandem/<daemon>.sock.
    #[arg(long, value_name = "PATH")]
    pub listen: Option<PathBuf>,
    /// Also serve gRPC on this TCP address, with mutual TLS only.
    #[arg(long, value_name = "ADDR:PORT")]
    pub tcp_listen: Option<SocketAddr>,
    /// PEM certificate for the TCP listener.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the TCP listener.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA that TCP clients' certificates must be signed by.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Validate the config (file and flags), print the result and exit.
    #[arg(long)]
    pub check_config: bool,
}

impl CommonFlags {
    /// Writes the flags that were given over `settings`.
    pub fn apply(&self, settings: &mut DaemonSettings) -> Result<(), ConfigError> {
        if let Some(path) = &self.listen {
            settings.socket = Some(path.clone());
        }
        if let Some(addr) = self.metrics_listen {
            settings.metrics_listen = Some(addr);
        }
        if let Some(format) = self.log_format {
            settings.log_format = format;
        }
        let tls_flags = [&self.tls_cert, &self.tls_key, &self.tls_client_ca];
        match (self.tcp_listen, settings.tcp.as_mut()) {
            (Some(listen), Some(tcp)) => tcp.listen = listen,
            (Some(listen), None) => {
                let [Some(cert), Some(key), Some(client_ca)] = tls_flags else {
                    return Err(ConfigError::invalid(
                        "flags",
                        "--tcp-listen",
                        "TCP is served only with mutual TLS: give --tls-cert, --tls-key and \
                         --tls-client-ca (or a daemon.tcp section in the config file)",
                    ));
                };
                settings.tcp = Some(TcpSettings {
                    listen,
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: client_ca.clone(),
                });
                return Ok(());
            }
            (None, None) if tls_flags.iter().any(|f| f.is_some()) => {
                return Err(ConfigError::invalid(
                    "flags",
                    "--tls-*",
                    "TLS flags given without a TCP listener (--tcp-listen or daemon.tcp)",
                ));
            }
            _ => {}
        }
        if let Some(tcp) = settings.tcp.as_mut() {
            if let Some(cert) = &self.tls_cert {
                tcp.cert = cert.clone();
            }
            if let Some(key) = &self.tls_key {
                tcp.key = key.clone();
            }
            if let Some(ca) = &self.tls_client_ca {
                tcp.client_ca = ca.clone();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_file() -> DaemonSettings {
        DaemonSettings {
            tcp: Some(TcpSettings {
                listen: "203.0.113.1:7443".parse().unwrap(),
                cert: "file.crt".into(),
                key: "file.key".into(),
                client_ca: "ca.crt".into(),
            }),
            ..DaemonSettings::default()
        }
    }

    #[test]
    fn flags_override_the_file() {
        let mut s = tcp_file();
        let flags = CommonFlags {
            listen: Some("/tmp/x.sock".into()),
            tcp_listen: Some("203.0.113.2:9000".parse().unwrap()),
            tls_key: Some("flag.key".into()),
            log_format: Some(LogFormat::Json),
            ..CommonFlags::default()
        };
        flags.apply(&mut s).unwrap();
        let tcp = s.tcp.unwrap();
        assert_eq!(s.socket.unwrap(), PathBuf::from("/tmp/x.sock"));
        assert_eq!(tcp.listen.to_string(), "203.0.113.2:9000");
        assert_eq!((tcp.cert, tcp.key), ("file.crt".into(), "flag.key".into()));
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn tcp_flag_without_tls_is_refused() {
        let flags = CommonFlags {
            tcp_listen: Some("203.0.113.2:9000".parse().unwrap()),
            tls_cert: Some("c".into()),
            ..CommonFlags::default()
        };
        let err = flags.apply(&mut DaemonSettings::default()).unwrap_err();
        assert!(err.to_string().contains("only with mutual TLS"), "{err}");
    }

    #[test]
    fn tls_flags_alone_are_refused() {
        let flags = CommonFlags {
            tls_cert: Some("c".into()),
            ..CommonFlags::default()
        };
        assert!(flags.apply(&mut DaemonSettings::default()).is_err());
    }
}
