//! Registry behaviour as a user of `global-function-definition.yml` (or of the deploy API)
//! sees it: what parses, to which values, and exactly which errors a bad file produces.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_common::registry::{
    self, folder_content_hash, FunctionSpec, Language, Limits, Registry, RegistryError,
    RuntimeMode, Scaling,
};

const FILE: &str = "global-function-definition.yml";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/registry")
        .join(name)
}

fn read_fixture(name: &str) -> String {
    fs::read_to_string(fixture(name)).expect("fixture is readable")
}

/// A functions dir holding the folders the fixtures refer to.
fn functions_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |rel: &str, content: &str| {
        let path = dir.path().join(rel);
        fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        fs::write(path, content).expect("write fixture file");
    };
    write("hello/handler.py", "def handle(req):\n    return 'hi'\n");
    write(
        "example/example.py",
        "def handle(req):\n    return 'example'\n",
    );
    write("rustfn/Cargo.toml", "[package]\nname = \"rustfn\"\n");
    write("rustfn/src/main.rs", "fn main() {}\n");
    write("nocargo/src/main.rs", "fn main() {}\n");
    write("bin/run.sh", "#!/bin/sh\necho hi\n");
    dir
}

/// What one expected error must look like.
struct Want {
    function: Option<&'static str>,
    field: Option<&'static str>,
    line: usize,
    /// 0 = column not checked.
    column: usize,
    words: &'static [&'static str],
}

const fn want(
    function: Option<&'static str>,
    field: Option<&'static str>,
    line: usize,
    column: usize,
    words: &'static [&'static str],
) -> Want {
    Want {
        function,
        field,
        line,
        column,
        words,
    }
}

fn check_errors(case: &str, got: &[RegistryError], wants: &[Want]) {
    let rendered: Vec<String> = got.iter().map(ToString::to_string).collect();
    assert_eq!(
        got.len(),
        wants.len(),
        "{case}: wrong number of errors:\n{}",
        rendered.join("\n")
    );
    for (i, (e, w)) in got.iter().zip(wants).enumerate() {
        let ctx = format!("{case}: error #{i}: {e}");
        assert_eq!(e.function.as_deref(), w.function, "{ctx}");
        assert_eq!(e.field.as_deref(), w.field, "{ctx}");
        assert_eq!(e.line, w.line, "{ctx}");
        if w.column != 0 {
            assert_eq!(e.column, w.column, "{ctx}");
        }
        for word in w.words {
            assert!(e.message.contains(word), "{ctx}: missing `{word}`");
        }
        assert_eq!(e.file.as_deref(), Some(FILE), "{ctx}");
    }
}

fn parse_err(text: &str, dir: Option<&Path>) -> Vec<RegistryError> {
    match registry::parse(text, Some(FILE), dir) {
        Ok(r) => panic!("expected errors, parsed {r:?}"),
        Err(e) => e.0,
    }
}

/// A valid entry header the bad cases build on (lines 1–6).
const OK_HEAD: &str = "hello:
  version: 0.1
  configuration:
    programing_language: python
    base_function_file_name: handler.py
    function_folder: hello
";

#[test]
fn bad_files_report_exact_errors() {
    let dir = functions_dir();
    let head_plus = |extra: &str| format!("{OK_HEAD}{extra}");
    let cases: Vec<(&str, String, Vec<Want>)> = vec![
        (
            "syntax error",
            "hello:\n  version: 0.1\n  configuration: {a: 1\nother: 2\n".into(),
            vec![want(None, None, 4, 0, &["YAML syntax error"])],
        ),
        (
            "syntax error: bad indentation",
            "hello:\n  version: 0.1\n   configuration: x\n".into(),
            vec![want(None, None, 3, 17, &["YAML syntax error", "mapping values"])],
        ),
        (
            "top level is a list",
            "- hello\n- world\n".into(),
            vec![want(None, None, 1, 1, &["top level must be a map"])],
        ),
        (
            "top level is a scalar",
            "just text\n".into(),
            vec![want(None, None, 1, 1, &["top level must be a map"])],
        ),
        (
            "entry is not a map",
            "hello: 3\n".into(),
            vec![want(Some("hello"), None, 1, 8, &["must be a map", "found `3`"])],
        ),
        (
            "entry is empty",
            "hello:\n".into(),
            vec![want(Some("hello"), None, 1, 1, &["must be a map", "found nothing"])],
        ),
        (
            "unknown entry field with suggestion",
            head_plus("  scalling:\n    max_replicas: 3\n"),
            vec![want(
                Some("hello"),
                Some("scalling"),
                7,
                3,
                &["unknown field, did you mean `scaling`?"],
            )],
        ),
        (
            "unknown nested field with suggestion",
            head_plus("  scaling:\n    max_replica: 3\n"),
            vec![want(
                Some("hello"),
                Some("scaling.max_replica"),
                8,
                5,
                &["unknown field, did you mean `max_replicas`?"],
            )],
        ),
        (
            "field in the wrong section",
            head_plus("  scaling:\n    memory: 1Gi\n"),
            vec![want(
                Some("hello"),
                Some("scaling.memory"),
                8,
                5,
                &["did you mean `limits.memory`?"],
            )],
        ),
        (
            "unknown field far from any name",
            head_plus("  limits:\n    colour: blue\n"),
            vec![want(
                Some("hello"),
                Some("limits.colour"),
                8,
                5,
                &["unknown field", "`timeout`", "`memory`", "`pids`"],
            )],
        ),
        (
            "missing required field in configuration",
            "hello:\n  version: 0.1\n  configuration:\n    programing_language: python\n    base_function_file_name: handler.py\n".into(),
            vec![want(
                Some("hello"),
                Some("configuration.function_folder"),
                3,
                3,
                &["missing required field `function_folder`"],
            )],
        ),
        (
            "missing version and configuration",
            "hello:\n  name: hello\n".into(),
            vec![
                want(Some("hello"), Some("version"), 1, 1, &["missing required field `version`"]),
                want(
                    Some("hello"),
                    Some("configuration"),
                    1,
                    1,
                    &["missing required field `configuration`"],
                ),
            ],
        ),
        (
            "missing language",
            "hello:\n  version: 0.1\n  configuration:\n    base_function_file_name: handler.py\n    function_folder: hello\n".into(),
            vec![want(
                Some("hello"),
                Some("configuration.programming_language"),
                3,
                3,
                &["missing required field", "programing_language"],
            )],
        ),
        (
            "both spellings of language",
            head_plus("").replace(
                "    programing_language: python\n",
                "    programing_language: python\n    programming_language: python\n",
            ),
            vec![want(
                Some("hello"),
                Some("configuration.programming_language"),
                5,
                5,
                &["both", "keep only one"],
            )],
        ),
        (
            "unsupported language",
            OK_HEAD.replace("programing_language: python", "programing_language: go"),
            vec![want(
                Some("hello"),
                Some("configuration.programing_language"),
                4,
                26,
                &["unsupported language `go`", "python, rust, binary"],
            )],
        ),
        (
            "bad DNS name",
            OK_HEAD.replace("hello:", "Hello_World:"),
            vec![want(Some("Hello_World"), None, 1, 1, &["not a DNS label"])],
        ),
        (
            "reserved name",
            OK_HEAD.replace("hello:", "system:"),
            vec![want(Some("system"), None, 1, 1, &["reserved", "`healthz`"])],
        ),
        (
            "duplicate key",
            format!("{OK_HEAD}{OK_HEAD}"),
            vec![want(Some("hello"), None, 7, 1, &["duplicate function `hello`", "line 1"])],
        ),
        (
            "duplicate nested key",
            head_plus("  scaling:\n    max_replicas: 3\n    max_replicas: 4\n"),
            vec![want(
                Some("hello"),
                Some("scaling.max_replicas"),
                9,
                5,
                &["duplicate key `max_replicas`", "line 8"],
            )],
        ),
        (
            "duplicate name",
            format!(
                "{}{}",
                OK_HEAD.replace("  version", "  name: shared\n  version"),
                OK_HEAD
                    .replace("hello:", "other:")
                    .replace("  version", "  name: shared\n  version")
            ),
            vec![want(
                Some("other"),
                Some("name"),
                9,
                9,
                &["name `shared` is already used", "function `hello`", "line 2"],
            )],
        ),
        (
            "name equal to another function's key",
            format!(
                "{OK_HEAD}{}",
                OK_HEAD
                    .replace("hello:", "other:")
                    .replace("  version", "  name: hello\n  version")
            ),
            vec![want(
                Some("other"),
                Some("name"),
                8,
                9,
                &["already used as the key of function `hello`"],
            )],
        ),
        (
            "name not a DNS label",
            OK_HEAD.replace("  version", "  name: Nice Name\n  version"),
            vec![want(Some("hello"), Some("name"), 2, 9, &["not a DNS label"])],
        ),
        (
            "bad duration",
            head_plus("  scaling:\n    idle_timeout: 10 parsecs\n"),
            vec![want(
                Some("hello"),
                Some("scaling.idle_timeout"),
                8,
                19,
                &["invalid duration `10 parsecs`"],
            )],
        ),
        (
            "zero duration",
            head_plus("  limits:\n    timeout: 0s\n"),
            vec![want(Some("hello"), Some("limits.timeout"), 8, 14, &["greater than zero"])],
        ),
        (
            "bad size",
            head_plus("  limits:\n    memory: 12XB\n"),
            vec![want(Some("hello"), Some("limits.memory"), 8, 13, &["invalid size `12XB`"])],
        ),
        (
            "memory below minimum",
            head_plus("  limits:\n    memory: 8Mi\n"),
            vec![want(Some("hello"), Some("limits.memory"), 8, 13, &["8Mi", "minimum of 16Mi"])],
        ),
        (
            "cpus out of range",
            head_plus("  limits:\n    cpus: 100\n"),
            vec![want(Some("hello"), Some("limits.cpus"), 8, 11, &["at most 64"])],
        ),
        (
            "min replicas above max",
            head_plus("  scaling:\n    min_replicas: 5\n    max_replicas: 2\n"),
            vec![want(
                Some("hello"),
                Some("scaling.min_replicas"),
                8,
                19,
                &["min_replicas (5) must not exceed max_replicas (2)"],
            )],
        ),
        (
            "min replicas above default max",
            head_plus("  scaling:\n    min_replicas: 11\n"),
            vec![want(
                Some("hello"),
                Some("scaling.min_replicas"),
                8,
                19,
                &["max_replicas (10, the default)"],
            )],
        ),
        (
            "warm pool above max",
            head_plus("  scaling:\n    max_replicas: 2\n    warm_pool: 3\n"),
            vec![want(Some("hello"), Some("scaling.warm_pool"), 9, 16, &["warm_pool (3)"])],
        ),
        (
            "negative number",
            head_plus("  scaling:\n    max_replicas: -1\n"),
            vec![want(
                Some("hello"),
                Some("scaling.max_replicas"),
                8,
                19,
                &["must not be negative"],
            )],
        ),
        (
            "not a number",
            head_plus("  scaling:\n    queue_size: lots\n"),
            vec![want(
                Some("hello"),
                Some("scaling.queue_size"),
                8,
                17,
                &["expected a whole number", "`lots`"],
            )],
        ),
        (
            "zero max_concurrency",
            head_plus("  scaling:\n    max_concurrency: 0\n"),
            vec![want(
                Some("hello"),
                Some("scaling.max_concurrency"),
                8,
                22,
                &["at least 1"],
            )],
        ),
        (
            "target utilization out of range",
            head_plus("  scaling:\n    target_utilization: 1.5\n"),
            vec![want(
                Some("hello"),
                Some("scaling.target_utilization"),
                8,
                25,
                &["at most 1"],
            )],
        ),
        (
            "target concurrency above max concurrency",
            head_plus("  scaling:\n    max_concurrency: 2\n    target_concurrency: 3\n"),
            vec![want(
                Some("hello"),
                Some("scaling.target_concurrency"),
                9,
                25,
                &["must not exceed max_concurrency (2)"],
            )],
        ),
        (
            "section of the wrong type",
            head_plus("  scaling: [1, 2]\n"),
            vec![want(Some("hello"), Some("scaling"), 7, 12, &["expected a map", "a list"])],
        ),
        (
            "extra_dependencies on rust",
            "svc:\n  version: 1\n  configuration:\n    programming_language: rust\n    base_function_file_name: src/main.rs\n    function_folder: rustfn\n    extra_dependencies: serde\n".into(),
            vec![want(
                Some("svc"),
                Some("configuration.extra_dependencies"),
                7,
                25,
                &["only supported for python", "Cargo.toml"],
            )],
        ),
        (
            "unsafe pip requirement",
            head_plus("").replace(
                "    function_folder: hello\n",
                "    function_folder: hello\n    extra_dependencies: \"requests; rm -rf /\"\n",
            ),
            vec![
                want(
                    Some("hello"),
                    Some("configuration.extra_dependencies"),
                    7,
                    25,
                    &["`requests;` is not a requirement of a package from the index"],
                ),
                want(
                    Some("hello"),
                    Some("configuration.extra_dependencies"),
                    7,
                    25,
                    &["`-rf` is not a requirement of a package from the index"],
                ),
                want(
                    Some("hello"),
                    Some("configuration.extra_dependencies"),
                    7,
                    25,
                    &["`/` is not a requirement of a package from the index"],
                ),
            ],
        ),
        (
            "URL and `name @ URL` dependencies",
            head_plus("").replace(
                "    function_folder: hello\n",
                "    function_folder: hello\n    extra_dependencies:\n      - requests==2.32.3\n      - evil @ https://evil.example/evil.tar.gz\n      - https://evil.example/setup.tar.gz\n",
            ),
            vec![
                want(
                    Some("hello"),
                    Some("configuration.extra_dependencies"),
                    9,
                    9,
                    &["`evil @ https://evil.example/evil.tar.gz` refers to a URL", "only packages from the index"],
                ),
                want(
                    Some("hello"),
                    Some("configuration.extra_dependencies"),
                    10,
                    9,
                    &["`https://evil.example/setup.tar.gz` refers to a URL"],
                ),
            ],
        ),
        (
            "mode not allowed for the language",
            head_plus("").replace(
                "    function_folder: hello\n",
                "    function_folder: hello\n    mode: http\n",
            ),
            vec![want(
                Some("hello"),
                Some("configuration.mode"),
                7,
                11,
                &["mode `http` is not allowed for language `python`", "allowed: python"],
            )],
        ),
        (
            "http_port on the runtime's port",
            "svc:\n  version: 1\n  configuration:\n    programming_language: binary\n    base_function_file_name: run.sh\n    function_folder: bin\n    mode: http\n    http_port: 8080\n".into(),
            vec![want(
                Some("svc"),
                Some("configuration.http_port"),
                8,
                16,
                &["8080 is used by the Sluice runtime"],
            )],
        ),
        (
            "http_port outside http mode",
            "svc:\n  version: 1\n  configuration:\n    programming_language: binary\n    base_function_file_name: run.sh\n    function_folder: bin\n    http_port: 9000\n".into(),
            vec![want(
                Some("svc"),
                Some("configuration.http_port"),
                7,
                16,
                &["only used in `http` mode", "`binary`"],
            )],
        ),
        (
            "folder missing",
            OK_HEAD.replace("function_folder: hello", "function_folder: nope"),
            vec![want(
                Some("hello"),
                Some("configuration.function_folder"),
                6,
                22,
                &["folder `nope` does not exist"],
            )],
        ),
        (
            "base file missing",
            OK_HEAD.replace("handler.py", "main.py"),
            vec![want(
                Some("hello"),
                Some("configuration.base_function_file_name"),
                5,
                30,
                &["base file `main.py` does not exist"],
            )],
        ),
        (
            "rust folder without Cargo.toml",
            "svc:\n  version: 1\n  configuration:\n    programming_language: rust\n    base_function_file_name: src/main.rs\n    function_folder: nocargo\n".into(),
            vec![want(
                Some("svc"),
                Some("configuration.function_folder"),
                6,
                22,
                &["Cargo crate", "`Cargo.toml` was not found"],
            )],
        ),
        (
            "`..` in folder",
            OK_HEAD.replace("function_folder: hello", "function_folder: ../hello"),
            vec![want(
                Some("hello"),
                Some("configuration.function_folder"),
                6,
                22,
                &["must not contain `..`"],
            )],
        ),
        (
            "absolute folder",
            OK_HEAD.replace("function_folder: hello", "function_folder: /etc"),
            vec![want(
                Some("hello"),
                Some("configuration.function_folder"),
                6,
                22,
                &["relative path"],
            )],
        ),
        (
            "bad env name",
            head_plus("  env:\n    MY-VAR: 1\n"),
            vec![want(
                Some("hello"),
                Some("env.MY-VAR"),
                8,
                5,
                &["not a valid environment variable name"],
            )],
        ),
        (
            "SLUICE_ env name",
            head_plus("  env:\n    SLUICE_FUNCTION: x\n"),
            vec![want(
                Some("hello"),
                Some("env.SLUICE_FUNCTION"),
                8,
                5,
                &["reserved for the platform"],
            )],
        ),
        (
            "env that changes the loader or the interpreter",
            head_plus("  env:\n    GREETING: hi\n    LD_PRELOAD: /tmp/evil.so\n    PYTHONPATH: /tmp\n"),
            vec![
                want(
                    Some("hello"),
                    Some("env.LD_PRELOAD"),
                    9,
                    5,
                    &["`LD_PRELOAD` is refused", "dynamic loader"],
                ),
                want(
                    Some("hello"),
                    Some("env.PYTHONPATH"),
                    10,
                    5,
                    &["`PYTHONPATH` is refused", "Python interpreter"],
                ),
            ],
        ),
        (
            "env value is a map",
            head_plus("  env:\n    NESTED:\n      a: 1\n"),
            vec![want(Some("hello"), Some("env.NESTED"), 8, 5, &["expected a string, number or boolean"])],
        ),
        (
            "unknown state",
            head_plus("  state: postgres\n"),
            vec![want(Some("hello"), Some("state"), 7, 10, &["unknown state `postgres`", "redis"])],
        ),
        (
            "events_from without state",
            head_plus("  events_from: [hello2]\n"),
            vec![
                want(Some("hello"), Some("events_from"), 7, 3, &["needs `state: redis`"]),
                want(Some("hello"), Some("events_from"), 7, 17, &["not a function of this registry"]),
            ],
        ),
        (
            "events_from names itself, twice, a non-label",
            head_plus("  state: redis\n  events_from: [hello, x, x, Not_A_Label]\n"),
            vec![
                want(Some("hello"), Some("events_from"), 8, 17, &["its own events"]),
                want(Some("hello"), Some("events_from"), 8, 24, &["not a function of this registry"]),
                want(Some("hello"), Some("events_from"), 8, 27, &["listed twice"]),
                want(Some("hello"), Some("events_from"), 8, 30, &["not a function name"]),
            ],
        ),
        (
            "unknown service in uses, and one twice",
            head_plus("  uses: [mdf, mdf, postgres]\n"),
            vec![
                want(Some("hello"), Some("uses"), 7, 15, &["listed twice"]),
                want(Some("hello"), Some("uses"), 7, 20, &["unknown service `postgres`", "mdf"]),
            ],
        ),
        (
            "unknown auth and egress",
            head_plus("  auth: password\n  egress: everywhere\n"),
            vec![
                want(Some("hello"), Some("auth"), 7, 9, &["unknown auth `password`", "public, key"]),
                want(Some("hello"), Some("egress"), 8, 11, &["unknown egress `everywhere`", "none, internet"]),
            ],
        ),
        (
            "secrets: a value instead of a name, a name twice, not a list",
            head_plus("  secrets: [db-password, \"hunter2 is my password\", db-password]\n"),
            vec![
                want(Some("hello"), Some("secrets"), 7, 26, &["not a secret name", "POST /system/secrets"]),
                want(Some("hello"), Some("secrets"), 7, 52, &["`db-password` is listed twice"]),
            ],
        ),
        (
            "secrets: not a list",
            head_plus("  secrets: db-password\n"),
            vec![want(Some("hello"), Some("secrets"), 7, 12, &["expected a list of secret names"])],
        ),
        (
            "events_from a function without state",
            format!("{}  state: redis\n  events_from: [other]\nother:\n  version: 0.1\n  configuration:\n    programing_language: python\n    base_function_file_name: handler.py\n    function_folder: hello\n", OK_HEAD),
            vec![want(Some("hello"), Some("events_from"), 8, 17, &["no event stream"])],
        ),
        (
            "bad version",
            OK_HEAD.replace("version: 0.1", "version: \"1.0 beta\""),
            vec![want(Some("hello"), Some("version"), 2, 12, &["not a valid version"])],
        ),
        (
            "anchors are refused",
            "base: &b {version: 1}\n".into(),
            vec![want(None, None, 1, 10, &["anchors"])],
        ),
        (
            "second document",
            format!("{OK_HEAD}---\nother: {{}}\n"),
            vec![want(None, None, 7, 1, &["only one YAML document"])],
        ),
    ];
    for (case, text, wants) in &cases {
        let got = parse_err(text, Some(dir.path()));
        check_errors(case, &got, wants);
    }
}

#[test]
fn every_mistake_in_every_function_is_reported_in_line_order() {
    let dir = functions_dir();
    let got = parse_err(&read_fixture("many-mistakes.yml"), Some(dir.path()));
    let wants = [
        want(
            Some("alpha"),
            Some("scaling.max_replica"),
            9,
            5,
            &["did you mean `max_replicas`?"],
        ),
        want(Some("Beta"), None, 11, 1, &["not a DNS label"]),
        want(
            Some("Beta"),
            Some("configuration.programing_language"),
            14,
            26,
            &["unsupported language `cobol`"],
        ),
        // The language is wrong, and the folder is still checked.
        want(
            Some("Beta"),
            Some("configuration.function_folder"),
            16,
            22,
            &["folder `beta` does not exist"],
        ),
        want(
            Some("gamma"),
            Some("version"),
            18,
            1,
            &["missing required field `version`"],
        ),
        want(
            Some("gamma"),
            Some("configuration.function_folder"),
            22,
            22,
            &["`..`"],
        ),
        want(
            Some("gamma"),
            Some("limits.memory"),
            24,
            13,
            &["invalid size `12XB`"],
        ),
        want(
            Some("gamma"),
            Some("limits.cpus"),
            25,
            11,
            &["greater than 0"],
        ),
        want(
            Some("delta"),
            Some("env.SLUICE_TOKEN"),
            34,
            5,
            &["reserved"],
        ),
        want(
            Some("delta"),
            Some("env.bad-name"),
            35,
            5,
            &["not a valid environment variable name"],
        ),
    ];
    check_errors("many-mistakes.yml", &got, &wants);
    let lines: Vec<usize> = got.iter().map(|e| e.line).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

#[test]
fn error_display_format() {
    let text = format!(
        "{OK_HEAD}{}",
        "  limits:\n    memory: 1Gi\n  env:\n    A: b\n    C: d\n  # comment\n  scaling:\n    max_replica: 3\n"
    );
    let errors = registry::parse(&text, Some(FILE), None).expect_err("unknown field");
    assert_eq!(
        errors.to_string(),
        "global-function-definition.yml:14:5: function `hello`: field `scaling.max_replica`: unknown field, did you mean `max_replicas`?"
    );

    // Without a file name, and without a position (JSON entries).
    let e = RegistryError {
        file: None,
        line: 0,
        column: 0,
        function: Some("f".into()),
        field: None,
        message: "boom".into(),
    };
    assert_eq!(e.to_string(), "function `f`: boom");

    // Several errors: one per line.
    let two = registry::parse("a: 1\nb: 2\n", None, None).expect_err("two bad entries");
    let rendered = two.to_string();
    assert_eq!(rendered.lines().count(), 2, "{rendered}");
    assert!(rendered.starts_with("1:4: function `a`: "), "{rendered}");
}

#[test]
fn seed_entries_parse_unchanged_with_defaults() {
    let dir = functions_dir();
    let reg = registry::parse(&read_fixture("seed.yml"), Some(FILE), Some(dir.path()))
        .unwrap_or_else(|e| panic!("seed must parse:\n{e}"));
    assert_eq!(reg.len(), 2);
    let hello = reg.get("hello").expect("hello");
    assert_eq!(
        hello,
        &FunctionSpec {
            name: "hello".into(),
            display_name: Some("hello".into()),
            version: "0.1".into(),
            language: Language::Python,
            mode: RuntimeMode::Python,
            http_port: 8081,
            base_function_file_name: "handler.py".into(),
            function_folder: "hello".into(),
            extra_dependencies: vec![],
            scaling: Scaling::default(),
            limits: Limits::default(),
            env: Default::default(),
            state: Default::default(),
            events_from: vec![],
            uses: vec![],
            auth: Default::default(),
            egress: Default::default(),
            secrets: vec![],
        }
    );
    let example = reg.get("example-faas").expect("key wins as the name");
    assert_eq!(example.name, "example-faas");
    assert_eq!(example.display_name.as_deref(), Some("example-faas-name"));
    assert_eq!(example.version, "0.1");
    assert_eq!(example.language, Language::Python);
    assert_eq!(example.base_function_file_name, "example.py");
    assert_eq!(example.function_folder, "example");
    assert!(example.extra_dependencies.is_empty());
    assert_eq!(
        example.folder_path(dir.path()),
        dir.path().join("example"),
        "folder path is under the functions dir"
    );
    assert!(example.folder_path(Path::new("relative")).is_absolute());

    // The documented defaults.
    let s = &example.scaling;
    assert_eq!(
        (s.min_replicas, s.max_replicas, s.max_concurrency),
        (0, 10, 4)
    );
    assert_eq!((s.target_concurrency, s.target_utilization), (4.0, 0.7));
    assert_eq!(s.idle_timeout, Duration::from_secs(10));
    assert_eq!(s.stable_window, Duration::from_secs(30));
    assert_eq!(s.cold_start_timeout, Duration::from_secs(30));
    assert_eq!(
        (s.queue_size, s.queue_timeout),
        (100, Duration::from_secs(30))
    );
    assert_eq!(s.warm_pool, 0);
    let l = &example.limits;
    assert_eq!(l.timeout, Duration::from_secs(30));
    assert_eq!(l.memory_bytes, 128 * 1024 * 1024);
    assert_eq!(l.cpus, 1.0);
    assert_eq!(l.max_body_bytes, 6 * 1024 * 1024);
    assert_eq!(l.pids, 128);

    // load() reads the file and gives the same result; without a functions dir too.
    let loaded = registry::load(&fixture("seed.yml"), Some(dir.path())).expect("load");
    assert_eq!(loaded, reg);
    assert_eq!(
        registry::parse(&read_fixture("seed.yml"), None, None).expect("no fs checks"),
        reg
    );
    // The filesystem checks are real: the seed's folders must exist when a dir is given.
    let empty = tempfile::tempdir().expect("temp dir");
    let errors = registry::load(&fixture("seed.yml"), Some(empty.path())).expect_err("no folders");
    assert_eq!(errors.len(), 2, "{errors}");
    assert!(errors.0[0]
        .file
        .as_deref()
        .is_some_and(|f| f.ends_with("seed.yml")));
}

#[test]
fn both_language_spellings_and_every_language_parse() {
    let dir = functions_dir();
    let text = "a:\n  version: 1\n  configuration:\n    programming_language: python\n    base_function_file_name: handler.py\n    function_folder: hello\n\
b:\n  version: 1\n  configuration:\n    programing_language: Python\n    base_function_file_name: handler.py\n    function_folder: hello\n\
c:\n  version: 1\n  configuration:\n    programming_language: rust\n    base_function_file_name: src/main.rs\n    function_folder: rustfn\n\
d:\n  version: 1\n  configuration:\n    programming_language: binary\n    base_function_file_name: run.sh\n    function_folder: bin\n    mode: http\n";
    let reg = registry::parse(text, Some(FILE), Some(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    let get = |n: &str| reg.get(n).expect("present");
    assert_eq!(
        (get("a").language, get("a").mode),
        (Language::Python, RuntimeMode::Python)
    );
    assert_eq!(
        (get("b").language, get("b").mode),
        (Language::Python, RuntimeMode::Python)
    );
    assert_eq!(
        (get("c").language, get("c").mode),
        (Language::Rust, RuntimeMode::Binary)
    );
    assert_eq!(
        (get("d").language, get("d").mode),
        (Language::Binary, RuntimeMode::Http)
    );
    assert_eq!(get("d").http_port, 8081);
}

fn full_resize() -> FunctionSpec {
    FunctionSpec {
        name: "resize".into(),
        display_name: Some("resize".into()),
        version: "1.2.3".into(),
        language: Language::Python,
        mode: RuntimeMode::Python,
        http_port: 8081,
        base_function_file_name: "handler.py".into(),
        function_folder: "hello".into(),
        extra_dependencies: vec![
            "requests==2.31.0".into(),
            "pillow".into(),
            "numpy>=1.26".into(),
        ],
        scaling: Scaling {
            min_replicas: 1,
            max_replicas: 20,
            max_concurrency: 8,
            target_concurrency: 6.5,
            target_utilization: 0.85,
            idle_timeout: Duration::from_secs(120),
            stable_window: Duration::from_secs(45),
            cold_start_timeout: Duration::from_millis(1500),
            queue_size: 250,
            queue_timeout: Duration::from_secs(90),
            warm_pool: 2,
        },
        limits: Limits {
            timeout: Duration::from_millis(500),
            memory_bytes: 1 << 30,
            cpus: 2.5,
            max_body_bytes: 10_000_000,
            pids: 256,
        },
        env: [
            ("GREETING", "hello world"),
            ("RETRIES", "3"),
            ("VERBOSE", "true"),
            ("RATIO", "0.25"),
            ("_EMPTY", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        state: Default::default(),
        events_from: vec![],
        uses: vec![],
        auth: Default::default(),
        egress: Default::default(),
        secrets: vec![],
    }
}

#[test]
fn full_entry_parses_every_optional_field() {
    let dir = functions_dir();
    let reg = registry::parse(&read_fixture("full.yml"), Some(FILE), Some(dir.path()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reg.get("resize"), Some(&full_resize()));

    let server = reg.get("server").expect("server");
    assert_eq!(server.version, "2");
    assert_eq!(server.display_name, None);
    assert_eq!(
        (server.language, server.mode, server.http_port),
        (Language::Rust, RuntimeMode::Http, 9000)
    );
    assert_eq!(
        server.limits.memory_bytes,
        256 << 20,
        "docker-style `256m` is binary"
    );
    assert_eq!(server.scaling, Scaling::default());
}

#[test]
fn spec_round_trips_through_json_with_millisecond_durations() {
    let spec = full_resize();
    let json = serde_json::to_value(&spec).expect("serialize");
    assert_eq!(json["scaling"]["idle_timeout_ms"], 120_000);
    assert_eq!(json["scaling"]["cold_start_timeout_ms"], 1500);
    assert_eq!(json["limits"]["timeout_ms"], 500);
    assert_eq!(json["language"], "python");
    assert_eq!(json["mode"], "python");
    let text = serde_json::to_string(&spec).expect("serialize");
    let back: FunctionSpec = serde_json::from_str(&text).expect("deserialize");
    assert_eq!(back, spec);
    let reg = Registry {
        functions: [(spec.name.clone(), spec)].into_iter().collect(),
    };
    let back: Registry = serde_json::from_str(&serde_json::to_string(&reg).expect("serialize"))
        .expect("deserialize");
    assert_eq!(back, reg);
}

#[test]
fn json_entry_gives_the_same_spec_as_yaml() {
    let dir = functions_dir();
    let body = serde_json::json!({
        "name": "resize",
        "version": "1.2.3",
        "configuration": {
            "programming_language": "python",
            "base_function_file_name": "handler.py",
            "function_folder": "hello",
            "extra_dependencies": ["requests==2.31.0", "pillow", "numpy>=1.26"],
            "mode": "python"
        },
        "scaling": {
            "min_replicas": 1, "max_replicas": 20, "max_concurrency": 8,
            "target_concurrency": 6.5, "target_utilization": 0.85,
            "idle_timeout": "2m", "stable_window": 45, "cold_start_timeout": "1500ms",
            "queue_size": 250, "queue_timeout": "1m30s", "warm_pool": 2
        },
        "limits": { "timeout": 0.5, "memory": "1Gi", "cpus": 2.5, "max_body": "10M", "pids": 256 },
        "env": { "GREETING": "hello world", "RETRIES": 3, "VERBOSE": true, "RATIO": 0.25, "_EMPTY": null }
    });
    let spec = registry::parse_entry_json("resize", &body, Some(dir.path()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec, full_resize());

    // The seed entry as JSON equals the seed entry from YAML.
    let seed = registry::parse(&read_fixture("seed.yml"), None, None).expect("seed");
    let hello = serde_json::json!({
        "name": "hello", "version": 0.1,
        "configuration": {
            "programing_language": "python", "base_function_file_name": "handler.py",
            "function_folder": "hello", "extra_dependencies": ""
        }
    });
    assert_eq!(
        registry::parse_entry_json("hello", &hello, None).expect("json seed"),
        seed.get("hello").cloned().expect("hello")
    );
}

#[test]
fn json_entry_errors_use_the_same_rules_without_positions() {
    let dir = functions_dir();
    let body = serde_json::json!({
        "version": 1,
        "configuration": {
            "programming_language": "python",
            "base_function_file_name": "handler.py",
            "function_folder": "../escape"
        },
        "scaling": { "max_replica": 3, "min_replicas": -2 },
        "env": { "SLUICE_X": "1" }
    });
    let errors = registry::parse_entry_json("system", &body, Some(dir.path())).expect_err("bad");
    let rendered = errors.to_string();
    let fields: Vec<Option<&str>> = errors.iter().map(|e| e.field.as_deref()).collect();
    assert_eq!(
        fields,
        vec![
            None,
            Some("configuration.function_folder"),
            Some("scaling.max_replica"),
            Some("scaling.min_replicas"),
            Some("env.SLUICE_X"),
        ],
        "{rendered}"
    );
    assert!(errors
        .iter()
        .all(|e| e.line == 0 && e.file.is_none() && e.function.as_deref() == Some("system")));
    assert!(
        rendered.contains("function `system`: function name `system` is reserved"),
        "{rendered}"
    );
    assert!(
        rendered.contains("did you mean `max_replicas`?"),
        "{rendered}"
    );
    assert!(rendered.contains("must not be negative"), "{rendered}");

    let not_object =
        registry::parse_entry_json("ok", &serde_json::json!([1]), None).expect_err("list");
    assert!(
        not_object.to_string().contains("must be a map"),
        "{not_object}"
    );
}

#[test]
fn spec_hash_tracks_container_affecting_fields_only() {
    let base = full_resize();
    let h = base.spec_hash();
    assert_eq!(h.len(), 64);
    assert_eq!(h, full_resize().spec_hash(), "stable for equal specs");

    let changed: Vec<(&str, FunctionSpec)> = vec![
        (
            "version",
            FunctionSpec {
                version: "1.2.4".into(),
                ..full_resize()
            },
        ),
        ("memory", {
            let mut s = full_resize();
            s.limits.memory_bytes += 1;
            s
        }),
        ("cpus", {
            let mut s = full_resize();
            s.limits.cpus = 3.0;
            s
        }),
        ("state", {
            let mut s = full_resize();
            s.state = sluice_common::registry::State::Redis;
            s
        }),
        ("env", {
            let mut s = full_resize();
            s.env.insert("NEW".into(), "1".into());
            s
        }),
        ("deps", {
            let mut s = full_resize();
            s.extra_dependencies.pop();
            s
        }),
        ("max_concurrency", {
            let mut s = full_resize();
            s.scaling.max_concurrency = 9;
            s
        }),
        (
            "base file",
            FunctionSpec {
                base_function_file_name: "other.py".into(),
                ..full_resize()
            },
        ),
    ];
    for (what, spec) in &changed {
        assert_ne!(spec.spec_hash(), h, "changing {what} must change the hash");
    }

    let mut autoscaler_only = full_resize();
    autoscaler_only.scaling.max_replicas = 50;
    autoscaler_only.scaling.min_replicas = 0;
    autoscaler_only.scaling.idle_timeout = Duration::from_secs(1);
    autoscaler_only.scaling.queue_size = 1;
    autoscaler_only.scaling.warm_pool = 0;
    assert_eq!(
        autoscaler_only.spec_hash(),
        h,
        "autoscaler-only fields do not touch containers"
    );
}

#[test]
fn folder_content_hash_follows_the_files() {
    let dir = functions_dir();
    let folder = dir.path().join("hello");
    let h1 = folder_content_hash(&folder).expect("hash");
    assert_eq!(h1.len(), 64);
    assert_eq!(folder_content_hash(&folder).expect("hash"), h1, "stable");

    // Ignored: dotfiles, .git/, __pycache__/, target/.
    fs::write(folder.join(".env"), "X=1").expect("write");
    for ignored in [".git", "__pycache__", "target"] {
        fs::create_dir_all(folder.join(ignored)).expect("mkdir");
        fs::write(folder.join(ignored).join("junk"), "junk").expect("write");
    }
    assert_eq!(
        folder_content_hash(&folder).expect("hash"),
        h1,
        "ignored files"
    );

    // A content change, a new file, a rename each change the hash.
    fs::write(
        folder.join("handler.py"),
        "def handle(req):\n    return 'changed'\n",
    )
    .expect("write");
    let h2 = folder_content_hash(&folder).expect("hash");
    assert_ne!(h2, h1);
    fs::create_dir_all(folder.join("lib")).expect("mkdir");
    fs::write(folder.join("lib/util.py"), "X = 1\n").expect("write");
    let h3 = folder_content_hash(&folder).expect("hash");
    assert_ne!(h3, h2);
    fs::rename(folder.join("lib/util.py"), folder.join("lib/util2.py")).expect("rename");
    assert_ne!(folder_content_hash(&folder).expect("hash"), h3);

    // The same content elsewhere hashes the same (location independent).
    let copy = tempfile::tempdir().expect("temp dir");
    fs::write(
        copy.path().join("handler.py"),
        "def handle(req):\n    return 'changed'\n",
    )
    .expect("write");
    fs::create_dir_all(copy.path().join("lib")).expect("mkdir");
    fs::write(copy.path().join("lib/util2.py"), "X = 1\n").expect("write");
    assert_eq!(
        folder_content_hash(copy.path()).expect("hash"),
        folder_content_hash(&folder).expect("hash")
    );

    assert!(folder_content_hash(&dir.path().join("missing")).is_err());
}

#[cfg(unix)]
#[test]
fn folder_content_hash_sees_the_executable_bit() {
    use std::os::unix::fs::PermissionsExt;
    let dir = functions_dir();
    let folder = dir.path().join("bin");
    let before = folder_content_hash(&folder).expect("hash");
    fs::set_permissions(folder.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_ne!(folder_content_hash(&folder).expect("hash"), before);
}

#[test]
fn empty_file_is_an_empty_registry() {
    assert!(registry::parse("", Some(FILE), None)
        .expect("empty")
        .is_empty());
    assert!(registry::parse("# only comments\n", Some(FILE), None)
        .expect("comments")
        .is_empty());
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let errors = registry::load(Path::new("/nonexistent/registry.yml"), None).expect_err("missing");
    assert_eq!(errors.len(), 1);
    assert!(
        errors
            .to_string()
            .starts_with("/nonexistent/registry.yml: cannot read"),
        "{errors}"
    );
}

#[test]
fn a_registry_above_the_platform_ceilings_is_refused_at_the_field() {
    let ceilings = registry::Ceilings {
        max_replicas: 40,
        max_replicas_total: 50,
        max_memory_bytes: 4 << 30,
    };
    let entry = |name: &str, scaling: &str, limits: &str| {
        format!(
            "{name}:\n  version: 1\n  configuration:\n    programing_language: python\n    base_function_file_name: handler.py\n    function_folder: hello\n{scaling}{limits}"
        )
    };
    let text = [
        // lines 1–8: within every ceiling
        entry("a", "  scaling:\n    max_replicas: 30\n", ""),
        // lines 9–18: memory above the ceiling; the sum goes over 50 here
        entry(
            "b",
            "  scaling:\n    max_replicas: 30\n",
            "  limits:\n    memory: 8Gi\n",
        ),
        // lines 19–26: one function above the per-function ceiling
        entry("c", "  scaling:\n    max_replicas: 60\n", ""),
    ]
    .concat();
    let errors = match registry::parse_with(&text, Some(FILE), None, &ceilings) {
        Ok(r) => panic!("expected errors, parsed {r:?}"),
        Err(e) => e.0,
    };
    check_errors(
        "ceilings",
        &errors,
        &[
            want(
                Some("b"),
                Some("scaling.max_replicas"),
                16,
                19,
                &[
                    "add up to 60",
                    "ceiling of 50 replicas in total",
                    "SLUICE_MAX_REPLICAS_TOTAL",
                ],
            ),
            want(
                Some("b"),
                Some("limits.memory"),
                18,
                13,
                &[
                    "memory 8Gi",
                    "ceiling of 4Gi per function",
                    "SLUICE_MAX_MEMORY",
                ],
            ),
            want(
                Some("c"),
                Some("scaling.max_replicas"),
                26,
                19,
                &["max_replicas 60", "ceiling of 40 replicas per function"],
            ),
        ],
    );
    // The defaults let the shipped registry through, and the same text with roomier ceilings.
    registry::parse(&read_fixture("seed.yml"), Some(FILE), None).expect("defaults");
    let roomy = registry::Ceilings {
        max_replicas: 100,
        max_replicas_total: 1000,
        max_memory_bytes: 16 << 30,
    };
    registry::parse_with(&text, Some(FILE), None, &roomy).expect("roomy ceilings");
    // A function deployed alone is held to the same ceilings, its total with the others'.
    let spec = registry::parse_with(&text, Some(FILE), None, &roomy)
        .expect("parsed")
        .get("a")
        .cloned()
        .expect("a");
    assert!(ceilings.check_spec("a", &spec, 0).is_ok());
    let over = ceilings
        .check_spec("a", &spec, 21)
        .expect_err("51 in total");
    assert!(over[0].message.contains("add up to 51"), "{}", over[0]);
}

#[test]
fn secrets_are_listed_by_name_and_a_value_written_by_mistake_is_not_echoed() {
    let dir = functions_dir();
    let text = format!("{OK_HEAD}  secrets: [db-password, api.key]\n");
    let reg = registry::parse(&text, Some(FILE), Some(dir.path())).expect("valid");
    let spec = reg.get("hello").expect("hello");
    assert_eq!(spec.secrets, vec!["db-password", "api.key"]);
    let mut without = spec.clone();
    without.secrets.clear();
    assert_ne!(
        spec.spec_hash(),
        without.spec_hash(),
        "listing a secret replaces the containers (they get a new file)"
    );

    let leaked = format!("{OK_HEAD}  secrets: [\"s3cr3t-VALUE!\"]\n");
    let errs = parse_err(&leaked, Some(dir.path()));
    assert_eq!(errs.len(), 1);
    let shown = errs[0].to_string();
    assert!(shown.contains("not a secret name"), "{shown}");
    assert!(
        !shown.contains("s3cr3t"),
        "the value must not be echoed: {shown}"
    );
}
