//! A small closed-loop HTTP load generator: N client threads, each with one keep-alive
//! connection, sending GET requests back to back; the latency of every request, as percentiles.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Latencies of one load run.
#[derive(Clone, Debug)]
pub struct Latencies {
    /// Every successful request's latency, sorted.
    pub samples: Vec<Duration>,
    /// Requests that failed (connection error, or a status other than 200).
    pub errors: u64,
    /// How long the measured part lasted.
    pub elapsed: Duration,
}

impl Latencies {
    /// The `p`-th percentile (0-100) of the latencies.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.samples.len() as f64).ceil() as usize;
        self.samples[rank.clamp(1, self.samples.len()) - 1]
    }

    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// One keep-alive connection to `127.0.0.1:port`.
struct Client {
    port: u16,
    reader: Option<BufReader<TcpStream>>,
}

impl Client {
    /// One GET of `path`; whether it answered 200.
    fn get(&mut self, path: &str) -> std::io::Result<bool> {
        if self.reader.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", self.port))?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            stream.set_nodelay(true)?;
            self.reader = Some(BufReader::new(stream));
        }
        let result = self.exchange(path);
        if !matches!(result, Ok((_, true))) {
            self.reader = None;
        }
        result.map(|(ok, _)| ok)
    }

    /// Sends the request and reads the whole response: (status 200, connection reusable).
    fn exchange(&mut self, path: &str) -> std::io::Result<(bool, bool)> {
        let reader = self
            .reader
            .as_mut()
            .ok_or_else(|| std::io::Error::other("not connected"))?;
        write!(
            reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
        )?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let ok = line.split_whitespace().nth(1) == Some("200");
        let mut length = None;
        let mut keep = true;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("connection closed mid-response"));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("connection") {
                    keep = !value.eq_ignore_ascii_case("close");
                }
            }
        }
        let length =
            length.ok_or_else(|| std::io::Error::other("a response without Content-Length"))?;
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        Ok((ok, keep))
    }
}

/// Runs `clients` threads against `127.0.0.1:port`, each sending GET `path` once every
/// `interval` (back to back when it falls behind) for `warm_up` (not measured) and then
/// `measure`.
pub fn load(
    port: u16,
    path: &str,
    clients: usize,
    interval: Duration,
    warm_up: Duration,
    measure: Duration,
) -> Latencies {
    let start = Instant::now();
    let from = start + warm_up;
    let until = from + measure;
    let per_thread: Vec<(Vec<Duration>, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(move || {
                    let mut client = Client { port, reader: None };
                    let mut samples = Vec::new();
                    let mut errors = 0u64;
                    let mut next = start;
                    loop {
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        next = next.max(now) + interval;
                        let sent = Instant::now();
                        if sent >= until {
                            break;
                        }
                        let ok = client.get(path);
                        let took = sent.elapsed();
                        if sent < from {
                            continue;
                        }
                        match ok {
                            Ok(true) => samples.push(took),
                            _ => errors += 1,
                        }
                    }
                    (samples, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut samples: Vec<Duration> = Vec::new();
    let mut errors = 0;
    for (s, e) in per_thread {
        samples.extend(s);
        errors += e;
    }
    samples.sort();
    Latencies {
        samples,
        errors,
        elapsed: measure,
    }
}

/// Whether `GET path` on `127.0.0.1:port` answers 200 now.
pub fn answers(port: u16, path: &str) -> bool {
    let mut client = Client { port, reader: None };
    matches!(client.get(path), Ok(true))
}
