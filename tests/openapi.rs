//! The OpenAPI document matches the server: schemathesis (PyPI) runs every one of its checks,
//! on positive and negative data, against `/api/openapi.json` of a real server, anonymously and
//! signed in as a student, an instructor and an admin, and finds nothing.
//!
//! Its settings are `tests/api/schemathesis.toml` (where a rule no schema can express allows
//! a 4xx for valid data, each says why) and `tests/api/st_hooks.py` (a serializer for tus
//! bodies). The number of examples per operation is bounded (`LECTERN_SCHEMATHESIS_EXAMPLES`,
//! default 10) so the suite stays quick, and the seed is fixed (`LECTERN_SCHEMATHESIS_SEED`,
//! default 1) so a run repeats; raise the one and vary the other to dig deeper.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Backend, TestServer};
use lectern::accounts::Role;
use serde_json::Value;

async fn token_for(srv: &TestServer, role: Role, email: &str) -> String {
    srv.app_state.accounts.create_user(email, "password123", "Fuzz", role).await.unwrap();
    srv.login(email, "password123").await.0
}

/// Run schemathesis with `auth` (a bearer token, or none) and return whether it passed and what
/// it printed.
fn schemathesis(srv: &TestServer, auth: Option<&str>) -> (bool, String) {
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api");
    let examples = std::env::var("LECTERN_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "10".into());
    let seed = std::env::var("LECTERN_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    // schemathesis keeps a crash cache (`.schemathesis/`) where it runs: not in the tree.
    let scratch = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("st");
    cmd.current_dir(scratch.path());
    cmd.arg("--no-color")
        .arg("--config-file")
        .arg(api.join("schemathesis.toml"))
        .arg("run")
        .arg(srv.url("/api/openapi.json"))
        .args(["--checks", "all", "--mode", "all", "--max-examples", &examples])
        .args(["--workers", "1", "--seed", &seed, "--generation-database", "none"])
        // The segment server's URLs are signed per session: playback tests cover them.
        .args(["--exclude-path-regex", "^/hls/"])
        .env("SCHEMATHESIS_HOOKS", "st_hooks")
        .env("PYTHONPATH", &api);
    if let Some(token) = auth {
        cmd.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    let out = cmd.output().expect("schemathesis (pip install schemathesis==4.32.5)");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

async fn the_document_matches_the_server(b: Backend) {
    let srv = TestServer::start(b).await;
    let doc: Value =
        srv.http.get(srv.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    let upload =
        &doc["paths"]["/api/v1/lectures/{lecture_id}/video"]["put"]["requestBody"]["content"];
    assert_eq!(
        upload["application/octet-stream"]["schema"],
        serde_json::json!({"type": "string", "format": "binary"}),
        "raw bodies are binary, not arrays of integers"
    );
    let sessions = [
        ("anonymous", None),
        ("student", Some(token_for(&srv, Role::Student, "student@fuzz.test").await)),
        ("instructor", Some(token_for(&srv, Role::Instructor, "instructor@fuzz.test").await)),
        ("admin", Some(token_for(&srv, Role::Admin, "admin@fuzz.test").await)),
    ];
    let mut failed = Vec::new();
    for (who, token) in &sessions {
        let srv = &srv;
        let (ok, text) = tokio::task::block_in_place(|| schemathesis(srv, token.as_deref()));
        let summary = text.lines().rev().find(|l| l.starts_with("==")).unwrap_or("").to_string();
        println!("schemathesis as {who}: {summary}");
        if !ok {
            failed.push(format!("--- as {who} ---\n{text}"));
        }
    }
    assert!(failed.is_empty(), "schemathesis found failures:\n{}", failed.join("\n"));
}

on_both_databases!(the_document_matches_the_server);
