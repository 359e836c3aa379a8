//! The demo's terminal view: the per-instance table, the recent decisions, and the final
//! summary, as plain text (the orchestrator decides whether to redraw or append).

use std::fmt::Write;

/// One instance's row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    /// Node id (`py1` for the Python instance).
    pub node: String,
    /// Running, or killed by the script.
    pub alive: bool,
    /// Effective breaker state.
    pub state: String,
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Calls rejected by the breaker.
    pub rejected: u64,
    /// Calls admitted as probes.
    pub probes: u64,
    /// Whether it decides.
    pub deciding: bool,
    /// The term of its applied decision.
    pub term: u64,
}

/// The live table, with a header line.
pub fn table(header: &str, rows: &[Row], recent: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{header}");
    let _ = writeln!(
        out,
        "{:<10} {:<6} {:<12} {:>8} {:>8} {:>9} {:>7} {:>8} {:>5}",
        "instance", "alive", "state", "ok", "failed", "rejected", "probes", "decider", "term"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<10} {:<6} {:<12} {:>8} {:>8} {:>9} {:>7} {:>8} {:>5}",
            r.node,
            if r.alive { "yes" } else { "KILLED" },
            r.state,
            r.ok,
            r.failed,
            r.rejected,
            r.probes,
            if r.deciding { "*" } else { "" },
            r.term
        );
    }
    if !recent.is_empty() {
        let _ = writeln!(out, "recent decisions:");
        for line in recent {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// A two-column summary table.
pub fn summary(title: &str, rows: &[(String, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "{title}");
    let _ = writeln!(out, "{}", "-".repeat(title.len()));
    for (k, v) in rows {
        let _ = writeln!(out, "{k:<width$}  {v}");
    }
    out
}

/// The `q`-quantile (0..=1) of `values` (nearest rank), if any.
pub fn quantile(values: &[u64], q: f64) -> Option<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let last = sorted.len().checked_sub(1)?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let rank = ((q.clamp(0.0, 1.0) * last as f64).round() as usize).min(last);
    sorted.get(rank).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.99), Some(7));
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(51));
        assert_eq!(quantile(&v, 0.99), Some(99));
    }

    #[test]
    fn the_table_shows_every_row() {
        let rows = vec![
            Row { node: "i1".into(), alive: true, state: "Open".into(), deciding: true, term: 3, ..Row::default() },
            Row { node: "i2".into(), alive: false, ..Row::default() },
        ];
        let text = table("t=1s", &rows, &["3/2 open".into()]);
        assert!(text.contains("i1") && text.contains("KILLED") && text.contains("3/2 open"));
        assert!(summary("Summary", &[("a".into(), "1".into())]).contains("a  1"));
    }
}
