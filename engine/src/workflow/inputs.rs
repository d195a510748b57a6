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
/// (`inputs.amount`), all of them at once: a form then marks every field
/// at fault in one go. Optional inputs without a value are `null`.
pub fn validate_inputs(
    def: &Definition,
    provided: Map<String, Value>,
) -> Result<Map<String, Value>, Vec<FieldError>> {
    let mut errors: Vec<FieldError> = provided
        .keys()
        .filter(|k| !def.inputs.contains_key(*k))
        .map(|unknown| {
            FieldError::new(
                format!("inputs.{unknown}"),
                format!("workflow {:?} has no input {unknown:?}", def.name),
            )
        })
        .collect();
    let mut out = Map::new();
    for (name, spec) in &def.inputs {
        let field = format!("inputs.{name}");
        let value = match provided.get(name).or(spec.default.as_ref()) {
            Some(v) => v.clone(),
            None if spec.required => {
                errors.push(FieldError::new(field, "is required"));
                continue;
            }
            None => Value::Null,
        };
        if !value.is_null() {
            if let Err(m) = fits(spec, &value) {
                errors.push(FieldError::new(field, m));
                continue;
            }
        }
        out.insert(name.clone(), value);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Several input errors as one line, for places that report a sentence
/// (a schedule's or a wait's failure): `inputs.a: is required; …`.
pub fn input_errors_text(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
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

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn every_bad_input_is_named_at_once() {
        let errors = validate_inputs(
            &def(),
            inputs(json!({"region": "mars", "note": 3, "color": "red"})),
        )
        .unwrap_err();
        assert_eq!(
            input_errors_text(&errors),
            "inputs.color: workflow \"d\" has no input \"color\"; \
             inputs.amount: is required; \
             inputs.note: must be a string, got a number; \
             inputs.region: must be one of eu, us"
        );
        assert_eq!(
            fields(errors),
            [
                "inputs.color",
                "inputs.amount",
                "inputs.note",
                "inputs.region"
            ]
        );
    }

    #[test]
    fn defaults_fill_in_and_bad_inputs_are_named() {
        let ok = validate_inputs(&def(), inputs(json!({"amount": 3}))).unwrap();
        assert_eq!(
            Value::Object(ok),
            json!({"amount": 3, "region": "eu", "note": null})
        );
        assert_eq!(
            validate_inputs(&def(), inputs(json!({}))).unwrap_err()[0].field,
            "inputs.amount"
        );
        assert_eq!(
            validate_inputs(&def(), inputs(json!({"amount": "x"}))).unwrap_err()[0].field,
            "inputs.amount"
        );
        assert_eq!(
            validate_inputs(&def(), inputs(json!({"amount": 1, "region": "mars"}))).unwrap_err()[0]
                .field,
            "inputs.region"
        );
        assert_eq!(
            validate_inputs(&def(), inputs(json!({"amount": 1, "color": "red"}))).unwrap_err()[0]
                .field,
            "inputs.color"
        );
    }
}
