//! A logger that keeps each thread's log lines, so tests can assert on them (and on the absence
//! of secrets), and echoes them to stderr (shown for failing tests).

use std::cell::RefCell;
use std::sync::Once;

struct Capture;

thread_local! {
    static LINES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if !record.target().starts_with("migrator") && record.level() > log::Level::Warn {
            return;
        }
        let line = format!("{} {}", record.level(), record.args());
        eprintln!("{line}");
        LINES.with(|lines| lines.borrow_mut().push(line));
    }

    fn flush(&self) {}
}

static INIT: Once = Once::new();

/// Installs the capture (once per process).
pub fn init() {
    INIT.call_once(|| {
        static CAPTURE: Capture = Capture;
        let _ = log::set_logger(&CAPTURE);
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// Takes the lines this thread logged so far.
pub fn take() -> Vec<String> {
    LINES.with(|lines| std::mem::take(&mut *lines.borrow_mut()))
}

/// Whether this thread logged a line containing `text` (and keeps the lines).
pub fn contains(text: &str) -> bool {
    LINES.with(|lines| lines.borrow().iter().any(|l| l.contains(text)))
}
