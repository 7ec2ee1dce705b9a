use super::*;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Serves tonic-health over TLS with `identity` on 127.0.0.1:0 until `stop` is cancelled.
async fn health_server(identity: &Identity, stop: CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let tls = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(&identity.cert_pem, &identity.key_pem),
    );
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(health);
    tokio::spawn(async move {
        let _keep = reporter;
        server
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned())
            .await
            .unwrap();
    });
    addr
}

async fn check(channel: Channel) -> Result<i32, tonic::Status> {
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(reply.into_inner().status)
}

const SERVING: i32 = 1;

#[tokio::test]
async fn lnd_style_ca_cert_is_reachable_with_its_pin_and_refused_with_another() {
    let lnd_like = generate_self_signed(&[], true).unwrap();
    let stop = CancellationToken::new();
    let addr = health_server(&lnd_like, stop.clone()).await;
    let timeout = Duration::from_secs(10);

    let channel = pinned_channel(&addr, lnd_like.cert_pem.as_bytes(), timeout)
        .await
        .unwrap();
    assert_eq!(check(channel).await.unwrap(), SERVING);

    let lazy = pinned_channel_lazy(&addr, lnd_like.cert_pem.as_bytes(), timeout).unwrap();
    assert_eq!(check(lazy).await.unwrap(), SERVING);

    let other = generate_self_signed(&[], true).unwrap();
    let err = pinned_channel(&addr, other.cert_pem.as_bytes(), timeout)
        .await
        .unwrap_err();
    assert!(matches!(err, TlsError::CertMismatch { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("does not match the pinned certificate"),
        "{err}"
    );
    assert!(!err.is_transient());

    // The lazy channel reports the same mismatch through the status' source chain.
    let lazy = pinned_channel_lazy(&addr, other.cert_pem.as_bytes(), timeout).unwrap();
    let status = check(lazy).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&status);
    let mut found = false;
    while let Some(e) = source {
        found |= matches!(
            e.downcast_ref::<TlsError>(),
            Some(TlsError::CertMismatch { .. })
        );
        source = e.source();
    }
    assert!(found, "{status:?}");
    stop.cancel();
}

#[tokio::test]
async fn closed_port_is_unreachable_and_transient() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let cert = generate_self_signed(&[], false).unwrap();
    let err = pinned_channel(&addr, cert.cert_pem.as_bytes(), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(err, TlsError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[test]
fn bad_inputs_are_named() {
    let cert = generate_self_signed(&[], false).unwrap();
    let err = Dialer::new(
        "localhost",
        cert.cert_pem.as_bytes(),
        Duration::from_secs(1),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("`localhost` is not a host:port"),
        "{err}"
    );
    let err = Dialer::new("localhost:1", b"not pem", Duration::from_secs(1))
        .err()
        .unwrap();
    assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
    assert!(
        Dialer::new(
            "[::1]:10009",
            cert.cert_pem.as_bytes(),
            Duration::from_secs(1)
        )
        .is_ok()
    );
}

#[test]
fn generated_certificate_names_every_host() {
    let id =
        generate_self_signed(&["node.example".to_owned(), "10.0.0.7".to_owned()], false).unwrap();
    let der = parse_certs(id.cert_pem.as_bytes(), "test").unwrap();
    let der = der[0].as_ref();
    let contains = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"node.example"));
    assert!(contains(b"localhost"));
    assert!(contains(&[10, 0, 0, 7]));
    assert!(contains(&[127, 0, 0, 1]));
    assert!(PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).is_ok());
    assert!(!format!("{id:?}").contains("PRIVATE KEY"));
}

#[test]
fn identity_is_created_once_then_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("sub/tls.cert");
    let key = dir.path().join("sub/tls.key");
    let first = load_or_create_identity(&cert, &key, &[]).unwrap();
    let again = load_or_create_identity(&cert, &key, &[]).unwrap();
    assert_eq!(first.cert_pem, again.cert_pem);
    assert_eq!(first.key_pem, again.key_pem);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    std::fs::remove_file(&key).unwrap();
    let err = load_or_create_identity(&cert, &key, &[]).unwrap_err();
    assert!(matches!(err, TlsError::HalfIdentity { .. }), "{err:?}");
    assert!(err.to_string().contains("tls.key does not"), "{err}");

    // A key without its certificate is an interrupted first start: both are made anew.
    std::fs::remove_file(&cert).unwrap();
    std::fs::write(&key, "half-written").unwrap();
    let fresh = load_or_create_identity(&cert, &key, &[]).unwrap();
    assert_ne!(fresh.cert_pem, first.cert_pem);
    assert_eq!(
        load_or_create_identity(&cert, &key, &[]).unwrap().cert_pem,
        fresh.cert_pem
    );
}
