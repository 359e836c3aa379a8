//! `docs/guide-axum.md` is true: every Rust block it shows is a `// guide: NAME` ... `// end`
//! region of `examples/src/bin/axum_guide.rs` (de-indented), and every region is shown; and
//! that program, run against the local axum servers it starts on loopback, does what the
//! guide says: 5xx answers open the breaker, the async fallback then serves from the cache
//! by request without reaching the dependency, a miss is a 503, and the guarded route sheds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The guide's Rust code blocks (fenced as `rust`).
fn rust_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line) {
            (None, "```rust") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed rust block in the guide");
    blocks
}

/// The source's `// guide: NAME` regions, each de-indented by its marker's indentation.
fn regions(source: &str) -> Vec<(String, String)> {
    let mut regions = Vec::new();
    let mut current: Option<(String, usize, String)> = None;
    for line in source.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(name) = trimmed.strip_prefix("// guide: ") {
            assert!(current.is_none(), "region {name:?} starts inside another");
            current = Some((name.to_owned(), indent, String::new()));
        } else if trimmed == "// end" {
            let (name, _, text) = current.take().expect("an `// end` closes a region");
            regions.push((name, text));
        } else if let Some((_, indent, text)) = &mut current {
            text.push_str(line.get(*indent..).unwrap_or_else(|| line.trim_start()));
            text.push('\n');
        }
    }
    assert!(current.is_none(), "an unclosed region in the example");
    regions
}

#[test]
fn the_guide_shows_the_example_verbatim() {
    let guide = rust_blocks(&read("../docs/guide-axum.md"));
    let regions = regions(&read("src/bin/axum_guide.rs"));
    assert!(regions.len() >= 4, "the example marks its quoted regions: {regions:?}");
    for block in &guide {
        assert!(
            regions.iter().any(|(_, text)| text == block),
            "the guide shows code the example does not run:\n{block}"
        );
    }
    for (name, text) in &regions {
        assert!(guide.contains(text), "the guide does not show region {name:?} as it is now:\n{text}");
    }
}

#[test]
fn the_guide_example_runs_against_local_axum_servers() {
    let output = Command::new(env!("CARGO_BIN_EXE_axum-guide")).output().expect("axum-guide runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    let line = |prefix: &str| {
        stdout.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stdout}"))
    };
    assert_eq!(line("healthy:"), "healthy: 200 OK apple: 30 (from the prices service)");
    assert!(line("prices failing:").contains("the breaker opened after"), "{stdout}");
    assert_eq!(
        line("open:"),
        "open: 200 OK apple: 30 (from the cache); requests reaching the prices service: 0",
        "the fallback serves the request by its path, and the dependency sees nothing"
    );
    let miss = line("open, not cached:");
    assert!(miss.starts_with("open, not cached: 503") && miss.contains("it is open"), "{miss}");
    let shed = line("/report after");
    assert!(shed.contains(": 503 Service Unavailable") && shed.contains("it is open"), "{shed}");
}
