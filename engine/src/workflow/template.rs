//! The template language: MiniJinja expressions in `{{ … }}`.
//!
//! A string that is exactly one `{{ expr }}` evaluates to the expression's
//! JSON value with its type kept (`"{{ inputs.amount }}"` is a number,
//! `"{{ steps.extract.output }}"` an object); any other string renders to a
//! string. `when` and `for_each` are bare expressions.

use std::sync::OnceLock;

use drover_protocol::limits::{MAX_RENDERED_BYTES, TEMPLATE_FUEL};
use minijinja::Environment;
use serde_json::Value;

/// A template context, converted once from JSON: per-item contexts of a
/// `for_each` step layer `item` and `index` over it without copying it.
pub type Context = minijinja::Value;

/// Every evaluation runs on fuel ([`TEMPLATE_FUEL`] instructions), so a
/// nested loop ends with an error in bounded time instead of holding the
/// store's writer; rendered text is cut off at [`MAX_RENDERED_BYTES`].
fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env
    })
}

/// The context of a JSON object (`inputs`, `steps`, `run`).
pub fn context(json: &Value) -> Context {
    minijinja::Value::from_serialize(json)
}

/// `ctx` with `item` and `index` added (a `for_each` step's payload).
pub fn with_item(ctx: &Context, item: &Value, index: usize) -> Context {
    minijinja::context! { item => minijinja::Value::from_serialize(item), index => index, ..ctx.clone() }
}

/// The expression inside a string that is exactly one `{{ … }}`.
fn sole_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then_some(inner.trim())
}

/// Evaluates an expression to a MiniJinja value.
fn eval_value(expr: &str, ctx: &Context) -> Result<minijinja::Value, String> {
    env()
        .compile_expression(expr)
        .and_then(|compiled| compiled.eval(ctx))
        .map_err(|e| format!("{expr:?}: {e}"))
}

/// A value as JSON, refused when it is larger than [`MAX_RENDERED_BYTES`].
fn to_json(what: &str, value: &minijinja::Value) -> Result<Value, String> {
    let mut out = Limited::default();
    serde_json::to_writer(&mut out, value).map_err(|e| match out.over {
        true => too_large(what),
        false => format!("{what:?}: {e}"),
    })?;
    serde_json::from_slice(&out.bytes).map_err(|e| format!("{what:?}: {e}"))
}

fn too_large(what: &str) -> String {
    let shown: String = what.chars().take(80).collect();
    format!("{shown:?}: the result is larger than the limit of {MAX_RENDERED_BYTES} bytes")
}

/// A writer that refuses to hold more than [`MAX_RENDERED_BYTES`].
#[derive(Default)]
struct Limited {
    bytes: Vec<u8>,
    over: bool,
}

impl std::io::Write for Limited {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED_BYTES {
            self.over = true;
            return Err(std::io::Error::other("rendered text too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Evaluates an expression to JSON.
pub fn eval(expr: &str, ctx: &Context) -> Result<Value, String> {
    to_json(expr, &eval_value(expr, ctx)?)
}

/// Evaluates an expression that must give a list of at most `max` items
/// (`for_each`); a longer one is refused before it is copied.
pub fn eval_list(expr: &str, ctx: &Context, max: usize) -> Result<Vec<Value>, String> {
    let value = eval_value(expr, ctx)?;
    let is_list = matches!(
        value.kind(),
        minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Iterable
    );
    if !is_list {
        return Err(format!("for_each {expr:?} gave {value}, not a list"));
    }
    let iter = value.try_iter().map_err(|e| format!("{expr:?}: {e}"))?;
    let mut items = Vec::new();
    for item in iter {
        if items.len() == max {
            return Err(format!(
                "for_each {expr:?} gives more than {max} items, the limit of this server"
            ));
        }
        items.push(to_json(expr, &item)?);
    }
    Ok(items)
}

/// Evaluates an expression for its truth (`when`).
pub fn truthy(expr: &str, ctx: &Context) -> Result<bool, String> {
    eval_value(expr, ctx).map(|v| v.is_true())
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
pub fn render(value: &Value, ctx: &Context) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => match sole_expression(s) {
            Some(expr) => eval(expr, ctx)?,
            None if is_template(s) => Value::String(render_text(s, ctx)?),
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

/// Renders a string template to a string (approval messages, payload text).
pub fn render_text(s: &str, ctx: &Context) -> Result<String, String> {
    let template = env()
        .template_from_str(s)
        .map_err(|e| format!("{s:?}: {e}"))?;
    let mut out = Limited::default();
    match template.render_captured_to(ctx, &mut out) {
        Ok(_) => String::from_utf8(out.bytes).map_err(|e| format!("{s:?}: {e}")),
        Err(_) if out.over => Err(too_large(s)),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// Whether `name` is one of the template language's global functions
/// (`range`, `dict`, `namespace`): a template may call them, as it may use
/// filters, and fuel bounds what they cost.
pub fn is_global(name: &str) -> bool {
    let head = name.split('.').next().unwrap_or(name);
    env().globals().any(|(g, _)| g == head)
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

    fn ctx(json: Value) -> Context {
        context(&json)
    }

    #[test]
    fn a_sole_expression_keeps_its_type_and_others_render_to_text() {
        let ctx = ctx(
            json!({"inputs": {"amount": 2500, "item": "laptop"}, "steps": {"a": {"output": {"rows": [1, 2]}}}}),
        );
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
        let ctx = ctx(json!({"inputs": {"amount": 2500}}));
        assert!(truthy("inputs.amount > 1000", &ctx).unwrap());
        assert!(!truthy("inputs.amount > 5000", &ctx).unwrap());
        assert_eq!(
            references("inputs.amount > 1 and steps.x.output.ok", true).unwrap(),
            vec!["inputs.amount", "steps.x.output.ok"]
        );
        assert!(references("{{ inputs.", false).is_err());
    }

    #[test]
    fn a_nested_loop_runs_out_of_fuel() {
        // Fuel counts instructions, so the error bounds the work whatever
        // the machine's load: no clock needed.
        let err = render_text(
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ i * j }}{% endfor %}{% endfor %}",
            &ctx(json!({})),
        )
        .unwrap_err();
        assert!(err.contains("fuel") || err.contains("larger than"), "{err}");
        let err = eval(
            "range(100000) | map('string') | join(',') * 100",
            &ctx(json!({})),
        )
        .unwrap_err();
        assert!(
            err.contains("fuel") || err.contains("larger than") || err.contains("too large"),
            "{err}"
        );
    }

    #[test]
    fn rendered_text_is_capped() {
        let err = render_text("{{ 'x' * 2000000 }}", &ctx(json!({}))).unwrap_err();
        assert!(err.contains("larger than the limit"), "{err}");
        let err = eval("'x' * 2000000", &ctx(json!({}))).unwrap_err();
        assert!(err.contains("larger than the limit"), "{err}");
    }

    #[test]
    fn a_list_longer_than_the_cap_is_refused_before_it_is_copied() {
        let c = ctx(json!({"big": (0..20).collect::<Vec<_>>()}));
        assert_eq!(eval_list("big", &c, 20).unwrap().len(), 20);
        let err = eval_list("big", &c, 19).unwrap_err();
        assert!(err.contains("more than 19 items"), "{err}");
        // A million items made lazily by one instruction are not materialized.
        let err = eval_list("range(1000) * 1000", &c, 10_000).unwrap_err();
        assert!(err.contains("more than 10000 items"), "{err}");
        assert!(eval_list("42", &c, 10).unwrap_err().contains("not a list"));
    }

    #[test]
    fn item_contexts_layer_over_the_shared_one() {
        let c = ctx(json!({"inputs": {"a": 1}}));
        let per_item = with_item(&c, &json!("x"), 3);
        assert_eq!(
            render(
                &json!({"a": "{{ inputs.a }}", "i": "{{ index }}", "s": "{{ item }}!"}),
                &per_item
            )
            .unwrap(),
            json!({"a": 1, "i": 3, "s": "x!"})
        );
    }
}
