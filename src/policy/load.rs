//! Loading a policy file or directory into a validated [`Policy`], or a located error.
//!
//! A directory's policy is every `*.yaml` / `*.yml` file in it except test cases
//! (`*.test.yaml`), in name order: rules and budgets are concatenated, tags merged, and each
//! other top-level key may be set in one file only. Each file is parsed into a located tree,
//! checked against the key table, then typed here; `defaults` cascade into each rule key by
//! key. Referenced scripts are compiled once and shared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono_tz::Tz;
use regex::Regex;

use super::error::{PolicyError, closest};
use super::fields::{Ctx, Fields, int_in, one_or_many, opt, scalar, to_u32};
use super::keys::{self, Kind, ROOT, Scalar};
use super::model::{
    BudgetDef, Grouping, Limits, Matcher, PeriodSpec, Policy, Rule, Selector, TagSet,
};
use super::script::ScriptHost;
use super::settings::build_settings;
use super::tree::{self, Node, Place, Value};
use super::values;
use crate::domain::Sat;

/// Loads the policy at `path` (a directory or one file) with the default script sandbox.
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    load_with(path, &ScriptHost::new())
}

/// Loads the policy at `path` with scripts compiled on `host`.
pub fn load_with(path: &Path, host: &Arc<ScriptHost>) -> Result<Policy, PolicyError> {
    let files = policy_files(path)?;
    let mut parsed = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| {
            PolicyError::file(file, format!("cannot read: {e}"), "a readable YAML file")
        })?;
        parsed.push(parse_checked(file, &text)?);
    }
    build(files, parsed, host)
}

/// Loads a policy from text, as if read from `file` (scripts resolve beside `file`).
pub fn load_str(file: &Path, text: &str, host: &Arc<ScriptHost>) -> Result<Policy, PolicyError> {
    let root = parse_checked(file, text)?;
    build(vec![file.to_path_buf()], vec![root], host)
}

/// The policy files of `path`: the file itself, or a directory's `*.yaml`/`*.yml` files
/// that are not test cases, in name order.
pub fn policy_files(path: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    if !path.is_dir() {
        if !path.exists() {
            return Err(PolicyError::file(
                path,
                "no such file or directory",
                "a policy directory or a .yaml file",
            ));
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| {
        PolicyError::file(
            path,
            format!("cannot read directory: {e}"),
            "a readable directory",
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_policy_file(p))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(PolicyError::file(
            path,
            "the directory holds no policy file",
            "at least one *.yaml file besides *.test.yaml test cases",
        ));
    }
    Ok(files)
}

/// Whether `p` is a policy file (not a test case).
pub fn is_policy_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    (name.ends_with(".yaml") || name.ends_with(".yml"))
        && !name.ends_with(".test.yaml")
        && !name.ends_with(".test.yml")
}

/// Parses one file and checks it against the key table.
pub fn parse_checked(file: &Path, text: &str) -> Result<Node, PolicyError> {
    let root = tree::parse(file, text)?;
    keys::check(&root, &Kind::Map(ROOT), "")?;
    Ok(root)
}

fn build(
    files: Vec<PathBuf>,
    roots: Vec<Node>,
    host: &Arc<ScriptHost>,
) -> Result<Policy, PolicyError> {
    // Combine the files' top levels.
    let mut single: BTreeMap<&'static str, (&Node, String)> = BTreeMap::new();
    let mut rules: Vec<(&Node, String)> = Vec::new();
    let mut budgets: Vec<(&Node, String)> = Vec::new();
    let mut tag_nodes: Vec<(&str, &Place, &Node)> = Vec::new();
    for root in &roots {
        let Value::Map(entries) = &root.value else {
            continue;
        };
        for (k, kp, v) in entries {
            match k.as_str() {
                "rules" | "budgets" => {
                    if let Value::Seq(items) = &v.value {
                        let out = if k == "rules" {
                            &mut rules
                        } else {
                            &mut budgets
                        };
                        out.extend(
                            items
                                .iter()
                                .enumerate()
                                .map(|(i, n)| (n, format!("{k}[{i}]"))),
                        );
                    }
                }
                "tags" => {
                    if let Value::Map(tags) = &v.value {
                        tag_nodes.extend(tags.iter().map(|(n, p, v)| (n.as_str(), p, v)));
                    }
                }
                other => {
                    let Some(field) = ROOT.iter().find(|f| f.name == other) else {
                        continue;
                    };
                    if let Some((first, _)) = single.get(field.name) {
                        return Err(kp.error(
                            other,
                            format!(
                                "`{other}` is already set in {}:{}",
                                first.place.file.display(),
                                first.place.line
                            ),
                            "each top-level key other than rules, budgets and tags in one file only",
                        ));
                    }
                    single.insert(field.name, (v, other.to_owned()));
                }
            }
        }
    }

    let node_of = |key: &str| single.get(key).map(|(n, p)| (*n, p.clone()));
    let dry_run = match node_of("dry_run") {
        Some((n, p)) => scalar(n, &p, Scalar::Bool, values::boolean)?,
        None => false,
    };
    let tz = match node_of("tz") {
        Some((n, p)) => scalar(n, &p, Scalar::TimeZone, values::time_zone)?,
        None => Tz::UTC,
    };
    let mut ctx = Ctx {
        host,
        scripts: BTreeMap::new(),
        tz,
    };
    let empty = Node {
        place: roots.first().map_or_else(
            || Place {
                file: Arc::from(Path::new("")),
                line: 0,
                column: 0,
            },
            |r| r.place.clone(),
        ),
        value: Value::Null,
    };
    let defaults = node_of("defaults").map_or_else(|| empty.clone(), |(n, _)| n.clone());
    // Typed once on their own so a bad default is reported under `defaults.`.
    build_settings(&defaults, "defaults", &mut ctx, false)?;

    let tags = build_tags(&tag_nodes)?;
    let mut built_rules: Vec<Rule> = Vec::new();
    let mut rule_names: Vec<(String, Place)> = Vec::new();
    for (node, path) in &rules {
        let rule = build_rule(node, path, &defaults, &mut ctx)?;
        if let Some((_, first)) = rule_names.iter().find(|(n, _)| *n == rule.name) {
            return Err(node.place.error(
                &format!("{path}.name"),
                format!(
                    "rule `{}` is already defined at {}:{}",
                    rule.name,
                    first.file.display(),
                    first.line
                ),
                "a unique rule name",
            ));
        }
        rule_names.push((rule.name.clone(), node.place.clone()));
        built_rules.push(rule);
    }

    let names: Vec<&str> = built_rules.iter().map(|r| r.name.as_str()).collect();
    let mut built_budgets: Vec<BudgetDef> = Vec::new();
    for (node, path) in &budgets {
        let b = build_budget(node, path, &names)?;
        if built_budgets.iter().any(|o| o.name == b.name) {
            return Err(node.place.error(
                &format!("{path}.name"),
                format!("budget `{}` is defined twice", b.name),
                "a unique budget name",
            ));
        }
        built_budgets.push(b);
    }

    let limits = match node_of("limits") {
        None => Limits::default(),
        Some((n, p)) => {
            let mut f = Fields::of(n, &p);
            let d = Limits::default();
            let limits = Limits {
                in_flight: opt(&mut f, "in_flight", Scalar::Int(0, 1000), int_in(0, 1000))?
                    .map_or(d.in_flight, to_u32),
                in_flight_per_target: opt(
                    &mut f,
                    "in_flight_per_target",
                    Scalar::Int(0, 1000),
                    int_in(0, 1000),
                )?
                .map_or(d.in_flight_per_target, to_u32),
            };
            f.finish()?;
            limits
        }
    };

    let mut all_files = files;
    all_files.extend(ctx.scripts.keys().cloned());
    Ok(Policy {
        files: all_files,
        dry_run,
        tz,
        rules: built_rules,
        budgets: built_budgets,
        limits,
        tags,
    })
}

fn build_tags(nodes: &[(&str, &Place, &Node)]) -> Result<BTreeMap<String, TagSet>, PolicyError> {
    let mut tags: BTreeMap<String, TagSet> = BTreeMap::new();
    for (name, place, node) in nodes {
        let path = format!("tags.{name}");
        values::name(name).map_err(|m| place.error(&path, m, Scalar::Name.expected()))?;
        if tags.contains_key(*name) {
            return Err(place.error(&path, "the tag is defined twice", "each tag once"));
        }
        let mut set = TagSet::default();
        let members = one_or_many(node, &path, Scalar::Member, |t| {
            if t.len() == 66 {
                values::pubkey(t).map(either_peer)
            } else {
                values::chan_id(t).map(either_chan)
            }
        })?;
        for m in members {
            match m {
                Member::Chan(c) => set.channels.push(c),
                Member::Peer(p) => set.peers.push(p),
            }
        }
        tags.insert((*name).to_owned(), set);
    }
    Ok(tags)
}

enum Member {
    Chan(crate::domain::ChanId),
    Peer(String),
}

fn either_peer(p: String) -> Member {
    Member::Peer(p)
}

fn either_chan(c: crate::domain::ChanId) -> Member {
    Member::Chan(c)
}

fn build_rule(
    node: &Node,
    path: &str,
    defaults: &Node,
    ctx: &mut Ctx<'_>,
) -> Result<Rule, PolicyError> {
    let mut f = Fields::of(node, path);
    let name = opt(&mut f, "name", Scalar::Name, values::name)?.unwrap_or_default();
    let (matcher, names_peers) = match f.get("match") {
        None => (Matcher::All, false),
        Some((n, p)) => match &n.value {
            Value::Scalar(s) if s == "node" => (Matcher::Node, false),
            Value::Scalar(_) => (Matcher::All, false),
            _ => {
                let sel = build_selector(n, &p)?;
                let peers = !sel.peers.is_empty() && sel.channels.is_empty();
                (Matcher::Select(sel), peers)
            }
        },
    };
    let exclude = match f.get("exclude") {
        None => None,
        Some((n, p)) => Some(build_selector(n, &p)?),
    };
    let per = match opt(
        &mut f,
        "per",
        Scalar::Enum(&["channel", "peer", "node"]),
        |t| Ok(t.to_owned()),
    )?
    .as_deref()
    {
        Some("peer") => Grouping::Peer,
        Some("node") => Grouping::Node,
        Some("channel") => Grouping::Channel,
        Some(other) => {
            return Err(node.place.error(
                &format!("{path}.per"),
                format!("`{other}` is not a grouping"),
                "channel, peer or node",
            ));
        }
        None if names_peers => Grouping::Peer,
        None => Grouping::Channel,
    };
    // The rule's own settings keys, cascaded over the defaults.
    let mut own = Vec::new();
    for field in keys::settings_fields() {
        if let Some((n, _)) = f.get_written(field.name) {
            own.push((field.name.to_owned(), n.place.clone(), n.clone()));
        }
    }
    f.finish()?;
    let own = Node {
        place: node.place.clone(),
        value: Value::Map(own),
    };
    let merged = tree::merge(defaults, &own);
    let (settings, script) = build_settings(&merged, path, ctx, true)?;
    Ok(Rule {
        name,
        matcher,
        exclude,
        per,
        settings,
        script,
    })
}

fn build_selector(node: &Node, path: &str) -> Result<Selector, PolicyError> {
    let mut f = Fields::of(node, path);
    let mut s = Selector::default();
    if let Some((n, p)) = f.get("channel") {
        s.channels = one_or_many(n, &p, Scalar::ChanId, values::chan_id)?;
    }
    if let Some((n, p)) = f.get("peer") {
        s.peers = one_or_many(n, &p, Scalar::Pubkey, values::pubkey)?;
    }
    s.alias = opt(&mut f, "alias", Scalar::Regex, |t| {
        Regex::new(t).map_err(|e| {
            let e = e.to_string();
            let why = e
                .lines()
                .last()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            format!("`{t}` is not a valid regular expression: {why}")
        })
    })?;
    s.capacity_min = opt(&mut f, "capacity_min", Scalar::Amount, values::amount)?;
    s.capacity_max = opt(&mut f, "capacity_max", Scalar::Amount, values::amount)?;
    s.age_min_blocks = opt(&mut f, "age_min", Scalar::Age, values::age_blocks)?;
    s.age_max_blocks = opt(&mut f, "age_max", Scalar::Age, values::age_blocks)?;
    if let Some((n, p)) = f.get("tag") {
        s.tags = one_or_many(n, &p, Scalar::Name, values::name)?;
    }
    let all = opt(&mut f, "all", Scalar::Bool, values::boolean)?.unwrap_or(false);
    f.finish()?;
    if let (Some(lo), Some(hi)) = (s.capacity_min, s.capacity_max)
        && lo > hi
    {
        return Err(node.place.error(
            &format!("{path}.capacity_min"),
            format!("capacity_min {} is above capacity_max {}", lo.0, hi.0),
            "capacity_min ≤ capacity_max",
        ));
    }
    let empty = s.channels.is_empty()
        && s.peers.is_empty()
        && s.alias.is_none()
        && s.capacity_min.is_none()
        && s.capacity_max.is_none()
        && s.age_min_blocks.is_none()
        && s.age_max_blocks.is_none()
        && s.tags.is_empty();
    if empty && !all {
        return Err(node.place.error(
            path,
            "the selector has no condition, so it would take every channel",
            "a condition such as `alias: ...`, or `all` to mean every channel",
        ));
    }
    Ok(s)
}

fn build_budget(node: &Node, path: &str, rules: &[&str]) -> Result<BudgetDef, PolicyError> {
    let mut f = Fields::of(node, path);
    let name = opt(&mut f, "name", Scalar::Name, values::name)?.unwrap_or_default();
    let budget_period = opt(&mut f, "period", Scalar::Period, period)?.unwrap_or(PeriodSpec::Month);
    let limit = opt(&mut f, "limit", Scalar::Amount, values::amount)?.unwrap_or(Sat::ZERO);
    let mut per_rule = BTreeMap::new();
    if let Some((n, p)) = f.get("per_rule")
        && let Value::Map(entries) = &n.value
    {
        for (rule, rp, v) in entries {
            let key = format!("{p}.{rule}");
            if !rules.contains(&rule.as_str()) {
                let mut message = format!("`{rule}` is not a rule of this policy");
                if let Some(s) = closest(rule, rules) {
                    message.push_str(&format!(" (did you mean {s}?)"));
                }
                return Err(rp.error(&key, message, format!("one of: {}", rules.join(", "))));
            }
            per_rule.insert(
                rule.clone(),
                scalar(v, &key, Scalar::Amount, values::amount)?,
            );
        }
    }
    let hard_cap = match f.get("hard_cap") {
        None => None,
        Some((n, p)) => {
            let mut hf = Fields::of(n, &p);
            let per = opt(&mut hf, "period", Scalar::Period, period)?.unwrap_or(PeriodSpec::Day);
            let lim = opt(&mut hf, "limit", Scalar::Amount, values::amount)?.unwrap_or(Sat::ZERO);
            hf.finish()?;
            Some((per, lim))
        }
    };
    f.finish()?;
    Ok(BudgetDef {
        name,
        period: budget_period,
        limit,
        per_rule,
        hard_cap,
    })
}

fn period(text: &str) -> Result<PeriodSpec, String> {
    match text.trim() {
        "day" => Ok(PeriodSpec::Day),
        "week" => Ok(PeriodSpec::Week),
        "month" => Ok(PeriodSpec::Month),
        other => match other.strip_prefix("rolling") {
            Some(d) => values::duration(d.trim()).map(PeriodSpec::Rolling),
            None => Err(format!("`{other}` is not a period")),
        },
    }
}
