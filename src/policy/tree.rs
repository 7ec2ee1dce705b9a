//! A YAML document as a tree whose every key and value knows its file, line and column.
//!
//! Policy files are parsed once with `serde-saphyr` into this tree (the same approach as
//! `config::yaml`, extended with sequences). The key table in `keys` is then checked against
//! the tree, so unknown keys and wrong shapes are reported at their exact place before any
//! value is typed. Defaults cascade by merging trees, which keeps every leaf's location.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter as _, Spanned, UserMessageFormatter};

use super::error::PolicyError;

/// Where a node is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file.
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl Place {
    /// An error at this place.
    pub fn error(
        &self,
        key: &str,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) -> PolicyError {
        PolicyError::at(
            self.file.to_path_buf(),
            self.line,
            self.column,
            key,
            message,
            expected,
        )
    }
}

/// A located YAML node.
#[derive(Debug, Clone)]
pub struct Node {
    /// Where the value is written.
    pub place: Place,
    /// The value.
    pub value: Value,
}

/// A YAML value with located children.
#[derive(Debug, Clone)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// Any scalar, as text (`30`, `true` and `"30"` all become text).
    Scalar(String),
    /// A mapping in file order: (key text, key place, value).
    Map(Vec<(String, Place, Node)>),
    /// A sequence.
    Seq(Vec<Node>),
}

impl Value {
    /// How the value is described when its shape is wrong.
    pub fn shape(&self) -> &'static str {
        match self {
            Value::Null => "an empty value",
            Value::Scalar(_) => "a single value",
            Value::Map(_) => "a mapping",
            Value::Seq(_) => "a list",
        }
    }
}

/// The raw tree as serde-saphyr hands it over, before file names are attached.
#[derive(Debug)]
enum Raw {
    Null,
    Scalar(String),
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
    Seq(Vec<Spanned<Raw>>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Scalar(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Scalar(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        Ok(Raw::Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Scalar(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Scalar(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Scalar(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Raw>>()?;
            entries.push((key, value));
        }
        Ok(Raw::Map(entries))
    }
}

fn place(file: &Arc<Path>, loc: serde_saphyr::Location) -> Place {
    Place {
        file: Arc::clone(file),
        line: loc.line(),
        column: loc.column(),
    }
}

fn convert(file: &Arc<Path>, raw: Spanned<Raw>) -> Node {
    let value = match raw.value {
        Raw::Null => Value::Null,
        Raw::Scalar(s) => Value::Scalar(s),
        Raw::Seq(items) => Value::Seq(items.into_iter().map(|i| convert(file, i)).collect()),
        Raw::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.value, place(file, k.referenced), convert(file, v)))
                .collect(),
        ),
    };
    Node {
        place: place(file, raw.referenced),
        value,
    }
}

/// Parses `text`, the contents of `file`, into a located tree. Duplicate keys are passed
/// through and reported by the key walk with their full path.
pub fn parse(file: &Path, text: &str) -> Result<Node, PolicyError> {
    let file: Arc<Path> = Arc::from(file);
    if text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    }) {
        return Ok(Node {
            place: Place {
                file,
                line: 1,
                column: 1,
            },
            value: Value::Null,
        });
    }
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
    };
    let raw: Spanned<Raw> = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = UserMessageFormatter
            .format_message(e.without_snippet())
            .into_owned();
        PolicyError::at(
            file.to_path_buf(),
            line,
            column,
            "",
            format!("not valid YAML: {message}"),
            "valid YAML (see policies/README.md)",
        )
    })?;
    Ok(convert(&file, raw))
}

/// Whether a value is written as unset: `null` (`~` or nothing) or `none`. In a rule it
/// removes what `defaults` set for the key.
pub fn is_unset(node: &Node) -> bool {
    match &node.value {
        Value::Null => true,
        Value::Scalar(s) => s == "none",
        _ => false,
    }
}

/// Overlays `over` on `base`: mappings merge key by key (recursively), anything else in
/// `over` replaces `base`, and an unset value (`null`, `none`) removes it. This is how a
/// rule's settings cascade over `defaults`.
pub fn merge(base: &Node, over: &Node) -> Node {
    match (&base.value, &over.value) {
        (Value::Map(b), Value::Map(o)) => {
            let mut out = b.clone();
            for (k, kp, v) in o {
                match out.iter_mut().find(|(bk, _, _)| bk == k) {
                    Some(slot) => {
                        slot.2 = merge(&slot.2, v);
                        slot.1 = kp.clone();
                    }
                    None => out.push((k.clone(), kp.clone(), v.clone())),
                }
            }
            Node {
                place: over.place.clone(),
                value: Value::Map(out),
            }
        }
        _ if is_unset(over) => Node {
            place: over.place.clone(),
            value: Value::Null,
        },
        _ => over.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_located() {
        let n = parse(Path::new("a.yaml"), "x:\n  y: [1, 2]\n  z: hi\n").unwrap();
        let Value::Map(top) = &n.value else {
            panic!("map")
        };
        let (k, kp, v) = &top[0];
        assert_eq!((k.as_str(), kp.line, kp.column), ("x", 1, 1));
        let Value::Map(inner) = &v.value else {
            panic!("map")
        };
        assert_eq!((inner[1].1.line, inner[1].1.column), (3, 3));
        assert_eq!((inner[1].2.place.line, inner[1].2.place.column), (3, 6));
        let Value::Seq(items) = &inner[0].2.value else {
            panic!("seq")
        };
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn merge_overlays_leaves() {
        let base = parse(Path::new("a"), "b: {x: 1, y: 2}\n").unwrap();
        let over = parse(Path::new("b"), "b: {y: 3}\n").unwrap();
        let m = merge(&base, &over);
        let Value::Map(top) = &m.value else { panic!() };
        let Value::Map(b) = &top[0].2.value else {
            panic!()
        };
        assert_eq!(b.len(), 2);
        assert!(matches!(&b[1].2.value, Value::Scalar(s) if s == "3"));
        assert_eq!(&*b[1].2.place.file, Path::new("b"));
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = parse(Path::new("bad.yaml"), "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.line > 0, "{e}");
        assert!(e.message.starts_with("not valid YAML"), "{e}");
    }
}
