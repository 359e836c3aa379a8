//! Loading a [`BreakerConfig`] from outside the process: TOML text and files (feature
//! `toml`) and environment variables over a base config. Each loader validates what it
//! read, and every failure is a [`ConfigLoadError`] that says where: the key path (and for
//! TOML the line), or the variable's name.
//!
//! Environment variables are named `<prefix>__<KEY>__<KEY>...`: the nested keys of the
//! serde form, upper-cased, joined by [`ENV_SEPARATOR`] (`__`, because field names contain
//! single underscores: `FUSEBOX_PAYMENTS__TRIP__FAILURE_RATE`). A value is read as JSON
//! when it is JSON (`0.5`, `true`, `null`, `[25, 50]`, `{"fixed": {"duration": "5s"}}`)
//! and as a string otherwise (`60s`, `last_known`).

use std::fmt;
#[cfg(feature = "toml")]
use std::path::Path;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::machine::{BreakerConfig, ConfigError};

/// What joins the nested keys of an environment variable's name, and the name to its
/// prefix.
pub const ENV_SEPARATOR: &str = "__";

/// A config that could not be loaded, with where it went wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigLoadError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML that is not valid TOML, or not a config: a syntax error, an unknown or
    /// mistyped key, a bad duration, a duration given both as `x_ms` and `x`.
    Toml {
        /// The file, if it came from one.
        path: Option<PathBuf>,
        /// Dotted path of the key at fault (`open.fixed.duration`), if the error is at one.
        key: Option<String>,
        /// 1-based line and column where the TOML parser places the error, if it does.
        position: Option<(usize, usize)>,
        /// What is wrong.
        problem: String,
    },
    /// Environment variables that do not make a config.
    Env {
        /// The variables at fault (usually one; more when they conflict).
        vars: Vec<String>,
        /// Dotted path of the key at fault, `.` for the whole config.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// A well-formed config that cannot run.
    Invalid(ConfigError),
}

impl fmt::Display for ConfigLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => write!(f, "could not read breaker config {}: {source}", path.display()),
            Self::Toml { path, key, position, problem } => {
                match path {
                    Some(path) => write!(f, "breaker config {}", path.display())?,
                    None => f.write_str("breaker config TOML")?,
                }
                if let Some((line, column)) = position {
                    write!(f, ", line {line}, column {column}")?;
                }
                if let Some(key) = key {
                    write!(f, ": {key}")?;
                }
                write!(f, ": {problem}")
            }
            Self::Env { vars, key, problem } => {
                write!(f, "breaker config from the environment: {} ({key}): {problem}", vars.join(", "))
            }
            Self::Invalid(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for ConfigLoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Invalid(error) => Some(error),
            Self::Toml { .. } | Self::Env { .. } => None,
        }
    }
}

impl From<ConfigError> for ConfigLoadError {
    fn from(error: ConfigError) -> Self {
        Self::Invalid(error)
    }
}

fn validated(config: BreakerConfig) -> Result<BreakerConfig, ConfigLoadError> {
    config.validate()?;
    Ok(config)
}

/// A key path as `serde_path_to_error` prints it; `None` for the whole document.
fn key_at(path: &serde_path_to_error::Path) -> Option<String> {
    let key = path.to_string();
    (key != ".").then_some(key)
}

#[cfg(feature = "toml")]
impl BreakerConfig {
    /// A validated config from TOML text in the serde form (durations as `x_ms` integers
    /// or `x = "60s"`).
    ///
    /// ```
    /// use breaker_actors::BreakerConfig;
    ///
    /// let config = BreakerConfig::from_toml_str(
    ///     r#"
    ///     quorum = 2
    ///     [trip]
    ///     failure_rate = 0.25
    ///     [open.fixed]
    ///     duration = "30s"
    ///     "#,
    /// )?;
    /// assert_eq!(config.open, breaker_actors::machine::OpenPolicy::Fixed { duration_ms: 30_000 });
    /// # Ok::<(), breaker_actors::ConfigLoadError>(())
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigLoadError> {
        toml_config(text, None)
    }

    /// A validated config from a TOML file; errors name the file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, ConfigLoadError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigLoadError::Read { path: path.to_path_buf(), source })?;
        toml_config(&text, Some(path))
    }
}

#[cfg(feature = "toml")]
fn toml_config(text: &str, path: Option<&Path>) -> Result<BreakerConfig, ConfigLoadError> {
    let error = |key: Option<String>, e: &toml::de::Error| ConfigLoadError::Toml {
        path: path.map(Path::to_path_buf),
        key,
        position: e.span().map(|span| line_and_column(text, span.start)),
        problem: e.message().trim_end().to_owned(),
    };
    let document = toml::Deserializer::parse(text).map_err(|e| error(None, &e))?;
    let config = serde_path_to_error::deserialize(document).map_err(|e| error(key_at(e.path()), e.inner()))?;
    validated(config)
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
#[cfg(feature = "toml")]
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// One variable that sets a key.
struct EnvOverride {
    var: String,
    key: Vec<String>,
    value: Value,
}

impl EnvOverride {
    fn dotted(&self) -> String {
        self.key.join(".")
    }

    fn error(&self, problem: impl Into<String>) -> ConfigLoadError {
        ConfigLoadError::Env { vars: vec![self.var.clone()], key: self.dotted(), problem: problem.into() }
    }
}

impl BreakerConfig {
    /// The default config with the process's environment variables `<prefix>__...` over it
    /// (see [`with_env_vars`](Self::with_env_vars)), validated.
    pub fn from_env(prefix: &str) -> Result<Self, ConfigLoadError> {
        Self::default().with_env(prefix)
    }

    /// This config with the process's environment variables `<prefix>__...` over it (see
    /// [`with_env_vars`](Self::with_env_vars)), validated.
    pub fn with_env(self, prefix: &str) -> Result<Self, ConfigLoadError> {
        let marker = format!("{prefix}{ENV_SEPARATOR}");
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            if !name.to_string_lossy().starts_with(&marker) {
                continue;
            }
            let not_utf8 = |what: &str| ConfigLoadError::Env {
                vars: vec![name.to_string_lossy().into_owned()],
                key: ".".to_owned(),
                problem: format!("its {what} is not UTF-8"),
            };
            let name_text = name.to_str().ok_or_else(|| not_utf8("name"))?;
            let value = value.into_string().map_err(|_| not_utf8("value"))?;
            vars.push((name_text.to_owned(), value));
        }
        self.with_env_vars(prefix, vars)
    }

    /// This config with `vars` over it, validated: each `(name, value)` whose name is
    /// `<prefix>__<KEY>__<KEY>...` sets the key path `key.key...` of the serde form
    /// (lower-cased) to `value`, read as JSON when it is JSON and as a string otherwise;
    /// other names are ignored. [`with_env`](Self::with_env) passes the process's.
    ///
    /// Setting `x` (humantime text) replaces the base's `x_ms` and the other way round;
    /// setting a field of another variant of `open` or `trip.window` replaces the base's
    /// variant (`FUSEBOX__OPEN__EXPONENTIAL__INITIAL` over a fixed open policy); `null`
    /// turns an optional part off (`FUSEBOX__LOCAL=null`).
    ///
    /// ```
    /// use breaker_actors::BreakerConfig;
    ///
    /// let vars = [
    ///     ("FUSEBOX_PAYMENTS__TRIP__FAILURE_RATE", "0.25"),
    ///     ("FUSEBOX_PAYMENTS__OPEN__FIXED__DURATION", "30s"),
    ///     ("FUSEBOX_PAYMENTS__OUTAGE__POLICY", "fail_open"),
    ///     ("PATH", "/usr/bin"),
    /// ];
    /// let config = BreakerConfig::default()
    ///     .with_env_vars("FUSEBOX_PAYMENTS", vars.map(|(k, v)| (k.to_owned(), v.to_owned())))?;
    /// assert_eq!(config.trip.failure_rate, Some(0.25));
    /// # Ok::<(), breaker_actors::ConfigLoadError>(())
    /// ```
    pub fn with_env_vars(
        self,
        prefix: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigLoadError> {
        let marker = format!("{prefix}{ENV_SEPARATOR}");
        let mut overrides = Vec::new();
        for (var, text) in vars {
            let Some(rest) = var.strip_prefix(&marker) else { continue };
            let key: Vec<String> = rest.split(ENV_SEPARATOR).map(str::to_ascii_lowercase).collect();
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            let fine = |k: &String| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            let entry = EnvOverride { var, key, value };
            if !entry.key.iter().all(fine) {
                return Err(entry.error(format!(
                    "not a key path: the name after `{marker}` must be field names joined by `{ENV_SEPARATOR}`"
                )));
            }
            overrides.push(entry);
        }
        if overrides.is_empty() {
            return validated(self);
        }
        // The process's variables come in no particular order; errors should not vary.
        overrides.sort_by(|a, b| a.var.cmp(&b.var));
        check_no_overlap(&overrides)?;
        let mut tree = serde_json::to_value(&self).map_err(|e| ConfigLoadError::Env {
            vars: Vec::new(),
            key: ".".to_owned(),
            problem: format!("the base config cannot be written: {e}"),
        })?;
        for entry in &overrides {
            make_room(&mut tree, &entry.key);
        }
        for entry in &overrides {
            set(&mut tree, entry)?;
        }
        let config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = key_at(e.path()).unwrap_or_default();
            ConfigLoadError::Env {
                vars: vars_at(&overrides, &key),
                key: display_key(key),
                problem: e.inner().to_string(),
            }
        })?;
        validated(config)
    }
}

fn display_key(key: String) -> String {
    if key.is_empty() { ".".to_owned() } else { key }
}

/// Two variables where one sets a part of what the other sets whole, or the same key
/// twice (names differing in case): which one wins would be an accident.
fn check_no_overlap(overrides: &[EnvOverride]) -> Result<(), ConfigLoadError> {
    for (i, a) in overrides.iter().enumerate() {
        for b in &overrides[i + 1..] {
            let n = a.key.len().min(b.key.len());
            if a.key[..n] == b.key[..n] {
                let (short, long) = if a.key.len() <= b.key.len() { (a, b) } else { (b, a) };
                return Err(ConfigLoadError::Env {
                    vars: vec![a.var.clone(), b.var.clone()],
                    key: short.dotted(),
                    problem: format!(
                        "{} sets what {} sets (part of it or all of it): set it once",
                        long.var, short.var
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Prepares the base's tree for setting `key`: every level an object, the base's form of
/// the same duration gone (`x_ms` for `x`, `x` for `x_ms`), and the base's variant gone
/// where `key` names another one. In serde's form an enum with fields is an object with
/// exactly one key, the variant, holding an object; no struct of the config serialises as
/// a one-key object holding an object, so that shape identifies a variant.
fn make_room(tree: &mut Value, key: &[String]) {
    let mut node = tree;
    for (depth, segment) in key.iter().enumerate() {
        let Value::Object(object) = node else { return };
        let is_other_variant =
            object.len() == 1 && !object.contains_key(segment) && object.values().all(Value::is_object);
        if is_other_variant {
            object.clear();
        }
        if depth + 1 == key.len() {
            let twin = segment.strip_suffix("_ms").map_or_else(|| format!("{segment}_ms"), str::to_owned);
            object.remove(&twin);
            return;
        }
        let child = object.entry(segment.clone()).or_insert(Value::Null);
        if !child.is_object() {
            *child = Value::Object(Map::new());
        }
        node = child;
    }
}

/// Sets `entry`'s key in a tree prepared by [`make_room`].
fn set(tree: &mut Value, entry: &EnvOverride) -> Result<(), ConfigLoadError> {
    let mut node = tree;
    let (last, parents) = entry.key.split_last().ok_or_else(|| entry.error("no key"))?;
    for segment in parents {
        node = node.get_mut(segment).ok_or_else(|| entry.error("no such key"))?;
    }
    let Value::Object(object) = node else { return Err(entry.error("no such key")) };
    object.insert(last.clone(), entry.value.clone());
    Ok(())
}

/// The variables an error at `key` is about: one that set the key itself or something
/// holding it, or one that set a part of it (a struct's error, such as a duration given
/// both ways); for an error about the whole config, those that set its own fields.
fn vars_at(overrides: &[EnvOverride], key: &str) -> Vec<String> {
    let path: Vec<&str> = if key.is_empty() { Vec::new() } else { key.split('.').collect() };
    overrides
        .iter()
        .filter(|o| {
            let own: Vec<&str> = o.key.iter().map(String::as_str).collect();
            if path.is_empty() { own.len() == 1 } else { path.starts_with(&own) || own.starts_with(&path) }
        })
        .map(|o| o.var.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::error::Error as _;
    use std::time::Duration;

    use super::*;
    use crate::machine::{BreakerConfigBuilder, OpenPolicy, OutagePolicy, WindowConfig};

    const SECOND: Duration = Duration::from_secs(1);

    fn env(base: BreakerConfig, vars: &[(&str, &str)]) -> Result<BreakerConfig, ConfigLoadError> {
        base.with_env_vars("FUSEBOX_PAYMENTS", vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    fn env_error(vars: &[(&str, &str)]) -> (Vec<String>, String, String, String) {
        match env(BreakerConfig::default(), vars).unwrap_err() {
            e @ ConfigLoadError::Env { .. } => {
                let shown = e.to_string();
                let ConfigLoadError::Env { vars, key, problem } = e else { unreachable!() };
                (vars, key, problem, shown)
            }
            other => panic!("not an env error: {other}"),
        }
    }

    #[test]
    fn env_vars_override_the_defaults_and_equal_the_builder() {
        let loaded = env(
            BreakerConfig::default(),
            &[
                ("FUSEBOX_PAYMENTS__TRIP__FAILURE_RATE", "0.25"),
                ("FUSEBOX_PAYMENTS__TRIP__MINIMUM_CALLS", "20"),
                ("FUSEBOX_PAYMENTS__TRIP__WINDOW__COUNT__CALLS", "50"),
                ("FUSEBOX_PAYMENTS__QUORUM", "2"),
                ("FUSEBOX_PAYMENTS__OPEN__FIXED__DURATION", "30s"),
                ("FUSEBOX_PAYMENTS__OUTAGE__POLICY", "fail_open"),
                ("FUSEBOX_PAYMENTS__OUTAGE__GRACE", "\"2s\""),
                ("FUSEBOX_PAYMENTS__SLOW_CALL_THRESHOLD_MS", "800"),
                ("FUSEBOX_PAYMENTS__HALF_OPEN__RAMP", r#"{"stages_percent": [25, 50], "stage": "5s"}"#),
                ("FUSEBOX_PAYMENTS__LOCAL__TRIP__CONSECUTIVE_FAILURES", "4"),
                ("FUSEBOX_PAYMENTS_OTHER__QUORUM", "7"),
                ("FUSEBOX__QUORUM", "7"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        let built = BreakerConfig::builder()
            .failure_rate(0.25)
            .minimum_calls(20)
            .count_window(50)
            .quorum(2)
            .open_for(30 * SECOND)
            .outage(OutagePolicy::FailOpen, 2 * SECOND)
            .slow_call_threshold(Duration::from_millis(800))
            .ramp(&[25, 50], 5 * SECOND)
            .local_overlay(|local| local.consecutive_failures(4))
            .build()
            .unwrap();
        assert_eq!(loaded, built);
    }

    #[test]
    fn env_vars_override_a_base_switching_variants_and_turning_parts_off() {
        let base = BreakerConfig::builder()
            .exponential_backoff(SECOND, 60 * SECOND, 2, 0.1)
            .outage(OutagePolicy::LocalOnly, 10 * SECOND)
            .build()
            .unwrap();
        let loaded = env(
            base.clone(),
            &[
                ("FUSEBOX_PAYMENTS__OPEN__FIXED__DURATION_MS", "5000"),
                ("FUSEBOX_PAYMENTS__TRIP__WINDOW__TIME__DURATION", "10s"),
                ("FUSEBOX_PAYMENTS__TRIP__WINDOW__TIME__BUCKETS", "10"),
                ("FUSEBOX_PAYMENTS__TRIP__MINIMUM_CALLS", "5"),
                ("FUSEBOX_PAYMENTS__OUTAGE__POLICY", "last_known"),
                ("FUSEBOX_PAYMENTS__LOCAL", "null"),
            ],
        )
        .unwrap();
        assert_eq!(loaded.open, OpenPolicy::Fixed { duration_ms: 5_000 });
        assert_eq!(loaded.trip.window, WindowConfig::Time { duration_ms: 10_000, buckets: 10 });
        assert_eq!(loaded.outage.grace_ms, 10_000, "the base's grace stays");
        assert_eq!(loaded.local, None);
        let expected = BreakerConfigBuilder::from(base)
            .open_for(5 * SECOND)
            .time_window(10 * SECOND, 10)
            .minimum_calls(5)
            .outage(OutagePolicy::LastKnown, 10 * SECOND)
            .no_local_overlay()
            .build()
            .unwrap();
        assert_eq!(loaded, expected);
        // Back from fixed to exponential: the new variant's fields all come from the variables.
        let back = env(
            loaded,
            &[
                ("FUSEBOX_PAYMENTS__OPEN__EXPONENTIAL__INITIAL", "1s"),
                ("FUSEBOX_PAYMENTS__OPEN__EXPONENTIAL__MAX", "1m"),
                ("FUSEBOX_PAYMENTS__OPEN__EXPONENTIAL__MULTIPLIER", "2"),
                ("FUSEBOX_PAYMENTS__OPEN__EXPONENTIAL__JITTER", "0.1"),
            ],
        )
        .unwrap();
        assert_eq!(
            back.open,
            OpenPolicy::Exponential { initial_ms: 1_000, max_ms: 60_000, multiplier: 2, jitter: 0.1 }
        );
        // A base's text-free `_ms` form is replaced by text, and text by `_ms`.
        let grace = env(BreakerConfig::default(), &[("FUSEBOX_PAYMENTS__OUTAGE__GRACE_MS", "1")]).unwrap();
        assert_eq!(grace.outage.grace_ms, 1);
    }

    #[test]
    fn env_typos_name_the_variable() {
        let (vars, key, problem, shown) = env_error(&[("FUSEBOX_PAYMENTS__TRIP__FAILURE_RAT", "0.5")]);
        assert_eq!(vars, ["FUSEBOX_PAYMENTS__TRIP__FAILURE_RAT"]);
        assert!(key.starts_with("trip"), "{key}");
        assert!(problem.contains("unknown field `failure_rat`"), "{problem}");
        assert!(shown.contains("FUSEBOX_PAYMENTS__TRIP__FAILURE_RAT"), "{shown}");
        let (vars, _, problem, _) = env_error(&[("FUSEBOX_PAYMENTS__OPEN__FIXD__DURATION", "1s")]);
        assert_eq!(vars, ["FUSEBOX_PAYMENTS__OPEN__FIXD__DURATION"]);
        assert!(problem.contains("unknown variant `fixd`"), "{problem}");
        let (vars, _, problem, _) = env_error(&[("FUSEBOX_PAYMENTS__QUORUM", "two")]);
        assert_eq!(vars, ["FUSEBOX_PAYMENTS__QUORUM"]);
        assert!(problem.contains("invalid type: string \"two\""), "{problem}");
        let (vars, _, problem, _) = env_error(&[("FUSEBOX_PAYMENTS__TRIP____MINIMUM_CALLS", "5")]);
        assert_eq!(vars, ["FUSEBOX_PAYMENTS__TRIP____MINIMUM_CALLS"]);
        assert!(problem.contains("not a key path"), "{problem}");
    }

    #[test]
    fn env_bad_durations_and_both_forms_name_the_key_and_variables() {
        let (vars, key, problem, shown) = env_error(&[("FUSEBOX_PAYMENTS__OPEN__FIXED__DURATION", "6Os")]);
        assert_eq!(vars, ["FUSEBOX_PAYMENTS__OPEN__FIXED__DURATION"]);
        assert_eq!(key, "open.fixed.duration");
        assert!(problem.starts_with(r#"invalid duration "6Os": "#), "{problem}");
        assert!(
            shown.contains(r#"FUSEBOX_PAYMENTS__OPEN__FIXED__DURATION (open.fixed.duration): invalid duration "6Os""#),
            "{shown}"
        );
        let (vars, key, problem, _) =
            env_error(&[("FUSEBOX_PAYMENTS__OUTAGE__GRACE", "1s"), ("FUSEBOX_PAYMENTS__OUTAGE__GRACE_MS", "1000")]);
        assert_eq!(vars, ["FUSEBOX_PAYMENTS__OUTAGE__GRACE", "FUSEBOX_PAYMENTS__OUTAGE__GRACE_MS"]);
        assert_eq!(key, "outage");
        assert!(problem.contains("`grace_ms` and `grace` are both given"), "{problem}");
        let (vars, key, problem, _) = env_error(&[
            ("FUSEBOX_PAYMENTS__OPEN", r#"{"fixed": {"duration": "1s"}}"#),
            ("FUSEBOX_PAYMENTS__OPEN__FIXED__DURATION", "2s"),
        ]);
        assert_eq!(vars.len(), 2);
        assert_eq!(key, "open");
        assert!(problem.contains("set it once"), "{problem}");
    }

    #[test]
    fn env_results_are_validated() {
        let error = env(BreakerConfig::default(), &[("FUSEBOX_PAYMENTS__TRIP__FAILURE_RATE", "1.5")]).unwrap_err();
        let ConfigLoadError::Invalid(invalid) = &error else { panic!("{error}") };
        assert_eq!(invalid.field, "trip.failure_rate");
        let source = error.source().and_then(|s| s.downcast_ref::<ConfigError>());
        assert_eq!(source, Some(invalid));
        // No variable at all: the base, validated.
        assert_eq!(env(BreakerConfig::default(), &[]).unwrap(), BreakerConfig::default());
        let bad_base = BreakerConfig { quorum: 0, ..BreakerConfig::default() };
        assert!(matches!(env(bad_base, &[]), Err(ConfigLoadError::Invalid(e)) if e.field == "quorum"));
    }

    /// `from_env` reads the process's environment: checked in a child process of this test
    /// binary, given the variables (setting them here would race the other tests).
    #[test]
    fn from_env_reads_the_process_environment() {
        const PREFIX: &str = "FUSEBOX_LOAD_TEST";
        if std::env::var_os("FUSEBOX_LOAD_TEST__QUORUM").is_some() {
            let config = BreakerConfig::from_env(PREFIX).unwrap();
            assert_eq!(config, BreakerConfig::builder().quorum(3).open_for(90 * SECOND).build().unwrap());
            return;
        }
        assert_eq!(BreakerConfig::from_env(PREFIX).unwrap(), BreakerConfig::default(), "no variable set here");
        let name = "load::tests::from_env_reads_the_process_environment";
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--test-threads=1"])
            .env("FUSEBOX_LOAD_TEST__QUORUM", "3")
            .env("FUSEBOX_LOAD_TEST__OPEN__FIXED__DURATION", "1m 30s")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&child.stdout);
        assert!(child.status.success(), "{stdout}{}", String::from_utf8_lossy(&child.stderr));
        assert!(stdout.contains("1 passed"), "the child ran the check: {stdout}");
    }

    #[cfg(feature = "toml")]
    mod toml_files {
        use super::*;

        /// Every section, durations as text and as `_ms`.
        const GOOD: &str = r#"
quorum = 2
slow_call_threshold = "800ms"
seed = 7

[trip]
window = { count = { calls = 50 } }
minimum_calls = 20
failure_rate = 0.25
slow_call_rate = 0.5
burn_rate = { objective = 0.999, long_window = "1h", short_window_ms = 300000, factor = 14.4 }

[open.exponential]
initial = "1s"
max = "5m"
multiplier = 2
jitter = 0.1

[half_open]
probe_budget = 6
success_threshold = 3
max_wait = "20s"
ramp = { stages_percent = [25, 50], stage = "5s" }

[health_check]
initial_interval = "2s"
max_interval = "1m"
successes_required = 2
closes_directly = false

# A section given takes its missing fields from its type's defaults: `local.trip` from
# the fleet's trip defaults (window of 100), not the overlay's (50), hence both here.
[local.trip]
window = { count = { calls = 50 } }
minimum_calls = 20
consecutive_failures = 5
[local.open.fixed]
duration = "10s"

[outage]
policy = "local_only"
grace = "10s"
"#;

        fn toml_error(text: &str) -> (Option<String>, Option<(usize, usize)>, String, String) {
            match BreakerConfig::from_toml_str(text).unwrap_err() {
                e @ ConfigLoadError::Toml { .. } => {
                    let shown = e.to_string();
                    let ConfigLoadError::Toml { key, position, problem, .. } = e else { unreachable!() };
                    (key, position, problem, shown)
                }
                other => panic!("not a TOML error: {other}"),
            }
        }

        #[test]
        fn a_good_file_equals_the_builders_config() {
            let loaded = BreakerConfig::from_toml_str(GOOD).unwrap();
            let built = BreakerConfig::builder()
                .quorum(2)
                .slow_calls(Duration::from_millis(800), 0.5)
                .seed(7)
                .count_window(50)
                .minimum_calls(20)
                .failure_rate(0.25)
                .burn_rate(0.999, 3600 * SECOND, 300 * SECOND, 14.4)
                .exponential_backoff(SECOND, 300 * SECOND, 2, 0.1)
                .half_open_probes(6, 3)
                .half_open_max_wait(20 * SECOND)
                .ramp(&[25, 50], 5 * SECOND)
                .health_checks(2 * SECOND, 60 * SECOND, 2)
                .local_overlay(|local| local.consecutive_failures(5).open_for(10 * SECOND))
                .outage(OutagePolicy::LocalOnly, 10 * SECOND)
                .build()
                .unwrap();
            assert_eq!(loaded, built);
            assert_eq!(BreakerConfig::from_toml_str("").unwrap(), BreakerConfig::default());
        }

        #[test]
        fn files_are_read_and_named_in_errors() {
            let dir = std::env::temp_dir().join(format!("fusebox-load-test-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let good = dir.join("good.toml");
            std::fs::write(&good, GOOD).unwrap();
            assert_eq!(BreakerConfig::from_toml_file(&good).unwrap(), BreakerConfig::from_toml_str(GOOD).unwrap());
            let bad = dir.join("bad.toml");
            std::fs::write(&bad, "[open.fixed]\nduration = \"6Os\"\n").unwrap();
            let shown = BreakerConfig::from_toml_file(&bad).unwrap_err().to_string();
            assert!(
                shown.starts_with(&format!(
                    "breaker config {}, line 2, column 12: open.fixed.duration: ",
                    bad.display()
                )),
                "{shown}"
            );
            let missing = dir.join("missing.toml");
            let error = BreakerConfig::from_toml_file(&missing).unwrap_err();
            assert!(matches!(&error, ConfigLoadError::Read { path, .. } if *path == missing), "{error}");
            assert!(error.source().and_then(|s| s.downcast_ref::<std::io::Error>()).is_some());
            std::fs::remove_dir_all(&dir).unwrap();
        }

        #[test]
        fn a_bad_duration_names_the_key_and_line() {
            let (key, position, problem, shown) = toml_error("quorum = 2\n\n[open.fixed]\nduration = \"6Os\"\n");
            assert_eq!(key.as_deref(), Some("open.fixed.duration"));
            assert_eq!(position, Some((4, 12)));
            assert!(problem.starts_with(r#"invalid duration "6Os": "#), "{problem}");
            assert!(shown.contains(r#"line 4, column 12: open.fixed.duration: invalid duration "6Os""#), "{shown}");
            let (key, _, problem, _) = toml_error("[open.fixed]\nduration = 60000\n");
            assert_eq!(key.as_deref(), Some("open.fixed.duration"));
            assert!(problem.contains("expected a duration such as"), "{problem}");
        }

        #[test]
        fn typos_name_the_key_and_line() {
            let (key, position, problem, _) = toml_error("quorum = 2\n[trip]\nfailure_rat = 0.5\n");
            assert!(key.as_deref().is_some_and(|k| k.starts_with("trip")), "{key:?}");
            assert_eq!(position.map(|p| p.0), Some(3));
            assert!(problem.contains("unknown field `failure_rat`"), "{problem}");
            let (_, position, problem, _) = toml_error("quorom = 2\n");
            assert_eq!(position.map(|p| p.0), Some(1));
            assert!(problem.contains("unknown field `quorom`"), "{problem}");
        }

        #[test]
        fn both_forms_of_a_duration_are_refused() {
            let (key, position, problem, _) =
                toml_error("[outage]\npolicy = \"fail_open\"\ngrace_ms = 1000\ngrace = \"1s\"\n");
            assert_eq!(key.as_deref(), Some("outage"));
            assert!(position.is_some());
            assert!(problem.contains("`grace_ms` and `grace` are both given"), "{problem}");
        }

        #[test]
        fn syntax_errors_have_a_position_and_invalid_configs_a_field() {
            let (key, position, _, _) = toml_error("quorum = \n");
            assert_eq!(key, None);
            assert_eq!(position.map(|p| p.0), Some(1));
            let error = BreakerConfig::from_toml_str("[trip]\nfailure_rate = 1.5\n").unwrap_err();
            assert!(matches!(&error, ConfigLoadError::Invalid(e) if e.field == "trip.failure_rate"), "{error}");
        }
    }
}
