//! Errors in a configuration document, each at a path: what a provider's
//! factory, its settings parser and its Notification compiler answer. The
//! engine puts the document name and `spec.<type>` in front.

use std::fmt;

/// One error at `path` (relative to what was checked: a provider's
/// settings, or `action` / `params.<key>` of a Notification; empty for the
/// whole block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// `(path, message)`, as the config parser's helpers answer.
impl From<(String, String)> for FieldError {
    fn from((path, message): (String, String)) -> FieldError {
        FieldError { path, message }
    }
}

/// Every error found, in the order found: a check reports all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> FieldErrors {
        FieldErrors::default()
    }

    /// A single error.
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> FieldErrors {
        FieldErrors(vec![FieldError::new(path, message)])
    }

    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.0.iter()
    }

    /// `Ok(value)` when nothing was found, else these errors.
    pub fn into_result<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// Every path under `prefix` (`prefix.path`, or `prefix` for the block).
    pub fn under(self, prefix: &str) -> FieldErrors {
        FieldErrors(
            self.0
                .into_iter()
                .map(|e| FieldError {
                    path: match (prefix.is_empty(), e.path.is_empty()) {
                        (true, _) => e.path,
                        (false, true) => prefix.to_string(),
                        (false, false) => format!("{prefix}.{}", e.path),
                    },
                    message: e.message,
                })
                .collect(),
        )
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

impl std::ops::Index<usize> for FieldErrors {
    type Output = FieldError;

    fn index(&self, i: usize) -> &FieldError {
        &self.0[i]
    }
}

impl From<FieldError> for FieldErrors {
    fn from(e: FieldError) -> FieldErrors {
        FieldErrors(vec![e])
    }
}

impl From<(String, String)> for FieldErrors {
    fn from(e: (String, String)) -> FieldErrors {
        FieldErrors(vec![e.into()])
    }
}

impl<E: Into<FieldError>> Extend<E> for FieldErrors {
    fn extend<I: IntoIterator<Item = E>>(&mut self, iter: I) {
        self.0.extend(iter.into_iter().map(Into::into));
    }
}

impl<E: Into<FieldError>> FromIterator<E> for FieldErrors {
    fn from_iter<I: IntoIterator<Item = E>>(iter: I) -> FieldErrors {
        FieldErrors(iter.into_iter().map(Into::into).collect())
    }
}

impl IntoIterator for FieldErrors {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a FieldErrors {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_path_and_message_and_nest_under_a_prefix() {
        let mut errs = FieldErrors::new();
        assert_eq!(errs.clone().into_result(1), Ok(1));
        errs.push("", "expected a map");
        errs.push("baseURL", "scheme \"ftp\" is not http or https");
        assert_eq!(
            errs.to_string(),
            "expected a map; baseURL: scheme \"ftp\" is not http or https"
        );
        let under = errs.under("params");
        assert_eq!(under[0].path, "params");
        assert_eq!(under[1].path, "params.baseURL");
        assert_eq!(under.len(), 2);
    }
}
