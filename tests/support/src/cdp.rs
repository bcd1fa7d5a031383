//! Headless Chromium driven over the DevTools protocol (`--remote-debugging-pipe`: JSON
//! messages ending in a NUL byte, on file descriptors 3 and 4 of the browser), for tests that
//! click through a page: fill a form, press a button, and see every request the browser sent,
//! every redirect and every response header.

#![allow(
    unsafe_code,
    reason = "libc calls on our own child processes and descriptors; each block says why it is sound"
)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A browser with one page attached.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    to: File,
    from: BufReader<File>,
    next: u64,
    session: String,
    /// Every event received so far (`{"method", "params"}`), in order.
    pub events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipe whose ends close on exec (the child gets its ends by `dup2`).
fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

impl Browser {
    /// Starts headless Chromium with a throwaway profile and opens a blank page.
    pub fn start() -> Browser {
        let profile = tempfile::tempdir().expect("a browser profile directory");
        let (browser_reads, we_write) = pipe();
        let (we_read, browser_writes) = pipe();
        let mut cmd = Command::new(super::browser::binary());
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only fcntl and dup2 (async-signal-safe) between fork and exec. The ends are
        // first copied above 10, so that neither is overwritten (or left close-on-exec) when
        // pipe2 happened to return 3 or 4; dup2's copies at 3 and 4 stay open across exec.
        unsafe {
            cmd.pre_exec(move || {
                let reads = libc::fcntl(browser_reads, libc::F_DUPFD, 10);
                let writes = libc::fcntl(browser_writes, libc::F_DUPFD, 10);
                if reads < 0 || writes < 0 || libc::dup2(reads, 3) < 0 || libc::dup2(writes, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start chromium ({e}): run scripts/setup"));
        // SAFETY: these descriptors came from pipe2 above and are owned by nothing else; the
        // child's ends are closed here (it has its copies).
        let (to, from) = unsafe {
            libc::close(browser_reads);
            libc::close(browser_writes);
            (File::from_raw_fd(we_write), File::from_raw_fd(we_read))
        };
        let mut browser = Browser {
            child,
            to,
            from: BufReader::new(from),
            next: 0,
            session: String::new(),
            events: Vec::new(),
            _profile: profile,
        };
        let target = browser.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser.send("Network.enable", json!({}));
        browser.send("Page.enable", json!({}));
        browser
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_call(session, method, params)
            .unwrap_or_else(|error| panic!("{method} failed: {error}"))
    }

    /// Like [`Browser::call`], with chromium's error as the `Err`.
    fn try_call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        self.next += 1;
        let id = self.next;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON");
        bytes.push(0);
        self.to
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("send {method} to chromium: {e}"));
        loop {
            let mut buf = Vec::new();
            let n = self
                .from
                .read_until(0, &mut buf)
                .unwrap_or_else(|e| panic!("read from chromium: {e}"));
            assert!(n > 0, "chromium closed its pipe during {method}");
            buf.pop();
            let reply: Value = serde_json::from_slice(&buf).expect("chromium sends JSON");
            if reply["id"] == json!(id) {
                if let Some(error) = reply.get("error") {
                    return Err(error.clone());
                }
                return Ok(reply["result"].clone());
            }
            if reply.get("method").is_some() {
                self.events.push(reply);
            }
        }
    }

    /// Sends `method` to the page; its result.
    pub fn send(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    /// Evaluates `expression` in the page; its value (`null` while the page is between
    /// documents).
    pub fn eval(&mut self, expression: &str) -> Value {
        let session = self.session.clone();
        let params = json!({ "expression": expression, "returnByValue": true });
        match self.try_call(Some(&session), "Runtime.evaluate", params) {
            Ok(result) => result["result"]["value"].clone(),
            // A navigation that starts while the expression runs destroys its context; chromium
            // answers with this generic server error (code -32000) and its text only.
            Err(error)
                if error["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("navigated or closed")) =>
            {
                Value::Null
            }
            Err(error) => panic!("Runtime.evaluate failed: {error}"),
        }
    }

    /// Opens `url`.
    pub fn navigate(&mut self, url: &str) {
        self.send("Page.navigate", json!({ "url": url }));
    }

    /// Waits (up to 30 s) until `condition` evaluates to `true` in a loaded page.
    pub fn wait_until(&mut self, condition: &str) {
        let expression = format!("document.readyState === 'complete' && !!({condition})");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.eval(&expression) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "not in 30 s: {condition}; the page:\n{}",
                self.html()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The current document's HTML.
    pub fn html(&mut self) -> String {
        self.eval("document.documentElement ? document.documentElement.outerHTML : ''")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The cookies the browser holds for `url`.
    pub fn cookies(&mut self, url: &str) -> Vec<Value> {
        let result = self.send("Network.getCookies", json!({ "urls": [url] }));
        result["cookies"].as_array().cloned().unwrap_or_default()
    }

    /// Every URL the page requested, each redirect's `Location`, every response header value,
    /// and every request's body, as `(what, text)`.
    pub fn traffic(&self) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        for event in &self.events {
            let params = &event["params"];
            match event["method"].as_str() {
                Some("Network.requestWillBeSent") => {
                    let request = &params["request"];
                    seen.push(("url".into(), request["url"].as_str().unwrap_or("").into()));
                    if let Some(body) = request["postData"].as_str() {
                        seen.push(("body".into(), body.to_owned()));
                    }
                    if let Some(headers) = params["redirectResponse"]["headers"].as_object() {
                        for (name, value) in headers {
                            seen.push((
                                format!("redirect {name}"),
                                value.as_str().unwrap_or("").into(),
                            ));
                        }
                    }
                }
                Some("Network.responseReceived") => {
                    let response = &params["response"];
                    if let Some(headers) = response["headers"].as_object() {
                        for (name, value) in headers {
                            seen.push((
                                format!("response {name}"),
                                value.as_str().unwrap_or("").into(),
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        seen
    }
}
