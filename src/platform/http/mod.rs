//! The HTTP toolkit every feature's handlers share: the hyper server with
//! its connection limits, strict request bodies, responses and errors, what a
//! handler knows of the request, the reader's locale, and the types an
//! operation of the OpenAPI document is written in, with the document's
//! assembly. The route table
//! that puts handlers behind paths is the shell's (`shell::web`).

pub mod context;
pub mod openapi;
pub mod request;
pub mod request_locale;
pub mod response;
pub mod server;
