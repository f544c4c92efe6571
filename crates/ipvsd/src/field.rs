//! An invalid value and the path of the field holding it, shared by the
//! config file (which adds the file name) and the gRPC API (which answers
//! INVALID_ARGUMENT with it).

/// `field` is wrong because of `message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the field, e.g. `reals[2].port`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// `field` is wrong because of `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error for a field nested in `parent` (`reals[2]` + `port`
    /// → `reals[2].port`).
    #[must_use]
    pub fn within(mut self, parent: &str) -> Self {
        if !parent.is_empty() {
            self.field = format!("{parent}.{}", self.field);
        }
        self
    }
}
