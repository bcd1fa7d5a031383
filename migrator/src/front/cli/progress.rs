//! Progress bars for `up` on a terminal: one indicatif bar per long migration, on stderr.

use std::sync::{Arc, Mutex};

use crate::running::context::ProgressObserver;

type Current = Option<(String, indicatif::ProgressBar)>;

/// The bar of the migration in progress, if any.
#[derive(Clone, Default)]
pub(super) struct Bars(Arc<Mutex<Current>>);

impl Bars {
    /// An observer that draws every progress update of the run (see
    /// [`crate::Migrator::progress_observer`]).
    pub(super) fn observer(&self) -> ProgressObserver {
        let shared = Arc::clone(&self.0);
        Arc::new(move |id, snapshot| {
            let Ok(mut current) = shared.lock() else {
                return;
            };
            let fresh = current.as_ref().is_none_or(|(bar_id, _)| bar_id != id);
            if fresh {
                if let Some((_, old)) = current.take() {
                    old.finish();
                }
                let bar = indicatif::ProgressBar::new(snapshot.total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:40}] {pos}/{len} rows, {per_sec}, ETA {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_message(id.to_owned());
                *current = Some((id.to_owned(), bar));
            }
            if let Some((_, bar)) = current.as_ref() {
                bar.set_length(snapshot.total);
                bar.set_position(snapshot.done);
            }
        })
    }

    /// Finishes the last bar.
    pub(super) fn finish(&self) {
        if let Ok(current) = self.0.lock() {
            if let Some((_, bar)) = current.as_ref() {
                bar.finish();
            }
        }
    }
}
