//! The deployment files in `deploy/`, checked by the tools that consume them wherever the
//! machine has them: `systemd-analyze` for the unit, Debian's `docker-compose` (1.29, which
//! needs no container engine for `config`) for the compose files, and `sluiced` itself for the
//! environment the compose files give it. No engine is available to build the image, so the
//! Dockerfile's structure is checked instead. A missing tool fails its test when the
//! environment variable `CI` is set (`.ci/run` installs both) and is skipped with a note
//! otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The repository root (the package root).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the repository as text.
fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// YAML text as a JSON value, so tests can walk it without a schema.
fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"))
}

/// The path of `name` on `PATH`. When it is missing: a failure under CI (which installs it),
/// otherwise `None` after a note saying what was skipped.
fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        assert!(
            !ci,
            "`{name}` is not installed; CI must install it (apt-get install {package})"
        );
        eprintln!(
            "SKIPPED: `{name}` is not installed (apt-get install {package}); set CI=1 to fail instead"
        );
    }
    found
}

// ---------------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------------

const UNIT: &str = "deploy/systemd/sluiced.service";

/// The unit's `[Service]` directives as (key, value) pairs, in order.
fn service_directives(unit: &str) -> Vec<(String, String)> {
    let mut section = "";
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section == "[Service]" {
            let (k, v) = line.split_once('=').expect("a key=value line");
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

/// The unit as installed, with `ExecStart` pointing at the `sluiced` built for this test run:
/// `systemd-analyze verify` refuses a unit whose binary does not exist, and the installed path
/// (/usr/local/bin/sluiced) does not exist on a build machine. Returns the temporary
/// directory (kept alive by the caller) and the unit's path inside it.
fn unit_with_built_binary() -> (tempfile::TempDir, PathBuf) {
    let unit = read(UNIT);
    let exec_lines = unit.lines().filter(|l| l.starts_with("ExecStart=")).count();
    assert_eq!(exec_lines, 1, "{UNIT} must have exactly one ExecStart=");
    let built = common::sluiced_bin();
    let rewritten: String = unit
        .lines()
        .map(|l| {
            if let Some(cmd) = l.strip_prefix("ExecStart=") {
                assert!(
                    cmd.starts_with("/usr/local/bin/sluiced"),
                    "ExecStart should run /usr/local/bin/sluiced, as deploy/README.md installs it: {l}"
                );
                format!(
                    "ExecStart={}{}",
                    built.display(),
                    &cmd["/usr/local/bin/sluiced".len()..]
                )
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluiced.service");
    std::fs::write(&path, rewritten).unwrap();
    (dir, path)
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify_and_its_security_review() {
    let Some(analyze) = tool("systemd-analyze", "systemd") else {
        return;
    };
    let (_dir, unit) = unit_with_built_binary();

    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&unit)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // verify exits 0 on an unknown or misplaced key but warns with the unit's file:line.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("sluiced.service"))
        .collect();
    assert!(
        about_unit.is_empty(),
        "systemd-analyze verify warns about the unit:\n{}",
        about_unit.join("\n")
    );

    // The offline security review scores exposure from 0 (locked down) to 10; the threshold
    // is in tenths. The unit scores 1.2 when written; more than 2.0 means hardening was lost.
    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(&unit)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the unit's exposure level rose above 2.0:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn systemd_unit_has_the_hardening_the_deployment_promises() {
    let directives = service_directives(&read(UNIT));
    let get = |key: &str| -> Vec<&str> {
        directives
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let last = |key: &str| get(key).last().copied().unwrap_or("");

    // A dedicated unprivileged user.
    let user = last("User");
    assert!(
        !user.is_empty() && user != "root" && user != "0",
        "User= must name a dedicated user, got `{user}`"
    );
    let sysusers = read("deploy/systemd/sluice.sysusers.conf");
    assert!(
        sysusers
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["u", user])),
        "sluice.sysusers.conf must create the unit's user `{user}`"
    );
    // Read-only system, private /tmp, no privilege gain, restart on failure.
    for (key, want) in [
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("Restart", "on-failure"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(last(key), want, "{UNIT}: {key}= should be `{want}`");
    }
    // The only writable place is the datadir, and sluiced is told to use it.
    let state = last("StateDirectory");
    assert!(!state.is_empty(), "StateDirectory= must create the datadir");
    assert!(
        get("Environment").contains(&format!("SLUICE_DATADIR=/var/lib/{state}").as_str()),
        "SLUICE_DATADIR must point at the StateDirectory /var/lib/{state}"
    );
    // A configuration error (exit 64) is not retried forever.
    assert!(
        last("RestartPreventExitStatus")
            .split_whitespace()
            .any(|c| c == "64"),
        "RestartPreventExitStatus= should include 64 (configuration error)"
    );
}

// ---------------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------------

const DOCKERFILE: &str = "deploy/docker/Dockerfile";

/// One Dockerfile instruction: keyword (upper case) and its arguments, continuations joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Comment lines (parser directives included) are dropped, also inside continuations.
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(part) = trimmed.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((current.as_str(), ""));
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        });
        current.clear();
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside a continuation"
    );
    out
}

/// `ENV` key/value pairs of the final stage (the form `ENV A=1 B=2`).
fn image_env(ins: &[Instruction]) -> BTreeMap<String, String> {
    let final_from = ins.iter().rposition(|i| i.keyword == "FROM").unwrap();
    ins[final_from..]
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| i.args.split_whitespace())
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("ENV in the KEY=value form");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn dockerfile_is_multi_stage_runs_as_non_root_and_copies_only_what_exists() {
    let ins = instructions(&read(DOCKERFILE));

    // Multi-stage: a named build stage and a runtime stage.
    let froms: Vec<&Instruction> = ins.iter().filter(|i| i.keyword == "FROM").collect();
    assert!(
        froms.len() >= 2,
        "the Dockerfile must have a build and a runtime stage"
    );
    let stages: Vec<String> = froms
        .iter()
        .filter_map(|f| {
            let words: Vec<&str> = f.args.split_whitespace().collect();
            match words.as_slice() {
                [_, kw, name] if kw.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                _ => None,
            }
        })
        .collect();
    // The build stage uses the toolchain Cargo.toml requires.
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("Cargo.toml declares rust-version");
    assert!(
        froms[0].args.starts_with(&format!("rust:{rust_version}-")),
        "the build stage should use rust:{rust_version}-*, got `{}`",
        froms[0].args
    );

    // Non-root: the final stage's last USER is neither root nor uid 0.
    let final_from = ins.iter().rposition(|i| i.keyword == "FROM").unwrap();
    let user = ins[final_from..]
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .map(|i| i.args.split(':').next().unwrap_or("").to_owned())
        .expect("the final stage must set USER");
    assert!(
        user != "root" && user != "0",
        "the image must not run as root"
    );

    // Every COPY from the build context names something that exists and that the
    // Dockerfile's own .dockerignore lets through; COPY --from names a stage.
    let ignore = read("deploy/docker/Dockerfile.dockerignore");
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(|p| p.trim_end_matches('/'))
        .collect();
    let mut copied = 0;
    for copy in ins.iter().filter(|i| i.keyword == "COPY") {
        assert!(
            !copy.args.starts_with('['),
            "use the plain COPY form: {}",
            copy.args
        );
        let words: Vec<&str> = copy.args.split_whitespace().collect();
        if let Some(stage) = words.iter().find_map(|w| w.strip_prefix("--from=")) {
            assert!(
                stages.iter().any(|s| s == stage),
                "COPY --from={stage}: no such stage"
            );
            continue;
        }
        let paths: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
        assert!(
            paths.len() >= 2,
            "COPY needs a source and a destination: {}",
            copy.args
        );
        for src in &paths[..paths.len() - 1] {
            let src = src.trim_start_matches("./").trim_end_matches('/');
            assert!(
                repo().join(src).exists(),
                "COPY source `{src}` does not exist in the repository"
            );
            assert!(
                allowed.contains(&src),
                "COPY source `{src}` is excluded by Dockerfile.dockerignore (add `!{src}`)"
            );
            copied += 1;
        }
    }
    assert!(
        copied > 0,
        "the build stage copies nothing from the repository"
    );

    // In a container the daemon listens on all interfaces and exposes those ports.
    let env = image_env(&ins);
    let exposed: Vec<&str> = ins
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| i.args.split_whitespace())
        .collect();
    for key in [
        "SLUICE_RPC_LISTEN",
        "SLUICE_LOOPD_API_LISTEN",
        "SLUICE_METRICS_LISTEN",
    ] {
        let value = env
            .get(key)
            .unwrap_or_else(|| panic!("the image must set {key}"));
        let (ip, port) = value.rsplit_once(':').unwrap();
        assert_eq!(
            ip, "0.0.0.0",
            "{key} must listen on all interfaces in a container"
        );
        assert!(
            exposed.contains(&port),
            "EXPOSE should list {key}'s port {port}"
        );
    }
    assert!(
        env.contains_key("SLUICE_DATADIR"),
        "the image must set SLUICE_DATADIR"
    );
}

// ---------------------------------------------------------------------------------------------
// Compose files
// ---------------------------------------------------------------------------------------------

/// Every compose file in deploy/compose/.
fn compose_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/compose"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let names: Vec<_> = files.iter().filter_map(|p| p.file_stem()).collect();
    assert!(
        names.iter().any(|n| *n == "simnet") && names.iter().any(|n| *n == "regtest"),
        "deploy/compose/ must hold simnet.yaml and regtest.yaml, found {names:?}"
    );
    files
}

/// `docker-compose -f file config [extra]`, which must succeed without warnings.
fn compose_config(dc: &Path, file: &Path, extra: &[&str]) -> String {
    let out = Command::new(dc)
        .arg("-f")
        .arg(file)
        .arg("config")
        .args(extra)
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "docker-compose config rejects {}:\n{stderr}",
        file.display()
    );
    assert!(
        !stderr.contains("WARN"),
        "docker-compose config warns about {}:\n{stderr}",
        file.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A service's volumes as (source, target); binds have absolute sources. Handles the short
/// syntax docker-compose 1.x prints and the long syntax of later versions.
fn mounts(service: &Value) -> Vec<(String, String)> {
    let Some(list) = service["volumes"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|v| match v {
            Value::String(s) => {
                let mut parts = s.split(':');
                let src = parts.next().unwrap_or("").to_owned();
                let dst = parts.next().unwrap_or("").to_owned();
                (src, dst)
            }
            other => (
                other["source"].as_str().unwrap_or("").to_owned(),
                other["target"].as_str().unwrap_or("").to_owned(),
            ),
        })
        .collect()
}

/// A service's published container ports.
fn container_ports(service: &Value) -> Vec<String> {
    let Some(list) = service["ports"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|p| match p {
            Value::String(s) => {
                let last = s.rsplit(':').next().unwrap_or("");
                last.split('/').next().unwrap_or("").to_owned()
            }
            other => other["target"].to_string(),
        })
        .collect()
}

/// A service's environment as a map (either compose form).
fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_owned)))
            .collect(),
        Value::Array(list) => list
            .iter()
            .filter_map(|kv| kv.as_str()?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

#[test]
fn compose_files_pass_docker_compose_config() {
    let Some(dc) = tool("docker-compose", "docker-compose") else {
        return;
    };
    for file in compose_files() {
        compose_config(&dc, &file, &["-q"]);
    }
}

#[test]
fn compose_files_mount_existing_files_and_wire_prometheus_and_grafana_to_sluiced() {
    let Some(dc) = tool("docker-compose", "docker-compose") else {
        return;
    };
    let prometheus_yml = yaml(&read("deploy/prometheus/prometheus.yml"), "prometheus.yml");
    let provider = yaml(
        &read("deploy/grafana/provisioning/dashboards/sluice.yml"),
        "the Grafana dashboard provider",
    );
    let datasource = yaml(
        &read("deploy/grafana/provisioning/datasources/prometheus.yml"),
        "the Grafana datasource",
    );
    let rules_glob = prometheus_yml["rule_files"][0]
        .as_str()
        .expect("rule_files");
    let rules_dir = rules_glob
        .strip_suffix("/*.yml")
        .expect("rule_files: <dir>/*.yml");
    let sluice_job = prometheus_yml["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "sluice")
        .expect("a scrape job named sluice");
    let target = sluice_job["static_configs"][0]["targets"][0]
        .as_str()
        .unwrap();
    let (target_host, target_port) = target.rsplit_once(':').unwrap();
    let dashboards_dir = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let datasource_url = datasource["datasources"][0]["url"].as_str().unwrap();
    let image_env = image_env(&instructions(&read(DOCKERFILE)));

    for file in compose_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let config = yaml(&compose_config(&dc, &file, &[]), &name);
        let services = config["services"].as_object().unwrap();

        for (service_name, service) in services {
            // Bind mounts name files of the repository. The dashboards arrive with their own
            // issue; until then Docker mounts an empty directory.
            for (src, dst) in mounts(service) {
                if src.starts_with('/') && !src.ends_with("/dashboards") {
                    assert!(
                        Path::new(&src).exists(),
                        "{name}: {service_name} mounts {src} at {dst}, which does not exist"
                    );
                }
            }
            if let Some(context) = service["build"]["context"].as_str() {
                let dockerfile = service["build"]["dockerfile"]
                    .as_str()
                    .unwrap_or("Dockerfile");
                assert!(
                    Path::new(context).join(dockerfile).is_file(),
                    "{name}: {service_name} builds {dockerfile} in {context}, which does not exist"
                );
            }
        }

        // Prometheus gets its config and the rules where prometheus.yml looks for them.
        let prometheus = &services["prometheus"];
        let pm = mounts(prometheus);
        let mounted = |rel: &str, at: &str| {
            pm.iter()
                .any(|(s, d)| Path::new(s) == repo().join(rel) && d == at)
        };
        assert!(
            mounted(
                "deploy/prometheus/prometheus.yml",
                "/etc/prometheus/prometheus.yml"
            ),
            "{name}: prometheus must mount deploy/prometheus/prometheus.yml"
        );
        assert!(
            mounted("deploy/prometheus/rules", rules_dir),
            "{name}: prometheus must mount deploy/prometheus/rules at {rules_dir}"
        );

        // Grafana gets the provisioning and the dashboards where the provider looks.
        let gm = mounts(&services["grafana"]);
        assert!(
            gm.iter().any(
                |(s, d)| Path::new(s) == repo().join("deploy/grafana/provisioning")
                    && d == "/etc/grafana/provisioning"
            ),
            "{name}: grafana must mount deploy/grafana/provisioning at /etc/grafana/provisioning"
        );
        assert!(
            gm.iter()
                .any(|(s, d)| Path::new(s) == repo().join("dashboards") && d == dashboards_dir),
            "{name}: grafana must mount dashboards/ at {dashboards_dir}"
        );
        assert!(
            datasource_url.starts_with("http://prometheus:"),
            "the Grafana datasource must point at the prometheus service"
        );

        // Prometheus's target reaches sluiced's metrics port: through the service name, or,
        // when sluiced shares another service's network namespace, that service's alias.
        let sluiced = &services["sluiced"];
        let env = environment(sluiced);
        let metrics_listen = env
            .get("SLUICE_METRICS_LISTEN")
            .or(image_env.get("SLUICE_METRICS_LISTEN"))
            .unwrap_or_else(|| {
                panic!("{name}: neither sluiced nor the image sets SLUICE_METRICS_LISTEN")
            });
        let metrics_port = metrics_listen.rsplit_once(':').unwrap().1;
        assert_eq!(
            target_port, metrics_port,
            "{name}: Prometheus scrapes the wrong port"
        );
        let netns = sluiced["network_mode"]
            .as_str()
            .and_then(|m| m.strip_prefix("service:"));
        let reachable_at = match netns {
            Some(owner) => {
                let owner_svc = &services[owner];
                let aliases: Vec<&str> = owner_svc["networks"]
                    .as_object()
                    .into_iter()
                    .flat_map(|nets| nets.values())
                    .flat_map(|n| n["aliases"].as_array().into_iter().flatten())
                    .filter_map(Value::as_str)
                    .collect();
                assert!(
                    aliases.contains(&target_host),
                    "{name}: sluiced shares {owner}'s network, so {owner} needs the alias \
                     `{target_host}` for Prometheus's target"
                );
                owner_svc
            }
            None => {
                assert_eq!(
                    target_host, "sluiced",
                    "{name}: Prometheus scrapes the wrong host"
                );
                sluiced
            }
        };
        assert!(
            container_ports(reachable_at).contains(&metrics_port.to_owned()),
            "{name}: sluiced's metrics port {metrics_port} should be published"
        );
    }
}

/// Waits until `sluiced` has passed configuration validation: it records its listen addresses
/// in the lock file, or exits with another code than 64. Returns the stderr on a code-64 exit.
fn config_error(mut child: std::process::Child, datadir: &Path, stderr: &Path) -> Option<String> {
    let lock = datadir.join("sluiced.lock");
    let outcome = common::poll("sluiced to start or exit", Duration::from_secs(60), || {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status.code());
        }
        let text = std::fs::read_to_string(&lock).ok()?;
        text.contains("metrics_listen").then_some(None)
    });
    let _ = child.kill();
    let _ = child.wait();
    (outcome == Some(64)).then(|| std::fs::read_to_string(stderr).unwrap_or_default())
}

#[test]
fn sluiced_accepts_the_configuration_each_compose_file_gives_it() {
    let Some(dc) = tool("docker-compose", "docker-compose") else {
        return;
    };
    let image_env = image_env(&instructions(&read(DOCKERFILE)));
    for file in compose_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let config = yaml(&compose_config(&dc, &file, &[]), &name);
        let sluiced = &config["services"]["sluiced"];
        let args: Vec<String> = sluiced["command"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();

        // The container's view, moved into a temporary root: absolute paths land under it
        // (lnd's files are created there as the credentials helper would), and the listeners
        // use free loopback ports instead of the container's 0.0.0.0.
        let root = tempfile::tempdir().unwrap();
        let mut env = image_env.clone();
        env.extend(environment(sluiced));
        for (key, value) in env.iter_mut() {
            if key.ends_with("_LISTEN") {
                *value = "127.0.0.1:0".to_owned();
            } else if value.starts_with('/') {
                let moved = root.path().join(value.trim_start_matches('/'));
                if matches!(key.as_str(), "SLUICE_LND_TLS_CERT" | "SLUICE_LND_MACAROON") {
                    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
                    std::fs::write(&moved, b"placeholder").unwrap();
                }
                *value = moved.display().to_string();
            }
        }
        let datadir = PathBuf::from(&env["SLUICE_DATADIR"]);
        std::fs::create_dir_all(&datadir).unwrap();
        let stderr_path = root.path().join("sluiced.stderr");
        let mut cmd = Command::new(common::sluiced_bin());
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SLUICE_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(&env).env("HOME", root.path());
        let child = cmd.spawn().unwrap();
        if let Some(stderr) = config_error(child, &datadir, &stderr_path) {
            panic!("sluiced rejects the configuration {name} gives it (exit 64):\n{stderr}");
        }
    }
}

#[test]
fn deploy_files_name_only_environment_variables_sluiced_knows() {
    let help = Command::new(common::sluiced_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let mut files = vec![UNIT.to_owned(), DOCKERFILE.to_owned()];
    files.extend(
        compose_files()
            .iter()
            .map(|p| p.strip_prefix(repo()).unwrap().display().to_string()),
    );
    let mut checked = 0;
    for rel in files {
        let text = read(&rel);
        for (i, _) in text.match_indices("SLUICE_") {
            let var: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            // The image's build arguments are not sluiced's settings.
            if var == "SLUICE_UID" || var == "SLUICE_GID" {
                continue;
            }
            assert!(
                help.contains(&format!("env: {var}]")) || help.contains(&format!("env: {var} ")),
                "{rel} sets {var}, which `sluiced --help` does not list"
            );
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no SLUICE_* variables found in the deployment files"
    );
}
