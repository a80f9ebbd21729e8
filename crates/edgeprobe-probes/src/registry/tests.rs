use super::names::host_arch;
use super::*;

#[test]
fn image_references_split_like_docker() {
    let i = ImageRef::parse("mcr.microsoft.com/azureiotedge-agent:1.5").unwrap();
    assert_eq!(i.registry.as_deref(), Some("mcr.microsoft.com"));
    assert_eq!(i.repository, "azureiotedge-agent");
    assert_eq!(i.reference, "1.5");
    let i = ImageRef::parse("myacr.azurecr.io:5000/team/agent").unwrap();
    assert_eq!(i.registry.as_deref(), Some("myacr.azurecr.io:5000"));
    assert_eq!(
        (i.repository.as_str(), i.reference.as_str()),
        ("team/agent", "latest")
    );
    let i = ImageRef::parse("$upstream:443/azureiotedge-agent:1.5").unwrap();
    assert_eq!(i.registry.as_deref(), Some("$upstream:443"));
    let i = ImageRef::parse("alpine:3").unwrap();
    assert_eq!(i.registry, None);
    assert_eq!(i.repository, "library/alpine");
    let i = ImageRef::parse("localhost/x@sha256:abc").unwrap();
    assert_eq!(i.registry.as_deref(), Some("localhost"));
    assert_eq!(
        (i.repository.as_str(), i.reference.as_str()),
        ("x", "sha256:abc")
    );
    assert_eq!(ImageRef::parse("  "), None);
}

#[test]
fn challenges_parse() {
    assert_eq!(
        Challenge::parse(
            r#"Bearer realm="https://auth.example/token?a=1,b",service="reg.example",scope="x""#
        ),
        Some(Challenge::Bearer {
            realm: "https://auth.example/token?a=1,b".into(),
            service: Some("reg.example".into())
        })
    );
    assert_eq!(
        Challenge::parse(r#"Basic realm="Registry Realm""#),
        Some(Challenge::Basic {
            realm: Some("Registry Realm".into())
        })
    );
    assert_eq!(Challenge::parse("Negotiate"), None);
    assert_eq!(Challenge::parse("Bearer service=x"), None);
}

#[test]
fn urls_and_authorities() {
    let u = Url::parse("https://eastus.data.mcr.microsoft.com/abc/data?sig=x").unwrap();
    assert_eq!(u.authority(), "eastus.data.mcr.microsoft.com");
    assert_eq!(u.path_and_query, "/abc/data?sig=x");
    let u = Url::parse("https://data.lab:8443").unwrap();
    assert_eq!(
        (u.authority().as_str(), u.path_and_query.as_str()),
        ("data.lab:8443", "/")
    );
    assert_eq!(Url::parse("/v2/x/blobs/y"), None);
    assert_eq!(Url::parse("ftp://data.lab/x"), None);
    // Scheme and host in any case, an IPv6 host, a query without a path, credentials.
    let u = Url::parse("HTTPS://user:pw@[::1]:8443?sig=x").unwrap();
    assert_eq!(
        (u.https, u.host.as_str(), u.port, u.path_and_query.as_str()),
        (true, "::1", 8443, "/?sig=x")
    );
    assert_eq!(u.authority(), "[::1]:8443");
    let u = Url::parse("http://Data.Lab/blob").unwrap();
    assert_eq!((u.https, u.authority().as_str()), (false, "data.lab"));
    assert_eq!(
        split_host_port("[::1]:5000", 443),
        Some(("::1".into(), 5000))
    );
    assert_eq!(split_host_port("reg:x", 443), None);
    assert_eq!(host_port("::1", 5000, 443), "[::1]:5000");
}

#[test]
fn the_platform_of_this_machine_wins() {
    let list: Vec<Value> = serde_json::from_value(json!([
        {"digest": "sha256:s390", "platform": {"os": "linux", "architecture": "s390x"}},
        {"digest": "sha256:win", "platform": {"os": "windows", "architecture": host_arch()}},
        {"digest": "sha256:here", "platform": {"os": "linux", "architecture": host_arch()}},
    ]))
    .unwrap();
    assert_eq!(
        choose_platform(&list),
        Some(("sha256:here".into(), format!("linux/{}", host_arch())))
    );
    assert_eq!(choose_platform(&list[..1]).unwrap().0, "sha256:s390");
}
