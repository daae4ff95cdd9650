//! Reading requests safely: bounded bodies, strict JSON, the client's address.

use std::{net::IpAddr, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, Request, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Map, Value};
use utoipa::{
    ToSchema,
    openapi::{RefOr, Schema},
};

use super::response::{ApiError, FieldErrors};
use crate::{domain::text::has_terminal_control, platform::config::IpRange};

/// Largest request body accepted (DESIGN: 16 KiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// A client must deliver its whole body within this time, so a slow sender
/// cannot hold a connection and a handler.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A request body: a struct whose fields are strings (`Option<String>` for
/// one that may be absent or `null`). Its schema is the contract's and the
/// reader's both: the document shows its properties, and the reader knows
/// no other field and requires the schema's `required` ones.
pub trait Fields: DeserializeOwned + ToSchema {}

impl<T: DeserializeOwned + ToSchema> Fields for T {}

/// The body of an action that takes no fields: empty, `{}`, or an empty
/// form post.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// Reads a JSON object body into `T`, or explains per field what is wrong.
/// Unknown fields are errors, not ignored: a client sending `is_admin`
/// should learn it has no effect. A field given twice is an error too:
/// parsers disagree on which one wins, so a proxy or a log could see
/// another value than Porter does.
pub async fn json_body<T: Fields>(request: Request<Incoming>) -> Result<T, ApiError> {
    if !is_json(request.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = read_body(request).await?;
    typed(json_members(&body)?)
}

/// Reads a body of optional fields from a JSON object or from a browser's
/// form post (`application/x-www-form-urlencoded`); an empty body has none
/// of them. Unknown, repeated and non-string fields are refused as in
/// [`json_body`].
pub async fn optional_body<T: Fields>(
    request: Request<Incoming>,
) -> Result<(T, Option<BodyFormat>), ApiError> {
    let is_form = has_media_type(request.headers(), "application/x-www-form-urlencoded");
    let is_json = is_json(request.headers());
    let body = read_body(request).await?;
    if body.is_empty() {
        return Ok((typed(Vec::new())?, None));
    }
    let (members, format) = if is_form {
        (form_members(&body), BodyFormat::Form)
    } else if is_json {
        (json_members(&body)?, BodyFormat::Json)
    } else {
        return Err(ApiError::UnsupportedMediaType);
    };
    Ok((typed(members)?, Some(format)))
}

/// Whether a handler that serves both a page's form and JSON clients
/// answers with a page: the body's media type decides (a form post gets a
/// page, a JSON request JSON, whatever `Accept` says, so a generated client
/// always gets what its document promises); without a body,
/// `Accept: text/html` (a browser) does.
pub fn answers_with_page(headers: &HeaderMap, body: Option<BodyFormat>) -> bool {
    match body {
        Some(BodyFormat::Form) => true,
        Some(BodyFormat::Json) => false,
        None => wants_html(headers),
    }
}

/// `value`, the free text of `field`, unless it holds a character that
/// would drive the terminal of the operator who later reads it in a table
/// (`porter accounts show`): then `400` for the field.
pub fn free_text<'a>(field: &str, value: &'a str) -> Result<&'a str, ApiError> {
    if has_terminal_control(value) {
        return Err(ApiError::field(
            field,
            "must not contain control characters (ESC, BEL, CR, line breaks, …) or bidirectional overrides",
        ));
    }
    Ok(value)
}

/// How a body that may be JSON or a form post was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    /// `application/x-www-form-urlencoded`, as an HTML form posts it.
    Form,
}

/// Like [`json_body`], also accepting the same fields as an HTML form post
/// (for pages that work without scripts).
pub async fn json_or_form_body<T: Fields>(
    request: Request<Incoming>,
) -> Result<(T, BodyFormat), ApiError> {
    let format = if is_json(request.headers()) {
        BodyFormat::Json
    } else if has_media_type(request.headers(), "application/x-www-form-urlencoded") {
        BodyFormat::Form
    } else {
        return Err(ApiError::UnsupportedMediaType);
    };
    let body = read_body(request).await?;
    let members = match format {
        BodyFormat::Json => json_members(&body)?,
        BodyFormat::Form => form_members(&body),
    };
    Ok((typed(members)?, format))
}

/// `members` as a `T`: every field known to `T`'s schema and given once, a
/// string (or `null` where it may be absent), its required ones present;
/// else every problem, per field.
fn typed<T: Fields>(members: Vec<(String, Value)>) -> Result<T, ApiError> {
    let (known, required) = schema_fields::<T>();
    let mut errors = FieldErrors::new();
    let mut object = unique_members(members, &mut errors);
    report_unknown(&object, &known, &mut errors);
    object.retain(|name, _| known.contains(name));
    for name in &known {
        match object.get(name) {
            Some(Value::String(_)) => {}
            None | Some(Value::Null) if required.contains(name) => {
                errors
                    .entry(name.clone())
                    .or_default()
                    .push("is required".into());
            }
            None | Some(Value::Null) => {}
            Some(_) => errors
                .entry(name.clone())
                .or_default()
                .push("must be a string".into()),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    serde_json::from_value(Value::Object(object))
        .map_err(|e| ApiError::MalformedJson(describe_json_error(&e)))
}

/// The properties of `T`'s schema and the required ones among them.
///
/// # Panics
/// When `T`'s schema is not an object: a body type that every test of its
/// route would show wrong.
fn schema_fields<T: ToSchema>() -> (Vec<String>, Vec<String>) {
    match T::schema() {
        RefOr::T(Schema::Object(object)) => {
            (object.properties.keys().cloned().collect(), object.required)
        }
        _ => panic!("the body {} is not an object schema", T::name()),
    }
}

/// The query's parameters, each known and given once, or `400` per field.
pub fn query_params(
    request: &Request<Incoming>,
    known: &[&str],
) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let query = request.uri().query().unwrap_or("");
    let mut params = std::collections::BTreeMap::new();
    let mut errors = FieldErrors::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()).into_owned() {
        if !known.contains(&name.as_str()) {
            errors
                .entry(name.chars().take(64).collect())
                .or_default()
                .push("is not a known parameter".into());
        } else if params.insert(name.clone(), value).is_some() {
            errors
                .entry(name)
                .or_default()
                .push("is given more than once".into());
        }
    }
    if errors.is_empty() {
        Ok(params)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// The bearer token of an `Authorization` header, if there is one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn form_members(body: &[u8]) -> Vec<(String, Value)> {
    url::form_urlencoded::parse(body)
        .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
        .collect()
}

/// The members of a JSON object body, in order, duplicates kept.
fn json_members(body: &[u8]) -> Result<Vec<(String, Value)>, ApiError> {
    match serde_json::from_slice::<Members>(body) {
        Ok(Members::Object(members)) => Ok(members),
        Ok(Members::NotAnObject) => Err(ApiError::MalformedJson(
            "the body must be a JSON object".into(),
        )),
        Err(e) => Err(ApiError::MalformedJson(describe_json_error(&e))),
    }
}

/// The members by name; one given more than once is reported.
fn unique_members(members: Vec<(String, Value)>, errors: &mut FieldErrors) -> Map<String, Value> {
    let mut object = Map::new();
    for (name, value) in members {
        if object.contains_key(&name) {
            let messages = errors.entry(truncate(&name)).or_default();
            if messages.is_empty() {
                messages.push("is given more than once".into());
            }
        } else {
            object.insert(name, value);
        }
    }
    object
}

fn report_unknown(object: &Map<String, Value>, known: &[String], errors: &mut FieldErrors) {
    for name in object.keys().filter(|name| !known.contains(name)) {
        errors
            .entry(truncate(name))
            .or_default()
            .push("is not a known field".into());
    }
}

/// A JSON document's top level: an object's members in order, duplicates
/// kept, or anything else.
enum Members {
    Object(Vec<(String, Value)>),
    NotAnObject,
}

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> serde::de::Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Value>()? {
            members.push(member);
        }
        Ok(Members::Object(members))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Members, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Members::NotAnObject)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Members, E> {
        Ok(Members::NotAnObject)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Members, E> {
        Ok(Members::NotAnObject)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Members, E> {
        Ok(Members::NotAnObject)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Members, E> {
        Ok(Members::NotAnObject)
    }

    fn visit_str<E>(self, _: &str) -> Result<Members, E> {
        Ok(Members::NotAnObject)
    }

    fn visit_unit<E>(self) -> Result<Members, E> {
        Ok(Members::NotAnObject)
    }
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] without
/// buffering it.
pub async fn read_body(request: Request<Incoming>) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let collect = Limited::new(request.into_body(), MAX_BODY_BYTES).collect();
    match tokio::time::timeout(BODY_READ_TIMEOUT, collect).await {
        Err(_) => Err(ApiError::RequestTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES))
        }
        Ok(Err(e)) => Err(ApiError::MalformedJson(format!(
            "the body could not be read ({e})"
        ))),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    has_media_type(headers, "application/json")
}

fn has_media_type(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(expected))
}

/// Whether the client prefers an HTML page (a browser) to JSON.
pub fn wants_html(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("text/html")
}

/// serde_json's message without echoing the input back.
fn describe_json_error(error: &serde_json::Error) -> String {
    format!(
        "{:?} at line {} column {}",
        error.classify(),
        error.line(),
        error.column()
    )
    .to_lowercase()
}

/// Field names come from the client; keep error bodies bounded.
fn truncate(name: &str) -> String {
    name.chars().take(64).collect()
}

/// The client's address: the socket peer, or, when the peer is a trusted
/// proxy, the nearest untrusted address in `X-Forwarded-For`. Never trusts
/// the header from anyone else, so a client cannot pick its own address.
///
/// The header is walked from the right (the hop the peer itself added) and
/// each trusted hop passes the walk on. A hop that does not parse as a bare
/// IP address (a port, garbage, a `unknown`) ends the walk: what lies left
/// of it cannot be vouched for, so the client is the address just right of
/// it, the last trusted hop or the peer. An all-trusted chain gives its
/// leftmost hop.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpRange]) -> IpAddr {
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|range| range.contains(ip));
    if !trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(text) => text.split(',').collect(),
            // A value that is not text is one hop that does not parse.
            Err(_) => vec![""],
        })
        .collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !trusted(ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", forwarded.parse().expect("valid header"));
        headers
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let peer: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(client_ip(peer, &headers("198.51.100.1"), &[]), peer);
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.2".parse().expect("ip");
        let client: IpAddr = "198.51.100.7".parse().expect("ip");
        let spoofed = headers("1.2.3.4, 198.51.100.7");
        assert_eq!(client_ip(proxy, &spoofed, &ranges("10.0.0.2")), client);
    }

    fn ranges(list: &str) -> Vec<IpRange> {
        list.split(',')
            .map(|s| s.trim().parse().expect("range"))
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_is_walked_from_the_right_through_trusted_ranges() {
        let trusted = ranges("10.0.0.0/8, ::1");
        let chain = headers("1.2.3.4, 198.51.100.7, 10.1.2.3, 10.9.9.9");
        assert_eq!(
            client_ip(ip("10.0.0.2"), &chain, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("::1"), &headers("2001:db8::1"), &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers("10.3.3.3, 10.4.4.4"), &trusted),
            ip("10.3.3.3"),
            "an all-trusted chain gives its leftmost hop"
        );
    }

    #[test]
    fn a_hop_that_does_not_parse_ends_the_walk() {
        let trusted = ranges("10.0.0.0/8");
        let proxy = ip("10.0.0.2");
        // Whatever is left of the garbage was not vouched for by a proxy.
        let chain = headers("198.51.100.7, garbage, 10.1.2.3");
        assert_eq!(client_ip(proxy, &chain, &trusted), ip("10.1.2.3"));
        assert_eq!(
            client_ip(proxy, &headers("198.51.100.7, 203.0.113.1:443"), &trusted),
            proxy
        );
        assert_eq!(client_ip(proxy, &headers("198.51.100.7,"), &trusted), proxy);
    }
}
