//! The booking page in a real headless browser (Debian's `chromium`, driven over the DevTools protocol): book a
//! slot, then watch the status change as Genesys moves the callback on, without reloading the page.
//!
//! Without a browser the test says so and passes, except under CI (`CI` set), where a missing browser fails
//! it: `.ci/run` installs one.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use integration_tests::callbacks::{booking_with_resources, next_weekday};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn browser() -> Option<String> {
    let candidates = [
        std::env::var("CHROMIUM").ok(),
        Some("/usr/bin/chromium".into()),
        Some("/usr/bin/chromium-browser".into()),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| std::path::Path::new(p).exists())
}

struct Browser {
    child: Child,
    _profile: std::path::PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._profile);
    }
}

/// Starts headless Chromium; returns it and its DevTools port.
fn launch(path: &str) -> (Browser, u16) {
    let profile = std::env::temp_dir().join(format!("cb-page-{}", uuid::Uuid::new_v4().simple()));
    let mut child = Command::new(path)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("DevTools endpoint");
    let port: u16 = url
        .trim_start_matches("ws://127.0.0.1:")
        .split('/')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    (
        Browser {
            child,
            _profile: profile,
        },
        port,
    )
}

struct Page {
    socket: Socket,
    next_id: u64,
}

impl Page {
    async fn open(port: u16) -> Page {
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page")
            .to_string();
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Page { socket, next_id: 1 }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket
            .send(Message::Text(message.into()))
            .await
            .unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("DevTools answers")
                .unwrap()
                .unwrap();
            if let Message::Text(text) = frame {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["id"] == id {
                    return v["result"].clone();
                }
            }
        }
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Waits until `expression` evaluates to `want` (or fails after 15 s with what it was).
    async fn wait_for(&mut self, expression: &str, want: Value) {
        let until = Instant::now() + Duration::from_secs(15);
        let mut last = Value::Null;
        while Instant::now() < until {
            last = self.eval(expression).await;
            if last == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{expression}: wanted {want}, still {last}");
    }
}

#[tokio::test]
async fn a_booking_made_in_the_browser_shows_each_status_change_without_a_reload() {
    let Some(path) = browser() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no chromium: CI must install it (.ci/run)"
        );
        eprintln!("SKIPPED: no chromium (apt-get install chromium, or set CHROMIUM)");
        return;
    };
    let (sim, booking, resources) =
        booking_with_resources("queue-support", Duration::from_secs(1)).await;
    let booking = Arc::try_unwrap(booking).ok().expect("one owner");
    let aws = integration_tests::aws_config().await;
    let (_sink, sink_url) = integration_tests::webhook_sink::WebhookSink::start().await;
    let stack = local::callback_stack::start(
        &aws,
        &resources,
        integration_tests::CALLBACK_ACCESS_KEY,
        ([127, 0, 0, 1], 0).into(),
        sink_url,
        local::callback_stack::EventSource::InProcess(sim.clone()),
        None,
    )
    .await
    .unwrap();
    let api = Arc::new(callback_api::api::CallbackApi {
        booking,
        access: callback_api::access::AccessKeys::from_secret(
            integration_tests::CALLBACK_ACCESS_KEY,
        ),
        live_token_ttl: Duration::from_secs(900),
        deadline: Duration::from_secs(4),
        max_body_bytes: 16 * 1024,
    });
    let router = local::http::callback_router(api).merge(local::callback_stack::page_router(
        &stack.websocket_url,
        local::callback_stack::LocalSubscriber::default(),
    ));
    let addr = local::http::spawn(([127, 0, 0, 1], 0).into(), router)
        .await
        .unwrap();

    let (_browser, port) = launch(&path);
    let mut page = Page::open(port).await;
    page.call("Page.enable", json!({})).await;
    page.call(
        "Page.navigate",
        json!({"url": format!("http://{addr}/book")}),
    )
    .await;
    page.wait_for("document.readyState", json!("complete"))
        .await;
    page.wait_for("!!document.getElementById('booking')", json!(true))
        .await;
    // A marker a reload would lose.
    page.eval("window.__still_here = 'yes'").await;
    let fill = format!(
        "(() => {{ const set = (id, v) => document.getElementById(id).value = v;
           set('name', 'Ada Lovelace'); set('phone', '+15550199888'); set('date', '{}');
           set('from', '10:00'); set('to', '11:00'); set('timezone', 'Europe/Berlin');
           document.getElementById('booking').requestSubmit(); return true; }})()",
        next_weekday()
    );
    assert_eq!(page.eval(&fill).await, json!(true));
    page.wait_for(
        "document.getElementById('status').dataset.status || ''",
        json!("scheduled"),
    )
    .await;
    // The page is watching: wait until its connection is open before Genesys moves the callback.
    let until = Instant::now() + Duration::from_secs(10);
    while stack.gateway.open_connections() == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stack.gateway.open_connections(), 1);
    let conversation = sim.callbacks()[0].conversation_id.clone();
    sim.advance_callback(&conversation, "user.start").unwrap();
    page.wait_for(
        "document.getElementById('status').dataset.status",
        json!("connected"),
    )
    .await;
    sim.advance_callback(&conversation, "acw").unwrap();
    page.wait_for(
        "document.getElementById('status').dataset.status",
        json!("completed"),
    )
    .await;
    assert_eq!(
        page.eval("window.__still_here").await,
        json!("yes"),
        "no reload"
    );
    let log = page
        .eval("[...document.querySelectorAll('#log li')].map(li => li.textContent.split(' ')[0])")
        .await;
    let statuses: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        statuses.ends_with(&["connected", "completed"]),
        "{statuses:?}"
    );
    assert_eq!(statuses.first(), Some(&"scheduled"));
}
