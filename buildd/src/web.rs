//! The web page at `/` and the OpenAPI document: static files compiled into
//! the binary, nothing fetched from the network. The page asks for a submit
//! token once (kept in the browser's local storage) and talks to the same
//! REST API as `mountctl builds`.

use axum::response::{Html, IntoResponse, Response};

const INDEX: &str = include_str!("../static/index.html");
const OPENAPI: &str = include_str!("../static/openapi.json");

pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}

pub async fn openapi() -> Response {
    ([("content-type", "application/json")], OPENAPI).into_response()
}
