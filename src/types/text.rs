//! Text fields: the one rule for what a title, a name or a bio may be, kept as data so that
//! the check the server makes and the JSON Schema the OpenAPI document shows come from the
//! same place.
//!
//! A text is at most `max` characters as sent (Unicode scalar values, as JSON Schema's
//! `maxLength` counts them), holds no control characters but tab, line feed and carriage
//! return, and is stored trimmed of surrounding white space; a required one (`min = 1`) must
//! keep at least one character after trimming. White space is Unicode's `White_Space` plus
//! U+FEFF, the set ECMAScript's `\s` names, so the document's patterns mean the same in every
//! regular-expression dialect a client validates with.

use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;

/// White space as [`trim`] removes it.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// `value` without surrounding [white space](is_space).
pub fn trim(value: &str) -> &str {
    value.trim_matches(is_space)
}

/// A control character a text may not hold (all of Unicode's `Cc` but `\t`, `\n`, `\r`).
pub fn is_forbidden_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// [`is_space`] as the inside of a regular-expression character class.
pub const SPACE_CLASS: &str =
    r"\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\uFEFF";
/// [`is_forbidden_control`] as the inside of a regular-expression character class.
pub const CONTROL_CLASS: &str = r"\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F";

/// How long a text field may be, and whether it may be blank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRule {
    /// 0 (may be blank) or 1 (must keep a character after trimming).
    pub min: usize,
    pub max: usize,
}

impl TextRule {
    pub const TITLE: TextRule = TextRule { min: 1, max: 200 };
    pub const DESCRIPTION: TextRule = TextRule { min: 0, max: 20_000 };
    pub const NAME: TextRule = TextRule { min: 1, max: 100 };
    pub const OPTIONAL_NAME: TextRule = TextRule { min: 0, max: 100 };
    pub const HEADLINE: TextRule = TextRule { min: 0, max: 200 };
    pub const BIO: TextRule = TextRule { min: 0, max: 5000 };
    pub const REASON: TextRule = TextRule { min: 0, max: 200 };
    pub const REVIEW: TextRule = TextRule { min: 0, max: 5000 };
    pub const COMMENT: TextRule = TextRule { min: 1, max: 5000 };

    /// The stored (trimmed) text, or why `value` is not one; `field` names it in the message.
    pub fn check(&self, field: &str, value: &str) -> Result<String, String> {
        let limits = || format!("{field} must be {} to {} characters", self.min, self.max);
        if value.chars().count() > self.max {
            return Err(limits());
        }
        if value.chars().any(is_forbidden_control) {
            return Err(format!("{field} contains control characters"));
        }
        let v = trim(value);
        if v.chars().count() < self.min {
            return Err(limits());
        }
        Ok(v.to_string())
    }

    /// The JSON Schema of the texts [`check`](Self::check) accepts.
    pub fn schema(&self, nullable: bool) -> ObjectBuilder {
        let (c, s) = (CONTROL_CLASS, SPACE_CLASS);
        let pattern =
            if self.min == 0 { format!("^[^{c}]*$") } else { format!("^[^{c}]*[^{c}{s}][^{c}]*$") };
        ObjectBuilder::new()
            .schema_type(if nullable {
                SchemaType::from_iter([Type::String, Type::Null])
            } else {
                SchemaType::new(Type::String)
            })
            .max_length(Some(self.max))
            .pattern(Some(pattern))
    }
}

/// `fn`s for `#[schema(schema_with = …)]`: one per rule, `_or_null` for optional fields.
macro_rules! rule_schemas {
    ($($rule:ident => $name:ident, $or_null:ident;)+) => {$(
        #[doc = concat!("The schema of a [`TextRule::", stringify!($rule), "`] field.")]
        pub fn $name() -> RefOr<Schema> {
            TextRule::$rule.schema(false).into()
        }
        #[doc = concat!("The schema of an optional [`TextRule::", stringify!($rule), "`] field (null: unchanged).")]
        pub fn $or_null() -> RefOr<Schema> {
            TextRule::$rule.schema(true).into()
        }
    )+};
}

rule_schemas! {
    TITLE => title, title_or_null;
    DESCRIPTION => description, description_or_null;
    NAME => name, name_or_null;
    OPTIONAL_NAME => optional_name, optional_name_or_null;
    HEADLINE => headline, headline_or_null;
    BIO => bio, bio_or_null;
    REASON => reason, reason_or_null;
    REVIEW => review, review_or_null;
    COMMENT => comment, comment_or_null;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_and_the_pattern_agree() {
        let required =
            regex::Regex::new(TextRule::TITLE.schema(false).build().pattern.as_deref().unwrap())
                .unwrap();
        for (text, ok) in [
            ("Rust", true),
            ("  Rust \n", true),
            ("\u{feff}", false),
            (" \t\u{3000}", false),
            ("", false),
            ("a\u{7}b", false),
            ("a\u{85}b", false),
            ("line\r\nnext", true),
        ] {
            assert_eq!(TextRule::TITLE.check("title", text).is_ok(), ok, "{text:?}");
            assert_eq!(required.is_match(text), ok, "pattern, {text:?}");
        }
        assert_eq!(TextRule::TITLE.check("t", " \u{feff}Rust\u{a0}").unwrap(), "Rust");
        let long = "x".repeat(201);
        assert!(TextRule::TITLE.check("title", &long).is_err());
        assert!(TextRule::BIO.check("bio", "   ").unwrap().is_empty());
    }
}
