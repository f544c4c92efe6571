//! [`Journal`]: what vipd changed on the host that it must put back — the
//! original value of every sysctl it wrote and the links it set up — kept
//! in a small file so a restarted vipd still restores them at STOPPED.
//!
//! The file has one entry per line: `sysctl KEY VALUE` or `link-up NAME`.
//! It is replaced atomically (temp file + rename) and removed when empty.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The journal file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing it failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A line is not an entry.
    #[error("{path}:{line}: not a journal entry: '{text}'")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

/// The record of changes to undo at STOPPED.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    /// Original values of the sysctls vipd wrote, by key (as under /proc/sys).
    pub sysctls: BTreeMap<String, String>,
    /// Links vipd set up that were down before.
    pub links_up: BTreeSet<String>,
}

impl Journal {
    /// Reads the journal at `path`; a missing file is an empty journal.
    pub fn load(path: &Path) -> Result<Self, JournalError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(JournalError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut journal = Self::default();
        for (i, line) in text.lines().enumerate() {
            let malformed = || JournalError::Malformed {
                path: path.to_owned(),
                line: i + 1,
                text: line.to_owned(),
            };
            match line.split_once(' ') {
                Some(("sysctl", rest)) => {
                    let (key, value) = rest.split_once(' ').ok_or_else(malformed)?;
                    if key.is_empty() || key.contains("..") {
                        return Err(malformed());
                    }
                    journal.sysctls.insert(key.to_owned(), value.to_owned());
                }
                Some(("link-up", name)) if !name.is_empty() => {
                    journal.links_up.insert(name.to_owned());
                }
                _ if line.trim().is_empty() => {}
                _ => return Err(malformed()),
            }
        }
        Ok(journal)
    }

    /// Writes the journal to `path` atomically; an empty journal removes
    /// the file.
    pub fn save(&self, path: &Path) -> Result<(), JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        if self.sysctls.is_empty() && self.links_up.is_empty() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
                _ => Ok(()),
            };
        }
        let mut text = String::new();
        for (key, value) in &self.sysctls {
            text.push_str(&format!("sysctl {key} {value}\n"));
        }
        for name in &self.links_up {
            text.push_str(&format!("link-up {name}\n"));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        temp.write_all(text.as_bytes()).map_err(io)?;
        temp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_survives_a_round_trip_and_an_empty_one_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vipd.state");
        assert_eq!(Journal::load(&path).unwrap(), Journal::default());
        let mut j = Journal::default();
        j.sysctls
            .insert("net/ipv4/conf/all/arp_ignore".into(), "0".into());
        j.sysctls
            .insert("net/ipv4/tcp_rmem".into(), "4096 131072 6291456".into());
        j.links_up.insert("tunl0".into());
        j.save(&path).unwrap();
        assert_eq!(Journal::load(&path).unwrap(), j);
        Journal::default().save(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_damaged_journal_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vipd.state");
        std::fs::write(&path, "sysctl net/ipv4/ip_forward 0\nsomething else\n").unwrap();
        let e = Journal::load(&path).unwrap_err().to_string();
        assert!(
            e.contains(":2: not a journal entry: 'something else'"),
            "{e}"
        );
    }
}
