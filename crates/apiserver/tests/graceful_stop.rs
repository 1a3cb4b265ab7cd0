//! A server told to stop answers the requests it took, tells its clients to go (HTTP/1
//! `Connection: close`), refuses new connections, and is done as soon as its connections are.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tug_apiserver::pki::Pki;
use tug_apiserver::tls::{SkipVerify, serve_until, server_config};

#[tokio::test]
async fn a_stopping_server_answers_what_it_took_and_takes_nothing_new() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = Pki::load_or_create(dir.path(), &[]).expect("pki");
    let tls = server_config(&pki).expect("tls");
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            "done"
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(serve_until(
        listener,
        tls,
        app,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(30),
    ));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SkipVerify(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut conn = connector.connect(name, tcp).await.expect("TLS");
    conn.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("request");

    // Stop while the request is being answered.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    stop.send(()).expect("stop");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut response))
        .await
        .expect("the response within 5 s")
        .ok();
    let response = String::from_utf8_lossy(&response).to_lowercase();
    assert!(response.starts_with("http/1.1 200"), "{response}");
    assert!(response.ends_with("done"), "{response}");
    assert!(response.contains("connection: close"), "{response}");

    // Done once that connection is (well before the 30 s drain limit); nothing new taken.
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serving ends once its connections have")
        .expect("serving task");
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a stopped server still accepts connections"
    );
}
