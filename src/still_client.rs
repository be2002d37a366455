//! `picker still`: fetches a still over the Unix socket, as `curl --unix-socket` would.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::cli::StillArgs;

pub async fn fetch(socket: &Path, args: &StillArgs) -> anyhow::Result<()> {
    // The whole exchange, so that a picker that is stopped (SIGSTOP) or stuck does not hang
    // the script that runs this. `--timeout` is range-checked by the parser.
    let limit = std::time::Duration::from_secs_f64(args.timeout);
    match tokio::time::timeout(limit, exchange(socket, args)).await {
        Ok(r) => r,
        Err(_) => bail!(
            "no answer from picker at {} within {} s (is it stopped or stuck? see \
             `systemctl status picker`; --timeout gives it longer)",
            socket.display(),
            args.timeout
        ),
    }
}

async fn exchange(socket: &Path, args: &StillArgs) -> anyhow::Result<()> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| {
            format!(
                "cannot connect to still socket {} (is picker running? are you in group picker?)",
                socket.display()
            )
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let uri = format!(
        "/still.{}{}",
        args.format.extension(),
        if args.fresh { "?fresh=1" } else { "" }
    );
    let req = hyper::Request::get(&uri)
        .header(hyper::header::HOST, "picker")
        .body(Empty::<bytes::Bytes>::new())?;
    let resp = sender.send_request(req).await.context("request failed")?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("reading the response")?
        .to_bytes();
    if !status.is_success() {
        bail!(
            "{} {}: {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            String::from_utf8_lossy(&body).trim()
        );
    }
    // `-o -` is standard output, as for curl, wget and most Unix tools.
    match args.output.as_ref().filter(|p| p.as_os_str() != "-") {
        Some(path) => std::fs::write(path, &body)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            let written = out.write_all(&body).and_then(|()| out.flush());
            match written {
                // A reader that has had enough (`picker still | head -c4`) is not an error,
                // as for any Unix filter.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.context("writing to standard output")?,
            }
        }
    }
    Ok(())
}
