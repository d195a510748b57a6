//! The template language: MiniJinja expressions in `{{ … }}`.
//!
//! A string that is exactly one `{{ expr }}` evaluates to the expression's
//! JSON value with its type kept (`"{{ inputs.amount }}"` is a number,
//! `"{{ steps.extract.output }}"` an object); any other string renders to a
//! string. `when` and `for_each` are bare expressions.

use std::sync::OnceLock;

use minijinja::Environment;
use serde_json::Value;

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env
    })
}

/// The expression inside a string that is exactly one `{{ … }}`.
fn sole_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then_some(inner.trim())
}

/// Evaluates an expression to JSON.
pub fn eval(expr: &str, ctx: &Value) -> Result<Value, String> {
    let compiled = env()
        .compile_expression(expr)
        .map_err(|e| format!("{expr:?}: {e}"))?;
    let value = compiled.eval(ctx).map_err(|e| format!("{expr:?}: {e}"))?;
    serde_json::to_value(&value).map_err(|e| format!("{expr:?}: {e}"))
}

/// Evaluates an expression for its truth (`when`).
pub fn truthy(expr: &str, ctx: &Value) -> Result<bool, String> {
    let compiled = env()
        .compile_expression(expr)
        .map_err(|e| format!("{expr:?}: {e}"))?;
    compiled
        .eval(ctx)
        .map(|v| v.is_true())
        .map_err(|e| format!("{expr:?}: {e}"))
}

/// Whether any string inside `value` is a template (rendering it would
/// change it).
pub fn has_templates(value: &Value) -> bool {
    match value {
        Value::String(s) => is_template(s),
        Value::Array(items) => items.iter().any(has_templates),
        Value::Object(map) => map.values().any(has_templates),
        _ => false,
    }
}

/// Whether `s` holds template syntax (else it renders as itself).
fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// Renders every string inside `value`.
pub fn render(value: &Value, ctx: &Value) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => match sole_expression(s) {
            Some(expr) => eval(expr, ctx)?,
            None if is_template(s) => Value::String(
                env()
                    .render_str(s, ctx)
                    .map_err(|e| format!("{s:?}: {e}"))?,
            ),
            None => value.clone(),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render(v, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render(v, ctx)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Renders a string template to a string (approval messages).
pub fn render_text(s: &str, ctx: &Value) -> Result<String, String> {
    env().render_str(s, ctx).map_err(|e| format!("{s:?}: {e}"))
}

/// The variables a template string or expression refers to, as dotted
/// paths (`inputs.amount`, `steps.extract.output.rows`); a syntax error
/// is returned as the error.
pub fn references(source: &str, is_expression: bool) -> Result<Vec<String>, String> {
    let names = if is_expression {
        env()
            .compile_expression(source)
            .map_err(|e| e.to_string())?
            .undeclared_variables(true)
    } else {
        env()
            .template_from_str(source)
            .map_err(|e| e.to_string())?
            .undeclared_variables(true)
    };
    let mut names: Vec<String> = names.into_iter().collect();
    names.sort();
    Ok(names)
}

/// Every template string inside a JSON value.
pub fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if is_template(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sole_expression_keeps_its_type_and_others_render_to_text() {
        let ctx = json!({"inputs": {"amount": 2500, "item": "laptop"}, "steps": {"a": {"output": {"rows": [1, 2]}}}});
        let out = render(&json!({"n": "{{ inputs.amount }}", "rows": "{{ steps.a.output.rows }}", "msg": "buy {{ inputs.item }}", "plain": "x"}), &ctx).unwrap();
        assert_eq!(
            out,
            json!({"n": 2500, "rows": [1, 2], "msg": "buy laptop", "plain": "x"})
        );
    }

    #[test]
    fn a_payload_is_a_template_when_any_string_inside_it_is() {
        assert!(!has_templates(
            &json!({"ms": 1000, "tags": ["a", "b"], "note": "no braces"})
        ));
        assert!(has_templates(&json!({"deep": [{"x": "{{ inputs.a }}"}]})));
        assert!(has_templates(&json!("{% if x %}y{% endif %}")));
    }

    #[test]
    fn conditions_and_references() {
        let ctx = json!({"inputs": {"amount": 2500}});
        assert!(truthy("inputs.amount > 1000", &ctx).unwrap());
        assert!(!truthy("inputs.amount > 5000", &ctx).unwrap());
        assert_eq!(
            references("inputs.amount > 1 and steps.x.output.ok", true).unwrap(),
            vec!["inputs.amount", "steps.x.output.ok"]
        );
        assert!(references("{{ inputs.", false).is_err());
    }
}
