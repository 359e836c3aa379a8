//! The JSON Schemas under `schemas/` against the decoders they describe
//! (`transport_nats::codec`): foreign outcomes, decisions and operator commands. For each:
//!
//! - the schema is a valid draft 2020-12 schema, its `$id` names its file, and every `$ref`
//!   resolves among the schemas (offline: nothing is fetched);
//! - the cases of `schemas/cases/<name>-v1.json` hold: `accepted` pass both the decoder and
//!   the schema, `refused` fail both, and `beyond_schema` fail the decoder only, for a rule
//!   the schema says in words that it cannot state;
//! - the schema's own `examples` and the documented examples of `docs/wire-format.md` pass
//!   both;
//! - every one-place change of every accepted case and example (a number written otherwise
//!   or out of range, a string emptied, too long or another name, a field removed, added or
//!   null, an element removed or repeated) gets the same answer from both, except where the
//!   decoder names one of the rules beyond the schema.
//!
//! So the schemas, which foreign clients validate against, cannot drift from what nodes
//! accept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use breaker_actors::machine::{BreakerName, NodeId};
use serde_json::{Map, Value, json};
use transport_nats::codec::{
    DecodeError, JSON, Limits, decode_command, decode_config, decode_config_record, decode_decision,
    decode_describe_reply, decode_outcome, encode_command, encode_config, encode_config_record, encode_decision,
    encode_describe_reply,
};

/// The schemas this test knows, by file stem.
const NAMES: [&str; 3] = ["outcome-v1", "decision-v1", "command-v1"];
/// Where every schema's `$id` points: the directory, then the file name.
const ID_BASE: &str = "https://example.invalid/fusebox/schemas/";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_json(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The schemas by name, each checked against the meta-schema and its `$id`.
fn schemas() -> BTreeMap<&'static str, Value> {
    NAMES
        .iter()
        .map(|name| {
            let schema = read_json(&root().join(format!("schemas/{name}.schema.json")));
            jsonschema::meta::validate(&schema).unwrap_or_else(|e| panic!("{name}: not a valid schema: {e}"));
            assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema", "{name}");
            assert_eq!(schema["$id"], format!("{ID_BASE}{name}.schema.json"), "{name}: $id must name its file");
            (*name, schema)
        })
        .collect()
}

/// What the decoder of one schema says of a payload.
type Decoder = fn(&Value, &[u8]) -> Result<(), DecodeError>;

fn name(subject: &Value, field: &str) -> String {
    subject[field].as_str().unwrap().to_owned()
}

fn outcome(subject: &Value, payload: &[u8]) -> Result<(), DecodeError> {
    let breaker = BreakerName::new(&name(subject, "breaker")).unwrap();
    let node = NodeId::new(&name(subject, "node")).unwrap();
    decode_outcome(&breaker, &node, Some(JSON), payload, &Limits::default()).map(drop)
}

fn decision(subject: &Value, payload: &[u8]) -> Result<(), DecodeError> {
    let breaker = BreakerName::new(&name(subject, "breaker")).unwrap();
    decode_decision(&breaker, payload, &Limits::default()).map(drop)
}

fn command(subject: &Value, payload: &[u8]) -> Result<(), DecodeError> {
    let breaker = BreakerName::new(&name(subject, "breaker")).unwrap();
    decode_command(&breaker, payload, &Limits::default()).map(drop)
}

/// One schema, its decoder, and the decoder's error kinds for the rules the schema cannot
/// state (its description says them in words).
struct Pair {
    name: &'static str,
    validator: jsonschema::Validator,
    decode: Decoder,
    beyond: &'static [&'static str],
    subject: Value,
}

impl Pair {
    /// `(decoder accepts, schema accepts, the decoder's error kind)`.
    fn judge(&self, message: &Value) -> (bool, bool, Option<&'static str>) {
        let payload = serde_json::to_vec(message).unwrap();
        let decoded = (self.decode)(&self.subject, &payload);
        (decoded.is_ok(), self.validator.is_valid(message), decoded.err().map(|e| e.kind()))
    }

    fn assert_agree(&self, message: &Value, what: &str) {
        let (decoder, schema, kind) = self.judge(message);
        let beyond = !decoder && schema && kind.is_some_and(|k| self.beyond.contains(&k));
        assert!(
            decoder == schema || beyond,
            "{}: {what}: the decoder says {} ({kind:?}), the schema says {}: {message}",
            self.name,
            if decoder { "yes" } else { "no" },
            if schema { "yes" } else { "no" },
        );
    }
}

fn pairs() -> Vec<Pair> {
    let schemas = schemas();
    let mut registry = jsonschema::Registry::new();
    for (name, schema) in &schemas {
        registry = registry.add(format!("{ID_BASE}{name}.schema.json"), schema.clone()).unwrap();
    }
    let registry = registry.prepare().unwrap();
    let decoders: [(&str, Decoder, &[&str]); 3] = [
        ("outcome-v1", outcome, &["wrong_breaker", "wrong_node"]),
        ("decision-v1", decision, &["wrong_breaker", "malformed_clock"]),
        ("command-v1", command, &["wrong_breaker"]),
    ];
    decoders
        .into_iter()
        .map(|(name, decode, beyond)| {
            let validator = jsonschema::options()
                .with_registry(&registry)
                .offline()
                .build(&schemas[name])
                .unwrap_or_else(|e| panic!("{name}: a $ref does not resolve: {e}"));
            let cases = read_json(&root().join(format!("schemas/cases/{name}.json")));
            Pair { name, validator, decode, beyond, subject: cases["subject"].clone() }
        })
        .collect()
}

fn cases(pair: &Pair) -> Value {
    read_json(&root().join(format!("schemas/cases/{}.json", pair.name)))
}

#[test]
fn the_cases_hold_for_decoder_and_schema_alike() {
    for pair in pairs() {
        let cases = cases(&pair);
        for message in cases["accepted"].as_array().unwrap() {
            assert_eq!(pair.judge(message), (true, true, None), "{}: accepted by both: {message}", pair.name);
        }
        for message in cases["refused"].as_array().unwrap() {
            let (decoder, schema, _) = pair.judge(message);
            assert_eq!((decoder, schema), (false, false), "{}: refused by both: {message}", pair.name);
        }
        for case in cases["beyond_schema"].as_array().unwrap() {
            assert!(case["why"].as_str().is_some_and(|w| !w.is_empty()), "{}: say why: {case}", pair.name);
            // A text is a document no parsed value can stand for (a key twice): the decoder
            // refuses it as malformed; a message breaks one of the rules beyond the schema.
            let (payload, value, refused_as) = match (&case["message"], case["text"].as_str()) {
                (Value::Null, Some(text)) => {
                    (text.as_bytes().to_vec(), serde_json::from_str(text).unwrap(), &["malformed"][..])
                }
                (message, None) => (serde_json::to_vec(message).unwrap(), message.clone(), pair.beyond),
                _ => panic!("{}: a beyond_schema case has a message or a text: {case}", pair.name),
            };
            let decoded = (pair.decode)(&pair.subject, &payload);
            let kind = decoded.as_ref().err().map(DecodeError::kind);
            assert!(
                kind.is_some_and(|k| refused_as.contains(&k)),
                "{}: the decoder refuses {case}: {kind:?}",
                pair.name
            );
            assert!(pair.validator.is_valid(&value), "{}: the schema cannot see this one: {case}", pair.name);
        }
    }
}

/// The documented examples of `docs/wire-format.md` by the name of their marker.
fn documented(marker: &str) -> Vec<Value> {
    let doc = std::fs::read_to_string(root().join("docs/wire-format.md")).unwrap();
    let mut found = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() != format!("<!-- example: {marker} -->") {
            continue;
        }
        assert_eq!(lines.next().map(str::trim), Some("```json"), "an example is a json block");
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        found.push(serde_json::from_str(&body.join("\n")).unwrap());
    }
    assert!(!found.is_empty(), "no example marked {marker}");
    found
}

/// Every accepted message this test knows for `pair`: its cases, the schema's examples and
/// the documented ones.
fn accepted(pair: &Pair, schema: &Value) -> Vec<Value> {
    let mut all = cases(pair)["accepted"].as_array().unwrap().clone();
    all.extend(schema["examples"].as_array().unwrap_or_else(|| panic!("{}: no examples", pair.name)).iter().cloned());
    let (marker, refused) = match pair.name {
        "outcome-v1" => ("outcome", "refused"),
        "decision-v1" => ("decision", ""),
        _ => ("command", "refused_command"),
    };
    all.extend(documented(marker));
    if !refused.is_empty() {
        for message in documented(refused) {
            let (decoder, schema, _) = pair.judge(&message);
            assert_eq!((decoder, schema), (false, false), "{}: documented as refused: {message}", pair.name);
        }
    }
    all
}

#[test]
fn the_schemas_examples_and_the_documented_ones_pass_both() {
    let schemas = schemas();
    for pair in pairs() {
        for message in accepted(&pair, &schemas[pair.name]) {
            assert_eq!(pair.judge(&message), (true, true, None), "{}: {message}", pair.name);
        }
    }
}

/// The documented decisions and commands of `docs/wire-format.md`, decoded and written
/// again, are what the document shows (as JSON values): the codec's wire types and the
/// document cannot drift apart, whatever happens to the core's types.
#[test]
fn the_documented_decisions_and_commands_are_written_as_documented() {
    const DOC: &str = "docs/wire-format.md";
    let limits = Limits::default();
    for example in documented("decision") {
        let breaker = BreakerName::new(&name(&example, "breaker")).unwrap();
        let decision = decode_decision(&breaker, &serde_json::to_vec(&example).unwrap(), &limits)
            .unwrap_or_else(|e| panic!("{DOC}: a documented decision does not decode ({e}): {example}"));
        let mut written: Value = serde_json::from_slice(&encode_decision(&decision).unwrap()).unwrap();
        // An example of a decision from before config versions leaves `config_version` out;
        // it reads as 0 and is written as 0.
        if example.get("config_version").is_none() {
            let config_version = written.as_object_mut().unwrap().remove("config_version");
            assert_eq!(config_version, Some(json!(0)), "{DOC}: {example}");
        }
        assert_eq!(written, example, "{DOC}: a documented decision is written otherwise than documented");
    }
    for example in documented("command") {
        let breaker = BreakerName::new(&name(&example, "breaker")).unwrap();
        let command = decode_command(&breaker, &serde_json::to_vec(&example).unwrap(), &limits)
            .unwrap_or_else(|e| panic!("{DOC}: a documented command does not decode ({e}): {example}"));
        let written: Value = serde_json::from_slice(&encode_command(&command).unwrap()).unwrap();
        assert_eq!(written, example, "{DOC}: a documented command is written otherwise than documented");
    }
}

/// The documented config bucket values of `docs/wire-format.md`, decoded and written
/// again, are what the document shows: the codec's config wire types and the document
/// cannot drift apart either.
#[test]
fn the_documented_configs_are_written_as_documented() {
    const DOC: &str = "docs/wire-format.md";
    let limits = Limits::default();
    for example in documented("config") {
        let record = decode_config_record(&serde_json::to_vec(&example).unwrap(), &limits)
            .unwrap_or_else(|e| panic!("{DOC}: a documented config does not decode ({e}): {example}"));
        let written: Value = serde_json::from_slice(&encode_config_record(&record).unwrap()).unwrap();
        assert_eq!(written, example, "{DOC}: a documented config is written otherwise than documented");
    }
}

/// The documented describe answers, decoded and written again, are what the document
/// shows but for `config`, which the document abbreviates (omitted fields take their
/// defaults) and which is written whole, as a config bucket value's `config` is.
#[test]
fn the_documented_describe_answers_are_written_as_documented() {
    const DOC: &str = "docs/wire-format.md";
    let limits = Limits::default();
    for mut example in documented("describe_reply") {
        let breaker = BreakerName::new(&name(&example, "breaker")).unwrap();
        let reply = decode_describe_reply(&breaker, &serde_json::to_vec(&example).unwrap(), &limits)
            .unwrap_or_else(|e| panic!("{DOC}: a documented describe answer does not decode ({e}): {example}"));
        let mut written: Value = serde_json::from_slice(&encode_describe_reply(&reply).unwrap()).unwrap();
        let config = example.as_object_mut().unwrap().remove("config").unwrap();
        let envelope = serde_json::to_vec(&json!({"version": 1, "config": config})).unwrap();
        let config = decode_config(&envelope, &limits).unwrap();
        let as_in_the_bucket: Value = serde_json::from_slice(&encode_config(&config).unwrap()).unwrap();
        assert_eq!(written.as_object_mut().unwrap().remove("config"), Some(as_in_the_bucket["config"].clone()));
        assert_eq!(written, example, "{DOC}: a documented describe answer is written otherwise than documented");
    }
}

/// What one place of a message may become.
fn replacements(value: &Value) -> Vec<Value> {
    let mut out = vec![Value::Null, json!([]), json!({})];
    match value {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                #[allow(clippy::cast_precision_loss)]
                out.extend([json!(u as f64), json!(u.saturating_add(1)), json!(0), json!(u64::MAX)]);
            }
            out.extend([json!(1.5), json!(-1), json!(1e20), json!(-1.0), json!("7"), json!(true)]);
        }
        Value::String(_) => out.extend([
            json!(""),
            json!("other-name"),
            json!("x".repeat(65)),
            json!("not a name!"),
            json!("\u{e9}".repeat(256)),
            json!("\u{e9}".repeat(257)),
            json!(7),
        ]),
        Value::Bool(b) => out.push(json!(!b)),
        Value::Null | Value::Array(_) | Value::Object(_) => out.push(json!("x")),
    }
    out
}

/// Every message that differs from `value` in one place.
fn mutants(value: &Value) -> Vec<Value> {
    let mut out = replacements(value);
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                for changed in mutants(child) {
                    let mut copy = map.clone();
                    copy.insert(key.clone(), changed);
                    out.push(Value::Object(copy));
                }
                let mut without = map.clone();
                without.remove(key);
                out.push(Value::Object(without));
            }
            let mut extra: Map<String, Value> = map.clone();
            extra.insert("not_a_field".to_owned(), json!(1));
            out.push(Value::Object(extra));
        }
        Value::Array(items) => {
            for (at, child) in items.iter().enumerate() {
                for changed in mutants(child) {
                    let mut copy = items.clone();
                    copy[at] = changed;
                    out.push(Value::Array(copy));
                }
                let mut without = items.clone();
                without.remove(at);
                out.push(Value::Array(without));
            }
            if let Some(last) = items.last() {
                let mut repeated = items.clone();
                repeated.push(last.clone());
                out.push(Value::Array(repeated));
            }
        }
        _ => {}
    }
    out
}

#[test]
fn every_one_place_change_gets_the_same_answer_from_decoder_and_schema() {
    let schemas = schemas();
    for pair in pairs() {
        let mut checked = 0;
        for message in accepted(&pair, &schemas[pair.name]) {
            for mutant in mutants(&message) {
                pair.assert_agree(&mutant, "a one-place change");
                checked += 1;
            }
        }
        assert!(checked > 100, "{}: only {checked} changes", pair.name);
        println!("{}: {checked} one-place changes agree", pair.name);
    }
}
