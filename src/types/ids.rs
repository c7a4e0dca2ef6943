//! One type per kind of id, so a call that swaps a user id and a course id does not compile:
//!
//! ```compile_fail
//! use lectern::types::{CourseId, UserId};
//! fn enroll(_user: UserId, _course: CourseId) {}
//! enroll(CourseId::new(7), UserId::new(3));
//! ```
//!
//! ```
//! use lectern::types::{CourseId, UserId};
//! fn enroll(_user: UserId, _course: CourseId) {}
//! enroll(UserId::new(3), CourseId::new(7));
//! ```
//!
//! Integer ids are the database's `BIGINT` keys; they are sent as JSON numbers, bound and read
//! as `i64` on both backends, and parsed from path segments. Text ids (tus uploads) are random
//! strings made by the server.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! int_ids {
    ($($(#[$meta:meta])* $name:ident;)+) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize,
            Deserialize, sqlx::Type, utoipa::ToSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        #[schema(value_type = i64, format = Int64)]
        pub struct $name(i64);

        impl $name {
            /// The id whose database key is `id`.
            pub const fn new(id: i64) -> $name {
                $name(id)
            }

            /// The database key.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    )+};
}

macro_rules! text_ids {
    ($($(#[$meta:meta])* $name:ident;)+) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            sqlx::Type, utoipa::ToSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        #[schema(value_type = String)]
        pub struct $name(String);

        impl $name {
            /// The id spelled `id`.
            pub fn new(id: impl Into<String>) -> $name {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok($name(s.to_owned()))
            }
        }
    )+};
}

int_ids! {
    /// An account.
    UserId;
    /// A course category.
    CategoryId;
    /// A course.
    CourseId;
    /// A section of a course's curriculum.
    SectionId;
    /// A lecture in a section.
    LectureId;
    /// An uploaded video and its ladder.
    VideoId;
    /// A transcoding job.
    JobId;
    /// An order.
    OrderId;
    /// A course review.
    ReviewId;
    /// A comment on a lecture.
    CommentId;
    /// A webhook endpoint.
    EndpointId;
    /// A webhook delivery.
    DeliveryId;
}

text_ids! {
    /// A tus upload (the last segment of its URL).
    UploadId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_numbers_on_the_wire_and_in_paths() {
        assert_eq!(serde_json::to_string(&CourseId::new(7)).unwrap(), "7");
        assert_eq!(serde_json::from_str::<UserId>("42").unwrap(), UserId::new(42));
        assert_eq!("13".parse::<LectureId>().unwrap().get(), 13);
        assert!("x".parse::<LectureId>().is_err());
        assert_eq!(UploadId::new("abc").to_string(), "abc");
    }
}
