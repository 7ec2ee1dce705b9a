//! `sluice policy show|check|test|reload`. `check` and `test` run offline through the policy
//! module, so a policy can be validated before it is deployed; `show` and `reload` ask the
//! daemon.

use std::path::PathBuf;

use clap::Subcommand;
use serde::Serialize;

use super::CliError;
use super::client::Target;
use super::output::{self, Format, Render};
use crate::policy;
use crate::proto::sluice as pb;

/// `policy` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum PolicyCmd {
    /// Show the policy in force in the daemon and the last rejected change.
    Show,
    /// Load and validate a policy file or directory (offline).
    Check {
        /// The policy file or directory.
        path: PathBuf,
    },
    /// Run a policy directory's `*.test.yaml` cases (offline).
    Test {
        /// The policy directory.
        path: PathBuf,
    },
    /// Ask the daemon to reload its policy; a rejected change keeps the last good policy.
    Reload,
}

impl PolicyCmd {
    /// Whether the command runs without a daemon.
    pub fn is_offline(&self) -> bool {
        matches!(self, PolicyCmd::Check { .. } | PolicyCmd::Test { .. })
    }
}

/// The daemon's policy, as printed.
#[derive(Debug, Serialize)]
pub struct Shown {
    /// Files of the policy in force.
    pub files: Vec<String>,
    /// Its rules.
    pub rules: Vec<String>,
    /// When it was loaded (Unix seconds), if one is.
    pub loaded_at_unix: Option<i64>,
    /// The last rejected change, if any.
    pub rejected: Option<String>,
}

impl From<pb::PolicyShowResponse> for Shown {
    fn from(r: pb::PolicyShowResponse) -> Shown {
        Shown {
            files: r.files,
            rules: r.rules,
            loaded_at_unix: (r.loaded_at_unix != 0).then_some(r.loaded_at_unix),
            rejected: (!r.rejected.is_empty()).then_some(r.rejected),
        }
    }
}

impl Render for Shown {
    fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![
            (
                "policy",
                if self.files.is_empty() {
                    "none loaded".to_owned()
                } else {
                    self.files.join(", ")
                },
            ),
            ("rules", self.rules.join(", ")),
        ];
        if let Some(t) = self
            .loaded_at_unix
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        {
            rows.push(("loaded at", t.to_rfc3339()));
        }
        if let Some(e) = &self.rejected {
            rows.push(("last change rejected", e.clone()));
        }
        rows
    }
}

/// `check`'s answer.
#[derive(Debug, Serialize)]
pub struct Checked {
    /// The files the policy is made of.
    pub files: Vec<String>,
    /// Its rules.
    pub rules: Vec<String>,
    /// Its budgets.
    pub budgets: Vec<String>,
}

impl Render for Checked {
    fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("valid", self.files.join(", ")),
            ("rules", self.rules.join(", ")),
            ("budgets", self.budgets.join(", ")),
        ]
    }
}

/// `check`'s answer for a script on its own.
#[derive(Debug, Serialize)]
pub struct CheckedScript {
    /// The script.
    pub file: String,
    /// Whether it defines `propose` (it must define `decide`).
    pub propose: bool,
}

impl Render for CheckedScript {
    fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("valid script", self.file.clone()),
            (
                "defines",
                if self.propose {
                    "decide, propose".to_owned()
                } else {
                    "decide".to_owned()
                },
            ),
        ]
    }
}

/// `test`'s answer.
#[derive(Debug, Serialize)]
pub struct Tested {
    /// Whether every expectation held.
    pub passed: bool,
    /// The policy directories whose tests ran.
    pub policies: Vec<String>,
    /// Test files run.
    pub cases: usize,
    /// Expectations checked.
    pub checked: usize,
    /// What did not match.
    pub failures: Vec<String>,
}

impl Render for Tested {
    fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows: Vec<(&'static str, String)> = self
            .policies
            .iter()
            .map(|p| ("policy", p.clone()))
            .collect();
        rows.push((
            "result",
            format!(
                "{}: {} cases, {} expectations",
                if self.passed { "passed" } else { "FAILED" },
                self.cases,
                self.checked
            ),
        ));
        rows.extend(self.failures.iter().map(|f| ("failure", f.clone())));
        rows
    }
}

/// Runs a `policy` subcommand.
pub async fn run(
    cmd: &PolicyCmd,
    target: Option<&Target>,
    format: Format,
) -> Result<String, CliError> {
    match (cmd, target) {
        (PolicyCmd::Check { path }, _) if path.extension().is_some_and(|e| e == "rhai") => {
            // A script on its own: compiled (and its top level run) as the loader would.
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
            let script = policy::script::ScriptHost::new()
                .compile(path, &text)
                .map_err(|e| CliError::Rejected(e.to_string()))?;
            output::render(
                &CheckedScript {
                    file: path.display().to_string(),
                    propose: script.has_propose(),
                },
                format,
            )
        }
        (PolicyCmd::Check { path }, _) => {
            let p = policy::load(path).map_err(|e| CliError::Rejected(e.to_string()))?;
            output::render(
                &Checked {
                    files: p.files.iter().map(|f| f.display().to_string()).collect(),
                    rules: p.rules.iter().map(|r| r.name.clone()).collect(),
                    budgets: p.budgets.iter().map(|b| b.name.clone()).collect(),
                },
                format,
            )
        }
        (PolicyCmd::Test { path }, _) => {
            let reports =
                policy::run_tests_below(path).map_err(|e| CliError::Input(e.to_string()))?;
            let tested = Tested {
                passed: reports.iter().all(|(_, r)| r.passed()),
                policies: reports
                    .iter()
                    .map(|(d, _)| d.display().to_string())
                    .collect(),
                cases: reports.iter().map(|(_, r)| r.cases.len()).sum(),
                checked: reports
                    .iter()
                    .flat_map(|(_, r)| r.cases.iter().map(|c| c.checked))
                    .sum(),
                failures: reports
                    .iter()
                    .flat_map(|(_, r)| r.failures().map(str::to_owned))
                    .collect(),
            };
            let text = output::render(&tested, format)?;
            if tested.passed {
                Ok(text)
            } else {
                Err(CliError::Rejected(text.trim_end().to_owned()))
            }
        }
        (PolicyCmd::Show, Some(target)) => {
            let mut client = target.connect().await?;
            let r = client
                .policy_show(pb::PolicyShowRequest {})
                .await
                .map_err(|s| target.call_error(s, "read the policy"))?;
            output::render(&Shown::from(r.into_inner()), format)
        }
        (PolicyCmd::Reload, Some(target)) => {
            let mut client = target.connect().await?;
            let r = client
                .policy_reload(pb::PolicyReloadRequest {})
                .await
                .map_err(|s| target.call_error(s, "reload the policy"))?;
            let shown = Shown::from(r.into_inner());
            match &shown.rejected {
                // The daemon keeps the last good policy; the caller must still see a failure.
                Some(error) => Err(CliError::Rejected(format!(
                    "the policy was rejected; the last good one stays in force: {error}"
                ))),
                None => output::render(&shown, format),
            }
        }
        (PolicyCmd::Show | PolicyCmd::Reload, None) => Err(CliError::Input(
            "internal: daemon command dispatched offline".to_owned(),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn example() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/set-and-forget")
    }

    #[tokio::test]
    async fn check_and_test_run_offline_on_the_example() {
        let text = run(&PolicyCmd::Check { path: example() }, None, Format::Json)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["rules"][0], "routing");
        assert_eq!(v["budgets"][0], "monthly");
        let text = run(&PolicyCmd::Test { path: example() }, None, Format::Human)
            .await
            .unwrap();
        assert!(text.contains("passed: 3 cases"), "{text}");
    }

    #[tokio::test]
    async fn a_broken_policy_is_reported_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("policy.yaml"),
            "rules: [ { name: x, band: 12 } ]\n",
        )
        .unwrap();
        let e = run(
            &PolicyCmd::Check {
                path: dir.path().to_owned(),
            },
            None,
            Format::Human,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("policy.yaml"), "{e}");
    }

    #[tokio::test]
    async fn test_on_the_examples_folder_runs_every_example_or_says_none_is_there() {
        let all = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
        let text = run(&PolicyCmd::Test { path: all }, None, Format::Json)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["passed"], true);
        assert_eq!(v["policies"].as_array().unwrap().len(), 6, "{text}");
        assert!(v["cases"].as_u64().unwrap() >= 10, "{text}");
        let empty = tempfile::tempdir().unwrap();
        std::fs::create_dir(empty.path().join("sub")).unwrap();
        let e = run(
            &PolicyCmd::Test {
                path: empty.path().to_owned(),
            },
            None,
            Format::Human,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("no policy test cases here or below"), "{e}");
    }

    #[tokio::test]
    async fn check_compiles_a_script_on_its_own_with_rhai_places() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.rhai");
        std::fs::write(&good, "fn decide(t, p, c) { p }\n").unwrap();
        let text = run(&PolicyCmd::Check { path: good }, None, Format::Human)
            .await
            .unwrap();
        assert!(text.contains("good.rhai"), "{text}");
        let bad = dir.path().join("bad.rhai");
        std::fs::write(&bad, "fn decide(t, p, c) {\n  let x = ;\n  p\n}\n").unwrap();
        let e = run(&PolicyCmd::Check { path: bad }, None, Format::Human)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.rhai:2:"), "{e}");
        assert!(!e.contains("mapping"), "{e}");
    }
}
