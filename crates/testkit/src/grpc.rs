//! A gRPC health server (`grpc.health.v1.Health`) on a free loopback port, for grpc probes:
//! the server as a whole ("") is SERVING, the service `down` is NOT_SERVING.

use std::net::TcpListener;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tonic_health::ServingStatus;

/// The running server; it stops with the test process.
pub struct HealthServer {
    pub port: u16,
}

impl HealthServer {
    /// Starts the server on its own thread and runtime.
    pub fn start() -> HealthServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            rt.block_on(async move {
                let (reporter, service) = tonic_health::server::health_reporter();
                reporter
                    .set_service_status("down", ServingStatus::NotServing)
                    .await;
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                while let Ok((stream, _)) = listener.accept().await {
                    let service = TowerToHyperService::new(service.clone());
                    tokio::spawn(async move {
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .http2_only()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        HealthServer { port }
    }
}
