//! The operator page's HTML: server-rendered, no script, a meta refresh every 5 s (to the same
//! URL, which never holds a secret). Every value from the database or the code goes through
//! [`escape`]; the database URL and the admin token are never rendered, and error texts only
//! for the admin.

use std::fmt::Write as _;

use migrator::backfill::BackfillState;
use migrator::{report::MigrationState, report::StatusReport};

use crate::demo::startup::Phase;

/// What the page shows.
pub(super) struct Page<'a> {
    pub(super) environment: &'a str,
    pub(super) backend: String,
    pub(super) phase: &'a Phase,
    /// `None` when the status could not be read (the cause is in the server log).
    pub(super) status: Option<&'a StatusReport>,
    /// The background backfills; `None` when they could not be read.
    pub(super) backfills: Option<&'a [BackfillState]>,
    /// Who asks: error texts need the admin, forms a session (they carry its CSRF token).
    pub(super) viewer: &'a super::Viewer,
    /// Whether a login form is offered (`MIGRATION_ADMIN_TOKEN` is set).
    pub(super) login: bool,
}

/// `value` with `& < > " '` escaped, for text and for quoted attribute values.
pub(super) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;width:100%;margin-bottom:2em}\
th,td{border-bottom:1px solid #ddd;padding:.4em .6em;text-align:left;vertical-align:top}\
th{background:#f4f4f4}td.at{white-space:nowrap}.status{font-weight:600}\
.s-success,.s-finished,.s-ok{color:#1a7f37}.s-failed,.s-degraded,.s-cancelled{color:#c62828}\
.s-running,.s-active,.s-migrating{color:#1565c0}.s-pending,.s-paused,.s-skipped{color:#8a6d00}\
.error{color:#c62828;font-family:monospace;white-space:pre-wrap}\
progress{width:8em;display:block}.time{font-size:.85em}.rate{white-space:nowrap}form{display:inline}button{margin-right:.3em}\
.mode{padding:.2em .6em;border-radius:.3em;background:#eee}";

/// The whole document.
pub(super) fn render(page: &Page<'_>) -> String {
    let mut html = String::with_capacity(8 * 1024);
    html.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <title>Migrations · Smart Meal Planner</title><style>",
    );
    html.push_str(STYLE);
    html.push_str("</style></head><body>\n<h1>Migrations</h1>\n");
    header(&mut html, page);
    let admin = page.viewer.is_admin();
    match page.status {
        Some(status) => migrations(&mut html, status, admin),
        None => html.push_str(
            "<p id=\"status-error\" class=\"error\">Cannot read the migration status \
             (details in the server log).</p>\n",
        ),
    }
    super::backfills::render(&mut html, page.backfills, page.viewer);
    html.push_str("</body></html>\n");
    html
}

fn header(html: &mut String, page: &Page<'_>) {
    let admin = page.viewer.is_admin();
    let (phase, detail) = match page.phase {
        Phase::Migrating => ("migrating", None),
        Phase::Done => ("ok", None),
        Phase::Skipped(reason) => ("skipped", Some(format!("skipped: {reason}"))),
        Phase::Failed { migration, error } => (
            "degraded",
            Some(match (migration, admin) {
                (Some(id), true) => format!("{id}: {error}"),
                (None, true) => error.clone(),
                (Some(id), false) => format!("{id} failed (the error is shown to the admin)"),
                (None, false) => "start-up failed (the error is shown to the admin)".into(),
            }),
        ),
    };
    let mode = match page.viewer {
        super::Viewer::Session(_) => "controls enabled",
        super::Viewer::Bearer => "admin",
        super::Viewer::Anonymous => "read-only",
    };
    let _ = writeln!(
        html,
        "<p>Environment <b id=\"environment\">{}</b> · backend <b id=\"backend\">{}</b> · \
         start-up <span id=\"phase\" class=\"status s-{phase}\">{phase}</span> · \
         <span id=\"mode\" class=\"mode\">{mode}</span> · refreshes every 5 s</p>",
        escape(page.environment),
        escape(&page.backend),
    );
    if let Some(detail) = detail {
        let _ = writeln!(
            html,
            "<p id=\"phase-detail\" class=\"error\">{}</p>",
            escape(&detail)
        );
    }
    match page.viewer {
        super::Viewer::Session(current) => {
            let _ = writeln!(
                html,
                "<form id=\"logout\" method=\"post\" action=\"/migrations/logout\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <button type=\"submit\" id=\"logout-button\">log out</button></form>",
                escape(&current.csrf)
            );
        }
        super::Viewer::Anonymous if page.login => html.push_str(
            "<form id=\"login\" method=\"post\" action=\"/migrations/login\">\
             <label>Admin token <input type=\"password\" name=\"token\" id=\"login-token\" \
             autocomplete=\"off\" required></label> \
             <button type=\"submit\" id=\"login-button\">log in</button></form>\n",
        ),
        _ => {}
    }
}

/// `1.2 s`, `350 ms`, `2 min 5 s`.
fn duration(ms: i64) -> String {
    match ms {
        ms if ms < 1_000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// The error text of a row for the admin; anonymous viewers see only that there is one.
fn error_text(error: Option<&str>, admin: bool) -> String {
    match (error, admin) {
        (Some(e), true) => escape(e),
        (Some(_), false) => "(shown to the admin)".into(),
        (None, _) => String::new(),
    }
}

fn migrations(html: &mut String, status: &StatusReport, admin: bool) {
    let _ = writeln!(
        html,
        "<h2>Migrations <small>({} pending)</small></h2>\n<table id=\"migrations\"><thead><tr>\
         <th>Migration</th><th>Status</th><th>Duration</th><th>Attempts</th>\
         <th>Applied at</th><th>Error</th></tr></thead><tbody>",
        status.pending_count()
    );
    for name in &status.pending_sql {
        let _ = writeln!(
            html,
            "<tr class=\"migration\" data-id=\"{id}\" data-status=\"pending\"><td>{id} \
             <small>(SQL)</small></td><td class=\"status s-pending\">pending</td><td></td>\
             <td>0</td><td></td><td></td></tr>",
            id = escape(name)
        );
    }
    for m in &status.migrations {
        migration_row(html, m, admin);
    }
    for row in &status.unknown_applied {
        let _ = writeln!(
            html,
            "<tr class=\"migration unknown\" data-id=\"{id}\" data-status=\"{st}\"><td>{id} \
             <small>(not in this binary)</small></td><td class=\"status s-{st}\">{st}</td>\
             <td>{dur}</td><td>{att}</td><td class=\"at\">{at}</td><td class=\"error\">{err}</td></tr>",
            id = escape(&row.id),
            st = row.status.as_str(),
            dur = row.execution_time_ms.map(duration).unwrap_or_default(),
            att = row.attempts,
            at = escape(row.applied_at.as_deref().unwrap_or("")),
            err = error_text(row.error_message.as_deref(), admin),
        );
    }
    html.push_str("</tbody></table>\n");
}

fn migration_row(html: &mut String, m: &MigrationState, admin: bool) {
    let row = m.row.as_ref();
    let label = m.status_label();
    let drift = if m.checksum_drift {
        " <small>(code changed since applied)</small>"
    } else {
        ""
    };
    let _ = writeln!(
        html,
        "<tr class=\"migration\" data-id=\"{id}\" data-status=\"{label}\"><td>{id}{drift}</td>\
         <td class=\"status s-{label}\">{label}</td><td>{dur}</td><td>{att}</td><td class=\"at\">{at}</td>\
         <td class=\"error\">{err}</td></tr>",
        id = escape(&m.id),
        dur = row
            .and_then(|r| r.execution_time_ms)
            .map(duration)
            .unwrap_or_default(),
        att = row.map_or(0, |r| r.attempts),
        at = escape(row.and_then(|r| r.applied_at.as_deref()).unwrap_or("")),
        err = error_text(row.and_then(|r| r.error_message.as_deref()), admin),
    );
}

#[cfg(test)]
mod tests {
    use super::{duration, escape};

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<b id="x">Tom & 'Jerry'</b>"#),
            "&lt;b id=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(350), "350 ms");
        assert_eq!(duration(1_240), "1.2 s");
        assert_eq!(duration(125_000), "2 min 5 s");
    }
}
