//! The key file (Heartbeat's `authkeys`), HMAC-SHA256 only:
//!
//! ```text
//! # /etc/tandem/hbd.keys, mode 0600
//! auth 2
//! 1 sha256 the-old-secret-at-least-16-bytes
//! 2 sha256 the-new-secret-at-least-16-bytes
//! ```
//!
//! `auth N` names the key heartbeats are signed with; every listed key is
//! accepted on receipt, so keys rotate without a failover: add the new key
//! everywhere, switch `auth` everywhere, then drop the old one. A file that
//! group or others can read is refused, as is any method but `sha256`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// It could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Group or others may read or write it.
    #[error("{}: mode {mode:04o} lets group or others in; chmod 600 it", path.display())]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is wrong.
    #[error("{}:{line}: {why}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

/// The keys: the one to sign with and all that are accepted.
#[derive(Clone)]
pub struct Keys {
    send: u32,
    secrets: BTreeMap<u32, Vec<u8>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("Keys")
            .field("send", &self.send)
            .field("ids", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keys {
    /// Reads and checks the key file at `path`.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let read = |source| KeyFileError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Self::parse(&text).map_err(|(line, why)| KeyFileError::Syntax {
            path: path.to_owned(),
            line,
            why,
        })
    }

    /// Parses key file text; errors carry the 1-based line.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut send = None;
        let mut secrets = BTreeMap::new();
        let mut last_line = 0;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            last_line = line;
            let words: Vec<&str> = raw.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                [first, ..] if first.starts_with('#') => {}
                ["auth", id] => {
                    let id = parse_id(id).map_err(|why| (line, why))?;
                    if send.replace((id, line)).is_some() {
                        return Err((line, "a second `auth` line".into()));
                    }
                }
                [id, method, secret] => {
                    let id = parse_id(id).map_err(|why| (line, why))?;
                    if *method != "sha256" {
                        return Err((
                            line,
                            format!(
                                "method {method:?} is not supported: only sha256 (HMAC-SHA256); crc, md5 and sha1 are not safe"
                            ),
                        ));
                    }
                    if secret.len() < MIN_SECRET_LEN {
                        return Err((
                            line,
                            format!(
                                "the secret of key {id} is shorter than {MIN_SECRET_LEN} bytes"
                            ),
                        ));
                    }
                    if secrets.insert(id, secret.as_bytes().to_vec()).is_some() {
                        return Err((line, format!("key {id} is defined twice")));
                    }
                }
                _ => {
                    return Err((
                        line,
                        "expected `auth ID` or `ID sha256 SECRET` (the secret may not contain spaces)"
                            .into(),
                    ));
                }
            }
        }
        let Some((send, line)) = send else {
            return Err((
                last_line.max(1),
                "no `auth ID` line names the key to sign with".into(),
            ));
        };
        if !secrets.contains_key(&send) {
            return Err((
                line,
                format!("`auth {send}` names a key that is not defined"),
            ));
        }
        Ok(Self { send, secrets })
    }

    /// The id of the key heartbeats are signed with.
    pub fn send_id(&self) -> u32 {
        self.send
    }

    /// Signs `body` with the sending key: returns the key id and the tag.
    pub fn sign(&self, body: &[u8]) -> (u32, Vec<u8>) {
        let id = self.send;
        let tag = self
            .mac(id)
            .map(|mut mac| {
                mac.update(&id.to_be_bytes());
                mac.update(body);
                mac.finalize().into_bytes().to_vec()
            })
            .unwrap_or_default();
        (id, tag)
    }

    /// Checks `tag` over `body` with key `id`, in constant time.
    pub fn verify(&self, id: u32, body: &[u8], tag: &[u8]) -> Result<(), VerifyError> {
        let mut mac = self.mac(id).ok_or(VerifyError::UnknownKey(id))?;
        mac.update(&id.to_be_bytes());
        mac.update(body);
        mac.verify_slice(tag).map_err(|_| VerifyError::BadTag)
    }

    fn mac(&self, id: u32) -> Option<Hmac<Sha256>> {
        let secret = self.secrets.get(&id)?;
        // HMAC accepts keys of any length.
        Hmac::<Sha256>::new_from_slice(secret).ok()
    }
}

/// Why a tag was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The key id is not in the key file.
    #[error("key id {0} is not in the key file")]
    UnknownKey(u32),
    /// The tag does not match.
    #[error("the HMAC tag does not match")]
    BadTag,
}

fn parse_id(word: &str) -> Result<u32, String> {
    match word.parse::<u32>() {
        Ok(id) if (1..=255).contains(&id) => Ok(id),
        _ => Err(format!("key id {word:?} must be a number from 1 to 255")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str =
        "# rotation\nauth 2\n1 sha256 old-secret-0123456789\n2 sha256 new-secret-0123456789\n";

    #[test]
    fn signs_with_auth_key_and_accepts_both() {
        let keys = Keys::parse(TWO).expect("parses");
        let (id, tag) = keys.sign(b"hello");
        assert_eq!(id, 2);
        assert_eq!(keys.verify(2, b"hello", &tag), Ok(()));
        let old = Keys::parse("auth 1\n1 sha256 old-secret-0123456789\n").expect("parses");
        let (id, old_tag) = old.sign(b"hello");
        assert_eq!(keys.verify(id, b"hello", &old_tag), Ok(()));
        assert_eq!(keys.verify(2, b"hellO", &tag), Err(VerifyError::BadTag));
        assert_eq!(keys.verify(1, b"hello", &tag), Err(VerifyError::BadTag));
        assert_eq!(
            keys.verify(9, b"hello", &tag),
            Err(VerifyError::UnknownKey(9))
        );
    }

    #[test]
    fn tag_covers_the_key_id() {
        let same = "auth 1\n1 sha256 same-secret-0123456789\n2 sha256 same-secret-0123456789\n";
        let keys = Keys::parse(same).expect("parses");
        let (_, tag) = keys.sign(b"x");
        assert_eq!(keys.verify(2, b"x", &tag), Err(VerifyError::BadTag));
    }

    #[test]
    fn refusals_name_the_line() {
        let cases = [
            ("auth 1\n1 md5 some-secret-0123456789\n", 2, "only sha256"),
            ("auth 1\n1 sha256 short\n", 2, "shorter than 16"),
            (
                "auth 3\n1 sha256 some-secret-0123456789\n",
                1,
                "not defined",
            ),
            ("1 sha256 some-secret-0123456789\n", 1, "no `auth ID`"),
            (
                "auth 1\n1 sha256 a-secret-0123456789\n1 sha256 b-secret-0123456789\n",
                3,
                "twice",
            ),
            ("auth 0\n", 1, "1 to 255"),
            ("auth 1\nauth 1\n", 2, "second"),
            ("auth 1\n1 sha256 two words here\n", 2, "expected"),
        ];
        for (text, line, needle) in cases {
            let (got, why) = Keys::parse(text).expect_err(text);
            assert_eq!(got, line, "{text:?}: {why}");
            assert!(why.contains(needle), "{text:?}: {why}");
        }
    }

    #[test]
    fn refuses_a_file_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        std::fs::write(&path, TWO).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = Keys::load(&path).expect_err("0640 refused");
        assert!(err.to_string().contains("mode 0640"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(Keys::load(&path).expect("0600 accepted").send_id(), 2);
    }

    #[test]
    fn debug_hides_secrets() {
        let keys = Keys::parse(TWO).expect("parses");
        assert!(!format!("{keys:?}").contains("secret"));
    }
}
