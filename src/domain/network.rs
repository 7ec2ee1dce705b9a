//! The Bitcoin network a daemon runs on.

use std::fmt;
use std::str::FromStr;

/// The chain sluice operates on. `simnet` is sluice's own embedded world, which uses regtest
/// addresses and parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// Bitcoin mainnet.
    Mainnet,
    /// testnet3.
    Testnet,
    /// testnet4.
    Testnet4,
    /// The default signet.
    Signet,
    /// A local regtest chain.
    Regtest,
    /// sluice's embedded simulated world (regtest parameters).
    Simnet,
}

impl Network {
    /// Every network, in the order `--help` lists them.
    pub const ALL: [Network; 6] = [
        Network::Mainnet,
        Network::Testnet,
        Network::Testnet4,
        Network::Signet,
        Network::Regtest,
        Network::Simnet,
    ];

    /// The name used in config files, flags and lnd's `GetInfo.chains[].network`.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Testnet => "testnet",
            Network::Testnet4 => "testnet4",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
            Network::Simnet => "simnet",
        }
    }

    /// The rust-bitcoin network whose address and invoice prefixes apply.
    pub fn bitcoin(self) -> bitcoin::Network {
        match self {
            Network::Mainnet => bitcoin::Network::Bitcoin,
            Network::Testnet => bitcoin::Network::Testnet,
            Network::Testnet4 => bitcoin::Network::Testnet4,
            Network::Signet => bitcoin::Network::Signet,
            Network::Regtest | Network::Simnet => bitcoin::Network::Regtest,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a network name did not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not a network: expected one of mainnet, testnet, testnet4, signet, regtest, simnet"
)]
pub struct ParseNetworkError(pub String);

impl FromStr for Network {
    type Err = ParseNetworkError;
    fn from_str(s: &str) -> Result<Network, ParseNetworkError> {
        Network::ALL
            .into_iter()
            .find(|n| n.as_str() == s || (s == "bitcoin" && *n == Network::Mainnet))
            .ok_or_else(|| ParseNetworkError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in Network::ALL {
            assert_eq!(n.as_str().parse::<Network>().ok(), Some(n));
        }
        assert_eq!("bitcoin".parse::<Network>().ok(), Some(Network::Mainnet));
        assert!("mainet".parse::<Network>().is_err());
    }
}
