//! A strict checker for the Prometheus text format 0.0.4, for tests: what `/metrics` serves
//! must parse the way Prometheus' own `expfmt` parser (and `promtool check metrics`) reads it.
//! Shared by every test that looks at the exposition.

use std::collections::HashSet;

/// One metric family of a parsed exposition.
#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) samples: Vec<Sample>,
}

/// A sample's labels, in exposition order.
pub(crate) type Labels = Vec<(String, String)>;

#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: Labels,
    pub(crate) value: f64,
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `{a="x",b="y"}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut rest = s.strip_prefix('{').ok_or("labels must start with {")?;
    let mut labels: Labels = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("duplicate label {name:?}"));
        }
        let mut chars = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value must be quoted")?
            .char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, '\n') => return Err("newline in label value".into()),
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &rest[eq + 1..][1 + end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// A strict parser for the Prometheus text format 0.0.4, as Prometheus' `expfmt` reads it:
/// families contiguous and declared once, `# TYPE` before samples, samples named after their
/// family (plus `_bucket`/`_sum`/`_count` for histograms and summaries), labels well formed
/// and escaped, no duplicate series, no OpenMetrics-only syntax.
pub(crate) fn parse_exposition(text: &str) -> Result<Vec<Family>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("exposition must end with a newline".into());
    }
    let mut families: Vec<Family> = Vec::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut series: HashSet<String> = HashSet::new();
    let mut helped: HashSet<String> = HashSet::new();

    let mut open = |families: &mut Vec<Family>, name: &str| -> Result<(), String> {
        if families.last().is_some_and(|f| f.name == name) {
            return Ok(());
        }
        if let Some(prev) = families.last() {
            closed.insert(prev.name.clone());
        }
        if closed.contains(name) {
            return Err(format!(
                "family {name} is not contiguous or is declared twice"
            ));
        }
        families.push(Family {
            name: name.to_owned(),
            kind: "untyped".into(),
            samples: Vec::new(),
        });
        Ok(())
    };

    for (n, line) in text.lines().enumerate() {
        let err = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if line == "# EOF" {
            return Err(err("OpenMetrics # EOF in a 0.0.4 exposition".into()));
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !is_metric_name(name) {
                return Err(err(format!("bad metric name {name:?}")));
            }
            open(&mut families, name).map_err(err)?;
            if !helped.insert(name.to_owned()) {
                return Err(err("second HELP".into()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap_or_default(), parts.next());
            if !is_metric_name(name) || parts.next().is_some() {
                return Err(err("malformed TYPE".into()));
            }
            let kind = kind.ok_or_else(|| err("TYPE without type".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(err(format!("type {kind:?} is not a 0.0.4 type")));
            }
            open(&mut families, name).map_err(err)?;
            let fam = families.last_mut().ok_or_else(|| err("no family".into()))?;
            if fam.kind != "untyped" || !fam.samples.is_empty() {
                return Err(err("TYPE repeated or after samples".into()));
            }
            fam.kind = kind.to_owned();
            continue;
        }
        if line.starts_with('#') {
            continue; // A plain comment.
        }

        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(err)?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before value".into()))?
            .split(' ');
        let value = parse_value(fields.next().unwrap_or_default()).map_err(err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| err(format!("bad timestamp {ts:?}")))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }

        let belongs = |f: &Family| {
            f.name == name
                || (matches!(f.kind.as_str(), "histogram" | "summary")
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(f.name.as_str())))
        };
        if !families.last().is_some_and(belongs) {
            open(&mut families, name).map_err(err)?;
        }
        let fam = families.last_mut().ok_or_else(|| err("no family".into()))?;
        if fam.kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(err("negative or NaN counter".into()));
        }
        let mut key = name.to_owned();
        let mut sorted = labels.clone();
        sorted.sort();
        for (k, v) in &sorted {
            key.push_str(&format!("\u{0}{k}\u{0}{v}"));
        }
        if !series.insert(key) {
            return Err(err("duplicate series".into()));
        }
        fam.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(families)
}
