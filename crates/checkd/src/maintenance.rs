//! ldirectord's `maintenancedir`: a file named after a real forces it down
//! until the file goes. Names are `ADDRESS` (every port) or `ADDRESS:PORT`
//! (`[ADDRESS]:PORT` for IPv6). The directory is read once a second; a name
//! that is neither is logged once and ignored.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::Engine;

/// How often the directory is read.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// The real a file name names: address and, if given, port.
pub fn parse_name(name: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(address) = name.parse::<IpAddr>() {
        return Some((address, None));
    }
    let addr = name.parse::<SocketAddr>().ok()?;
    Some((addr.ip(), Some(addr.port())))
}

/// Reads the directory: the files that name a real. A missing directory
/// means none.
pub fn scan(
    dir: &Path,
    ignored: &mut HashSet<String>,
) -> std::io::Result<HashMap<(IpAddr, Option<u16>), PathBuf>> {
    let mut files = HashMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match parse_name(&name) {
            Some(real) => {
                files.insert(real, entry.path());
            }
            None => {
                if ignored.insert(name.clone()) {
                    tracing::warn!(file = %entry.path().display(), "maintenance file does not name a real (ADDRESS or ADDRESS:PORT); ignored");
                }
            }
        }
    }
    Ok(files)
}

/// Follows `dir` for as long as the daemon runs.
pub async fn watch(engine: Engine, dir: PathBuf) {
    let mut ignored = HashSet::new();
    let mut failing = false;
    loop {
        match scan(&dir, &mut ignored) {
            Ok(files) => {
                failing = false;
                engine.set_maintenance_files(files);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read the maintenance directory; overrides kept as they were");
                }
                failing = true;
            }
        }
        tokio::time::sleep(SCAN_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn names() {
        let v4: IpAddr = "198.51.100.21".parse().unwrap();
        let v6: IpAddr = "2001:db8::21".parse().unwrap();
        assert_eq!(parse_name("198.51.100.21"), Some((v4, None)));
        assert_eq!(parse_name("198.51.100.21:80"), Some((v4, Some(80))));
        assert_eq!(parse_name("2001:db8::21"), Some((v6, None)));
        assert_eq!(parse_name("[2001:db8::21]:443"), Some((v6, Some(443))));
        assert_eq!(parse_name("README"), None);
        assert_eq!(parse_name("198.51.100.21:http"), None);
    }

    #[test]
    fn scan_reads_reals_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("198.51.100.21:80"), "").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "").unwrap();
        let mut ignored = HashSet::new();
        let files = scan(dir.path(), &mut ignored).unwrap();
        assert_eq!(files.len(), 1);
        assert!(ignored.contains("notes.txt"));
        let gone = scan(&dir.path().join("absent"), &mut ignored).unwrap();
        assert!(gone.is_empty());
    }
}
