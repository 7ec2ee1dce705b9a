//! Reading typed values out of a parsed policy tree, shared by the loader (`load.rs`) and the
//! settings builder (`settings.rs`): a mapping's entries taken one by one, scalars parsed at
//! their place, and the walk's context.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono_tz::Tz;

use super::error::PolicyError;
use super::keys::Scalar;
use super::script::{Script, ScriptHost};
use super::tree::{self, Node, Value};
use super::values;

/// The entries of a mapping node, taken one by one; whatever is left at the end is a key
/// the table allows but this loader does not read, which `finish` reports.
pub(super) struct Fields<'a> {
    path: String,
    entries: Vec<(&'a str, &'a Node, bool)>,
}

impl<'a> Fields<'a> {
    pub(super) fn of(node: &'a Node, path: &str) -> Fields<'a> {
        let entries = match &node.value {
            Value::Map(e) => e.iter().map(|(k, _, v)| (k.as_str(), v, false)).collect(),
            _ => Vec::new(),
        };
        Fields {
            path: path.to_owned(),
            entries,
        }
    }

    fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(super) fn get(&mut self, key: &str) -> Option<(&'a Node, String)> {
        self.get_written(key).filter(|(n, _)| !tree::is_unset(n))
    }

    /// Like [`Fields::get`], but also an explicit `null` / `none`, which in a rule removes
    /// what `defaults` set.
    pub(super) fn get_written(&mut self, key: &str) -> Option<(&'a Node, String)> {
        let path = self.key(key);
        let slot = self.entries.iter_mut().find(|(k, _, _)| *k == key)?;
        slot.2 = true;
        Some((slot.1, path))
    }

    pub(super) fn finish(self) -> Result<(), PolicyError> {
        match self.entries.iter().find(|(_, _, taken)| !taken) {
            None => Ok(()),
            Some((k, v, _)) => Err(v.place.error(
                &self.key(k),
                "this key is in the schema but not handled by this version of sluice",
                "a key this version reads",
            )),
        }
    }
}

pub(super) fn scalar<T>(
    node: &Node,
    path: &str,
    kind: Scalar,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, PolicyError> {
    match &node.value {
        Value::Scalar(s) => parse(s).map_err(|m| node.place.error(path, m, kind.expected())),
        other => Err(node.place.error(
            path,
            format!("wrong type: found {}", other.shape()),
            kind.expected(),
        )),
    }
}

pub(super) fn opt<T>(
    f: &mut Fields<'_>,
    key: &str,
    kind: Scalar,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, PolicyError> {
    match f.get(key) {
        None => Ok(None),
        Some((node, path)) => scalar(node, &path, kind, parse).map(Some),
    }
}

pub(super) fn one_or_many<T>(
    node: &Node,
    path: &str,
    kind: Scalar,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, PolicyError> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, it)| scalar(it, &format!("{path}[{i}]"), kind, &parse))
            .collect(),
        _ => scalar(node, path, kind, parse).map(|v| vec![v]),
    }
}

pub(super) fn int_in(lo: u64, hi: u64) -> impl Fn(&str) -> Result<u64, String> {
    move |t| values::int(t, lo, hi)
}

pub(super) fn to_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Everything `build` needs while walking: scripts compiled so far and the host.
pub(super) struct Ctx<'h> {
    pub(super) host: &'h Arc<ScriptHost>,
    pub(super) scripts: BTreeMap<PathBuf, Arc<Script>>,
    pub(super) tz: Tz,
}
