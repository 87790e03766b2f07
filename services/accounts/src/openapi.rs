//! The accounts part of the public API document, generated from the handlers' annotations.
//!
//! Error responses are described by status and meaning; their `application/problem+json` body
//! (the `Problem` schema), the `bearer` security scheme and the edge's 429 are added where the
//! whole document is assembled (the gateway's `openapi` module and the binary).

use utoipa::OpenApi as _;
use utoipa::openapi::{Object, ObjectBuilder, Type};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    crate::http::signup,
    crate::http::login,
    crate::http::refresh,
    crate::http::logout,
    crate::http::me,
    crate::http::update_me,
    crate::http::delete_me,
    crate::http::list_users,
    crate::http::admin_update_user,
    crate::http::jwks,
))]
struct AccountsApi;

/// The accounts operations and their schemas.
pub fn openapi() -> utoipa::openapi::OpenApi {
    AccountsApi::openapi()
}

/// `flotilla_runtime::auth::Role` as JSON.
pub fn role_schema() -> Object {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["user", "admin"])).build()
}

pub(crate) fn bearer_token_type() -> Object {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["bearer"])).build()
}

/// The public keys of the access tokens (a JSON Web Key Set, RFC 7517).
// Mirrors `flotilla_runtime::auth::JwkSet`; a unit test keeps them the same.
#[derive(utoipa::ToSchema)]
#[schema(as = JwkSet)]
#[allow(dead_code)] // a description, never built
pub struct JwkSetSchema {
    keys: Vec<JwkSchema>,
}

/// One Ed25519 public key (RFC 8037).
#[derive(utoipa::ToSchema)]
#[schema(as = Jwk)]
#[allow(dead_code)] // a description, never built
pub struct JwkSchema {
    #[schema(example = "OKP")]
    kty: String,
    #[schema(example = "Ed25519")]
    crv: String,
    /// The public key, base64url.
    x: String,
    /// Key id, as in the `kid` header of the tokens it signed.
    kid: String,
    #[schema(example = "EdDSA")]
    alg: String,
    #[schema(rename = "use", example = "sig")]
    use_: String,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use flotilla_runtime::auth::{JwkSet, Role};
    use serde_json::Value;
    use utoipa::PartialSchema;

    use super::*;
    use crate::policy;

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn mirrors_match_the_runtime_types() {
        let set = JwkSet { keys: vec![flotilla_runtime::auth::Jwk::ed25519("k1", &[7; 32])] };
        let json = serde_json::to_value(&set).unwrap();
        let schema = serde_json::to_value(JwkSetSchema::schema()).unwrap();
        assert_eq!(keys(&schema["properties"]), keys(&json));
        let key = serde_json::to_value(JwkSchema::schema()).unwrap();
        assert_eq!(keys(&key["properties"]), keys(&json["keys"][0]));
        for (name, example) in [("kty", "OKP"), ("crv", "Ed25519"), ("alg", "EdDSA"), ("use", "sig")] {
            assert_eq!(json["keys"][0][name], example, "{name}");
        }
        let roles = serde_json::to_value(role_schema()).unwrap();
        assert_eq!(roles["enum"], serde_json::json!([Role::User, Role::Admin]));
    }

    #[test]
    fn every_handler_is_documented_with_the_policy_limits() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let ops: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(ops, 10, "the routes of http::router");
        let signup = &doc["components"]["schemas"]["SignupRequest"]["properties"];
        assert_eq!(signup["name"]["maxLength"], policy::NAME_MAX_CHARS);
        assert_eq!(signup["email"]["maxLength"], policy::EMAIL_MAX_CHARS);
        assert_eq!(signup["password"]["minLength"], policy::PASSWORD_MIN_CHARS);
        assert_eq!(signup["password"]["maxLength"], policy::PASSWORD_MAX_CHARS);
        let limit = &doc["paths"]["/api/admin/users"]["get"]["parameters"][0];
        assert_eq!(limit["name"], "limit");
        assert_eq!(limit["schema"]["maximum"], crate::service::MAX_PAGE);
        assert_eq!(limit["schema"]["default"], crate::service::DEFAULT_PAGE);
    }
}
