//! Throw-away certificates for mutual-TLS tests: a CA, a server and a client
//! certificate it signed, and a client certificate from an unrelated CA.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// PEM files written to a directory.
pub struct TestPki {
    /// The CA both sides trust.
    pub ca: PathBuf,
    /// Server certificate (SANs: the server name, 127.0.0.1) and key.
    pub server: (PathBuf, PathBuf),
    /// Client certificate signed by `ca`, and key.
    pub client: (PathBuf, PathBuf),
    /// Client certificate signed by another CA, and key.
    pub rogue_client: (PathBuf, PathBuf),
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA cert")
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    issuer: &CertifiedIssuer<'_, KeyPair>,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("leaf key");
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let cert = CertificateParams::new(sans)
        .expect("leaf params")
        .signed_by(&key, issuer)
        .expect("leaf cert");
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).expect("writing cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("writing key");
    (cert_path, key_path)
}

impl TestPki {
    /// Writes a fresh PKI into `dir`; the server certificate names `server_name`.
    pub fn new(dir: &Path, server_name: &str) -> Self {
        let trusted = ca("tandem test CA");
        let rogue = ca("rogue CA");
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, trusted.pem()).expect("writing CA");
        Self {
            ca: ca_path,
            server: leaf(dir, "server", &[server_name, "127.0.0.1"], &trusted),
            client: leaf(dir, "client", &["tandemctl"], &trusted),
            rogue_client: leaf(dir, "rogue", &["tandemctl"], &rogue),
        }
    }
}
