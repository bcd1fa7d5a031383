//! Headless Chromium (Debian package `chromium`, installed by scripts/setup): the DOM a real
//! browser renders for a URL, and screenshots. A missing browser fails the test, saying how to
//! install it.

#![allow(
    unsafe_code,
    reason = "libc calls on our own child processes and descriptors; each block says why it is sound"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one browser run may take.
const LIMIT: Duration = Duration::from_secs(90);

/// The browser binary: `$CHROMIUM`, else `chromium` on the PATH.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "headless Chromium is not installed (no chromium on the PATH): run scripts/setup \
                 (it installs the Debian package chromium)"
            )
        })
}

/// Runs the browser headless with `args` and a throwaway profile; its output, bounded by
/// [`LIMIT`].
fn run(args: &[&str]) -> Output {
    let profile = tempfile::tempdir().expect("a browser profile directory");
    let child = Command::new(binary())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start chromium ({e}): run scripts/setup"));
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < LIMIT {
            if finished.recv_timeout(Duration::from_millis(200)).is_ok() {
                return false;
            }
        }
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet (wait below
        // only returns after it exits).
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
        true
    });
    let output = child.wait_with_output().expect("wait for chromium");
    let _ = done.send(());
    let killed = watchdog.join().unwrap_or(false);
    assert!(!killed, "chromium ran longer than {LIMIT:?}: {args:?}");
    assert!(
        output.status.success(),
        "chromium {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The DOM Chromium renders for `url` (`--dump-dom`).
pub fn dump_dom(url: &str) -> String {
    let output = run(&["--dump-dom", url]);
    String::from_utf8(output.stdout).expect("the DOM is UTF-8")
}

/// A screenshot of `url` at `width`×`height` into `file`.
pub fn screenshot(url: &str, file: &Path, width: u32, height: u32) {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).expect("create the screenshot's directory");
    }
    let _ = std::fs::remove_file(file);
    run(&[
        &format!("--screenshot={}", file.display()),
        &format!("--window-size={width},{height}"),
        url,
    ]);
}

/// The width and height of a PNG file (from its IHDR chunk); panics if it is not a PNG.
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    assert!(
        bytes.len() > 24 && bytes.starts_with(SIGNATURE) && &bytes[12..16] == b"IHDR",
        "not a PNG ({} bytes)",
        bytes.len()
    );
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (word(16), word(20))
}
