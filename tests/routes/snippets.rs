//! Fenced code blocks from the Markdown docs, so the tests can check every configuration
//! snippet the docs show.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::processes;
use crate::stack::{self, work_dir};

/// The environment variable from which the documented configurations read the Model Studio key.
pub const DOCUMENTED_API_KEY_VARIABLE: &str = "DASHSCOPE_API_KEY";
/// The value the tests give that variable: a literal test value, never a real key.
pub const DOCUMENTED_API_KEY: &str = "sk-test-123";
const PYTHON_TIMEOUT_SECONDS: u64 = 60;

/// The HTML comment that marks the next ```json block as a configuration the filter rejects.
pub const INVALID_MARKER: &str = "<!-- invalid config -->";

/// One fenced block: its file, first line number (1-based), language and text.
#[derive(Debug)]
pub struct Snippet {
    pub file: PathBuf,
    pub line: usize,
    pub language: String,
    pub text: String,
    /// Whether the last non-empty line before the fence is `INVALID_MARKER`.
    pub marked_invalid: bool,
}

impl Snippet {
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// Returns the fenced blocks of `markdown` in order. A fence is a line starting with three
/// backticks; the language is the word after them.
pub fn fenced_blocks(file: &Path, markdown: &str) -> Vec<Snippet> {
    let mut snippets = Vec::new();
    let mut open: Option<Snippet> = None;
    let mut last_text_line = "";
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        match (&mut open, trimmed.strip_prefix("```")) {
            (None, Some(language)) => {
                open = Some(Snippet {
                    file: file.to_path_buf(),
                    line: index + 1,
                    language: language.trim().to_ascii_lowercase(),
                    text: String::new(),
                    marked_invalid: last_text_line.trim() == INVALID_MARKER,
                });
            }
            (Some(_), Some(_)) => snippets.extend(open.take()),
            (Some(snippet), None) => {
                snippet.text.push_str(line);
                snippet.text.push('\n');
            }
            (None, None) => {}
        }
        if !line.trim().is_empty() {
            last_text_line = line;
        }
    }
    assert!(open.is_none(), "{}: a fenced block is never closed", file.display());
    snippets
}

/// Returns the Markdown files whose snippets the tests check: docs/*.md and both READMEs.
pub fn documentation_files(repo_root: &Path) -> Vec<PathBuf> {
    let docs = repo_root.join("docs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&docs)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", docs.display()))
        .map(|entry| entry.unwrap_or_else(|error| panic!("cannot read {}: {error}", docs.display())).path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "md"))
        .collect();
    files.sort();
    files.push(repo_root.join("README.md"));
    files.push(repo_root.join("README.zh-CN.md"));
    files
}

/// Returns every fenced block of every documentation file.
pub fn all_snippets(repo_root: &Path) -> Vec<Snippet> {
    documentation_files(repo_root)
        .iter()
        .flat_map(|path| {
            let markdown = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
            fenced_blocks(path, &markdown)
        })
        .collect()
}

/// Looks up `${NAME}` references in documented configurations: only the Model Studio key is set.
pub fn documented_env(name: &str) -> Option<String> {
    (name == DOCUMENTED_API_KEY_VARIABLE).then(|| DOCUMENTED_API_KEY.to_owned())
}

/// Loads every snippet in `snippets` with PyYAML and returns each snippet's documents as JSON.
/// `name` prefixes the temporary files in the work folder.
pub fn load_yaml_snippets(name: &str, snippets: &[&Snippet]) -> Vec<Vec<Value>> {
    let script = "import json, sys, yaml\n\
                  for path in sys.argv[1:]:\n\
                  \x20   with open(path) as file:\n\
                  \x20       print('YAML-DOCUMENTS ' + json.dumps(list(yaml.safe_load_all(file))))\n";
    // PyYAML lives in the project's .venv (`make deps-envoy` installs it there).
    let mut command = Command::new(stack::repo_root().join(".venv/bin/python"));
    command.arg("-c").arg(script);
    for (index, snippet) in snippets.iter().enumerate() {
        let path = work_dir().join(format!("{name}_snippet_{index}.yaml"));
        std::fs::write(&path, &snippet.text).unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        command.arg(path);
    }
    let result = processes::run_to_completion(
        "python3 yaml",
        command,
        &work_dir().join(format!("{name}_yaml_snippets.log")),
        Duration::from_secs(PYTHON_TIMEOUT_SECONDS),
    );
    let (status, output) = result.unwrap_or_else(|error| panic!("{error}"));
    assert!(
        status.success(),
        "PyYAML could not load the YAML snippets (run `make deps-envoy`, which installs it into .venv):\n{output}"
    );
    let documents: Vec<Vec<Value>> = output
        .lines()
        .filter_map(|line| line.strip_prefix("YAML-DOCUMENTS "))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("python printed invalid JSON ({error}): {line}")))
        .collect();
    assert_eq!(documents.len(), snippets.len(), "python printed a result per snippet:\n{output}");
    documents
}

/// Returns the plugin configuration that a `WasmPlugin` resource hands the filter: Istio's
/// `spec.pluginConfig` for `extensions.istio.io`, otherwise Higress's merged `defaultConfig`
/// and `matchRules`.
pub fn wasm_plugin_config(document: &Value) -> Value {
    let spec = &document["spec"];
    let is_istio = document["apiVersion"].as_str().is_some_and(|version| version.starts_with("extensions.istio.io/"));
    if is_istio {
        spec.get("pluginConfig").cloned().unwrap_or_else(|| json!({}))
    } else {
        higress_plugin_json(spec)
    }
}

/// Merges a Higress WasmPlugin's `defaultConfig` and `matchRules` into the one JSON object the
/// plugin receives, as this filter expects Higress to: `ingress` becomes `_match_route_`,
/// `domain` `_match_domain_` and `service` `_match_service_`.
pub fn higress_plugin_json(spec: &Value) -> Value {
    let mut merged = spec.get("defaultConfig").cloned().unwrap_or_else(|| json!({}));
    let mut rules = Vec::new();
    for rule in spec.get("matchRules").and_then(Value::as_array).into_iter().flatten() {
        let mut entry = rule.get("config").cloned().unwrap_or_else(|| json!({}));
        for (field, member) in [("ingress", "_match_route_"), ("domain", "_match_domain_"), ("service", "_match_service_")] {
            if let Some(values) = rule.get(field) {
                entry[member] = values.clone();
            }
        }
        rules.push(entry);
    }
    if !rules.is_empty() {
        merged["_rules_"] = Value::Array(rules);
    }
    merged
}
