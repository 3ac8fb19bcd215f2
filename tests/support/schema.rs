//! A JSON Schema validator for the subset the documents in `docs/` use (`docs/plan-schema.json`,
//! the optimizer's schemas): enough to hold every JSON output against its published schema.

use serde_json::Value;

/// Validates `value` against `schema` (the JSON Schema subset `docs/plan-schema.json` uses:
/// `$ref` into `#/$defs`, `type`, `const`, `enum`, `required`, `properties`,
/// `additionalProperties: false`, `items`, `minimum`, `maximum`, `minItems`, `oneOf`; the last
/// three for the optimizer's schemas). Any other keyword is a test failure, so the schema cannot
/// silently outgrow the validator.
#[expect(
    clippy::too_many_lines,
    reason = "one match arm per JSON Schema keyword"
)]
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
            "maximum" => {
                if value.as_f64().is_some_and(|v| v > rule.as_f64().unwrap()) {
                    errors.push(format!("{at}: {value} is above {rule}"));
                }
            }
            "minItems" => {
                if value
                    .as_array()
                    .is_some_and(|a| (a.len() as u64) < rule.as_u64().unwrap())
                {
                    errors.push(format!("{at}: fewer than {rule} items"));
                }
            }
            "oneOf" => {
                let matching = rule
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|branch| {
                        let mut branch_errors = Vec::new();
                        validate(root, branch, value, at, &mut branch_errors);
                        branch_errors.is_empty()
                    })
                    .count();
                if matching != 1 {
                    errors.push(format!(
                        "{at}: matches {matching} of the `oneOf` branches, not 1"
                    ));
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

/// The violations of `value` against `docs/<schema>` (e.g. `optimize-schema.json`).
pub(crate) fn violations(schema: &str, value: &Value) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(schema);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut errors = Vec::new();
    validate(&schema, &schema, value, "$", &mut errors);
    errors
}

/// The violations of `json` (a whole `plan --output json`) against `docs/plan-schema.json`.
pub(crate) fn schema_errors(json: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(json).expect("plan JSON parses");
    violations("plan-schema.json", &value)
}
