//! The load generator: N keep-alive connections (one thread each) sending one request for a
//! bounded time, with a latency histogram. Runs in the bench's process, apart from the
//! servers it measures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request, repeated.
#[derive(Clone)]
pub struct Request {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Full URL.
    pub url: String,
    /// Headers sent with it.
    pub headers: Vec<(&'static str, String)>,
    /// The body of a `POST`.
    pub body: Option<Arc<Vec<u8>>>,
}

impl Request {
    /// Sends it once on `agent`: the status (0 for a transport error) and the body length.
    pub fn send(&self, agent: &ureq::Agent) -> (u16, usize) {
        match self.answer(agent) {
            Ok((status, body)) => (status, body.len()),
            Err(_) => (0, 0),
        }
    }

    /// Sends it once on `agent`: the status and the body, whatever the status.
    pub fn answer(&self, agent: &ureq::Agent) -> Result<(u16, Vec<u8>), String> {
        let mut request = agent.request(self.method, &self.url);
        for (name, value) in &self.headers {
            request = request.set(name, value);
        }
        let answer = match &self.body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_bytes(body),
            None => request.call(),
        };
        let response = match answer {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(e) => return Err(format!("{}: {e}", self.url)),
        };
        let status = response.status();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes)
            .map_err(|e| format!("{}: {e}", self.url))?;
        Ok((status, bytes))
    }
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Answers other than 2xx and transport errors, warm-up included.
    pub errors: u64,
    /// Requests per second over the measured time.
    pub per_second: f64,
    /// Median latency, microseconds.
    pub p50_us: u64,
    /// 99th percentile latency, microseconds.
    pub p99_us: u64,
}

/// Sends `request` over `connections` connections for `warmup`, then measures for `measure`.
pub fn run(request: &Request, connections: usize, warmup: Duration, measure: Duration) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let measured_from = start + warmup;
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (request, stop) = (request.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .max_idle_connections_per_host(1)
                    .timeout(Duration::from_secs(120))
                    .build();
                let (mut latencies, mut errors) = (Vec::with_capacity(1 << 16), 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let (status, _) = request.send(&agent);
                    let took = sent.elapsed();
                    if !(200..300).contains(&status) {
                        errors += 1;
                    } else if sent >= measured_from {
                        latencies.push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    std::thread::sleep(warmup + measure);
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for thread in threads {
        let (mine, my_errors) = thread.join().unwrap_or_default();
        latencies.extend(mine);
        errors += my_errors;
    }
    Outcome::of(latencies, errors, measure)
}

impl Outcome {
    /// The outcome of `latencies` (microseconds, in any order) measured over `measure`.
    pub fn of(mut latencies: Vec<u64>, errors: u64, measure: Duration) -> Outcome {
        latencies.sort_unstable();
        let at = |q: f64| -> u64 {
            if latencies.is_empty() {
                return 0;
            }
            let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
            latencies[index.min(latencies.len() - 1)]
        };
        Outcome {
            errors,
            per_second: latencies.len() as f64 / measure.as_secs_f64(),
            p50_us: at(0.50),
            p99_us: at(0.99),
        }
    }
}
