//! Money: an amount in the minor units of an ISO 4217 currency.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A three-letter ISO 4217 code (`KRW`, `USD`), upper case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

/// A currency code that is not three ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("currency must be a three-letter ISO 4217 code such as KRW or USD, not {0:?}")]
pub struct BadCurrency(pub String);

impl Currency {
    /// South Korean won, the default price currency.
    pub const KRW: Currency = Currency(*b"KRW");
    /// US dollar.
    pub const USD: Currency = Currency(*b"USD");

    /// The code as written by a person: any letter case, spaces around (` krw` is `KRW`).
    pub fn lenient(code: &str) -> Result<Currency, BadCurrency> {
        super::text::trim(code).to_ascii_uppercase().parse()
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters get in (see `from_str`).
        std::str::from_utf8(&self.0).expect("currency codes are ASCII")
    }
}

/// The JSON Schema of what [`Currency::lenient`] accepts, for optional fields (null: the default).
pub fn currency_or_null() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{SchemaType, Type};
    let s = super::text::SPACE_CLASS;
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(format!("^[{s}]*[A-Za-z]{{3}}[{s}]*$")))
        .description(Some("ISO 4217 code (any case, surrounding white space ignored)"))
        .into()
}

impl FromStr for Currency {
    type Err = BadCurrency;
    /// Exactly three upper-case ASCII letters.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Currency([a, b, c])),
            _ => Err(BadCurrency(s.to_owned())),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[A-Z]{3}$"))
            .description(Some("ISO 4217 currency code"))
            .examples([serde_json::json!("KRW")])
            .into()
    }
}

impl utoipa::ToSchema for Currency {}

crate::stored_as_text!(Currency);

/// An amount of money in minor units of its currency (won, cents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Money {
        Money { amount, currency }
    }

    /// The sum, or `None` when the currencies differ or the amount overflows.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        Some(Money { amount: self.amount.checked_add(other.amount)?, currency: self.currency })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes_are_three_capital_letters() {
        assert_eq!("KRW".parse::<Currency>().unwrap(), Currency::KRW);
        assert_eq!(Currency::lenient("usd").unwrap(), Currency::USD);
        for bad in ["", "KR", "KRWX", "krw", "K1W", "한국"] {
            assert!(bad.parse::<Currency>().is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_string(&Currency::KRW).unwrap(), "\"KRW\"");
        assert!(serde_json::from_str::<Currency>("\"xx\"").is_err());
    }

    #[test]
    fn money_adds_only_within_one_currency() {
        let a = Money::new(1000, Currency::KRW);
        assert_eq!(
            a.checked_add(Money::new(500, Currency::KRW)),
            Some(Money::new(1500, Currency::KRW))
        );
        assert_eq!(a.checked_add(Money::new(5, Currency::USD)), None);
        assert_eq!(Money::new(i64::MAX, Currency::KRW).checked_add(a), None);
    }
}
