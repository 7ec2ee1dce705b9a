//! `walletrpc.WalletKit` and `signrpc.Signer` over the port.

use tonic::{Request, Response, Status};

use super::convert;
use super::facade::{LndFacade, answer, fail};
use super::status::{bad_request, unsupported};
use crate::lnd::NodeErrorKind;
use crate::lnd::types::{KeyDescriptor, SignInput, SignMethod, SignRequest};
use crate::lnd::wire::signrpc::signer_server::Signer;
use crate::lnd::wire::walletrpc::wallet_kit_server::WalletKit;
use crate::lnd::wire::{signrpc, walletrpc};
use crate::simnet::chain::FEE_FLOOR_SAT_KW;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl WalletKit for LndFacade {
    async fn derive_next_key(
        &self,
        request: Request<walletrpc::KeyReq>,
    ) -> Reply<signrpc::KeyDescriptor> {
        let family = request.get_ref().key_family;
        answer(
            self.node
                .derive_next_key(family)
                .await
                .map(|k| convert::key_descriptor(&k)),
        )
    }

    async fn derive_key(
        &self,
        request: Request<signrpc::KeyLocator>,
    ) -> Reply<signrpc::KeyDescriptor> {
        let locator = convert::key_locator(request.get_ref());
        answer(
            self.node
                .derive_key(locator)
                .await
                .map(|k| convert::key_descriptor(&k)),
        )
    }

    async fn next_addr(
        &self,
        request: Request<walletrpc::AddrRequest>,
    ) -> Reply<walletrpc::AddrResponse> {
        use walletrpc::AddressType as T;
        match request.get_ref().r#type() {
            T::TaprootPubkey | T::Unknown => {}
            other => {
                return Err(unsupported(format!("address type {}", other.as_str_name())));
            }
        }
        let addr = self.node.next_addr().await.map_err(fail)?;
        Ok(Response::new(walletrpc::AddrResponse {
            addr: addr.to_string(),
        }))
    }

    async fn estimate_fee(
        &self,
        request: Request<walletrpc::EstimateFeeRequest>,
    ) -> Reply<walletrpc::EstimateFeeResponse> {
        let target = u32::try_from(request.get_ref().conf_target)
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| bad_request("conf_target must be greater than 0"))?;
        let rate = self.node.estimate_fee(target).await.map_err(fail)?;
        Ok(Response::new(walletrpc::EstimateFeeResponse {
            sat_per_kw: i64::try_from(rate.to_sat_per_kwu()).unwrap_or(i64::MAX),
            min_relay_fee_sat_per_kw: i64::try_from(FEE_FLOOR_SAT_KW).unwrap_or(i64::MAX),
        }))
    }

    /// lnd's checks first (at least one output, `min_confs` not negative and not combined
    /// with `spend_unconfirmed`, a known coin selection strategy), then the node's wallet pays
    /// every output in one transaction and publishes it.
    async fn list_unspent(
        &self,
        request: Request<walletrpc::ListUnspentRequest>,
    ) -> Reply<walletrpc::ListUnspentResponse> {
        use crate::lnd::wire::lnrpc;
        let r = request.get_ref();
        if r.min_confs < 0 || r.max_confs < 0 {
            return Err(bad_request("min_confs and max_confs must not be negative"));
        }
        let min = u32::try_from(r.min_confs).unwrap_or(0);
        let max = if r.max_confs == 0 && r.min_confs == 0 {
            u32::MAX
        } else {
            u32::try_from(r.max_confs).unwrap_or(u32::MAX)
        };
        let utxos = self.node.list_unspent(min).await.map_err(fail)?;
        let utxos = utxos
            .into_iter()
            .filter(|u| u.confirmations <= max && (!r.unconfirmed_only || u.confirmations == 0))
            .map(|u| lnrpc::Utxo {
                address_type: lnrpc::AddressType::TaprootPubkey as i32,
                address: String::new(),
                amount_sat: i64::try_from(u.amount.0).unwrap_or(i64::MAX),
                pk_script: String::new(),
                outpoint: Some(lnrpc::OutPoint {
                    txid_bytes: bitcoin::hashes::Hash::to_byte_array(u.outpoint.txid).to_vec(),
                    txid_str: u.outpoint.txid.to_string(),
                    output_index: u.outpoint.vout,
                }),
                confirmations: i64::from(u.confirmations),
            })
            .collect();
        Ok(Response::new(walletrpc::ListUnspentResponse { utxos }))
    }

    async fn send_outputs(
        &self,
        request: Request<walletrpc::SendOutputsRequest>,
    ) -> Reply<walletrpc::SendOutputsResponse> {
        use crate::lnd::types::{CoinSelection, SendOutputsRequest};
        use crate::lnd::wire::lnrpc::CoinSelectionStrategy as S;
        let r = request.get_ref();
        if r.outputs.is_empty() {
            return Err(bad_request("must specify at least one output to create"));
        }
        let outputs = r
            .outputs
            .iter()
            .map(|o| convert::tx_out("outputs", o))
            .collect::<Result<Vec<_>, _>>()?;
        // lnd's ExtractMinConfs.
        let min_confs = match (r.min_confs, r.spend_unconfirmed) {
            (n, _) if n < 0 => {
                return Err(bad_request(
                    "minimum number of confirmations must be a non-negative number",
                ));
            }
            (0, false) => 1,
            (n, true) if n > 0 => {
                return Err(bad_request(
                    "SpendUnconfirmed set to true with MinConfs > 0",
                ));
            }
            (_, true) => 0,
            (n, false) => n.unsigned_abs(),
        };
        let coin_selection = match S::try_from(r.coin_selection_strategy) {
            Ok(S::StrategyUseGlobalConfig) => CoinSelection::NodeDefault,
            Ok(S::StrategyLargest) => CoinSelection::Largest,
            Ok(S::StrategyRandom) => CoinSelection::Random,
            Err(_) => {
                return Err(bad_request(format!(
                    "unknown coin selection strategy {}",
                    r.coin_selection_strategy
                )));
            }
        };
        let sat_per_kw = u64::try_from(r.sat_per_kw)
            .map_err(|_| bad_request("sat_per_kw must not be negative"))?;
        let tx = self
            .node
            .send_outputs(&SendOutputsRequest {
                outputs,
                fee_rate: bitcoin::FeeRate::from_sat_per_kwu(sat_per_kw),
                label: r.label.clone(),
                min_confs,
                coin_selection,
            })
            .await
            .map_err(fail)?;
        Ok(Response::new(walletrpc::SendOutputsResponse {
            raw_tx: bitcoin::consensus::serialize(&tx),
        }))
    }

    /// A transaction the mempool refuses is reported in `publish_error` rather than as a
    /// status, so the client reads any rejection as permanent as the port promises, even
    /// when the rejection names something "invalid"; node trouble stays a status.
    async fn publish_transaction(
        &self,
        request: Request<walletrpc::Transaction>,
    ) -> Reply<walletrpc::PublishResponse> {
        let r = request.get_ref();
        let tx = convert::transaction("tx_hex", &r.tx_hex)?;
        match self.node.publish_transaction(&tx, &r.label).await {
            Ok(()) => Ok(Response::new(walletrpc::PublishResponse::default())),
            Err(e)
                if matches!(
                    e.kind,
                    NodeErrorKind::Permanent | NodeErrorKind::InvalidArgument
                ) =>
            {
                Ok(Response::new(walletrpc::PublishResponse {
                    publish_error: e.message,
                }))
            }
            Err(e) => Err(fail(e)),
        }
    }
}

impl LndFacade {
    /// The key a sign descriptor names: its raw key when given, else the key at its
    /// locator, which lnd derives the same way.
    async fn sign_key(&self, desc: &signrpc::KeyDescriptor) -> Result<KeyDescriptor, Status> {
        let locator = desc.key_loc.as_ref().map(convert::key_locator).unwrap_or(
            crate::lnd::types::KeyLocator {
                family: 0,
                index: 0,
            },
        );
        if desc.raw_key_bytes.is_empty() {
            if desc.key_loc.is_none() {
                return Err(bad_request(
                    "key_desc must have raw_key_bytes or key_loc set",
                ));
            }
            return self.node.derive_key(locator).await.map_err(fail);
        }
        Ok(KeyDescriptor {
            pubkey: convert::public_key("raw_key_bytes", &desc.raw_key_bytes)?,
            locator,
        })
    }

    async fn sign_request(&self, r: &signrpc::SignReq) -> Result<SignRequest, Status> {
        let tx = convert::transaction("raw_tx_bytes", &r.raw_tx_bytes)?;
        let mut inputs = Vec::with_capacity(r.sign_descs.len());
        for d in &r.sign_descs {
            if !d.single_tweak.is_empty() || !d.double_tweak.is_empty() || !d.tap_tweak.is_empty() {
                return Err(unsupported("tweaked sign descriptors"));
            }
            let script = bitcoin::ScriptBuf::from_bytes(d.witness_script.clone());
            let method = match d.sign_method() {
                signrpc::SignMethod::WitnessV0 => SignMethod::WitnessV0 {
                    witness_script: script,
                },
                signrpc::SignMethod::TaprootScriptSpend => SignMethod::TaprootScriptSpend {
                    leaf_script: script,
                },
                other => return Err(unsupported(format!("sign method {}", other.as_str_name()))),
            };
            let key = d
                .key_desc
                .as_ref()
                .ok_or_else(|| bad_request("sign_descs: key_desc must be set"))?;
            let output = d
                .output
                .as_ref()
                .ok_or_else(|| bad_request("sign_descs: output must be set"))?;
            inputs.push(SignInput {
                input_index: u32::try_from(d.input_index)
                    .map_err(|_| bad_request("sign_descs: input_index must not be negative"))?,
                key: self.sign_key(key).await?,
                output: convert::tx_out("sign_descs.output", output)?,
                sighash: d.sighash,
                method,
            });
        }
        let prev_outputs = r
            .prev_outputs
            .iter()
            .map(|o| convert::tx_out("prev_outputs", o))
            .collect::<Result<_, _>>()?;
        Ok(SignRequest {
            tx,
            inputs,
            prev_outputs,
        })
    }
}

#[tonic::async_trait]
impl Signer for LndFacade {
    async fn sign_output_raw(
        &self,
        request: Request<signrpc::SignReq>,
    ) -> Reply<signrpc::SignResp> {
        let req = self.sign_request(request.get_ref()).await?;
        let raw_sigs = self.node.sign_output_raw(&req).await.map_err(fail)?;
        Ok(Response::new(signrpc::SignResp { raw_sigs }))
    }

    async fn mu_sig2_create_session(
        &self,
        request: Request<signrpc::MuSig2SessionRequest>,
    ) -> Reply<signrpc::MuSig2SessionResponse> {
        let r = request.get_ref();
        let session_request = convert::musig2_session_request(r)?;
        let session = self
            .node
            .musig2_create_session(&session_request)
            .await
            .map_err(fail)?;
        Ok(Response::new(convert::musig2_session(&session, r.version)))
    }

    async fn mu_sig2_register_nonces(
        &self,
        request: Request<signrpc::MuSig2RegisterNoncesRequest>,
    ) -> Reply<signrpc::MuSig2RegisterNoncesResponse> {
        let r = request.get_ref();
        let id = convert::bytes32("session_id", &r.session_id)?;
        let nonces = convert::nonces(&r.other_signer_public_nonces)?;
        let have_all_nonces = self
            .node
            .musig2_register_nonces(id, &nonces)
            .await
            .map_err(fail)?;
        Ok(Response::new(signrpc::MuSig2RegisterNoncesResponse {
            have_all_nonces,
        }))
    }

    async fn mu_sig2_sign(
        &self,
        request: Request<signrpc::MuSig2SignRequest>,
    ) -> Reply<signrpc::MuSig2SignResponse> {
        let r = request.get_ref();
        let id = convert::bytes32("session_id", &r.session_id)?;
        let digest = convert::bytes32("message_digest", &r.message_digest)?;
        let local_partial_signature = self
            .node
            .musig2_sign(id, digest, r.cleanup)
            .await
            .map_err(fail)?;
        Ok(Response::new(signrpc::MuSig2SignResponse {
            local_partial_signature,
        }))
    }

    async fn mu_sig2_combine_sig(
        &self,
        request: Request<signrpc::MuSig2CombineSigRequest>,
    ) -> Reply<signrpc::MuSig2CombineSigResponse> {
        let r = request.get_ref();
        let id = convert::bytes32("session_id", &r.session_id)?;
        let combined = self
            .node
            .musig2_combine_sig(id, &r.other_partial_signatures)
            .await
            .map_err(fail)?;
        Ok(Response::new(signrpc::MuSig2CombineSigResponse {
            have_all_signatures: combined.is_some(),
            final_signature: combined.unwrap_or_default(),
        }))
    }

    async fn mu_sig2_cleanup(
        &self,
        request: Request<signrpc::MuSig2CleanupRequest>,
    ) -> Reply<signrpc::MuSig2CleanupResponse> {
        let id = convert::bytes32("session_id", &request.get_ref().session_id)?;
        self.node.musig2_cleanup(id).await.map_err(fail)?;
        Ok(Response::new(signrpc::MuSig2CleanupResponse {}))
    }
}
