//! Connecting to a daemon's gRPC API: over its Unix socket, or over TCP with
//! mutual TLS. Used by tandemctl, by hbd to reach its resources, and by tests.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

/// Files a client presents and trusts on TCP.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// PEM CA that signed the server's certificate.
    pub ca: PathBuf,
    /// PEM client certificate.
    pub cert: PathBuf,
    /// PEM key for `cert`.
    pub key: PathBuf,
    /// Name to verify in the server's certificate.
    pub server_name: String,
}

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A TLS file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The transport failed.
    #[error("{target}: {source}")]
    Transport {
        /// What we tried to reach.
        target: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
}

/// A channel to the daemon listening on the Unix socket at `path`.
pub async fn connect_unix(path: &Path) -> Result<Channel, ClientError> {
    let socket = path.to_owned();
    // The URI is required by the API but unused: the connector dials the socket.
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| ClientError::Transport {
            target: path.display().to_string(),
            source,
        })
}

/// A channel to the daemon at `addr` (host:port) over TCP with mutual TLS.
pub async fn connect_tcp(addr: &str, tls: &ClientTls) -> Result<Channel, ClientError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| ClientError::Read {
            path: path.clone(),
            source,
        })
    };
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
        .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?))
        .domain_name(tls.server_name.clone());
    let transport = |source| ClientError::Transport {
        target: addr.to_owned(),
        source,
    };
    Endpoint::from_shared(format!("https://{addr}"))
        .map_err(transport)?
        .tls_config(config)
        .map_err(transport)?
        .connect()
        .await
        .map_err(transport)
}
