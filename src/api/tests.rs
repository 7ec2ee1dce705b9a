//! In-process tests: the real server on 127.0.0.1:0, reached through a pinned TLS channel.

use tonic::Code;

use super::testing::start;
use super::*;
use crate::proto::sluice as pb;

#[tokio::test]
async fn admin_reads_and_stops_readonly_only_reads_anonymous_nothing() {
    let h = start().await;

    let info = h
        .client(Some(auth::ADMIN_FILE))
        .await
        .get_info(pb::GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.version, crate::VERSION);
    assert_eq!(info.network, "signet");
    assert_eq!(info.data_dir, h.data_dir.path().display().to_string());
    let lnd = info.lnd.unwrap();
    assert_eq!((lnd.alias.as_str(), lnd.block_height), ("alice", 812_345));
    assert!(lnd.error.is_empty());
    let policy = info.policy.unwrap();
    assert_eq!(policy.state, "loaded");
    assert_eq!(policy.files, vec!["inbound.yaml".to_owned()]);

    // Handlers read the latest status the daemon published.
    h.node.send_modify(|n| {
        n.connected = false;
        n.error = Some("connection refused".into());
    });
    let mut readonly = h.client(Some(auth::READONLY_FILE)).await;
    let lnd = readonly
        .get_info(pb::GetInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .lnd
        .unwrap();
    assert!(!lnd.connected);
    assert_eq!(lnd.error, "connection refused");

    let denied = readonly
        .stop_daemon(pb::StopDaemonRequest {})
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(!h.stop.is_cancelled());

    let mut anonymous = h.client(None).await;
    let err = anonymous.get_info(pb::GetInfoRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = anonymous
        .stop_daemon(pb::StopDaemonRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(!h.stop.is_cancelled());

    h.client(Some(auth::ADMIN_FILE))
        .await
        .stop_daemon(pb::StopDaemonRequest {})
        .await
        .unwrap();
    assert!(h.stop.is_cancelled());

    h.shutdown.cancel();
    h.server.await.unwrap().unwrap();
}

#[tokio::test]
async fn health_and_reflection_need_no_credential() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let h = start().await;
    let channel = h.channel().await;

    let status = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: SERVICE_NAME.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&SERVICE_NAME.to_owned()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    h.shutdown.cancel();
    h.server.await.unwrap().unwrap();
}

#[tokio::test]
async fn list_channels_says_why_lnd_is_unavailable_until_a_node_is_published() {
    let h = start().await;
    h.node.send_modify(|n| {
        n.connected = false;
        n.error = Some("lnd at 127.0.0.1:1 is unreachable: connection refused".into());
    });
    assert!(h.lnd.get().is_none());
    let err = h
        .client(Some(auth::READONLY_FILE))
        .await
        .list_channels(pb::ListChannelsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("lnd is unavailable")
            && err.message().contains("connection refused"),
        "{err:?}"
    );
    h.shutdown.cancel();
    h.server.await.unwrap().unwrap();
}

#[test]
fn a_channel_carries_its_inbound_share_in_ppm_and_percent() {
    use crate::domain::{ChanId, Channel, Sat};
    let c = Channel {
        chan_id: ChanId((800_000u64 << 40) | (12 << 16) | 1),
        channel_point: "ab:1".into(),
        peer: "0379be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
            .parse()
            .unwrap(),
        peer_alias: Some("bob".into()),
        capacity: Sat(1_000_000),
        local_balance: Sat(747_000),
        remote_balance: Sat(249_000),
        local_reserve: Sat(10_000),
        remote_reserve: Sat(10_000),
        commit_fee: Sat(4_000),
        active: true,
        private: false,
        initiator: true,
        pending_htlc_count: 2,
        pending_htlc_amount: Sat(5_000),
        total_sent: Sat(0),
        total_received: Sat(0),
    };
    let w = service::channel(&c);
    assert_eq!(w.chan_id, "800000x12x1");
    assert_eq!(w.peer_alias, "bob");
    assert_eq!(w.inbound_share_ppm, 250_000);
    assert!((w.inbound_share_percent - 25.0).abs() < 1e-9);
    assert_eq!((w.pending_htlcs, w.pending_htlc_amount_sat), (2, 5_000));
    let empty = service::channel(&Channel {
        local_balance: Sat(0),
        remote_balance: Sat(0),
        ..c
    });
    assert_eq!(empty.inbound_share_ppm, 0);
}
