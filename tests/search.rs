//! Finding courses: search in Korean and English, and the category tree; on SQLite and
//! PostgreSQL.

mod common;

use common::{assert_error, Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A published course with `title` and `description`; its id.
async fn published(srv: &TestServer, teacher: &str, title: &str, description: &str) -> i64 {
    let (id, _, _) = srv.course_with_lecture(teacher, title).await;
    let path = format!("/api/v1/courses/{id}");
    let (status, body) = srv
        .call(Method::PATCH, &path, Some(teacher), Some(json!({"description": description})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = srv.post(&format!("{path}/publish"), Some(teacher), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    id
}

/// The ids `GET /api/v1/courses{query}` answers, in order.
async fn found(srv: &TestServer, query: &str) -> Vec<i64> {
    let (status, list) = srv.get(&format!("/api/v1/courses{query}"), None).await;
    assert_eq!(status, StatusCode::OK, "{query}: {list}");
    list["items"].as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()).collect()
}

fn q(text: &str) -> String {
    format!("?q={}", urlencode(text))
}

/// Percent-encode a query value (UTF-8 bytes).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn korean_and_english_queries_find_words_and_parts_of_words(b: Backend) {
    let srv = TestServer::start(b).await;
    let t = srv.instructor("teacher@example.com").await;
    let video_server =
        published(&srv, &t, "러스트로 만드는 동영상 서버", "HLS 스트리밍과 재개 가능한 업로드")
            .await;
    let rustacean = published(
        &srv,
        &t,
        "Becoming a Rustacean",
        "Ownership, borrowing and async for web developers",
    )
    .await;
    let pandas =
        published(&srv, &t, "파이썬 데이터 분석", "pandas로 배우는 실무 데이터 분석").await;
    let go = published(&srv, &t, "Go web services", "동영상을 서빙하는 서버를 Go로 만듭니다").await;

    // Korean: whole words, words with particles attached, and the same word in a description.
    assert_eq!(found(&srv, &q("동영상")).await, [video_server, go]);
    assert_eq!(found(&srv, &q("데이터 분석")).await, [pandas]);
    assert_eq!(found(&srv, &q("스트리밍")).await, [video_server]);
    // English: case-insensitive, and part of a word.
    assert_eq!(found(&srv, &q("rust")).await, [rustacean]);
    assert_eq!(found(&srv, &q("RUSTACEAN")).await, [rustacean]);
    assert_eq!(found(&srv, &q("borrow")).await, [rustacean]);
    assert_eq!(found(&srv, &q("pandas")).await, [pandas]);
    // Every word must match, in either field, in any order.
    assert_eq!(found(&srv, &q("서버 러스트로")).await, [video_server]);
    assert_eq!(found(&srv, &q("Go 동영상")).await, [go]);
    assert_eq!(found(&srv, &q("rust 동영상")).await, Vec::<i64>::new());
    assert_eq!(found(&srv, &q("kubernetes")).await, Vec::<i64>::new());
    // Characters that mean something to LIKE or FTS5 are just characters.
    for odd in ["%", "_", "\"", "rust*", "zz OR qq", "NEAR(x y)", "\\"] {
        assert_eq!(found(&srv, &q(odd)).await, Vec::<i64>::new(), "{odd}");
    }
    // A blank query is no query.
    assert_eq!(found(&srv, "?q=%20%20").await.len(), 4);

    let (_, list) = srv.get(&format!("/api/v1/courses{}", q("동영상")), None).await;
    assert_eq!(list["total"], 2);
    assert_eq!(list["items"][0]["title"], "러스트로 만드는 동영상 서버");
}

async fn two_character_korean_words_are_found_too(b: Backend) {
    let srv = TestServer::start(b).await;
    let t = srv.instructor("teacher@example.com").await;
    let video_server = published(&srv, &t, "러스트로 만드는 동영상 서버", "").await;
    let go = published(&srv, &t, "Go web services", "동영상을 서빙하는 서버를 Go로 만듭니다").await;
    let pandas = published(&srv, &t, "파이썬 데이터 분석", "실무 데이터 분석").await;

    assert_eq!(found(&srv, &q("서버")).await, [video_server, go], "title match first");
    assert_eq!(found(&srv, &q("분석")).await, [pandas]);
    assert_eq!(found(&srv, &q("서")).await, [video_server, go], "even one character");
    assert_eq!(found(&srv, &q("go")).await, [go]);
    // A short word narrows a longer one.
    assert_eq!(found(&srv, &q("동영상 서버")).await, [video_server, go]);
    assert_eq!(found(&srv, &q("동영상 Go")).await, [go]);
    assert_eq!(found(&srv, &q("데이터 서버")).await, Vec::<i64>::new());
}

async fn title_matches_rank_above_description_matches(b: Backend) {
    let srv = TestServer::start(b).await;
    let t = srv.instructor("teacher@example.com").await;
    // Published first, so "newest" would list it last.
    let in_title = published(&srv, &t, "Streaming video with HLS", "Segments and playlists").await;
    let in_description =
        published(&srv, &t, "Media servers", "All about streaming video to browsers").await;
    let both_words_in_title = published(&srv, &t, "Video streaming 101", "Start here").await;
    let one_word_in_title =
        published(&srv, &t, "Video basics", "Codecs, containers and a little streaming").await;

    let by_relevance = found(&srv, &q("streaming video")).await;
    assert_eq!(by_relevance.len(), 4);
    let (titled, rest) = by_relevance.split_at(2);
    assert!(
        titled.contains(&in_title) && titled.contains(&both_words_in_title),
        "{by_relevance:?}"
    );
    assert_eq!(rest, [one_word_in_title, in_description], "more words in the title rank higher");
    assert_eq!(
        found(&srv, &format!("{}&sort=relevance", q("streaming video"))).await,
        by_relevance
    );
    // An explicit sort still applies to the matches.
    assert_eq!(
        found(&srv, &format!("{}&sort=newest", q("streaming video"))).await,
        [one_word_in_title, both_words_in_title, in_description, in_title]
    );
    // Two-character terms rank the same way.
    let ko_desc = published(&srv, &t, "입문 과정", "영상 편집 기초").await;
    let ko_title = published(&srv, &t, "영상 편집", "프리미어 프로").await;
    assert_eq!(found(&srv, &q("영상")).await[0], ko_title);
    assert_eq!(found(&srv, &format!("{}&sort=newest", q("영상"))).await, [ko_title, ko_desc]);
}

async fn drafts_are_never_found_and_edits_are(b: Backend) {
    let srv = TestServer::start(b).await;
    let t = srv.instructor("teacher@example.com").await;
    let (draft, _, _) = srv.course_with_lecture(&t, "비밀 동영상 강의").await;
    for term in ["동영상", "비밀", "강의", "비밀 동영상"] {
        assert_eq!(found(&srv, &q(term)).await, Vec::<i64>::new(), "{term}");
        // Not even for its owner: the catalog lists published courses only.
        let (_, list) = srv.get(&format!("/api/v1/courses{}", q(term)), Some(&t)).await;
        assert_eq!(list["total"], 0, "{term}");
    }
    let (status, _) =
        srv.post(&format!("/api/v1/courses/{draft}/publish"), Some(&t), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found(&srv, &q("비밀 동영상")).await, [draft]);
    assert_eq!(found(&srv, &q("강의")).await, [draft]);

    // The index follows changes to titles and descriptions.
    let path = format!("/api/v1/courses/{draft}");
    let (status, _) = srv
        .call(
            Method::PATCH,
            &path,
            Some(&t),
            Some(json!({"title": "Kotlin coroutines", "description": "구조화된 동시성"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found(&srv, &q("동영상")).await, Vec::<i64>::new());
    assert_eq!(found(&srv, &q("coroutine")).await, [draft]);
    assert_eq!(found(&srv, &q("동시성")).await, [draft]);
    let (status, _) = srv.call(Method::DELETE, &path, Some(&t), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(found(&srv, &q("coroutine")).await, Vec::<i64>::new());
}

async fn search_pages_and_combines_with_categories(b: Backend) {
    let srv = TestServer::start(b).await;
    let t = srv.instructor("teacher@example.com").await;
    let (_, tree) = srv.get("/api/v1/categories", None).await;
    let development = tree
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["slug"] == "development")
        .expect("seeded")
        .clone();
    let web = development["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["slug"] == "web-development")
        .unwrap()["id"]
        .clone();
    let design =
        tree.as_array().unwrap().iter().find(|c| c["slug"] == "design").unwrap()["id"].clone();

    let mut web_courses = Vec::new();
    for n in 1..=3 {
        let id = published(&srv, &t, &format!("웹 서버 만들기 {n}"), "").await;
        srv.call(
            Method::PATCH,
            &format!("/api/v1/courses/{id}"),
            Some(&t),
            Some(json!({"category_id": web})),
        )
        .await;
        web_courses.push(id);
    }
    let designed = published(&srv, &t, "웹 서버 화면 디자인", "").await;
    srv.call(
        Method::PATCH,
        &format!("/api/v1/courses/{designed}"),
        Some(&t),
        Some(json!({"category_id": design})),
    )
    .await;

    let term = q("서버 만들기");
    let (_, all) = srv.get(&format!("/api/v1/courses{term}&per_page=2"), None).await;
    assert_eq!((all["total"].as_i64(), all["items"].as_array().unwrap().len()), (Some(3), 2));
    let (_, rest) = srv.get(&format!("/api/v1/courses{term}&per_page=2&page=2"), None).await;
    assert_eq!((rest["total"].as_i64(), rest["items"].as_array().unwrap().len()), (Some(3), 1));

    // A top-level category includes its children.
    let mut in_development =
        found(&srv, &format!("{}&category={}", q("웹 서버"), development["id"])).await;
    in_development.sort();
    assert_eq!(in_development, web_courses);
    assert_eq!(found(&srv, &format!("{}&category={design}", q("웹 서버"))).await, [designed]);
    assert_eq!(
        found(&srv, &format!("{}&category={design}&sort=price_asc", q("만들기"))).await,
        Vec::<i64>::new()
    );

    // Control characters, which no stored text holds, separate words like white space (a NUL
    // inside a term once broke SQLite's full-text query).
    assert_eq!(
        found(&srv, &format!("{}&category={design}", q("웹\u{0}서버\u{1b}"))).await,
        [designed]
    );
    let (status, err) = srv.get(&format!("/api/v1/courses?q={}", "a".repeat(201)), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&err, "invalid_query");
    let (status, err) = srv.get(&format!("/api/v1/courses{}&sort=best", q("웹")), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&err, "invalid_sort");
}

fn find<'a>(tree: &'a Value, slug: &str) -> Option<&'a Value> {
    tree.as_array()?
        .iter()
        .flat_map(|top| std::iter::once(top).chain(top["children"].as_array().unwrap()))
        .find(|c| c["slug"] == slug)
}

async fn categories_form_a_seeded_two_level_tree(b: Backend) {
    let srv = TestServer::start(b).await;
    let (status, tree) = srv.get("/api/v1/categories", None).await;
    assert_eq!(status, StatusCode::OK, "{tree}");
    let tops = tree.as_array().unwrap();
    assert!(tops.len() >= 5, "{tree}");
    let dev = find(&tree, "development").expect("개발·프로그래밍 is seeded");
    assert_eq!(
        (dev["name"].as_str(), dev["name_en"].as_str(), &dev["parent_id"]),
        (Some("개발·프로그래밍"), Some("Development"), &Value::Null)
    );
    let children: Vec<&str> =
        dev["children"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    for name in ["웹 개발", "모바일 앱"] {
        assert!(children.contains(&name), "{children:?}");
    }
    assert!(find(&tree, "data-science").is_some());
    for top in tops {
        assert_eq!(top["parent_id"], Value::Null);
        let kids = top["children"].as_array().unwrap();
        assert!(!kids.is_empty(), "{top}");
        let positions: Vec<i64> = kids.iter().map(|k| k["position"].as_i64().unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] <= w[1]), "children in order: {top}");
        for kid in kids {
            assert_eq!(kid["parent_id"], top["id"]);
            assert_eq!(kid["children"], json!([]));
            let slug = kid["slug"].as_str().unwrap();
            assert!(
                slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{slug}"
            );
            assert!(
                !kid["name"].as_str().unwrap().is_empty()
                    && !kid["name_en"].as_str().unwrap().is_empty(),
                "{kid}"
            );
        }
    }
}

async fn only_admins_change_categories(b: Backend) {
    let srv = TestServer::start(b).await;
    let (student, _) = srv.new_user("student@example.com").await;
    let teacher = srv.instructor("teacher@example.com").await;
    let admin = srv.admin().await;
    let who = Who { student, teacher, admin };
    let (music_id, piano_id) = admins_create_categories(&srv, &who).await;
    admins_rename_and_reparent_categories(&srv, &who, music_id, piano_id).await;
    admins_delete_categories(&srv, &who, music_id, piano_id).await;
}

/// The three kinds of caller of the category endpoints.
struct Who {
    student: String,
    teacher: String,
    admin: String,
}

/// Creating: anonymous 401, students and instructors 403, admins make a top-level category
/// and a child of it; bad input is 422 and a taken slug 409. Answers the two ids.
async fn admins_create_categories(srv: &TestServer, who: &Who) -> (i64, i64) {
    let Who { student, teacher, admin } = who;
    let new_top = json!({"name": "음악", "name_en": "Music", "slug": "music"});

    let (status, err) = srv.post("/api/v1/categories", None, new_top.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&err, "missing_token");
    for token in [student, teacher] {
        let (status, err) = srv.post("/api/v1/categories", Some(token), new_top.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_error(&err, "admins_only");
    }
    let (status, music) = srv.post("/api/v1/categories", Some(admin), new_top.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{music}");
    assert_eq!(
        (music["name"].as_str(), music["slug"].as_str(), &music["parent_id"]),
        (Some("음악"), Some("music"), &Value::Null)
    );
    assert_eq!(music["children"], json!([]));
    let music_id = music["id"].as_i64().unwrap();
    let (status, piano) = srv
        .post(
            "/api/v1/categories",
            Some(admin),
            json!({"name": "피아노", "slug": "piano", "parent_id": music_id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{piano}");
    assert_eq!(
        (piano["parent_id"].as_i64(), piano["name_en"].as_str(), piano["position"].as_i64()),
        (Some(music_id), Some(""), Some(1))
    );
    let piano_id = piano["id"].as_i64().unwrap();

    let (status, err) = srv.post("/api/v1/categories", Some(admin), new_top.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&err, "slug_taken");
    let bad = [
        (json!({"name": "Jazz", "slug": "jazz", "parent_id": piano_id}), "invalid_parent"),
        (json!({"name": "Jazz", "slug": "jazz", "parent_id": 99999}), "invalid_parent"),
        (json!({"name": "재즈", "slug": "재즈"}), "invalid_slug"),
        (json!({"name": "Jazz", "slug": "Jazz Music"}), "invalid_slug"),
        (json!({"name": "Jazz", "slug": "-jazz"}), "invalid_slug"),
        (json!({"name": "", "slug": "jazz"}), "invalid_field"),
        (json!({"slug": "jazz"}), "invalid_body"),
    ];
    for (body, code) in bad {
        let (status, err) = srv.post("/api/v1/categories", Some(admin), body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {err}");
        assert_error(&err, code);
    }
    (music_id, piano_id)
}

/// Renaming and moving: admins only; a taken slug is 409; a category with children cannot
/// become a child, nor a category its own parent; an unknown one is 404.
async fn admins_rename_and_reparent_categories(
    srv: &TestServer,
    who: &Who,
    music_id: i64,
    piano_id: i64,
) {
    let Who { teacher, admin, .. } = who;

    let piano_path = format!("/api/v1/categories/{piano_id}");
    let music_path = format!("/api/v1/categories/{music_id}");
    assert_eq!(
        srv.call(Method::PATCH, &piano_path, Some(teacher), Some(json!({"name": "x"}))).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, renamed) = srv
        .call(
            Method::PATCH,
            &piano_path,
            Some(admin),
            Some(json!({"name": "피아노 연주", "name_en": "Piano"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(
        (renamed["name"].as_str(), renamed["name_en"].as_str(), renamed["slug"].as_str()),
        (Some("피아노 연주"), Some("Piano"), Some("piano"))
    );
    let (status, err) = srv
        .call(Method::PATCH, &piano_path, Some(admin), Some(json!({"slug": "development"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&err, "slug_taken");
    let (status, err) = srv
        .call(
            Method::PATCH,
            &music_path,
            Some(admin),
            Some(json!({"parent_id": find_id(srv, "design").await})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a category with children cannot become a child"
    );
    assert_error(&err, "invalid_parent");
    let (status, _) = srv
        .call(Method::PATCH, &piano_path, Some(admin), Some(json!({"parent_id": piano_id})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        srv.call(
            Method::PATCH,
            "/api/v1/categories/99999",
            Some(admin),
            Some(json!({"name": "x"}))
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

/// Deleting: a parent with children is refused (409); a child goes, and its courses become
/// uncategorised; a childless top-level category may move under another and back, and go.
async fn admins_delete_categories(srv: &TestServer, who: &Who, music_id: i64, piano_id: i64) {
    let Who { student, teacher, admin } = who;
    let piano_path = format!("/api/v1/categories/{piano_id}");
    let music_path = format!("/api/v1/categories/{music_id}");
    // A course in the category; deleting the parent first is refused.
    let (course, _, _) = srv.course_with_lecture(teacher, "Chopin études").await;
    srv.call(
        Method::PATCH,
        &format!("/api/v1/courses/{course}"),
        Some(teacher),
        Some(json!({"category_id": piano_id})),
    )
    .await;
    let (status, err) = srv.call(Method::DELETE, &music_path, Some(admin), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&err, "category_has_children");
    assert_eq!(
        srv.call(Method::DELETE, &piano_path, Some(student), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        srv.call(Method::DELETE, &piano_path, Some(admin), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        srv.call(Method::DELETE, &piano_path, Some(admin), None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, page) = srv.get(&format!("/api/v1/courses/{course}"), Some(teacher)).await;
    assert_eq!(page["category_id"], Value::Null, "its courses become uncategorised");

    // Without children, a top-level category may move under another one, and back.
    let design = find_id(srv, "design").await;
    let (status, moved) = srv
        .call(
            Method::PATCH,
            &music_path,
            Some(admin),
            Some(json!({"parent_id": design, "position": 9})),
        )
        .await;
    assert_eq!(
        (status, moved["parent_id"].as_i64(), moved["position"].as_i64()),
        (StatusCode::OK, Some(design), Some(9))
    );
    let (_, tree) = srv.get("/api/v1/categories", None).await;
    assert_eq!(
        find(&tree, "design").unwrap()["children"].as_array().unwrap().last().unwrap()["slug"],
        "music"
    );
    let (status, back) =
        srv.call(Method::PATCH, &music_path, Some(admin), Some(json!({"parent_id": null}))).await;
    assert_eq!((status, &back["parent_id"]), (StatusCode::OK, &Value::Null));
    assert_eq!(
        srv.call(Method::DELETE, &music_path, Some(admin), None).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, tree) = srv.get("/api/v1/categories", None).await;
    assert!(find(&tree, "music").is_none());
}

/// The id of the category with `slug`.
async fn find_id(srv: &TestServer, slug: &str) -> i64 {
    let (_, tree) = srv.get("/api/v1/categories", None).await;
    find(&tree, slug).unwrap()["id"].as_i64().unwrap()
}

#[test]
fn the_category_routes_are_documented() {
    use utoipa::OpenApi;
    let doc = serde_json::to_value(lectern::catalog::routes::CategoriesApi::openapi()).unwrap();
    for (path, method) in [
        ("/api/v1/categories", "get"),
        ("/api/v1/categories", "post"),
        ("/api/v1/categories/{category_id}", "patch"),
        ("/api/v1/categories/{category_id}", "delete"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
    }
    let children = &doc["components"]["schemas"]["Category"]["properties"]["children"];
    assert_eq!(children["type"], "array", "{children}");
}

/// `total` of `GET /api/v1/courses{query}`, checked against the items of one big page.
async fn total(srv: &TestServer, query: &str) -> i64 {
    let sep = if query.is_empty() { "?" } else { "&" };
    let (status, list) = srv.get(&format!("/api/v1/courses{query}{sep}per_page=100"), None).await;
    assert_eq!(status, StatusCode::OK, "{query}: {list}");
    let total = list["total"].as_i64().unwrap();
    assert_eq!(total as usize, list["items"].as_array().unwrap().len(), "{query}: {list}");
    total
}

/// List totals are kept by the database as courses are published, moved between categories
/// (by hand or by a category's deletion) and deleted: never counted per page, never stale.
async fn list_totals_follow_publishing_moves_and_deletions(b: Backend) {
    let srv = TestServer::start(b).await;
    let admin = srv.admin().await;
    let t = srv.instructor("teacher@example.com").await;
    let category = |body: Value| {
        let (srv, admin) = (&srv, &admin);
        async move {
            let (status, c) = srv.post("/api/v1/categories", Some(admin), body).await;
            assert_eq!(status, StatusCode::CREATED, "{c}");
            c["id"].as_i64().unwrap()
        }
    };
    let top = category(json!({"name": "음악", "slug": "music"})).await;
    let child = category(json!({"name": "피아노", "slug": "piano", "parent_id": top})).await;
    let move_to = |course: i64, to: Value| {
        let (srv, t) = (&srv, &t);
        async move {
            let path = format!("/api/v1/courses/{course}");
            let (status, body) =
                srv.call(Method::PATCH, &path, Some(t), Some(json!({"category_id": to}))).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    let counts = || async {
        (
            total(&srv, "").await,
            total(&srv, &format!("?category={top}")).await,
            total(&srv, &format!("?category={child}")).await,
        )
    };
    let before = total(&srv, "").await;
    let in_child = published(&srv, &t, "Piano one", "").await;
    move_to(in_child, json!(child)).await;
    let in_top = published(&srv, &t, "Music theory", "").await;
    move_to(in_top, json!(top)).await;
    let loose = published(&srv, &t, "Loose", "").await;
    let (draft, _, _) = srv.course_with_lecture(&t, "Draft in top").await;
    move_to(draft, json!(top)).await;
    assert_eq!(counts().await, (before + 3, 2, 1), "a top category includes its children");

    move_to(in_child, Value::Null).await;
    move_to(loose, json!(child)).await;
    assert_eq!(counts().await, (before + 3, 2, 1));
    move_to(loose, json!(top)).await;
    assert_eq!(counts().await, (before + 3, 2, 0));
    move_to(loose, json!(child)).await;

    // Deleting a category leaves its courses uncategorised.
    let (status, body) =
        srv.call(Method::DELETE, &format!("/api/v1/categories/{child}"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let all_and_top =
        || async { (total(&srv, "").await, total(&srv, &format!("?category={top}")).await) };
    assert_eq!(all_and_top().await, (before + 3, 1));

    let (status, body) =
        srv.call(Method::DELETE, &format!("/api/v1/courses/{in_top}"), Some(&t), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(all_and_top().await, (before + 2, 0));

    let (status, body) =
        srv.post(&format!("/api/v1/courses/{draft}/publish"), Some(&t), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(all_and_top().await, (before + 3, 1));
    // A page past the end still says how many there are, with and without a search.
    let (_, past) = srv.get(&format!("/api/v1/courses?category={top}&page=9"), None).await;
    assert_eq!((past["total"].as_i64(), past["items"].as_array().unwrap().len()), (Some(1), 0));
    let (_, past) = srv.get(&format!("/api/v1/courses{}&page=9", q("Draft")), None).await;
    assert_eq!((past["total"].as_i64(), past["items"].as_array().unwrap().len()), (Some(1), 0));
}

on_both_databases!(
    korean_and_english_queries_find_words_and_parts_of_words,
    two_character_korean_words_are_found_too,
    title_matches_rank_above_description_matches,
    drafts_are_never_found_and_edits_are,
    search_pages_and_combines_with_categories,
    list_totals_follow_publishing_moves_and_deletions,
    categories_form_a_seeded_two_level_tree,
    only_admins_change_categories,
);
