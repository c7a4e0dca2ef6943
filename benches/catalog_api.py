#!/usr/bin/env python3
"""Catalog API under load: course list, search and detail on SQLite and on PostgreSQL.

Seeds 10,000 published courses (Korean and English titles, 3 lectures each), 50,000 reviews
and 50,000 comments, starts `lectern serve`, and drives each endpoint with wrk at 64
connections. Prints req/s and p50/p99 latency per backend and endpoint, with the public
catalog cache on (the default, `LECTERN_CATALOG_CACHE_SECS=1`; every URL asked once before the
clock starts), cold (on, but measured from an empty cache: every first ask is a miss, and
concurrent misses of one URL wait for one computation) and off (every request reaches the
database), and the ratio to issue 10's seed figures. Targets: list >= 3,100, search >= 2,700,
detail >= 7,000 req/s, p99 < 20 ms.

    python3 benches/catalog_api.py [--seconds 10] [--connections 64] [--backends sqlite,postgres] [--cache on,cold,off]

Needs wrk, psql and a PostgreSQL at 127.0.0.1:5432 (trust auth) for the postgres run; builds
Lectern in release mode unless LECTERN_BIN names a binary.
"""
import argparse
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

from benchlib import free_port, lectern_binary, wait_http
COURSES, USERS, REVIEWS_PER_USER, COMMENTS = 10_000, 50, 1_000, 50_000
TOPICS = ["러스트로 만드는 동영상 서버", "Python 데이터 분석 입문", "React와 TypeScript 실전", "Kubernetes in Practice",
          "머신러닝 기초 수학", "Spring Boot 백엔드 개발", "iOS Swift 앱 만들기", "Data Engineering with Rust"]


# Issue 10's measurements of the seed (req/s), and the targets.
SEED = {"sqlite": {"list": 662, "search": 146, "detail": 7620}, "postgres": {"list": 603, "search": 37, "detail": 4559}}
TARGET = {"list": 3100, "search": 2700, "detail": 7000}


def seed_sql(dialect):
    """Statements that fill a migrated, empty database."""
    now = int(time.time())
    series = (lambda n: f"generate_series(1, {n}) AS s(i)") if dialect == "postgres" else (
        lambda n: f"(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT i FROM s) AS s")
    topic = "CASE (i % 8) " + " ".join(f"WHEN {k} THEN '{t}'" for k, t in enumerate(TOPICS)) + " END"
    cat = "(SELECT MIN(id) FROM categories WHERE parent_id IS NOT NULL)"
    return [
        f"INSERT INTO users (email, name, password_hash, role, created_at, updated_at) "
        f"SELECT 'user' || i || '@bench.example', 'User ' || i, 'x', CASE WHEN i = 1 THEN 'instructor' ELSE 'student' END, {now}, {now} "
        f"FROM {series(USERS + 1)}",
        f"INSERT INTO courses (instructor_id, category_id, title, description, price, currency, level, status, duration_seconds, created_at, updated_at, published_at) "
        f"SELECT 1, {cat}, {topic} || ' ' || i, 'Lecture series number ' || i || ' about ' || {topic} || '. 동영상 강의와 실습.', "
        f"(i % 10) * 11000, 'KRW', 'all', 'published', 1800, {now} - i, {now} - i, {now} - i FROM {series(COURSES)}",
        f"INSERT INTO sections (course_id, title, position, created_at) SELECT i, 'Section 1', 1, {now} FROM {series(COURSES)}",
        f"INSERT INTO lectures (section_id, course_id, title, position, is_preview, duration_seconds, created_at, updated_at) "
        f"SELECT ((i - 1) / 3) + 1, ((i - 1) / 3) + 1, 'Lecture ' || i, ((i - 1) % 3) + 1, CASE WHEN (i - 1) % 3 = 0 THEN 1 ELSE 0 END, 600, {now}, {now} "
        f"FROM {series(COURSES * 3)}",
        f"INSERT INTO reviews (course_id, user_id, rating, content, created_at, updated_at) "
        f"SELECT ((i - 1) % {REVIEWS_PER_USER}) + 1, ((i - 1) / {REVIEWS_PER_USER}) + 2, (i % 5) + 1, 'Review ' || i, {now} - i, {now} - i "
        f"FROM {series(USERS * REVIEWS_PER_USER)}",
        f"INSERT INTO comments (course_id, user_id, content, created_at, updated_at) "
        f"SELECT ((i - 1) % 1000) + 1, (i % {USERS}) + 2, 'Comment ' || i, {now} - i, {now} - i FROM {series(COMMENTS)}",
        f"INSERT INTO enrollments (user_id, course_id, source, created_at) "
        f"SELECT ((i - 1) / 200) + 2, ((i * 7) % {COURSES}) + 1, 'bench', {now} FROM {series(USERS * 200)}",
    ]




def wrk(base, paths, work, connections, seconds):
    urls = os.path.join(work, "paths.txt")
    with open(urls, "w") as f:
        f.write("\n".join(paths) + "\n")
    lua = os.path.join(work, "paths.lua")
    with open(lua, "w") as f:
        f.write(f'local p = {{}}\nfor l in io.lines("{urls}") do p[#p + 1] = l end\nlocal i = 0\n'
                'request = function() i = i + 1; return wrk.format("GET", p[(i % #p) + 1]) end\n')
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", lua, base],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        sys.exit(f"wrk saw failures:\n{out}")
    ms = lambda v, u: float(v) * {"us": 1e-3, "ms": 1, "s": 1000}[u]
    return (float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            ms(*re.search(r"50%\s+([\d.]+)(us|ms|s)", out).groups()),
            ms(*re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--cache", default="on,off", help="comma-separated: on (warmed first), cold (on, measured from empty), off")
    args = ap.parse_args()
    lectern = lectern_binary()

    endpoints = {
        "list": [f"/api/v1/courses?page={p}&sort={s}" for p in range(1, 40) for s in ("newest", "popular", "rating", "price_asc")],
        "search": [f"/api/v1/courses?q={q}" for q in ("%EB%8F%99%EC%98%81%EC%83%81", "rust", "%EB%8D%B0%EC%9D%B4%ED%84%B0", "kubernetes", "swift", "%EC%84%9C%EB%B2%84")],
        "detail": [f"/api/v1/courses/{(i * 7919) % COURSES + 1}" for i in range(500)],
    }
    print(f"{COURSES} courses, {USERS * REVIEWS_PER_USER} reviews, {COMMENTS} comments; wrk {args.connections} connections, {args.seconds} s each")
    print(f"{'backend':10} {'cache':5} {'endpoint':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x seed':>7} {'x target':>8}")
    for backend in args.backends.split(","):
        work = tempfile.mkdtemp(prefix="lectern-catalog-bench-")
        db_name = f"lectern_bench_{uuid.uuid4().hex[:12]}"
        env = dict(os.environ, LECTERN_DATA_DIR=os.path.join(work, "data"), LECTERN_WORKERS="0", LECTERN_LOG_FILTER="warn")
        if backend == "postgres":
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {db_name}"], check=True)
            env["LECTERN_DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db_name}"
        server = None
        try:
            subprocess.run([lectern, "migrate"], env=env, check=True, capture_output=True)
            if backend == "postgres":
                for stmt in seed_sql("postgres"):
                    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db_name, "-qc", stmt], check=True)
                # What autovacuum would have done by now after a bulk load: the triggers'
                # updates of every course row leave dead tuples and an unset visibility map.
                subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db_name, "-qc", "VACUUM ANALYZE"], check=True)
            else:
                con = sqlite3.connect(os.path.join(work, "data", "lectern.db"))
                for stmt in seed_sql("sqlite"):
                    con.execute(stmt)
                con.commit()
                con.execute("ANALYZE")
                con.close()
            for cache in args.cache.split(","):
                port = free_port()
                env["LECTERN_CATALOG_CACHE_SECS"] = "0" if cache == "off" else "1"
                server = subprocess.Popen([lectern, "serve", "--listen", f"127.0.0.1:{port}"], env=env, stdout=subprocess.DEVNULL)
                base = f"http://127.0.0.1:{port}"
                wait_http(f"{base}/healthz")
                for name, paths in endpoints.items():
                    if cache == "on":
                        # Steady state: every URL asked once before the clock starts (a cold
                        # cache is the uncached case, measured on its own).
                        for path in paths:
                            urllib.request.urlopen(base + path).read()
                    rps, p50, p99 = wrk(base, paths, work, args.connections, args.seconds)
                    seed, target = SEED[backend][name], TARGET[name]
                    print(f"{backend:10} {cache:5} {name:8} {rps:>9.0f} {p50:>8.2f} {p99:>8.2f} {rps / seed:>7.1f} {rps / target:>8.2f}")
                server.terminate()
                server.wait(timeout=30)
                server = None
        finally:
            if server:
                server.terminate()
                server.wait(timeout=30)
            if backend == "postgres":
                subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"])
            shutil.rmtree(work, ignore_errors=True)
    print("(targets: list >= 3100, search >= 2700, detail >= 7000 req/s, p99 < 20 ms)")


if __name__ == "__main__":
    main()
