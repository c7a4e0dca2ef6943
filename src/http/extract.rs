//! Extractors that answer bad input in the one error shape: JSON bodies and bearer auth.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde_json::Value;

use crate::accounts::Caller;
use crate::app::AppState;
use crate::error::Error;

/// A JSON request body, with its rejections turned into [`Error`]s.
///
/// Stricter than `axum::Json` about shapes: a struct is only ever filled from a JSON object.
/// serde's derived structs also accept an array, field by field in order, so without this
/// `[]` would be a valid body wherever every field has a default (`POST /me/instructor` made
/// a student an instructor with it) and `["a@b.co", "password123"]` a valid login. The check
/// applies at every depth, for every route.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Content type, body limit and syntax are axum's checks; the shape is ours.
        let axum::Json(value) = axum::Json::<Value>::from_request(req, state).await?;
        serde_path_to_error::deserialize(Strict(value)).map(Json).map_err(|e| {
            Error::invalid(
                "invalid_body",
                format!("Failed to deserialize the JSON body into the target type: {e}"),
            )
        })
    }
}

/// A parsed JSON value as a serde `Deserializer` that refuses to fill a struct from anything
/// but an object. Everything else is serde_json's own `Value` deserializer.
struct Strict(Value);

impl<'de> IntoDeserializer<'de, serde_json::Error> for Strict {
    type Deserializer = Strict;
    fn into_deserializer(self) -> Strict {
        self
    }
}

impl Strict {
    fn visit_array<'de, V: Visitor<'de>>(
        items: Vec<Value>,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        let mut seq = SeqDeserializer::new(items.into_iter().map(Strict));
        let out = visitor.visit_seq(&mut seq)?;
        seq.end()?;
        Ok(out)
    }

    fn visit_object<'de, V: Visitor<'de>>(
        map: serde_json::Map<String, Value>,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        let mut entries = MapDeserializer::new(map.into_iter().map(|(k, v)| (k, Strict(v))));
        let out = visitor.visit_map(&mut entries)?;
        entries.end()?;
        Ok(out)
    }
}

impl<'de> Deserializer<'de> for Strict {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => Strict::visit_array(items, visitor),
            Value::Object(map) => Strict::visit_object(map, visitor),
            scalar => scalar.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(map) => Strict::visit_object(map, visitor),
            other => Err(de::Error::invalid_type(unexpected(&other), &"a JSON object")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Strict(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    integers_from_whole_floats! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    }

    serde::forward_to_deserialize_any! {
        bool f32 f64 char str string bytes byte_buf unit unit_struct
        seq tuple tuple_struct map identifier ignored_any
    }
}

/// Integer fields take what JSON Schema calls an integer: `5.0` and `5e3` as well as `5` (a
/// number whose fraction is zero). Whether it fits the field's type is the type's own check.
macro_rules! integers_from_whole_floats {
    ($($method:ident)+) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            match self.0 {
                Value::Number(n) if n.is_f64() => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
                        visitor.visit_i64(f as i64)
                    }
                    Some(f) if f.fract() == 0.0 && f >= 0.0 && f < u64::MAX as f64 => {
                        visitor.visit_u64(f as u64)
                    }
                    _ => Value::Number(n).deserialize_any(visitor),
                },
                other => Strict(other).deserialize_any(visitor),
            }
        }
    )+};
}
use integers_from_whole_floats;

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("a number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

impl From<JsonRejection> for Error {
    fn from(rej: JsonRejection) -> Self {
        match rej {
            JsonRejection::JsonSyntaxError(e) => Error::malformed("malformed_json", e.body_text()),
            JsonRejection::JsonDataError(e) => Error::invalid("invalid_body", e.body_text()),
            JsonRejection::MissingJsonContentType(_) => Error::UnsupportedMedia {
                code: "expected_json",
                message: "send the body as JSON with Content-Type: application/json".into(),
            },
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge,
            other => Error::malformed("bad_body", other.body_text()),
        }
    }
}

/// The caller, from a valid `Authorization: Bearer <access token>`; 401 otherwise.
#[derive(Debug, Clone)]
pub struct Auth(pub Caller);

fn bearer(parts: &Parts) -> Option<Result<&str, Error>> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?;
    let bad =
        || Error::unauthenticated("invalid_token", "Authorization must be `Bearer <access token>`");
    let Ok(text) = value.to_str() else { return Some(Err(bad())) };
    let Some((scheme, token)) = text.split_once(' ') else { return Some(Err(bad())) };
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Some(Err(bad()));
    }
    Some(Ok(token.trim()))
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match bearer(parts) {
            None => {
                Err(Error::unauthenticated("missing_token", "sign in: this needs an access token"))
            }
            Some(token) => Ok(Auth(state.accounts.authenticate(token?).await?)),
        }
    }
}

/// `Option<Auth>`: no header means anonymous; a header that is present must be valid.
impl OptionalFromRequestParts<AppState> for Auth {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        match bearer(parts) {
            None => Ok(None),
            Some(token) => Ok(Some(Auth(state.accounts.authenticate(token?).await?))),
        }
    }
}

/// `axum::extract::Query`, with its rejection in the one error shape (400).
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub struct Query<T>(pub T);

impl From<axum::extract::rejection::QueryRejection> for Error {
    fn from(rej: axum::extract::rejection::QueryRejection) -> Self {
        Error::malformed("invalid_query", rej.body_text())
    }
}

/// `axum::extract::Path`, with its rejection in the one error shape: a malformed id is a 404,
/// since no such thing can exist.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Error))]
pub struct Path<T>(pub T);

impl From<axum::extract::rejection::PathRejection> for Error {
    fn from(_: axum::extract::rejection::PathRejection) -> Self {
        Error::not_found("resource")
    }
}

/// `?page=&per_page=` of list endpoints: pages from 1, 20 per page by default, at most 100.
#[derive(Debug, Clone, Copy, serde::Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// From 1.
    #[param(minimum = 1, maximum = 1_000_000)]
    pub page: Option<i64>,
    /// 1 to 100; default 20.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<i64>,
}

impl PageParams {
    /// `(page, per_page)`, checked.
    pub fn resolve(&self) -> Result<(i64, i64), Error> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(20);
        if page < 1 || !(1..=100).contains(&per_page) || page > 1_000_000 {
            return Err(Error::malformed(
                "invalid_page",
                "page starts at 1 and per_page is 1 to 100",
            ));
        }
        Ok((page, per_page))
    }
}

/// One page of a list, as every list endpoint answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Chapter {
        start: f64,
        title: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Body {
        #[serde(default)]
        name: String,
        items: Option<Vec<Chapter>>,
    }

    fn strict<T: DeserializeOwned>(json: &str) -> Result<T, String> {
        serde_path_to_error::deserialize(Strict(serde_json::from_str(json).unwrap()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn structs_come_from_objects_only_at_every_depth() {
        assert!(strict::<Body>("[]").unwrap_err().contains("expected a JSON object"));
        assert!(strict::<Body>(r#"["x", null]"#).is_err());
        let nested = strict::<Body>(r#"{"items": [[0, "Intro"]]}"#).unwrap_err();
        assert!(
            nested.starts_with("items[0]") && nested.contains("expected a JSON object"),
            "{nested}"
        );
    }

    #[test]
    fn everything_else_reads_as_serde_json_would() {
        let body: Body = strict(r#"{"name": "A", "items": [{"start": 0, "title": "Intro"}, {"start": 1.5, "title": "Next"}]}"#).unwrap();
        assert_eq!(body.items.unwrap()[1], Chapter { start: 1.5, title: "Next".into() });
        assert_eq!(
            strict::<Body>(r#"{"items": null}"#).unwrap(),
            Body { name: String::new(), items: None }
        );
        assert!(strict::<Body>(r#"{"name": 42}"#).unwrap_err().starts_with("name"));
        assert_eq!(strict::<Vec<i64>>("[1, 2]").unwrap(), vec![1, 2]);
        assert_eq!(
            strict::<Value>(r#"{"a": [1, {"b": null}]}"#).unwrap(),
            serde_json::json!({"a": [1, {"b": null}]})
        );
        assert_eq!(strict::<Option<Option<i64>>>("null").unwrap(), None);
    }

    #[test]
    fn integers_may_be_written_as_whole_floats() {
        assert_eq!(strict::<i64>("5.0").unwrap(), 5);
        assert_eq!(strict::<u32>("3e3").unwrap(), 3000);
        assert_eq!(strict::<Option<i64>>("-2.0").unwrap(), Some(-2));
        assert_eq!(strict::<u64>("1.8e19").unwrap(), 18_000_000_000_000_000_000);
        assert!(strict::<i64>("5.5").is_err());
        assert!(strict::<u8>("300.0").is_err());
        assert!(strict::<i64>("1e300").is_err());
        assert_eq!(strict::<f64>("5").unwrap(), 5.0);
    }
}
