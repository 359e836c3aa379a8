//! The shipped operations files against the metrics table: the Grafana dashboard
//! (`ops/grafana/fusebox.json`) and the Prometheus rules (`ops/prometheus/fusebox-alerts.yml`)
//! may name only metrics in `breaker_actors::observe::names::ALL`, and only their labels.
//!
//! - The dashboard is valid JSON, its panel ids are unique, every target has a query and
//!   the templated `datasource`, and it has the `breaker` and `node` variables.
//! - Every `fusebox_*` name in a dashboard query or a rule's `expr` is in the table
//!   (`_bucket`, `_sum` and `_count` only on histograms); every label in a `{...}` matcher
//!   is one of that metric's labels (`le` on a bucket), and every label in `by (...)`,
//!   `without (...)` belongs to each metric of the expression it groups, in `on (...)`,
//!   `ignoring (...)` and `group_left/right (...)` to some metric of the query.
//! - `docs/metrics.md`'s table lists exactly the table's metrics, in its order, with the same
//!   type, labels and help.
//! - Every alert has `for`, a severity, a summary and a description naming the breaker
//!   (the node where its metrics have no breaker label), and unit tests in
//!   `fusebox-alerts.test.yml`.
//!
//! The rules are YAML; they are read textually (no YAML crate in the workspace): a rule is a
//! `- alert:` / `- record:` item and its `expr:` is inline or a block scalar.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use breaker_actors::observe::names::{ALL, MetricKind, MetricSpec};
use fusebox_tests::workspace_root;
use serde_json::Value;

const DASHBOARD: &str = "ops/grafana/fusebox.json";
const ALERTS: &str = "ops/prometheus/fusebox-alerts.yml";
const ALERT_TESTS: &str = "ops/prometheus/fusebox-alerts.test.yml";
const SEVERITIES: &[&str] = &["critical", "warning", "info"];

fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// --- PromQL scanning ----------------------------------------------------------------

/// A metric a query names, resolved against the table.
#[derive(Debug, Clone, Copy)]
struct MetricRef {
    spec: &'static MetricSpec,
    /// Named as `<histogram>_bucket`, where `le` is a label too.
    bucket: bool,
}

impl MetricRef {
    fn has_label(&self, label: &str) -> bool {
        self.spec.labels.contains(&label) || (self.bucket && label == "le")
    }
}

/// Resolves a scraped series name to its table entry: the name itself, or a histogram's
/// `_bucket` / `_sum` / `_count` series.
fn resolve(name: &str) -> Option<MetricRef> {
    if let Some(spec) = ALL.iter().find(|spec| spec.name == name) {
        return Some(MetricRef { spec, bucket: false });
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        let spec = ALL.iter().find(|spec| spec.name == base && spec.kind == MetricKind::Histogram)?;
        Some(MetricRef { spec, bucket: *suffix == "_bucket" })
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Str,
    Punct(char),
}

/// `PromQL` tokens, enough to find names, matchers and grouping clauses: identifiers,
/// string literals (contents dropped, so a matcher value never reads as a name),
/// punctuation. Durations like `5m` come out as identifiers starting with a digit.
fn tokenize(query: &str) -> Vec<Token> {
    let chars: Vec<char> = query.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' && c != '`' { 2 } else { 1 };
            }
            i += 1;
            tokens.push(Token::Str);
        } else if c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '$' || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:$.".contains(chars[i])) {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// The index just past the group opened by the `(` at `open`.
fn close_of(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// The index of the `(` that opens the group closed by the `)` at `close`.
fn open_of(tokens: &[Token], close: usize) -> usize {
    let mut depth = 0;
    for i in (0..=close).rev() {
        match tokens[i] {
            Token::Punct(')') => depth += 1,
            Token::Punct('(') => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    0
}

/// The identifiers of a parenthesised label list starting at `open`.
fn label_list(tokens: &[Token], open: usize) -> Vec<String> {
    tokens[open..close_of(tokens, open)]
        .iter()
        .filter_map(|token| match token {
            Token::Ident(label) => Some(label.clone()),
            _ => None,
        })
        .collect()
}

/// The `fusebox_*` metrics named in a token range, with the unknown names reported.
fn metrics_in(tokens: &[Token], problems: &mut Vec<String>) -> Vec<MetricRef> {
    let mut found = Vec::new();
    for token in tokens {
        if let Token::Ident(name) = token {
            if name.starts_with("fusebox_") {
                match resolve(name) {
                    Some(metric) => found.push(metric),
                    None => problems.push(format!("`{name}` is not in observe::names::ALL")),
                }
            }
        }
    }
    found
}

/// Every way `query` strays from the table: unknown names and labels.
fn check_query(query: &str) -> Vec<String> {
    let tokens = tokenize(query);
    let mut problems = Vec::new();
    let all_metrics = metrics_in(&tokens, &mut problems);
    let mut ignore = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let Token::Ident(word) = token else { continue };
        // A metric's matchers: `name{label op "value", ...}`.
        if let (Some(metric), Some(Token::Punct('{'))) = (resolve(word), tokens.get(i + 1)) {
            let end = tokens[i..].iter().position(|t| *t == Token::Punct('}')).map_or(tokens.len(), |p| i + p);
            let mut expect_label = true;
            for matcher in &tokens[i + 2..end] {
                match matcher {
                    Token::Ident(label) if expect_label => {
                        if !metric.has_label(label) {
                            problems.push(format!("`{}` has no label `{label}`", metric.spec.name));
                        }
                        expect_label = false;
                    }
                    Token::Punct(',') => expect_label = true,
                    _ => {}
                }
            }
            continue;
        }
        let Some(Token::Punct('(')) = tokens.get(i + 1) else { continue };
        let labels = label_list(&tokens, i + 1);
        match word.as_str() {
            "by" | "without" => {
                // The grouped expression: the group after the label list, or, in
                // `sum (x) by (l)`, the one before the keyword.
                let after = close_of(&tokens, i + 1);
                let scope = if i > 0 && tokens[i - 1] == Token::Punct(')') {
                    &tokens[open_of(&tokens, i - 1)..i]
                } else if tokens.get(after) == Some(&Token::Punct('(')) {
                    &tokens[after..close_of(&tokens, after)]
                } else {
                    problems.push(format!("`{word} (...)` at token {i} groups no parenthesised expression"));
                    continue;
                };
                let grouped = metrics_in(scope, &mut ignore);
                for label in &labels {
                    for metric in grouped.iter().filter(|metric| !metric.has_label(label)) {
                        problems
                            .push(format!("`{word} ({label})` over `{}`, which has no such label", metric.spec.name));
                    }
                }
            }
            "on" | "ignoring" | "group_left" | "group_right" => {
                for label in labels.iter().filter(|label| !all_metrics.iter().any(|metric| metric.has_label(label))) {
                    problems.push(format!("`{word} ({label})`: no metric of the query has that label"));
                }
            }
            "label_values" => {
                // Grafana's `label_values(metric{...}, label)`: the last identifier.
                let metric = metrics_in(&tokens[i + 1..], &mut ignore);
                if let (Some(label), Some(metric)) = (labels.last(), metric.first()) {
                    if !metric.has_label(label) {
                        problems.push(format!("label_values: `{}` has no label `{label}`", metric.spec.name));
                    }
                }
            }
            _ => {}
        }
    }
    let names_any = tokens.iter().any(|t| matches!(t, Token::Ident(name) if name.starts_with("fusebox_")));
    if !names_any {
        problems.push("names no fusebox metric".to_owned());
    }
    problems
}

fn assert_queries_clean(queries: &[(String, String)]) {
    let mut report = String::new();
    for (place, query) in queries {
        for problem in check_query(query) {
            write!(report, "\n- {place}: {problem}\n    in: {query}").expect("writing to a String");
        }
    }
    assert!(report.is_empty(), "queries naming what the code does not export:{report}");
}

// --- the dashboard ------------------------------------------------------------------

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every query of the dashboard: panel targets and template variables, with where it is.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let place = format!("panel {} ({}) target {}", panel["id"], panel["title"], target["refId"]);
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("{place} has no expr"));
            queries.push((place, expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if variable["type"] == "query" {
            let query = variable["query"]["query"].as_str().or(variable["query"].as_str());
            let query = query.unwrap_or_else(|| panic!("variable {} has no query", variable["name"]));
            queries.push((format!("variable {}", variable["name"]), query.to_owned()));
        }
    }
    queries
}

#[test]
fn the_dashboard_is_importable() {
    let dashboard = dashboard();
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion");
    let variables: Vec<&Value> = dashboard["templating"]["list"].as_array().expect("templating.list").iter().collect();
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name).copied();
    let datasource = variable("datasource").expect("a datasource variable");
    assert_eq!((&datasource["type"], &datasource["query"]), (&Value::from("datasource"), &Value::from("prometheus")));
    for name in ["breaker", "node"] {
        let var = variable(name).unwrap_or_else(|| panic!("no {name} variable"));
        assert_eq!(var["type"], "query", "{name}");
        assert!(var["definition"].as_str().is_some_and(|q| q.starts_with("label_values(")), "{name}: {var}");
    }

    let mut ids = HashSet::new();
    let mut targets = 0;
    for panel in panels(&dashboard) {
        let id = panel["id"].as_u64().unwrap_or_else(|| panic!("a panel without an id: {}", panel["title"]));
        assert!(ids.insert(id), "panel id {id} twice");
        assert!(panel["gridPos"].is_object(), "panel {id} has no gridPos");
        if panel["type"] == "row" {
            continue;
        }
        let panel_targets = panel["targets"].as_array().unwrap_or_else(|| panic!("panel {id} has no targets"));
        assert!(!panel_targets.is_empty(), "panel {id} has no targets");
        for target in panel_targets {
            targets += 1;
            assert!(target["expr"].as_str().is_some_and(|e| !e.trim().is_empty()), "panel {id}: a target without expr");
            // Every query goes to the data source chosen on import, never a fixed one.
            assert_eq!(target["datasource"]["uid"], "${datasource}", "panel {id} target {}", target["refId"]);
        }
    }
    assert!(ids.len() >= 10 && targets >= 10, "{} panels, {targets} targets: a stub dashboard", ids.len());
}

#[test]
fn dashboard_queries_name_only_exported_metrics_and_labels() {
    let queries = dashboard_queries(&dashboard());
    assert!(queries.len() >= 10, "{} queries", queries.len());
    assert_queries_clean(&queries);
    // The panels the operations issue asks for are there (by what they query).
    let all: String = queries.iter().map(|(_, q)| q.as_str()).collect::<Vec<_>>().join("\n");
    for needed in [
        "fusebox_state",
        "fusebox_rejections_total",
        "fusebox_failure_rate_threshold",
        "fusebox_slow_call_rate_threshold",
        "fusebox_propagation_lag_seconds_bucket",
        "changes(fusebox_term",
        "fusebox_deciding",
        "to=\"half-open\"",
        "fusebox_refused_messages_total",
        "fusebox_reports_published_total",
        "fusebox_reports_merged_total",
        "fusebox_reports_lost_total",
    ] {
        assert!(all.contains(needed), "no dashboard query has {needed}");
    }
}

// --- the rules ----------------------------------------------------------------------

/// One rule of a rules file, as text.
#[derive(Debug)]
struct Rule {
    /// `alert` or `record`.
    kind: &'static str,
    name: String,
    /// The rule's own lines (its item and everything indented under it).
    body: Vec<String>,
}

impl Rule {
    /// The value of `key:` inside the rule: inline, or a block scalar (`>-`, `|`) joined.
    fn field(&self, key: &str) -> Option<String> {
        let prefix = format!("{key}:");
        let (at, line) = self.body.iter().enumerate().find(|(_, line)| {
            let trimmed = line.trim_start().trim_start_matches("- ");
            trimmed.starts_with(&prefix)
        })?;
        let indent = line.len() - line.trim_start().len();
        let value = line.trim_start().trim_start_matches("- ")[prefix.len()..].trim();
        if !value.is_empty() && !value.starts_with('>') && !value.starts_with('|') {
            return Some(value.trim_matches('"').trim_matches('\'').to_owned());
        }
        let block: Vec<&str> = self.body[at + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .map(|l| l.trim())
            .collect();
        Some(block.join(" ").trim().to_owned())
    }
}

/// The rules of a Prometheus rules file, read textually.
fn rules(text: &str) -> Vec<Rule> {
    let mut rules: Vec<Rule> = Vec::new();
    let mut item_indent = None;
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        let start = [("alert", "- alert:"), ("record", "- record:")]
            .into_iter()
            .find(|(_, prefix)| trimmed.starts_with(prefix));
        if let Some((kind, prefix)) = start {
            item_indent = Some(indent);
            let name = trimmed[prefix.len()..].trim().to_owned();
            rules.push(Rule { kind, name, body: vec![line.to_owned()] });
        } else if let (Some(rule), Some(item)) = (rules.last_mut(), item_indent) {
            if line.trim().is_empty() || indent > item {
                rule.body.push(line.to_owned());
            } else {
                item_indent = None;
            }
        }
    }
    rules
}

#[test]
fn rule_expressions_name_only_exported_metrics_and_labels() {
    let rules = rules(&read(ALERTS));
    assert!(rules.len() >= 6, "{} rules in {ALERTS}", rules.len());
    let queries: Vec<(String, String)> = rules
        .iter()
        .map(|rule| {
            let expr = rule.field("expr").unwrap_or_else(|| panic!("{} {} has no expr", rule.kind, rule.name));
            (format!("{} {}", rule.kind, rule.name), expr)
        })
        .collect();
    assert_queries_clean(&queries);
}

#[test]
fn every_alert_has_for_severity_summary_description_and_unit_tests() {
    let rules = rules(&read(ALERTS));
    let tests = read(ALERT_TESTS);
    let alerts: Vec<&Rule> = rules.iter().filter(|rule| rule.kind == "alert").collect();
    let names: BTreeSet<&str> = alerts.iter().map(|rule| rule.name.as_str()).collect();
    assert_eq!(names.len(), alerts.len(), "an alert name twice");
    for wanted in [
        "FuseboxBreakerStuckOpen",
        "FuseboxBreakerFlapping",
        "FuseboxBreakerWithoutDecider",
        "FuseboxPropagationLagHigh",
        "FuseboxRefusedMessagesRising",
        "FuseboxReportsLost",
    ] {
        assert!(names.contains(wanted), "no alert {wanted}");
    }
    for alert in alerts {
        let name = &alert.name;
        assert!(alert.field("for").is_some_and(|f| !f.is_empty()), "{name}: no `for`");
        let severity = alert.field("severity").unwrap_or_default();
        assert!(SEVERITIES.contains(&severity.as_str()), "{name}: severity `{severity}`");
        // Name the breaker; a query over metrics without a breaker label names the node.
        let expr = alert.field("expr").unwrap_or_default();
        let mut ignore = Vec::new();
        let per_breaker = metrics_in(&tokenize(&expr), &mut ignore).iter().all(|m| m.has_label("breaker"));
        let subject = if per_breaker { "$labels.breaker" } else { "$labels.node" };
        for key in ["summary", "description"] {
            let text = alert.field(key).unwrap_or_default();
            assert!(text.len() >= 20, "{name}: {key} `{text}`");
            assert!(text.contains(subject), "{name}: the {key} does not name {subject}: `{text}`");
        }
        // A firing case and a near miss at least: two evaluations of the alert.
        let evaluations = tests.matches(&format!("alertname: {name}\n")).count();
        assert!(evaluations >= 2, "{name}: {evaluations} alert_rule_test evaluations in {ALERT_TESTS}");
    }
}

// --- the checker itself -------------------------------------------------------------

#[test]
fn the_checker_catches_unknown_names_and_labels() {
    let clean = |q: &str| check_query(q).is_empty();
    // What the shipped files do passes...
    assert!(clean(
        r#"histogram_quantile(0.99, sum by (breaker, le) (rate(fusebox_propagation_lag_seconds_bucket{node=~"$node"}[5m])))"#
    ));
    assert!(clean(r#"max by (breaker) (fusebox_state{state=~"open|half-open"}) == 1"#));
    assert!(clean(
        r#"sum(rate(fusebox_calls_total[5m]) and on (breaker, node) (fusebox_state{state="half-open"} == 1)) by (breaker)"#
    ));
    assert!(clean(r#"label_values(fusebox_state{breaker=~"$breaker"}, node)"#));
    // ...and each kind of mistake is caught, once.
    let caught = |q: &str| check_query(q).len();
    assert_eq!(caught("rate(fusebox_rejection_total[5m])"), 1, "a misspelt name");
    assert_eq!(caught("rate(fusebox_calls_total_bucket[5m])"), 1, "_bucket on a counter");
    assert_eq!(caught("rate(fusebox_rejections_total{outcome=\"open\"}[5m])"), 1, "a label of another metric");
    assert_eq!(caught("rate(fusebox_calls_total{le=\"1\"}[5m])"), 1, "le off a bucket");
    assert_eq!(caught("sum by (breaker) (rate(fusebox_refused_messages_total[5m]))"), 1, "by a missing label");
    assert_eq!(caught("sum(rate(fusebox_refused_messages_total[5m])) without (breaker)"), 1, "trailing clause");
    assert_eq!(caught("fusebox_deciding and on (reason) fusebox_term"), 1, "on a label no metric has");
    assert_eq!(caught("label_values(fusebox_refused_messages_total, breaker)"), 1, "label_values");
    assert_eq!(caught(r#"up{job="fusebox_state"}"#), 1, "a string is not a name, and no fusebox metric");
    // The rules reader finds inline and block expressions.
    let parsed = rules(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: >-\n          x\n          > 1\n        for: 1m\n      - record: r\n        expr: y\n",
    );
    assert_eq!(
        parsed.iter().map(|r| (r.name.as_str(), r.field("expr"))).collect::<Vec<_>>(),
        [("A", Some("x > 1".to_owned())), ("r", Some("y".to_owned()))]
    );
    assert_eq!(parsed[0].field("for").as_deref(), Some("1m"));
    assert!(Path::new(&workspace_root()).join(ALERT_TESTS).is_file());
}

/// `docs/metrics.md`'s table of every metric, as `(name, type, labels, help)` rows.
fn documented_metrics(text: &str) -> Vec<(String, String, Vec<String>, String)> {
    let table = text.split("## Every metric").nth(1).expect("docs/metrics.md has an `## Every metric` section");
    table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 4, "a row of name, type, labels, help: {line}");
            let labels = cells[2].split(", ").map(|l| l.trim_matches('`').to_owned()).collect();
            (cells[0].trim_matches('`').to_owned(), cells[1].to_owned(), labels, cells[3].to_owned())
        })
        .collect()
}

/// How `docs/metrics.md`'s table (`text`) differs from `names::ALL`: one line per row that
/// differs, is missing or is extra (the same order is expected).
fn docs_drift(text: &str) -> Vec<String> {
    let kind = |k: MetricKind| match k {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram => "histogram",
    };
    let wanted: Vec<(String, String, Vec<String>, String)> = ALL
        .iter()
        .map(|s| {
            let labels = s.labels.iter().map(|l| (*l).to_owned()).collect();
            (s.name.to_owned(), kind(s.kind).to_owned(), labels, s.help.to_owned())
        })
        .collect();
    let documented = documented_metrics(text);
    let mut drift = Vec::new();
    for i in 0..wanted.len().max(documented.len()) {
        match (wanted.get(i), documented.get(i)) {
            (Some(w), Some(d)) if w == d => {}
            (w, d) => drift.push(format!("row {i}: the table has {w:?}, docs/metrics.md {d:?}")),
        }
    }
    drift
}

#[test]
fn docs_metrics_lists_exactly_the_table_of_names() {
    let drift = docs_drift(&read("docs/metrics.md"));
    assert!(drift.is_empty(), "docs/metrics.md drifted from observe::names:\n{}", drift.join("\n"));
}

#[test]
fn the_docs_check_catches_a_changed_a_missing_and_an_extra_row() {
    let text = read("docs/metrics.md");
    let help = ALL[0].help;
    assert_eq!(docs_drift(&text.replacen(help, "something else", 1)).len(), 1, "a changed help");
    let labels = "`breaker`, `node`, `state`";
    assert_eq!(docs_drift(&text.replacen(labels, "`breaker`, `state`", 1)).len(), 1, "a changed label list");
    let last = text.lines().rfind(|l| l.starts_with("| `")).unwrap();
    assert_eq!(docs_drift(&text.replacen(&format!("{last}\n"), "", 1)).len(), 1, "a missing row");
    let extra = format!("{text}| `fusebox_made_up_total` | counter | `node` | Made up. |\n");
    assert_eq!(docs_drift(&extra).len(), 1, "an extra row");
}
