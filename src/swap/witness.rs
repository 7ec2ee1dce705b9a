//! Tells which branch of a P2TR (v3) HTLC a spending input used, from its witness alone.
//!
//! The driver calls this on the input of a confirmed transaction that spends the HTLC outpoint,
//! then reports [`crate::swap::Input::HtlcSpent`] with the matching [`crate::swap::SpendPath`].
//! Shapes (`loop-protocol.md` §3.2, Loop's `IsSuccessWitness`):
//! - key path, cooperative sweep: `[schnorr_sig]` (64 bytes, or 65 with an explicit sighash type);
//! - success leaf, our script-path sweep: `[preimage(32), sig, success_leaf, control_block]`;
//! - timeout leaf, the server's reclaim: `[sig, timeout_leaf, control_block]`.
//!
//! Loop decides on the element count only; this is stricter and also checks the element sizes
//! it can know without the scripts, so a malformed witness is reported as unknown rather than
//! guessed.
//!
//! A spend of the HTLC outpoint always ends the watch, whatever its shape ([`read_spend`]): a
//! witness of unknown shape is read as our success path if one of its elements is the preimage
//! (it hashes to the swap hash), and as the server's timeout path otherwise. Only those two
//! paths exist in the script, and only the success path can carry the preimage.

use bitcoin::Witness;
use sha2::{Digest, Sha256};

use crate::domain::SwapHash;

/// The HTLC branch a witness spends through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HtlcBranch {
    /// The MuSig2 key path: only possible with our signature, so it is our sweep.
    KeyPath,
    /// The success leaf: our sweep with the preimage.
    SuccessLeaf,
    /// The timeout leaf: the server took the HTLC back.
    TimeoutLeaf,
}

impl HtlcBranch {
    /// Whether the spend is ours (key path or success leaf).
    pub fn is_success(self) -> bool {
        match self {
            HtlcBranch::KeyPath | HtlcBranch::SuccessLeaf => true,
            HtlcBranch::TimeoutLeaf => false,
        }
    }
}

/// Size of a BIP-340 Schnorr signature, without and with a sighash-type byte.
const SCHNORR_SIG_LENS: [usize; 2] = [64, 65];
/// A control block for a two-leaf tree: 1 byte leaf version/parity, 32 internal key, 32 sibling.
const CONTROL_BLOCK_LEN: usize = 65;

/// The branch of a v3 (P2TR) HTLC spent by `witness`, or `None` if it matches no known shape.
pub fn classify_v3_witness(witness: &Witness) -> Option<HtlcBranch> {
    let items: Vec<&[u8]> = witness.iter().collect();
    match items.as_slice() {
        [sig] if SCHNORR_SIG_LENS.contains(&sig.len()) => Some(HtlcBranch::KeyPath),
        [preimage, sig, _leaf, control]
            if preimage.len() == 32
                && SCHNORR_SIG_LENS.contains(&sig.len())
                && control.len() == CONTROL_BLOCK_LEN =>
        {
            Some(HtlcBranch::SuccessLeaf)
        }
        [sig, _leaf, control]
            if SCHNORR_SIG_LENS.contains(&sig.len()) && control.len() == CONTROL_BLOCK_LEN =>
        {
            Some(HtlcBranch::TimeoutLeaf)
        }
        // Any other count or size is not a spend of this HTLC that we know how to read.
        [..] => None,
    }
}

/// How a confirmed spend of the HTLC was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpendReading {
    /// The branch the spend is taken to have used.
    pub branch: HtlcBranch,
    /// Whether the witness had one of the known shapes; when false, `branch` was decided by
    /// looking for the preimage among its elements (and the driver logs the shape).
    pub shape_known: bool,
}

/// Reads a confirmed spend of the HTLC outpoint. Never fails: a known shape gives its branch;
/// any other shape is the success path if an element is the preimage of `swap_hash`, else the
/// timeout path.
pub fn read_spend(witness: &Witness, swap_hash: SwapHash) -> SpendReading {
    if let Some(branch) = classify_v3_witness(witness) {
        return SpendReading {
            branch,
            shape_known: true,
        };
    }
    let preimage_found = witness
        .iter()
        .any(|element| <[u8; 32]>::from(Sha256::digest(element)) == swap_hash.0);
    SpendReading {
        branch: if preimage_found {
            HtlcBranch::SuccessLeaf
        } else {
            HtlcBranch::TimeoutLeaf
        },
        shape_known: false,
    }
}

/// The element sizes of a witness, for logging an unknown shape (never the bytes: one of them
/// may be the preimage).
pub fn witness_shape(witness: &Witness) -> Vec<usize> {
    witness.iter().map(<[u8]>::len).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_shape_is_read_by_the_preimage_it_carries() {
        let preimage = [7u8; 32];
        let hash = SwapHash(Sha256::digest(preimage).into());
        // Five elements, the preimage third: no known shape, but it carries the preimage.
        let with = Witness::from_slice(&[
            vec![1u8; 10],
            vec![2; 64],
            preimage.to_vec(),
            vec![3; 5],
            vec![4; 65],
        ]);
        assert_eq!(
            read_spend(&with, hash),
            SpendReading {
                branch: HtlcBranch::SuccessLeaf,
                shape_known: false
            }
        );
        // The same shape without it is the timeout path.
        let without = Witness::from_slice(&[
            vec![1u8; 10],
            vec![2; 64],
            vec![9; 32],
            vec![3; 5],
            vec![4; 65],
        ]);
        assert_eq!(
            read_spend(&without, hash),
            SpendReading {
                branch: HtlcBranch::TimeoutLeaf,
                shape_known: false
            }
        );
        // An empty witness (a spend we cannot read at all) still ends the watch: timeout.
        assert_eq!(
            read_spend(&Witness::new(), hash).branch,
            HtlcBranch::TimeoutLeaf
        );
        // Known shapes keep their reading.
        let key_path = Witness::from_slice(&[vec![1u8; 64]]);
        assert_eq!(
            read_spend(&key_path, hash),
            SpendReading {
                branch: HtlcBranch::KeyPath,
                shape_known: true
            }
        );
        assert_eq!(witness_shape(&with), vec![10, 64, 32, 5, 65]);
    }

    fn witness(sizes: &[usize]) -> Witness {
        Witness::from_slice(&sizes.iter().map(|n| vec![1u8; *n]).collect::<Vec<_>>())
    }

    #[test]
    fn each_shape_is_recognised() {
        let table = [
            (vec![64], Some(HtlcBranch::KeyPath)),
            (vec![65], Some(HtlcBranch::KeyPath)),
            (vec![32, 64, 63, 65], Some(HtlcBranch::SuccessLeaf)),
            (vec![64, 37, 65], Some(HtlcBranch::TimeoutLeaf)),
            // Wrong sizes or counts are unknown, never guessed.
            (vec![], None),
            (vec![63], None),
            (vec![31, 64, 63, 65], None),
            (vec![64, 37, 33], None),
            (vec![1, 2, 3, 4, 5], None),
        ];
        for (sizes, expected) in table {
            assert_eq!(classify_v3_witness(&witness(&sizes)), expected, "{sizes:?}");
        }
        assert!(HtlcBranch::KeyPath.is_success());
        assert!(HtlcBranch::SuccessLeaf.is_success());
        assert!(!HtlcBranch::TimeoutLeaf.is_success());
    }
}
