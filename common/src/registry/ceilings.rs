//! The platform's ceilings: what one function, and all of them together, may ask for. A
//! registry above them is refused at validation (file, reload, deploy), with the function,
//! field and line, so a typo (`max_replicas: 1000`) or a greedy definition never reaches the
//! engine.
//!
//! * `max_replicas` of a function ≤ [`Ceilings::max_replicas`];
//! * the sum of every function's `max_replicas` ≤ [`Ceilings::max_replicas_total`]: the
//!   platform can never run more containers than that, whatever the load;
//! * `limits.memory` of a function ≤ [`Ceilings::max_memory_bytes`].

use std::collections::BTreeMap;

use super::error::RegistryError;
use super::spec::FunctionSpec;
use super::tree::{error, Entry, Pos, Value};
use super::units::format_size;

/// Configurable (orchestrator: `SLUICE_MAX_REPLICAS`, `SLUICE_MAX_REPLICAS_TOTAL`,
/// `SLUICE_MAX_MEMORY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceilings {
    pub max_replicas: u32,
    pub max_replicas_total: u32,
    pub max_memory_bytes: u64,
}

impl Default for Ceilings {
    fn default() -> Self {
        Ceilings {
            max_replicas: 50,
            max_replicas_total: 500,
            max_memory_bytes: 4 << 30,
        }
    }
}

impl Ceilings {
    /// The per-function ceilings of one spec (`pos` of its fields, default when unknown).
    fn check_one(
        &self,
        errors: &mut Vec<RegistryError>,
        name: &str,
        spec: &FunctionSpec,
        replicas_pos: Pos,
        memory_pos: Pos,
    ) {
        if spec.scaling.max_replicas > self.max_replicas {
            errors.push(error(
                replicas_pos,
                Some(name),
                Some("scaling.max_replicas"),
                format!(
                    "max_replicas {} is above the platform's ceiling of {} replicas per function (SLUICE_MAX_REPLICAS)",
                    spec.scaling.max_replicas, self.max_replicas
                ),
            ));
        }
        if spec.limits.memory_bytes > self.max_memory_bytes {
            errors.push(error(
                memory_pos,
                Some(name),
                Some("limits.memory"),
                format!(
                    "memory {} is above the platform's ceiling of {} per function (SLUICE_MAX_MEMORY)",
                    format_size(spec.limits.memory_bytes),
                    format_size(self.max_memory_bytes)
                ),
            ));
        }
    }

    /// One function given alone (deploy through the API): its own ceilings, and the total
    /// with `others` (the `max_replicas` of every other function).
    pub fn check_spec(
        &self,
        name: &str,
        spec: &FunctionSpec,
        others: u64,
    ) -> Result<(), Vec<RegistryError>> {
        let mut errors = Vec::new();
        self.check_one(&mut errors, name, spec, Pos::default(), Pos::default());
        self.check_total(
            &mut errors,
            name,
            others + u64::from(spec.scaling.max_replicas),
            Pos::default(),
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check_total(&self, errors: &mut Vec<RegistryError>, name: &str, total: u64, pos: Pos) {
        if total > u64::from(self.max_replicas_total) {
            errors.push(error(
                pos,
                Some(name),
                Some("scaling.max_replicas"),
                format!(
                    "the functions' max_replicas add up to {total} with this one, above the platform's ceiling of {} replicas in total (SLUICE_MAX_REPLICAS_TOTAL)",
                    self.max_replicas_total
                ),
            ));
        }
    }

    /// Every valid function of a parsed file, in file order: per-function ceilings at the
    /// field's line, the total at the function where the sum first goes over.
    pub(crate) fn check_file(
        &self,
        errors: &mut Vec<RegistryError>,
        entries: &[Entry],
        functions: &BTreeMap<String, FunctionSpec>,
    ) {
        let mut total = 0u64;
        let mut over = false;
        for entry in entries {
            let Some(spec) = functions.get(&entry.key) else {
                continue;
            };
            let replicas_pos = field_pos(entry, "scaling", "max_replicas");
            self.check_one(
                errors,
                &entry.key,
                spec,
                replicas_pos,
                field_pos(entry, "limits", "memory"),
            );
            total += u64::from(spec.scaling.max_replicas);
            if !over && total > u64::from(self.max_replicas_total) {
                over = true;
                self.check_total(errors, &entry.key, total, replicas_pos);
            }
        }
    }
}

/// Where `section.field` of an entry is, or the entry's key when it is not given.
fn field_pos(entry: &Entry, section: &str, field: &str) -> Pos {
    let Value::Map(top) = &entry.value.value else {
        return entry.key_pos;
    };
    let Some(sec) = top.iter().find(|e| e.key == section) else {
        return entry.key_pos;
    };
    let Value::Map(fields) = &sec.value.value else {
        return entry.key_pos;
    };
    fields
        .iter()
        .find(|e| e.key == field)
        .map_or(entry.key_pos, |e| e.value.pos)
}
