//! Keeps the OpenAPI document true: every response a test sees through
//! `TestApp` is checked against it when the app is dropped, the document
//! itself must be a well-formed OpenAPI 3.1 description, it shows every row
//! of the route table and nothing else, and the committed copy
//! `docs/openapi.json` is what the server generates.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{TestResponse, new_user, spawn_app};

/// The document, as served: generated from the route table and the body
/// types.
pub fn document() -> Value {
    porter::shell::web::openapi_document().clone()
}

/// The committed copy, so a change of the contract shows in review.
const COMMITTED: &str = "docs/openapi.json";

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == *porter::shell::web::OPENAPI_TEXT,
        "{COMMITTED} is not the document the server generates; regenerate it with \
         `cargo run -q -- openapi > {COMMITTED}` and review the difference"
    );
}

#[test]
fn every_operation_has_a_unique_python_identifier_for_an_id_and_says_its_security() {
    let document = document();
    let mut ids = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let id = operation["operationId"].as_str().expect("an operationId");
            let identifier = id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            assert!(
                identifier,
                "{method} {path}: {id} is not a Python identifier"
            );
            assert!(ids.insert(id.to_owned()), "{id} is not unique");
            let security = &operation["security"];
            let expected = if path.starts_with("/api/admin/") {
                json!([{ "apiKey": [] }])
            } else if security == &json!([{ "session": [] }]) {
                assert!(path.starts_with("/api/me") || path.starts_with("/api/sessions"));
                continue;
            } else {
                json!([])
            };
            assert_eq!(security, &expected, "{method} {path}");
        }
    }
    assert!(!document["servers"].as_array().expect("servers").is_empty());
}

#[test]
fn no_parameter_has_a_default() {
    let text = document()["paths"].to_string();
    assert!(
        !text.contains("\"default\""),
        "a default an operation may refuse"
    );
}

/// Why `response` to `method path` does not match the document, if it does not.
pub fn violation(
    document: &Value,
    method: &str,
    path: &str,
    response: &TestResponse,
) -> Option<String> {
    let Some(template) = template_for(document, path) else {
        // Answers that do not depend on the route: no such route, URI too long.
        let routeless = matches!(response.status, 404 | 414);
        return (!routeless).then(|| format!("{} is not documented", &path[..path.len().min(80)]));
    };
    let operation = &document["paths"][&template][method.to_lowercase()];
    if operation.is_null() {
        return (response.status != 405).then(|| format!("{method} {template} is not documented"));
    }
    let status = response.status.to_string();
    let mut described = &operation["responses"][&status];
    if described.is_null() {
        return Some(format!(
            "{method} {template} answered {status}, which is not documented"
        ));
    }
    if let Some(reference) = described["$ref"].as_str() {
        described = resolve(document, reference);
    }
    if described["content"].is_null() {
        return (!response.body.is_empty())
            .then(|| format!("{method} {template} {status} must have no body"));
    }
    let media_type = response.content_type();
    let media_type = media_type.split(';').next().unwrap_or_default().trim();
    let content = &described["content"][media_type];
    if content.is_null() {
        return Some(format!(
            "{method} {template} {status} sent undocumented {media_type}"
        ));
    }
    if media_type != "application/json" {
        return None;
    }
    let body: Value = match serde_json::from_slice(&response.body) {
        Ok(body) => body,
        Err(e) => {
            return Some(format!(
                "{method} {template} {status}: body is not JSON: {e}"
            ));
        }
    };
    let mut schema = content["schema"].clone();
    schema["components"] = document["components"].clone();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| e.to_string())
        .collect();
    (!errors.is_empty()).then(|| format!("{method} {template} {status}: {errors:?} in {body}"))
}

/// Why a webhook delivery does not match the document's `publicEvent`
/// webhook (its headers and body), if it does not.
pub fn webhook_violation(
    document: &Value,
    headers: &[(&str, &str)],
    body: &Value,
) -> Option<String> {
    let operation = &document["webhooks"]["publicEvent"]["post"];
    let mut problems = Vec::new();
    for parameter in operation["parameters"].as_array().expect("parameters") {
        let name = parameter["name"].as_str().expect("a name");
        let value = headers.iter().find(|(header, _)| *header == name);
        let Some((_, value)) = value else {
            problems.push(format!("header {name} missing"));
            continue;
        };
        let validator = jsonschema::validator_for(&parameter["schema"]).expect("schema compiles");
        if !validator.is_valid(&json!(value)) {
            problems.push(format!("header {name}: {value:?}"));
        }
    }
    let mut schema = operation["requestBody"]["content"]["application/json"]["schema"].clone();
    schema["components"] = document["components"].clone();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    problems.extend(validator.iter_errors(body).map(|e| e.to_string()));
    (!problems.is_empty()).then(|| format!("{problems:?} in {body}"))
}

fn resolve<'a>(document: &'a Value, reference: &str) -> &'a Value {
    document
        .pointer(reference.trim_start_matches('#'))
        .unwrap_or(&Value::Null)
}

/// The documented path template matching `path`; literal segments win over
/// parameters (`/resend` over `/{key}`).
fn template_for(document: &Value, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut candidates: Vec<(&String, usize)> = document["paths"]
        .as_object()?
        .keys()
        .filter_map(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            let fits = parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(part, segment)| part.starts_with('{') || part == segment);
            fits.then(|| {
                (
                    template,
                    parts.iter().filter(|p| p.starts_with('{')).count(),
                )
            })
        })
        .collect();
    candidates.sort_by_key(|(_, parameters)| *parameters);
    candidates.first().map(|(template, _)| (*template).clone())
}

#[test]
fn the_document_is_openapi_3_1_and_its_references_resolve() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    let text = document.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let reference = reference.split('"').next().expect("a reference");
        assert!(
            !resolve(&document, reference).is_null(),
            "{reference} does not resolve"
        );
    }
}

/// The operations keys of an OpenAPI path item.
const OPERATIONS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Routes the document leaves out on purpose: `/dev/mail/` is `/dev/mail`
/// as a browser may spell it.
const UNDOCUMENTED: [(&str, &str); 1] = [("/dev/mail/", "GET")];

/// Every row of the table carries an operation, but for [`UNDOCUMENTED`].
#[test]
fn every_row_has_an_operation() {
    let without: Vec<String> = porter::shell::web::ROUTES
        .iter()
        .filter(|route| route.operation().is_none())
        .flat_map(|route| {
            route
                .methods()
                .iter()
                .map(move |m| (m.as_str(), route.path()))
        })
        .filter(|(method, path)| *method != "HEAD" && !UNDOCUMENTED.contains(&(*path, *method)))
        .map(|(method, path)| format!("{method} {path} has no operation"))
        .collect();
    assert!(without.is_empty(), "{without:#?}");
}

/// How the router's table (`porter::shell::web::ROUTES`) and `document` disagree:
/// each `METHOD /path` one serves and the other does not mention, but for
/// [`UNDOCUMENTED`]. `HEAD` is served beside `GET` and documented by it, so
/// it must come with a `GET`. (`/metrics` is not in the document: it is on
/// its own listener, not this API.)
fn table_and_document_differ(document: &Value) -> Vec<String> {
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            OPERATIONS
                .iter()
                .filter(|operation| item.get(**operation).is_some())
                .map(|operation| (path.clone(), operation.to_uppercase()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = porter::shell::web::ROUTES
        .iter()
        .flat_map(|route| {
            route
                .methods()
                .iter()
                .map(|method| (route.path().to_owned(), method.as_str().to_owned()))
        })
        .collect();
    let mut differences = Vec::new();
    for (path, method) in &routed {
        if method == "HEAD" {
            if !routed.contains(&(path.clone(), "GET".to_owned())) {
                differences.push(format!("HEAD {path} is routed without GET"));
            }
        } else if !documented.contains(&(path.clone(), method.clone()))
            && !UNDOCUMENTED.contains(&(path.as_str(), method.as_str()))
        {
            differences.push(format!("{method} {path} is routed but not documented"));
        }
    }
    for (path, method) in documented.difference(&routed) {
        differences.push(format!("{method} {path} is documented but not routed"));
    }
    differences
}

#[test]
fn the_route_table_and_the_document_have_the_same_operations() {
    let differences = table_and_document_differ(&document());
    assert!(differences.is_empty(), "{differences:#?}");
}

#[test]
fn a_route_missing_from_either_side_is_named() {
    let mut document = document();
    let paths = document["paths"].as_object_mut().expect("paths");
    paths.remove("/api/me/password").expect("documented");
    paths.insert("/api/nowhere".into(), json!({ "get": { "responses": {} } }));
    assert_eq!(
        table_and_document_differ(&document),
        [
            "POST /api/me/password is routed but not documented",
            "GET /api/nowhere is documented but not routed",
        ]
    );
}

#[test]
fn the_checker_catches_a_wrong_body() {
    let document = document();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().expect("header"));
    let wrong = TestResponse {
        status: 202,
        headers,
        body: json!({ "status": "accepted" }).to_string().into_bytes(),
    };
    assert!(violation(&document, "POST", "/api/users", &wrong).is_some());
    let undocumented = TestResponse {
        status: 418,
        ..wrong
    };
    assert!(violation(&document, "POST", "/api/users", &undocumented).is_some());
}

#[tokio::test]
async fn the_served_document_is_the_checked_one() {
    let app = spawn_app().await;
    let served = app.get("/api/openapi.json").await;
    assert_eq!(served.json(), document());
    // A few responses of each kind, all checked when `app` drops.
    app.sign_up(&new_user()).await;
    app.post_json(
        "/api/activate-account/resend",
        &json!({ "email": "x@example.com" }),
    )
    .await;
    app.activate(&"k".repeat(32)).await;
    app.get("/readyz").await;
}
