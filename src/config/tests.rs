//! Tests of the whole load: real files in temporary directories, an injected environment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};

use super::keys::KEYS;
use super::*;

/// A temporary home with lnd's default files for mainnet, and an environment to inject.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    env: HashMap<String, String>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let home = root.join("home");
        let world = World {
            _dir: dir,
            root,
            env: HashMap::from([("HOME".to_owned(), home.display().to_string())]),
            home,
        };
        world.touch(".lnd/tls.cert");
        world.touch(".lnd/data/chain/bitcoin/mainnet/admin.macaroon");
        world
    }

    /// Creates an empty file under the home directory.
    fn touch(&self, rel: &str) -> PathBuf {
        let path = self.home.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"x").unwrap();
        path
    }

    /// Writes `text` as `<root>/etc/sluice.yaml` and returns its path.
    fn config(&self, text: &str) -> PathBuf {
        let path = self.root.join("etc/sluice.yaml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn set(&mut self, var: &str, value: &str) {
        self.env.insert(var.to_owned(), value.to_owned());
    }

    fn load(&self, flags: &[&str]) -> Result<Config, ConfigError> {
        let args =
            DaemonArgs::try_parse_from(std::iter::once("sluiced").chain(flags.iter().copied()))
                .unwrap();
        Config::load_with_env(&args, &|name| self.env.get(name).cloned())
    }

    /// Loads `text` through `--config` and returns the error message.
    fn error_for(&self, text: &str) -> (PathBuf, ConfigError) {
        let path = self.config(text);
        let err = self
            .load(&["--config", path.to_str().unwrap()])
            .expect_err("the config should be refused");
        (path, err)
    }
}

fn assert_located(err: &ConfigError, file: &Path, line: u64, column: u64, key: &str) {
    let msg = err.to_string();
    let place = format!("{}:{line}:{column}: {key}", file.display());
    assert!(
        msg.starts_with(&place),
        "`{msg}` should start with `{place}`"
    );
    assert_eq!(err.file(), Some(file));
    assert_eq!(err.line_column(), Some((line, column)));
    assert_eq!(err.key(), Some(key));
}

#[test]
fn unknown_key_names_file_line_and_key_and_suggests() {
    let world = World::new();
    let (path, err) = world.error_for("network: mainnet\nrpc:\n  listn: 127.0.0.1:1\n");
    assert_located(&err, &path, 3, 3, "rpc.listn");
    let msg = err.to_string();
    assert!(
        msg.contains("unknown key (did you mean rpc.listen?)"),
        "{msg}"
    );
    assert!(msg.ends_with("expected one of: listen"), "{msg}");

    let (path, err) = world.error_for("netwrok: mainnet\n");
    assert_located(&err, &path, 1, 1, "netwrok");
    assert!(err.to_string().contains("did you mean network?"), "{err}");

    let (_, err) = world.error_for("rpc:\n  banana: 1\n");
    assert!(!err.to_string().contains("did you mean"), "{err}");
}

#[test]
fn datadir_in_the_file_points_to_the_flag() {
    let world = World::new();
    let (path, err) = world.error_for("datadir: /var/lib/sluice\n");
    assert_located(&err, &path, 1, 1, "datadir");
    assert!(
        err.to_string().contains("--datadir or SLUICE_DATADIR"),
        "{err}"
    );
}

#[test]
fn wrong_type_names_file_line_and_key() {
    let world = World::new();
    let (path, err) = world.error_for("metrics:\n  per_channel: 5\n");
    assert_located(&err, &path, 2, 16, "metrics.per_channel");
    assert!(
        err.to_string()
            .contains("`5` is not a boolean; expected true or false"),
        "{err}"
    );

    let (path, err) = world.error_for("rpc:\n  listen:\n    - 127.0.0.1:1\n");
    assert_located(&err, &path, 3, 5, "rpc.listen");
    assert!(
        err.to_string().contains("wrong type: found a list"),
        "{err}"
    );

    let (path, err) = world.error_for("log: debug\n");
    assert_located(&err, &path, 1, 6, "log");
    assert!(err.to_string().contains("a mapping of log keys"), "{err}");

    let (path, err) = world.error_for("server:\n  l402_max_cost_sat: lots\n");
    assert_located(&err, &path, 2, 22, "server.l402_max_cost_sat");
    assert_eq!(
        err.expected(),
        Some("a whole number of satoshis such as 1000")
    );
}

#[test]
fn bad_address_names_file_line_and_key() {
    let world = World::new();
    let (path, err) = world.error_for("rpc:\n  listen: localhost\n");
    assert_located(&err, &path, 2, 11, "rpc.listen");
    assert!(
        err.to_string()
            .contains("`localhost` is not a socket address; expected an IP address and port"),
        "{err}"
    );

    let (path, err) = world.error_for("lnd:\n  host: localhost\n");
    assert_located(&err, &path, 2, 9, "lnd.host");
    assert!(err.to_string().contains("has no port"), "{err}");
}

#[test]
fn missing_cert_file_names_file_line_and_key() {
    let world = World::new();
    let (path, err) = world.error_for("lnd:\n  tls_cert: /nonexistent/tls.cert\n");
    assert_located(&err, &path, 2, 13, "lnd.tls_cert");
    let msg = err.to_string();
    assert!(
        msg.contains(
            "file /nonexistent/tls.cert does not exist; expected the path of lnd's tls.cert"
        ),
        "{msg}"
    );
}

#[test]
fn missing_default_cert_says_which_key_to_set() {
    let world = World::new();
    std::fs::remove_file(world.home.join(".lnd/tls.cert")).unwrap();
    let err = world.load(&[]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("lnd.tls_cert (default): file "), "{msg}");
    assert!(
        msg.contains("SLUICE_LND_TLS_CERT") && msg.contains("--lnd-tls-cert"),
        "{msg}"
    );
    assert!(msg.contains("sluiced --simnet"), "{msg}");
}

#[test]
fn env_beats_file_and_flag_beats_env() {
    let mut world = World::new();
    let path = world.config("rpc:\n  listen: 127.0.0.1:1000\n");
    let file = path.to_str().unwrap();
    let from_file = world.load(&["--config", file]).unwrap();
    assert_eq!(from_file.rpc.listen.port(), 1000);
    assert_eq!(from_file.source.as_deref(), Some(path.as_path()));

    world.set("SLUICE_RPC_LISTEN", "127.0.0.1:2000");
    assert_eq!(
        world.load(&["--config", file]).unwrap().rpc.listen.port(),
        2000
    );
    let flagged = world
        .load(&["--config", file, "--rpc-listen", "127.0.0.1:3000"])
        .unwrap();
    assert_eq!(flagged.rpc.listen.port(), 3000);

    world.set("SLUICE_RPC_LISTEN", "nope");
    let err = world.load(&["--config", file]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("environment SLUICE_RPC_LISTEN: `nope` is not a socket address"),
        "{err}"
    );
    let err = world
        .load(&["--config", file, "--rpc-listen", "x"])
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("flag --rpc-listen: `x` is not a socket address"),
        "{err}"
    );
}

#[test]
fn defaults_per_network() {
    let mut world = World::new();
    let home = world.home.clone();
    let mainnet = world.load(&[]).unwrap();
    assert_eq!(mainnet.network, crate::domain::Network::Mainnet);
    assert!(!mainnet.simnet);
    assert_eq!(mainnet.source, None);
    assert_eq!(mainnet.data_dir, home.join(".sluice"));
    assert_eq!(mainnet.server.address, DEFAULT_SERVER_MAINNET);
    assert_eq!(mainnet.server.tls, ServerTls::System);
    assert_eq!(mainnet.server.timeout, DEFAULT_SERVER_TIMEOUT);
    assert_eq!(mainnet.lnd.host, DEFAULT_LND_HOST);
    assert_eq!(mainnet.lnd.tls_cert_path, home.join(".lnd/tls.cert"));
    assert_eq!(mainnet.rpc.listen, DEFAULT_RPC_LISTEN);
    assert_eq!(mainnet.metrics.listen, DEFAULT_METRICS_LISTEN);
    assert_eq!(mainnet.store.path, home.join(".sluice/sluice.db"));
    assert_eq!(mainnet.policies.dir, home.join(".sluice/policies"));
    assert_eq!(mainnet.log.level, "info");
    assert_eq!(mainnet.shutdown.timeout, DEFAULT_SHUTDOWN_TIMEOUT);

    for (net, server) in [
        ("testnet", DEFAULT_SERVER_TESTNET),
        ("signet", DEFAULT_SERVER_SIGNET),
    ] {
        let macaroon = world.touch(&format!(".lnd/data/chain/bitcoin/{net}/admin.macaroon"));
        let config = world.load(&["--network", net]).unwrap();
        assert_eq!(config.server.address, server);
        assert_eq!(config.lnd.macaroon_path, macaroon);
    }

    world.touch(".lnd/data/chain/bitcoin/regtest/admin.macaroon");
    let err = world.load(&["--network", "regtest"]).unwrap_err();
    assert_eq!(err.key(), Some("server.address"));
    let msg = err.to_string();
    assert!(
        msg.contains("no default swap server for network regtest"),
        "{msg}"
    );
    assert!(
        msg.contains("SLUICE_SERVER_ADDRESS") && msg.contains("--server-address"),
        "{msg}"
    );
    world.set("SLUICE_NETWORK", "regtest");
    let regtest = world
        .load(&["--server-address", "localhost:11010"])
        .unwrap();
    assert_eq!(regtest.server.address, "localhost:11010");
}

#[test]
fn simnet_needs_no_lnd_files_and_outranks_lower_settings() {
    let world = World::new();
    std::fs::remove_dir_all(world.home.join(".lnd")).unwrap();
    let path = world.config("network: mainnet\nlnd:\n  tls_cert: /nonexistent\n");
    let file = path.to_str().unwrap();
    let config = world.load(&["--config", file, "--simnet"]).unwrap();
    assert!(config.simnet);
    assert_eq!(config.network, crate::domain::Network::Simnet);
    assert_eq!(config.server.address, "");

    let err = world
        .load(&["--simnet", "--network", "mainnet"])
        .unwrap_err();
    assert_eq!(err.key(), Some("network"));
    assert!(
        err.to_string()
            .contains("contradicts simnet (set by flag --simnet)"),
        "{err}"
    );
}

#[test]
fn example_file_yields_the_defaults_it_documents() {
    let world = World::new();
    let defaults = world.load(&[]).unwrap();
    let example = include_str!("../../deploy/sluice.example.yaml");
    // Pinning every `#key: value` line must not change anything either.
    let uncommented: String = example
        .lines()
        .map(|line| {
            let indent = line.len() - line.trim_start().len();
            match line.trim_start().strip_prefix('#') {
                Some(rest)
                    if rest.starts_with(|c: char| c.is_ascii_lowercase()) && rest.contains(':') =>
                {
                    format!("{}{rest}\n", &line[..indent])
                }
                _ => format!("{line}\n"),
            }
        })
        .collect();
    assert_ne!(uncommented, example);
    for text in [example, uncommented.as_str()] {
        let path = world.config(text);
        let mut config = world.load(&["--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(config.source.as_deref(), Some(path.as_path()));
        config.source = None;
        // Pinning loopd_api.listen at its default changes one thing on purpose: the address
        // was chosen, so a taken port fails the start instead of leaving the loopd API off.
        if text != example {
            assert!(!config.loopd_api.listen_defaulted);
            config.loopd_api.listen_defaulted = true;
        }
        assert_eq!(config, defaults);
    }
}

#[test]
fn every_key_is_in_the_example_the_help_and_the_flags() {
    let example = include_str!("../../deploy/sluice.example.yaml");
    let help = DaemonArgs::command().render_long_help().to_string();
    for key in KEYS {
        let written = match key.section() {
            None => example
                .lines()
                .any(|l| l.starts_with(&format!("{}:", key.path))),
            Some(section) => {
                let body: Vec<&str> = example
                    .lines()
                    .skip_while(|l| *l != format!("{section}:"))
                    .skip(1)
                    .take_while(|l| l.is_empty() || l.starts_with(' '))
                    .collect();
                body.iter().any(|l| {
                    let l = l.trim_start();
                    l.starts_with(&format!("{}:", key.leaf()))
                        || l.starts_with(&format!("#{}:", key.leaf()))
                })
            }
        };
        assert!(
            written,
            "{} is missing from deploy/sluice.example.yaml",
            key.path
        );
        assert!(
            example.contains(&key.env()),
            "{} is missing from the example",
            key.env()
        );
        assert!(
            example.contains(&key.flag()),
            "{} is missing from the example",
            key.flag()
        );
        for text in [key.path.to_owned(), key.env(), key.flag()] {
            assert!(
                help.contains(&text),
                "{text} is missing from sluiced --help"
            );
        }
        let args = DaemonArgs::try_parse_from(["sluiced", key.flag().as_str(), "v"]).unwrap();
        assert_eq!(
            args.flag(key.path),
            Some("v"),
            "{} does not set {}",
            key.flag(),
            key.path
        );
    }
}

#[test]
fn paths_expand_home_and_resolve_against_the_file() {
    let world = World::new();
    let path = world.config("store:\n  path: data/s.db\npolicies:\n  dir: ~/pol\n");
    let config = world.load(&["--config", path.to_str().unwrap()]).unwrap();
    assert_eq!(config.store.path, world.root.join("etc/data/s.db"));
    assert_eq!(config.policies.dir, world.home.join("pol"));
    let flagged = world
        .load(&["--config", path.to_str().unwrap(), "--store-path", "rel.db"])
        .unwrap();
    assert_eq!(flagged.store.path, PathBuf::from("rel.db"));
}

#[test]
fn config_file_discovery() {
    let mut world = World::new();
    let missing = world.root.join("nope.yaml");
    let err = world
        .load(&["--config", missing.to_str().unwrap()])
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("flag --config: cannot read config file"),
        "{err}"
    );
    assert_eq!(err.file(), Some(missing.as_path()));

    let datadir = world.root.join("data");
    std::fs::create_dir_all(&datadir).unwrap();
    std::fs::write(datadir.join("sluice.yaml"), "log:\n  format: json\n").unwrap();
    world.set("SLUICE_DATADIR", datadir.to_str().unwrap());
    let config = world.load(&[]).unwrap();
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.source, Some(datadir.join("sluice.yaml")));
    assert_eq!(config.store.path, datadir.join("sluice.db"));

    world.env.remove("HOME");
    world.env.remove("SLUICE_DATADIR");
    let err = world.load(&["--simnet"]).unwrap_err();
    assert_eq!(err.key(), Some("datadir"));
    assert!(err.to_string().contains("HOME is not set"), "{err}");
}

#[test]
fn server_tls_rules() {
    let world = World::new();
    let (path, err) = world.error_for("server:\n  tls: pinned\n");
    assert_located(&err, &path, 2, 8, "server.tls");
    assert!(err.to_string().contains("needs server.tls_cert"), "{err}");

    let (path, err) = world.error_for("server:\n  tls: insecure\n");
    assert_located(&err, &path, 2, 8, "server.tls");
    assert!(
        err.to_string()
            .contains("unencrypted to server.address `swap.lightning.today:11010` (the default)"),
        "{err}"
    );

    let (path, err) = world.error_for("server:\n  tls_cert: ~/server.pem\n");
    assert_located(&err, &path, 2, 13, "server.tls_cert");

    let (path, err) = world.error_for("server:\n  tls: pinned\n  tls_cert: ~/server.pem\n");
    assert_located(&err, &path, 3, 13, "server.tls_cert");
    assert!(err.to_string().contains("does not exist"), "{err}");

    let pem = world.touch("server.pem");
    let path = world.config("server:\n  tls: pinned\n  tls_cert: ~/server.pem\n");
    let config = world.load(&["--config", path.to_str().unwrap()]).unwrap();
    assert_eq!(config.server.tls, ServerTls::Pinned(pem));
    let local = world
        .load(&[
            "--server-tls",
            "insecure",
            "--server-address",
            "127.0.0.1:11010",
        ])
        .unwrap();
    assert_eq!(local.server.tls, ServerTls::Insecure);
}

#[test]
fn impossible_values() {
    let world = World::new();
    let (path, err) = world.error_for("metrics:\n  listen: 127.0.0.1:11011\n");
    assert_located(&err, &path, 2, 11, "metrics.listen");
    assert!(
        err.to_string()
            .contains("collides with rpc.listen `127.0.0.1:11011` (the default)"),
        "{err}"
    );
    assert!(
        world
            .load(&[
                "--rpc-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0"
            ])
            .is_ok()
    );

    let (path, err) = world.error_for("shutdown:\n  timeout: 0s\n");
    assert_located(&err, &path, 2, 12, "shutdown.timeout");
    assert!(err.to_string().contains("is zero"), "{err}");

    let (path, err) = world.error_for("server:\n  timeout: 30\n");
    assert_located(&err, &path, 2, 12, "server.timeout");
    assert!(
        err.to_string()
            .contains("has no unit; expected a duration such as"),
        "{err}"
    );

    let (path, err) = world.error_for("log:\n  level: sluice=loud\n");
    assert_located(&err, &path, 2, 10, "log.level");

    let (path, err) = world.error_for("log:\n  format: xml\n");
    assert_located(&err, &path, 2, 11, "log.format");
    assert!(
        err.to_string().ends_with("expected one of human, json"),
        "{err}"
    );

    let (path, err) = world.error_for("network: mainet\n");
    assert_located(&err, &path, 1, 10, "network");
}

#[test]
fn yaml_errors_are_located() {
    let world = World::new();
    let (path, err) = world.error_for("rpc:\n  listen: [\n");
    assert_eq!(err.file(), Some(path.as_path()));
    assert!(
        matches!(err, ConfigError::Syntax { line, .. } if line >= 2),
        "{err:?}"
    );

    let (path, err) = world.error_for("rpc:\n  listen: 127.0.0.1:1\n  listen: 127.0.0.1:2\n");
    assert_eq!(err.file(), Some(path.as_path()));
    assert!(
        err.line_column().is_some_and(|(line, _)| line == 3),
        "{err}"
    );

    let (path, err) = world.error_for("- a\n- b\n");
    assert_located(&err, &path, 1, 1, "(top level)");

    let path = world.config("# only comments\n\n");
    assert!(world.load(&["--config", path.to_str().unwrap()]).is_ok());
}

#[test]
fn empty_values_mean_defaults() {
    let mut world = World::new();
    world.set("SLUICE_RPC_LISTEN", "");
    let path = world.config("rpc:\n  listen:\nmetrics:\n");
    let config = world.load(&["--config", path.to_str().unwrap()]).unwrap();
    assert_eq!(config.rpc.listen, DEFAULT_RPC_LISTEN);
}

#[test]
fn autoloop_timing_comes_from_file_env_or_flag() {
    let mut world = World::new();
    let defaults = world.load(&[]).unwrap();
    assert_eq!(
        defaults.autoloop.debounce,
        crate::autoloop::DEFAULT_DEBOUNCE
    );
    assert_eq!(defaults.autoloop.tick, crate::autoloop::DEFAULT_TICK);

    let file = world.config("autoloop:\n  debounce: 500ms\n  tick: 1m\n");
    let file = file.to_str().unwrap().to_owned();
    let from_file = world.load(&["--config", &file]).unwrap();
    assert_eq!(from_file.autoloop.debounce, Duration::from_millis(500));
    assert_eq!(from_file.autoloop.tick, Duration::from_secs(60));

    world.set("SLUICE_AUTOLOOP_TICK", "2h");
    let flagged = world
        .load(&["--config", &file, "--autoloop-debounce", "5s"])
        .unwrap();
    assert_eq!(flagged.autoloop.tick, Duration::from_secs(7_200));
    assert_eq!(flagged.autoloop.debounce, Duration::from_secs(5));

    assert_eq!(
        defaults.autoloop.journal_retention,
        crate::autoloop::DEFAULT_JOURNAL_RETENTION
    );
    assert_eq!(defaults.autoloop.flow_windows_days, [1, 7, 30]);
    let file2 = world.config(
        "autoloop:\n  journal_retention: 90d\n  fee_sample_every: 5m\n  flow_windows: 90, 7\n",
    );
    let set = world.load(&["--config", file2.to_str().unwrap()]).unwrap();
    assert_eq!(
        set.autoloop.journal_retention,
        Duration::from_secs(90 * 86_400)
    );
    assert_eq!(set.autoloop.fee_sample_every, Duration::from_secs(300));
    assert_eq!(set.autoloop.flow_windows_days, [7, 90]);
    world.env.remove("SLUICE_AUTOLOOP_TICK");
    let (path, err) = world.error_for("autoloop:\n  tick: often\n");
    assert_located(&err, &path, 2, 9, "autoloop.tick");
}

#[test]
fn swap_fee_ceilings_come_from_file_env_or_flag() {
    use crate::domain::Ppm;
    let mut world = World::new();
    let defaults = world.load(&[]).unwrap();
    assert_eq!(defaults.swap, crate::swap::FeeCeilings::default());
    assert_eq!(defaults.swap.swap_fee, Ppm(20_000));
    assert_eq!(defaults.swap.routing_fee, Ppm(30_000));
    assert_eq!(defaults.swap.miner_fee, Ppm(20_000));

    let file = world.config("swap:\n  max_swap_fee_ppm: 5000\n  max_miner_fee_ppm: 7000\n");
    let file = file.to_str().unwrap().to_owned();
    let from_file = world.load(&["--config", &file]).unwrap();
    assert_eq!(from_file.swap.swap_fee, Ppm(5_000));
    assert_eq!(from_file.swap.miner_fee, Ppm(7_000));

    world.set("SLUICE_SWAP_MAX_ROUTING_FEE_PPM", "1000");
    let flagged = world
        .load(&["--config", &file, "--swap-max-swap-fee-ppm", "9000"])
        .unwrap();
    assert_eq!(flagged.swap.swap_fee, Ppm(9_000));
    assert_eq!(flagged.swap.routing_fee, Ppm(1_000));
    assert_eq!(flagged.swap.miner_fee, Ppm(7_000));

    world.env.remove("SLUICE_SWAP_MAX_ROUTING_FEE_PPM");
    let (path, err) = world.error_for("swap:\n  max_miner_fee_ppm: 2%\n");
    assert_located(&err, &path, 2, 22, "swap.max_miner_fee_ppm");
    let (path, err) = world.error_for("swap:\n  max_swap_fee_ppm: 2000000\n");
    assert_located(&err, &path, 2, 21, "swap.max_swap_fee_ppm");
    assert!(err.to_string().contains("100 %"), "{err}");
}

#[test]
fn sweep_confirmations_default_to_three_and_are_bounded() {
    let mut world = World::new();
    assert_eq!(world.load(&[]).unwrap().sweep_confirmations, 3);
    let file = world.config("swap:\n  sweep_confirmations: 7\n");
    let file = file.to_str().unwrap().to_owned();
    assert_eq!(
        world
            .load(&["--config", &file])
            .unwrap()
            .sweep_confirmations,
        7
    );
    world.set("SLUICE_SWAP_SWEEP_CONFIRMATIONS", "12");
    assert_eq!(world.load(&[]).unwrap().sweep_confirmations, 12);
    world.env.remove("SLUICE_SWAP_SWEEP_CONFIRMATIONS");
    let (path, err) = world.error_for("swap:\n  sweep_confirmations: 0\n");
    assert_located(&err, &path, 2, 24, "swap.sweep_confirmations");
    assert!(err.to_string().contains("1 to 1000"), "{err}");
}
