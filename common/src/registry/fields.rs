//! Reading the fields of one map section (the entry itself, `configuration`, `scaling`,
//! `limits`): unknown-field detection with "did you mean" suggestions, and typed getters
//! (string, whole number, float, duration, size, sub-map) that push a positioned error and
//! return [`Got::Bad`] instead of failing.

use std::time::Duration;

use super::error::RegistryError;
use super::tree::{error, Entry, Pos, Value};
use super::units::{parse_duration, parse_size, plain_number};

/// Fields of an entry.
pub(super) const ENTRY_FIELDS: &[&str] = &[
    "name",
    "version",
    "configuration",
    "scaling",
    "limits",
    "env",
    "state",
    "events_from",
    "uses",
    "auth",
    "egress",
    "secrets",
];
/// Fields of `configuration:`.
pub(super) const CONFIGURATION_FIELDS: &[&str] = &[
    "programing_language",
    "programming_language",
    "base_function_file_name",
    "function_folder",
    "extra_dependencies",
    "mode",
    "http_port",
];
/// Fields of `scaling:`.
pub(super) const SCALING_FIELDS: &[&str] = &[
    "min_replicas",
    "max_replicas",
    "max_concurrency",
    "target_concurrency",
    "target_utilization",
    "idle_timeout",
    "stable_window",
    "cold_start_timeout",
    "queue_size",
    "queue_timeout",
    "warm_pool",
];
/// Fields of `limits:`.
pub(super) const LIMITS_FIELDS: &[&str] = &["timeout", "memory", "cpus", "max_body", "pids"];

/// Every section with its fields, for "did you mean" across sections.
const SECTIONS: &[(&str, &[&str])] = &[
    ("", ENTRY_FIELDS),
    ("configuration", CONFIGURATION_FIELDS),
    ("scaling", SCALING_FIELDS),
    ("limits", LIMITS_FIELDS),
];

/// Collects errors for one function.
pub(super) struct Ctx<'e> {
    pub errors: &'e mut Vec<RegistryError>,
    pub function: &'e str,
}

impl Ctx<'_> {
    pub fn err(&mut self, pos: Pos, field: Option<&str>, message: impl Into<String>) {
        self.errors
            .push(error(pos, Some(self.function), field, message));
    }
}

/// Outcome of reading an optional field.
pub(super) enum Got<T> {
    Absent,
    Bad,
    Ok(T),
}

impl<T> Got<T> {
    pub fn or(self, default: T) -> T {
        match self {
            Got::Ok(v) => v,
            Got::Absent | Got::Bad => default,
        }
    }

    pub fn is_bad(&self) -> bool {
        matches!(self, Got::Bad)
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Got<U> {
        match self {
            Got::Ok(v) => Got::Ok(f(v)),
            Got::Absent => Got::Absent,
            Got::Bad => Got::Bad,
        }
    }
}

/// A map section of an entry (the entry itself, `configuration`, `scaling`, `limits`).
pub(super) struct Section<'n> {
    /// Dotted prefix of its fields (`""` for the entry itself).
    pub prefix: &'static str,
    /// Where the section starts (its key), for "missing field" errors.
    pub pos: Pos,
    entries: &'n [Entry],
}

impl<'n> Section<'n> {
    /// Opens a section and reports every unknown field in it.
    pub fn open(
        ctx: &mut Ctx<'_>,
        prefix: &'static str,
        pos: Pos,
        entries: &'n [Entry],
        allowed: &[&str],
    ) -> Section<'n> {
        let section = Section {
            prefix,
            pos,
            entries,
        };
        for e in entries {
            if !allowed.contains(&e.key.as_str()) {
                let message = unknown_field_message(&e.key, prefix, allowed);
                ctx.err(e.key_pos, Some(&section.path(&e.key)), message);
            }
        }
        section
    }

    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn get(&self, name: &str) -> Option<&'n Entry> {
        self.entries.iter().rev().find(|e| e.key == name)
    }

    /// Reads a scalar's text; a list, map or missing value is an error.
    pub fn text(&self, ctx: &mut Ctx<'_>, name: &str, expected: &str) -> Got<(&'n str, Pos)> {
        let Some(e) = self.get(name) else {
            return Got::Absent;
        };
        let field = self.path(name);
        match &e.value.value {
            Value::Scalar { text, .. } => Got::Ok((text.as_str(), e.value.pos)),
            Value::Null => {
                ctx.err(
                    e.value.pos,
                    Some(&field),
                    format!("missing value: expected {expected}"),
                );
                Got::Bad
            }
            Value::Map(_) | Value::Seq(_) => {
                ctx.err(
                    e.value.pos,
                    Some(&field),
                    format!("expected {expected}, found {}", e.value.describe()),
                );
                Got::Bad
            }
        }
    }

    /// Reports a required field that is absent.
    pub fn missing(&self, ctx: &mut Ctx<'_>, name: &str, hint: &str) {
        ctx.err(
            self.pos,
            Some(&self.path(name)),
            format!("missing required field `{name}`{hint}"),
        );
    }

    pub fn string(&self, ctx: &mut Ctx<'_>, name: &str) -> Got<(String, Pos)> {
        self.text(ctx, name, "a string")
            .map(|(t, pos)| (t.trim().to_owned(), pos))
    }

    pub fn required_string(&self, ctx: &mut Ctx<'_>, name: &str) -> Got<(String, Pos)> {
        let got = self.string(ctx, name);
        if matches!(got, Got::Absent) {
            self.missing(ctx, name, "");
            return Got::Bad;
        }
        if let Got::Ok((s, pos)) = &got {
            if s.is_empty() {
                ctx.err(*pos, Some(&self.path(name)), "must not be empty");
                return Got::Bad;
            }
        }
        got
    }

    /// A whole number in `min..=max`.
    pub fn integer(&self, ctx: &mut Ctx<'_>, name: &str, min: u64, max: u64) -> Got<(u64, Pos)> {
        let (text, pos) = match self.text(ctx, name, "a whole number") {
            Got::Ok(v) => v,
            Got::Absent => return Got::Absent,
            Got::Bad => return Got::Bad,
        };
        let field = self.path(name);
        let t = text.trim();
        let message = match t.parse::<u64>() {
            Ok(v) if v < min => format!("must be at least {min} (got {v})"),
            Ok(v) if v > max => format!("must be at most {max} (got {v})"),
            Ok(v) => return Got::Ok((v, pos)),
            Err(_) if t.starts_with('-') && plain_number(t).is_some() => {
                format!("must not be negative (got {t})")
            }
            Err(_) => format!("expected a whole number, found `{t}`"),
        };
        ctx.err(pos, Some(&field), message);
        Got::Bad
    }

    pub fn u32(&self, ctx: &mut Ctx<'_>, name: &str, min: u32) -> Got<(u32, Pos)> {
        self.integer(ctx, name, u64::from(min), u64::from(u32::MAX))
            .map(|(v, pos)| (u32::try_from(v).unwrap_or(u32::MAX), pos))
    }

    /// A finite decimal number, rounded to 6 decimals (so it round-trips through JSON).
    pub fn float(&self, ctx: &mut Ctx<'_>, name: &str) -> Got<(f64, Pos)> {
        let (text, pos) = match self.text(ctx, name, "a number") {
            Got::Ok(v) => v,
            Got::Absent => return Got::Absent,
            Got::Bad => return Got::Bad,
        };
        match plain_number(text.trim()) {
            Some(v) => Got::Ok(((v * 1e6).round() / 1e6, pos)),
            None => {
                ctx.err(
                    pos,
                    Some(&self.path(name)),
                    format!("expected a number, found `{}`", text.trim()),
                );
                Got::Bad
            }
        }
    }

    pub fn duration(&self, ctx: &mut Ctx<'_>, name: &str) -> Got<(Duration, Pos)> {
        let (text, pos) = match self.text(ctx, name, "a duration such as `10s`") {
            Got::Ok(v) => v,
            Got::Absent => return Got::Absent,
            Got::Bad => return Got::Bad,
        };
        match parse_duration(text) {
            Ok(d) => Got::Ok((d, pos)),
            Err(message) => {
                ctx.err(pos, Some(&self.path(name)), message);
                Got::Bad
            }
        }
    }

    pub fn size(&self, ctx: &mut Ctx<'_>, name: &str) -> Got<(u64, Pos)> {
        let (text, pos) = match self.text(ctx, name, "a size such as `128Mi`") {
            Got::Ok(v) => v,
            Got::Absent => return Got::Absent,
            Got::Bad => return Got::Bad,
        };
        match parse_size(text) {
            Ok(b) => Got::Ok((b, pos)),
            Err(message) => {
                ctx.err(pos, Some(&self.path(name)), message);
                Got::Bad
            }
        }
    }

    /// An optional nested map (`scaling:`); an empty value counts as an empty map.
    pub fn sub_map(&self, ctx: &mut Ctx<'_>, name: &str) -> Got<(&'n [Entry], Pos)> {
        let Some(e) = self.get(name) else {
            return Got::Absent;
        };
        match &e.value.value {
            Value::Map(entries) => Got::Ok((entries.as_slice(), e.key_pos)),
            Value::Null => Got::Ok((&[], e.key_pos)),
            _ => {
                ctx.err(
                    e.value.pos,
                    Some(&self.path(name)),
                    format!("expected a map of fields, found {}", e.value.describe()),
                );
                Got::Bad
            }
        }
    }
}

/// "unknown field, did you mean `x`?" — nearest name in the same section, else the same
/// name in another section, else the list of valid names.
fn unknown_field_message(key: &str, prefix: &str, allowed: &[&str]) -> String {
    let lower = key.to_ascii_lowercase();
    if let Some(best) = closest(&lower, allowed) {
        return format!("unknown field, did you mean `{best}`?");
    }
    if matches!(lower.as_str(), "language" | "lang" | "runtime") {
        return if prefix == "configuration" {
            "unknown field, did you mean `programming_language`?".into()
        } else {
            "unknown field, did you mean `configuration.programming_language`?".into()
        };
    }
    for (section, fields) in SECTIONS {
        if *section == prefix {
            continue;
        }
        let target = fields.iter().copied().find(|f| *f == lower).or_else(|| {
            closest(&lower, fields).filter(|f| strsim::jaro_winkler(&lower, f) >= 0.93)
        });
        if let Some(target) = target {
            return if section.is_empty() {
                format!("unknown field, did you mean `{target}` (directly under the function, not in `{prefix}`)?")
            } else {
                format!("unknown field, did you mean `{section}.{target}`?")
            };
        }
    }
    format!("unknown field; expected one of: {}", list(allowed))
}

/// The candidate most similar to `key`, when it is similar enough to be a typo.
fn closest<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(key, c), *c))
        .filter(|(score, c)| {
            *score >= 0.85 || strsim::normalized_damerau_levenshtein(key, c) >= 0.7
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

pub(super) fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Section<'_> {
    /// An optional string that must not be empty when given.
    pub fn required_string_opt(&self, ctx: &mut Ctx<'_>, name: &str) -> Got<(String, Pos)> {
        match self.string(ctx, name) {
            Got::Ok((s, pos)) if s.is_empty() => {
                ctx.err(pos, Some(&self.path(name)), "must not be empty");
                Got::Bad
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            unknown_field_message("max_replica", "scaling", SCALING_FIELDS),
            "unknown field, did you mean `max_replicas`?"
        );
        assert_eq!(
            unknown_field_message("memroy", "limits", LIMITS_FIELDS),
            "unknown field, did you mean `memory`?"
        );
        assert_eq!(
            unknown_field_message("memory", "scaling", SCALING_FIELDS),
            "unknown field, did you mean `limits.memory`?"
        );
        assert_eq!(
            unknown_field_message("language", "configuration", CONFIGURATION_FIELDS),
            "unknown field, did you mean `programming_language`?"
        );
        assert_eq!(
            unknown_field_message("function_folder", "", ENTRY_FIELDS),
            "unknown field, did you mean `configuration.function_folder`?"
        );
        assert_eq!(
            unknown_field_message("verison", "", ENTRY_FIELDS),
            "unknown field, did you mean `version`?"
        );
        let far = unknown_field_message("colour", "limits", LIMITS_FIELDS);
        assert!(
            far.starts_with("unknown field; expected one of: `timeout`"),
            "{far}"
        );
    }
}
