use super::*;

fn headers(mac: &Macaroon) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("macaroon", hex::encode(mac.to_binary()).parse().unwrap());
    h
}

fn read(path: &Path) -> Macaroon {
    Macaroon::from_binary(&std::fs::read(path).unwrap()).unwrap()
}

fn path(method: &str) -> String {
    format!("{SERVICE_PATH}{method}")
}

#[test]
fn loop_macaroon_allows_every_method_and_readonly_only_the_reads() {
    let dir = tempfile::tempdir().unwrap();
    let m = Macaroons::load_or_create(dir.path()).unwrap();
    let now = chrono::Utc::now();
    let admin = headers(&read(m.admin_path()));
    let readonly = headers(&read(m.readonly_path()));
    for (method, _) in PERMISSIONS {
        assert!(m.authorize(&path(method), &admin, now).is_ok(), "{method}");
    }
    for method in [
        "LoopOutTerms",
        "LoopOutQuote",
        "ListSwaps",
        "SwapInfo",
        "Monitor",
        "GetInfo",
        "SuggestSwaps",
        "GetLiquidityParams",
    ] {
        assert!(
            m.authorize(&path(method), &readonly, now).is_ok(),
            "{method}"
        );
    }
    for method in ["LoopOut", "LoopIn", "SetLiquidityParams", "StopDaemon"] {
        let err = m.authorize(&path(method), &readonly, now).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unknown, "{method}");
        assert_eq!(err.message(), "permission denied", "{method}");
    }
}

#[test]
fn the_clis_time_caveat_is_honoured_and_other_caveats_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = Macaroons::load_or_create(dir.path()).unwrap();
    let now = chrono::Utc::now();
    let mut mac = read(m.admin_path());
    let later =
        (now + chrono::Duration::seconds(60)).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    mac.add_first_party_caveat(format!("time-before {later}").as_bytes());
    assert!(m.authorize(&path("LoopOut"), &headers(&mac), now).is_ok());
    let after = now + chrono::Duration::seconds(61);
    let err = m
        .authorize(&path("LoopOut"), &headers(&mac), after)
        .unwrap_err();
    assert!(err.message().contains("expired"), "{}", err.message());

    let mut other = read(m.admin_path());
    other.add_first_party_caveat(b"lnd-custom whatever");
    let err = m
        .authorize(&path("ListSwaps"), &headers(&other), now)
        .unwrap_err();
    assert!(
        err.message().contains("not recognized"),
        "{}",
        err.message()
    );
}

#[test]
fn foreign_missing_and_tampered_macaroons_are_refused_with_loopds_words() {
    let dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let m = Macaroons::load_or_create(dir.path()).unwrap();
    let other = Macaroons::load_or_create(other_dir.path()).unwrap();
    let now = chrono::Utc::now();
    let foreign = headers(&read(other.admin_path()));
    let err = m.authorize(&path("LoopOut"), &foreign, now).unwrap_err();
    assert_eq!(
        err.message(),
        "verification failed: signature mismatch after caveat verification"
    );
    let err = m
        .authorize(&path("LoopOut"), &http::HeaderMap::new(), now)
        .unwrap_err();
    assert_eq!(err.message(), "expected 1 macaroon, got 0");
    // A read-only macaroon whose identifier is rewritten to claim more: the signature breaks.
    let mut bytes = std::fs::read(m.readonly_path()).unwrap();
    let at = bytes.windows(4).position(|w| w == b"read").unwrap();
    bytes[at..at + 4].copy_from_slice(b"exec");
    let mut h = http::HeaderMap::new();
    h.insert("macaroon", hex::encode(bytes).parse().unwrap());
    assert!(m.authorize(&path("ListSwaps"), &h, now).is_err());
    // An unknown method is refused even with every permission.
    let admin = headers(&read(m.admin_path()));
    let err = m.authorize(&path("NoSuchCall"), &admin, now).unwrap_err();
    assert!(err.message().contains("unknown permissions"));
}

#[test]
fn files_survive_a_restart_and_an_open_root_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Macaroons::load_or_create(dir.path()).unwrap();
    let admin_before = std::fs::read(first.admin_path()).unwrap();
    let again = Macaroons::load_or_create(dir.path()).unwrap();
    assert_eq!(std::fs::read(again.admin_path()).unwrap(), admin_before);
    assert!(
        again
            .authorize(
                &path("LoopOut"),
                &headers(&read(first.admin_path())),
                chrono::Utc::now()
            )
            .is_ok()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join(ROOT_KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Macaroons::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let mode = std::fs::metadata(first.admin_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
