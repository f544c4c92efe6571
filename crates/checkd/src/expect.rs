//! What a reply must contain: a substring, or a regular expression
//! (`receive` with `receive_regex`), matched against raw bytes.

use std::fmt;

use regex::bytes::Regex;

/// A compiled `receive`.
#[derive(Clone, Debug)]
pub enum Expect {
    /// The reply contains these bytes.
    Substring(String),
    /// The reply matches this pattern somewhere.
    Pattern(Regex),
}

impl Expect {
    /// Compiles `receive`; the pattern was validated by ipvsd, so an error
    /// here means a spec that skipped validation.
    pub fn new(receive: &str, regex: bool) -> Result<Self, regex::Error> {
        Ok(if regex {
            Self::Pattern(Regex::new(receive)?)
        } else {
            Self::Substring(receive.to_owned())
        })
    }

    /// Whether `reply` satisfies it.
    pub fn matches(&self, reply: &[u8]) -> bool {
        match self {
            Self::Substring(s) => s.is_empty() || reply.windows(s.len()).any(|w| w == s.as_bytes()),
            Self::Pattern(re) => re.is_match(reply),
        }
    }
}

impl fmt::Display for Expect {
    /// As in a failure reason: `contain "Test Page"` / `match /^2\d\d/`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Substring(s) => write!(f, "contain {s:?}"),
            Self::Pattern(re) => write!(f, "match /{}/", re.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn substring_and_pattern() {
        let s = Expect::new("Test Page", false).unwrap();
        assert!(s.matches(b"<h1>Test Page</h1>"));
        assert!(!s.matches(b"<h1>Test</h1>"));
        assert_eq!(s.to_string(), "contain \"Test Page\"");
        let p = Expect::new(r"^220 .*ESMTP", true).unwrap();
        assert!(p.matches(b"220 mail ESMTP ready\r\n"));
        assert!(!p.matches(b"554 go away\r\n"));
        assert_eq!(p.to_string(), "match /^220 .*ESMTP/");
        assert!(Expect::new("(", true).is_err());
    }
}
