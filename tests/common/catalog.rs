//! Catalog steps shared by the tests: instructors, courses with lectures, published courses,
//! enrolled students.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::TestServer;

impl TestServer {
    /// A new user who has become an instructor; returns an access token that says so.
    pub async fn instructor(&self, email: &str) -> String {
        let (access, refresh) = self.new_user(email).await;
        let (status, body) = self
            .post("/api/v1/me/instructor", Some(&access), json!({"headline": "Teacher", "bio": ""}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, pair) =
            self.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
        assert_eq!(status, StatusCode::OK, "{pair}");
        pair["access_token"].as_str().unwrap().to_string()
    }

    /// A draft course with one section and one lecture: `(course_id, section_id, lecture_id)`.
    pub async fn course_with_lecture(&self, token: &str, title: &str) -> (i64, i64, i64) {
        let course_id = self
            .created(
                "/api/v1/courses",
                token,
                json!({"title": title, "price": 55000, "currency": "KRW"}),
            )
            .await;
        let section_id = self
            .created(
                &format!("/api/v1/courses/{course_id}/sections"),
                token,
                json!({"title": "Basics"}),
            )
            .await;
        let lecture = self.add_lecture(token, section_id, json!({"title": "Intro"})).await;
        (course_id, section_id, lecture)
    }

    /// POST `body` to `path` as `token`, which must answer 201: the new thing's id.
    pub async fn created(&self, path: &str, token: &str, body: Value) -> i64 {
        let (status, made) = self.post(path, Some(token), body).await;
        assert_eq!(status, StatusCode::CREATED, "POST {path}: {made}");
        made["id"].as_i64().unwrap()
    }

    /// A new lecture (`body`: title, is_preview, …) in section `section_id`: its id.
    pub async fn add_lecture(&self, token: &str, section_id: i64, body: Value) -> i64 {
        self.created(&format!("/api/v1/sections/{section_id}/lectures"), token, body).await
    }

    /// A published course of `token`'s, with one section and one lecture: its id.
    pub async fn published_course(&self, token: &str, title: &str) -> i64 {
        let (course_id, _, _) = self.course_with_lecture(token, title).await;
        let (status, body) = self
            .post(&format!("/api/v1/courses/{course_id}/publish"), Some(token), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        course_id
    }

    /// Enroll the holder of `token` in `course_id` without an order, as `lectern enroll` does;
    /// answers their user id.
    pub async fn enroll(&self, token: &str, course_id: i64) -> i64 {
        let id = self.user_id(token).await;
        lectern::learning::enroll(
            self.app_state.db.pool(),
            lectern::types::UserId::new(id),
            lectern::types::CourseId::new(course_id),
            "test",
        )
        .await
        .unwrap();
        id
    }

    /// A new user named `name` and enrolled in `course_id` (as `lectern enroll` does, without an
    /// order): `(access token, user id)`.
    pub async fn enrolled_student(&self, email: &str, name: &str, course_id: i64) -> (String, i64) {
        let (token, _) = self.new_user(email).await;
        let (status, body) =
            self.call(Method::PATCH, "/api/v1/me", Some(&token), Some(json!({"name": name}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let id = self.enroll(&token, course_id).await;
        (token, id)
    }

    /// A draft course with `n` (at least one) lectures in one section: `(course_id, lecture ids)`.
    pub async fn course_with_lectures(
        &self,
        token: &str,
        title: &str,
        n: usize,
    ) -> (i64, Vec<i64>) {
        let (course_id, section_id, first) = self.course_with_lecture(token, title).await;
        let mut lectures = vec![first];
        for i in 1..n {
            lectures
                .push(self.add_lecture(token, section_id, json!({"title": format!("L{i}")})).await);
        }
        (course_id, lectures)
    }
}
