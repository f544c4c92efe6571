//! YAML config loading. Every daemon's file has a `daemon:` section
//! ([`DaemonSettings`]: sockets, TLS, metrics, logging) beside its own keys.
//! Errors name the file, line, column and the field's path; unknown fields
//! are refused. A config is validated whole before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The `daemon:` section every daemon's config file has.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSettings {
    /// Unix socket for gRPC; default `/run/tandem/<daemon>.sock`.
    pub socket: Option<PathBuf>,
    /// Optional TCP listener, always with mutual TLS.
    pub tcp: Option<TcpSettings>,
    /// Address of the Prometheus `/metrics` endpoint; none by default.
    pub metrics_listen: Option<SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
}

/// A TCP gRPC listener. TLS is not optional: the fields that make it mutual
/// TLS are required, so a plaintext TCP listener cannot be configured.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TcpSettings {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain this daemon presents.
    pub cert: PathBuf,
    /// PEM private key for `cert`.
    pub key: PathBuf,
    /// PEM CA certificate(s); clients must present a certificate signed by one.
    pub client_ca: PathBuf,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A daemon's whole config file.
pub trait DaemonConfig: DeserializeOwned + Default + Clone + Send + Sync + 'static {
    /// The `daemon:` section.
    fn settings(&self) -> &DaemonSettings;
    /// The `daemon:` section, for flags to override.
    fn settings_mut(&mut self) -> &mut DaemonSettings;
    /// Checks rules serde cannot express; `origin` (the file) goes into
    /// errors. The default has none.
    fn validate(&self, _origin: &str) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// The config of a daemon that has no settings of its own yet: only the
/// `daemon:` section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BareConfig {
    /// The `daemon:` section.
    #[serde(default)]
    pub daemon: DaemonSettings,
}

impl DaemonConfig for BareConfig {
    fn settings(&self) -> &DaemonSettings {
        &self.daemon
    }
    fn settings_mut(&mut self) -> &mut DaemonSettings {
        &mut self.daemon
    }
}

/// A config that cannot be used. Every variant names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not fit the config's schema.
    #[error("{}:{line}:{column}: field `{field}`: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line; 0 when unknown.
        line: usize,
        /// 1-based column; 0 when unknown.
        column: usize,
        /// The field's path, e.g. `daemon.tcp.listen`.
        field: String,
        /// What is wrong, with a snippet of the file.
        message: String,
    },
    /// A value that parses but cannot work.
    #[error("{origin}: field `{field}`: {message}")]
    Invalid {
        /// The file, or "flags" for command-line values.
        origin: String,
        /// The field's path.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `field` of the config from `origin`.
    pub fn invalid(
        origin: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            origin: origin.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Parses `text` (the contents of `path`) as a `T`.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let mut field = String::new();
    serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            field = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| {
        let (line, column) = e
            .location()
            .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            column,
            field: if field.is_empty() { ".".into() } else { field },
            message: reason(&e.to_string(), column).replace("<input>", &path.display().to_string()),
        }
    })
}

/// The parser's message without its own "error: line L column C: " prefix
/// (the caller puts the location first), snippet kept.
fn reason(message: &str, column: usize) -> String {
    let marker = format!("column {column}: ");
    match message.split_once(&marker) {
        Some((prefix, rest)) if !prefix.contains('\n') => rest.to_owned(),
        _ => message.to_owned(),
    }
}

/// Reads and parses the file at `path`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        daemon: DaemonSettings,
        #[serde(default)]
        reals: Vec<SocketAddr>,
    }

    fn parse_err(text: &str) -> ConfigError {
        parse::<Sample>(Path::new("/etc/tandem/x.yaml"), text).unwrap_err()
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let err = parse_err("daemon:\n  log_format: json\n  sokcet: /run/x.sock\n");
        let ConfigError::Parse { line, field, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*line, field.as_str()), (3, "daemon.sokcet"));
        let text = err.to_string();
        assert!(
            text.starts_with("/etc/tandem/x.yaml:3:3: field `daemon.sokcet`"),
            "{text}"
        );
        assert!(text.contains("unknown field `sokcet`"), "{text}");
    }

    #[test]
    fn bad_address_in_a_list_names_its_index() {
        let err = parse_err("reals:\n  - 198.51.100.101:80\n  - 198.51.100.300:80\n");
        let ConfigError::Parse { line, field, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*line, field.as_str()), (3, "reals[1]"));
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = parse_err("daemon:\n  log_format: [json]\n");
        assert!(
            err.to_string().contains("field `daemon.log_format`"),
            "{err}"
        );
    }

    #[test]
    fn tcp_without_its_tls_files_is_refused() {
        let err = parse_err("daemon:\n  tcp:\n    listen: 203.0.113.1:7443\n");
        assert!(err.to_string().contains("missing field `cert`"), "{err}");
    }

    #[test]
    fn a_full_daemon_section_parses() {
        let s: Sample = parse(
            Path::new("x.yaml"),
            "daemon:\n  socket: /run/t.sock\n  metrics_listen: 127.0.0.1:9100\n  log_format: json\n  tcp:\n    listen: 203.0.113.1:7443\n    cert: c.pem\n    key: k.pem\n    client_ca: ca.pem\n",
        )
        .unwrap();
        assert_eq!(s.daemon.log_format, LogFormat::Json);
        assert_eq!(s.daemon.tcp.unwrap().listen.port(), 7443);
        assert!(s.reals.is_empty());
    }
}
