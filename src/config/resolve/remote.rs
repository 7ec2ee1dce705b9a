//! The settings that point outside: the network, lnd and the swap server.
//!
//! These are the settings a `--simnet` run ignores: their files are not checked and the swap
//! server needs no address, because the daemon then runs the embedded world.

use std::path::PathBuf;

use crate::domain::Network;

use super::{Located, Sources, invalid, rank};
use crate::config::error::{ConfigError, Origin, describe};
use crate::config::keys::{self, Key};
use crate::config::values::{self, ServerTlsMode};
use crate::config::*;

/// The network and whether the simnet runs. `--simnet` / `SLUICE_SIMNET` act as
/// `network: simnet` at their own precedence; at equal precedence a different network is an error.
pub(super) fn network(
    sources: &Sources<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Network, bool), ConfigError> {
    let net = sources.get_or(&keys::NETWORK, values::network, DEFAULT_NETWORK)?;
    let simnet_request = if sources.args.simnet {
        Some(Origin::Flag {
            flag: "--simnet".to_owned(),
        })
    } else {
        match env("SLUICE_SIMNET") {
            Some(v) => {
                let origin = Origin::Env {
                    var: "SLUICE_SIMNET".to_owned(),
                };
                match values::boolean(&v) {
                    Ok(true) => Some(origin),
                    Ok(false) => None,
                    Err(problem) => {
                        return Err(ConfigError::Invalid {
                            origin,
                            key: "simnet".to_owned(),
                            problem,
                            expected: "true or false".to_owned(),
                        });
                    }
                }
            }
            None => None,
        }
    };
    let network = match simnet_request {
        Some(origin) if net.value != Network::Simnet => {
            if rank(&origin) == rank(&net.origin) {
                return Err(invalid(
                    net.origin,
                    &keys::NETWORK,
                    format!("`{}` contradicts simnet ({})", net.value, describe(&origin)),
                    "either simnet or a network, not both",
                ));
            }
            if rank(&origin) > rank(&net.origin) {
                Network::Simnet
            } else {
                net.value
            }
        }
        _ => net.value,
    };
    Ok((network, network == Network::Simnet))
}

/// lnd's address and credentials; the files are checked unless `simnet`.
pub(super) fn lnd(
    sources: &Sources<'_>,
    network: Network,
    simnet: bool,
) -> Result<LndConfig, ConfigError> {
    let host = sources.get_or(
        &keys::LND_HOST,
        values::host_port,
        DEFAULT_LND_HOST.to_owned(),
    )?;
    let default_path = |key: &Key, rest: String| -> Result<Located<PathBuf>, ConfigError> {
        match sources.home_join(key.path, &rest) {
            Ok(p) => Ok(Located::defaulted(p)),
            Err(_) if simnet => Ok(Located::defaulted(PathBuf::from("~").join(rest))),
            Err(e) => Err(e),
        }
    };
    let tls_cert = match sources.path(&keys::LND_TLS_CERT)? {
        Some(p) => p,
        None => default_path(&keys::LND_TLS_CERT, DEFAULT_LND_TLS_CERT.to_owned())?,
    };
    let macaroon = match sources.path(&keys::LND_MACAROON)? {
        Some(p) => p,
        None => default_path(
            &keys::LND_MACAROON,
            format!("{DEFAULT_LND_MACAROON_DIR}/{network}/admin.macaroon"),
        )?,
    };
    if !simnet {
        check_readable(
            &tls_cert,
            &keys::LND_TLS_CERT,
            "the path of lnd's tls.cert (usually ~/.lnd/tls.cert)",
        )?;
        check_readable(
            &macaroon,
            &keys::LND_MACAROON,
            "the path of an lnd macaroon (usually ~/.lnd/data/chain/bitcoin/<network>/admin.macaroon)",
        )?;
    }
    Ok(LndConfig {
        host: host.value,
        tls_cert_path: tls_cert.value,
        macaroon_path: macaroon.value,
    })
}

/// The swap server's address and TLS; files and required values are checked unless `simnet`.
pub(super) fn server(
    sources: &Sources<'_>,
    network: Network,
    simnet: bool,
) -> Result<ServerConfig, ConfigError> {
    let default_address = match network {
        Network::Mainnet => Some(DEFAULT_SERVER_MAINNET),
        Network::Testnet => Some(DEFAULT_SERVER_TESTNET),
        Network::Signet => Some(DEFAULT_SERVER_SIGNET),
        Network::Testnet4 | Network::Regtest | Network::Simnet => None,
    };
    let address = match (
        sources.get(&keys::SERVER_ADDRESS, values::host_port)?,
        default_address,
    ) {
        (Some(a), _) => a,
        (None, Some(d)) => Located::defaulted(d.to_owned()),
        (None, None) if simnet => Located::defaulted(String::new()),
        (None, None) => {
            return Err(invalid(
                Origin::Default,
                &keys::SERVER_ADDRESS,
                format!("there is no default swap server for network {network}"),
                "the host:port of the swap server to use",
            ));
        }
    };
    let mode = sources.get_or(&keys::SERVER_TLS, values::server_tls, ServerTlsMode::System)?;
    let cert = sources.path(&keys::SERVER_TLS_CERT)?;
    let tls = match (mode.value, cert) {
        (ServerTlsMode::Pinned, Some(cert)) => {
            if !simnet {
                check_readable(
                    &cert,
                    &keys::SERVER_TLS_CERT,
                    "the path of the swap server's certificate (PEM)",
                )?;
            }
            ServerTls::Pinned(cert.value)
        }
        (ServerTlsMode::Pinned, None) => {
            return Err(invalid(
                mode.origin,
                &keys::SERVER_TLS,
                "`pinned` needs server.tls_cert, which is not set".to_owned(),
                "server.tls_cert set to the certificate to pin, or server.tls: system",
            ));
        }
        (other, Some(cert)) => {
            return Err(invalid(
                cert.origin,
                &keys::SERVER_TLS_CERT,
                format!(
                    "a certificate is set but server.tls is `{}` ({})",
                    match other {
                        ServerTlsMode::System => "system",
                        _ => "insecure",
                    },
                    describe(&mode.origin)
                ),
                "server.tls: pinned to pin it, or no server.tls_cert",
            ));
        }
        (ServerTlsMode::Insecure, None) => {
            if !simnet && !values::is_loopback(&address.value) {
                return Err(invalid(
                    mode.origin,
                    &keys::SERVER_TLS,
                    format!(
                        "`insecure` would send swap traffic unencrypted to server.address `{}` ({})",
                        address.value,
                        describe(&address.origin)
                    ),
                    "system or pinned for a remote server (insecure is for loopback addresses only)",
                ));
            }
            ServerTls::Insecure
        }
        (ServerTlsMode::System, None) => ServerTls::System,
    };
    let timeout = sources.get_or(
        &keys::SERVER_TIMEOUT,
        values::duration,
        DEFAULT_SERVER_TIMEOUT,
    )?;
    let max_cost = sources.get_or(
        &keys::SERVER_L402_MAX_COST_SAT,
        values::sat,
        DEFAULT_L402_MAX_COST,
    )?;
    let max_fee = sources.get_or(
        &keys::SERVER_L402_MAX_ROUTING_FEE_SAT,
        values::sat,
        DEFAULT_L402_MAX_ROUTING_FEE,
    )?;
    Ok(ServerConfig {
        address: address.value,
        tls,
        timeout: timeout.value,
        l402_max_cost: max_cost.value,
        l402_max_routing_fee: max_fee.value,
    })
}

/// Checks that a credential file exists and can be opened (its contents are not read here).
fn check_readable(path: &Located<PathBuf>, key: &Key, expected: &str) -> Result<(), ConfigError> {
    let shown = path.value.display();
    let problem = match std::fs::File::open(&path.value) {
        Ok(_) if path.value.is_dir() => format!("{shown} is a directory"),
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("file {shown} does not exist")
        }
        Err(e) => format!("cannot read {shown}: {e}"),
    };
    let mut expected = expected.to_owned();
    if path.origin == Origin::Default {
        expected.push_str(", or run `sluiced --simnet` to try sluice without lnd");
    }
    Err(invalid(path.origin.clone(), key, problem, &expected))
}
