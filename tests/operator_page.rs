//! The demo's operator page `/migrations`, rendered by a real browser (headless Chromium, the
//! Debian package `chromium` that scripts/setup installs): every migration in the rendered DOM
//! with its status, duration and attempts; values from the database escaped; no database URL
//! or secret; the background backfill with its progress, and pause/resume/cancel buttons only
//! for a request presenting `MIGRATION_ADMIN_TOKEN`; a screenshot under target/. The controls
//! (303 back to the page, 403 without the token, 404, 409) are driven over plain HTTP, and the
//! demo's workers finish the backfill and stop on SIGTERM.

mod common;

use std::path::PathBuf;

use common::browser::{dump_dom, png_size, screenshot};
use common::server::{start, Server};
use common::{exec, http, pg, users, TestDb};
use migrator::Backend;

/// The admin token of these tests: characters that need escaping in HTML and in a URL.
const TOKEN: &str = "op-T0ken&\"<x> +/";

/// `value` percent-encoded for a query string.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Where screenshots go: the workspace's target/ (or `CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The backfill migration 001 schedules.
const BACKFILL: &str = "hash_kroger_passwords";

/// The `<tr>` of migration `id` in a rendered DOM (its `data-id` as Chromium serializes it).
fn row<'a>(dom: &'a str, id: &str) -> &'a str {
    row_of(dom, "data-id", id)
}

/// The `<tr>` whose `attribute` is `value`.
fn row_of<'a>(dom: &'a str, attribute: &str, value: &str) -> &'a str {
    let start = dom
        .find(&format!("{attribute}=\"{value}\""))
        .unwrap_or_else(|| panic!("no row with {attribute} {value} in the rendered page:\n{dom}"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

fn url(server: &Server, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", server.port)
}

/// A form POST of the operator page's kind: `token` as its field.
fn post_form(server: &Server, path: &str, token: &str) -> http::Response {
    let body = format!("token={}", encode(token));
    http::request(
        server.port,
        "POST",
        path,
        Some("application/x-www-form-urlencoded"),
        &body,
    )
    .unwrap_or_else(|| panic!("POST {path}: no answer"))
}

#[test]
fn the_rendered_page_shows_every_migration_and_buttons_only_with_the_token() {
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    users::seed(&db, Backend::Postgres, 40);
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(
        dir.path(),
        &[
            ("DATABASE_URL", &t.url),
            ("ENVIRONMENT", "staging"),
            ("MIGRATION_ADMIN_TOKEN", TOKEN),
            // 001 hands its hashing off, and no worker takes it: it stays active at 0 rows.
            ("MIGRATION_BACKFILL", "background"),
            ("MIGRATION_BACKFILL_THREADS", "0"),
        ],
    );
    let (health, _) = server.wait_for("ok");
    let health = health.json();
    // A row this binary does not know, with markup in its name and error: the page must show
    // it as text, not as elements.
    exec(
        &db,
        "INSERT INTO applied_migrations \
         (migration_name, status, execution_time_ms, error_message, attempts) VALUES \
         ('999_<b id=\"injected\">x</b>', 'failed', 1500, \
          'boom <script>document.body.id=\"pwned\"</script> & <i id=\"err-injected\">i</i>', 3)",
    );

    let dom = dump_dom(&url(&server, "/migrations"));
    assert!(dom.contains("<h1>Migrations</h1>"), "{dom}");
    let migrations = health["migrations"].as_array().unwrap();
    assert!(!migrations.is_empty(), "{health}");
    for m in migrations {
        let id = m["id"].as_str().unwrap();
        let status = m["status"].as_str().unwrap();
        let attempts = m["attempts"].as_i64().unwrap();
        let tr = row(&dom, id);
        assert!(tr.contains(&format!("data-status=\"{status}\"")), "{tr}");
        assert!(tr.contains(&format!("<td>{attempts}</td>")), "{tr}");
        if m["execution_time_ms"].is_i64() {
            assert!(tr.contains(" ms</td>") || tr.contains(" s</td>"), "{tr}");
        }
    }
    let kroger = row(&dom, "001_hash_kroger_passwords");
    assert!(kroger.contains("data-status=\"success\""), "{kroger}");
    assert!(kroger.contains("<td>1</td>"), "{kroger}");
    // Escaped: shown as text, never parsed into elements, never run.
    assert!(!dom.contains("<b id=\"injected\">"), "{dom}");
    assert!(!dom.contains("<i id=\"err-injected\">"), "{dom}");
    assert!(!dom.contains("<body id=\"pwned\""), "{dom}");
    assert!(
        dom.contains("&lt;b id=\"injected\"&gt;x&lt;/b&gt;"),
        "{dom}"
    );
    let unknown = dom.find("not in this binary").expect("the unknown row");
    assert!(dom[unknown..].contains("1.5 s"), "{dom}");
    // The backfill, with its progress, as /health lists it.
    let listed = &health["backfills"];
    assert_eq!(listed[0]["name"], BACKFILL, "{health}");
    let total = listed[0]["rows_total"].as_u64().unwrap();
    assert!(total > 0, "{health}");
    let backfill = row_of(&dom, "data-name", BACKFILL);
    assert!(backfill.contains("data-status=\"active\""), "{backfill}");
    assert!(
        backfill.contains(&format!("<progress max=\"{total}\" value=\"0\">")),
        "{backfill}"
    );
    assert!(
        backfill.contains(&format!("0 / {total} (0.0%)")),
        "{backfill}"
    );
    assert!(backfill.contains("rows/s"), "{backfill}");
    // Read-only without the token; no database URL, password or token anywhere.
    assert!(dom.contains("read-only"), "{dom}");
    assert!(!dom.contains("<form"), "{dom}");
    assert!(!dom.contains("<button"), "{dom}");
    for secret in [
        t.url.as_str(),
        pg::PASSWORD,
        TOKEN,
        "op-T0ken",
        "postgres://",
    ] {
        assert!(!dom.contains(secret), "{secret} in the page:\n{dom}");
    }

    // A wrong token is read-only too; the right one enables the controls.
    let wrong = dump_dom(&url(&server, "/migrations?token=op-T0ken"));
    assert!(wrong.contains("read-only"), "{wrong}");
    let with_token = format!("/migrations?token={}", encode(TOKEN));
    let admin = dump_dom(&url(&server, &with_token));
    assert!(admin.contains("controls enabled"), "{admin}");
    assert!(!admin.contains("read-only"), "{admin}");
    row(&admin, "001_hash_kroger_passwords");
    let backfill = row_of(&admin, "data-name", BACKFILL);
    for button in ["pause", "cancel"] {
        assert!(
            backfill.contains(&format!(
                "action=\"/migrations/backfills/{BACKFILL}/{button}\""
            )),
            "{backfill}"
        );
        assert!(
            backfill.contains(&format!("id=\"{button}-{BACKFILL}\"")),
            "{backfill}"
        );
    }
    assert!(!backfill.contains("id=\"resume-"), "{backfill}");
    // The forms carry the token, escaped as an attribute value.
    assert!(
        backfill.contains("name=\"token\" value=\"op-T0ken&amp;&quot;"),
        "{backfill}"
    );

    // Pause as the page's form does: 303 back to the page (with the token), which now shows
    // the backfill paused with a resume button.
    let pause = format!("/migrations/backfills/{BACKFILL}/pause");
    let r = post_form(&server, &pause, TOKEN);
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some(with_token.as_str()), "{r:?}");
    let paused = dump_dom(&url(&server, &with_token));
    let backfill = row_of(&paused, "data-name", BACKFILL);
    assert!(backfill.contains("data-status=\"paused\""), "{backfill}");
    assert!(backfill.contains(">paused</td>"), "{backfill}");
    assert!(
        backfill.contains(&format!("id=\"resume-{BACKFILL}\"")),
        "{backfill}"
    );
    assert!(
        !backfill.contains(&format!("id=\"pause-{BACKFILL}\"")),
        "{backfill}"
    );
    let health = server.wait_for("ok").0.json();
    assert_eq!(health["backfills"][0]["status"], "paused", "{health}");

    let png = target_dir().join("operator-page.png");
    screenshot(&url(&server, &with_token), &png, 1280, 900);
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert_eq!(png_size(&bytes), (1280, 900), "{}", png.display());
    assert!(
        bytes.len() > 10_000,
        "a blank screenshot? {} bytes",
        bytes.len()
    );

    assert_eq!(server.terminate(), 0);
}

/// A POST with `Authorization: Bearer token` (as from a script).
fn bearer_post(server: &Server, path: &str, token: &str) -> http::Response {
    let bearer = format!("Bearer {token}");
    http::request_with_headers(
        server.port,
        "POST",
        path,
        &[("Authorization", &bearer)],
        None,
        "",
    )
    .unwrap_or_else(|| panic!("POST {path}: no answer"))
}

#[test]
fn controls_are_403_without_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = "/migrations/backfills/hash_kroger_passwords/pause";
    let form = Some("application/x-www-form-urlencoded");
    let post = |server: &Server, content_type, body: &str| {
        http::request(server.port, "POST", path, content_type, body)
            .unwrap_or_else(|| panic!("POST {path}: no answer"))
    };
    let mut server = start(
        dir.path(),
        &[
            ("MIGRATION_ADMIN_TOKEN", TOKEN),
            ("MIGRATION_BACKFILL", "background"),
            ("MIGRATION_BACKFILL_THREADS", "0"),
        ],
    );
    server.wait_for("ok");
    for (content_type, body) in [
        (None, ""),
        (form, ""),
        (form, "token="),
        (form, "token=op-T0ken"),
        (form, &format!("token={}x", encode(TOKEN))),
        (Some("text/plain"), TOKEN),
    ] {
        let r = post(&server, content_type, body);
        assert_eq!(r.status, 403, "{content_type:?} {body:?}: {r:?}");
        assert!(r.body.contains("admin token"), "{r:?}");
        assert!(!r.body.contains("op-T0ken"), "{r:?}");
    }
    // With the token: unknown backfill and action 404; the JSON state for a Bearer request;
    // 409 where the state does not allow the action.
    let r = post_form(
        &server,
        "/migrations/backfills/no_such_backfill/pause",
        TOKEN,
    );
    assert_eq!(r.status, 404, "{r:?}");
    let r = post_form(
        &server,
        &format!("/migrations/backfills/{BACKFILL}/delete"),
        TOKEN,
    );
    assert_eq!(r.status, 404, "{r:?}");
    let bearer = |action: &str| {
        let path = format!("/migrations/backfills/{BACKFILL}/{action}");
        bearer_post(&server, &path, TOKEN)
    };
    let r = bearer("cancel");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["status"], "cancelled", "{r:?}");
    let r = bearer("pause");
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.body.contains(BACKFILL), "{r:?}");
    // The page without the token is read-only.
    let page = http::get(server.port, "/migrations").unwrap();
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"), "{page:?}");
    assert!(page.body.contains("read-only") && !page.body.contains("<form"));
    drop(server);

    // With the variable unset, every control is refused, whatever is presented.
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[("MIGRATION_BACKFILL", "background")]);
    server.wait_for("ok");
    for body in [String::new(), format!("token={}", encode(TOKEN))] {
        let r = post(&server, form, &body);
        assert_eq!(r.status, 403, "{body:?}: {r:?}");
        assert!(r.body.contains("MIGRATION_ADMIN_TOKEN is not set"), "{r:?}");
    }
    let page = http::get(server.port, &format!("/migrations?token={}", encode(TOKEN))).unwrap();
    assert!(page.body.contains("read-only") && !page.body.contains("<form"));
    assert_eq!(server.terminate(), 0);
}

#[test]
fn the_demos_workers_finish_the_backfill_and_stop_on_sigterm() {
    const ROWS: i64 = 300;
    let t = TestDb::new(Backend::Postgres);
    let db = t.connect();
    users::seed(&db, Backend::Postgres, ROWS);
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(
        dir.path(),
        &[
            ("DATABASE_URL", &t.url),
            ("ENVIRONMENT", "staging"),
            ("MIGRATION_BACKFILL", "background"),
            ("MIGRATION_BACKFILL_THREADS", "1"),
            ("MIGRATION_BATCH_SIZE", "20"),
        ],
    );
    // `ok` while the workers run, the backfill listed with its progress until it finishes.
    let (health, _) = server.wait_for("ok");
    let health = health.json();
    assert_eq!(health["backfills"][0]["name"], BACKFILL, "{health}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let finished = loop {
        let health = server.wait_for("ok").0.json();
        let b = &health["backfills"][0];
        if b["status"] == "finished" {
            break health;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not finished in 120 s: {health}\n{}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let b = &finished["backfills"][0];
    assert_eq!(b["rows_done"], b["rows_total"], "{finished}");
    assert!(b["rows_done"].as_u64().unwrap() > 0, "{finished}");
    users::assert_all_hashed(&db, ROWS);

    // The library's gauges of the backfill show in /metrics.
    let metrics = http::get(server.port, "/metrics").unwrap();
    let line = format!("migrator_background_backfill_rows_done{{backfill=\"{BACKFILL}\"}}");
    let done = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .unwrap_or_else(|| panic!("no {line} in /metrics:\n{}", metrics.body));
    assert_eq!(done.trim(), b["rows_done"].to_string(), "{}", metrics.body);

    // The finished backfill shows full, with no buttons for anyone.
    let dom = dump_dom(&url(&server, "/migrations"));
    let row = row_of(&dom, "data-name", BACKFILL);
    assert!(row.contains("data-status=\"finished\""), "{row}");
    assert!(row.contains("(100.0%)"), "{row}");

    let log = {
        let log_path = server.log.clone();
        assert_eq!(server.terminate(), 0);
        std::fs::read_to_string(log_path).unwrap()
    };
    assert!(log.contains("Stopping the backfill workers"), "{log}");
    users::assert_no_plaintext(&log, ROWS);
}
