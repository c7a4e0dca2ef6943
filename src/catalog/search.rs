//! Course search (`GET /api/v1/courses?q=…`) over titles and descriptions, in Korean and English.
//!
//! Korean glues particles and endings onto words ("동영상을", "서버에서") and English users type
//! word prefixes ("rust" for "Rustacean"), so a query term matches any *substring* of a title or
//! description, case-insensitively; every whitespace-separated term must match (AND).
//! Substring matching has to come from an index, not a scan, so this is the one place where the
//! SQL differs by backend (the migrations `0006_community.sql` build the indexes):
//!
//! - **SQLite**: the FTS5 table `courses_fts` with the `trigram` tokenizer, kept in step with
//!   `courses` by triggers. Terms of three or more characters go into one `MATCH`; the planner is
//!   told to start from the index (`CROSS JOIN`) and look courses up by id.
//! - **PostgreSQL**: `pg_trgm` GIN indexes on `title` and `description`; each term is an
//!   `ILIKE '%term%'` that the indexes answer.
//!
//! Trigram indexes cannot answer terms shorter than three characters, and Korean has many
//! two-syllable words ("서버", "영상"). Such terms are still honoured: on SQLite they filter the
//! courses the `MATCH` found, or, when every term is that short, the published courses are
//! scanned with `LIKE` (PostgreSQL's planner makes the same choice by itself). A catalog's
//! published courses number in the thousands, not millions, so that scan stays cheap.
//!
//! Relevance, the default order of a search: courses whose *title* contains more of the terms
//! come first; then SQLite's BM25 score (title weighted above description) or PostgreSQL's
//! trigram word similarity (title, then description); then the newest. Word similarity is a
//! pass over each text, so PostgreSQL computes it only for a bounded set of candidates: the
//! matches with the most title hits, newest first (see `RANKED_CANDIDATES`).

use crate::db::Backend;
use crate::error::Error;

/// Longest query accepted, in characters.
const MAX_QUERY_CHARS: usize = 200;
/// Most terms searched for in one query (further words are left out).
const MAX_TERMS: usize = 10;
/// Shortest term a trigram index can answer.
const TRIGRAM: usize = 3;

/// A search query: its distinct whitespace-separated terms, in the order given.
#[derive(Debug)]
pub struct SearchQuery {
    text: String,
    terms: Vec<String>,
}

impl SearchQuery {
    /// Parse `?q=`: `None` when it is blank; 400 when it is too long. Only the first
    /// [`MAX_TERMS`] distinct words are searched for.
    pub fn parse(q: &str) -> Result<Option<SearchQuery>, Error> {
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(Error::malformed(
                "invalid_query",
                format!("q is at most {MAX_QUERY_CHARS} characters"),
            ));
        }
        let mut terms: Vec<String> = Vec::new();
        // Control characters separate words too: no stored text holds one (see `TextRule`).
        for word in q.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty())
        {
            if !terms.iter().any(|t| t.to_lowercase() == word.to_lowercase()) {
                terms.push(word.to_string());
            }
        }
        if terms.is_empty() {
            return Ok(None);
        }
        // Words past the limit are left out of the search rather than refused.
        terms.truncate(MAX_TERMS);
        Ok(Some(SearchQuery { text: terms.join(" "), terms }))
    }
}

/// The SQL a search adds to the course list query, for one backend.
///
/// Placeholders are numbered from the `first` given to [`SearchSql::build`]: first those of
/// `condition` (bound from `filter_args`), then those of `relevance` (`order_args`), so that a
/// `COUNT(*)` over the same `from` and `condition` binds `filter_args` only.
#[derive(Debug)]
pub struct SearchSql {
    /// Replaces `courses c JOIN users u ON u.id = c.instructor_id` in the `FROM` clause.
    pub from: String,
    /// Conditions to `AND` onto the `WHERE` clause (starts with ` AND `).
    pub condition: String,
    pub filter_args: Vec<String>,
    /// An `ORDER BY` list, best match first.
    pub relevance: String,
    /// Where ranking by `relevance` costs a pass over every match's text (PostgreSQL's word
    /// similarity): a cheap `ORDER BY` (title hits, then the newest) over the same
    /// placeholders that picks the candidates `relevance` then re-ranks.
    pub candidates: Option<String>,
    pub order_args: Vec<String>,
}

impl SearchSql {
    /// The search fragments for `query` on `backend`, numbering placeholders from `$first`.
    pub fn build(backend: Backend, query: &SearchQuery, first: usize) -> SearchSql {
        let mut next = first;
        let mut placeholder = || {
            next += 1;
            format!("${}", next - 1)
        };
        let like = match backend {
            Backend::Sqlite => "LIKE",
            Backend::Postgres => "ILIKE",
        };
        let mut from = "courses c JOIN users u ON u.id = c.instructor_id".to_string();
        let mut condition = String::new();
        let mut filter_args = Vec::new();

        let (long, short): (Vec<&String>, Vec<&String>) = match backend {
            Backend::Sqlite => query.terms.iter().partition(|t| t.chars().count() >= TRIGRAM),
            // pg_trgm answers ILIKE itself, falling back to a scan for short terms on its own.
            Backend::Postgres => (Vec::new(), query.terms.iter().collect()),
        };
        let indexed = !long.is_empty();
        if indexed {
            from = "courses_fts CROSS JOIN courses c ON c.id = courses_fts.rowid \
                    JOIN users u ON u.id = c.instructor_id"
                .to_string();
            condition.push_str(&format!(" AND courses_fts MATCH {}", placeholder()));
            filter_args.push(long.iter().map(|t| fts5_phrase(t)).collect::<Vec<_>>().join(" "));
        }
        for term in short {
            let p = placeholder();
            condition.push_str(&format!(
                " AND (c.title {like} {p} ESCAPE '\\' OR c.description {like} {p} ESCAPE '\\')"
            ));
            filter_args.push(contains_pattern(term));
        }

        let mut order_args = Vec::new();
        let title_hits: Vec<String> = query
            .terms
            .iter()
            .map(|t| {
                order_args.push(contains_pattern(t));
                format!("CASE WHEN c.title {like} {} ESCAPE '\\' THEN 1 ELSE 0 END", placeholder())
            })
            .collect();
        let mut relevance = format!("({}) DESC", title_hits.join(" + "));
        let mut candidates = None;
        match backend {
            Backend::Sqlite if indexed => relevance.push_str(", bm25(courses_fts, 10.0, 1.0)"),
            Backend::Sqlite => {}
            Backend::Postgres => {
                candidates = Some(format!("{relevance}, c.published_at DESC, c.id DESC"));
                let p = placeholder();
                relevance.push_str(&format!(", word_similarity({p}, c.title) DESC, word_similarity({p}, c.description) DESC"));
                order_args.push(query.text.clone());
            }
        }
        relevance.push_str(", c.published_at DESC, c.id DESC");
        SearchSql { from, condition, filter_args, relevance, candidates, order_args }
    }
}

/// `term` as one FTS5 phrase: quoted, so that no character in it is query syntax.
fn fts5_phrase(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

/// A `LIKE` pattern (escape character `\`) matching any text that contains `term`.
fn contains_pattern(term: &str) -> String {
    let mut p = String::with_capacity(term.len() + 2);
    p.push('%');
    for ch in term.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}
