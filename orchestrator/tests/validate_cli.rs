//! `orchestrator validate` (what `make validate` runs) refuses what a function definition may
//! not do, naming the file, line, function and field, and exits 1; the platform's ceilings
//! come from the same settings as the orchestrator's.

use std::process::Command;

fn validate(registry: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("functions/hello")).expect("folder");
    std::fs::write(
        dir.path().join("functions/hello/handler.py"),
        "def handle(e, c):\n    return 'hi'\n",
    )
    .expect("handler");
    let file = dir.path().join("registry.yml");
    std::fs::write(&file, registry).expect("registry");
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("validate")
        .arg(&file)
        .arg("--functions-dir")
        .arg(dir.path().join("functions"))
        .envs(env.iter().copied())
        .output()
        .expect("run orchestrator validate");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

const HEAD: &str = "hello:
  version: 1
  configuration:
    programing_language: python
    base_function_file_name: handler.py
    function_folder: hello
";

#[test]
fn a_url_dependency_and_a_loader_variable_are_refused_by_line() {
    let registry = HEAD.replace(
        "    function_folder: hello\n",
        "    function_folder: hello\n    extra_dependencies: \"evil @ https://evil.example/e.tar.gz\"\n",
    ) + "  env:\n    LD_PRELOAD: /tmp/evil.so\n";
    let (ok, text) = validate(&registry, &[]);
    assert!(!ok, "refused: {text}");
    assert!(
        text.contains(":7:")
            && text.contains("configuration.extra_dependencies")
            && text.contains("refers to a URL"),
        "{text}"
    );
    assert!(
        text.contains(":9:") && text.contains("env.LD_PRELOAD") && text.contains("dynamic loader"),
        "{text}"
    );
    let (ok, text) = validate(HEAD, &[]);
    assert!(ok, "the same function without them passes: {text}");
}

#[test]
fn a_registry_above_the_configured_ceilings_is_refused() {
    let registry =
        HEAD.to_string() + "  scaling:\n    max_replicas: 8\n  limits:\n    memory: 1Gi\n";
    let (ok, text) = validate(&registry, &[]);
    assert!(ok, "within the default ceilings: {text}");
    let (ok, text) = validate(
        &registry,
        &[("SLUICE_MAX_REPLICAS", "4"), ("SLUICE_MAX_MEMORY", "512Mi")],
    );
    assert!(!ok, "refused: {text}");
    assert!(
        text.contains(":8:") && text.contains("ceiling of 4 replicas per function"),
        "{text}"
    );
    assert!(
        text.contains(":10:") && text.contains("ceiling of 512Mi per function"),
        "{text}"
    );
}
