//! plan, apply and status: the JSON schema, and the GitOps walkthrough on the local platform.

use serde_json::Value;

use fusionizer::plan::testing::Fake;
use fusionizer::plan::{self, render};
use fusionizer::platform::FunctionState;

/// `docs/plan-schema.json`.
fn plan_schema() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/plan-schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Validates `value` against `schema` (the JSON Schema subset `docs/plan-schema.json` uses:
/// `$ref` into `#/$defs`, `type`, `const`, `enum`, `required`, `properties`,
/// `additionalProperties: false`, `items`, `minimum`). Any other keyword is a test failure, so
/// the schema cannot silently outgrow the validator.
fn validate(root: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        errors.push(format!("{at}: schema is not an object"));
        return;
    };
    for (keyword, rule) in schema {
        match keyword.as_str() {
            "$schema" | "title" | "description" | "$defs" => {}
            "$ref" => {
                let name = rule
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                    .expect("only #/$defs refs");
                validate(root, &root["$defs"][name], value, at, errors);
            }
            "type" => {
                let types: Vec<&str> = match rule {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
                    other => panic!("bad type {other}"),
                };
                let ok = types.iter().any(|t| match *t {
                    "object" => value.is_object(),
                    "array" => value.is_array(),
                    "string" => value.is_string(),
                    "integer" => value.is_u64() || value.is_i64(),
                    "number" => value.is_number(),
                    "boolean" => value.is_boolean(),
                    "null" => value.is_null(),
                    other => panic!("unknown type {other}"),
                });
                if !ok {
                    errors.push(format!("{at}: expected {types:?}, got {value}"));
                }
            }
            "const" => {
                if value != rule {
                    errors.push(format!("{at}: expected {rule}, got {value}"));
                }
            }
            "enum" => {
                if !rule.as_array().unwrap().contains(value) {
                    errors.push(format!("{at}: {value} is not one of {rule}"));
                }
            }
            "minimum" => {
                if value.as_f64().is_some_and(|v| v < rule.as_f64().unwrap()) {
                    errors.push(format!("{at}: {value} is below {rule}"));
                }
            }
            "required" => {
                if let Some(obj) = value.as_object() {
                    for key in rule.as_array().unwrap() {
                        if !obj.contains_key(key.as_str().unwrap()) {
                            errors.push(format!(
                                "{at}: missing required `{}`",
                                key.as_str().unwrap()
                            ));
                        }
                    }
                }
            }
            "properties" => {
                if let Some(obj) = value.as_object() {
                    for (key, sub) in rule.as_object().unwrap() {
                        if let Some(v) = obj.get(key) {
                            validate(root, sub, v, &format!("{at}.{key}"), errors);
                        }
                    }
                }
            }
            "additionalProperties" => {
                assert_eq!(
                    rule,
                    &Value::Bool(false),
                    "only additionalProperties: false"
                );
                if let Some(obj) = value.as_object() {
                    let known = schema["properties"].as_object().unwrap();
                    for key in obj.keys() {
                        if !known.contains_key(key) {
                            errors.push(format!("{at}: unexpected `{key}`"));
                        }
                    }
                }
            }
            "items" => {
                if let Some(items) = value.as_array() {
                    for (i, item) in items.iter().enumerate() {
                        validate(root, rule, item, &format!("{at}[{i}]"), errors);
                    }
                }
            }
            other => panic!("the test validator does not support `{other}`"),
        }
    }
}

/// The schema violations of `json` (a whole `plan --output json`).
pub fn schema_errors(json: &str) -> Vec<String> {
    let schema = plan_schema();
    let value: Value = serde_json::from_str(json).expect("plan JSON parses");
    let mut errors = Vec::new();
    validate(&schema, &schema, &value, "$", &mut errors);
    errors
}

#[test]
fn json_of_every_action_validates_against_the_schema() {
    let (a, b, c, d) = (
        Fake::new("shop", &["taska"]),
        Fake::new("shop", &["taskb"]),
        Fake::new("shop", &["taskc"]),
        Fake::new("shop", &["taskd"]),
    );
    let desired = vec![
        a.clone().version("taska", "v2").env("API_KEY", "k").build(),
        b.build(),
        d.build(),
    ];
    let live = vec![
        a.live(),
        b.live_in(FunctionState::Error("boom".into())),
        c.live(),
    ];
    let plan = plan::compute("shop", &desired, &live, &[]).unwrap();
    let actions: Vec<&str> = plan.changes.iter().map(|c| c.action.word()).collect();
    assert_eq!(actions, vec!["update", "replace", "create", "delete"]);
    assert_eq!(schema_errors(&render::json(&plan)), Vec::<String>::new());

    let none = plan::compute("shop", &[a.build()], &[a.live()], &[]).unwrap();
    assert_eq!(schema_errors(&render::json(&none)), Vec::<String>::new());
}

#[test]
fn the_schema_check_catches_a_broken_plan() {
    let a = Fake::new("shop", &["taska"]);
    let plan = plan::compute("shop", &[a.build()], &[], &[]).unwrap();
    let mut value: Value = serde_json::from_str(&render::json(&plan)).unwrap();
    value["changes"][0]["action"] = Value::String("upsert".into());
    value["changes"][0].as_object_mut().unwrap().remove("tasks");
    value["summary"]["add"] = Value::from(-1);
    value["extra"] = Value::Bool(true);
    let errors = schema_errors(&value.to_string());
    assert_eq!(
        errors,
        vec![
            "$: unexpected `extra`".to_string(),
            "$.changes[0]: missing required `tasks`".to_string(),
            "$.changes[0].action: \"upsert\" is not one of [\"create\",\"update\",\"replace\",\"delete\"]".to_string(),
            "$.summary.add: -1 is below 0".to_string(),
        ]
    );
}
