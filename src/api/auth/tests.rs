use super::*;
use prost::Message;

fn headers(value: Option<&str>) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    if let Some(v) = value {
        map.insert(http::header::AUTHORIZATION, v.parse().unwrap());
    }
    map
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn every_proto_method_has_an_access_entry() {
    let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
    let service = set
        .file
        .iter()
        .filter(|f| f.package() == "sluice.v1")
        .flat_map(|f| f.service.iter())
        .find(|s| s.name() == "Sluice")
        .unwrap();
    let in_proto: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
    for method in &in_proto {
        assert!(
            METHODS.iter().any(|(m, _)| m == method),
            "{method} is missing from auth::METHODS"
        );
    }
    for (method, _) in METHODS {
        assert!(in_proto.contains(method), "{method} is not in the proto");
    }
}

#[test]
fn access_table_defaults_to_write_and_exempts_only_health_and_reflection() {
    assert_eq!(
        required_access("/sluice.v1.Sluice/GetInfo"),
        Some(Access::Read)
    );
    assert_eq!(
        required_access("/sluice.v1.Sluice/StopDaemon"),
        Some(Access::Write)
    );
    assert_eq!(
        required_access("/sluice.v1.Sluice/NoSuch"),
        Some(Access::Write)
    );
    assert_eq!(required_access("/other.Svc/GetInfo"), Some(Access::Write));
    assert_eq!(required_access("/grpc.health.v1.Health/Check"), None);
    assert_eq!(
        required_access("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
        None
    );
    assert_eq!(
        required_access("/grpc.health.v1.HealthX/Check"),
        Some(Access::Write)
    );
}

#[test]
fn authorize_checks_presence_token_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Credentials::load_or_create(dir.path()).unwrap();
    let admin = read_token(creds.admin_path()).unwrap().bearer();
    let readonly = read_token(creds.readonly_path()).unwrap().bearer();
    let get = "/sluice.v1.Sluice/GetInfo";
    let stop = "/sluice.v1.Sluice/StopDaemon";

    assert_eq!(
        creds.authorize(get, &headers(Some(&admin))).unwrap(),
        Some(Role::Admin)
    );
    assert_eq!(
        creds.authorize(stop, &headers(Some(&admin))).unwrap(),
        Some(Role::Admin)
    );
    assert_eq!(
        creds.authorize(get, &headers(Some(&readonly))).unwrap(),
        Some(Role::ReadOnly)
    );
    let lower = readonly.replacen("Bearer", "bearer", 1);
    assert!(creds.authorize(get, &headers(Some(&lower))).is_ok());
    assert!(matches!(
        creds.authorize(stop, &headers(Some(&readonly))),
        Err(ApiError::PermissionDenied { .. })
    ));
    let unknown = Token([7; 32]).bearer();
    for bad in [
        None,
        Some("Bearer zz"),
        Some(admin.trim_start_matches("Bearer ")),
        Some(unknown.as_str()),
    ] {
        assert!(
            matches!(
                creds.authorize(get, &headers(bad)),
                Err(ApiError::Unauthenticated { .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        creds
            .authorize("/grpc.health.v1.Health/Check", &headers(None))
            .unwrap(),
        None
    );
}

#[test]
fn credential_files_are_private_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("new-datadir");
    let first = Credentials::load_or_create(&data).unwrap();
    assert_eq!(mode(first.admin_path()), 0o600);
    assert_eq!(mode(first.readonly_path()), 0o600);
    assert_eq!(mode(&data), 0o700);
    assert!(!format!("{first:?}").contains(&hex::encode(first.admin.0)));

    let again = Credentials::load_or_create(&data).unwrap();
    assert_eq!(first.admin, again.admin);
    assert_eq!(first.readonly, again.readonly);
    assert_ne!(first.admin, first.readonly);

    // A deleted read-only credential is re-created; the admin one stays.
    std::fs::remove_file(first.readonly_path()).unwrap();
    let third = Credentials::load_or_create(&data).unwrap();
    assert_eq!(first.admin, third.admin);
    assert_ne!(first.readonly, third.readonly);
}

#[test]
fn loose_bad_or_duplicate_credentials_refuse_to_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let creds = Credentials::load_or_create(dir.path()).unwrap();
    let admin = creds.admin_path().to_owned();

    std::fs::set_permissions(&admin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Credentials::load_or_create(dir.path()).unwrap_err();
    assert!(
        matches!(err, ApiError::CredentialPermissions { mode: 0o644, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");
    std::fs::set_permissions(&admin, std::fs::Permissions::from_mode(0o600)).unwrap();

    std::fs::write(&admin, "not a token\n").unwrap();
    let err = Credentials::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(err, ApiError::CredentialContent { .. }), "{err:?}");
    assert!(err.to_string().contains("admin.credential"), "{err}");

    std::fs::copy(creds.readonly_path(), &admin).unwrap();
    let err = Credentials::load_or_create(dir.path()).unwrap_err();
    assert!(
        matches!(err, ApiError::CredentialsIdentical { .. }),
        "{err:?}"
    );
}
