//! The validator: a walk over the document tree that turns each entry into a
//! [`FunctionSpec`], pushing one [`RegistryError`] per problem and always continuing, so a
//! single run reports every mistake in the file.
//!
//! An entry with any error produces no spec; problems in one entry never hide problems in
//! another. Cross-field checks (`min_replicas <= max_replicas`, …) only run when both fields
//! parsed, so one typo does not cascade into several errors.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::error::RegistryError;
use super::fields::{
    list, Ctx, Got, Section, CONFIGURATION_FIELDS, ENTRY_FIELDS, LIMITS_FIELDS, SCALING_FIELDS,
};
use super::files::{check_files, relative_path_problem};
use super::spec::{
    Auth, Egress, FunctionSpec, Language, Limits, RuntimeMode, Scaling, Service, State,
    DEFAULT_HTTP_PORT, MAX_CPUS, MIN_MEMORY_BYTES, RUNTIME_PORT,
};
use super::tree::{error, Entry, Node, Pos, Value};
use super::units::format_size;
use super::RESERVED_NAMES;

/// Checks a function key: DNS label, not reserved.
pub(crate) fn check_key(errors: &mut Vec<RegistryError>, name: &str, pos: Pos) {
    let mut ctx = Ctx {
        errors,
        function: name,
    };
    if !crate::is_dns_label(name) {
        ctx.err(
            pos,
            None,
            format!("function name `{name}` is not a DNS label: use lowercase letters, digits and `-`, starting and ending with a letter or digit, at most 63 characters"),
        );
    } else if RESERVED_NAMES.contains(&name) {
        ctx.err(
            pos,
            None,
            format!(
                "function name `{name}` is reserved (the gateway uses it: {}); pick another name",
                list(RESERVED_NAMES)
            ),
        );
    }
}

/// Where the entry's `name:` was, for the cross-entry uniqueness check.
pub(crate) struct DisplayName {
    pub name: String,
    pub pos: Pos,
}

/// Validates one entry (the key is checked separately by [`check_key`]). Returns the spec
/// when the entry has no error, and the entry's `name:` when it had a valid one.
pub(crate) fn check_entry(
    errors: &mut Vec<RegistryError>,
    key: &str,
    key_pos: Pos,
    node: &Node,
    functions_dir: Option<&Path>,
) -> (Option<FunctionSpec>, Option<DisplayName>) {
    let before = errors.len();
    let mut ctx = Ctx {
        errors,
        function: key,
    };
    let Value::Map(entries) = &node.value else {
        ctx.err(
            node.pos,
            None,
            format!(
                "a function definition must be a map with `version` and `configuration`, found {}",
                node.describe()
            ),
        );
        return (None, None);
    };
    let entry = Section::open(&mut ctx, "", key_pos, entries, ENTRY_FIELDS);

    let display = match entry.required_string_opt(&mut ctx, "name") {
        Got::Ok((name, pos)) if !crate::is_dns_label(&name) => {
            ctx.err(
                pos,
                Some("name"),
                format!("`{name}` is not a DNS label: use lowercase letters, digits and `-`, starting and ending with a letter or digit, at most 63 characters"),
            );
            None
        }
        Got::Ok((name, pos)) => Some(DisplayName { name, pos }),
        Got::Absent | Got::Bad => None,
    };

    let version = match entry.required_string(&mut ctx, "version") {
        Got::Ok((v, pos)) => {
            if !valid_version(&v) {
                ctx.err(
                    pos,
                    Some("version"),
                    format!("`{v}` is not a valid version: use letters, digits, `.`, `_` and `-` (at most 128, not starting with `.` or `-`), e.g. `0.1` or `1.2.3`"),
                );
            }
            v
        }
        _ => String::new(),
    };

    let config = match entry.sub_map(&mut ctx, "configuration") {
        Got::Ok((entries, pos)) => check_configuration(&mut ctx, entries, pos, functions_dir),
        Got::Absent => {
            entry.missing(&mut ctx, "configuration", "");
            None
        }
        Got::Bad => None,
    };

    let scaling = match entry.sub_map(&mut ctx, "scaling") {
        Got::Ok((entries, pos)) => check_scaling(&mut ctx, entries, pos),
        Got::Absent | Got::Bad => Scaling::default(),
    };
    let limits = match entry.sub_map(&mut ctx, "limits") {
        Got::Ok((entries, pos)) => check_limits(&mut ctx, entries, pos),
        Got::Absent | Got::Bad => Limits::default(),
    };
    let env = match entry.get("env") {
        Some(e) => check_env(&mut ctx, e),
        None => BTreeMap::new(),
    };
    let state = choice(
        &mut ctx,
        &entry,
        "state",
        State::from_name,
        &State::ALL.map(State::as_str),
        "",
    )
    .unwrap_or(State::None);
    let events_from = match entry.get("events_from") {
        Some(e) => check_events_from(&mut ctx, e, key, state),
        None => Vec::new(),
    };
    let uses = match entry.get("uses") {
        Some(e) => check_uses(&mut ctx, e),
        None => Vec::new(),
    };
    let auth = choice(
        &mut ctx,
        &entry,
        "auth",
        Auth::from_name,
        &Auth::ALL.map(Auth::as_str),
        " (`key`: callers need an API key with the invoke scope)",
    )
    .unwrap_or(Auth::Public);
    let egress = choice(
        &mut ctx,
        &entry,
        "egress",
        Egress::from_name,
        &Egress::ALL.map(Egress::as_str),
        " (none, the default: no route out of the machine)",
    )
    .unwrap_or(Egress::None);
    let secrets = match entry.get("secrets") {
        Some(e) => check_secrets(&mut ctx, e),
        None => Vec::new(),
    };

    let valid = ctx.errors.len() == before;
    let spec = match config {
        Some(c) if valid => Some(FunctionSpec {
            name: key.to_owned(),
            display_name: display.as_ref().map(|d| d.name.clone()),
            version,
            language: c.language,
            mode: c.mode,
            http_port: c.http_port,
            base_function_file_name: c.base_function_file_name,
            function_folder: c.function_folder,
            extra_dependencies: c.extra_dependencies,
            scaling,
            limits,
            env,
            state,
            events_from,
            uses,
            auth,
            egress,
            secrets,
        }),
        _ => None,
    };
    (spec, display)
}

/// Docker-tag-safe version text.
fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && !v.starts_with(['.', '-'])
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The validated `configuration:` section.
struct Configuration {
    language: Language,
    mode: RuntimeMode,
    http_port: u16,
    base_function_file_name: String,
    function_folder: String,
    extra_dependencies: Vec<String>,
}

fn check_configuration(
    ctx: &mut Ctx<'_>,
    entries: &[Entry],
    pos: Pos,
    functions_dir: Option<&Path>,
) -> Option<Configuration> {
    let sec = Section::open(ctx, "configuration", pos, entries, CONFIGURATION_FIELDS);

    // Language, under either spelling (not both).
    let seed = sec.get("programing_language");
    let proper = sec.get("programming_language");
    let language = match (seed, proper) {
        (Some(_), Some(second)) => {
            ctx.err(
                second.key_pos,
                Some("configuration.programming_language"),
                "both `programing_language` and `programming_language` are set; keep only one",
            );
            None
        }
        (None, None) => {
            sec.missing(
                ctx,
                "programming_language",
                " (the spelling `programing_language` is also accepted)",
            );
            None
        }
        (Some(e), None) | (None, Some(e)) => match sec.string(ctx, &e.key) {
            Got::Ok((text, vpos)) => match Language::from_name(&text) {
                Some(l) => Some(l),
                None => {
                    ctx.err(
                        vpos,
                        Some(&sec.path(&e.key)),
                        format!(
                            "unsupported language `{text}`; supported languages: {}",
                            Language::ALL.map(Language::as_str).join(", ")
                        ),
                    );
                    None
                }
            },
            _ => None,
        },
    };

    let base = sec.required_string(ctx, "base_function_file_name");
    let base = match base {
        Got::Ok((b, bpos)) => match relative_path_problem(&b) {
            Some(problem) => {
                ctx.err(bpos, Some("configuration.base_function_file_name"), problem);
                None
            }
            None => Some((b, bpos)),
        },
        _ => None,
    };
    let folder = match sec.required_string(ctx, "function_folder") {
        Got::Ok((f, fpos)) => match relative_path_problem(&f) {
            Some(problem) => {
                ctx.err(fpos, Some("configuration.function_folder"), problem);
                None
            }
            None => Some((f, fpos)),
        },
        _ => None,
    };

    let extra = check_extra_dependencies(ctx, &sec);
    if let (Some(lang), Some((deps, dpos))) = (language, extra.as_ref()) {
        if lang != Language::Python && !deps.is_empty() {
            let how = match lang {
                Language::Rust => "declare dependencies in the crate's Cargo.toml",
                _ => "bundle them with the executable",
            };
            ctx.err(
                *dpos,
                Some("configuration.extra_dependencies"),
                format!("only supported for python (pip packages); `{lang}` functions {how}"),
            );
        }
    }

    let mode = match sec.string(ctx, "mode") {
        Got::Ok((text, mpos)) => match RuntimeMode::from_name(&text) {
            None => {
                ctx.err(
                    mpos,
                    Some("configuration.mode"),
                    format!(
                        "unknown mode `{text}`; supported modes: {}",
                        RuntimeMode::ALL.map(RuntimeMode::as_str).join(", ")
                    ),
                );
                Got::Bad
            }
            Some(m) => {
                if let Some(lang) = language {
                    if !lang.allowed_modes().contains(&m) {
                        ctx.err(
                            mpos,
                            Some("configuration.mode"),
                            format!(
                                "mode `{m}` is not allowed for language `{lang}` (allowed: {})",
                                lang.allowed_modes()
                                    .iter()
                                    .map(|m| m.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                    }
                }
                Got::Ok(m)
            }
        },
        Got::Absent => Got::Absent,
        Got::Bad => Got::Bad,
    };
    let mode_bad = mode.is_bad();
    let mode = match (mode, language) {
        (Got::Ok(m), _) => Some(m),
        (_, Some(l)) => Some(l.default_mode()),
        _ => None,
    };

    let port = sec.integer(ctx, "http_port", 1, u64::from(u16::MAX));
    let http_port = match port {
        Got::Ok((p, ppos)) => {
            if p == u64::from(RUNTIME_PORT) {
                ctx.err(
                    ppos,
                    Some("configuration.http_port"),
                    format!("port {RUNTIME_PORT} is used by the Sluice runtime inside the container; pick another (default {DEFAULT_HTTP_PORT})"),
                );
            } else if !mode_bad && mode.is_some_and(|m| m != RuntimeMode::Http) {
                let m = mode.map(RuntimeMode::as_str).unwrap_or_default();
                ctx.err(
                    ppos,
                    Some("configuration.http_port"),
                    format!("only used in `http` mode (this function's mode is `{m}`)"),
                );
            }
            u16::try_from(p).unwrap_or(DEFAULT_HTTP_PORT)
        }
        Got::Absent | Got::Bad => DEFAULT_HTTP_PORT,
    };

    if let (Some(dir), Some((folder, fpos))) = (functions_dir, folder.as_ref()) {
        check_files(ctx, dir, folder, *fpos, base.as_ref(), language);
    }

    Some(Configuration {
        language: language?,
        mode: mode?,
        http_port,
        base_function_file_name: base?.0,
        function_folder: folder?.0,
        extra_dependencies: extra.map(|(d, _)| d).unwrap_or_default(),
    })
}

/// `extra_dependencies`: a string (space or comma separated) or a list of strings.
/// Returns None on error; Some((deps, pos)) otherwise (empty when absent).
fn check_extra_dependencies(ctx: &mut Ctx<'_>, sec: &Section<'_>) -> Option<(Vec<String>, Pos)> {
    const FIELD: &str = "configuration.extra_dependencies";
    let Some(e) = sec.get("extra_dependencies") else {
        return Some((Vec::new(), sec.pos));
    };
    let mut words: Vec<(String, Pos)> = Vec::new();
    let mut ok = true;
    // A direct reference (`name @ url`, a bare URL) is refused whole, before it is split.
    let mut add = |ctx: &mut Ctx<'_>, text: &str, pos: Pos| {
        if text.contains('@') || text.contains("://") {
            ctx.err(
                pos,
                Some(FIELD),
                format!("`{}` refers to a URL: only packages from the index are installed (a name, optional [extras] and version clauses, e.g. `requests==2.32.3`)", text.trim()),
            );
            ok = false;
        } else {
            words.extend(split_deps(text).into_iter().map(|w| (w, pos)));
        }
    };
    match &e.value.value {
        Value::Null => {}
        Value::Scalar { text, .. } => add(ctx, text, e.value.pos),
        Value::Seq(items) => {
            for item in items {
                match &item.value {
                    Value::Scalar { text, .. } => add(ctx, text, item.pos),
                    _ => {
                        ctx.err(
                            item.pos,
                            Some(FIELD),
                            format!("expected a package name, found {}", item.describe()),
                        );
                        return None;
                    }
                }
            }
        }
        Value::Map(_) => {
            ctx.err(
                e.value.pos,
                Some(FIELD),
                "expected a string of package names (space or comma separated) or a list, found a map",
            );
            return None;
        }
    }
    for (w, pos) in &words {
        if !valid_requirement(w) {
            ctx.err(
                *pos,
                Some(FIELD),
                format!("`{w}` is not a requirement of a package from the index: give a name, optional [extras] and version clauses (e.g. `requests==2.32.3`, `numpy>=1.26,<2`); URLs, `name @ url`, paths, pip options and markers are refused"),
            );
            ok = false;
        }
    }
    ok.then(|| (words.into_iter().map(|(w, _)| w).collect(), e.value.pos))
}

/// Splits on whitespace, and on commas except inside `[extras]` and between version
/// specifiers (`numpy>=1.0,<2` stays one requirement).
fn split_deps(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        let mut current = String::new();
        let mut depth = 0usize;
        let mut chars = token.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                ',' if depth == 0
                    && !chars
                        .peek()
                        .is_some_and(|n| matches!(n, '<' | '>' | '=' | '!' | '~')) =>
                {
                    if !current.is_empty() {
                        out.push(std::mem::take(&mut current));
                    }
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        if !current.is_empty() {
            out.push(current);
        }
    }
    out
}

/// A requirement specifier of a package from the index, and nothing else: a name, optional
/// `[extras]`, optional version clauses (`==`, `!=`, `<=`, `>=`, `<`, `>`, `~=`, `===`,
/// comma separated). No URL, no `name @ url`, no path, no pip option, no environment marker:
/// anything that would make pip fetch or run code from somewhere else.
fn valid_requirement(w: &str) -> bool {
    let name_end = w
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .unwrap_or(w.len());
    let (name, mut rest) = w.split_at(name_end);
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if !(name.starts_with(alnum) && name.ends_with(alnum)) {
        return false;
    }
    if let Some(r) = rest.strip_prefix('[') {
        let Some((extras, after)) = r.split_once(']') else {
            return false;
        };
        let ok = extras.split(',').all(|e| {
            !e.is_empty()
                && e.starts_with(alnum)
                && e.ends_with(alnum)
                && e.chars().all(|c| alnum(c) || matches!(c, '.' | '_' | '-'))
        });
        if !ok {
            return false;
        }
        rest = after;
    }
    if rest.is_empty() {
        return true;
    }
    rest.split(',').all(|clause| {
        let version = ["===", "==", "!=", "<=", ">=", "~=", "<", ">"]
            .iter()
            .find_map(|op| clause.strip_prefix(op));
        version.is_some_and(|v| {
            v.starts_with(alnum)
                && v.chars()
                    .all(|c| alnum(c) || matches!(c, '.' | '*' | '+' | '!' | '_' | '-'))
        })
    })
}

fn check_scaling(ctx: &mut Ctx<'_>, entries: &[Entry], pos: Pos) -> Scaling {
    let sec = Section::open(ctx, "scaling", pos, entries, SCALING_FIELDS);
    let d = Scaling::default();

    let min = sec.u32(ctx, "min_replicas", 0);
    let max = sec.u32(ctx, "max_replicas", 1);
    let conc = sec.u32(ctx, "max_concurrency", 1);
    let target = sec.float(ctx, "target_concurrency");
    let util = sec.float(ctx, "target_utilization");
    let warm = sec.u32(ctx, "warm_pool", 0);

    let max_bad = max.is_bad();
    let max_given = matches!(max, Got::Ok(_));
    let max_v = max.or((d.max_replicas, pos)).0;
    let describe_max = || {
        if max_given {
            format!("max_replicas ({max_v})")
        } else {
            format!("max_replicas ({max_v}, the default)")
        }
    };
    if let (Got::Ok((m, mpos)), false) = (&min, max_bad) {
        if *m > max_v {
            ctx.err(
                *mpos,
                Some("scaling.min_replicas"),
                format!("min_replicas ({m}) must not exceed {}", describe_max()),
            );
        }
    }
    if let (Got::Ok((w, wpos)), false) = (&warm, max_bad) {
        if *w > max_v {
            ctx.err(
                *wpos,
                Some("scaling.warm_pool"),
                format!("warm_pool ({w}) must not exceed {}", describe_max()),
            );
        }
    }

    let conc_bad = conc.is_bad();
    let conc_v = conc.or((d.max_concurrency, pos)).0;
    let target_v = match target {
        Got::Ok((t, tpos)) => {
            if t <= 0.0 {
                ctx.err(
                    tpos,
                    Some("scaling.target_concurrency"),
                    format!("must be greater than zero (got {t})"),
                );
            } else if !conc_bad && t > f64::from(conc_v) {
                ctx.err(
                    tpos,
                    Some("scaling.target_concurrency"),
                    format!("target_concurrency ({t}) must not exceed max_concurrency ({conc_v})"),
                );
            }
            t
        }
        Got::Absent | Got::Bad => f64::from(conc_v),
    };
    let util_v = match util {
        Got::Ok((u, upos)) => {
            if !(u > 0.0 && u <= 1.0) {
                ctx.err(
                    upos,
                    Some("scaling.target_utilization"),
                    format!("must be greater than 0 and at most 1 (got {u})"),
                );
            }
            u
        }
        Got::Absent | Got::Bad => d.target_utilization,
    };

    Scaling {
        min_replicas: min.or((d.min_replicas, pos)).0,
        max_replicas: max_v,
        max_concurrency: conc_v,
        target_concurrency: target_v,
        target_utilization: util_v,
        idle_timeout: sec
            .duration(ctx, "idle_timeout")
            .or((d.idle_timeout, pos))
            .0,
        stable_window: sec
            .duration(ctx, "stable_window")
            .or((d.stable_window, pos))
            .0,
        cold_start_timeout: sec
            .duration(ctx, "cold_start_timeout")
            .or((d.cold_start_timeout, pos))
            .0,
        queue_size: sec.u32(ctx, "queue_size", 0).or((d.queue_size, pos)).0,
        queue_timeout: sec
            .duration(ctx, "queue_timeout")
            .or((d.queue_timeout, pos))
            .0,
        warm_pool: warm.or((d.warm_pool, pos)).0,
    }
}

fn check_limits(ctx: &mut Ctx<'_>, entries: &[Entry], pos: Pos) -> Limits {
    let sec = Section::open(ctx, "limits", pos, entries, LIMITS_FIELDS);
    let d = Limits::default();
    let memory = match sec.size(ctx, "memory") {
        Got::Ok((m, mpos)) => {
            if m < MIN_MEMORY_BYTES {
                ctx.err(
                    mpos,
                    Some("limits.memory"),
                    format!(
                        "memory limit {} is below the minimum of {}",
                        format_size(m),
                        format_size(MIN_MEMORY_BYTES)
                    ),
                );
            }
            m
        }
        Got::Absent | Got::Bad => d.memory_bytes,
    };
    let cpus = match sec.float(ctx, "cpus") {
        Got::Ok((c, cpos)) => {
            if !(c > 0.0 && c <= MAX_CPUS) {
                ctx.err(
                    cpos,
                    Some("limits.cpus"),
                    format!("must be greater than 0 and at most {MAX_CPUS} (got {c})"),
                );
            }
            c
        }
        Got::Absent | Got::Bad => d.cpus,
    };
    Limits {
        timeout: sec.duration(ctx, "timeout").or((d.timeout, pos)).0,
        memory_bytes: memory,
        cpus,
        max_body_bytes: sec.size(ctx, "max_body").or((d.max_body_bytes, pos)).0,
        pids: sec.u32(ctx, "pids", 1).or((d.pids, pos)).0,
    }
}

fn check_env(ctx: &mut Ctx<'_>, e: &Entry) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let entries = match &e.value.value {
        Value::Map(entries) => entries,
        Value::Null => return env,
        _ => {
            ctx.err(
                e.value.pos,
                Some("env"),
                format!(
                    "expected a map of variable name → value, found {}",
                    e.value.describe()
                ),
            );
            return env;
        }
    };
    for var in entries {
        let field = format!("env.{}", var.key);
        if !valid_env_name(&var.key) {
            ctx.err(
                var.key_pos,
                Some(&field),
                format!("`{}` is not a valid environment variable name (letters, digits and `_`, not starting with a digit)", var.key),
            );
        } else if var
            .key
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("SLUICE_"))
        {
            ctx.err(
                var.key_pos,
                Some(&field),
                "names starting with `SLUICE_` are reserved for the platform",
            );
        } else if let Some(why) = loader_env(&var.key) {
            ctx.err(
                var.key_pos,
                Some(&field),
                format!("`{}` is refused: it {why}", var.key),
            );
        }
        let value = match &var.value.value {
            Value::Null => String::new(),
            Value::Scalar { text, .. } => text.clone(),
            other @ (Value::Map(_) | Value::Seq(_)) => {
                let found = if matches!(other, Value::Map(_)) {
                    "a map"
                } else {
                    "a list"
                };
                ctx.err(
                    var.value.pos,
                    Some(&field),
                    format!("expected a string, number or boolean, found {found}"),
                );
                continue;
            }
        };
        if value.contains('\0') {
            ctx.err(
                var.value.pos,
                Some(&field),
                "must not contain NUL characters",
            );
            continue;
        }
        env.insert(var.key.clone(), value);
    }
    env
}

/// `events_from: [function, ...]`: whose event streams this function may read (its own
/// state must be Redis). That each name is a function with state is checked across entries
/// by [`check_events_from_refs`].
fn check_events_from(ctx: &mut Ctx<'_>, e: &Entry, key: &str, state: State) -> Vec<String> {
    if state != State::Redis && matches!(&e.value.value, Value::Seq(items) if !items.is_empty()) {
        ctx.err(
            e.key_pos,
            Some("events_from"),
            "reading other functions' events needs `state: redis` (the grant goes to the function's Redis user)",
        );
    }
    name_list(ctx, e, "events_from", "function name", |name| {
        if !crate::is_dns_label(name) {
            Some(format!("`{name}` is not a function name (a DNS label)"))
        } else if name == key {
            Some("a function reads its own events through its own state already".into())
        } else {
            None
        }
    })
}

/// A list of names in `field`: each item a scalar that `refuse` does not object to (its
/// answer is the error), each once. Errors carry the item's position.
fn name_list(
    ctx: &mut Ctx<'_>,
    e: &Entry,
    field: &str,
    what: &str,
    refuse: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let items = match &e.value.value {
        Value::Seq(items) => items,
        Value::Null => return out,
        _ => {
            ctx.err(
                e.value.pos,
                Some(field),
                format!("expected a list of {what}s, found {}", e.value.describe()),
            );
            return out;
        }
    };
    for item in items {
        let Value::Scalar { text, .. } = &item.value else {
            ctx.err(
                item.pos,
                Some(field),
                format!("expected a {what}, found {}", item.describe()),
            );
            continue;
        };
        let name = text.trim();
        if let Some(why) = refuse(name) {
            ctx.err(item.pos, Some(field), why);
        } else if out.iter().any(|n| n == name) {
            ctx.err(item.pos, Some(field), format!("`{name}` is listed twice"));
        } else {
            out.push(name.to_string());
        }
    }
    out
}

/// A field naming one of `names` (`from_name` parses it): `None` when it is absent, or
/// refused with "unknown <field> `x`; supported: ..." and `hint`.
fn choice<T>(
    ctx: &mut Ctx<'_>,
    entry: &Section,
    field: &str,
    from_name: fn(&str) -> Option<T>,
    names: &[&str],
    hint: &str,
) -> Option<T> {
    let Got::Ok((text, pos)) = entry.string(ctx, field) else {
        return None;
    };
    let got = from_name(&text);
    if got.is_none() {
        ctx.err(
            pos,
            Some(field),
            format!(
                "unknown {field} `{text}`; supported: {}{hint}",
                names.join(", ")
            ),
        );
    }
    got
}

/// `uses: [service, ...]`: platform services from [`Service::ALL`], each once.
fn check_uses(ctx: &mut Ctx<'_>, e: &Entry) -> Vec<Service> {
    let mut out = Vec::new();
    let items = match &e.value.value {
        Value::Seq(items) => items,
        Value::Null => return out,
        _ => {
            ctx.err(
                e.value.pos,
                Some("uses"),
                format!("expected a list of services, found {}", e.value.describe()),
            );
            return out;
        }
    };
    for item in items {
        let name = match &item.value {
            Value::Scalar { text, .. } => text.trim(),
            _ => "",
        };
        match Service::from_name(name) {
            Some(s) if out.contains(&s) => {
                ctx.err(item.pos, Some("uses"), format!("`{name}` is listed twice"))
            }
            Some(s) => out.push(s),
            None => ctx.err(
                item.pos,
                Some("uses"),
                format!(
                    "unknown service `{name}`; supported: {}",
                    Service::ALL.map(Service::as_str).join(", ")
                ),
            ),
        }
    }
    out
}

/// `secrets: [name, ...]`: secret names (created through `/system/secrets`), each once. A
/// value written here instead of a name is refused without being echoed.
fn check_secrets(ctx: &mut Ctx<'_>, e: &Entry) -> Vec<String> {
    use crate::secrets;
    if let Value::Seq(items) = &e.value.value {
        if items.len() > secrets::MAX_PER_FUNCTION {
            ctx.err(
                e.key_pos,
                Some("secrets"),
                format!(
                    "{} secrets listed; a function may have at most {}",
                    items.len(),
                    secrets::MAX_PER_FUNCTION
                ),
            );
        }
    }
    name_list(ctx, e, "secrets", "secret name", |name| {
        // Never echo it: a value pasted here by mistake must not reach the logs.
        (!secrets::is_name(name)).then(|| {
            format!(
                "not a secret name ({}); values never go in the registry: create the secret with POST /system/secrets and list its name here",
                secrets::NAME_RULE
            )
        })
    })
}

/// Every name in an `events_from` list is a function of the registry with `state: redis`
/// (only those have an event stream).
pub(crate) fn check_events_from_refs(
    errors: &mut Vec<RegistryError>,
    entries: &[Entry],
    keys: &[(String, Pos)],
    functions: &BTreeMap<String, FunctionSpec>,
) {
    for entry in entries {
        let Value::Map(fields) = &entry.value.value else {
            continue;
        };
        let Some(list) = fields.iter().rev().find(|f| f.key == "events_from") else {
            continue;
        };
        let Value::Seq(items) = &list.value.value else {
            continue;
        };
        let mut seen = Vec::new();
        for item in items {
            let Value::Scalar { text, .. } = &item.value else {
                continue;
            };
            let name = text.trim();
            // Malformed, self and repeated names were reported with the entry.
            if !crate::is_dns_label(name) || name == entry.key || seen.contains(&name) {
                continue;
            }
            seen.push(name);
            let known = keys.iter().any(|(k, _)| k == name);
            let problem = match functions.get(name) {
                _ if !known => format!("`{name}` is not a function of this registry"),
                Some(spec) if spec.state != State::Redis => {
                    format!("`{name}` has no event stream: it does not have `state: redis`")
                }
                _ => continue,
            };
            errors.push(error(
                item.pos,
                Some(&entry.key),
                Some("events_from"),
                problem,
            ));
        }
    }
}

/// Variables that change how the function's process is loaded or interpreted rather than
/// what the function does: a function's `env` may not set them. Returns why, when refused.
/// (The dynamic loader's and glibc's own list of variables it ignores in setuid programs,
/// the interpreter's `PYTHON*`, and `PATH`, which picks the interpreter.)
fn loader_env(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("LD_") {
        return Some("changes the dynamic loader (`LD_*`)");
    }
    if upper.starts_with("PYTHON") {
        return Some("changes the Python interpreter (`PYTHON*`)");
    }
    if upper.starts_with("MALLOC_") {
        return Some("changes the C library's allocator (`MALLOC_*`)");
    }
    const LIBC: [&str; 11] = [
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TZDIR",
    ];
    if LIBC.contains(&upper.as_str()) {
        return Some("changes what the C library loads or how it resolves names");
    }
    if upper == "PATH" {
        return Some("changes which programs, the interpreter included, are run");
    }
    None
}

fn valid_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks that no two entries share a `name:` or key. `keys` are (key, key position) in
/// file order; `names` are (key, its `name:`) in file order.
pub(crate) fn check_unique_names(
    errors: &mut Vec<RegistryError>,
    keys: &[(String, Pos)],
    names: &[(String, DisplayName)],
) {
    let mut owners: HashMap<&str, (&str, Pos)> = keys
        .iter()
        .map(|(k, pos)| (k.as_str(), (k.as_str(), *pos)))
        .collect();
    for (key, display) in names {
        if display.name == *key {
            continue;
        }
        match owners.get(display.name.as_str()) {
            Some((owner, pos)) if owner != key => {
                let what = if display.name == *owner {
                    "key"
                } else {
                    "name"
                };
                errors.push(error(
                    display.pos,
                    Some(key),
                    Some("name"),
                    format!(
                        "name `{}` is already used as the {what} of function `{owner}` (line {}); names must be unique",
                        display.name, pos.line
                    ),
                ));
            }
            Some(_) => {}
            None => {
                owners.insert(&display.name, (key, display.pos));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever the text, splitting and checking never panic, and what is accepted can
        /// only name a package of the index: no URL, path, option, marker or shell syntax.
        #[test]
        fn accepted_requirements_cannot_point_elsewhere(text in "[ -~]{0,60}") {
            for w in split_deps(&text) {
                if valid_requirement(&w) {
                    proptest::prop_assert!(w.starts_with(|c: char| c.is_ascii_alphanumeric()), "{}", w);
                    proptest::prop_assert!(
                        !w.contains(['@', '/', ':', ';', '\\', '$', '`', '\'', '"', ' ', '|', '&', '#']),
                        "{}", w
                    );
                }
            }
        }

        #[test]
        fn env_name_checks_never_panic(name in "\\PC{0,40}") {
            let _ = valid_env_name(&name);
            let _ = loader_env(&name);
        }
    }

    #[test]
    fn requirements_and_env_names() {
        for ok in [
            "requests",
            "numpy>=1.0",
            "pkg[extra]==1.2",
            "a_b.c-d",
            "numpy>=1.26,<2",
            "pkg[a,b]~=1.4.*",
            "x===1.0+local",
            "torch==2.1.0+cpu",
        ] {
            assert!(valid_requirement(ok), "{ok}");
        }
        for bad in [
            "--index-url",
            "-e",
            "a;rm",
            "$(x)",
            "a`b`",
            "a|b",
            "'a'",
            "pkg@https://evil.example/p.tar.gz",
            "pkg@file:///tmp/x",
            "https://evil.example/p.tar.gz",
            "git+https://github.com/a/b",
            "./local",
            "/abs/path",
            "pkg==1;python_version<'3'",
            "pkg[",
            "pkg[]",
            "pkg==",
            "pkg=1",
            "pkg>=1,",
            "-pkg",
            "pkg-",
        ] {
            assert!(!valid_requirement(bad), "{bad}");
        }
        assert_eq!(
            split_deps("redis==5.0.8 protobuf==4.25.9,six numpy>=1.26,<2 pkg[a,b]"),
            [
                "redis==5.0.8",
                "protobuf==4.25.9",
                "six",
                "numpy>=1.26,<2",
                "pkg[a,b]"
            ]
        );
        for ok in ["A", "_x", "PATH_2"] {
            assert!(valid_env_name(ok), "{ok}");
        }
        for bad in ["", "2A", "A-B", "A.B", "É"] {
            assert!(!valid_env_name(bad), "{bad}");
        }
        for refused in [
            "LD_PRELOAD",
            "ld_library_path",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "PythonHome",
            "GLIBC_TUNABLES",
            "GCONV_PATH",
            "MALLOC_CHECK_",
            "PATH",
        ] {
            assert!(loader_env(refused).is_some(), "{refused}");
        }
        for allowed in ["LOG_LEVEL", "MY_PATH", "OLD_PYTHON", "TZ", "HOME_DIR"] {
            assert_eq!(loader_env(allowed), None, "{allowed}");
        }
    }
}
