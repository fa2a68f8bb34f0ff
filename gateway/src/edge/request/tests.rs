use super::*;
use crate::edge::path::Escaped;

fn policy() -> RequestPolicy {
    RequestPolicy {
        path: PathPolicy::default(),
        max_headers: 10,
        max_header_bytes: 200,
        max_uri_bytes: 64,
        underscores: Underscores::Drop,
        via_name: "gw".into(),
        max_loops: 1,
    }
}

fn parts(version: Version, target: &str, headers: &[(&str, &str)]) -> request::Parts {
    let mut builder = http::Request::builder().version(version).uri(target);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

fn outcome(mut parts: request::Parts, policy: &RequestPolicy) -> Result<String, ErrorKind> {
    check(&mut parts, policy)
        .map(|()| parts.uri.to_string())
        .map_err(|e| e.kind())
}

const H11: Version = Version::HTTP_11;

#[test]
fn host_rules() {
    let p = policy();
    let ok = |headers: &[(&str, &str)]| outcome(parts(H11, "/a", headers), &p);
    assert_eq!(ok(&[("host", "api.test")]), Ok("/a".into()));
    assert_eq!(ok(&[]), Err(ErrorKind::BadRequest));
    assert_eq!(
        ok(&[("host", "a.test"), ("host", "b.test")]),
        Err(ErrorKind::BadRequest)
    );
    assert_eq!(ok(&[("host", "user@a.test")]), Err(ErrorKind::BadRequest));
    assert_eq!(ok(&[("host", "a b")]), Err(ErrorKind::BadRequest));
    // HTTP/1.0 may leave it out.
    assert_eq!(
        outcome(parts(Version::HTTP_10, "/a", &[]), &p),
        Ok("/a".into())
    );
    // An absolute-form target's authority must agree with Host.
    let absolute = |host| outcome(parts(H11, "http://a.test/x", &[("host", host)]), &p);
    assert!(absolute("A.test").is_ok());
    assert_eq!(absolute("b.test"), Err(ErrorKind::BadRequest));
}

#[test]
fn framing_rules() {
    let p = policy();
    let with = |headers: &[(&str, &str)]| {
        let mut all = vec![("host", "h")];
        all.extend_from_slice(headers);
        outcome(parts(H11, "/", &all), &p)
    };
    assert!(with(&[("transfer-encoding", "chunked")]).is_ok());
    assert!(with(&[("transfer-encoding", " Chunked ")]).is_ok());
    assert_eq!(
        with(&[("transfer-encoding", "gzip, chunked")]),
        Err(ErrorKind::BadRequest)
    );
    assert_eq!(
        with(&[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked")
        ]),
        Err(ErrorKind::BadRequest)
    );
    assert_eq!(
        with(&[("transfer-encoding", "br, chunked")]),
        Err(ErrorKind::UnsupportedTransferCoding)
    );
    assert_eq!(
        with(&[("transfer-encoding", "chunked"), ("content-length", "5")]),
        Err(ErrorKind::AmbiguousFraming)
    );
    assert!(with(&[("content-length", "5")]).is_ok());
    assert_eq!(
        with(&[("content-length", "5"), ("content-length", "5")]),
        Err(ErrorKind::AmbiguousFraming)
    );
    assert_eq!(
        with(&[("content-length", "5, 5")]),
        Err(ErrorKind::AmbiguousFraming)
    );
}

#[test]
fn size_limits() {
    let p = policy();
    let long = format!("/{}", "a".repeat(64));
    assert_eq!(
        outcome(parts(H11, &long, &[("host", "h")]), &p),
        Err(ErrorKind::UriTooLong)
    );
    let many: Vec<(String, String)> = (0..10).map(|i| (format!("x-{i}"), "v".into())).collect();
    let mut headers: Vec<(&str, &str)> =
        many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    headers.push(("host", "h"));
    assert_eq!(
        outcome(parts(H11, "/", &headers), &p),
        Err(ErrorKind::HeadersTooLarge)
    );
    let big = "v".repeat(200);
    assert_eq!(
        outcome(parts(H11, "/", &[("host", "h"), ("x-big", &big)]), &p),
        Err(ErrorKind::HeadersTooLarge)
    );
}

#[test]
fn underscores_dropped_or_refused() {
    let mut p = policy();
    let request = || {
        parts(
            H11,
            "/",
            &[("host", "h"), ("x_consumer_id", "admin"), ("x-ok", "1")],
        )
    };
    let mut dropped = request();
    check(&mut dropped, &p).unwrap();
    assert!(!dropped.headers.contains_key("x_consumer_id"));
    assert!(dropped.headers.contains_key("x-ok"));
    p.underscores = Underscores::Reject;
    assert_eq!(outcome(request(), &p), Err(ErrorKind::BadRequest));
    p.underscores = Underscores::Allow;
    let mut kept = request();
    check(&mut kept, &p).unwrap();
    assert!(kept.headers.contains_key("x_consumer_id"));
}

#[test]
fn via_loops() {
    let mut p = policy();
    let via = |value| outcome(parts(H11, "/", &[("host", "h"), ("via", value)]), &p);
    assert!(via("1.1 other, 1.1 gw-2").is_ok());
    assert_eq!(
        via("1.0 fred, 1.1 gw (comment)"),
        Err(ErrorKind::LoopDetected)
    );
    p.max_loops = 2;
    let via = |value| outcome(parts(H11, "/", &[("host", "h"), ("via", value)]), &p);
    assert!(via("1.1 gw").is_ok());
    assert_eq!(via("1.1 gw, 2 gw"), Err(ErrorKind::LoopDetected));
    assert_eq!(via_entry(Version::HTTP_2, "gw"), "2 gw");
    assert_eq!(via_entry(H11, "gw"), "1.1 gw");
}

#[test]
fn paths_normalized_in_place_with_the_query() {
    let mut p = policy();
    let path = |target: &str, p: &RequestPolicy| outcome(parts(H11, target, &[("host", "h")]), p);
    assert_eq!(path("/public/../admin?x=1", &p), Ok("/admin?x=1".into()));
    assert_eq!(path("/public/%2e%2e/admin", &p), Ok("/admin".into()));
    assert_eq!(path("//admin", &p), Ok("/admin".into()));
    assert_eq!(path("/public/..%2fadmin", &p), Err(ErrorKind::BadPath));
    assert_eq!(path("/a;b", &p), Err(ErrorKind::BadPath));
    assert_eq!(path("*", &p), Ok("*".into()));
    p.path.escaped = Escaped::KeepOpaque;
    assert_eq!(
        path("/public/..%2fadmin", &p),
        Ok("/public/..%2Fadmin".into())
    );
    p.path.merge_slashes = false;
    assert_eq!(path("//admin", &p), Ok("//admin".into()));
}
