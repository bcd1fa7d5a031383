//! The demo's operator page `/migrations`, rendered by a real browser (headless Chromium, the
//! Debian package `chromium` that scripts/setup installs): every migration in the rendered DOM
//! with its status, duration and attempts; values from the database escaped; no database URL
//! or secret; the background backfill with its progress, and pause/resume/cancel buttons only
//! for an admin who logged in with `MIGRATION_ADMIN_TOKEN` through the page's form (the browser
//! clicks through login, pause and logout, and no URL, redirect, header or page holds the
//! token); a screenshot under target/. The controls (303 back to the page, 403 without the
//! token or without the session's CSRF token, 404, 409) are driven over plain HTTP, and the
//! demo's workers finish the backfill and stop on SIGTERM.

use crate::common;

use std::path::PathBuf;

use common::browser::{dump_dom, png_size};
use common::cdp::Browser;
use common::server::{start, Server};
use common::{exec, http, pg_password, users, TestDb};
use migrator::connection::Backend;

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
fn the_rendered_page_shows_every_migration_and_controls_only_to_a_logged_in_admin() {
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
            ("MIGRATION_ADMIN_TOKEN_LABEL", "on-call"),
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
    // Read-only without the token (a login form, no controls, no error texts); no database
    // URL, password or token anywhere.
    assert!(dom.contains("read-only"), "{dom}");
    assert!(dom.contains("id=\"login\""), "{dom}");
    assert!(!dom.contains("/migrations/backfills/"), "{dom}");
    assert!(!dom.contains("id=\"logout"), "{dom}");
    assert!(
        !dom.contains("boom"),
        "an error text shown to an anonymous client:\n{dom}"
    );
    assert!(dom.contains("(shown to the admin)"), "{dom}");
    for secret in [
        t.url.as_str(),
        pg_password(),
        TOKEN,
        "op-T0ken",
        "postgres://",
    ] {
        assert!(!dom.contains(secret), "{secret} in the page:\n{dom}");
    }
    // The token is never accepted in a URL.
    let in_url = dump_dom(&url(
        &server,
        &format!("/migrations?token={}", encode(TOKEN)),
    ));
    assert!(in_url.contains("read-only"), "{in_url}");
    assert!(!in_url.contains("/migrations/backfills/"), "{in_url}");

    // Through the page in a browser: log in, pause, log out.
    let mut browser = Browser::start();
    browser.navigate(&url(&server, "/migrations"));
    browser.wait_until("document.getElementById('login-token')");
    let token_js = serde_json::to_string(TOKEN).unwrap();
    browser.eval(&format!(
        "document.getElementById('login-token').value = {token_js}; \
         document.getElementById('login-button').click(); true"
    ));
    browser.wait_until("document.getElementById('mode').textContent === 'controls enabled'");
    let admin = browser.html();
    assert!(!admin.contains("read-only"), "{admin}");
    // The admin sees error texts, escaped.
    assert!(admin.contains("boom &lt;script&gt;"), "{admin}");
    assert!(!admin.contains("<i id=\"err-injected\">"), "{admin}");
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
    // The forms carry the session's CSRF token, never the admin token.
    assert!(backfill.contains("name=\"csrf\" value=\""), "{backfill}");
    assert!(!backfill.contains("name=\"token\""), "{backfill}");
    let cookies = browser.cookies(&url(&server, "/migrations"));
    let session = cookies
        .iter()
        .find(|c| c["name"] == "migrator_session")
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    assert_eq!(session["path"], "/migrations", "{session}");
    assert_eq!(session["session"], false, "an expiry: {session}");
    let session_value = session["value"].as_str().unwrap().to_owned();

    // Pause by pressing the page's button: back to the page, which now shows the backfill
    // paused with a resume button.
    browser.eval(&format!(
        "document.getElementById('pause-{BACKFILL}').click(); true"
    ));
    browser.wait_until(&format!(
        "document.querySelector('tr[data-name=\"{BACKFILL}\"]').dataset.status === 'paused'"
    ));
    let paused = browser.html();
    let backfill = row_of(&paused, "data-name", BACKFILL);
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
    // Recorded with who and when.
    let audit = migrator::audit::list(&db, 10).unwrap();
    let pause = audit
        .iter()
        .find(|e| e.action == "backfill pause")
        .unwrap_or_else(|| panic!("no audit row: {audit:?}"));
    assert_eq!(
        (
            pause.actor.as_str(),
            pause.target.as_str(),
            pause.outcome.as_str()
        ),
        ("token:on-call", BACKFILL, "paused")
    );
    assert!(!pause.at.is_empty());

    let png = target_dir().join("operator-page.png");
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({ "width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
    );
    let shot = browser.send(
        "Page.captureScreenshot",
        serde_json::json!({ "format": "png" }),
    );
    let bytes = base64_decode(shot["data"].as_str().unwrap());
    std::fs::write(&png, &bytes).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert_eq!(png_size(&bytes), (1280, 900), "{}", png.display());
    assert!(
        bytes.len() > 10_000,
        "a blank screenshot? {} bytes",
        bytes.len()
    );

    // Log out: the session ends and its cookie is cleared; the old cookie controls nothing.
    browser.eval("document.getElementById('logout-button').click(); true");
    browser.wait_until("document.getElementById('mode').textContent === 'read-only'");
    let cookies = browser.cookies(&url(&server, "/migrations"));
    assert!(
        !cookies.iter().any(|c| c["name"] == "migrator_session"),
        "{cookies:?}"
    );
    let replayed = http::request_with_headers(
        server.port,
        "POST",
        &format!("/migrations/backfills/{BACKFILL}/resume"),
        &[("Cookie", &format!("migrator_session={session_value}"))],
        Some("application/x-www-form-urlencoded"),
        "",
    )
    .unwrap();
    assert_eq!(replayed.status, 403, "{replayed:?}");

    // No request URL, redirect, response header or page held the token; only the login
    // form's body did.
    let final_page = browser.html();
    let encoded = encode(TOKEN);
    for (what, text) in browser.traffic() {
        if what == "body" && text.starts_with("token=") {
            continue;
        }
        for form in [TOKEN, encoded.as_str(), "op-T0ken"] {
            assert!(!text.contains(form), "the token in {what}: {text}");
        }
        if what == "url" || what.ends_with("location") {
            assert!(!text.contains("token="), "{what}: {text}");
        }
    }
    for page in [&admin, &paused, &final_page] {
        assert!(!page.contains("op-T0ken"), "the token in a page:\n{page}");
    }
    assert!(
        browser
            .traffic()
            .iter()
            .any(|(what, text)| what == "url" && text.ends_with(&format!("{BACKFILL}/pause"))),
        "the pause was not sent by the browser: {:?}",
        browser.traffic()
    );
    assert!(!server.log().contains("op-T0ken"), "{}", server.log());

    assert_eq!(server.terminate(), 0);
}

/// Standard base64 (as Chromium sends screenshots) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            n |= u32::from(*d) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
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
    let r = bearer_post(
        &server,
        "/migrations/backfills/no_such_backfill/pause",
        TOKEN,
    );
    assert_eq!(r.status, 404, "{r:?}");
    let r = bearer_post(
        &server,
        &format!("/migrations/backfills/{BACKFILL}/delete"),
        TOKEN,
    );
    assert_eq!(r.status, 404, "{r:?}");
    // A login with a wrong token is refused; the right one sets the session cookie and goes
    // back to the page, without the token.
    let r = post_form(&server, "/migrations/login", "op-T0ken");
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.header("set-cookie").is_none(), "{r:?}");
    let r = post_form(&server, "/migrations/login", TOKEN);
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/migrations"), "{r:?}");
    let cookie = r.header("set-cookie").unwrap_or_default().to_owned();
    assert!(
        cookie.starts_with("migrator_session=")
            && cookie.ends_with("; Path=/migrations; Max-Age=3600; HttpOnly; SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("op-T0ken"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let with_session = |path: &str, body: &str| {
        http::request_with_headers(
            server.port,
            "POST",
            path,
            &[("Cookie", &session)],
            form,
            body,
        )
        .unwrap()
    };
    // The session alone is not enough: its CSRF token must come with each form.
    let resume = format!("/migrations/backfills/{BACKFILL}/resume");
    for body in [
        String::new(),
        "csrf=0123".to_owned(),
        format!("token={}", encode(TOKEN)),
    ] {
        let r = with_session(&resume, &body);
        assert_eq!(r.status, 403, "{body}: {r:?}");
        assert!(r.body.contains("CSRF"), "{r:?}");
    }
    let page = http::request_with_headers(
        server.port,
        "GET",
        "/migrations",
        &[("Cookie", &session)],
        None,
        "",
    )
    .unwrap();
    assert!(page.body.contains("controls enabled"), "{}", page.body);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the page")
        .to_owned();
    let r = with_session(
        &format!("/migrations/backfills/{BACKFILL}/pause"),
        &format!("csrf={csrf}"),
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/migrations"), "{r:?}");
    // Logging out ends the session.
    let r = with_session("/migrations/logout", &format!("csrf={csrf}"));
    assert_eq!(r.status, 303, "{r:?}");
    assert!(
        r.header("set-cookie")
            .unwrap_or_default()
            .contains("Max-Age=0"),
        "{r:?}"
    );
    let r = with_session(&resume, &format!("csrf={csrf}"));
    assert_eq!(r.status, 403, "{r:?}");
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
    // The page without the token is read-only: a login form, no controls.
    let page = http::get(server.port, "/migrations").unwrap();
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"), "{page:?}");
    assert!(page.body.contains("read-only") && !page.body.contains("/migrations/backfills/"));
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
