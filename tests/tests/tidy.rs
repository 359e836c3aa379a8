//! Repository tidy checks: rules about the source tree that the compiler and
//! clippy do not enforce.
//!
//! - The pure breaker state machine (`breaker-actors/src/machine/`) must not
//!   touch runtimes, transports, clocks, randomness, the network, the file
//!   system or threads: all of those are injected by the layers above it.
//! - No test is skipped and no code is left unfinished.
//! - Every module under a crate's `src/` starts with a `//!` doc comment.
//! - Nothing refers to material outside the repository (the steering folder beside it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::PathBuf;

use fusebox_tests::{
    display_path, find_tokens, read_source, rust_files_under, starts_with_module_doc, workspace_root,
    workspace_rust_files,
};

/// What the pure state machine must never mention outside of comment lines.
const FORBIDDEN_IN_MACHINE: &[&str] = &[
    "tokio",
    "ractor",
    "async_nats",
    "async-nats",
    "Instant::now",
    "SystemTime::now",
    "std::time::Instant",
    "std::time::SystemTime",
    "rand::",
    "thread_rng",
    "std::net",
    "std::fs",
    "std::thread",
];

/// Markers of skipped tests and unfinished code, forbidden anywhere. Built
/// with `concat!` so this file does not trip its own check.
const UNFINISHED: &[&str] = &[concat!("#[", "ignore"), concat!("todo", "!("), concat!("unimplemented", "!(")];

/// The minimum number of files the machine module must consist of, so the
/// purity check cannot pass vacuously on an empty or missing directory.
const MIN_MACHINE_FILES: usize = 3;

fn machine_dir() -> PathBuf {
    workspace_root().join("breaker-actors/src/machine")
}

/// The machine's sources: everything under `machine/` plus `machine.rs`.
fn machine_files() -> Vec<PathBuf> {
    let mut files = rust_files_under(&machine_dir());
    let module_file = workspace_root().join("breaker-actors/src/machine.rs");
    if module_file.is_file() {
        files.push(module_file);
    }
    files
}

/// Scans `files` for `tokens` and returns one `path:line: token` entry per
/// finding.
fn scan(files: &[PathBuf], tokens: &[&str], skip_comment_lines: bool) -> Vec<String> {
    let mut report = Vec::new();
    for file in files {
        for finding in find_tokens(&read_source(file), tokens, skip_comment_lines) {
            report.push(format!("{}:{}: `{}`", display_path(file), finding.line, finding.token));
        }
    }
    report
}

fn bullet_list(items: &[String]) -> String {
    items.iter().fold(String::new(), |mut out, item| {
        let _ = writeln!(out, "  {item}");
        out
    })
}

#[test]
fn machine_module_exists_with_enough_files() {
    let dir = machine_dir();
    assert!(dir.is_dir(), "{} does not exist: the purity check below would pass on nothing", display_path(&dir));
    let files = rust_files_under(&dir);
    assert!(
        files.len() >= MIN_MACHINE_FILES,
        "{} holds {} .rs file(s), expected at least {MIN_MACHINE_FILES}: {files:?}",
        display_path(&dir),
        files.len()
    );
}

#[test]
fn machine_is_pure() {
    let violations = scan(&machine_files(), FORBIDDEN_IN_MACHINE, true);
    assert!(
        violations.is_empty(),
        "the pure state machine must not use runtimes, transports, clocks, randomness, \
         network, file system or threads (inject them instead):\n{}",
        bullet_list(&violations)
    );
}

#[test]
fn purity_scanner_detects_every_forbidden_token() {
    let sample = "\
//! Module docs may say tokio.
use std::time::Instant;
    // a comment about thread_rng() is fine
fn f() { let _ = extractor::run(operand::ONE); }
fn g() { tokio::spawn(async {}); } // trailing comments do not hide code
";
    let findings = find_tokens(sample, FORBIDDEN_IN_MACHINE, true);
    let found: Vec<(usize, &str)> = findings.iter().map(|f| (f.line, f.token.as_str())).collect();
    assert_eq!(found, [(2, "std::time::Instant"), (5, "tokio")]);

    // Every entry of the list is detectable on its own.
    for token in FORBIDDEN_IN_MACHINE {
        let line = format!("let x = {token}();");
        assert!(!find_tokens(&line, &[token], true).is_empty(), "scanner missed `{token}`");
    }
}

#[test]
fn nothing_is_skipped_or_unfinished() {
    let files = workspace_rust_files();
    assert!(
        files.iter().any(|f| display_path(f) == "tests/tests/tidy.rs"),
        "the workspace walk did not find this file; found: {files:?}"
    );
    let violations = scan(&files, UNFINISHED, false);
    assert!(violations.is_empty(), "skipped tests or unfinished code:\n{}", bullet_list(&violations));

    // The check itself can fail.
    let sample = format!("{}]\nfn f() {{ {}) }}\n", UNFINISHED[0], UNFINISHED[1]);
    assert_eq!(find_tokens(&sample, UNFINISHED, false).len(), 2);
}

#[test]
fn every_src_module_starts_with_a_doc_comment() {
    let src_files: Vec<PathBuf> =
        workspace_rust_files().into_iter().filter(|f| display_path(f).split('/').any(|part| part == "src")).collect();
    assert!(
        src_files.iter().any(|f| display_path(f) == "tests/src/lib.rs"),
        "the workspace walk found no crate sources: {src_files:?}"
    );
    let missing: Vec<String> =
        src_files.iter().filter(|f| !starts_with_module_doc(&read_source(f))).map(|f| display_path(f)).collect();
    assert!(
        missing.is_empty(),
        "these modules must start with a `//!` doc comment (first non-blank line):\n{}",
        bullet_list(&missing)
    );
}

/// Every text file of the repository (sources, docs, scripts, manifests), skipping build
/// output, `.git`, `.tools` and installed packages (`node_modules`).
fn repository_text_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    const TEXT: &[&str] = &["rs", "md", "sh", "py", "toml", "conf", "yml", "yaml", "json", "txt"];
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            let skipped = [".git", ".tools", "target", "node_modules"].iter().any(|s| name == *s)
                || path.join("CACHEDIR.TAG").exists();
            if !skipped {
                repository_text_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| TEXT.iter().any(|t| e == *t)) || name == "Makefile" || name == "run"
        {
            out.push(path);
        }
    }
}

#[test]
fn the_repository_stands_alone() {
    // Built with `concat!` so this file does not trip its own check.
    let outside = [concat!("../", "shared/"), concat!("DESIGN", ".md"), concat!("NATS_", "NOTES")];
    let mut files = Vec::new();
    repository_text_files(&workspace_root(), &mut files);
    assert!(files.iter().any(|f| display_path(f) == "README.md"), "the walk found no README.md: {files:?}");
    let mut found = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for (n, line) in text.lines().enumerate() {
            if outside.iter().any(|o| line.contains(o)) {
                found.push(format!("{}:{}", display_path(file), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "files refer to material outside the repository:\n{}", bullet_list(&found));
}

/// `ARCHITECTURE.md` stays a short map of stable facts (rust-analyzer's rule): at most
/// 150 lines, and every path it names in backticks that looks like a file or directory of
/// the repository exists, so that it cannot silently rot as code moves.
#[test]
fn the_architecture_document_is_short_and_its_paths_exist() {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let lines = text.lines().count();
    assert!(lines <= 150, "ARCHITECTURE.md has {lines} lines; keep it to 150 (details go to module docs and docs/)");
    let mut missing = Vec::new();
    for quoted in text.split('`').skip(1).step_by(2) {
        let looks_like_path = quoted.contains('/') && !quoted.contains(' ') && !quoted.starts_with('<');
        let has_extension = [".rs", ".md", ".toml", ".sh", ".py"].iter().any(|e| quoted.ends_with(e));
        if looks_like_path && (has_extension || quoted.ends_with('/')) && !root.join(quoted).exists() {
            // Paths inside a crate may be written from the crate's `src/`.
            let in_crate = ["breaker-actors/src", "transport-nats/src", "fusebox-cli/src", "model-check/src"]
                .iter()
                .any(|krate| root.join(krate).join(quoted).exists());
            if !in_crate {
                missing.push(quoted.to_owned());
            }
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md names paths that do not exist:\n{}", bullet_list(&missing));
}

/// The user-facing examples and guides use Fusebox as a service author would: through the
/// `fusebox` facade only, never naming the internal crates (`breaker_actors`,
/// `transport_nats`). The demo's orchestrator and instances, which inspect internals on
/// purpose, are not user-facing examples.
#[test]
fn user_facing_examples_and_guides_name_only_the_facade() {
    let root = workspace_root();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("examples/src/bin"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    for doc in ["README.md", "docs/guide-axum.md", "docs/tuning.md", "docs/config.md", "fusebox/README.md"] {
        files.push(root.join(doc));
    }
    let found = scan(&files, &["breaker_actors", "transport_nats"], false);
    assert!(found.is_empty(), "user-facing code names an internal crate:\n{}", bullet_list(&found));
}
