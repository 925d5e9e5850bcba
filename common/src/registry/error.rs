//! Registry validation errors: one [`RegistryError`] per problem, all of them collected in a
//! [`RegistryErrors`] sorted by position.
//!
//! Display format (parts are left out when unknown):
//! `<file>:<line>:<column>: function `<name>`: field `<dotted.path>`: <message>`
//! Line and column are 1-based; 0 means "no position" (e.g. entries given as JSON) and the
//! position is then omitted from the rendering.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem in a registry file or entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryError {
    /// File the problem is in, when known.
    pub file: Option<String>,
    /// 1-based line of the offending node (for a missing field: the key of the parent map); 0 = unknown.
    pub line: usize,
    /// 1-based column, as above; 0 = unknown.
    pub column: usize,
    /// The function (registry key) the problem is in.
    pub function: Option<String>,
    /// Dotted path of the field inside the entry, e.g. `scaling.max_replicas`.
    pub field: Option<String>,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), 0) => write!(f, "{file}: ")?,
            (Some(file), line) => write!(f, "{file}:{line}:{}: ", self.column)?,
            (None, 0) => {}
            (None, line) => write!(f, "{line}:{}: ", self.column)?,
        }
        if let Some(function) = &self.function {
            write!(f, "function `{function}`: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for RegistryError {}

/// Every problem found, in line order. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryErrors(pub Vec<RegistryError>);

impl RegistryErrors {
    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no problems.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the problems in line order.
    pub fn iter(&self) -> std::slice::Iter<'_, RegistryError> {
        self.0.iter()
    }
}

impl fmt::Display for RegistryErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RegistryErrors {}

impl IntoIterator for RegistryErrors {
    type Item = RegistryError;
    type IntoIter = std::vec::IntoIter<RegistryError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a RegistryErrors {
    type Item = &'a RegistryError;
    type IntoIter = std::slice::Iter<'a, RegistryError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
