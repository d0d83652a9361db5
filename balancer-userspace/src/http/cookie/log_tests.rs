//! The cookie characters of HAProxy's access logs (`sess_cookie`,
//! `sess_set_cookie`), as the editors report them.

use http::{HeaderMap, HeaderValue, Method, header::SET_COOKIE};

use super::{
    process_request_down, process_response,
    request::Persist,
    test_util::{NOW, cfg, request_headers},
};

fn request(args: &str, cookie: &str, values: &[Option<&str>], down: &[Option<&str>]) -> Persist {
    let mut h = request_headers(&[cookie.as_bytes()]);
    process_request_down(&cfg(args), &mut h, values, down, NOW)
}

#[test]
fn request_characters() {
    let up = [Some("s1"), Some("s2")];
    let args = "SRV insert indirect";
    assert_eq!(request(args, "a=1", &up, &[]).log_char(), b'N');
    assert_eq!(request(args, "SRV=s2", &up, &[]).log_char(), b'V');
    assert_eq!(request(args, "SRV=zz", &up, &[]).log_char(), b'I');
    // s2 down: left out of `values`, given in `down`.
    let p = request(args, "SRV=s2", &[Some("s1"), None], &[None, Some("s2")]);
    assert_eq!((p.server, p.down, p.log_char()), (None, true, b'D'));
}

fn response(args: &str, set_cookie: Option<&str>, chosen: &str, persist: &Persist) -> u8 {
    let mut h = HeaderMap::new();
    if let Some(v) = set_cookie {
        h.insert(SET_COOKIE, HeaderValue::from_str(v).unwrap());
    }
    process_response(
        &cfg(args),
        &mut h,
        200,
        &Method::GET,
        Some(chosen),
        persist,
        NOW,
    )
}

#[test]
fn response_characters() {
    let none = Persist::default();
    let direct = Persist {
        server: Some(0),
        seen: true,
        value: Some("s1".into()),
        ..Persist::default()
    };
    assert_eq!(response("SRV insert", None, "s1", &none), b'I');
    assert_eq!(response("SRV insert", None, "s1", &direct), b'N');
    // A valid cookie whose date needs a refresh: updated.
    assert_eq!(
        response("SRV insert maxidle 30m", None, "s1", &direct),
        b'U'
    );
    // The server's own cookie: deleted in insert mode, rewritten in
    // rewrite mode, passed with preserve.
    assert_eq!(response("SRV insert", Some("SRV=x"), "s1", &direct), b'D');
    assert_eq!(
        response("SRV rewrite", Some("SRV=x; path=/"), "s1", &none),
        b'R'
    );
    assert_eq!(
        response("SRV insert preserve", Some("SRV=x"), "s1", &none),
        b'P'
    );
    assert_eq!(response("SRV rewrite", Some("OTHER=x"), "s1", &none), b'N');
}
