//! The API's contract as data: each row of the route table carries an
//! [`Operation`] (its id, words, security, parameters, body and answers),
//! written beside its handler, and [`document`] assembles the OpenAPI 3.1
//! document from the table. Body and answer schemas are not written here:
//! utoipa derives them from the Rust types the handlers read and write, so
//! the document cannot say one thing while a handler does another.
//!
//! What every operation of a kind answers (`414`, `503`, and `400`, `408`,
//! `413`, `415` where a body is read, `401` where a credential is needed)
//! is added by the assembly; an operation lists only its own outcomes.

use std::borrow::Cow;

use utoipa::{
    ToSchema,
    openapi::{ObjectBuilder, RefOr, Schema, Type, schema::SchemaType},
};

mod document;

pub use document::{Routed, Schemas, document};

/// One operation of the API: what the route table's row does, as the
/// document tells it.
#[derive(Debug)]
pub struct Operation {
    /// The `operationId`: unique, a valid Python identifier.
    pub id: &'static str,
    pub tag: Tag,
    pub summary: &'static str,
    pub description: &'static str,
    pub auth: Auth,
    pub parameters: &'static [Parameter],
    pub body: RequestBody,
    /// The operation's own outcomes; the assembly adds the common ones.
    pub answers: &'static [Answer],
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Public,
    /// A session token from `POST /api/sessions`.
    Session,
    /// An admin API key; every path under `/api/admin/` needs one.
    ApiKey,
}

/// The groups of operations (a generated client's modules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tag {
    SignUp,
    Sessions,
    PasswordReset,
    AdminAccounts,
    AdminEvents,
    AdminWebhooks,
    Service,
    Dev,
}

impl Tag {
    const ALL: [Tag; 8] = [
        Tag::SignUp,
        Tag::Sessions,
        Tag::PasswordReset,
        Tag::AdminAccounts,
        Tag::AdminEvents,
        Tag::AdminWebhooks,
        Tag::Service,
        Tag::Dev,
    ];

    fn name(self) -> &'static str {
        match self {
            Tag::SignUp => "sign_up",
            Tag::Sessions => "sessions",
            Tag::PasswordReset => "password_reset",
            Tag::AdminAccounts => "admin_accounts",
            Tag::AdminEvents => "admin_events",
            Tag::AdminWebhooks => "admin_webhooks",
            Tag::Service => "service",
            Tag::Dev => "dev",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Tag::SignUp => "Signing up and confirming the address with the emailed link",
            Tag::Sessions => "Signing in and out, the signed-in account, its password",
            Tag::PasswordReset => "Setting a forgotten password anew with an emailed link",
            Tag::AdminAccounts => "Looking accounts up and acting on them (admin API key)",
            Tag::AdminEvents => "The feed of public events (admin API key)",
            Tag::AdminWebhooks => "Webhook subscriptions for the public events (admin API key)",
            Tag::Service => "Health, readiness and this document",
            Tag::Dev => "The mailbox of `porter dev`; absent (404) elsewhere",
        }
    }
}

/// The body an operation reads.
#[derive(Debug, Clone, Copy)]
pub enum RequestBody {
    /// None: the body is not read.
    None,
    /// A body is read and must hold no field (empty, `{}` or an empty form).
    Empty,
    /// A JSON object of the type's fields.
    Json(BodyType),
    /// A JSON object, or the same fields as the page's form post, which is
    /// answered with a page. The document shows the JSON alone: the form is
    /// the page's, and a client has one media type per purpose.
    JsonOrForm(BodyType),
}

/// A Rust type whose schema the document shows, by its name.
#[derive(Clone, Copy)]
pub struct BodyType {
    name: fn() -> Cow<'static, str>,
    schema: fn() -> RefOr<Schema>,
    nested: fn(&mut Vec<(String, RefOr<Schema>)>),
}

impl BodyType {
    pub const fn of<T: ToSchema>() -> Self {
        Self {
            name: T::name,
            schema: T::schema,
            nested: T::schemas,
        }
    }
}

impl std::fmt::Debug for BodyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&(self.name)())
    }
}

/// A path or query parameter and the constraints the server enforces.
#[derive(Debug)]
pub struct Parameter {
    pub name: &'static str,
    pub location: Location,
    pub description: &'static str,
    pub schema: fn() -> Schema,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Path,
    Query,
}

/// One outcome of an operation.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub description: &'static str,
    pub content: Content,
}

/// What an answer's body is.
#[derive(Debug, Clone, Copy)]
pub enum Content {
    /// No body (`204`).
    Nothing,
    Json(BodyType),
    /// JSON for a JSON request, a page for the page's form post (or a
    /// client that asks for `text/html`).
    JsonOrPage(BodyType),
    /// An HTML page.
    Page,
    /// Plain text.
    Text,
    /// The error body.
    Error,
    /// The error body, or a page for the page's form post.
    ErrorOrPage,
    /// A JSON document of its own (this one).
    Document,
}

/// A string matching `pattern`.
pub fn pattern(pattern: &str) -> Schema {
    string().pattern(Some(pattern)).into()
}

/// A UUID.
pub fn uuid() -> Schema {
    string()
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Uuid,
        )))
        .into()
}

/// An integer from `min` to `max`.
pub fn integer(min: u64, max: u64) -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Integer))
        .minimum(Some(min as f64))
        .maximum(Some(max as f64))
        .into()
}

pub fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::String))
}

impl Answer {
    pub const fn new(status: u16, description: &'static str, content: Content) -> Self {
        Self {
            status,
            description,
            content,
        }
    }

    /// A JSON answer of type `T`.
    pub const fn json<T: ToSchema>(status: u16, description: &'static str) -> Self {
        Self::new(status, description, Content::Json(BodyType::of::<T>()))
    }

    /// An error answer.
    pub const fn error(status: u16, description: &'static str) -> Self {
        Self::new(status, description, Content::Error)
    }
}

impl Parameter {
    pub const fn path(
        name: &'static str,
        description: &'static str,
        schema: fn() -> Schema,
    ) -> Self {
        Self {
            name,
            location: Location::Path,
            description,
            schema,
        }
    }

    pub const fn query(
        name: &'static str,
        description: &'static str,
        schema: fn() -> Schema,
    ) -> Self {
        Self {
            name,
            location: Location::Query,
            description,
            schema,
        }
    }
}
