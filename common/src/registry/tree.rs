//! The document tree the validator walks, built from YAML (with positions) or JSON (without).
//!
//! YAML goes through two passes:
//! 1. a streaming pass over `yaml-rust2` events (iterative, so hostile nesting cannot overflow
//!    the stack) that rejects nesting deeper than [`MAX_DEPTH`], reports *every* duplicate key
//!    with its path, and rejects a second document;
//! 2. `marked-yaml`, which builds the node tree with a line/column for every node (scalars keep
//!    their source text, so `version: 0.1` stays `"0.1"`). It only runs when pass 1 found the
//!    input safe to load; where keys are duplicated the last one wins there.
//!
//! Plain (unquoted) scalars `""`, `~`, `null`, `Null` and `NULL` become [`Value::Null`].

use std::collections::HashMap;

use marked_yaml::{LoadError, LoaderOptions};
use yaml_rust2::parser::{Event, Parser};

use super::error::RegistryError;

/// Deepest nesting accepted (the registry itself needs 4 levels).
pub(crate) const MAX_DEPTH: usize = 32;

/// 1-based position in the source; `0:0` when the input had no positions (JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A node's content.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// Missing value (`key:` with nothing after it, `~`, `null`, JSON `null`).
    Null,
    /// Any other scalar, with its source text; `plain` is false for quoted YAML strings and
    /// JSON strings.
    Scalar { text: String, plain: bool },
    /// A map, keys in source order.
    Map(Vec<Entry>),
    /// A list.
    Seq(Vec<Node>),
}

/// A value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// One `key: value` pair of a map.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

impl Node {
    /// How the value is described in "found …" messages.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "nothing".into(),
            Value::Scalar { text, .. } => format!("`{text}`"),
            Value::Map(_) => "a map".into(),
            Value::Seq(_) => "a list".into(),
        }
    }
}

/// Builds an error that is not (yet) tied to a file.
pub(crate) fn error(
    pos: Pos,
    function: Option<&str>,
    field: Option<&str>,
    message: impl Into<String>,
) -> RegistryError {
    RegistryError {
        file: None,
        line: pos.line,
        column: pos.column,
        function: function.map(str::to_owned),
        field: field.map(str::to_owned),
        message: message.into(),
    }
}

/// Parses YAML text into a tree. Returns the tree when it could be built (possibly with
/// errors such as duplicate keys) and every problem found while loading.
pub(crate) fn load_yaml(text: &str) -> (Option<Node>, Vec<RegistryError>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut errors = Vec::new();
    if let Err(fatal) = scan_events(text, &mut errors) {
        errors.push(fatal);
        return (None, errors);
    }
    let options = LoaderOptions::default().prevent_coercion(true);
    match marked_yaml::parse_yaml_with_options(0, text, options) {
        Ok(node) => (Some(from_marked(&node, None)), errors),
        Err(e) => {
            errors.push(load_error(&e));
            (None, errors)
        }
    }
}

fn load_error(e: &LoadError) -> RegistryError {
    let at = |m: &marked_yaml::Marker| Pos {
        line: m.line(),
        column: m.column(),
    };
    match e {
        LoadError::TopLevelMustBeMapping(m) => error(
            at(m),
            None,
            None,
            "the top level must be a map of function name → definition (e.g. `hello:` followed by its fields)",
        ),
        LoadError::TopLevelMustBeSequence(m) => {
            error(at(m), None, None, "unexpected top-level structure")
        }
        LoadError::UnexpectedAnchor(m) => error(
            at(m),
            None,
            None,
            "YAML anchors and aliases are not supported in the registry",
        ),
        LoadError::MappingKeyMustBeScalar(m) => error(
            at(m),
            None,
            None,
            "map keys must be plain names, not lists or maps",
        ),
        LoadError::UnexpectedTag(m) => error(
            at(m),
            None,
            None,
            "YAML tags (`!!str`, `!foo`) are not supported in the registry",
        ),
        LoadError::ScanError(m, se) => error(
            at(m),
            None,
            None,
            format!("YAML syntax error: {}", se.info()),
        ),
        LoadError::DuplicateKey(inner) => {
            let pos = inner
                .key
                .span()
                .start()
                .map(at)
                .unwrap_or_default();
            error(
                pos,
                None,
                None,
                format!("duplicate key `{}`", inner.key.as_str()),
            )
        }
    }
}

/// Where a map is in its `key: value` cycle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MapState {
    /// The next node is a key.
    Key,
    /// Inside a complex (list or map) key.
    ComplexKey,
    /// The next node is the value of the current key.
    Value,
}

/// Per-level state of the streaming pass.
enum Frame {
    Map {
        /// Keys seen so far, with the position of their first occurrence.
        keys: HashMap<String, Pos>,
        state: MapState,
        /// The key whose value is being read (None for a complex key).
        current: Option<String>,
    },
    Seq,
}

/// Streaming pass: duplicate keys (all of them), nesting depth, number of documents.
/// `Err` means the input must not be loaded further (syntax error, too deep).
fn scan_events(text: &str, errors: &mut Vec<RegistryError>) -> Result<(), RegistryError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut documents = 0usize;
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(ev) => ev,
            Err(se) => {
                let m = se.marker();
                return Err(error(
                    Pos {
                        line: m.line(),
                        column: m.col() + 1,
                    },
                    None,
                    None,
                    format!("YAML syntax error: {}", se.info()),
                ));
            }
        };
        let pos = Pos {
            line: mark.line(),
            column: mark.col() + 1,
        };
        match event {
            Event::StreamEnd => return Ok(()),
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    errors.push(error(
                        pos,
                        None,
                        None,
                        "only one YAML document is allowed (remove the second `---`)",
                    ));
                    return Ok(());
                }
            }
            Event::Scalar(key, ..) if wants_key(&stack) => {
                let path = path_of(&stack);
                if let Some(Frame::Map {
                    keys,
                    state,
                    current,
                }) = stack.last_mut()
                {
                    if let Some(first) = keys.get(&key) {
                        errors.push(duplicate(&path, &key, pos, *first));
                    } else {
                        keys.insert(key.clone(), pos);
                    }
                    *state = MapState::Value;
                    *current = Some(key);
                }
            }
            Event::Scalar(..) | Event::Alias(_) => node_done(&mut stack),
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(error(
                        pos,
                        None,
                        None,
                        format!("YAML nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                if let Some(Frame::Map {
                    state: state @ MapState::Key,
                    current,
                    ..
                }) = stack.last_mut()
                {
                    *state = MapState::ComplexKey;
                    *current = None;
                }
                stack.push(if matches!(event, Event::MappingStart(..)) {
                    Frame::Map {
                        keys: HashMap::new(),
                        state: MapState::Key,
                        current: None,
                    }
                } else {
                    Frame::Seq
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                node_done(&mut stack);
            }
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
        }
    }
}

fn wants_key(stack: &[Frame]) -> bool {
    matches!(
        stack.last(),
        Some(Frame::Map {
            state: MapState::Key,
            ..
        })
    )
}

/// A whole node (scalar, list or map) finished inside the top frame: a map moves from its
/// complex key to the value, or from the value to the next key.
fn node_done(stack: &mut [Frame]) {
    if let Some(Frame::Map { state, current, .. }) = stack.last_mut() {
        match state {
            MapState::ComplexKey => *state = MapState::Value,
            MapState::Value => {
                *state = MapState::Key;
                *current = None;
            }
            MapState::Key => {}
        }
    }
}

/// Keys leading to the top frame (sequences contribute nothing).
fn path_of(stack: &[Frame]) -> Vec<String> {
    stack
        .iter()
        .filter_map(|f| match f {
            Frame::Map { current, .. } => current.clone(),
            Frame::Seq => None,
        })
        .collect()
}

fn duplicate(path: &[String], key: &str, pos: Pos, first: Pos) -> RegistryError {
    match path.split_first() {
        None => error(
            pos,
            Some(key),
            None,
            format!(
                "duplicate function `{key}` (first defined at line {}); each function must appear once",
                first.line
            ),
        ),
        Some((function, rest)) => {
            let mut field = rest.join(".");
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(key);
            error(
                pos,
                Some(function),
                Some(&field),
                format!("duplicate key `{key}` (first given at line {})", first.line),
            )
        }
    }
}

fn is_null_text(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Converts a marked-yaml node. `key_pos` is used as the position of an empty value
/// (marked-yaml places those at the following token).
fn from_marked(node: &marked_yaml::Node, key_pos: Option<Pos>) -> Node {
    let pos_of = |span: &marked_yaml::Span| {
        span.start()
            .map(|m| Pos {
                line: m.line(),
                column: m.column(),
            })
            .unwrap_or_default()
    };
    match node {
        marked_yaml::Node::Scalar(s) => {
            let text = s.as_str();
            if s.may_coerce() && is_null_text(text) {
                let pos = match (text.is_empty(), key_pos) {
                    (true, Some(k)) => k,
                    _ => pos_of(s.span()),
                };
                Node {
                    pos,
                    value: Value::Null,
                }
            } else {
                Node {
                    pos: pos_of(s.span()),
                    value: Value::Scalar {
                        text: text.to_owned(),
                        plain: s.may_coerce(),
                    },
                }
            }
        }
        marked_yaml::Node::Mapping(m) => Node {
            pos: key_pos.unwrap_or_else(|| pos_of(m.span())),
            value: Value::Map(
                m.iter()
                    .map(|(k, v)| {
                        let key_pos = pos_of(k.span());
                        Entry {
                            key: k.as_str().to_owned(),
                            key_pos,
                            value: from_marked(v, Some(key_pos)),
                        }
                    })
                    .collect(),
            ),
        },
        marked_yaml::Node::Sequence(s) => Node {
            pos: pos_of(s.span()),
            value: Value::Seq(s.iter().map(|v| from_marked(v, None)).collect()),
        },
    }
}

/// Converts a JSON value (no positions). Numbers and booleans become plain scalars holding
/// their JSON text; strings become quoted scalars. Nesting beyond [`MAX_DEPTH`] is an error.
pub(crate) fn from_json(value: &serde_json::Value) -> Result<Node, RegistryError> {
    from_json_at(value, 0)
}

fn from_json_at(value: &serde_json::Value, depth: usize) -> Result<Node, RegistryError> {
    if depth > MAX_DEPTH {
        return Err(error(
            Pos::default(),
            None,
            None,
            format!("JSON nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    let scalar = |text: String, plain: bool| Value::Scalar { text, plain };
    let value = match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => scalar(b.to_string(), true),
        serde_json::Value::Number(n) => scalar(n.to_string(), true),
        serde_json::Value::String(s) => scalar(s.clone(), false),
        serde_json::Value::Array(items) => Value::Seq(
            items
                .iter()
                .map(|v| from_json_at(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| {
                    Ok(Entry {
                        key: k.clone(),
                        key_pos: Pos::default(),
                        value: from_json_at(v, depth + 1)?,
                    })
                })
                .collect::<Result<_, RegistryError>>()?,
        ),
    };
    Ok(Node {
        pos: Pos::default(),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (Option<Node>, Vec<RegistryError>) {
        load_yaml(text)
    }

    #[test]
    fn positions_and_plain_text() {
        let (node, errors) = load("hello:\n  version: 0.1\n  q: \"x\"\n  e:\n");
        assert!(errors.is_empty(), "{errors:?}");
        let node = node.expect("tree");
        let Value::Map(top) = &node.value else {
            panic!("top is a map")
        };
        assert_eq!(top[0].key, "hello");
        assert_eq!(top[0].key_pos, Pos { line: 1, column: 1 });
        let Value::Map(fields) = &top[0].value.value else {
            panic!("entry is a map")
        };
        assert_eq!(fields[0].key_pos, Pos { line: 2, column: 3 });
        assert_eq!(
            fields[0].value.value,
            Value::Scalar {
                text: "0.1".into(),
                plain: true
            }
        );
        assert_eq!(
            fields[0].value.pos,
            Pos {
                line: 2,
                column: 12
            }
        );
        assert_eq!(
            fields[1].value.value,
            Value::Scalar {
                text: "x".into(),
                plain: false
            }
        );
        assert_eq!(fields[2].value.value, Value::Null);
        assert_eq!(fields[2].value.pos, Pos { line: 4, column: 3 });
    }

    #[test]
    fn every_duplicate_is_reported_with_its_path() {
        let text = "a:\n  scaling:\n    min_replicas: 1\n    min_replicas: 2\nb: {}\na: {}\n";
        let (node, errors) = load(text);
        assert!(node.is_some());
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].function.as_deref(), Some("a"));
        assert_eq!(errors[0].field.as_deref(), Some("scaling.min_replicas"));
        assert_eq!((errors[0].line, errors[0].column), (4, 5));
        assert!(errors[0].message.contains("line 3"));
        assert_eq!(errors[1].function.as_deref(), Some("a"));
        assert_eq!(errors[1].field, None);
        assert_eq!((errors[1].line, errors[1].column), (6, 1));
    }

    #[test]
    fn complex_keys_do_not_confuse_duplicate_detection() {
        let (_, errors) = load("a:\n  ? [x]\n  : 1\n  b: 1\n  c: 2\n");
        assert!(
            errors.iter().all(|e| !e.message.contains("duplicate")),
            "{errors:?}"
        );
    }

    #[test]
    fn hostile_nesting_is_an_error_not_a_crash() {
        let mut deep = String::new();
        for i in 0..5000 {
            deep.push_str(&" ".repeat(i));
            deep.push_str("a:\n");
        }
        let (node, errors) = load(&deep);
        assert!(node.is_none());
        assert!(errors[0].message.contains("nested deeper"), "{errors:?}");
        let flow = format!("a: {}", "[".repeat(100_000));
        let (node, errors) = load(&flow);
        assert!(node.is_none());
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn second_document_is_rejected() {
        let (_, errors) = load("a: {}\n---\nb: {}\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].message.contains("one YAML document"));
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let (node, errors) = load("\u{feff}a: {}\n");
        assert!(errors.is_empty());
        let Some(Node {
            value: Value::Map(top),
            ..
        }) = node
        else {
            panic!("map")
        };
        assert_eq!(top[0].key, "a");
    }
}
