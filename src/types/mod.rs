//! The vocabulary the rest of the crate speaks in: typed ids ([`ids`]), money ([`money`]) and
//! the closed word lists stored in text columns (roles, statuses, kinds), each an enum made by
//! [`vocabulary!`] and parsed in one place.
//!
//! A word read from the database that the enum does not know is a decode error, never a
//! silent default: a row this build does not understand must not pass for a student or for
//! the dev payment provider.

pub mod ids;
pub mod lang;
pub mod money;
pub mod text;

pub use ids::*;
pub use money::{BadCurrency, Currency, Money};

/// A word that is not in a vocabulary: what it was for, what came, what would have done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {got:?}: expected one of {}", expected.join(", "))]
pub struct UnknownWord {
    pub what: &'static str,
    pub got: String,
    pub expected: &'static [&'static str],
}

/// An enum of fixed words, stored and sent as those words.
///
/// ```ignore
/// vocabulary! {
///     /// What a user may do.
///     pub enum Role: "role" { Student = "student", Instructor = "instructor", Admin = "admin" }
/// }
/// ```
///
/// makes the enum with `as_str`, `ALL`, `WORDS`, `Display`, `FromStr` (error [`UnknownWord`]),
/// serde as the word, the OpenAPI schema as a string enum, and sqlx `Type`/`Encode`/`Decode`
/// as text on every backend (an unknown stored word fails to decode).
#[macro_export]
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $word)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every word, in declaration order.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            /// The word this value is stored and sent as.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::types::UnknownWord;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($word => Ok($name::$variant),)+
                    other => Err($crate::types::UnknownWord {
                        what: $what,
                        got: other.to_owned(),
                        expected: $name::WORDS,
                    }),
                }
            }
        }

        // Written out rather than derived: the derive does not see the `rename`s through this
        // macro's literal fragments and would document the variant names instead of the words.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some($name::WORDS.iter().copied()))
                    .description(Some(concat!("A ", $what, ".")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        $crate::stored_as_text!($name);
    };
}

/// sqlx `Type`, `Encode` and `Decode` for a type stored as its `Display` text and read back
/// with its `FromStr` (whose error becomes the decode error), on every backend.
#[doc(hidden)]
#[macro_export]
macro_rules! stored_as_text {
    ($name:ty) => {
        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            String: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, DB>>::encode(self.to_string(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            String: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<String as sqlx::Decode<'r, DB>>::decode(value)?.parse::<$name>()?)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::vocabulary! {
        /// A test vocabulary.
        pub enum Colour: "colour" { Red = "red", DarkBlue = "dark.blue" }
    }

    #[test]
    fn words_round_trip_and_unknown_words_name_the_choices() {
        for c in Colour::ALL {
            assert_eq!(c.as_str().parse::<Colour>().unwrap(), *c);
            assert_eq!(serde_json::to_string(c).unwrap(), format!("\"{c}\""));
        }
        let err = "green".parse::<Colour>().unwrap_err();
        assert_eq!(err.to_string(), "unknown colour \"green\": expected one of red, dark.blue");
        assert!(serde_json::from_str::<Colour>("\"green\"").is_err());
    }

    #[tokio::test]
    async fn an_unknown_stored_word_is_a_decode_error() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect("sqlite::memory:").await.unwrap();
        let known: Colour =
            sqlx::query_scalar("SELECT 'dark.blue'").fetch_one(&pool).await.unwrap();
        assert_eq!(known, Colour::DarkBlue);
        let unknown = sqlx::query_scalar::<_, Colour>("SELECT 'green'").fetch_one(&pool).await;
        assert!(matches!(unknown, Err(sqlx::Error::ColumnDecode { .. })), "{unknown:?}");
        let back: String =
            sqlx::query_scalar("SELECT $1").bind(Colour::Red).fetch_one(&pool).await.unwrap();
        assert_eq!(back, "red");
    }
}
