//! Layering defaults < file < environment < flags into a validated [`Config`].

use std::path::{Path, PathBuf};

use super::error::{ConfigError, Origin, describe};
use super::keys::{self, Key};
use super::values;
use super::yaml::{self, FileValues};
use super::*;

mod remote;

use remote::{lnd, network, server};

/// A value and where it came from.
struct Located<T> {
    value: T,
    origin: Origin,
}

impl<T> Located<T> {
    fn defaulted(value: T) -> Located<T> {
        Located {
            value,
            origin: Origin::Default,
        }
    }
}

/// The precedence rank of an origin: a higher rank wins.
fn rank(origin: &Origin) -> u8 {
    match origin {
        Origin::Default => 0,
        Origin::File { .. } => 1,
        Origin::Env { .. } => 2,
        Origin::Flag { .. } => 3,
    }
}

/// The three sources of settings, looked up key by key.
struct Sources<'a> {
    args: &'a DaemonArgs,
    env: &'a dyn Fn(&str) -> Option<String>,
    home: Option<PathBuf>,
    file: FileValues,
    file_dir: Option<PathBuf>,
}

impl Sources<'_> {
    /// The highest-precedence text set for `key`, with its origin.
    fn text(&self, key: &Key) -> Option<Located<String>> {
        if let Some(v) = self.args.flag(key.path) {
            return Some(Located {
                value: v.to_owned(),
                origin: Origin::Flag { flag: key.flag() },
            });
        }
        let var = key.env();
        if let Some(v) = (self.env)(&var) {
            return Some(Located {
                value: v,
                origin: Origin::Env { var },
            });
        }
        self.file.get(key).map(|v| Located {
            value: v.text.clone(),
            origin: v.origin.clone(),
        })
    }

    /// The typed value set for `key`, if any.
    fn get<T>(
        &self,
        key: &Key,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Located<T>>, ConfigError> {
        let Some(text) = self.text(key) else {
            return Ok(None);
        };
        match parse(&text.value) {
            Ok(value) => Ok(Some(Located {
                value,
                origin: text.origin,
            })),
            Err(problem) => Err(invalid(text.origin, key, problem, key.kind.expected())),
        }
    }

    /// The value for `key`, or `default` when nobody set it.
    fn get_or<T>(
        &self,
        key: &Key,
        parse: impl Fn(&str) -> Result<T, String>,
        default: T,
    ) -> Result<Located<T>, ConfigError> {
        Ok(self.get(key, parse)?.unwrap_or(Located::defaulted(default)))
    }

    /// A path set for `key`: `~` expanded, relative file values resolved against the file's
    /// directory.
    fn path(&self, key: &Key) -> Result<Option<Located<PathBuf>>, ConfigError> {
        let Some(text) = self.text(key) else {
            return Ok(None);
        };
        let expanded = expand(&text.value, self.home.as_deref())
            .map_err(|problem| invalid(text.origin.clone(), key, problem, key.kind.expected()))?;
        let value = match (&text.origin, &self.file_dir) {
            (Origin::File { .. }, Some(dir)) if expanded.is_relative() => dir.join(expanded),
            _ => expanded,
        };
        Ok(Some(Located {
            value,
            origin: text.origin,
        }))
    }

    /// `$HOME/<rest>` for a default that lives under the home directory.
    fn home_join(&self, key: &str, rest: &str) -> Result<PathBuf, ConfigError> {
        self.home
            .as_ref()
            .map(|h| h.join(rest))
            .ok_or_else(|| ConfigError::NoHome {
                key: key.to_owned(),
            })
    }
}

fn invalid(origin: Origin, key: &Key, problem: String, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        origin,
        key: key.path.to_owned(),
        problem,
        expected: expected.to_owned(),
    }
}

/// Expands a leading `~` to `home`; refuses an empty path.
fn expand(text: &str, home: Option<&Path>) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("the path is empty".to_owned());
    }
    let rest = match text.strip_prefix('~') {
        Some("") => "",
        Some(rest) if rest.starts_with('/') => rest.trim_start_matches('/'),
        _ => return Ok(PathBuf::from(text)),
    };
    match home {
        Some(h) if rest.is_empty() => Ok(h.to_path_buf()),
        Some(h) => Ok(h.join(rest)),
        None => Err(format!("`{text}` starts with ~ but HOME is not set")),
    }
}

/// Builds the [`Config`]; see the module documentation of `config` for the rules.
pub(super) fn resolve(
    args: &DaemonArgs,
    raw_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    // An empty variable counts as unset, as shells make `VAR=` easy to leave behind.
    let env = |name: &str| raw_env(name).filter(|v| !v.trim().is_empty());
    let home = env("HOME").map(PathBuf::from);

    let data_dir = located_pre_key(args.datadir.as_deref(), env("SLUICE_DATADIR"), "datadir")
        .map(|(text, origin)| {
            expand(&text, home.as_deref()).map_err(|problem| ConfigError::Invalid {
                origin,
                key: "datadir".to_owned(),
                problem,
                expected: "a directory path such as ~/.sluice".to_owned(),
            })
        })
        .transpose()?;
    let data_dir = match data_dir {
        Some(d) => d,
        None => home
            .as_ref()
            .map(|h| h.join(DEFAULT_DATADIR))
            .ok_or_else(|| ConfigError::NoHome {
                key: "datadir".to_owned(),
            })?,
    };

    let (source, file) = read_config_file(args, &env, home.as_deref(), &data_dir)?;
    let sources = Sources {
        args,
        env: &env,
        home,
        file_dir: source
            .as_ref()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf),
        file,
    };

    let (network, simnet) = network(&sources, &env)?;
    let lnd = lnd(&sources, network, simnet)?;
    let server = server(&sources, network, simnet)?;

    let rpc_listen = sources.get_or(&keys::RPC_LISTEN, values::socket_addr, DEFAULT_RPC_LISTEN)?;
    let metrics_listen = sources.get_or(
        &keys::METRICS_LISTEN,
        values::socket_addr,
        DEFAULT_METRICS_LISTEN,
    )?;
    if values::listeners_collide(rpc_listen.value, metrics_listen.value) {
        return Err(invalid(
            metrics_listen.origin,
            &keys::METRICS_LISTEN,
            format!(
                "`{}` collides with rpc.listen `{}` ({})",
                metrics_listen.value,
                rpc_listen.value,
                describe(&rpc_listen.origin)
            ),
            "a different port for each listener",
        ));
    }
    let loopd_listen = sources.get_or(
        &keys::LOOPD_API_LISTEN,
        values::socket_addr,
        DEFAULT_LOOPD_API_LISTEN,
    )?;
    let loopd_enabled = sources.get_or(
        &keys::LOOPD_API_ENABLED,
        values::boolean,
        DEFAULT_LOOPD_API_ENABLED,
    )?;
    if loopd_enabled.value {
        for (other, key, origin) in [
            (rpc_listen.value, "rpc.listen", &rpc_listen.origin),
            (
                metrics_listen.value,
                "metrics.listen",
                &metrics_listen.origin,
            ),
        ] {
            if values::listeners_collide(loopd_listen.value, other) {
                return Err(invalid(
                    loopd_listen.origin,
                    &keys::LOOPD_API_LISTEN,
                    format!(
                        "`{}` collides with {key} `{other}` ({})",
                        loopd_listen.value,
                        describe(origin)
                    ),
                    "a different port for each listener, or loopd_api.enabled: false",
                ));
            }
        }
    }
    let per_channel = sources.get_or(
        &keys::METRICS_PER_CHANNEL,
        values::boolean,
        DEFAULT_METRICS_PER_CHANNEL,
    )?;

    let store = sources
        .path(&keys::STORE_PATH)?
        .unwrap_or_else(|| Located::defaulted(data_dir.join(STORE_FILE_NAME)));
    if store.value.is_dir() {
        return Err(invalid(
            store.origin,
            &keys::STORE_PATH,
            format!("{} is a directory", store.value.display()),
            "the path of the SQLite file, such as ~/.sluice/sluice.db",
        ));
    }
    let policies = sources
        .path(&keys::POLICIES_DIR)?
        .unwrap_or_else(|| Located::defaulted(data_dir.join(POLICIES_DIR_NAME)));
    if policies.value.exists() && !policies.value.is_dir() {
        return Err(invalid(
            policies.origin,
            &keys::POLICIES_DIR,
            format!("{} is not a directory", policies.value.display()),
            "the directory holding policy files",
        ));
    }

    let level = sources.get_or(
        &keys::LOG_LEVEL,
        values::log_level,
        DEFAULT_LOG_LEVEL.to_owned(),
    )?;
    let format = sources.get_or(&keys::LOG_FORMAT, values::log_format, LogFormat::Human)?;
    let debounce = sources.get_or(
        &keys::AUTOLOOP_DEBOUNCE,
        values::duration,
        crate::autoloop::DEFAULT_DEBOUNCE,
    )?;
    let tick = sources.get_or(
        &keys::AUTOLOOP_TICK,
        values::duration,
        crate::autoloop::DEFAULT_TICK,
    )?;
    let max_swap_fee = sources.get_or(
        &keys::SWAP_MAX_SWAP_FEE_PPM,
        values::ppm,
        crate::swap::engine::DEFAULT_MAX_SWAP_FEE_PPM,
    )?;
    let max_routing_fee = sources.get_or(
        &keys::SWAP_MAX_ROUTING_FEE_PPM,
        values::ppm,
        crate::swap::engine::DEFAULT_MAX_ROUTING_FEE_PPM,
    )?;
    let max_miner_fee = sources.get_or(
        &keys::SWAP_MAX_MINER_FEE_PPM,
        values::ppm,
        crate::swap::engine::DEFAULT_MAX_MINER_FEE_PPM,
    )?;
    let sweep_confirmations = sources.get_or(
        &keys::SWAP_SWEEP_CONFIRMATIONS,
        values::confirmations,
        crate::swap::DEFAULT_SWEEP_FINALITY_CONFIRMATIONS,
    )?;
    let journal_retention = sources.get_or(
        &keys::AUTOLOOP_JOURNAL_RETENTION,
        values::duration,
        crate::autoloop::DEFAULT_JOURNAL_RETENTION,
    )?;
    let fee_sample_every = sources.get_or(
        &keys::AUTOLOOP_FEE_SAMPLE_EVERY,
        values::duration,
        crate::autoloop::DEFAULT_FEE_SAMPLE_EVERY,
    )?;
    let flow_windows = sources.get_or(
        &keys::AUTOLOOP_FLOW_WINDOWS,
        values::day_list,
        crate::autoloop::DEFAULT_FLOW_WINDOWS.to_vec(),
    )?;
    let shutdown = sources.get_or(
        &keys::SHUTDOWN_TIMEOUT,
        values::duration,
        DEFAULT_SHUTDOWN_TIMEOUT,
    )?;

    Ok(Config {
        source,
        network,
        simnet,
        data_dir,
        lnd,
        server,
        rpc: RpcConfig {
            listen: rpc_listen.value,
        },
        loopd_api: LoopdApiConfig {
            enabled: loopd_enabled.value,
            listen: loopd_listen.value,
            listen_defaulted: matches!(loopd_listen.origin, Origin::Default),
        },
        metrics: MetricsConfig {
            listen: metrics_listen.value,
            per_channel: per_channel.value,
        },
        store: StoreConfig { path: store.value },
        policies: PoliciesConfig {
            dir: policies.value,
        },
        log: LogConfig {
            level: level.value,
            format: format.value,
        },
        autoloop: AutoloopSettings {
            debounce: debounce.value,
            tick: tick.value,
            journal_retention: journal_retention.value,
            fee_sample_every: fee_sample_every.value,
            flow_windows_days: flow_windows.value,
        },
        swap: crate::swap::FeeCeilings {
            swap_fee: max_swap_fee.value,
            routing_fee: max_routing_fee.value,
            miner_fee: max_miner_fee.value,
        },
        sweep_confirmations: sweep_confirmations.value,
        shutdown: ShutdownConfig {
            timeout: shutdown.value,
        },
    })
}

/// A flag-or-environment-only setting (`--datadir`, `--config`): the text and its origin.
fn located_pre_key(
    flag: Option<&Path>,
    env: Option<String>,
    name: &str,
) -> Option<(String, Origin)> {
    match (flag, env) {
        (Some(p), _) => Some((
            p.to_string_lossy().into_owned(),
            Origin::Flag {
                flag: format!("--{name}"),
            },
        )),
        (None, Some(v)) => Some((
            v,
            Origin::Env {
                var: format!("SLUICE_{}", name.to_ascii_uppercase()),
            },
        )),
        (None, None) => None,
    }
}

/// Finds and parses the config file: the named one must exist, the default one may not.
fn read_config_file(
    args: &DaemonArgs,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
    data_dir: &Path,
) -> Result<(Option<PathBuf>, FileValues), ConfigError> {
    let named = located_pre_key(args.config.as_deref(), env("SLUICE_CONFIG"), "config");
    let (path, origin) = match named {
        Some((text, origin)) => {
            let path = expand(&text, home).map_err(|problem| ConfigError::Invalid {
                origin: origin.clone(),
                key: "config".to_owned(),
                problem,
                expected: "the path of a YAML config file".to_owned(),
            })?;
            (path, origin)
        }
        None => (data_dir.join(CONFIG_FILE_NAME), Origin::Default),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && origin == Origin::Default => {
            return Ok((None, FileValues::default()));
        }
        Err(source) => {
            return Err(ConfigError::ReadFile {
                origin,
                path,
                source,
            });
        }
    };
    let values = yaml::parse(&path, &text)?;
    Ok((Some(path), values))
}
