//! Catalog steps shared by the tests: instructors, courses with lectures, published courses,
//! enrolled students.

use reqwest::{Method, StatusCode};
use serde_json::json;

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
        let (status, course) = self
            .post(
                "/api/v1/courses",
                Some(token),
                json!({"title": title, "price": 55000, "currency": "KRW"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{course}");
        let course_id = course["id"].as_i64().unwrap();
        let (status, section) = self
            .post(
                &format!("/api/v1/courses/{course_id}/sections"),
                Some(token),
                json!({"title": "Basics"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{section}");
        let section_id = section["id"].as_i64().unwrap();
        let (status, lecture) = self
            .post(
                &format!("/api/v1/sections/{section_id}/lectures"),
                Some(token),
                json!({"title": "Intro"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{lecture}");
        (course_id, section_id, lecture["id"].as_i64().unwrap())
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
            let (status, lecture) = self
                .post(
                    &format!("/api/v1/sections/{section_id}/lectures"),
                    Some(token),
                    json!({"title": format!("L{i}")}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{lecture}");
            lectures.push(lecture["id"].as_i64().unwrap());
        }
        (course_id, lectures)
    }
}
