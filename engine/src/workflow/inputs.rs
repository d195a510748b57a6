//! A run's inputs, checked against the definition's declarations.

use serde_json::{Map, Value};

use super::definition::{Definition, InputSpec, InputType};
use crate::error::FieldError;

/// Whether `value` fits the input's type (and, for an enum, its values).
pub(super) fn fits(spec: &InputSpec, value: &Value) -> Result<(), String> {
    match (spec.kind, value) {
        (InputType::String, Value::String(_))
        | (InputType::Number, Value::Number(_))
        | (InputType::Boolean, Value::Bool(_)) => Ok(()),
        (InputType::Enum, Value::String(s)) if spec.values.contains(s) => Ok(()),
        (InputType::Enum, _) => Err(format!("must be one of {}", spec.values.join(", "))),
        (kind, other) => Err(format!(
            "must be a {}, got {}",
            type_name(kind),
            json_type(other)
        )),
    }
}

fn type_name(kind: InputType) -> &'static str {
    match kind {
        InputType::String => "string",
        InputType::Number => "number",
        InputType::Boolean => "boolean",
        InputType::Enum => "enum value",
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Checks the inputs a run is started with and fills in defaults. Unknown,
/// missing required and wrongly typed inputs are refused by name
/// (`inputs.amount`). Optional inputs without a value are `null`.
pub fn validate_inputs(
    def: &Definition,
    provided: Map<String, Value>,
) -> Result<Map<String, Value>, FieldError> {
    if let Some(unknown) = provided.keys().find(|k| !def.inputs.contains_key(*k)) {
        return Err(FieldError::new(
            format!("inputs.{unknown}"),
            format!("workflow {:?} has no input {unknown:?}", def.name),
        ));
    }
    let mut out = Map::new();
    for (name, spec) in &def.inputs {
        let field = format!("inputs.{name}");
        let value = match provided.get(name).or(spec.default.as_ref()) {
            Some(v) => v.clone(),
            None if spec.required => return Err(FieldError::new(field, "is required")),
            None => Value::Null,
        };
        if !value.is_null() {
            fits(spec, &value).map_err(|m| FieldError::new(&field, m))?;
        }
        out.insert(name.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def() -> Definition {
        serde_json::from_value(json!({
            "name": "d",
            "inputs": {
                "amount": {"type": "number", "required": true},
                "region": {"type": "enum", "values": ["eu", "us"], "default": "eu"},
                "note": {"type": "string"}
            },
            "steps": []
        }))
        .unwrap()
    }

    fn inputs(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_fill_in_and_bad_inputs_are_named() {
        let ok = validate_inputs(&def(), inputs(json!({"amount": 3}))).unwrap();
        assert_eq!(
            Value::Object(ok),
            json!({"amount": 3, "region": "eu", "note": null})
        );
        assert_eq!(
            validate_inputs(&def(), inputs(json!({})))
                .unwrap_err()
                .field,
            "inputs.amount"
        );
        assert_eq!(
            validate_inputs(&def(), inputs(json!({"amount": "x"})))
                .unwrap_err()
                .field,
            "inputs.amount"
        );
        assert_eq!(
            validate_inputs(&def(), inputs(json!({"amount": 1, "region": "mars"})))
                .unwrap_err()
                .field,
            "inputs.region"
        );
        assert_eq!(
            validate_inputs(&def(), inputs(json!({"amount": 1, "color": "red"})))
                .unwrap_err()
                .field,
            "inputs.color"
        );
    }
}
