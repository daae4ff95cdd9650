//! Assembles the OpenAPI 3.1 document from the route table's operations
//! and the schemas utoipa derives from the body types.

use std::collections::BTreeSet;

use http::Method;
use serde_json::{Map, Value, json};

use super::{Answer, Auth, BodyType, Content, Location, Operation, RequestBody, Tag};
use crate::platform::http::{request::MAX_BODY_BYTES, response::ErrorBody};

/// A row of the route table, as the document sees it.
#[derive(Debug)]
pub struct Routed {
    pub path: &'static str,
    pub methods: &'static [Method],
    pub operation: &'static Operation,
}

/// The document of `routes`, with the `webhooks` section its caller
/// builds (the requests Porter sends, which no route serves).
///
/// # Panics
/// When two operations share an id, a path is served under `HEAD` without
/// `GET`, or an operation under `/api/admin/` is not `Auth::ApiKey` (or one
/// elsewhere is): mistakes in the table that every test shows.
pub fn document(
    routes: impl IntoIterator<Item = Routed>,
    webhooks: impl FnOnce(&mut Schemas) -> Value,
) -> Value {
    let mut schemas = Schemas::default();
    let mut paths = Map::new();
    let mut ids = BTreeSet::new();
    for Routed {
        path,
        methods,
        operation,
    } in routes
    {
        assert!(
            ids.insert(operation.id),
            "two operations are {}",
            operation.id
        );
        assert_eq!(
            path.starts_with("/api/admin/"),
            operation.auth == Auth::ApiKey,
            "{path}: the admin API, and only it, needs an API key"
        );
        let item = paths
            .entry(path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a path item is an object");
        for method in methods.iter().filter(|method| **method != Method::HEAD) {
            item.insert(
                method.as_str().to_lowercase(),
                operation_json(operation, &mut schemas),
            );
        }
        if methods.contains(&Method::HEAD) {
            assert!(methods.contains(&Method::GET), "{path}: HEAD without GET");
        }
    }
    let webhooks = webhooks(&mut schemas);
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Porter",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Account sign-up and email activation. Every error body has the same \
                shape and carries the request id, which is also sent in the X-Request-Id header.",
        },
        "servers": [{
            "url": "/",
            "description": "Wherever Porter is served (its PUBLIC_BASE_URL); \
                a client takes it as its base URL",
        }],
        "tags": Tag::ALL.map(|tag| json!({ "name": tag.name(), "description": tag.description() })),
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from `porter api-keys create` (`pk_…`)",
                },
                "session": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The token from POST /api/sessions",
                },
            },
            "schemas": schemas.0,
        },
    });
    merge_all_of(&mut document["components"]["schemas"]);
    document
}

/// The component schemas the operations refer to, by name.
#[derive(Debug, Default)]
pub struct Schemas(Map<String, Value>);

impl Schemas {
    /// A `$ref` to `body`'s schema, which is added with those it uses.
    pub fn refer(&mut self, body: BodyType) -> Value {
        let name = (body.name)().into_owned();
        if !self.0.contains_key(&name) {
            let mut nested = Vec::new();
            (body.nested)(&mut nested);
            for (nested_name, schema) in nested {
                self.0
                    .insert(nested_name, serde_json::to_value(schema).expect("a schema"));
            }
            let schema = serde_json::to_value((body.schema)()).expect("a schema");
            self.0.insert(name.clone(), schema);
        }
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }
}

fn operation_json(operation: &Operation, schemas: &mut Schemas) -> Value {
    let security = match operation.auth {
        Auth::Public => json!([]),
        Auth::Session => json!([{ "session": [] }]),
        Auth::ApiKey => json!([{ "apiKey": [] }]),
    };
    let mut json = json!({
        "operationId": operation.id,
        "tags": [operation.tag.name()],
        "summary": operation.summary,
        "description": operation.description,
        "security": security,
    });
    if !operation.parameters.is_empty() {
        json["parameters"] = operation
            .parameters
            .iter()
            .map(|parameter| {
                let location = match parameter.location {
                    Location::Path => "path",
                    Location::Query => "query",
                };
                json!({
                    "name": parameter.name,
                    "in": location,
                    "required": parameter.location == Location::Path,
                    "description": parameter.description,
                    "schema": (parameter.schema)(),
                })
            })
            .collect();
    }
    if let Some(body) = request_body(operation.body, schemas) {
        json["requestBody"] = body;
    }
    let mut responses = Map::new();
    for answer in common_answers(operation).iter().chain(operation.answers) {
        responses.insert(
            answer.status.to_string(),
            response(operation, answer, schemas),
        );
    }
    json["responses"] = Value::Object(responses);
    json
}

fn request_body(body: RequestBody, schemas: &mut Schemas) -> Option<Value> {
    let (body, form) = match body {
        RequestBody::None | RequestBody::Empty => return None,
        RequestBody::Json(body) => (body, false),
        RequestBody::JsonOrForm(body) => (body, true),
    };
    let required = match (body.schema)() {
        utoipa::openapi::RefOr::T(utoipa::openapi::Schema::Object(object)) => {
            !object.required.is_empty()
        }
        _ => true,
    };
    // The page's form post is the page's own: a client of the API has one
    // media type, and JSON gets JSON.
    let description = if form {
        "A JSON object, answered with JSON; unknown and repeated fields are refused (400). \
         The page's form post (the same fields, application/x-www-form-urlencoded) is \
         answered with a page"
    } else {
        "A JSON object; unknown and repeated fields are refused (400)"
    };
    Some(json!({
        "required": required,
        "description": description,
        "content": { "application/json": { "schema": schemas.refer(body) } },
    }))
}

/// What every operation of its kind may answer besides its own outcomes.
fn common_answers(operation: &Operation) -> Vec<Answer> {
    let error = |status, description| Answer {
        status,
        description,
        content: Content::Error,
    };
    let mut answers = vec![
        error(414, "The request URI is longer than 2048 bytes"),
        error(
            503,
            "Porter is busy, a dependency is unavailable or the answer took too long; \
             retry after Retry-After seconds",
        ),
    ];
    if !matches!(operation.body, RequestBody::None) {
        answers.extend([
            error(
                400,
                "Invalid fields (`error.fields` says which and why) or a body that is not a \
                 JSON object",
            ),
            error(408, "The body took too long to arrive"),
            error(413, BODY_TOO_LARGE),
            error(415, "The body is not of a media type this operation reads"),
        ]);
    }
    match operation.auth {
        Auth::Public => {}
        Auth::Session => answers.push(error(
            401,
            "No valid session: the token is missing, malformed, forged, expired or revoked",
        )),
        Auth::ApiKey => answers.extend([
            error(401, "No live API key in `Authorization: Bearer …`"),
            error(
                429,
                "Too many attempts without a live API key from this address; retry after \
                 Retry-After seconds",
            ),
        ]),
    }
    answers
}

const BODY_TOO_LARGE: &str = "The body is larger than 16 KiB";
const _: () = assert!(
    MAX_BODY_BYTES == 16 * 1024,
    "BODY_TOO_LARGE names the limit"
);

fn response(operation: &Operation, answer: &Answer, schemas: &mut Schemas) -> Value {
    let error = || json!({ "schema": schemas_error() });
    let page = json!({ "schema": { "type": "string" } });
    let content = match answer.content {
        Content::Nothing => None,
        Content::Json(body) => {
            Some(json!({ "application/json": { "schema": schemas.refer(body) } }))
        }
        Content::JsonOrPage(body) => Some(json!({
            "application/json": { "schema": schemas.refer(body) },
            "text/html": page,
        })),
        Content::Page => Some(json!({ "text/html": page })),
        Content::Text => Some(json!({ "text/plain": { "schema": { "type": "string" } } })),
        Content::Error => Some(json!({ "application/json": error() })),
        Content::ErrorOrPage => Some(json!({ "application/json": error(), "text/html": page })),
        Content::Document => {
            Some(json!({ "application/json": { "schema": { "type": "object" } } }))
        }
    };
    if matches!(answer.content, Content::Error | Content::ErrorOrPage) {
        schemas.refer(BodyType::of::<ErrorBody<'static>>());
    }
    let mut json = json!({ "description": answer.description });
    if let Some(content) = content {
        json["content"] = content;
    }
    match answer.status {
        429 | 503 => {
            json["headers"] = json!({ "Retry-After": {
                "description": "Seconds to wait before trying again",
                "schema": { "type": "integer", "minimum": 1 },
            }});
        }
        401 if operation.auth != Auth::Public => {
            json["headers"] = json!({ "WWW-Authenticate": { "schema": { "const": "Bearer" } } });
        }
        _ => {}
    }
    json
}

fn schemas_error() -> Value {
    json!({ "$ref": "#/components/schemas/Error" })
}

/// Turns each `allOf` of objects (what utoipa makes of a `#[serde(flatten)]`
/// field) into the one object it describes, so `additionalProperties: false`
/// holds for the whole object and not for each part alone.
fn merge_all_of(schemas: &mut Value) {
    let Some(names) = schemas
        .as_object()
        .map(|map| map.keys().cloned().collect::<Vec<_>>())
    else {
        return;
    };
    let flattened = |schemas: &Value, name: &str| schemas[name].get("allOf").is_some();
    let target = |reference: &str| {
        reference
            .trim_start_matches("#/components/schemas/")
            .to_owned()
    };
    // A flattened part may be flattened itself: merge the innermost first.
    while let Some(name) = names.iter().find(|name| {
        flattened(schemas, name)
            && schemas[name.as_str()]["allOf"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|part| part["$ref"].as_str())
                .all(|reference| !flattened(schemas, &target(reference)))
    }) {
        let parts = schemas[name.as_str()]["allOf"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut merged = json!({ "type": "object", "properties": {}, "required": [] });
        let mut closed = true;
        for part in parts {
            // An inline part is the struct's own fields; a referenced one
            // is a flattened type, open unless it says it is closed.
            let part = match part["$ref"].as_str() {
                Some(reference) => {
                    let part = schemas[target(reference).as_str()].clone();
                    closed &= part["additionalProperties"] == json!(false);
                    part
                }
                None => part,
            };
            for (property, schema) in part["properties"].as_object().into_iter().flatten() {
                merged["properties"][property] = schema.clone();
            }
            for required in part["required"].as_array().into_iter().flatten() {
                merged["required"]
                    .as_array_mut()
                    .expect("an array")
                    .push(required.clone());
            }
            if let Some(description) = part.get("description") {
                merged["description"] = description.clone();
            }
        }
        if closed {
            merged["additionalProperties"] = json!(false);
        }
        schemas[name.as_str()] = merged;
    }
}
