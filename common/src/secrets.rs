//! Function secrets as both sides see them: the names the registry's `secrets:` lists and the
//! `/system/secrets` API accept, where a function finds a value, and the size bounds.
//!
//! The values themselves live only in the orchestrator (encrypted at rest) and, in plain
//! text, only inside the containers of the functions that list them: one read-only file per
//! secret under [`MOUNT_DIR`], the path OpenFaaS uses, so functions written for OpenFaaS
//! read their secrets unchanged.

/// Folder holding one file per secret in a function container.
pub const MOUNT_DIR: &str = "/var/openfaas/secrets";
/// Longest secret value, in bytes (Kubernetes' own limit for a secret).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Longest secret name.
pub const MAX_NAME: usize = 253;
/// Secrets one installation may hold.
pub const MAX_SECRETS: usize = 1000;
/// Secrets one function may list.
pub const MAX_PER_FUNCTION: usize = 64;

/// True when `name` can name a secret: dot-separated DNS labels (lowercase letters, digits,
/// `-`), at most [`MAX_NAME`] characters, as Kubernetes secret names. Such a name is always
/// a plain file name (no `/`, never `.` or `..`).
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            let ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            !b.is_empty() && ok(b[0]) && ok(b[b.len() - 1]) && b.iter().all(|&c| ok(c) || c == b'-')
        })
}

/// The rule [`is_name`] applies, for error messages.
pub const NAME_RULE: &str =
    "lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, at most 253 characters (e.g. `db-password`)";

#[cfg(test)]
mod tests {
    use super::is_name;

    #[test]
    fn secret_names_are_plain_file_names() {
        for good in ["a", "db-password", "api.key", "x1", &"a".repeat(63)] {
            assert!(is_name(good), "{good}");
        }
        let long = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62)
        );
        assert!(!is_name(&long), "254 characters");
        for bad in [
            "", ".", "..", "a/b", "../etc", "A", "a_b", "-a", "a-", "a..b", ".a", "a.", "a b", "é",
            "a\0",
        ] {
            assert!(!is_name(bad), "{bad:?}");
        }
    }
}
