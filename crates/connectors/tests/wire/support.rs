//! Shared helpers: connectors with short timeouts, and raw TCP servers that misbehave on purpose.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connectors::{AeeronConnector, HttpConnectorConfig, PurpleFleaConnector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Request timeout of the test connectors: short so silent servers cost little, long
/// enough that a loaded CI machine does not turn a normal answer into a timeout.
pub const SHORT_REQUEST_TIMEOUT: Duration = Duration::from_millis(1_500);

/// Longest a raw server keeps running, whatever happens.
pub const RAW_SERVER_LIFETIME: Duration = Duration::from_secs(10);

/// Most bytes a raw server reads of one request.
const RAW_REQUEST_BYTES_MAX: usize = 64 * 1024;

pub fn purple_flea(base_url: &str) -> PurpleFleaConnector {
    let mut config = HttpConnectorConfig::new(base_url);
    config.request_timeout = SHORT_REQUEST_TIMEOUT;
    config.connect_timeout = Duration::from_secs(2);
    PurpleFleaConnector::new(config).unwrap()
}

pub fn aeeron(base_url: &str) -> AeeronConnector {
    let mut config = HttpConnectorConfig::new(base_url);
    config.request_timeout = SHORT_REQUEST_TIMEOUT;
    config.connect_timeout = Duration::from_secs(2);
    AeeronConnector::new(config).unwrap()
}

/// What a raw server does with each connection once it has read one whole request.
#[derive(Clone, Debug)]
pub enum Misbehaviour {
    /// Reads the request, then holds the connection open without a word.
    NeverAnswer,
    /// Reads the request, then resets the connection (RST).
    ResetAfterRequest,
    /// Reads the request, then closes cleanly (FIN) without a response.
    CloseAfterRequest,
    /// Reads the request, writes these bytes, then closes.
    Reply(Vec<u8>),
}

/// A raw server on 127.0.0.1:0 that records every request it reads (as text).
/// Stops after `RAW_SERVER_LIFETIME` or when dropped.
pub struct RawServer {
    pub base_url: String,
    pub requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn raw_server(behaviour: Misbehaviour) -> RawServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = requests.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        let deadline = tokio::time::Instant::now() + RAW_SERVER_LIFETIME;
        while let Ok(Ok((mut stream, _))) =
            tokio::time::timeout_at(deadline, listener.accept()).await
        {
            let request = read_request(&mut stream).await;
            recorded.lock().unwrap().push(request);
            match &behaviour {
                Misbehaviour::NeverAnswer => held.push(stream),
                Misbehaviour::ResetAfterRequest => {
                    stream.set_zero_linger().unwrap();
                    drop(stream);
                }
                Misbehaviour::CloseAfterRequest => {
                    let _ = stream.shutdown().await;
                }
                Misbehaviour::Reply(bytes) => {
                    let _ = stream.write_all(bytes).await;
                    let _ = stream.shutdown().await;
                }
            }
        }
    });
    RawServer {
        base_url: format!("http://{address}"),
        requests,
        task,
    }
}

/// Reads one HTTP/1.1 request: the head, then `Content-Length` bytes of body.
async fn read_request(stream: &mut TcpStream) -> String {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head_end) = find(&buffer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
            let body_bytes = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buffer.len() >= head_end + 4 + body_bytes {
                break;
            }
        }
        if buffer.len() > RAW_REQUEST_BYTES_MAX {
            break;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
    String::from_utf8_lossy(&buffer).into_owned()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// An address on which nothing listens (bound, then released).
pub async fn refused_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    address
}
