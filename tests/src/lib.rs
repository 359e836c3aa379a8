//! Shared helpers for Fusebox's repository checks ("tidy" tests).
//!
//! The integration tests under `tests/tests/` use these to walk the
//! workspace's Rust sources and scan them for forbidden tokens. Everything
//! here is `std` only and deliberately simple: a check must be easy to trust.
//!
//! Path helpers panic with a descriptive message on I/O errors, because they
//! only ever run inside tests, where a panic is the failure report.

use std::fs;
use std::path::{Path, PathBuf};

/// Name of the marker file Cargo (and other tools) put into build-output
/// directories; directories holding it are never scanned.
const CACHEDIR_TAG: &str = "CACHEDIR.TAG";

/// Directory names that are never scanned, wherever they appear.
const SKIPPED_DIR_NAMES: &[&str] = &[".git", ".tools"];

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| panic!("{} has no parent directory", manifest_dir.display()), Path::to_path_buf)
}

/// Every `.rs` file under `dir`, recursively, sorted by path.
///
/// Returns an empty list if `dir` does not exist. Symlinked directories are
/// not followed, and build-output directories (those holding a
/// `CACHEDIR.TAG`, such as Cargo target directories) as well as `.git` and
/// `.tools` are skipped.
pub fn rust_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if dir.is_dir() {
        walk(dir, &mut files);
    }
    files.sort();
    files
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    if dir.join(CACHEDIR_TAG).exists() {
        return;
    }
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read directory {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        let path = entry.path();
        let file_type = entry.file_type().unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
        if file_type.is_dir() {
            let name = entry.file_name();
            if !SKIPPED_DIR_NAMES.iter().any(|skipped| name == *skipped) {
                walk(&path, files);
            }
        } else if path.extension().is_some_and(|ext| ext == "rs") && path.is_file() {
            files.push(path);
        }
    }
}

/// Every `.rs` file in the workspace, sorted, excluding the top-level
/// `target/` and `.tools/` directories (and anything [`rust_files_under`]
/// skips).
pub fn workspace_rust_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let target = root.join("target");
    rust_files_under(&root).into_iter().filter(|path| !path.starts_with(&target)).collect()
}

/// `path` relative to the workspace root, with `/` separators, for messages.
pub fn display_path(path: &Path) -> String {
    let root = workspace_root();
    let relative = path.strip_prefix(&root).unwrap_or(path);
    relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// The contents of `path` as UTF-8 text.
pub fn read_source(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Whether `line` is a line comment (`//`, `///` or `//!`), ignoring leading
/// whitespace. Lines with code before a trailing comment are *not* comments.
pub fn is_comment_line(line: &str) -> bool {
    line.trim_start().starts_with("//")
}

/// One occurrence of a forbidden token in a source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based line number.
    pub line: usize,
    /// The token that matched.
    pub token: String,
}

/// Whether `c` can be part of a Rust identifier (ASCII approximation).
fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `token` occurs in `line` as a match that is not the tail of a
/// longer identifier: a token starting with an identifier character must not
/// be preceded by one (so `rand::` does not match inside `operand::`, nor
/// `ractor` inside `extractor`).
pub fn line_contains_token(line: &str, token: &str) -> bool {
    let needs_boundary = token.chars().next().is_some_and(is_ident_char);
    line.match_indices(token)
        .any(|(start, _)| !needs_boundary || !line[..start].chars().next_back().is_some_and(is_ident_char))
}

/// Every line of `source` that contains one of `tokens` (see
/// [`line_contains_token`]), one [`Finding`] per line and token. With
/// `skip_comment_lines`, lines for which [`is_comment_line`] holds are ignored.
pub fn find_tokens(source: &str, tokens: &[&str], skip_comment_lines: bool) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (index, line) in source.lines().enumerate() {
        if skip_comment_lines && is_comment_line(line) {
            continue;
        }
        for token in tokens {
            if line_contains_token(line, token) {
                findings.push(Finding { line: index + 1, token: (*token).to_owned() });
            }
        }
    }
    findings
}

/// Whether the first non-blank line of `source` is an inner doc comment
/// (`//!`), i.e. the module starts with its own documentation.
pub fn starts_with_module_doc(source: &str) -> bool {
    source.lines().find(|line| !line.trim().is_empty()).is_some_and(|line| line.trim_start().starts_with("//!"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_and_comments() {
        assert!(line_contains_token("use rand::Rng;", "rand::"));
        assert!(!line_contains_token("let x = operand::ONE;", "rand::"));
        assert!(line_contains_token("x #[allow]", "#[allow"));
        assert!(is_comment_line("   /// docs"));
        assert!(!is_comment_line("let a = 1; // trailing"));
        assert!(starts_with_module_doc("\n\n//! Docs.\nfn f() {}\n"));
        assert!(!starts_with_module_doc("// plain\n//! Docs.\n"));
        assert!(!starts_with_module_doc(""));
    }

    #[test]
    fn root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert_eq!(display_path(&workspace_root().join("tests/src/lib.rs")), "tests/src/lib.rs");
    }
}
