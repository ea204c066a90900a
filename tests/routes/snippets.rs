//! Fenced code blocks from the Markdown docs, so the tests can check every configuration
//! snippet the docs show.

use std::path::{Path, PathBuf};

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
