//! The errors a topology file can have: one per violated rule, and the list
//! for a whole file.

use std::fmt;

/// One violation of the topology rules, or a parse error.
///
/// Displays as `line 12: [[eip]] 203.0.113.10: message`, leaving out the
/// line when it is 0 and the entry when it is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line of the offending entry (0 if it has none).
    pub line: usize,
    /// The entry, as a user would name it: `[[eip]] 203.0.113.10`.
    pub entry: String,
    /// What is wrong, in one sentence without a final full stop.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        if !self.entry.is_empty() {
            write!(f, "{}: ", self.entry)?;
        }
        f.write_str(&self.message)
    }
}

/// All the errors found in one file.
///
/// Displays one error per line, each prefixed by the file name:
/// `topology.toml: line 12: ...`.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    /// The file's path as given.
    pub file: String,
    /// The errors, sorted by line (errors on the same line in the order
    /// they were found).
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {e}", self.file)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
