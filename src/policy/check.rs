//! Checking a parsed file against the key table, and listing the table's key paths.

use super::error::{PolicyError, closest};
use super::keys::{Field, Kind, ROOT};
use super::tree::{Node, Place, Value};

fn names(fields: &[Field]) -> Vec<&'static str> {
    fields.iter().map(|f| f.name).collect()
}

pub(crate) fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Checks `node` against `kind`: unknown keys (with the nearest known key), duplicate keys,
/// missing required keys and wrong shapes, each at its place. Scalars are typed later.
pub fn check(node: &Node, kind: &Kind, path: &str) -> Result<(), PolicyError> {
    match (kind, &node.value) {
        (_, Value::Null) => Ok(()),
        (Kind::Map(fields), Value::Map(entries))
        | (Kind::WordOrMap(_, fields), Value::Map(entries)) => {
            check_map(node, fields, entries, path)
        }
        (Kind::Seq(item), Value::Seq(items)) => {
            for (i, it) in items.iter().enumerate() {
                check(it, item, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Kind::OneOrMany(_), Value::Scalar(_)) | (Kind::Scalar(_), Value::Scalar(_)) => Ok(()),
        (Kind::OneOrMany(s), Value::Seq(items)) => {
            for (i, it) in items.iter().enumerate() {
                check(it, &Kind::Scalar(*s), &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Kind::Dict(item, _), Value::Map(entries)) => {
            let mut seen: Vec<&str> = Vec::new();
            for (k, kp, v) in entries {
                let p = join_path(path, k);
                if seen.contains(&k.as_str()) {
                    return Err(kp.error(&p, "the key is written a second time", "each key once"));
                }
                seen.push(k);
                check(v, item, &p)?;
            }
            Ok(())
        }
        (Kind::WordOrMap(words, _), Value::Scalar(s)) => {
            if words.contains(&s.as_str()) {
                Ok(())
            } else {
                Err(node.place.error(
                    path,
                    format!("`{s}` is not a selector"),
                    format!("one of {} or a mapping of selector keys", words.join(", ")),
                ))
            }
        }
        (kind, other) => Err(node.place.error(
            path,
            format!("wrong type: found {}", other.shape()),
            describe(kind),
        )),
    }
}

fn check_map(
    node: &Node,
    fields: &[Field],
    entries: &[(String, Place, Node)],
    path: &str,
) -> Result<(), PolicyError> {
    let mut seen: Vec<&str> = Vec::new();
    for (k, kp, v) in entries {
        let p = join_path(path, k);
        if seen.contains(&k.as_str()) {
            return Err(kp.error(&p, "the key is written a second time", "each key once"));
        }
        seen.push(k);
        let Some(field) = fields.iter().find(|f| f.name == k) else {
            let allowed = names(fields);
            let mut message = "unknown key".to_owned();
            if let Some(s) = closest(k, &allowed) {
                message.push_str(&format!(" (did you mean {s}?)"));
            }
            return Err(kp.error(&p, message, format!("one of: {}", allowed.join(", "))));
        };
        check(v, &field.kind, &p)?;
    }
    for field in fields.iter().filter(|f| f.required) {
        let present = entries
            .iter()
            .any(|(k, _, v)| k == field.name && !matches!(v.value, Value::Null));
        if !present {
            return Err(node.place.error(
                &join_path(path, field.name),
                "missing required key",
                describe(&field.kind),
            ));
        }
    }
    Ok(())
}

/// The expected form of a kind, in words.
pub fn describe(kind: &Kind) -> String {
    match kind {
        Kind::Map(fields) => format!("a mapping with keys: {}", names(fields).join(", ")),
        Kind::Seq(Kind::Map(fields)) => {
            format!("a list of mappings with keys: {}", names(fields).join(", "))
        }
        Kind::Seq(item) => format!("a list of {}", describe(item)),
        Kind::OneOrMany(s) => format!("{} or a list of them", s.expected()),
        Kind::Dict(item, _) => format!("a mapping of names to {}", describe(item)),
        Kind::Scalar(s) => s.expected(),
        Kind::WordOrMap(words, _) => format!("{} or a mapping of selector keys", words.join(", ")),
    }
}

/// Every key path the table allows, with `[]` for list items and `*` for user-chosen names:
/// `rules[].band.inbound_min`, `tags.*`.
pub fn key_paths() -> Vec<String> {
    let mut out = Vec::new();
    walk_paths(&Kind::Map(ROOT), "", &mut out);
    out
}

fn walk_paths(kind: &Kind, path: &str, out: &mut Vec<String>) {
    match kind {
        Kind::Map(fields) | Kind::WordOrMap(_, fields) => {
            for field in fields.iter() {
                let p = join_path(path, field.name);
                out.push(p.clone());
                walk_paths(&field.kind, &p, out);
            }
        }
        Kind::Seq(item) => walk_paths(item, &format!("{path}[]"), out),
        Kind::Dict(item, _) => {
            let p = join_path(path, "*");
            out.push(p.clone());
            walk_paths(item, &p, out);
        }
        Kind::Scalar(_) | Kind::OneOrMany(_) => {}
    }
}

/// The key paths a parsed file uses, in the form of [`key_paths`].
pub fn used_paths(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    walk_used(node, &Kind::Map(ROOT), "", &mut out);
    out
}

fn walk_used(node: &Node, kind: &Kind, path: &str, out: &mut Vec<String>) {
    match (kind, &node.value) {
        (Kind::Map(fields) | Kind::WordOrMap(_, fields), Value::Map(entries)) => {
            for (k, _, v) in entries {
                if let Some(field) = fields.iter().find(|f| f.name == k) {
                    let p = join_path(path, k);
                    out.push(p.clone());
                    walk_used(v, &field.kind, &p, out);
                }
            }
        }
        (Kind::Seq(item), Value::Seq(items)) => {
            for it in items {
                walk_used(it, item, &format!("{path}[]"), out);
            }
        }
        (Kind::Dict(item, _), Value::Map(entries)) => {
            for (_, _, v) in entries {
                let p = join_path(path, "*");
                out.push(p.clone());
                walk_used(v, item, &p, out);
            }
        }
        _ => {}
    }
}
