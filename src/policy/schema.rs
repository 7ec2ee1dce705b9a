//! The JSON Schema (draft 2020-12) of policy files, generated from the key table.

use serde_json::{Map as JsonMap, Value as Json, json};

use super::keys::{Field, Kind, ROOT, Scalar};

fn scalar_schema(s: Scalar) -> Json {
    let amount = r"^[0-9]+(\.[0-9]+)?\s*[kM]?(\s*sats?)?$";
    let percent = r"^[0-9]+(\.[0-9]+)?\s*%$";
    match s {
        Scalar::Bool => json!({"type": "boolean"}),
        Scalar::Int(lo, hi) => json!({"type": "integer", "minimum": lo, "maximum": hi}),
        Scalar::Amount => json!({"oneOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": amount}
        ]}),
        Scalar::Percent => json!({"type": "string", "pattern": percent}),
        Scalar::Level => json!({"oneOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": percent},
            {"type": "string", "pattern": amount}
        ]}),
        Scalar::Duration => {
            json!({"type": "string", "pattern": r"^([0-9]+(s|m|h|d|w))+$"})
        }
        Scalar::FeeRate => json!({"type": "string",
            "pattern": r"^[0-9]+(\.[0-9]+)?\s*sat/(vB|vb|kw)$"}),
        Scalar::Cron => json!({"type": "string", "pattern": r"^\S+(\s+\S+){4}$"}),
        Scalar::TimeZone | Scalar::Regex | Scalar::ScriptPath => json!({"type": "string"}),
        Scalar::DateTime => json!({"type": "string",
            "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}$"}),
        Scalar::Name => json!({"type": "string", "pattern": r"^[A-Za-z0-9_.-]+$"}),
        Scalar::Member => json!({"type": "string",
            "pattern": r"^([0-9]+(x[0-9]+x[0-9]+)?|[0-9a-fA-F]{66})$"}),
        Scalar::ChanId => json!({"oneOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": r"^[0-9]+(x[0-9]+x[0-9]+)?$"}
        ]}),
        Scalar::Pubkey => json!({"type": "string", "pattern": r"^[0-9a-fA-F]{66}$"}),
        Scalar::Destination => json!({"type": "string"}),
        Scalar::Period => json!({"type": "string",
            "pattern": r"^(day|week|month|rolling\s+([0-9]+(s|m|h|d|w))+)$"}),
        Scalar::Age => json!({"oneOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": r"^[0-9]+d$"}
        ]}),
        Scalar::Enum(words) => json!({"type": "string", "enum": words}),
    }
}

fn kind_schema(kind: &Kind) -> Json {
    match kind {
        Kind::Map(fields) => map_schema(fields),
        Kind::Seq(item) => json!({"type": "array", "items": kind_schema(item)}),
        Kind::OneOrMany(s) => {
            json!({"oneOf": [scalar_schema(*s), {"type": "array", "items": scalar_schema(*s)}]})
        }
        Kind::Dict(item, key) => json!({
            "type": "object",
            "propertyNames": scalar_schema(*key),
            "additionalProperties": kind_schema(item)
        }),
        Kind::Scalar(s) => scalar_schema(*s),
        Kind::WordOrMap(words, fields) => json!({"oneOf": [
            {"type": "string", "enum": words},
            map_schema(fields)
        ]}),
    }
}

fn map_schema(fields: &[Field]) -> Json {
    let mut props = JsonMap::new();
    for field in fields {
        let mut s = kind_schema(&field.kind);
        if let Json::Object(o) = &mut s {
            o.insert("description".to_owned(), Json::String(field.doc.to_owned()));
        }
        props.insert(field.name.to_owned(), s);
    }
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    let mut out = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": props,
    });
    if !required.is_empty()
        && let Json::Object(o) = &mut out
    {
        o.insert("required".to_owned(), json!(required));
    }
    out
}

/// The JSON Schema (draft 2020-12) of a policy file, as checked in at `policies/schema.json`.
pub fn json_schema() -> String {
    let mut root = map_schema(ROOT);
    if let Json::Object(o) = &mut root {
        o.insert(
            "$schema".to_owned(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        o.insert(
            "$id".to_owned(),
            json!("https://sluice.dev/policy.schema.json"),
        );
        o.insert("title".to_owned(), json!("sluice policy file"));
    }
    let mut text = serde_json::to_string_pretty(&root).unwrap_or_default();
    text.push('\n');
    text
}

/// The key reference of `policies/README.md`: one table row per key, from the key table.
pub fn markdown_reference() -> String {
    let mut out = String::from("| key | form | meaning |\n|---|---|---|\n");
    rows(ROOT, "", &mut out);
    out
}

fn rows(fields: &[Field], path: &str, out: &mut String) {
    for field in fields {
        let p = if path.is_empty() {
            field.name.to_owned()
        } else {
            format!("{path}.{}", field.name)
        };
        let required = if field.required { " Required." } else { "" };
        let form = match &field.kind {
            Kind::Map(_) => "mapping".to_owned(),
            Kind::Seq(Kind::Map(_)) => "list of mappings".to_owned(),
            Kind::WordOrMap(words, _) => format!("{} or a selector mapping", words.join(" / ")),
            other => super::check::describe(other),
        };
        out.push_str(&format!(
            "| `{p}` | {} | {}{required} |\n",
            form.replace('|', "\\|"),
            field.doc.replace('|', "\\|")
        ));
        match &field.kind {
            Kind::Map(inner) | Kind::WordOrMap(_, inner) => rows(inner, &p, out),
            Kind::Seq(Kind::Map(inner)) => rows(inner, &format!("{p}[]"), out),
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::policy::check::{check, join_path, key_paths};
    use crate::policy::keys::{RULE, SETTINGS};
    use crate::policy::tree::parse;
    use std::path::Path;

    #[test]
    fn rule_settings_are_the_defaults_settings() {
        for s in SETTINGS {
            assert!(RULE.iter().any(|r| r.name == s.name), "{}", s.name);
        }
    }

    #[test]
    fn unknown_key_suggests_the_nearest() {
        let n = parse(
            Path::new("x.yaml"),
            "defaults:\n  fees:\n    sweep_gate:\n      percentil: 25\n",
        )
        .unwrap();
        let e = check(&n, &Kind::Map(ROOT), "").unwrap_err();
        assert_eq!((e.line, e.column), (4, 7));
        assert_eq!(e.key, "defaults.fees.sweep_gate.percentil");
        assert!(e.to_string().contains("did you mean percentile?"), "{e}");
    }

    #[test]
    fn missing_required_key_is_reported_at_its_mapping() {
        let n = parse(Path::new("x.yaml"), "rules:\n  - match: all\n").unwrap();
        let e = check(&n, &Kind::Map(ROOT), "").unwrap_err();
        assert_eq!(e.key, "rules[0].name");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn schema_lists_every_key_path() {
        let schema: Json = serde_json::from_str(&json_schema()).unwrap();
        let mut from_schema = Vec::new();
        schema_paths(&schema, "", &mut from_schema);
        let mut from_table = key_paths();
        from_schema.sort();
        from_table.sort();
        assert_eq!(from_schema, from_table);
    }

    /// Walks the generated JSON independently of the table.
    fn schema_paths(s: &Json, path: &str, out: &mut Vec<String>) {
        if let Some(props) = s.get("properties").and_then(Json::as_object) {
            for (k, v) in props {
                let p = join_path(path, k);
                out.push(p.clone());
                schema_paths(v, &p, out);
            }
        }
        if let Some(items) = s.get("items")
            && s.get("type") == Some(&json!("array"))
            && path_is_seq_of_maps(items)
        {
            schema_paths(items, &format!("{path}[]"), out);
        }
        if let Some(add) = s.get("additionalProperties").filter(|a| a.is_object()) {
            let p = join_path(path, "*");
            out.push(p.clone());
            schema_paths(add, &p, out);
        }
        if let Some(alts) = s.get("oneOf").and_then(Json::as_array) {
            for a in alts {
                if a.get("properties").is_some() {
                    schema_paths(a, path, out);
                }
            }
        }
    }

    fn path_is_seq_of_maps(items: &Json) -> bool {
        items.get("properties").is_some()
    }
}
