//! Serving the CRI on a unix socket that only root may use.

use crate::config::Config;
use anyhow::Context;
use berth_proto::v1::image_service_server::ImageServiceServer;
use berth_proto::v1::runtime_service_server::RuntimeServiceServer;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

/// Binds the socket (0600 in a 0700 directory) and serves until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let store =
        berth_image::ImageStore::open(config.store_config()).context("opening the image store")?;
    let sock = config.listen.clone();
    if let Some(dir) = sock.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).ok();
    }
    // A socket left by a previous berthd (crashed or killed) is ours to replace.
    let _ = std::fs::remove_file(&sock);
    // Created with no access for others, then opened up to the owner only.
    // SAFETY: umask is process-wide and cannot fail.
    let old = unsafe { libc::umask(0o177) };
    let listener = tokio::net::UnixListener::bind(&sock)
        .with_context(|| format!("binding {}", sock.display()));
    unsafe { libc::umask(old) };
    let listener = listener?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %sock.display(), "berthd serving the CRI");

    let store = Arc::new(store);
    let daemon = crate::daemon::Daemon::new(config.clone(), store.clone());
    crate::pod::install_pause(&daemon).context("installing the built-in pause")?;
    crate::recovery::recover(&daemon).await;
    // Blobs and snapshots of a pull that died before its image record was written
    // belong to no image: collected here, before any new pull can start.
    let gc_store = store.clone();
    match tokio::task::spawn_blocking(move || gc_store.gc()).await {
        Ok(Ok(c)) if c.blobs + c.snapshots > 0 => {
            tracing::warn!(
                blobs = c.blobs,
                snapshots = c.snapshots,
                "collected what no image refers to"
            )
        }
        Ok(Err(e)) => tracing::error!("image garbage collection: {e}"),
        _ => {}
    }
    let streaming = crate::streaming::Server::start(&config.streaming_address, daemon.clone())
        .await
        .with_context(|| {
            format!(
                "starting the streaming server on {}",
                config.streaming_address
            )
        })?;
    let runtime = crate::service::runtime::Runtime { daemon, streaming };
    let images = crate::service::image::Images { store };
    let metrics = Arc::new(crate::metrics::Metrics::default());
    if !config.metrics_address.is_empty() {
        let (addr, m) = (config.metrics_address.clone(), metrics.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(addr.clone(), m).await {
                tracing::error!(address = %addr, "metrics server: {e}");
            }
        });
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(crate::metrics::Layer(metrics))
            .add_service(RuntimeServiceServer::new(runtime).max_decoding_message_size(16 << 20))
            .add_service(ImageServiceServer::new(images).max_decoding_message_size(16 << 20))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                async {
                    let _ = stop_rx.await;
                },
            ),
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("berthd stopping");
    let _ = stop_tx.send(());
    // Clients such as kubelet keep their connection open for good: in-flight calls
    // get a few seconds, then berthd leaves anyway.
    match tokio::time::timeout(std::time::Duration::from_secs(5), server).await {
        Ok(Ok(r)) => r?,
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => tracing::warn!("calls still open after 5 s; stopping without them"),
    }
    let _ = std::fs::remove_file(&sock);
    Ok(())
}
