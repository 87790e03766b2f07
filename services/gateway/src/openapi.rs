//! The gateway's part of the API document: its own routes (`/health`, `/docs`), the shared
//! `Problem` schema, the `bearer` security scheme, and [`apply_edge`], which adds what the edge does
//! to every operation (rate limits; problem+json errors). The binary merges this with the
//! services' documents and hands the whole to [`crate::app`].

use utoipa::OpenApi as _;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// The name of the security scheme every protected operation requires.
pub const BEARER: &str = "bearer";
/// Media type of every error body.
pub const PROBLEM_JSON: &str = flotilla_runtime::problem::CONTENT_TYPE;

/// The JSON of [`flotilla_runtime::Problem`] (RFC 9457), described for the document. A unit test
/// keeps it identical to what the runtime serializes.
#[derive(utoipa::ToSchema)]
#[schema(as = Problem, description = "An error (RFC 9457 problem details). `type` is `about:blank` and \
    `title` the status phrase; rely on `status` and `detail`. A 422 lists each invalid field in `errors`.")]
#[allow(dead_code)] // a description, never built
pub struct ProblemSchema {
    #[schema(rename = "type", example = "about:blank")]
    kind: String,
    #[schema(example = "Unprocessable Entity")]
    title: String,
    #[schema(minimum = 400, maximum = 599, example = 422)]
    status: u16,
    #[schema(example = "title: must not be empty")]
    detail: String,
    /// The invalid fields (422 only; absent otherwise).
    #[schema(required = false)]
    errors: Vec<FieldErrorSchema>,
}

/// One invalid field of a 422.
// Mirrors `flotilla_runtime::FieldError`; a unit test keeps them the same.
#[derive(utoipa::ToSchema)]
#[schema(as = FieldError)]
#[allow(dead_code)] // a description, never built
pub struct FieldErrorSchema {
    /// JSON pointer of the field in the request, e.g. `#/title` or `#/recurrence/interval`.
    #[schema(example = "#/title")]
    pointer: String,
    #[schema(example = "must not be empty")]
    detail: String,
}

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "An access token from signup, login or refresh (EdDSA JWT, 15 minutes by default), \
                 sent as `Authorization: Bearer <token>`.",
            ))
            .build();
        doc.components.get_or_insert_with(Default::default).add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(crate::health::aggregated, crate::docs::viewer, crate::docs::document),
    components(schemas(ProblemSchema, FieldErrorSchema)),
    modifiers(&BearerScheme)
)]
struct GatewayApi;

/// The gateway's own operations, the `Problem` schema and the `bearer` security scheme.
pub fn openapi() -> OpenApi {
    GatewayApi::openapi()
}

/// Adds to every operation what the edge adds to its answers: a 429 (the per-IP limit, and the
/// per-user limit for signed-in callers) and, for every 4xx/5xx response that does not describe
/// its body, the `application/problem+json` [`Problem`](ProblemSchema) body every error has.
/// Also: an optional parameter is left out when unused, never `null` (utoipa makes optional
/// header parameters nullable).
pub fn apply_edge(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        for op in operations_mut(item) {
            for param in op.parameters.iter_mut().flatten() {
                if let RefOr::T(p) = param
                    && let Some(RefOr::T(Schema::Object(schema))) = &mut p.schema
                    && let SchemaType::Array(types) = &mut schema.schema_type
                {
                    types.retain(|t| *t != Type::Null);
                    if let [only] = types.as_slice() {
                        schema.schema_type = SchemaType::Type(only.clone());
                    }
                }
            }
            let responses = &mut op.responses.responses;
            responses.entry("429".to_owned()).or_insert_with(|| {
                ResponseBuilder::new()
                    .description("Rate limit exceeded; retry after `Retry-After` seconds.")
                    .header(
                        "Retry-After",
                        HeaderBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0))))
                            .description(Some("seconds to wait"))
                            .build(),
                    )
                    .build()
                    .into()
            });
            for (status, response) in responses.iter_mut() {
                let error = status.starts_with('4') || status.starts_with('5');
                if let (true, RefOr::T(r)) = (error, response)
                    && r.content.is_empty()
                {
                    let problem = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
                    r.content.insert(PROBLEM_JSON.to_owned(), problem.into());
                }
            }
        }
    }
}

/// The operations of a path item (the methods this API uses).
fn operations_mut(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete, &mut item.head, &mut item.options]
        .into_iter()
        .filter_map(Option::as_mut)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use flotilla_runtime::{FieldError, Problem};
    use serde_json::Value;
    use utoipa::PartialSchema;

    use super::*;

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    fn names(v: &Value) -> BTreeSet<String> {
        v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
    }

    #[test]
    fn problem_schema_matches_what_the_runtime_serializes() {
        let schema = serde_json::to_value(ProblemSchema::schema()).unwrap();
        let with_errors =
            serde_json::to_value(Problem::invalid(vec![FieldError::new("title", "must not be empty")])).unwrap();
        let without = serde_json::to_value(Problem::not_found("no such task")).unwrap();
        assert_eq!(keys(&schema["properties"]), keys(&with_errors), "every key, described");
        assert_eq!(names(&schema["required"]), keys(&without), "required: the keys every problem has");

        let field = serde_json::to_value(FieldErrorSchema::schema()).unwrap();
        assert_eq!(keys(&field["properties"]), keys(&with_errors["errors"][0]));
        assert_eq!(names(&field["required"]), keys(&with_errors["errors"][0]));
        assert_eq!(with_errors["type"], schema["properties"]["type"]["example"]);
    }

    #[test]
    fn the_edge_adds_rate_limits_and_problem_bodies() {
        let mut doc = openapi();
        apply_edge(&mut doc);
        let v = serde_json::to_value(&doc).unwrap();
        let health = &v["paths"]["/health"]["get"]["responses"];
        assert_eq!(health["429"]["content"][PROBLEM_JSON]["schema"]["$ref"], "#/components/schemas/Problem");
        assert!(health["429"]["headers"]["Retry-After"].is_object());
        assert_eq!(health["503"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Health");
        assert!(v["components"]["securitySchemes"][BEARER]["scheme"] == "bearer");
    }
}
