//! `caretaker-aggregator report`: the live report, one recorded at a time, or the diff of
//! two, read from the aggregator directly (`--server`) or through the API server's service
//! proxy (`--context`/`--kubeconfig`), filtered by `-n`/`-l` and rendered with `-o`.

use std::io::Write;

use crate::cli::args::{Report, ReportQuery, ReportTarget};
use crate::cli::kubeconfig::{self, KubeconfigError};
use crate::client::{self, ClientError};
use crate::report::{self, ClusterReport, RenderError};

/// Why `report` could not print.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("cannot write the report")]
    Write(#[source] std::io::Error),
}

/// Where the report is read.
enum Source<'a, S> {
    /// The aggregator's gRPC URL.
    Server(&'a str),
    /// The API server's service proxy: client, server URL (for messages), Service.
    Proxy(kube::Client, String, S),
}

/// Fetches what `r` asks for and writes it to `out`.
///
/// # Errors
/// [`Error`] naming the server, kubeconfig or output that failed.
pub async fn run(
    r: &Report,
    out: &mut impl Write,
    tty: caretaker_core::render::Tty,
) -> Result<(), Error> {
    // Through the API server's service proxy: one client, checked once.
    let source = match &r.target {
        ReportTarget::Server(url) => Source::Server(url),
        ReportTarget::Cluster { kube, service } => {
            let (client, server) = kubeconfig::client_and_server(
                kube.kubeconfig.as_deref(),
                kube.context.as_deref(),
                std::time::Duration::from_secs(10),
            )
            .await?;
            Source::Proxy(client, server, service)
        }
    };
    let fetch = async |at| -> Result<ClusterReport, Error> {
        let mut report = match &source {
            Source::Proxy(client, server, service) => {
                let token = r.client.token.as_deref();
                client::fetch_report_via_proxy(client, server, service, at, token).await?
            }
            Source::Server(url) => client::fetch_report_with(url, at, &r.client).await?,
        };
        crate::cli::select::filter_report(&mut report, &r.selection);
        Ok(report)
    };
    let text = match r.query {
        ReportQuery::Diff(a, b) => {
            let (ra, rb) = (fetch(Some(a)).await?, fetch(Some(b)).await?);
            report::render_diff(&crate::store::history::diff(&ra, &rb), r.output)?
        }
        ReportQuery::At(t) => report::render_for(&fetch(Some(t)).await?, r.output, tty)?,
        ReportQuery::Live => report::render_for(&fetch(None).await?, r.output, tty)?,
    };
    out.write_all(text.as_bytes()).map_err(Error::Write)
}
