//! Opening what a daemon listens on: its gRPC Unix socket (mode 0660, a stale
//! socket from a dead process replaced, a live one refused) and the mutual
//! TLS config of its optional TCP listener.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::UnixListener;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::{ConfigError, TcpSettings};

/// Mode of a daemon's gRPC socket: owner and group may connect.
pub const SOCKET_MODE: u32 = 0o660;

/// Why a socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another live process serves this socket.
    #[error("{}: another process is serving this socket", path.display())]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// Something that is not a socket is in the way.
    #[error("{}: exists and is not a socket; refusing to replace it", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl ListenError {
    /// True when the failure is a permission problem (don't restart).
    pub fn is_permission(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == ErrorKind::PermissionDenied)
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ListenError {
    let path = path.to_owned();
    move |source| ListenError::Io { what, path, source }
}

/// Binds the gRPC Unix socket at `path`, creating its directory if needed.
///
/// A socket file left by a dead process (connecting to it is refused) is
/// replaced; one that a live process answers on is not.
pub fn bind_unix(path: &Path) -> Result<UnixListener, ListenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("creating the socket's directory", dir))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ListenError::NotASocket {
                path: path.to_owned(),
            });
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(ListenError::InUse {
                    path: path.to_owned(),
                });
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                tracing::info!(path = %path.display(), "replacing stale socket");
                std::fs::remove_file(path).map_err(io("removing the stale socket", path))?;
            }
            Err(source) => {
                return Err(ListenError::Io {
                    what: "probing the existing socket",
                    path: path.to_owned(),
                    source,
                });
            }
        },
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ListenError::Io {
                what: "inspecting",
                path: path.to_owned(),
                source,
            });
        }
    }
    let listener = UnixListener::bind(path).map_err(io("binding", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(io("setting the socket's mode", path))?;
    Ok(listener)
}

/// Reads and checks the TLS files of a TCP listener and builds a server TLS
/// config that requires a client certificate signed by `client_ca`.
pub fn server_tls(tcp: &TcpSettings, origin: &str) -> Result<ServerTlsConfig, ConfigError> {
    let cert = read_pem(origin, "daemon.tcp.cert", &tcp.cert)?;
    let key = read_pem(origin, "daemon.tcp.key", &tcp.key)?;
    let ca = read_pem(origin, "daemon.tcp.client_ca", &tcp.client_ca)?;
    check_certs(origin, "daemon.tcp.cert", &tcp.cert, &cert)?;
    check_certs(origin, "daemon.tcp.client_ca", &tcp.client_ca, &ca)?;
    PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
        ConfigError::invalid(
            origin,
            "daemon.tcp.key",
            format!("{}: no usable PEM private key: {e}", tcp.key.display()),
        )
    })?;
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(ca))
        .client_auth_optional(false))
}

fn read_pem(origin: &str, field: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::invalid(origin, field, format!("{}: {e}", path.display())))
}

fn check_certs(origin: &str, field: &str, path: &Path, pem: &[u8]) -> Result<(), ConfigError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(()),
        Ok(_) => Err(ConfigError::invalid(
            origin,
            field,
            format!("{}: no PEM certificate in the file", path.display()),
        )),
        Err(e) => Err(ConfigError::invalid(
            origin,
            field,
            format!("{}: bad PEM: {e}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn socket_is_created_with_mode_0660_in_a_new_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/tandem/x.sock");
        let _l = bind_unix(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_and_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sock");
        let first = bind_unix(&path).unwrap();
        let err = bind_unix(&path).unwrap_err();
        assert!(matches!(err, ListenError::InUse { .. }), "{err}");
        drop(first); // the file stays behind, nobody listens: stale
        assert!(path.exists());
        bind_unix(&path).unwrap();
    }

    #[tokio::test]
    async fn a_regular_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sock");
        std::fs::write(&path, "precious").unwrap();
        let err = bind_unix(&path).unwrap_err();
        assert!(matches!(err, ListenError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[test]
    fn garbage_tls_files_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let tcp = TcpSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert: junk.clone(),
            key: junk.clone(),
            client_ca: dir.path().join("missing.pem"),
        };
        let err = server_tls(&tcp, "x.yaml").unwrap_err().to_string();
        assert!(err.contains("daemon.tcp.client_ca"), "{err}");
        std::fs::write(dir.path().join("missing.pem"), "").unwrap();
        let err = server_tls(&tcp, "x.yaml").unwrap_err().to_string();
        assert!(
            err.contains("daemon.tcp.cert") && err.contains("no PEM certificate"),
            "{err}"
        );
    }
}
