//! The operator page's background backfills: a progress bar, rate, ETA and workers each; for
//! the admin, the workers' hosts and the last error; for an admin session, pause, resume and
//! cancel buttons.

use std::fmt::Write as _;

use migrator::backfill::{BackfillState, BackfillStatus};

use super::html::escape;
use super::Viewer;

/// The actions an operator can take on a backfill in `status`.
fn actions(status: BackfillStatus) -> &'static [&'static str] {
    match status {
        BackfillStatus::Active => &["pause", "cancel"],
        BackfillStatus::Paused | BackfillStatus::Failed => &["resume", "cancel"],
        _ => &[],
    }
}

/// `2 h 5 min`, `3 min 20 s`, `45 s`.
fn eta(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// The section; `None` when the backfills could not be read (the cause is in the server log).
pub(super) fn render(html: &mut String, backfills: Option<&[BackfillState]>, viewer: &Viewer) {
    html.push_str("<h2>Background backfills</h2>\n");
    let Some(backfills) = backfills else {
        html.push_str(
            "<p id=\"backfills-error\" class=\"error\">Cannot read the backfills (details in \
             the server log).</p>\n",
        );
        return;
    };
    if backfills.is_empty() {
        html.push_str("<p id=\"no-backfills\">No backfill was scheduled.</p>\n");
        return;
    }
    html.push_str(
        "<table id=\"backfills\"><thead><tr><th>Backfill</th><th>Migration</th><th>Status</th>\
         <th>Progress</th><th>Rate</th><th>ETA</th><th>Workers</th><th>Updated</th>\
         <th>Error</th><th>Actions</th></tr></thead><tbody>\n",
    );
    for b in backfills {
        row(html, b, viewer);
    }
    html.push_str("</tbody></table>\n");
}

fn row(html: &mut String, b: &BackfillState, viewer: &Viewer) {
    let admin = viewer.is_admin();
    let name = escape(&b.name);
    let status = b.status.as_str();
    let total = b.rows_total.max(b.rows_done);
    let percent = if total == 0 {
        100.0
    } else {
        b.rows_done as f64 * 100.0 / total as f64
    };
    // Worker identities (host, pid) and error texts only for the admin.
    let hosts: Vec<String> = if admin {
        b.workers
            .iter()
            .map(|w| format!("{}:{}", w.host, w.pid))
            .collect()
    } else {
        Vec::new()
    };
    let error = match (&b.last_error, admin) {
        (Some(e), true) => escape(e),
        (Some(_), false) => "(shown to the admin)".into(),
        (None, _) => String::new(),
    };
    let _ = write!(
        html,
        "<tr class=\"backfill\" data-name=\"{name}\" data-status=\"{status}\" \
         data-rows-done=\"{done}\" data-rows-total=\"{total}\"><td>{name}</td><td>{migration}</td>\
         <td class=\"status s-{status}\">{status}</td>\
         <td><progress max=\"{total}\" value=\"{done}\">{percent:.0}%</progress> \
         {done} / {total} ({percent:.1}%)</td><td class=\"rate\">{rate:.1} rows/s</td><td class=\"rate\">{eta}</td>\
         <td title=\"{hosts}\">{workers}</td><td class=\"time\">{updated}</td>\
         <td class=\"error\">{error}</td><td>",
        done = b.rows_done,
        migration = escape(&b.migration),
        rate = b.rate_per_sec,
        eta = b.eta_secs.map(eta).unwrap_or_else(|| "—".into()),
        hosts = escape(&hosts.join(", ")),
        workers = b.workers.len(),
        updated = escape(b.updated_at.as_deref().unwrap_or("")),
    );
    if let Viewer::Session(current) = viewer {
        for action in actions(b.status) {
            let _ = write!(
                html,
                "<form method=\"post\" action=\"/migrations/backfills/{name}/{action}\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" id=\"{action}-{name}\">{action}</button></form>",
                csrf = escape(&current.csrf),
            );
        }
    }
    html.push_str("</td></tr>\n");
}

#[cfg(test)]
mod tests {
    use super::eta;

    #[test]
    fn etas_read_at_a_glance() {
        assert_eq!(eta(45), "45 s");
        assert_eq!(eta(200), "3 min 20 s");
        assert_eq!(eta(7_500), "2 h 5 min");
    }
}
