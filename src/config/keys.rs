//! The table of every configuration key.
//!
//! One table drives the file parser (unknown-key detection and suggestions), the environment
//! variable and flag names, the key reference in `sluiced --help`, and the test that checks
//! `deploy/sluice.example.yaml`. Adding a key here is the first step of adding a setting.

use std::fmt::Write as _;

/// What kind of value a key takes; decides the parser and the "expected" text of errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A network name.
    Network,
    /// `host:port`, where host may be a name (resolved when connecting).
    HostPort,
    /// A filesystem path; `~` expands to `$HOME`, relative paths in the file resolve
    /// against the file's directory.
    Path,
    /// `system`, `pinned` or `insecure`.
    ServerTls,
    /// A duration with a unit, such as `30s`.
    Duration,
    /// A whole number of satoshis.
    Sat,
    /// A whole number of parts per million (10 000 = 1 %).
    Ppm,
    /// An IP address and port to listen on.
    SocketAddr,
    /// `true` or `false`.
    Bool,
    /// `tracing` `EnvFilter` directives.
    LogLevel,
    /// `human` or `json`.
    LogFormat,
    /// Whole days, comma-separated.
    DayList,
    /// A number of confirmations, 1 to 1000.
    Confirmations,
}

impl KeyKind {
    /// The form an operator should write, used after "expected" in error messages.
    pub fn expected(self) -> &'static str {
        match self {
            KeyKind::Network => "one of mainnet, testnet, testnet4, signet, regtest, simnet",
            KeyKind::HostPort => "host:port such as localhost:10009",
            KeyKind::Path => {
                "a path (~ is $HOME; in the file, relative paths are relative to the file)"
            }
            KeyKind::ServerTls => "one of system, pinned, insecure",
            KeyKind::Duration => "a duration such as 500ms, 30s, 2m or 1h",
            KeyKind::Sat => "a whole number of satoshis such as 1000",
            KeyKind::Ppm => "a whole number of parts per million such as 20000 (= 2 %)",
            KeyKind::SocketAddr => {
                "an IP address and port such as 127.0.0.1:11011 (names are not resolved)"
            }
            KeyKind::Bool => "true or false",
            KeyKind::LogLevel => {
                "tracing filter directives such as info or info,sluice::swap=debug"
            }
            KeyKind::LogFormat => "one of human, json",
            KeyKind::DayList => "whole days from 1 to 3650, comma-separated, such as 1,7,30",
            KeyKind::Confirmations => "a whole number of blocks from 1 to 1000, such as 3",
        }
    }
}

/// One configuration key: its dotted path in the file and everything documented about it.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Dotted path as written in the YAML file, e.g. `rpc.listen`.
    pub path: &'static str,
    /// The value's kind.
    pub kind: KeyKind,
    /// The default as documentation text (the real default is computed in `resolve`).
    pub default: &'static str,
    /// One sentence on what the key does.
    pub doc: &'static str,
}

impl Key {
    /// The environment variable that overrides the key: `SLUICE_` + upper-case path with `_`.
    pub fn env(&self) -> String {
        format!(
            "SLUICE_{}",
            self.path.replace('.', "_").to_ascii_uppercase()
        )
    }

    /// The flag that overrides the key: `--` + path with `-`.
    pub fn flag(&self) -> String {
        format!("--{}", self.path.replace(['.', '_'], "-"))
    }

    /// The section (`rpc` for `rpc.listen`), or `None` for a top-level key.
    pub fn section(&self) -> Option<&'static str> {
        self.path.split_once('.').map(|(s, _)| s)
    }

    /// The last path component (`listen` for `rpc.listen`).
    pub fn leaf(&self) -> &'static str {
        self.path.rsplit_once('.').map_or(self.path, |(_, l)| l)
    }
}

/// `network`.
pub const NETWORK: Key = Key {
    path: "network",
    kind: KeyKind::Network,
    default: "mainnet",
    doc: "The chain lnd runs on; picks the swap server and lnd macaroon defaults. `simnet` runs the embedded simulated world and ignores lnd.* and server.*.",
};

/// `lnd.host`.
pub const LND_HOST: Key = Key {
    path: "lnd.host",
    kind: KeyKind::HostPort,
    default: "localhost:10009",
    doc: "lnd's gRPC address.",
};

/// `lnd.tls_cert`.
pub const LND_TLS_CERT: Key = Key {
    path: "lnd.tls_cert",
    kind: KeyKind::Path,
    default: "~/.lnd/tls.cert",
    doc: "lnd's TLS certificate; sluice pins exactly this certificate.",
};

/// `lnd.macaroon`.
pub const LND_MACAROON: Key = Key {
    path: "lnd.macaroon",
    kind: KeyKind::Path,
    default: "~/.lnd/data/chain/bitcoin/<network>/admin.macaroon",
    doc: "The macaroon sluice authenticates to lnd with (admin, or one baked with the permissions sluice needs).",
};

/// `server.address`.
pub const SERVER_ADDRESS: Key = Key {
    path: "server.address",
    kind: KeyKind::HostPort,
    default: "mainnet swap.lightning.today:11010, testnet test.swap.lightning.today:11010, signet signet.swap.lightning.today:11010; none for testnet4 and regtest",
    doc: "The Loop swap server's gRPC address.",
};

/// `server.tls`.
pub const SERVER_TLS: Key = Key {
    path: "server.tls",
    kind: KeyKind::ServerTls,
    default: "system",
    doc: "How the swap server's certificate is checked: system roots, a pinned certificate (server.tls_cert), or no TLS at all (loopback addresses only).",
};

/// `server.tls_cert`.
pub const SERVER_TLS_CERT: Key = Key {
    path: "server.tls_cert",
    kind: KeyKind::Path,
    default: "none",
    doc: "The certificate to pin when server.tls is pinned.",
};

/// `server.timeout`.
pub const SERVER_TIMEOUT: Key = Key {
    path: "server.timeout",
    kind: KeyKind::Duration,
    default: "30s",
    doc: "Deadline for each swap server call.",
};

/// `server.l402_max_cost_sat`.
pub const SERVER_L402_MAX_COST_SAT: Key = Key {
    path: "server.l402_max_cost_sat",
    kind: KeyKind::Sat,
    default: "1000",
    doc: "The most sluice pays for the swap server's L402 access token.",
};

/// `server.l402_max_routing_fee_sat`.
pub const SERVER_L402_MAX_ROUTING_FEE_SAT: Key = Key {
    path: "server.l402_max_routing_fee_sat",
    kind: KeyKind::Sat,
    default: "10",
    doc: "The most routing fee sluice pays for the L402 token's invoice.",
};

/// `rpc.listen`.
pub const RPC_LISTEN: Key = Key {
    path: "rpc.listen",
    kind: KeyKind::SocketAddr,
    default: "127.0.0.1:11011",
    doc: "Where sluice's own gRPC API (used by the sluice CLI) listens.",
};

/// `loopd_api.listen`.
pub const LOOPD_API_LISTEN: Key = Key {
    path: "loopd_api.listen",
    kind: KeyKind::SocketAddr,
    default: "127.0.0.1:11010",
    doc: "Where sluiced serves loopd's own API (looprpc.SwapClient), so Loop's loop CLI and tools built on loopd drive it; loopd's default address. Left at the default and taken (a loopd runs here), the loopd API stays off with a warning; set explicitly and taken, the start fails.",
};

/// `loopd_api.enabled`.
pub const LOOPD_API_ENABLED: Key = Key {
    path: "loopd_api.enabled",
    kind: KeyKind::Bool,
    default: "true",
    doc: "Whether sluiced serves loopd's API at all (its TLS certificate and macaroons live in <datadir>/loopd/<network>/).",
};

/// `metrics.listen`.
pub const METRICS_LISTEN: Key = Key {
    path: "metrics.listen",
    kind: KeyKind::SocketAddr,
    default: "127.0.0.1:9311",
    doc: "Where /metrics, /healthz and /readyz are served over HTTP.",
};

/// `metrics.per_channel`.
pub const METRICS_PER_CHANNEL: Key = Key {
    path: "metrics.per_channel",
    kind: KeyKind::Bool,
    default: "true",
    doc: "Whether to export per-channel series (one label value per channel).",
};

/// `store.path`.
pub const STORE_PATH: Key = Key {
    path: "store.path",
    kind: KeyKind::Path,
    default: "<datadir>/sluice.db",
    doc: "The SQLite database holding swaps, decisions and the fee ledger.",
};

/// `policies.dir`.
pub const POLICIES_DIR: Key = Key {
    path: "policies.dir",
    kind: KeyKind::Path,
    default: "<datadir>/policies",
    doc: "The directory of policy files (*.yaml, *.rhai).",
};

/// `autoloop.debounce`.
pub const AUTOLOOP_DEBOUNCE: Key = Key {
    path: "autoloop.debounce",
    kind: KeyKind::Duration,
    default: "2s",
    doc: "How long channel events are gathered before autoloop runs a pass on them.",
};

/// `autoloop.tick`.
pub const AUTOLOOP_TICK: Key = Key {
    path: "autoloop.tick",
    kind: KeyKind::Duration,
    default: "10m",
    doc: "Autoloop's safety tick: a pass at least this often, whatever else happens.",
};

/// `swap.max_swap_fee_ppm`.
pub const SWAP_MAX_SWAP_FEE_PPM: Key = Key {
    path: "swap.max_swap_fee_ppm",
    kind: KeyKind::Ppm,
    default: "20000",
    doc: "For a swap created without fee limits (an API LoopOut without max_fees): the most the server's fee, prepay included, may be, relative to the amount; a quote above it is refused.",
};

/// `swap.max_routing_fee_ppm`.
pub const SWAP_MAX_ROUTING_FEE_PPM: Key = Key {
    path: "swap.max_routing_fee_ppm",
    kind: KeyKind::Ppm,
    default: "30000",
    doc: "For a swap created without fee limits: the most each payment's routing-fee limit may be, relative to the amount.",
};

/// `swap.max_miner_fee_ppm`.
pub const SWAP_MAX_MINER_FEE_PPM: Key = Key {
    path: "swap.max_miner_fee_ppm",
    kind: KeyKind::Ppm,
    default: "20000",
    doc: "For a swap created without fee limits: the most its max_miner_fee (the most its sweep ever pays) may be, relative to the amount.",
};

/// `swap.sweep_confirmations`.
pub const SWAP_SWEEP_CONFIRMATIONS: Key = Key {
    path: "swap.sweep_confirmations",
    kind: KeyKind::Confirmations,
    default: "3",
    doc: "How deep a Loop Out's sweep must be before the swap counts as succeeded and is no longer watched; raise it above the deepest reorg you expect (a sweep reorged out after that is not swept again).",
};

/// `autoloop.journal_retention`.
pub const AUTOLOOP_JOURNAL_RETENTION: Key = Key {
    path: "autoloop.journal_retention",
    kind: KeyKind::Duration,
    default: "30d",
    doc: "How long the decision journal and its per-pass summaries are kept.",
};

/// `autoloop.fee_sample_every`.
pub const AUTOLOOP_FEE_SAMPLE_EVERY: Key = Key {
    path: "autoloop.fee_sample_every",
    kind: KeyKind::Duration,
    default: "10m",
    doc: "Spacing of the fee samples behind the policies' percentile gates (kept for the largest gate window).",
};

/// `autoloop.flow_windows`.
pub const AUTOLOOP_FLOW_WINDOWS: Key = Key {
    path: "autoloop.flow_windows",
    kind: KeyKind::DayList,
    default: "1,7,30",
    doc: "The routing-flow windows, in days, scripts can ask for (fees_earned_sat(days) and the like).",
};

/// `log.level`.
pub const LOG_LEVEL: Key = Key {
    path: "log.level",
    kind: KeyKind::LogLevel,
    default: "info",
    doc: "Log filter, in tracing EnvFilter syntax.",
};

/// `log.format`.
pub const LOG_FORMAT: Key = Key {
    path: "log.format",
    kind: KeyKind::LogFormat,
    default: "human",
    doc: "Log line format: human-readable text or one JSON object per line.",
};

/// `shutdown.timeout`.
pub const SHUTDOWN_TIMEOUT: Key = Key {
    path: "shutdown.timeout",
    kind: KeyKind::Duration,
    default: "10s",
    doc: "How long a graceful shutdown may take before remaining tasks are abandoned.",
};

/// Every key, in the order of the example file and `--help`.
pub const KEYS: &[Key] = &[
    NETWORK,
    LND_HOST,
    LND_TLS_CERT,
    LND_MACAROON,
    SERVER_ADDRESS,
    SERVER_TLS,
    SERVER_TLS_CERT,
    SERVER_TIMEOUT,
    SERVER_L402_MAX_COST_SAT,
    SERVER_L402_MAX_ROUTING_FEE_SAT,
    RPC_LISTEN,
    LOOPD_API_LISTEN,
    LOOPD_API_ENABLED,
    METRICS_LISTEN,
    METRICS_PER_CHANNEL,
    STORE_PATH,
    POLICIES_DIR,
    AUTOLOOP_DEBOUNCE,
    AUTOLOOP_TICK,
    SWAP_MAX_SWAP_FEE_PPM,
    SWAP_MAX_ROUTING_FEE_PPM,
    SWAP_MAX_MINER_FEE_PPM,
    SWAP_SWEEP_CONFIRMATIONS,
    AUTOLOOP_JOURNAL_RETENTION,
    AUTOLOOP_FEE_SAMPLE_EVERY,
    AUTOLOOP_FLOW_WINDOWS,
    LOG_LEVEL,
    LOG_FORMAT,
    SHUTDOWN_TIMEOUT,
];

/// The sections of the file, in table order.
pub fn sections() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for key in KEYS {
        if let Some(s) = key.section()
            && !out.contains(&s)
        {
            out.push(s);
        }
    }
    out
}

/// The key with this dotted path.
pub fn find(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// The key reference appended to `sluiced --help`, generated from [`KEYS`].
pub fn help_reference() -> String {
    let mut out = String::from(
        "CONFIGURATION KEYS\n\
         Every setting can come from the YAML file (default <datadir>/sluice.yaml), an \
         environment variable or a flag; precedence is defaults < file < environment < flags. \
         --datadir (SLUICE_DATADIR, default ~/.sluice) and --config (SLUICE_CONFIG) are \
         flags/environment only. Relative paths in the file resolve against the file's \
         directory; ~ expands to $HOME. deploy/sluice.example.yaml documents every key.\n",
    );
    for key in KEYS {
        let _ = write!(
            out,
            "\n  {}\n      {}\n      expected: {}\n      default: {}\n      env: {}   flag: {}\n",
            key.path,
            key.doc,
            key.kind.expected(),
            key.default,
            key.env(),
            key.flag(),
        );
    }
    out.push_str(
        "\nA configuration error is reported with its place (file:line:column, environment \
         variable or flag) and sluiced exits with code 64.\n",
    );
    out
}

/// The closest of `candidates` to `word`, if one is near enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_path() {
        let key = find("lnd.tls_cert").map(|k| (k.env(), k.flag(), k.section(), k.leaf()));
        assert_eq!(
            key,
            Some((
                "SLUICE_LND_TLS_CERT".to_owned(),
                "--lnd-tls-cert".to_owned(),
                Some("lnd"),
                "tls_cert"
            ))
        );
        assert_eq!(
            sections(),
            [
                "lnd",
                "server",
                "rpc",
                "loopd_api",
                "metrics",
                "store",
                "policies",
                "autoloop",
                "swap",
                "log",
                "shutdown"
            ]
        );
    }

    #[test]
    fn suggests_only_near_keys() {
        assert_eq!(closest("listn", &["listen", "per_channel"]), Some("listen"));
        assert_eq!(
            closest("tls_crt", &["host", "tls_cert", "macaroon"]),
            Some("tls_cert")
        );
        assert_eq!(closest("banana", &["listen", "per_channel"]), None);
    }
}
