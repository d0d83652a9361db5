//! An HTTP/2 client (prior knowledge) for the proxy's stream limits.

use std::net::SocketAddr;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// `n` HTTP/2 requests at once on one connection; their statuses, 0 for a
/// request that got no answer (connection or stream closed).
pub fn burst(to: SocketAddr, n: usize) -> Vec<u16> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let Ok(tcp) = tokio::net::TcpStream::connect(to).await else {
            return vec![0; n];
        };
        let Ok((client, conn)) = h2::client::handshake(tcp).await else {
            return vec![0; n];
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        // One request first: its answer comes after the proxy's SETTINGS,
        // so the burst then knows the stream cap (sent before it, streams
        // beyond the cap would be refused, as HTTP/2 allows).
        let first = get(client.clone(), 0).await.unwrap_or(0);
        let tasks: Vec<_> = (1..n)
            .map(|i| tokio::spawn(get(client.clone(), i)))
            .collect();
        let mut out = vec![first];
        for t in tasks {
            out.push(t.await.ok().and_then(Result::ok).unwrap_or(0));
        }
        out
    })
}

/// One request, its body read; its status.
async fn get(client: h2::client::SendRequest<bytes::Bytes>, i: usize) -> Result<u16, Error> {
    let req = http::Request::get(format!("http://lab/{i}")).body(())?;
    let mut client = client.ready().await?;
    let (resp, _) = client.send_request(req, true)?;
    let resp = resp.await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    while let Some(d) = body.data().await {
        let _ = body.flow_control().release_capacity(d?.len());
    }
    Ok(status)
}
