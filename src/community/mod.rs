//! Reviews (one per enrolled student, 1–5) and threaded comments.

pub mod routes;
