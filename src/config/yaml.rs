//! Reading the YAML file into located values, one per known key.
//!
//! The file is parsed once with `serde-saphyr` into a small tree whose every key and value
//! carries its line and column (`Spanned`). Walking that tree against the key table finds
//! unknown keys (with a suggestion) and wrong shapes at their exact place; scalars are kept as
//! text and typed later by `resolve`, so environment variables, flags and the file share one
//! set of parsers and messages.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, MessageFormatter as _, Spanned, UserMessageFormatter};

use super::error::{ConfigError, Origin};
use super::keys::{self, KEYS, Key};

/// A YAML node with located children.
#[derive(Debug)]
enum Node {
    /// `~`, `null` or nothing: treated as "not set".
    Null,
    /// Any scalar, as text (`30`, `true` and `"30"` all become text here).
    Scalar(String),
    /// A mapping, in file order.
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    /// A sequence; no key takes one, so only its presence matters.
    Seq,
}

impl Node {
    /// How the node is described when its shape is wrong.
    fn shape(&self) -> &'static str {
        match self {
            Node::Null => "an empty value",
            Node::Scalar(_) => "a single value",
            Node::Map(_) => "a mapping",
            Node::Seq => "a list",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(Node::Seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// One value the file sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileValue {
    /// The scalar as text.
    pub text: String,
    /// Where the value is written (for errors about the value).
    pub origin: Origin,
}

/// The values a file sets, by key.
#[derive(Debug, Default)]
pub(super) struct FileValues {
    /// (key, value) in file order; each key appears at most once.
    pub values: Vec<(&'static Key, FileValue)>,
}

impl FileValues {
    /// The file's value for `key`, if it sets one.
    pub fn get(&self, key: &Key) -> Option<&FileValue> {
        self.values
            .iter()
            .find(|(k, _)| k.path == key.path)
            .map(|(_, v)| v)
    }
}

fn origin_at(path: &Path, loc: Location) -> Origin {
    Origin::File {
        path: path.to_path_buf(),
        line: loc.line(),
        column: loc.column(),
    }
}

/// Parses `text` (the contents of `path`) and checks every key against the key table.
pub(super) fn parse(path: &Path, text: &str) -> Result<FileValues, ConfigError> {
    if text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    }) {
        return Ok(FileValues::default());
    }
    // Duplicates pass through to the walk below, which reports them with the full key path.
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
    };
    let root: Spanned<Node> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| syntax(path, e))?;
    let entries = match root.value {
        Node::Map(entries) => entries,
        Node::Null => return Ok(FileValues::default()),
        other => {
            return Err(ConfigError::Invalid {
                origin: origin_at(path, root.referenced),
                key: "(top level)".to_owned(),
                problem: format!("the file holds {}", other.shape()),
                expected: "a mapping of keys such as `network: mainnet`".to_owned(),
            });
        }
    };
    let mut out = FileValues::default();
    let sections = keys::sections();
    let mut top_level: Vec<&'static str> = KEYS
        .iter()
        .filter(|k| k.section().is_none())
        .map(|k| k.path)
        .collect();
    top_level.extend(sections.iter().copied());
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in entries {
        if seen.contains(&name.value) {
            return Err(twice(path, &name, &name.value));
        }
        seen.push(name.value.clone());
        if let Some(key) = keys::find(&name.value).filter(|k| k.section().is_none()) {
            leaf(path, key, value, &mut out)?;
        } else if sections.contains(&name.value.as_str()) {
            section(path, &name, value, &mut out)?;
        } else {
            return Err(unknown(path, &name, &name.value, &top_level));
        }
    }
    Ok(out)
}

fn section(
    path: &Path,
    name: &Spanned<String>,
    value: Spanned<Node>,
    out: &mut FileValues,
) -> Result<(), ConfigError> {
    let entries = match value.value {
        Node::Map(entries) => entries,
        Node::Null => return Ok(()),
        other => {
            return Err(ConfigError::Invalid {
                origin: origin_at(path, value.referenced),
                key: name.value.clone(),
                problem: format!("`{}` is a section but holds {}", name.value, other.shape()),
                expected: format!("a mapping of {} keys", name.value),
            });
        }
    };
    let allowed: Vec<&'static str> = KEYS
        .iter()
        .filter(|k| k.section() == Some(name.value.as_str()))
        .map(Key::leaf)
        .collect();
    let mut seen: Vec<String> = Vec::new();
    for (sub, sub_value) in entries {
        let dotted = format!("{}.{}", name.value, sub.value);
        if seen.contains(&sub.value) {
            return Err(twice(path, &sub, &dotted));
        }
        seen.push(sub.value.clone());
        match keys::find(&dotted) {
            Some(key) => leaf(path, key, sub_value, out)?,
            None => return Err(unknown(path, &sub, &dotted, &allowed)),
        }
    }
    Ok(())
}

fn leaf(
    path: &Path,
    key: &'static Key,
    value: Spanned<Node>,
    out: &mut FileValues,
) -> Result<(), ConfigError> {
    match value.value {
        Node::Null => Ok(()),
        Node::Scalar(text) => {
            out.values.push((
                key,
                FileValue {
                    text,
                    origin: origin_at(path, value.referenced),
                },
            ));
            Ok(())
        }
        other => Err(ConfigError::Invalid {
            origin: origin_at(path, value.referenced),
            key: key.path.to_owned(),
            problem: format!("wrong type: found {}", other.shape()),
            expected: key.kind.expected().to_owned(),
        }),
    }
}

fn twice(path: &Path, name: &Spanned<String>, dotted: &str) -> ConfigError {
    ConfigError::Invalid {
        origin: origin_at(path, name.referenced),
        key: dotted.to_owned(),
        problem: "the key is written a second time".to_owned(),
        expected: "each key once".to_owned(),
    }
}

fn unknown(path: &Path, name: &Spanned<String>, dotted: &str, allowed: &[&str]) -> ConfigError {
    let leaf = dotted.rsplit_once('.').map_or(dotted, |(_, l)| l);
    let suggestion = keys::closest(leaf, allowed).map(|s| match dotted.rsplit_once('.') {
        Some((section, _)) => format!("{section}.{s}"),
        None => s.to_owned(),
    });
    let mut expected = allowed.join(", ");
    if dotted == "datadir" {
        expected.push_str(" (datadir is set with --datadir or SLUICE_DATADIR, not in the file)");
    }
    ConfigError::UnknownKey {
        origin: origin_at(path, name.referenced),
        key: dotted.to_owned(),
        suggestion,
        expected,
    }
}

fn syntax(path: &Path, err: serde_saphyr::Error) -> ConfigError {
    let (line, column) = err.location().map_or((0, 0), |l| (l.line(), l.column()));
    let message = UserMessageFormatter
        .format_message(err.without_snippet())
        .into_owned();
    ConfigError::Syntax {
        file: PathBuf::from(path),
        line,
        column,
        message,
        source: Box::new(err),
    }
}
